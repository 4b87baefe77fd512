//! The conformance suite and memory-only behaviour (bound, sweeping).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::ensure;
use cloakroom_core::store::{
    Access, Applied, Apply, Delta, Fields, META_CREATED, META_DEADLINE, META_TOUCHED, NewSession,
    Store,
};
use cloakroom_core::{ManualClock, MemoryStore, SessionKey, SessionToken};
use cloakroom_test::conformance::new_session;
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

// A first visit after three other fields: the counter is a new field, refused at the model's
// bound of three, by the store and by the model's own expectation alike.
#[tokio::test]
async fn a_first_visit_past_the_field_bound_is_refused_as_the_model_says() -> anyhow::Result<()> {
    let steps = cloakroom_test::model::steps_from_bytes(&[0, 0, 5, 0, 5, 3, 5, 6, 1, 0]);
    let store = MemoryStore::builder().with_sweep_interval(None).build();
    cloakroom_test::model::check_against_model(&store, &steps)
        .await
        .map_err(anyhow::Error::msg)
}

// A login at `now_ms` with a 30-minute idle timeout and a 24-hour lifetime.
fn login_at(now_ms: u64) -> NewSession {
    let deadline_ms = now_ms + 24 * 3_600_000;
    let mut fields = Fields::new();
    fields.insert(META_CREATED.to_owned(), now_ms.to_string());
    fields.insert(META_DEADLINE.to_owned(), deadline_ms.to_string());
    NewSession {
        fields,
        access: Access {
            now_ms,
            idle_ms: 30 * 60_000,
            touch_ms: 0,
        },
        deadline_ms,
        origin: cloakroom_core::store::Origin::Login,
    }
}

// A request of the session at `now_ms` that loads it: true when the session answered.
async fn click_at(store: &MemoryStore, key: &SessionKey, now_ms: u64) -> anyhow::Result<bool> {
    let apply = Apply {
        access: Access {
            now_ms,
            idle_ms: 30 * 60_000,
            touch_ms: 0,
        },
        delta: Default::default(),
        load: true,
    };
    Ok(matches!(
        store.apply(key, &apply).await?,
        Applied::Done { .. }
    ))
}

fn keys(n: usize) -> anyhow::Result<Vec<SessionKey>> {
    (0..n)
        .map(|_| Ok(SessionToken::generate()?.key()))
        .collect()
}

// The demo's attack: `flood` logins at two a millisecond (one client, no credentials) into a
// store bounded at `bound`, while five users who logged in before click every 200 ms (staggered).
// Returns how many of the five were logged out.
async fn active_users_logged_out_by_a_flood(flood: usize, bound: usize) -> anyhow::Result<usize> {
    // Two logins a millisecond: 200 ms between clicks is 400 logins. User i clicks 80·i logins
    // out of step with user 0.
    const LOGINS_PER_CLICK: usize = 400;
    let store = MemoryStore::builder()
        .with_max_sessions(bound)
        .with_sweep_interval(None)
        .build();
    let mut now_ms = 1_700_000_000_000;
    let users = keys(5)?;
    for user in &users {
        store.create(user, &login_at(now_ms)).await?;
        ensure!(click_at(&store, user, now_ms).await?);
    }
    let mut logged_out = vec![false; users.len()];
    for (n, attacker) in keys(flood)?.iter().enumerate() {
        now_ms += (n % 2) as u64;
        store.create(attacker, &login_at(now_ms)).await?;
        for (i, user) in users.iter().enumerate() {
            let due = (n + i * LOGINS_PER_CLICK / users.len()).is_multiple_of(LOGINS_PER_CLICK);
            if due && !logged_out[i] {
                logged_out[i] = !click_at(&store, user, now_ms).await?;
            }
        }
    }
    // A last click of each user still logged in, after the flood.
    for (i, user) in users.iter().enumerate() {
        if !logged_out[i] {
            logged_out[i] = !click_at(&store, user, now_ms).await?;
        }
    }
    ensure!(store.len() <= bound, "bound not kept: {}", store.len());
    Ok(logged_out.iter().filter(|&&out| out).count())
}

/// The demo's flaw: 407 logins in half a second at a bound of 200 logged out every user clicking
/// every 200 ms, because the store evicted the session idle longest and a flood's logins are the
/// newest. The flood's sessions are never used after their login, so they evict each other.
#[tokio::test]
async fn a_login_flood_logs_out_no_active_user() -> anyhow::Result<()> {
    let logged_out = active_users_logged_out_by_a_flood(1_000, 200).await?;
    ensure!(
        logged_out == 0,
        "a flood of 1,000 logins at a bound of 200 logged out {logged_out} of 5 active users"
    );
    Ok(())
}

/// A session not used since its login is evicted before one in use, even one that would expire
/// sooner; among them the oldest goes first.
#[tokio::test]
async fn at_the_bound_a_session_unused_since_its_login_goes_before_one_in_use() -> anyhow::Result<()>
{
    let store = MemoryStore::builder()
        .with_max_sessions(3)
        .with_sweep_interval(None)
        .build();
    let now = 1_700_000_000_000;
    let [in_use, unused_1, unused_2] =
        <[SessionKey; 3]>::try_from(keys(3)?).map_err(|_| anyhow::anyhow!("three keys"))?;
    // The session in use expires soonest: it was used first and no one used the others since.
    store.create(&in_use, &login_at(now)).await?;
    ensure!(click_at(&store, &in_use, now).await?);
    store.create(&unused_1, &login_at(now + 1)).await?;
    store.create(&unused_2, &login_at(now + 2)).await?;
    let newcomers = keys(3)?;
    for (i, newcomer) in newcomers.iter().enumerate() {
        store
            .create(newcomer, &login_at(now + 3 + i as u64))
            .await?;
    }
    ensure!(store.len() == 3, "bound not kept: {}", store.len());
    ensure!(store.evictions() == 3);
    // The unused sessions went first, oldest first, then the oldest newcomer.
    ensure!(
        click_at(&store, &in_use, now + 10).await?,
        "the session in use was evicted"
    );
    ensure!(!click_at(&store, &unused_1, now + 10).await?);
    ensure!(!click_at(&store, &unused_2, now + 10).await?);
    ensure!(!click_at(&store, &newcomers[0], now + 10).await?);
    ensure!(click_at(&store, &newcomers[1], now + 10).await?);
    ensure!(click_at(&store, &newcomers[2], now + 10).await?);
    Ok(())
}

/// With no session on probation, the one idle the longest goes, whatever the order of creation.
#[tokio::test]
async fn at_the_bound_the_session_idle_longest_is_evicted() -> anyhow::Result<()> {
    let store = MemoryStore::builder()
        .with_max_sessions(3)
        .with_sweep_interval(None)
        .build();
    let now = 1_700_000_000_000;
    let keys = keys(3)?;
    for k in &keys {
        store.create(k, &login_at(now)).await?;
    }
    // All three in use; the second was used first, so it is idle longest.
    for (at, i) in [1, 0, 2].into_iter().enumerate() {
        ensure!(click_at(&store, &keys[i], now + 1 + at as u64).await?);
    }
    let newcomer = SessionToken::generate()?.key();
    store.create(&newcomer, &login_at(now + 4)).await?;
    ensure!(store.len() == 3, "bound not kept: {}", store.len());
    ensure!(store.evictions() == 1);
    ensure!(
        !click_at(&store, &keys[1], now + 5).await?,
        "the wrong session was evicted"
    );
    ensure!(click_at(&store, &keys[0], now + 5).await?);
    ensure!(click_at(&store, &keys[2], now + 5).await?);
    ensure!(click_at(&store, &newcomer, now + 5).await?);
    Ok(())
}

/// A full store of sessions in use still admits logins: a flood evicts the sessions idle longest
/// until a tenth of the bound holds sessions unused since their login, then only those.
#[tokio::test]
async fn a_flood_evicts_at_most_a_tenth_of_the_bound_in_use() -> anyhow::Result<()> {
    let store = MemoryStore::builder()
        .with_max_sessions(100)
        .with_sweep_interval(None)
        .build();
    let now = 1_700_000_000_000;
    let users = keys(100)?;
    for user in &users {
        store.create(user, &login_at(now)).await?;
    }
    // Used in turn, a millisecond apart: the first is idle longest.
    for (i, user) in users.iter().enumerate() {
        ensure!(click_at(&store, user, now + 1 + i as u64).await?);
    }
    for attacker in &keys(1_000)? {
        store.create(attacker, &login_at(now + 200)).await?;
    }
    ensure!(store.len() == 100 && store.evictions() == 1_000);
    for (i, user) in users.iter().enumerate() {
        let kept = click_at(&store, user, now + 300).await?;
        ensure!(
            kept == (i >= 10),
            "user {i} (idle longest first): kept {kept}"
        );
    }
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

// A load hands out the store's own copy of the fields, not a clone of every field; a write or
// a touch made while a request holds that copy gives the store a new one and leaves the
// request's as it was loaded.
#[tokio::test]
async fn loads_share_the_fields_and_a_later_write_leaves_them_as_loaded() -> anyhow::Result<()> {
    let store = MemoryStore::builder().with_sweep_interval(None).build();
    let k = SessionToken::generate()?.key();
    let now_ms = 1_000_000;
    store.create(&k, &login_at(now_ms)).await?;
    let at = |now_ms: u64, delta: Delta| Apply {
        access: Access {
            now_ms,
            idle_ms: 30 * 60_000,
            touch_ms: 60_000,
        },
        delta,
        load: true,
    };
    let loaded = |applied: Applied| match applied {
        Applied::Done {
            fields: Some(fields),
            ..
        } => Ok(fields),
        other => anyhow::bail!("no fields: {other:?}"),
    };
    // The first access touches the session (it has no `__touched` yet); the next two, within
    // the touch interval, write nothing.
    loaded(store.apply(&k, &at(now_ms, Delta::default())).await?)?;
    let first = loaded(store.apply(&k, &at(now_ms + 1, Delta::default())).await?)?;
    let second = loaded(store.apply(&k, &at(now_ms + 2, Delta::default())).await?)?;
    ensure!(
        Arc::ptr_eq(&first, &second),
        "a plain load cloned the fields"
    );

    let mut visit = Delta::default();
    visit.incr("visits", 1)?;
    let counted = loaded(store.apply(&k, &at(now_ms + 3, visit)).await?)?;
    ensure!(
        !Arc::ptr_eq(&first, &counted),
        "a write changed the fields in place"
    );
    ensure!(counted.get("visits").map(String::as_str) == Some("1"));
    ensure!(
        first.get("visits").is_none() && second.get("visits").is_none(),
        "a write changed the fields a request had loaded"
    );

    // A due touch, while a request holds the counted fields.
    let touched = loaded(
        store
            .apply(&k, &at(now_ms + 120_000, Delta::default()))
            .await?,
    )?;
    ensure!(
        !Arc::ptr_eq(&counted, &touched),
        "a touch changed the fields in place"
    );
    ensure!(counted.get(META_TOUCHED).map(String::as_str) == Some("1000000"));
    ensure!(touched.get(META_TOUCHED).map(String::as_str) == Some("1120000"));
    Ok(())
}
