//! Handle-level tests: the Session API over both stores, as a request would use it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, ensure};
use cloakroom_core::adapter;
use cloakroom_core::{
    Clock, CookieState, ErrorKind, ManualClock, MemoryStore, SessionConfig, SessionLimits,
    SessionManager, SessionToken, Store,
};
use cloakroom_test::requests::{login, request, returned_cookie};
use cloakroom_test::{CountingStore, StoreFixture};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

fn manager(store: Arc<dyn Store>) -> anyhow::Result<SessionManager> {
    Ok(SessionManager::new(store, SessionConfig::new(SECRET)?)?)
}

cloakroom_test::test_over_each_store!(
    login_then_read_and_count,
    reads_see_the_requests_own_writes,
    logout_invalidates_the_old_cookie,
    login_rotation_invalidates_the_pre_login_token,
    cycle_id_keeps_data_and_kills_the_old_token,
    concurrent_requests_writing_different_fields_both_survive,
    concurrent_increments_through_handles_lose_none,
    forged_and_garbage_cookies_never_reach_the_store,
    writes_without_a_session_are_refused,
    reserved_fields_cannot_be_written,
    an_untouched_session_costs_no_store_access,
    a_write_to_an_expired_session_creates_nothing,
    cycle_id_racing_a_logout_does_not_resurrect,
    save_reports_whether_the_session_exists,
    increments_beyond_the_exact_range_are_refused,
    a_rotated_secret_keeps_sessions_until_the_old_key_retires,
    a_next_key_accepts_cookies_of_instances_that_already_sign_with_it,
    attacks_and_broken_input_are_counted,
    limits_refuse_oversized_writes_and_write_nothing,
    concurrent_duplicate_logins_get_distinct_tokens,
    a_request_touches_the_session_only_when_due,
);

async fn login_then_read_and_count(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let cookie = login(&m, "ann").await?;
    for expected in 1..=3 {
        let s = request(&m, &cookie);
        ensure!(s.incr("visits", 1).await? == Some(expected));
        ensure!(s.get::<String>("username").await?.as_deref() == Some("ann"));
        let finished = adapter::finish(&s).await?;
        ensure!(
            finished.set_cookie.is_none(),
            "an ordinary request re-set the cookie"
        );
        ensure!(finished.accessed);
    }
    Ok(())
}

async fn reads_see_the_requests_own_writes(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let cookie = login(&m, "ann").await?;
    let s = request(&m, &cookie);
    s.insert("theme", "dark")?;
    ensure!(s.get::<String>("theme").await?.as_deref() == Some("dark"));
    s.remove("username")?;
    ensure!(s.get::<String>("username").await?.is_none());
    s.insert("n", 5)?;
    ensure!(
        s.incr("n", 1).await? == Some(6),
        "incr must see the buffered set"
    );
    adapter::finish(&s).await?;
    let s = request(&m, &cookie);
    ensure!(s.get::<String>("theme").await?.as_deref() == Some("dark"));
    ensure!(s.get::<String>("username").await?.is_none());
    ensure!(s.get::<i64>("n").await? == Some(6));
    let err = s.get::<i64>("theme").await.err().map(|e| e.kind());
    ensure!(err == Some(ErrorKind::Decode), "{err:?}");
    Ok(())
}

async fn logout_invalidates_the_old_cookie(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let cookie = login(&m, "ann").await?;
    let s = request(&m, &cookie);
    s.destroy();
    let finished = adapter::finish(&s).await?;
    ensure!(
        returned_cookie(&finished.set_cookie).as_deref() == Some(""),
        "logout did not clear the cookie"
    );
    // A browser (or thief) replaying the old cookie is anonymous, and gets nothing written.
    let s = request(&m, &cookie);
    ensure!(!s.exists().await?);
    ensure!(s.incr("visits", 1).await?.is_none());
    let finished = adapter::finish(&s).await?;
    // A dead token is left alone: clearing it could destroy a newer cookie set meanwhile.
    ensure!(finished.set_cookie.is_none(), "{:?}", finished.set_cookie);
    Ok(())
}

async fn login_rotation_invalidates_the_pre_login_token(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let before = login(&m, "guest").await?;
    // Logging in again from a browser holding `before`.
    let s = request(&m, &before);
    s.start()?;
    s.insert("username", "ann")?;
    let after = returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no new cookie")?;
    ensure!(after != before, "the token did not change at login");
    ensure!(
        !request(&m, &before).exists().await?,
        "the pre-login token still works"
    );
    let s = request(&m, &after);
    ensure!(s.get::<String>("username").await?.as_deref() == Some("ann"));
    ensure!(
        s.get::<i64>("visits").await?.is_none(),
        "old data leaked into the new session"
    );
    Ok(())
}

async fn cycle_id_keeps_data_and_kills_the_old_token(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let old = login(&m, "ann").await?;
    let s = request(&m, &old);
    s.insert("cart", vec![1, 2, 3])?;
    ensure!(s.cycle_id().await?);
    let new = returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no new cookie")?;
    ensure!(new != old);
    ensure!(!request(&m, &old).exists().await?);
    let s = request(&m, &new);
    ensure!(s.get::<String>("username").await?.as_deref() == Some("ann"));
    ensure!(s.get::<Vec<i32>>("cart").await? == Some(vec![1, 2, 3]));
    Ok(())
}

async fn concurrent_requests_writing_different_fields_both_survive(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let cookie = login(&m, "ann").await?;
    // Both requests load the session before either saves: the classic lost-update schedule.
    let a = request(&m, &cookie);
    let b = request(&m, &cookie);
    ensure!(a.exists().await? && b.exists().await?);
    a.insert("theme", "dark")?;
    b.insert("lang", "fr")?;
    let (ra, rb) = tokio::join!(adapter::finish(&a), adapter::finish(&b));
    ra?;
    rb?;
    let s = request(&m, &cookie);
    ensure!(s.get::<String>("theme").await?.as_deref() == Some("dark"));
    ensure!(s.get::<String>("lang").await?.as_deref() == Some("fr"));
    ensure!(s.get::<String>("username").await?.as_deref() == Some("ann"));
    Ok(())
}

async fn concurrent_increments_through_handles_lose_none(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let cookie = login(&m, "ann").await?;
    let tasks: Vec<_> = (0..2000)
        .map(|_| {
            let s = request(&m, &cookie);
            tokio::spawn(async move {
                let v = s.incr("visits", 1).await?;
                adapter::finish(&s).await?;
                Ok::<_, cloakroom_core::Error>(v)
            })
        })
        .collect();
    let mut values = Vec::new();
    for t in tasks {
        values.push(t.await??.context("session vanished")?);
    }
    values.sort_unstable();
    ensure!(
        values == (1..=2000).collect::<Vec<_>>(),
        "increments were lost or duplicated"
    );
    ensure!(request(&m, &cookie).get::<i64>("visits").await? == Some(2000));
    Ok(())
}

async fn forged_and_garbage_cookies_never_reach_the_store(f: StoreFixture) -> anyhow::Result<()> {
    let counting = CountingStore::new(f.store.clone());
    let counts = counting.counts();
    let m = manager(Arc::new(counting))?;
    let name = m.config().cookie_name().to_owned();
    let real = login(&m, "ann").await?;
    let real_value = real
        .split_once('=')
        .map(|x| x.1)
        .unwrap_or_default()
        .to_owned();
    let other_key = SessionManager::new(
        Arc::new(MemoryStore::new()),
        SessionConfig::new(b"another-secret-another-secret-another!!")?,
    )?;
    let foreign = login(&other_key, "eve").await?;
    let token = SessionToken::generate()?.to_text();
    let cases: Vec<String> = vec![
        format!("{name}="),
        format!("{name}=garbage"),
        format!("{name}={token}"),
        format!("{name}={token}.AAAA"),
        format!("{name}={real_value}x"),
        format!("{name}={}", &real_value[..real_value.len() - 1]),
        format!("{name}={}", real_value.to_uppercase()),
        format!("{name}=\"{real_value}\""),
        format!("{name}={}", real_value.replace('.', "%2E")),
        format!("{name}={real_value}; {name}={real_value}"),
        foreign.clone(),
        format!("{name}={}", "A".repeat(10_000)),
        format!("{name}=\u{0}\u{1}"),
    ];
    let before = counts.total();
    for case in &cases {
        let s = request(&m, case);
        ensure!(
            s.cookie_state() == CookieState::Invalid,
            "{case:?} was not rejected"
        );
        ensure!(!s.exists().await?, "{case:?} found a session");
        ensure!(s.incr("visits", 1).await?.is_none());
        ensure!(s.get::<String>("username").await?.is_none());
        let finished = adapter::finish(&s).await?;
        ensure!(
            returned_cookie(&finished.set_cookie).as_deref() == Some(""),
            "{case:?}: bad cookie not cleared"
        );
    }
    ensure!(
        counts.total() == before,
        "rejected cookies reached the store {} times",
        counts.total() - before
    );
    // And the real cookie still works, through the same counting store.
    let s = request(&m, &real);
    ensure!(s.cookie_state() == CookieState::Valid);
    ensure!(s.exists().await?);
    ensure!(counts.total() == before + 1);
    Ok(())
}

async fn writes_without_a_session_are_refused(f: StoreFixture) -> anyhow::Result<()> {
    let counting = CountingStore::new(f.store.clone());
    let counts = counting.counts();
    let m = manager(Arc::new(counting))?;
    let s = adapter::session_from_cookie_headers(&m, []);
    let err = s.insert("a", "b").err().map(|e| e.kind());
    ensure!(err == Some(ErrorKind::NoSession), "{err:?}");
    ensure!(s.incr("visits", 1).await?.is_none());
    ensure!(!s.cycle_id().await?);
    let finished = adapter::finish(&s).await?;
    ensure!(finished.set_cookie.is_none());
    ensure!(
        counts.total() == 0,
        "an anonymous request reached the store"
    );
    Ok(())
}

async fn reserved_fields_cannot_be_written(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let cookie = login(&m, "ann").await?;
    let s = request(&m, &cookie);
    for name in ["__deadline", "__created", "__x", ""] {
        let kinds = [
            s.insert(name, 0).err().map(|e| e.kind()),
            s.remove(name).err().map(|e| e.kind()),
            s.incr(name, 1).await.err().map(|e| e.kind()),
        ];
        ensure!(
            kinds
                .iter()
                .all(|k| *k == Some(ErrorKind::InvalidFieldName)),
            "{name:?}: {kinds:?}"
        );
    }
    Ok(())
}

async fn an_untouched_session_costs_no_store_access(f: StoreFixture) -> anyhow::Result<()> {
    let counting = CountingStore::new(f.store.clone());
    let counts = counting.counts();
    let m = manager(Arc::new(counting))?;
    let cookie = login(&m, "ann").await?;
    let before = counts.total();
    let s = request(&m, &cookie);
    let finished = adapter::finish(&s).await?;
    ensure!(
        counts.total() == before,
        "a request that never used its session reached the store"
    );
    ensure!(!finished.accessed && finished.set_cookie.is_none());
    Ok(())
}

async fn a_write_to_an_expired_session_creates_nothing(f: StoreFixture) -> anyhow::Result<()> {
    let config = SessionConfig::new(SECRET)?.with_idle_timeout(Duration::from_millis(200));
    let m = SessionManager::new(f.store.clone(), config)?;
    let cookie = login(&m, "ann").await?;
    tokio::time::sleep(Duration::from_millis(350)).await;
    let s = request(&m, &cookie);
    s.insert("late", "write")?; // buffered: the session is not known to be gone yet
    ensure!(!s.save().await?, "save reported a live session");
    let finished = adapter::finish(&s).await?;
    ensure!(finished.set_cookie.is_none());
    let s = request(&m, &cookie);
    ensure!(!s.exists().await?, "the write resurrected the session");
    Ok(())
}

// Deterministic expiry through the handle, on the memory store with a manual clock.

fn clocked() -> anyhow::Result<(SessionManager, ManualClock)> {
    let clock = ManualClock::new(SystemTime::now());
    let store = MemoryStore::builder()
        .with_clock(Arc::new(clock.clone()))
        .with_sweep_interval(None)
        .build();
    let config = SessionConfig::new(SECRET)?
        .with_idle_timeout(Duration::from_secs(30 * 60))
        .with_absolute_timeout(Duration::from_secs(24 * 3600))
        .with_clock(Arc::new(clock.clone()));
    Ok((SessionManager::new(Arc::new(store), config)?, clock))
}

/// A manager over a memory store holding at most `max` sessions, both on one manual clock.
fn at_the_bound(max: usize) -> anyhow::Result<(SessionManager, ManualClock, MemoryStore)> {
    let clock = ManualClock::new(SystemTime::now());
    let store = MemoryStore::builder()
        .with_max_sessions(max)
        .with_clock(Arc::new(clock.clone()))
        .with_sweep_interval(None)
        .build();
    let config = SessionConfig::new(SECRET)?.with_clock(Arc::new(clock.clone()));
    let m = SessionManager::new(Arc::new(store.clone()), config)?;
    Ok((m, clock, store))
}

/// The demo's login flood through the handle, at a bound of 200: 1,000 logins at two a
/// millisecond while five users who logged in before read their session every 200 ms. An
/// ordinary request uses the session, so theirs are evicted after the flood's, which are not.
#[tokio::test]
async fn a_login_flood_through_the_handle_logs_out_no_active_user() -> anyhow::Result<()> {
    let (m, clock, store) = at_the_bound(200)?;
    let mut users = Vec::new();
    for name in ["ann", "bob", "cy", "dee", "eve"] {
        let cookie = login(&m, name).await?;
        // The page the login redirects to.
        ensure!(
            request(&m, &cookie)
                .get::<String>("username")
                .await?
                .as_deref()
                == Some(name)
        );
        users.push((name, cookie));
    }
    for n in 0..1_000usize {
        if n % 2 == 1 {
            clock.advance(Duration::from_millis(1));
        }
        login(&m, "mallory").await?;
        for (i, (name, cookie)) in users.iter().enumerate() {
            if (n + 80 * i).is_multiple_of(400) {
                let s = request(&m, cookie);
                let seen = s.get::<String>("username").await?;
                adapter::finish(&s).await?;
                ensure!(
                    seen.as_deref() == Some(*name),
                    "{name} was logged out after {n} logins"
                );
            }
        }
    }
    ensure!(store.len() == 200 && store.evictions() == 805);
    Ok(())
}

#[tokio::test]
async fn a_session_rotated_during_a_login_flood_stays_in_use() -> anyhow::Result<()> {
    // A new id for a session in use (privileges changed) carries its use over: the flood's
    // logins, never used, go first, even before the user's next request.
    let (m, clock, _) = at_the_bound(200)?;
    let cookie = login(&m, "ann").await?;
    ensure!(request(&m, &cookie).exists().await?);
    for n in 0..1_000usize {
        clock.advance(Duration::from_millis(1));
        login(&m, "mallory").await?;
        if n == 500 {
            let s = request(&m, &cookie);
            ensure!(
                s.cycle_id().await?,
                "ann was logged out before the rotation"
            );
            let rotated =
                returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no cookie")?;
            for _ in 0..400 {
                clock.advance(Duration::from_millis(1));
                login(&m, "mallory").await?;
            }
            ensure!(
                request(&m, &rotated).exists().await?,
                "the rotated session was evicted by the flood"
            );
            return Ok(());
        }
    }
    anyhow::bail!("the flood ended before the rotation")
}

#[tokio::test]
async fn sliding_ttl_keeps_an_active_session_alive() -> anyhow::Result<()> {
    let (m, clock) = clocked()?;
    let cookie = login(&m, "ann").await?;
    // Ten hours of a request every 20 minutes: far past the 30-minute idle timeout.
    for _ in 0..30 {
        clock.advance(Duration::from_secs(20 * 60));
        // Reads count as activity.
        ensure!(
            request(&m, &cookie).exists().await?,
            "an active session expired"
        );
    }
    Ok(())
}

#[tokio::test]
async fn idle_past_the_ttl_logs_out() -> anyhow::Result<()> {
    let (m, clock) = clocked()?;
    let cookie = login(&m, "ann").await?;
    clock.advance(Duration::from_secs(29 * 60));
    ensure!(request(&m, &cookie).exists().await?);
    clock.advance(Duration::from_secs(31 * 60));
    ensure!(
        !request(&m, &cookie).exists().await?,
        "idle session still alive"
    );
    Ok(())
}

#[tokio::test]
async fn the_absolute_lifetime_ends_even_an_active_session() -> anyhow::Result<()> {
    let (m, clock) = clocked()?;
    let cookie = login(&m, "ann").await?;
    let mut alive_for = Duration::ZERO;
    while request(&m, &cookie).incr("visits", 1).await?.is_some() {
        clock.advance(Duration::from_secs(10 * 60));
        alive_for += Duration::from_secs(10 * 60);
        ensure!(
            alive_for <= Duration::from_secs(25 * 3600),
            "the session outlived 24 h"
        );
    }
    ensure!(
        alive_for >= Duration::from_secs(23 * 3600),
        "ended early: {alive_for:?}"
    );
    // Rotation does not extend the absolute lifetime either.
    let (m, clock) = clocked()?;
    let mut cookie = login(&m, "ann").await?;
    for _ in 0..(23 * 3) {
        clock.advance(Duration::from_secs(20 * 60));
        ensure!(request(&m, &cookie).exists().await?);
    }
    let s = request(&m, &cookie);
    ensure!(s.cycle_id().await?);
    cookie = returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no cookie")?;
    clock.advance(Duration::from_secs(2 * 3600));
    ensure!(
        !request(&m, &cookie).exists().await?,
        "rotation extended the lifetime"
    );
    Ok(())
}

#[tokio::test]
async fn a_clock_jumping_back_does_not_revive_an_expired_session() -> anyhow::Result<()> {
    let (m, clock) = clocked()?;
    let cookie = login(&m, "ann").await?;
    let start = SystemTime::now();
    clock.advance(Duration::from_secs(3600));
    ensure!(!request(&m, &cookie).exists().await?);
    clock.set(start);
    ensure!(
        !request(&m, &cookie).exists().await?,
        "expired session revived by the clock"
    );
    Ok(())
}

async fn cycle_id_racing_a_logout_does_not_resurrect(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let cookie = login(&m, "ann").await?;
    // Request A loads the session and rotates it; before A ends, request B logs out.
    let a = request(&m, &cookie);
    ensure!(a.cycle_id().await?);
    let b = request(&m, &cookie);
    b.destroy();
    adapter::finish(&b).await?;
    let finished = adapter::finish(&a).await?;
    let returned = returned_cookie(&finished.set_cookie);
    ensure!(
        returned.as_deref().is_none_or(str::is_empty),
        "rotation issued a cookie for a logged-out session: {returned:?}"
    );
    ensure!(!request(&m, &cookie).exists().await?);
    ensure!(!a.exists().await?, "the rotated copy is still live");
    Ok(())
}

async fn save_reports_whether_the_session_exists(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let cookie = login(&m, "ann").await?;
    ensure!(
        request(&m, &cookie).save().await?,
        "a live session with no writes saved as gone"
    );
    let s = request(&m, &cookie);
    s.insert("a", 1)?;
    ensure!(s.save().await?);
    let s = request(&m, &cookie);
    s.destroy();
    ensure!(!s.save().await?);
    ensure!(!request(&m, &cookie).save().await?);
    Ok(())
}

async fn increments_beyond_the_exact_range_are_refused(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let cookie = login(&m, "ann").await?;
    let s = request(&m, &cookie);
    ensure!(s.incr("n", -1).await? == Some(-1));
    for by in [(1i64 << 53) + 1, i64::MAX, i64::MIN] {
        let kind = s.incr("n", by).await.err().map(|e| e.kind());
        ensure!(kind == Some(ErrorKind::OutOfRange), "{by}: {kind:?}");
    }
    ensure!(s.get::<i64>("n").await? == Some(-1));
    Ok(())
}

async fn a_rotated_secret_keeps_sessions_until_the_old_key_retires(
    f: StoreFixture,
) -> anyhow::Result<()> {
    const NEW_SECRET: &[u8] = b"the-next-secret-key-0123456789abcdef-rotated";
    let counting = CountingStore::new(f.store.clone());
    let counts = counting.counts();
    let store: Arc<dyn Store> = Arc::new(counting);
    // Before the rotation: the old key signs.
    let old = SessionManager::new(store.clone(), SessionConfig::new(SECRET)?)?;
    let old_cookie = login(&old, "ann").await?;
    // The rotation: the new key signs, the old one verifies for one more hour.
    // The retirement is an hour after the clock's start, to the millisecond: the clock, not
    // the time this test takes, decides when the old key retires.
    let start = SystemTime::now();
    let clock = ManualClock::new(start);
    let rotated_config = SessionConfig::new(NEW_SECRET)?
        .with_previous_secret(SECRET, start + Duration::from_secs(3600))?
        // Longer than the hour the clock jumps below, so no session simply goes idle.
        .with_idle_timeout(Duration::from_secs(4 * 3600))
        .with_clock(Arc::new(clock.clone()));
    let rotated = SessionManager::new(store.clone(), rotated_config)?;
    let s = request(&rotated, &old_cookie);
    ensure!(s.cookie_state() == CookieState::Valid);
    ensure!(
        s.incr("visits", 1).await? == Some(1),
        "the old key's session is lost"
    );
    ensure!(adapter::finish(&s).await?.set_cookie.is_none());
    // New logins are signed with the new key: a server that knows only the old key refuses them.
    let new_cookie = login(&rotated, "bob").await?;
    ensure!(request(&old, &new_cookie).cookie_state() == CookieState::Invalid);
    ensure!(request(&rotated, &new_cookie).exists().await?);

    // An hour later the old key has retired: its cookie is a forgery, refused before the store.
    clock.advance(Duration::from_secs(3600));
    let before = counts.total();
    let s = request(&rotated, &old_cookie);
    ensure!(s.cookie_state() == CookieState::Invalid);
    ensure!(s.incr("visits", 1).await?.is_none());
    ensure!(
        returned_cookie(&adapter::finish(&s).await?.set_cookie).as_deref() == Some(""),
        "the retired key's cookie was not cleared"
    );
    ensure!(
        counts.total() == before,
        "a retired key's cookie reached the store"
    );
    // The new key's sessions are untouched by the retirement.
    ensure!(request(&rotated, &new_cookie).exists().await?);
    Ok(())
}

/// A rolling rotation: instance B already signs with the new key while instance A still signs
/// with the old one. A knows the new key as next, so a user who logged in on B and lands on A
/// keeps the session; without it, A took the cookie for a forgery and cleared it.
async fn a_next_key_accepts_cookies_of_instances_that_already_sign_with_it(
    f: StoreFixture,
) -> anyhow::Result<()> {
    const NEW_SECRET: &[u8] = b"the-next-secret-key-0123456789abcdef-rotated";
    let counting = CountingStore::new(f.store.clone());
    let counts = counting.counts();
    let store: Arc<dyn Store> = Arc::new(counting);
    let in_a_day = SystemTime::now() + Duration::from_secs(86_400);
    // Phase 1 on A: the old key signs, the new one is announced.
    let a = SessionManager::new(
        store.clone(),
        SessionConfig::new(SECRET)?.with_next_secret(NEW_SECRET)?,
    )?;
    // Phase 2 on B: the new key signs, the old one verifies until it retires.
    let b = SessionManager::new(
        store.clone(),
        SessionConfig::new(NEW_SECRET)?.with_previous_secret(SECRET, in_a_day)?,
    )?;
    // An instance not yet told about the new key: what A was before this change.
    let unaware = manager(store.clone())?;

    let cookie_from_b = login(&b, "bob").await?;
    let s = request(&a, &cookie_from_b);
    ensure!(
        s.cookie_state() == CookieState::Valid,
        "A refused a cookie signed with its next key"
    );
    ensure!(s.get::<String>("username").await?.as_deref() == Some("bob"));
    ensure!(s.incr("visits", 1).await? == Some(1));
    ensure!(
        adapter::finish(&s).await?.set_cookie.is_none(),
        "A re-set the cookie"
    );
    let before = counts.total();
    let s = request(&unaware, &cookie_from_b);
    ensure!(s.cookie_state() == CookieState::Invalid);
    ensure!(
        returned_cookie(&adapter::finish(&s).await?.set_cookie).as_deref() == Some(""),
        "the unaware instance kept a cookie it cannot verify"
    );
    ensure!(
        counts.total() == before,
        "an unverified cookie reached the store"
    );

    // A still signs with the old key, so its logins work on every instance of either phase.
    let cookie_from_a = login(&a, "ann").await?;
    for instance in [&a, &b, &unaware] {
        let s = request(instance, &cookie_from_a);
        ensure!(s.cookie_state() == CookieState::Valid);
        ensure!(s.get::<String>("username").await?.as_deref() == Some("ann"));
        adapter::finish(&s).await?;
    }
    // And bob's session, visited on A, is the same one on B.
    let s = request(&b, &cookie_from_b);
    ensure!(s.get::<i64>("visits").await? == Some(1));
    adapter::finish(&s).await?;
    Ok(())
}

async fn attacks_and_broken_input_are_counted(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let metrics = m.metrics();
    let name = m.config().cookie_name().to_owned();
    ensure!(metrics.forged_cookies() == 0 && metrics.unknown_tokens() == 0);
    let cookie = login(&m, "ann").await?;

    // Forged: a tampered signature, and a value longer than any issued cookie.
    let tampered = format!("{}x", &cookie[..cookie.len() - 1]);
    let oversized = format!("{name}={}", "A".repeat(4096));
    for forged in [&tampered, &oversized] {
        ensure!(request(&m, forged).cookie_state() == CookieState::Invalid);
    }
    ensure!(metrics.forged_cookies() == 2, "{metrics:?}");
    ensure!(metrics.oversized_cookies() == 1, "{metrics:?}");

    // A field that does not decode to the type asked for.
    let s = request(&m, &cookie);
    ensure!(s.get::<i64>("username").await.is_err());
    adapter::finish(&s).await?;
    ensure!(metrics.decode_errors() == 1, "{metrics:?}");

    // A validly signed token replayed after logout, through a read and through an increment.
    let s = request(&m, &cookie);
    s.destroy();
    adapter::finish(&s).await?;
    ensure!(
        metrics.unknown_tokens() == 0,
        "a live session counted as unknown"
    );
    ensure!(!request(&m, &cookie).exists().await?);
    ensure!(request(&m, &cookie).incr("visits", 1).await?.is_none());
    ensure!(metrics.unknown_tokens() == 2, "{metrics:?}");
    // None of this counted anything else.
    ensure!(metrics.forged_cookies() == 2 && metrics.decode_errors() == 1);
    Ok(())
}

async fn limits_refuse_oversized_writes_and_write_nothing(f: StoreFixture) -> anyhow::Result<()> {
    let limits = SessionLimits::default()
        .with_max_field_name_bytes(8)
        .with_max_value_bytes(16)
        .with_max_fields(3)
        .with_max_session_bytes(40);
    let config = SessionConfig::new(SECRET)?.with_limits(limits);
    let m = SessionManager::new(f.store.clone(), config)?;
    let too_large =
        |r: cloakroom_core::Result<()>| r.err().map(|e| e.kind()) == Some(ErrorKind::TooLarge);

    // While starting a session (its content is known).
    let s = adapter::session_from_cookie_headers(&m, []);
    s.start()?;
    s.insert("username", "ann")?; // 8 + 5 bytes
    ensure!(too_large(s.insert("ninechars", "x")), "long name");
    ensure!(too_large(s.insert("v", "x".repeat(15))), "long value"); // 17 bytes of JSON
    ensure!(
        s.incr("ninechars", 1).await.err().map(|e| e.kind()) == Some(ErrorKind::TooLarge),
        "long counter name"
    );
    let cookie = returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no cookie")?;

    // A loaded session: the whole session is bounded.
    let s = request(&m, &cookie);
    ensure!(s.exists().await?);
    s.insert("a", 1)?;
    s.insert("b", 2)?; // 3 fields now
    ensure!(too_large(s.insert("c", 3)), "a fourth field");
    s.insert("b", "replaced")?; // replacing keeps the count
    ensure!(
        too_large(s.insert("a", "y".repeat(14))),
        "the session's bytes"
    ); // username 13 + b 11 + the new a 17 = 41 > 40
    s.remove("a")?;
    s.insert("c", 3)?; // room again
    adapter::finish(&s).await?;

    // What was refused was never written; what was accepted was.
    let s = request(&m, &cookie);
    ensure!(s.get::<String>("username").await?.as_deref() == Some("ann"));
    ensure!(s.get::<String>("b").await?.as_deref() == Some("replaced"));
    ensure!(s.get::<i64>("c").await? == Some(3));
    for refused in ["a", "ninechars", "v"] {
        ensure!(
            s.get::<String>(refused).await?.is_none(),
            "{refused} was written"
        );
    }
    adapter::finish(&s).await?;

    // A blind write (session not loaded) is bounded by the request's own changes.
    let s = request(&m, &cookie);
    s.insert("d", 4)?;
    s.insert("e", 5)?;
    s.insert("f", 6)?;
    ensure!(too_large(s.insert("g", 7)), "a blind fourth field");
    Ok(())
}

async fn concurrent_duplicate_logins_get_distinct_tokens(f: StoreFixture) -> anyhow::Result<()> {
    // Twenty logins at once from the same browser (a double-clicked button, a replayed form),
    // all carrying the same pre-login cookie: each gets a session of its own, none inherits
    // the pre-login one, and that one ends.
    let m = Arc::new(manager(f.store.clone())?);
    let planted = login(&m, "anonymous").await?;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (m, planted) = (m.clone(), planted.clone());
        tasks.push(tokio::spawn(async move {
            let s = request(&m, &planted);
            s.start()?;
            s.insert("username", format!("ann-{i}"))?;
            let cookie =
                returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no cookie")?;
            anyhow::Ok((i, cookie))
        }));
    }
    let mut cookies = std::collections::HashSet::new();
    for task in tasks {
        let (i, cookie) = task.await??;
        ensure!(cookie != planted, "a login kept the pre-login token");
        let name = request(&m, &cookie).get::<String>("username").await?;
        ensure!(name == Some(format!("ann-{i}")), "login {i} reads {name:?}");
        ensure!(cookies.insert(cookie), "two logins got the same token");
    }
    ensure!(
        !request(&m, &planted).exists().await?,
        "the pre-login session survived"
    );
    Ok(())
}

// With the default touch interval (a thirtieth of the idle timeout, here 60 s of 30 minutes),
// requests touch the session once a minute at most; the session ends 30 minutes after its last
// touch, on the manual clock, whichever store holds it.
async fn a_request_touches_the_session_only_when_due(f: StoreFixture) -> anyhow::Result<()> {
    let clock = ManualClock::new(SystemTime::now());
    let config = SessionConfig::new(SECRET)?.with_clock(Arc::new(clock.clone()));
    ensure!(config.touch_interval() == Duration::from_secs(60));
    let m = SessionManager::new(f.store.clone(), config)?;
    let cookie = login(&m, "ann").await?;
    let key = cloakroom_test::requests::token_of(&cookie)?.key();
    let now = || {
        let since_epoch = clock.now().duration_since(std::time::UNIX_EPOCH);
        since_epoch.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    };
    let touched = || async {
        let fields = f.store.peek(&key, now()).await?.context("missing")?;
        anyhow::Ok(fields.get("__touched").cloned())
    };
    let at_login = touched().await?.context("no touch at login")?;
    ensure!(at_login == now().to_string());
    clock.advance(Duration::from_secs(59));
    ensure!(request(&m, &cookie).incr("visits", 1).await? == Some(1));
    ensure!(
        touched().await?.as_deref() == Some(at_login.as_str()),
        "touched early"
    );
    clock.advance(Duration::from_secs(1));
    ensure!(request(&m, &cookie).exists().await?);
    let last_touch = now();
    ensure!(touched().await?.as_deref() == Some(last_touch.to_string().as_str()));
    // A request 59 s later does not touch: the session ends 30 minutes after the touch, which
    // is 29 minutes and a second after its last request.
    clock.advance(Duration::from_secs(59));
    ensure!(request(&m, &cookie).exists().await?);
    ensure!(touched().await?.as_deref() == Some(last_touch.to_string().as_str()));
    clock.advance(Duration::from_secs(30 * 60 - 59));
    ensure!(
        !request(&m, &cookie).exists().await?,
        "alive 30 minutes after its last touch"
    );
    Ok(())
}
