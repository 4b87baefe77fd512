//! A rotation racing the per-user index, over every store: the entry a rotation writes for its
//! new session must survive a listing that runs before the session is created, however old the
//! session's login is, so that "log out everywhere" still ends it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, ensure};
use async_trait::async_trait;
use cloakroom_core::store::{Applied, Apply, Created, Fields, NewSession};
use cloakroom_core::{
    Clock, IndexEntry, ManualClock, Result, SessionConfig, SessionKey, SessionManager, Store,
    UserKey,
};
use cloakroom_test::StoreFixture;
use cloakroom_test::requests::{request, returned_cookie, token_of};
use tokio::sync::{Notify, Semaphore};

const SECRET: &[u8] = b"index-races-secret-0123456789abcdef0123456";

cloakroom_test::test_over_each_store!(
    a_rotation_stays_listed_through_a_listing_before_its_create,
    rotations_under_a_polling_listing_all_stay_listed,
);

/// A store whose `create` can be held at its start, to force an interleaving: the caller's
/// index entry is written, its session not yet.
#[derive(Debug)]
struct HeldCreates {
    inner: Arc<dyn Store>,
    hold: AtomicBool,
    reached: Notify,
    release: Semaphore,
}

impl HeldCreates {
    fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            hold: AtomicBool::new(false),
            reached: Notify::new(),
            release: Semaphore::new(0),
        }
    }
}

#[async_trait]
impl Store for HeldCreates {
    async fn create(&self, key: &SessionKey, session: &NewSession) -> Result<Created> {
        if self.hold.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            if let Ok(permit) = self.release.acquire().await {
                permit.forget();
            }
        }
        self.inner.create(key, session).await
    }
    async fn apply(&self, key: &SessionKey, apply: &Apply) -> Result<Applied> {
        self.inner.apply(key, apply).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<bool> {
        self.inner.delete(key).await
    }
    async fn peek(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Fields>> {
        self.inner.peek(key, now_ms).await
    }
    async fn index_add(&self, u: &UserKey, k: &SessionKey, deadline: u64, now: u64) -> Result<()> {
        self.inner.index_add(u, k, deadline, now).await
    }
    async fn index_remove(&self, user: &UserKey, entry: &IndexEntry, now_ms: u64) -> Result<()> {
        self.inner.index_remove(user, entry, now_ms).await
    }
    async fn index_members(&self, user: &UserKey, now_ms: u64) -> Result<Vec<IndexEntry>> {
        self.inner.index_members(user, now_ms).await
    }
}

/// A manager on a manual clock (so a login can be made old without waiting), its store, the
/// clock, and ann's cookie from a login made two minutes ago: well past the index's grace.
async fn ann_logged_in_long_ago(
    store: Arc<dyn Store>,
) -> anyhow::Result<(SessionManager, ManualClock, String)> {
    let clock = ManualClock::new(SystemTime::now());
    let config = SessionConfig::new(SECRET)?.with_clock(Arc::new(clock.clone()));
    let m = SessionManager::new(store, config)?;
    let s = m.session_from_cookie_headers([]);
    s.start()?;
    s.set_user("ann")?;
    let cookie = returned_cookie(&s.finish().await?.set_cookie).context("no login cookie")?;
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
    returned_cookie(&s.finish().await?.set_cookie).context("the rotation set no cookie")
}

const FORCED_ROUNDS: usize = 10;

async fn a_rotation_stays_listed_through_a_listing_before_its_create(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let held = Arc::new(HeldCreates::new(f.store.clone()));
    let (m, clock, mut cookie) = ann_logged_in_long_ago(held.clone()).await?;
    let mut escaped = 0;
    for _ in 0..FORCED_ROUNDS {
        held.hold.store(true, Ordering::SeqCst);
        let rotating = {
            let (m, cookie) = (m.clone(), cookie.clone());
            tokio::spawn(async move { rotate(&m, &cookie).await })
        };
        // The rotation has listed its new session and not created it: a listing runs now.
        held.reached.notified().await;
        m.sessions_of("ann").await?;
        held.release.add_permits(1);
        cookie = rotating.await??;
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
