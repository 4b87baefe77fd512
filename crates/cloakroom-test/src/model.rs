//! A reference model of a session store, and a checker that drives a store through a sequence
//! of steps and compares every answer with the model: counters count exactly, sliding expiry
//! and the absolute deadline end sessions when the model says, an expired or deleted session
//! never answers again, a peek reads without extending, and a write past the session-wide
//! bounds is refused and writes nothing. The proptest in the test suite and the `memory_model` fuzz target both
//! drive it, from bytes.

use cloakroom_core::store::{
    Access, Applied, Apply, Bounds, Created, Fields, META_CREATED, META_DEADLINE, NewSession, Op,
    Store,
};
use cloakroom_core::{ErrorKind, SessionKey, SessionToken};

// Time moves in 7 ms steps; expiry (100 ms after an access) and deadlines (1,000 ms after a
// creation) never land on a step, so the model needs no opinion about the boundary instant.
const STEP_MS: u64 = 7;
const IDLE_MS: u64 = 100;
const LIFETIME_MS: u64 = 1_000;
const SESSIONS: usize = 3;
// `Grow` sets one of four fields under a bound of three user fields (`visits` counts).
const GROWN_FIELDS: u8 = 4;
const BOUNDS: Bounds = Bounds {
    max_fields: 3,
    max_bytes: 1_000,
};

/// One thing done to the store.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Create session `n` (refused while it lives).
    Create(usize),
    /// Increment session `n`'s counter.
    Incr(usize),
    /// Load session `n`.
    Load(usize),
    /// Delete session `n`.
    Delete(usize),
    /// Let this many 7 ms steps pass.
    Wait(u64),
    /// Read session `n` without touching it.
    Peek(usize),
    /// Set field `g{k}` of session `n` under the bounds (session, k).
    Grow(usize, u8),
}

/// Steps read from bytes, two per step (which step, and its argument): any bytes are a valid
/// sequence, which is what a fuzzer and a property test both want.
pub fn steps_from_bytes(bytes: &[u8]) -> Vec<Step> {
    bytes
        .chunks_exact(2)
        .map(|pair| {
            let session = usize::from(pair[1]) % SESSIONS;
            match pair[0] % 7 {
                0 => Step::Create(session),
                1 => Step::Incr(session),
                2 => Step::Load(session),
                3 => Step::Delete(session),
                4 => Step::Peek(session),
                5 => Step::Grow(session, (pair[1] / 3) % GROWN_FIELDS),
                _ => Step::Wait(u64::from(pair[1] % 30) + 1),
            }
        })
        .collect()
}

/// What the model knows of a session.
#[derive(Debug, Clone, Copy)]
struct Entry {
    visits: i64,
    expires: u64,
    deadline: u64,
    // Which of the `g{k}` fields are set, one bit each.
    grown: u8,
}

impl Entry {
    fn user_fields(&self) -> u32 {
        self.grown.count_ones() + u32::from(self.visits != 0)
    }
}

fn live(entry: Option<Entry>, now: u64) -> Option<Entry> {
    entry.filter(|e| now < e.expires && now < e.deadline)
}

/// Drives `store` through `steps`; the error names the first step where the store and the model
/// disagree.
pub async fn check_against_model(store: &dyn Store, steps: &[Step]) -> Result<(), String> {
    let keys: Vec<SessionKey> = (0..SESSIONS)
        .map(|_| SessionToken::generate().map(|t| t.key()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut model: [Option<Entry>; SESSIONS] = [None; SESSIONS];
    let mut now: u64 = 1_700_000_000_000;
    let access = |now_ms| Access {
        now_ms,
        idle_ms: IDLE_MS,
    };
    for (index, &step) in steps.iter().enumerate() {
        let fail = |what: String| Err(format!("step {index} ({step:?}): {what}"));
        match step {
            Step::Wait(n) => now += n * STEP_MS,
            Step::Create(i) => {
                let deadline = now + LIFETIME_MS;
                let mut fields = Fields::new();
                fields.insert(META_CREATED.to_owned(), now.to_string());
                fields.insert(META_DEADLINE.to_owned(), deadline.to_string());
                let session = NewSession {
                    fields,
                    access: access(now),
                    deadline_ms: deadline,
                    origin: cloakroom_core::store::Origin::Login,
                };
                let created = store.create(&keys[i], &session).await;
                let alive = live(model[i], now).is_some();
                match (alive, &created) {
                    (true, Ok(Created::Exists)) => {}
                    (false, Ok(Created::Created)) => {
                        model[i] = Some(Entry {
                            visits: 0,
                            expires: now + IDLE_MS,
                            deadline,
                            grown: 0,
                        });
                    }
                    _ => return fail(format!("live: {alive}, create answered {created:?}")),
                }
            }
            Step::Incr(i) | Step::Load(i) => {
                let incr = matches!(step, Step::Incr(_));
                let ops = if incr {
                    vec![Op::Incr {
                        name: "visits".to_owned(),
                        by: 1,
                    }]
                } else {
                    Vec::new()
                };
                let apply = Apply {
                    access: access(now),
                    ops,
                    load: !incr,
                    bounds: None,
                };
                let applied = store.apply(&keys[i], &apply).await;
                match (live(model[i], now), applied) {
                    // Never resurrected: once dead, every access finds nothing.
                    (None, Ok(Applied::Missing)) => model[i] = None,
                    (Some(mut entry), Ok(Applied::Done { counters, fields })) => {
                        if incr {
                            entry.visits += 1;
                            if counters != vec![entry.visits] {
                                return fail(format!("counted {counters:?}, not {}", entry.visits));
                            }
                        } else {
                            let stored = fields
                                .and_then(|f| f.get("visits").cloned())
                                .map_or(Some(0), |v| v.parse::<i64>().ok());
                            if stored != Some(entry.visits) {
                                return fail(format!("holds {stored:?}, not {}", entry.visits));
                            }
                        }
                        // Each access slides the idle timeout, never past the deadline.
                        entry.expires = (now + IDLE_MS).min(entry.deadline);
                        model[i] = Some(entry);
                    }
                    (expected, applied) => {
                        return fail(format!("model {expected:?}, store answered {applied:?}"));
                    }
                }
            }
            Step::Delete(i) => {
                if let Err(e) = store.delete(&keys[i]).await {
                    return fail(format!("delete failed: {e}"));
                }
                model[i] = None;
            }
            Step::Peek(i) => {
                // Nothing slides: the model's entry is left exactly as it is.
                let peeked = store.peek(&keys[i], now).await;
                match (live(model[i], now), peeked) {
                    (None, Ok(None)) => {}
                    (Some(entry), Ok(Some(fields))) => {
                        let stored = fields
                            .get("visits")
                            .map_or(Some(0), |v| v.parse::<i64>().ok());
                        if stored != Some(entry.visits) {
                            return fail(format!("peeked {stored:?}, not {}", entry.visits));
                        }
                    }
                    (expected, peeked) => {
                        return fail(format!("model {expected:?}, peek answered {peeked:?}"));
                    }
                }
            }
            Step::Grow(i, k) => {
                let apply = Apply {
                    access: access(now),
                    ops: vec![Op::Set {
                        name: format!("g{k}"),
                        value: "1".to_owned(),
                    }],
                    load: false,
                    bounds: Some(BOUNDS),
                };
                let applied = store.apply(&keys[i], &apply).await;
                match (live(model[i], now), applied) {
                    (None, Ok(Applied::Missing)) => model[i] = None,
                    (Some(mut entry), outcome) => {
                        let bit = 1u8 << k;
                        let new = entry.grown & bit == 0;
                        let refused = new && entry.user_fields() >= 3;
                        match (refused, outcome) {
                            (true, Err(e)) if e.kind() == ErrorKind::TooLarge => {}
                            (false, Ok(Applied::Done { .. })) => {
                                entry.grown |= bit;
                                entry.expires = (now + IDLE_MS).min(entry.deadline);
                                model[i] = Some(entry);
                            }
                            (refused, outcome) => {
                                return fail(format!(
                                    "refused: {refused}, store answered {outcome:?}"
                                ));
                            }
                        }
                    }
                    (None, applied) => {
                        return fail(format!("model: gone, store answered {applied:?}"));
                    }
                }
            }
        }
    }
    Ok(())
}
