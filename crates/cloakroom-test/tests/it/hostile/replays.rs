//! Validly signed tokens replayed after their session ended, or never issued at all.
//!
//! A signature cannot tell a live token from a dead one, so each costs exactly one lookup; the
//! expected outcome is that the lookup finds nothing, the request is anonymous, writes made
//! before the lookup are dropped, nothing is created, and the store still holds nothing under
//! the token afterwards. The response leaves the cookie alone: clearing it could erase the
//! cookie of a login that raced this request, and the next request pays one lookup again.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use cloakroom_core::adapter;
use cloakroom_core::{CookieSigner, CookieState, SessionConfig, SessionManager, SessionToken};
use cloakroom_test::StoreFixture;
use cloakroom_test::conformance::load;
use cloakroom_test::requests::{login, request, returned_cookie, token_of};

use super::{SECRET, counted};

cloakroom_test::test_over_memory_and_redis!(
    a_logged_out_token_replayed,
    an_idle_expired_token_replayed,
    a_token_past_its_absolute_lifetime_replayed,
    the_pre_login_token_replayed_after_login,
    a_token_replayed_after_its_id_was_cycled,
    a_signed_token_that_was_never_issued,
    a_logged_out_token_replayed_by_fifty_requests_at_once,
);

fn config() -> anyhow::Result<SessionConfig> {
    Ok(SessionConfig::new(SECRET)?)
}

/// Replays `cookie` as an attacker would (a blind write, an increment, a read) and checks the
/// expected outcome described at the top of this file.
async fn replay_finds_nothing(
    f: &StoreFixture,
    m: &SessionManager,
    counts: &cloakroom_test::CallCounts,
    cookie: &str,
) -> anyhow::Result<()> {
    let (calls, creates, unknown) = (
        counts.total(),
        counts.creates(),
        m.metrics().unknown_tokens(),
    );
    let s = request(m, cookie);
    ensure!(s.cookie_state() == CookieState::Valid);
    s.insert("username", "mallory")?;
    ensure!(s.incr("visits", 1).await?.is_none(), "an increment counted");
    ensure!(!s.exists().await?, "a session was found");
    ensure!(s.get::<String>("username").await?.is_none());
    let finished = adapter::finish(&s).await?;
    ensure!(
        finished.set_cookie.is_none(),
        "the response touched the cookie: {finished:?}"
    );
    ensure!(
        counts.total() == calls + 1,
        "{} store calls, expected one lookup",
        counts.total() - calls
    );
    ensure!(counts.creates() == creates, "something was created");
    ensure!(m.metrics().unknown_tokens() == unknown + 1);
    ensure!(
        load(f.store(), &token_of(cookie)?.key()).await?.is_none(),
        "the replay brought the session back"
    );
    Ok(())
}

async fn a_logged_out_token_replayed(f: StoreFixture) -> anyhow::Result<()> {
    let (m, counts) = counted(f.store.clone(), config()?)?;
    let cookie = login(&m, "ann").await?;
    let s = request(&m, &cookie);
    s.destroy();
    adapter::finish(&s).await?;
    replay_finds_nothing(&f, &m, &counts, &cookie).await
}

async fn an_idle_expired_token_replayed(f: StoreFixture) -> anyhow::Result<()> {
    let config = config()?.with_idle_timeout(Duration::from_millis(300));
    let (m, counts) = counted(f.store.clone(), config)?;
    let cookie = login(&m, "ann").await?;
    tokio::time::sleep(Duration::from_millis(900)).await;
    replay_finds_nothing(&f, &m, &counts, &cookie).await
}

async fn a_token_past_its_absolute_lifetime_replayed(f: StoreFixture) -> anyhow::Result<()> {
    // Kept busy every 100 ms, so only the absolute lifetime can end it.
    let config = config()?.with_absolute_timeout(Duration::from_millis(600));
    let (m, counts) = counted(f.store.clone(), config)?;
    let cookie = login(&m, "ann").await?;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(900) {
        request(&m, &cookie).exists().await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replay_finds_nothing(&f, &m, &counts, &cookie).await
}

async fn the_pre_login_token_replayed_after_login(f: StoreFixture) -> anyhow::Result<()> {
    let (m, counts) = counted(f.store.clone(), config()?)?;
    // A session the attacker planted (fixation), then the victim logs in with it.
    let planted = login(&m, "anonymous").await?;
    let s = request(&m, &planted);
    s.start()?;
    s.insert("username", "victim")?;
    let fresh = returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no new cookie")?;
    ensure!(fresh != planted, "login kept the planted token");
    replay_finds_nothing(&f, &m, &counts, &planted).await?;
    ensure!(request(&m, &fresh).get::<String>("username").await? == Some("victim".into()));
    Ok(())
}

async fn a_token_replayed_after_its_id_was_cycled(f: StoreFixture) -> anyhow::Result<()> {
    let (m, counts) = counted(f.store.clone(), config()?)?;
    let old = login(&m, "ann").await?;
    let s = request(&m, &old);
    ensure!(s.cycle_id().await?);
    let new = returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no new cookie")?;
    replay_finds_nothing(&f, &m, &counts, &old).await?;
    ensure!(request(&m, &new).get::<String>("username").await? == Some("ann".into()));
    Ok(())
}

async fn a_signed_token_that_was_never_issued(f: StoreFixture) -> anyhow::Result<()> {
    // Someone who holds the secret (or a bug) signs a token the server never issued: it must
    // not be adopted as a new session.
    let (m, counts) = counted(f.store.clone(), config()?)?;
    let value = CookieSigner::new(SECRET)?.sign(&SessionToken::generate()?);
    let cookie = format!("{}={value}", m.config().cookie_name());
    replay_finds_nothing(&f, &m, &counts, &cookie).await
}

async fn a_logged_out_token_replayed_by_fifty_requests_at_once(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let (m, counts) = counted(f.store.clone(), config()?)?;
    let cookie = login(&m, "ann").await?;
    let s = request(&m, &cookie);
    s.destroy();
    adapter::finish(&s).await?;
    let m = Arc::new(m);
    let creates = counts.creates();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (m, cookie) = (m.clone(), cookie.clone());
        tasks.push(tokio::spawn(async move {
            let s = request(&m, &cookie);
            s.insert("n", i)?;
            let counted = s.incr("visits", 1).await?;
            adapter::finish(&s).await?;
            anyhow::Ok(counted)
        }));
    }
    for task in tasks {
        ensure!(task.await??.is_none(), "a replay counted a visit");
    }
    ensure!(counts.creates() == creates, "a replay created a session");
    ensure!(load(f.store(), &token_of(&cookie)?.key()).await?.is_none());
    Ok(())
}
