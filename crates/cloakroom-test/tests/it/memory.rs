//! The conformance suite and memory-only behaviour (bound, sweeping).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::ensure;
use cloakroom_core::store::Store;
use cloakroom_core::{ManualClock, MemoryStore, SessionToken};
use cloakroom_test::conformance::{load, new_session};
use cloakroom_test::memory_fixture;

cloakroom_test::store_conformance!(memory_fixture());

proptest::proptest! {
    /// The memory store, driven by generated sequences of creates, increments, loads, deletes and
    /// waits, answers as the reference model does (`cloakroom_test::model`).
    #[test]
    fn the_memory_store_behaves_like_its_model(bytes in proptest::collection::vec(proptest::num::u8::ANY, 2..160)) {
        let steps = cloakroom_test::model::steps_from_bytes(&bytes);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
        let store = MemoryStore::builder().with_sweep_interval(None).build();
        runtime
            .block_on(cloakroom_test::model::check_against_model(&store, &steps))
            .map_err(proptest::test_runner::TestCaseError::fail)?;
    }
}

#[tokio::test]
async fn at_the_bound_the_session_idle_longest_is_evicted() -> anyhow::Result<()> {
    let store = MemoryStore::builder().with_max_sessions(3).build();
    let keys: Vec<_> = (0..3)
        .map(|_| SessionToken::generate().map(|t| t.key()))
        .collect::<Result<_, _>>()?;
    // Idle timeouts 1, 2, 3 minutes: the first expires soonest.
    for (i, k) in keys.iter().enumerate() {
        store
            .create(k, &new_session(&[], 60_000 * (i as u64 + 1), 3_600_000))
            .await?;
    }
    let newcomer = SessionToken::generate()?.key();
    store
        .create(&newcomer, &new_session(&[], 60_000, 3_600_000))
        .await?;
    ensure!(store.len() == 3, "bound not kept: {}", store.len());
    ensure!(store.evictions() == 1);
    ensure!(
        load(&store, &keys[0]).await?.is_none(),
        "the wrong session was evicted"
    );
    ensure!(load(&store, &keys[1]).await?.is_some());
    ensure!(load(&store, &keys[2]).await?.is_some());
    ensure!(load(&store, &newcomer).await?.is_some());
    Ok(())
}

#[tokio::test]
async fn expired_sessions_are_swept_without_being_accessed() -> anyhow::Result<()> {
    let clock = ManualClock::new(SystemTime::now());
    let store = MemoryStore::builder()
        .with_clock(Arc::new(clock.clone()))
        .with_sweep_interval(None)
        .build();
    for _ in 0..10 {
        let k = SessionToken::generate()?.key();
        store
            .create(&k, &new_session(&[], 1_000, 3_600_000))
            .await?;
    }
    ensure!(store.len() == 10);
    ensure!(store.sweep_expired() == 0);
    clock.advance(Duration::from_secs(2));
    ensure!(store.sweep_expired() == 10);
    ensure!(store.is_empty());
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_background_sweeper_runs_and_stops_with_the_store() -> anyhow::Result<()> {
    let clock = ManualClock::new(SystemTime::now());
    let store = MemoryStore::builder()
        .with_clock(Arc::new(clock.clone()))
        .with_sweep_interval(Some(Duration::from_secs(5)))
        .build();
    let k = SessionToken::generate()?.key();
    store
        .create(&k, &new_session(&[], 1_000, 3_600_000))
        .await?;
    clock.advance(Duration::from_secs(10));
    // Let the paused runtime fire the sweeper's next tick.
    tokio::time::sleep(Duration::from_secs(6)).await;
    ensure!(
        store.is_empty(),
        "the sweeper did not reclaim the expired session"
    );
    Ok(())
}
