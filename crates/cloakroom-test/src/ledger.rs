//! Load with bookkeeping, for failure tests: workers increment session counters while a test
//! kills, freezes or reshards servers, and every operation is recorded with its outcome.
//!
//! Each session is driven by one worker at a time, so its acknowledged values must rise by
//! one per acknowledged increment, and the value read at the end counts as one more
//! acknowledgement. Between two acknowledgements:
//! - a value that is not above the previous one means acknowledged increments were lost
//!   (counted as the gap);
//! - a value that jumps by more than one after failed calls means some calls that reported an
//!   error were applied anyway (their outcome was *unknown*, as after a timeout), the rest were
//!   *failed* (not applied);
//! - a jump larger than the failed calls explain is an increment nobody made (a resent command).
//!
//! A loss and a resend within the same gap would cancel out; each is checked on its own by the
//! tests that can provoke it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cloakroom_core::store::{Access, Applied, Apply, Delta, NewSession, Store};
use cloakroom_core::{SessionKey, SessionToken};
use cloakroom_redis::RedisStore;

use crate::conformance::{load, new_session};

/// The counter field the load increments.
pub const COUNTER: &str = "visits";

/// One call, as the caller saw it.
#[derive(Clone, Debug)]
pub struct Call {
    /// The session's index in the load.
    pub session: usize,
    /// When the call started and ended, from the load's start.
    pub started: Duration,
    /// When it ended.
    pub ended: Duration,
    /// The counter value acknowledged, or `None` for an error.
    pub acknowledged: Option<i64>,
}

// A session of a load: no fields, a 10-minute idle timeout, an hour to live.
fn load_session() -> NewSession {
    new_session(&[], 600_000, 3_600_000)
}

/// Sessions under load, spread over `workers` tasks.
pub struct Load {
    epoch: Instant,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<Vec<Call>>>,
    sessions: Vec<SessionKey>,
    store: Arc<dyn Store>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Load {
    /// Creates `sessions` sessions in `store`: call before anything fails.
    pub async fn create_sessions(
        store: &dyn Store,
        sessions: usize,
    ) -> anyhow::Result<Vec<SessionKey>> {
        let mut keys = Vec::with_capacity(sessions);
        for _ in 0..sessions {
            let key = SessionToken::generate()?.key();
            store.create(&key, &load_session()).await?;
            keys.push(key);
        }
        Ok(keys)
    }

    /// As [`Load::create_sessions`], through a store that requires a replica's confirmation of
    /// every write. A freshly started cluster, busy beside the rest of a test suite, may leave a
    /// create unconfirmed in time: that session may or may not survive a failover, so it is not
    /// one a test can count on. It is left out (it stays in Redis until it expires) and another
    /// is created, for up to 30 s. Only a create the store counts as unconfirmed is skipped;
    /// any other failure (a timeout, a lost connection) fails as it does in `create_sessions`.
    /// Returns the keys and how many creates were left out.
    pub async fn create_confirmed_sessions(
        store: &RedisStore,
        sessions: usize,
    ) -> anyhow::Result<(Vec<SessionKey>, usize)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut keys = Vec::with_capacity(sessions);
        let mut skipped = 0;
        while keys.len() < sessions {
            let key = SessionToken::generate()?.key();
            let unconfirmed = store.unconfirmed_writes();
            match store.create(&key, &load_session()).await {
                Ok(_) => keys.push(key),
                Err(_) if store.unconfirmed_writes() > unconfirmed && Instant::now() < deadline => {
                    skipped += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("after {skipped} unconfirmed creates were left out")));
                }
            }
        }
        Ok((keys, skipped))
    }

    /// Starts `workers` tasks, each incrementing its share of `sessions` in turn with a
    /// `pause` between calls.
    pub fn start(
        store: Arc<dyn Store>,
        sessions: Vec<SessionKey>,
        workers: usize,
        pause: Duration,
    ) -> Self {
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..workers)
            .map(|worker| {
                let store = Arc::clone(&store);
                let stop = Arc::clone(&stop);
                let mine: Vec<(usize, SessionKey)> = sessions
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| i % workers == worker)
                    .map(|(i, k)| (i, k.clone()))
                    .collect();
                tokio::spawn(async move {
                    let mut calls = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        for (session, key) in &mine {
                            calls.push(increment(store.as_ref(), *session, key, epoch).await);
                            tokio::time::sleep(pause).await;
                        }
                    }
                    calls
                })
            })
            .collect();
        Self {
            epoch,
            stop,
            workers: handles,
            sessions,
            store,
        }
    }

    /// Time since the load started: stamp a fault with it.
    pub fn elapsed(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Stops the workers, reads every session back and draws up the report.
    pub async fn finish(self, fault_at: Duration, shard_of: &[usize]) -> anyhow::Result<Report> {
        self.stop.store(true, Ordering::Relaxed);
        let mut calls = Vec::new();
        for worker in self.workers {
            calls.extend(worker.await?);
        }
        calls.sort_by_key(|c| c.started);
        let mut finals = Vec::with_capacity(self.sessions.len());
        for (session, key) in self.sessions.iter().enumerate() {
            let fields = load(self.store.as_ref(), key)
                .await
                .map_err(|e| anyhow::anyhow!("reading session {session} back: {e:?}"))?;
            finals.push(fields.map(|f| {
                f.get(COUNTER)
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(0)
            }));
        }
        Ok(Report::new(&calls, &finals, fault_at, shard_of))
    }
}

async fn increment(store: &dyn Store, session: usize, key: &SessionKey, epoch: Instant) -> Call {
    let started = epoch.elapsed();
    let mut delta = Delta::default();
    // A constant name and amount are never refused; a refusal would count as a failed call.
    if delta.incr(COUNTER, 1).is_err() {
        return Call {
            session,
            started,
            ended: epoch.elapsed(),
            acknowledged: None,
        };
    }
    let apply = Apply {
        access: Access {
            now_ms: now_ms(),
            idle_ms: 600_000,
            touch_ms: 0,
        },
        delta,
        load: false,
    };
    let acknowledged = match store.apply(key, &apply).await {
        Ok(Applied::Done { counters, .. }) => counters.first().copied(),
        _ => None,
    };
    Call {
        session,
        started,
        ended: epoch.elapsed(),
        acknowledged,
    }
}

/// What a failure cost, per the ledger.
#[derive(Debug, Default)]
pub struct Report {
    /// Calls made.
    pub calls: usize,
    /// Calls that reported an error (failed or unknown).
    pub errors: usize,
    /// Of those, calls applied anyway (their outcome was unknown to the caller).
    pub applied_despite_error: i64,
    /// Acknowledged increments later found missing.
    pub lost_acknowledged: i64,
    /// Increments no call explains (must be zero).
    pub unexplained_increments: i64,
    /// Sessions that still exist at the end, and how many there were.
    pub sessions_survived: (usize, usize),
    /// Per shard (as numbered by the caller): from its first error to the end of its last error, or zero.
    pub unavailable_per_shard: Vec<Duration>,
    /// From the fault to the end of the last error anywhere (zero when nothing failed).
    pub recovered_after: Duration,
    /// The longest call, failed or not.
    pub slowest_call: Duration,
    /// Sessions whose last call failed (a late hiccup on a loaded machine can leave a few).
    pub sessions_still_failing: usize,
    /// When the fault happened, from the load's start.
    pub fault_at: Duration,
    /// Per shard: when its last acknowledged call ended, from the load's start.
    pub last_ack_per_shard: Vec<Duration>,
}

impl Report {
    fn new(calls: &[Call], finals: &[Option<i64>], fault_at: Duration, shard_of: &[usize]) -> Self {
        let shards = shard_of.iter().copied().max().map_or(1, |m| m + 1);
        let mut report = Report {
            calls: calls.len(),
            unavailable_per_shard: vec![Duration::ZERO; shards],
            fault_at,
            last_ack_per_shard: vec![Duration::ZERO; shards],
            ..Report::default()
        };
        let mut first_error = vec![None::<Duration>; shards];
        let mut last_error = vec![None::<Duration>; shards];
        // Per session: the last acknowledged value, and errors since.
        let mut last = vec![0_i64; finals.len()];
        let mut errors_since = vec![0_i64; finals.len()];
        for call in calls {
            let shard = shard_of.get(call.session).copied().unwrap_or(0);
            report.slowest_call = report
                .slowest_call
                .max(call.ended.saturating_sub(call.started));
            match call.acknowledged {
                None => {
                    report.errors += 1;
                    errors_since[call.session] += 1;
                    first_error[shard].get_or_insert(call.started);
                    last_error[shard] = Some(call.ended);
                }
                Some(value) => {
                    report.last_ack_per_shard[shard] =
                        report.last_ack_per_shard[shard].max(call.ended);
                    let previous = last[call.session];
                    if value <= previous {
                        report.lost_acknowledged += previous - value + 1;
                    } else {
                        let jump = value - previous - 1;
                        let errors = errors_since[call.session];
                        report.applied_despite_error += jump.min(errors);
                        // More than the errors explain: an increment nobody made.
                        report.unexplained_increments += (jump - errors).max(0);
                    }
                    last[call.session] = value;
                    errors_since[call.session] = 0;
                }
            }
        }
        report.sessions_still_failing = errors_since.iter().filter(|&&e| e > 0).count();
        for (session, end) in finals.iter().enumerate() {
            match end {
                Some(value) => {
                    report.sessions_survived.0 += 1;
                    let previous = last[session];
                    if *value < previous {
                        report.lost_acknowledged += previous - value;
                    } else {
                        // Calls that failed after the last acknowledgement may have run too.
                        let jump = value - previous;
                        let errors = errors_since[session];
                        report.applied_despite_error += jump.min(errors);
                        report.unexplained_increments += (jump - errors).max(0);
                    }
                }
                None => report.lost_acknowledged += last[session],
            }
        }
        report.sessions_survived.1 = finals.len();
        for shard in 0..shards {
            if let (Some(first), Some(last)) = (first_error[shard], last_error[shard]) {
                report.unavailable_per_shard[shard] = last.saturating_sub(first);
                report.recovered_after = report.recovered_after.max(last.saturating_sub(fault_at));
            }
        }
        report
    }

    /// One line per figure, for a test's output.
    pub fn print(&self, title: &str) {
        let windows: Vec<String> = self
            .unavailable_per_shard
            .iter()
            .map(|d| format!("{} ms", d.as_millis()))
            .collect();
        println!(
            "{title}: calls {}, failed {} (of which applied anyway {}), lost acknowledged \
             increments {}, sessions survived {}/{}, unavailable per shard [{}], recovered {} ms \
             after the fault, slowest call {} ms",
            self.calls,
            self.errors,
            self.applied_despite_error,
            self.lost_acknowledged,
            self.sessions_survived.0,
            self.sessions_survived.1,
            windows.join(", "),
            self.recovered_after.as_millis(),
            self.slowest_call.as_millis()
        );
    }
}
