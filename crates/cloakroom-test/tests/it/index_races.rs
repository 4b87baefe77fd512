//! A rotation racing the per-user index, over every store: the entry a rotation writes for its
//! new session must survive a listing that runs before the session is created, however old the
//! session's login is, so that "log out everywhere" still ends it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, ensure};
use cloakroom_core::adapter;
use cloakroom_core::{
    Clock, ManualClock, SessionConfig, SessionKey, SessionManager, Store, UserKey,
};
use cloakroom_test::StoreFixture;
use cloakroom_test::requests::{request, returned_cookie, token_of};

use crate::held::{Held, Hold, joined};

const SECRET: &[u8] = b"index-races-secret-0123456789abcdef0123456";

cloakroom_test::test_over_each_store!(
    a_rotation_stays_listed_through_a_listing_before_its_create,
    rotations_under_a_polling_listing_all_stay_listed,
);

/// A manager on a manual clock (so a login can be made old without waiting), its store, the
/// clock, and ann's cookie from a login made two minutes ago: well past the index's grace.
async fn ann_logged_in_long_ago(
    store: Arc<dyn Store>,
) -> anyhow::Result<(SessionManager, ManualClock, String)> {
    let clock = ManualClock::new(SystemTime::now());
    let config = SessionConfig::new(SECRET)?.with_clock(Arc::new(clock.clone()));
    let m = SessionManager::new(store, config)?;
    let s = adapter::session_from_cookie_headers(&m, []);
    s.start()?;
    s.set_user("ann")?;
    let cookie =
        returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no login cookie")?;
    clock.advance(Duration::from_secs(120));
    Ok((m, clock, cookie))
}

/// Whether `key` is in ann's index at the clock's time.
async fn listed(clock: &ManualClock, store: &dyn Store, key: &SessionKey) -> anyhow::Result<bool> {
    let now = u64::try_from(
        clock
            .now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_millis(),
    )?;
    Ok(store
        .index_members(&UserKey::of("ann"), now)
        .await?
        .iter()
        .any(|e| &e.key == key))
}

/// Rotates the session of `cookie` and returns the new cookie.
async fn rotate(m: &SessionManager, cookie: &str) -> anyhow::Result<String> {
    let s = request(m, cookie);
    ensure!(s.cycle_id().await?, "no session to rotate");
    returned_cookie(&adapter::finish(&s).await?.set_cookie).context("the rotation set no cookie")
}

const FORCED_ROUNDS: usize = 10;

async fn a_rotation_stays_listed_through_a_listing_before_its_create(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let held = Held::new(f.store.clone());
    let (m, clock, mut cookie) = ann_logged_in_long_ago(held.clone()).await?;
    let mut escaped = 0;
    for _ in 0..FORCED_ROUNDS {
        let rotating = {
            let (m, cookie) = (m.clone(), cookie.clone());
            held.in_flight(Hold::Create, async move { rotate(&m, &cookie).await })
        }
        .await;
        // The rotation has listed its new session and not created it: a listing runs now.
        m.sessions_of("ann").await?;
        held.let_go();
        cookie = joined(rotating).await??;
        if !listed(&clock, &*f.store, &token_of(&cookie)?.key()).await? {
            escaped += 1;
        }
        clock.advance(Duration::from_secs(1));
    }
    ensure!(
        escaped == 0,
        "{escaped} of {FORCED_ROUNDS} rotated sessions dropped out of the index"
    );
    // Log out everywhere ends the last one.
    ensure!(m.end_sessions_of("ann").await? == 1);
    ensure!(!request(&m, &cookie).exists().await?, "the session escaped");
    Ok(())
}

const UNFORCED_ROUNDS: usize = 200;

async fn rotations_under_a_polling_listing_all_stay_listed(f: StoreFixture) -> anyhow::Result<()> {
    let (m, clock, mut cookie) = ann_logged_in_long_ago(f.store.clone()).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let polling = {
        let (m, stop) = (m.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                m.sessions_of("ann").await?;
                tokio::task::yield_now().await;
            }
            anyhow::Ok(())
        })
    };
    let mut escaped = 0;
    for _ in 0..UNFORCED_ROUNDS {
        cookie = rotate(&m, &cookie).await?;
        if !listed(&clock, &*f.store, &token_of(&cookie)?.key()).await? {
            escaped += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    polling.await??;
    ensure!(
        escaped == 0,
        "{escaped} of {UNFORCED_ROUNDS} rotated sessions dropped out of the index"
    );
    ensure!(m.end_sessions_of("ann").await? == 1);
    ensure!(!request(&m, &cookie).exists().await?, "the session escaped");
    Ok(())
}
