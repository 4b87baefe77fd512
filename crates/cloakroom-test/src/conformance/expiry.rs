//! Expiry: the idle timeout, the touch interval, the absolute deadline, and that nothing over
//! comes back.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use cloakroom_core::SessionKey;
use cloakroom_core::store::{
    Access, Applied, Apply, Delta, Fields, META_IDLE, META_TOUCHED, Store,
};

use super::{LONG, access, incr, key, load, load_with, new_session, now_ms, run, set};

async fn wait_until_missing(
    store: &dyn Store,
    k: &SessionKey,
    within: Duration,
) -> anyhow::Result<()> {
    // Poll with writes, which must never bring the session back; bounded.
    let start = std::time::Instant::now();
    loop {
        if run(store, k, vec![set("poke", "1")]).await? == Applied::Missing {
            return Ok(());
        }
        if start.elapsed() > within {
            bail!("session still alive after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A session left idle past its timeout is gone.
pub async fn idle_session_expires(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    store
        .create(&k, &new_session(&[("a", "1")], 600, LONG))
        .await?;
    ensure!(load_with(store, &k, access(600)).await?.is_some());
    tokio::time::sleep(Duration::from_millis(900)).await;
    ensure!(
        load_with(store, &k, access(600)).await?.is_none(),
        "idle session still alive"
    );
    Ok(())
}

/// Every access restarts the idle timeout: an active session outlives it many times over.
pub async fn access_slides_the_idle_timeout(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    store.create(&k, &new_session(&[], 1_000, LONG)).await?;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        ensure!(
            load_with(store, &k, access(1_000)).await?.is_some(),
            "an active session expired"
        );
    }
    // 2 s of activity on a 1 s idle timeout; now idle.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    ensure!(load_with(store, &k, access(1_000)).await?.is_none());
    Ok(())
}

// The session's last touch, as stored.
fn touched(fields: &Fields) -> Option<u64> {
    fields
        .get(META_TOUCHED)
        .and_then(|t| cloakroom_core::store::parse_millis(t))
}

// A step at `now_ms` with an idle timeout of `idle_ms` and a touch interval of `touch_ms`.
async fn step_at(
    store: &dyn Store,
    key: &SessionKey,
    (now_ms, idle_ms, touch_ms): (u64, u64, u64),
    delta: Delta,
) -> anyhow::Result<Option<Fields>> {
    let apply = Apply {
        access: Access {
            now_ms,
            idle_ms,
            touch_ms,
        },
        delta,
        load: true,
    };
    match store.apply(key, &apply).await? {
        Applied::Missing => Ok(None),
        Applied::Done { fields, .. } => Ok(Some(fields.as_deref().cloned().context("no fields")?)),
        _ => bail!("unknown outcome"),
    }
}

/// A step touches the session (restarts its idle timeout) only once the touch interval has
/// passed since the last touch; loads, writes and increments alike. The times are the steps'
/// own (a manual clock): a store takes the time it is given.
pub async fn a_touch_is_due_only_after_the_interval(store: &dyn Store) -> anyhow::Result<()> {
    const IDLE: u64 = 600_000;
    const TOUCH: u64 = 10_000;
    let k = key()?;
    let session = new_session(&[("n", "1")], IDLE, LONG);
    let t0 = session.access.now_ms;
    store.create(&k, &session).await?;
    let at = |offset: u64| (t0 + offset, IDLE, TOUCH);
    let fields = step_at(store, &k, at(TOUCH - 1), Delta::default())
        .await?
        .context("missing")?;
    ensure!(touched(&fields) == Some(t0), "a load touched early");
    let mut write = Delta::default();
    write.set("a", "1")?;
    let fields = step_at(store, &k, at(TOUCH - 1), write)
        .await?
        .context("missing")?;
    ensure!(touched(&fields) == Some(t0), "a write touched early");
    let mut count = Delta::default();
    count.incr("n", 1)?;
    let fields = step_at(store, &k, at(TOUCH - 1), count.clone())
        .await?
        .context("missing")?;
    ensure!(touched(&fields) == Some(t0), "an increment touched early");
    ensure!(fields.get("n").map(String::as_str) == Some("2"));
    // Due: the increment is applied and the session touched in the same step.
    let fields = step_at(store, &k, at(TOUCH), count)
        .await?
        .context("missing")?;
    ensure!(
        touched(&fields) == Some(t0 + TOUCH),
        "a due step did not touch"
    );
    ensure!(fields.get("n").map(String::as_str) == Some("3"));
    // An interval of zero touches on every step.
    let fields = step_at(store, &k, (t0 + TOUCH + 1, IDLE, 0), Delta::default())
        .await?
        .context("missing")?;
    ensure!(touched(&fields) == Some(t0 + TOUCH + 1));
    Ok(())
}

/// The contract of the touch interval: a session ends between `idle − touch` and `idle` after
/// its last access, exactly `idle` after its last touch, never later; and a step after that
/// finds it gone for good.
pub async fn a_session_ends_within_idle_of_its_last_touch(store: &dyn Store) -> anyhow::Result<()> {
    const IDLE: u64 = 60_000;
    const TOUCH: u64 = 10_000;
    let (early, late) = (key()?, key()?);
    let session = new_session(&[], IDLE, LONG);
    let t0 = session.access.now_ms;
    store.create(&early, &session).await?;
    store.create(&late, &session).await?;
    // The last access of each, just before a touch would be due: it does not touch.
    let last = t0 + TOUCH - 1;
    for k in [&early, &late] {
        let fields = step_at(store, k, (last, IDLE, TOUCH), Delta::default())
            .await?
            .context("missing")?;
        ensure!(touched(&fields) == Some(t0));
    }
    // Alive until idle after its last touch (idle - touch + 1 after its last access) ...
    ensure!(
        step_at(
            store,
            &early,
            (t0 + IDLE - 1, IDLE, TOUCH),
            Delta::default()
        )
        .await?
        .is_some(),
        "ended before idle after its last touch"
    );
    // ... and over at that moment: the session is gone, and no write brings it back.
    ensure!(
        step_at(store, &late, (t0 + IDLE, IDLE, TOUCH), Delta::default())
            .await?
            .is_none(),
        "alive idle after its last touch"
    );
    let mut write = Delta::default();
    write.set("a", "1")?;
    ensure!(
        step_at(store, &late, (t0 + 1, IDLE, TOUCH), write)
            .await?
            .is_none()
    );
    ensure!(
        load(store, &late).await?.is_none(),
        "a session over came back"
    );
    Ok(())
}

/// A session with an idle timeout of its own ([`META_IDLE`]) is timed by it, not by the one the
/// step carries: longer ("remember me") and shorter alike, whoever sends the step. A value
/// that is not a valid time counts as none.
pub async fn a_session_is_timed_by_its_own_idle_timeout(store: &dyn Store) -> anyhow::Result<()> {
    const CONFIGURED: u64 = 60_000;
    const LONGER: u64 = 600_000;
    const SHORTER: u64 = 20_000;
    let mut keys = Vec::new();
    for own in [
        Some(LONGER.to_string()),
        Some(SHORTER.to_string()),
        Some("1e9".to_owned()),
    ] {
        let k = key()?;
        let mut session = new_session(&[], CONFIGURED, 10 * LONGER);
        if let Some(own) = own {
            session.fields.insert(META_IDLE.to_owned(), own);
        }
        store.create(&k, &session).await?;
        keys.push((k, session.access.now_ms));
    }
    let alive_at = |k: &SessionKey, at: u64| {
        let k = k.clone();
        async move {
            anyhow::Ok(
                step_at(store, &k, (at, CONFIGURED, 0), Delta::default())
                    .await?
                    .is_some(),
            )
        }
    };
    let [(longer, t_longer), (shorter, t_shorter), (bad, t_bad)] = &keys[..] else {
        bail!("three sessions")
    };
    // The longer one outlives the configured timeout the step names ...
    ensure!(
        alive_at(longer, t_longer + CONFIGURED + 1).await?,
        "a session's own longer idle timeout was not kept"
    );
    // ... and is timed from that touch by its own timeout, to the millisecond.
    let touched = t_longer + CONFIGURED + 1;
    ensure!(alive_at(longer, touched + LONGER - 1).await?);
    ensure!(
        !alive_at(longer, touched + LONGER - 1 + LONGER).await?,
        "alive past its own idle timeout"
    );
    // The shorter one ends before the configured timeout.
    ensure!(
        !alive_at(shorter, t_shorter + SHORTER).await?,
        "a session's own shorter idle timeout was not kept"
    );
    // A bad value counts as none: the configured timeout applies.
    ensure!(alive_at(bad, t_bad + CONFIGURED - 1).await?);
    ensure!(!alive_at(bad, t_bad + CONFIGURED - 1 + CONFIGURED).await?);
    Ok(())
}

/// The absolute deadline ends a session however active it is, and a step dated after it
/// removes the session for good.
pub async fn absolute_deadline_ends_an_active_session(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    store.create(&k, &new_session(&[], LONG, 500)).await?;
    // A clock that has jumped past the deadline sees no session, and the session is gone.
    let late = Access {
        now_ms: now_ms() + 1_000,
        idle_ms: LONG,
        touch_ms: 0,
    };
    ensure!(load_with(store, &k, late).await?.is_none());
    ensure!(
        load(store, &k).await?.is_none(),
        "a session past its deadline came back"
    );
    // Real time: active every 100 ms, still ended by the 1 s deadline.
    let k = key()?;
    let start = std::time::Instant::now();
    store.create(&k, &new_session(&[], LONG, 1_000)).await?;
    while start.elapsed() < Duration::from_millis(600) {
        ensure!(
            load(store, &k).await?.is_some(),
            "ended before its deadline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until_missing(store, &k, Duration::from_millis(2_000)).await
}

/// After expiry, writes and increments report `Missing` and nothing comes back.
pub async fn expired_session_is_not_resurrected_by_a_write(
    store: &dyn Store,
) -> anyhow::Result<()> {
    let k = key()?;
    store
        .create(&k, &new_session(&[("a", "1")], 200, LONG))
        .await?;
    tokio::time::sleep(Duration::from_millis(350)).await;
    ensure!(run(store, &k, vec![set("a", "2")]).await? == Applied::Missing);
    ensure!(run(store, &k, vec![incr("visits", 1)]).await? == Applied::Missing);
    ensure!(
        load(store, &k).await?.is_none(),
        "a write resurrected an expired session"
    );
    Ok(())
}

/// A session whose deadline has already passed cannot be created.
pub async fn create_with_past_deadline_is_refused(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    let mut session = new_session(&[], LONG, LONG);
    session.deadline_ms = session.access.now_ms.saturating_sub(1);
    let result = store.create(&k, &session).await;
    ensure!(result.is_err(), "{result:?}");
    ensure!(load(store, &k).await?.is_none());
    Ok(())
}
