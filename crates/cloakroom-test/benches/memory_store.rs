//! The memory store's throughput at its bound, where every login evicts a session. Run with
//! `cargo bench -p cloakroom-test --bench memory_store`.
//!
//! The store holds `BOUND` sessions: 1,000 steady users and logins. Each round is one login (a
//! create in a full store, so one eviction), for every other login a first visit eight rounds
//! later (the page a login redirects to), and two requests of the steady users in turn (a load,
//! then an increment). Time moves 1 ms per round, so nothing expires and every store step does
//! the same work whichever session the bound picks to evict: the run checks that no access found
//! its session gone and that every login evicted exactly one session.

use std::hint::black_box;
use std::time::Instant;

use cloakroom_core::store::{
    Access, Applied, Apply, Delta, Fields, META_CREATED, META_DEADLINE, NewSession, Store,
};
use cloakroom_core::{MemoryStore, SessionKey, SessionToken};

const BOUND: usize = 10_000;
const STEADY_USERS: usize = 1_000;
const ROUNDS: usize = 200_000;
const REPETITIONS: usize = 5;
const IDLE_MS: u64 = 30 * 60 * 1000;
const LIFETIME_MS: u64 = 24 * 60 * 60 * 1000;
// A login's first visit comes this many rounds after it.
const VISIT_AFTER: usize = 8;

fn keys(n: usize) -> anyhow::Result<Vec<SessionKey>> {
    (0..n)
        .map(|_| Ok(SessionToken::generate()?.key()))
        .collect()
}

fn login(now_ms: u64) -> NewSession {
    let deadline_ms = now_ms + LIFETIME_MS;
    let fields: Fields = [
        ("username", "\"alice\""),
        (META_CREATED, &now_ms.to_string()),
        (META_DEADLINE, &deadline_ms.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    NewSession {
        fields,
        access: Access {
            now_ms,
            idle_ms: IDLE_MS,
            touch_ms: 0,
        },
        deadline_ms,
        origin: cloakroom_core::store::Origin::Login,
    }
}

fn request(now_ms: u64, delta: Delta, load: bool) -> Apply {
    Apply {
        access: Access {
            now_ms,
            idle_ms: IDLE_MS,
            touch_ms: 0,
        },
        delta,
        load,
    }
}

// Counts an access that found its session gone: there must be none.
fn missing(applied: Applied) -> u64 {
    u64::from(matches!(applied, Applied::Missing))
}

// One round: login `n`, the first visit of login `n - VISIT_AFTER` if `n` is even, and two
// requests of the steady users. Returns the store steps taken and how many found their session
// gone.
async fn round(
    store: &MemoryStore,
    steady: &[SessionKey],
    logins: &[SessionKey],
    n: usize,
    now_ms: u64,
) -> anyhow::Result<(u64, u64)> {
    let mut steps = 1;
    let mut gone = 0;
    store.create(&logins[n], &login(now_ms)).await?;
    if n >= VISIT_AFTER && n.is_multiple_of(2) {
        let visited = &logins[n - VISIT_AFTER];
        gone += missing(
            store
                .apply(visited, &request(now_ms, Delta::default(), true))
                .await?,
        );
        steps += 1;
    }
    let user = &steady[(2 * n) % STEADY_USERS];
    let loaded = store
        .apply(user, &request(now_ms, Delta::default(), true))
        .await?;
    gone += missing(black_box(loaded));
    let user = &steady[(2 * n + 1) % STEADY_USERS];
    let mut incr = Delta::default();
    incr.incr("visits", 1)?;
    gone += missing(store.apply(user, &request(now_ms, incr, false)).await?);
    Ok((steps + 2, gone))
}

/// One run over a fresh store: store steps per second once the store is full.
async fn run(steady: &[SessionKey], logins: &[SessionKey]) -> anyhow::Result<f64> {
    let store = MemoryStore::builder()
        .with_max_sessions(BOUND)
        .with_sweep_interval(None)
        .build();
    let mut now_ms = 1_700_000_000_000;
    for key in steady {
        store.create(key, &login(now_ms)).await?;
    }
    // Fill the store with logins while the steady users make requests, untimed.
    let fill = BOUND - STEADY_USERS;
    let mut gone = 0;
    for n in 0..fill {
        now_ms += 1;
        gone += round(&store, steady, logins, n, now_ms).await?.1;
    }
    anyhow::ensure!(store.len() == BOUND && store.evictions() == 0);
    let mut steps = 0;
    let started = Instant::now();
    for n in fill..logins.len() {
        now_ms += 1;
        let (taken, found_gone) = round(&store, steady, logins, n, now_ms).await?;
        steps += taken;
        gone += found_gone;
    }
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(gone == 0, "{gone} accesses found their session gone");
    anyhow::ensure!(
        store.evictions() == (logins.len() - fill) as u64,
        "{} evictions for {} logins",
        store.evictions(),
        logins.len() - fill
    );
    Ok(steps as f64 / elapsed)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let steady = keys(STEADY_USERS)?;
    let logins = keys(BOUND - STEADY_USERS + ROUNDS)?;
    println!(
        "machine: {} cores; bound {BOUND}; {STEADY_USERS} steady users; {ROUNDS} logins a run",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut rates = Vec::with_capacity(REPETITIONS);
    for _ in 0..REPETITIONS {
        let rate = runtime.block_on(run(&steady, &logins))?;
        println!("run: {rate:.0} store steps/s");
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[REPETITIONS / 2];
    println!(
        "median: {median:.0} store steps/s ({:.0} ns per step)",
        1e9 / median
    );
    Ok(())
}
