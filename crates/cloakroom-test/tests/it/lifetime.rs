//! A session's own lifetime ("remember me") and cookies that end with the browser, over every
//! store: the cookie follows the session, the store times the session by its own timeouts, and
//! another instance (another manager over the same store) agrees.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, ensure};
use cloakroom_core::adapter::{self, Finished};
use cloakroom_core::{ErrorKind, Lifetime, ManualClock, SessionConfig, SessionManager, Store};
use cloakroom_test::StoreFixture;
use cloakroom_test::requests::{request, returned_cookie};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";
const IDLE: Duration = Duration::from_secs(30 * 60);
const DAY: Duration = Duration::from_secs(86_400);
const THIRTY_DAYS: Duration = Duration::from_secs(30 * 86_400);

cloakroom_test::test_over_each_store!(
    a_remembered_session_outlives_the_configured_timeouts_on_every_instance,
    a_browser_session_cookie_has_no_max_age_and_the_server_still_times_it_out,
    a_new_id_keeps_the_lifetime_and_a_new_lifetime_needs_one,
    a_lifetime_past_the_maxima_is_refused_and_changes_nothing,
);

/// Two instances of an app over one store, with one manual clock: 30 minutes idle, 24 hours in
/// all, and sessions that may be given up to 30 days.
fn instances(
    store: Arc<dyn Store>,
) -> anyhow::Result<(SessionManager, SessionManager, ManualClock)> {
    let clock = ManualClock::new(SystemTime::now());
    let config = || -> anyhow::Result<SessionConfig> {
        Ok(SessionConfig::new(SECRET)?
            .with_idle_timeout(IDLE)
            .with_max_lifetime(THIRTY_DAYS, THIRTY_DAYS)
            .with_clock(Arc::new(clock.clone())))
    };
    Ok((
        SessionManager::new(store.clone(), config()?)?,
        SessionManager::new(store, config()?)?,
        clock,
    ))
}

/// Logs in with `lifetime` (none: the configured one); returns the cookie pair and what the
/// response had to do.
async fn login_with(
    m: &SessionManager,
    lifetime: Option<Lifetime>,
) -> anyhow::Result<(String, Finished)> {
    let s = adapter::session_from_cookie_headers(m, []);
    s.start()?;
    s.insert("username", "ann")?;
    if let Some(lifetime) = lifetime {
        s.set_lifetime(lifetime)?;
    }
    let finished = adapter::finish(&s).await?;
    let cookie = returned_cookie(&finished.set_cookie).context("login set no cookie")?;
    Ok((cookie, finished))
}

async fn alive(m: &SessionManager, cookie: &str) -> anyhow::Result<bool> {
    let s = request(m, cookie);
    let alive = s.exists().await?;
    adapter::finish(&s).await?;
    Ok(alive)
}

async fn a_remembered_session_outlives_the_configured_timeouts_on_every_instance(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let (a, b, clock) = instances(f.store.clone())?;
    let (remembered, finished) =
        login_with(&a, Some(Lifetime::new(THIRTY_DAYS, THIRTY_DAYS))).await?;
    let cookie = finished.set_cookie.context("no cookie")?;
    ensure!(cookie.max_age() == Some(THIRTY_DAYS), "{cookie:?}");
    ensure!(
        cookie.header_value().contains("Max-Age=2592000"),
        "{}",
        cookie.header_value()
    );
    let (ordinary, _) = login_with(&a, None).await?;
    // Two hours without a request: past the configured idle timeout.
    clock.advance(2 * 60 * 60 * Duration::from_secs(1));
    ensure!(
        !alive(&b, &ordinary).await?,
        "the ordinary session outlived its idle timeout"
    );
    ensure!(
        alive(&b, &remembered).await?,
        "the other instance ended the remembered session by the configured idle timeout"
    );
    // Three days on, past the configured absolute lifetime, with a request each day.
    for _ in 0..3 {
        clock.advance(DAY);
        ensure!(
            alive(&a, &remembered).await?,
            "ended before its own lifetime"
        );
    }
    // Past its own deadline (30 days from login), however active.
    clock.advance(THIRTY_DAYS - 3 * DAY);
    ensure!(
        !alive(&b, &remembered).await?,
        "alive past its own lifetime"
    );
    Ok(())
}

async fn a_browser_session_cookie_has_no_max_age_and_the_server_still_times_it_out(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let (a, b, clock) = instances(f.store.clone())?;
    let (cookie, finished) =
        login_with(&a, Some(Lifetime::configured().ending_with_browser())).await?;
    let set_cookie = finished.set_cookie.context("no cookie")?;
    ensure!(set_cookie.max_age().is_none());
    let header = set_cookie.header_value();
    ensure!(
        !header.contains("Max-Age") && !header.contains("Expires"),
        "a browser-session cookie must carry neither: {header}"
    );
    ensure!(
        header.contains("HttpOnly") && header.contains("Secure"),
        "{header}"
    );
    // The server-side idle timeout applies all the same, on every instance.
    clock.advance(IDLE - Duration::from_secs(1));
    ensure!(alive(&b, &cookie).await?);
    clock.advance(IDLE);
    ensure!(
        !alive(&a, &cookie).await?,
        "a browser-session session outlived its idle timeout"
    );
    // The logout of such a session clears the cookie as usual.
    let (cookie, _) = login_with(&a, Some(Lifetime::configured().ending_with_browser())).await?;
    let s = request(&b, &cookie);
    s.destroy();
    let cleared = adapter::finish(&s)
        .await?
        .set_cookie
        .context("not cleared")?;
    ensure!(cleared.is_removal() && cleared.header_value().contains("Max-Age=0"));
    Ok(())
}

async fn a_new_id_keeps_the_lifetime_and_a_new_lifetime_needs_one(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let (a, b, clock) = instances(f.store.clone())?;
    let (browser, _) = login_with(&a, Some(Lifetime::configured().ending_with_browser())).await?;
    let (remembered, _) = login_with(&a, Some(Lifetime::new(THIRTY_DAYS, THIRTY_DAYS))).await?;
    // A rotation on the other instance keeps each session's own lifetime.
    let ten_minutes = Duration::from_secs(600);
    clock.advance(ten_minutes);
    let s = request(&b, &browser);
    ensure!(s.cycle_id().await?);
    let rotated = adapter::finish(&s)
        .await?
        .set_cookie
        .context("no new cookie")?;
    ensure!(
        rotated.max_age().is_none(),
        "the rotation lost the browser-session cookie"
    );
    clock.advance(DAY / 2 - ten_minutes);
    let s = request(&b, &remembered);
    ensure!(s.cycle_id().await?);
    let rotated = adapter::finish(&s).await?;
    let max_age = rotated.set_cookie.as_ref().and_then(|c| c.max_age());
    ensure!(
        max_age == Some(THIRTY_DAYS - DAY / 2),
        "the rotated cookie must last to the session's deadline: {max_age:?}"
    );
    let remembered = returned_cookie(&rotated.set_cookie).context("no cookie")?;
    clock.advance(2 * DAY);
    ensure!(
        alive(&a, &remembered).await?,
        "the rotation lost the session's own lifetime"
    );
    // An existing session is given a new lifetime after a new id ("keep me signed in"
    // unchecked later). Without the new id, it is refused.
    let s = request(&a, &remembered);
    let refused = s
        .set_lifetime(Lifetime::configured())
        .err()
        .map(|e| e.kind());
    ensure!(refused == Some(ErrorKind::NoSession), "{refused:?}");
    ensure!(s.cycle_id().await?);
    // Counted from the login, two and a half days ago: a new lifetime never pushes the end
    // past the maximum from the login, however often it is given.
    s.set_lifetime(Lifetime::new(THIRTY_DAYS, THIRTY_DAYS))?;
    let finished = adapter::finish(&s).await?;
    let max_age = finished.set_cookie.as_ref().and_then(|c| c.max_age());
    ensure!(
        max_age == Some(THIRTY_DAYS - DAY / 2 - 2 * DAY),
        "a new lifetime extended the session past its maximum from login: {max_age:?}"
    );
    let again = returned_cookie(&finished.set_cookie).context("no cookie")?;
    let s = request(&b, &again);
    ensure!(s.cycle_id().await?);
    s.set_lifetime(Lifetime::new(IDLE, 3 * DAY))?;
    let finished = adapter::finish(&s).await?;
    ensure!(
        finished.set_cookie.as_ref().and_then(|c| c.max_age()) == Some(DAY / 2),
        "{:?}",
        finished.set_cookie
    );
    let shortened = returned_cookie(&finished.set_cookie).context("no cookie")?;
    clock.advance(IDLE);
    ensure!(
        !alive(&b, &shortened).await?,
        "the shorter idle timeout did not apply"
    );
    // A lifetime that already ran out ends the session at once.
    let (late, _) = login_with(&a, Some(Lifetime::new(THIRTY_DAYS, THIRTY_DAYS))).await?;
    clock.advance(DAY / 2);
    let s = request(&a, &late);
    ensure!(s.cycle_id().await?);
    s.set_lifetime(Lifetime::new(IDLE, DAY / 4))?;
    let finished = adapter::finish(&s).await?;
    ensure!(
        finished.set_cookie.as_ref().is_some_and(|c| c.is_removal()),
        "{:?}",
        finished.set_cookie
    );
    ensure!(!alive(&a, &late).await?);
    Ok(())
}

async fn a_lifetime_past_the_maxima_is_refused_and_changes_nothing(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let (a, _, clock) = instances(f.store.clone())?;
    let s = adapter::session_from_cookie_headers(&a, []);
    let kind = |lifetime| s.set_lifetime(lifetime).err().map(|e| e.kind());
    ensure!(kind(Lifetime::configured()) == Some(ErrorKind::NoSession));
    s.start()?;
    for refused in [
        Lifetime::new(THIRTY_DAYS + Duration::from_secs(1), DAY),
        Lifetime::new(IDLE, THIRTY_DAYS + Duration::from_secs(1)),
        // Shorter than twice the touch interval (one minute): it could end between touches.
        Lifetime::new(Duration::from_secs(119), DAY),
        Lifetime::new(IDLE, Duration::ZERO),
    ] {
        ensure!(
            kind(refused) == Some(ErrorKind::InvalidLifetime),
            "{refused:?} was accepted"
        );
    }
    s.insert("username", "ann")?;
    let finished = adapter::finish(&s).await?;
    ensure!(
        finished.set_cookie.as_ref().and_then(|c| c.max_age()) == Some(DAY),
        "a refused lifetime changed the session: {:?}",
        finished.set_cookie
    );
    let cookie = returned_cookie(&finished.set_cookie).context("no cookie")?;
    clock.advance(IDLE);
    ensure!(!alive(&a, &cookie).await?);
    // The maxima default to the configured timeouts: a handler can only shorten them.
    let strict = SessionManager::new(f.store.clone(), SessionConfig::new(SECRET)?)?;
    let s = adapter::session_from_cookie_headers(&strict, []);
    s.start()?;
    let longer = s
        .set_lifetime(Lifetime::new(IDLE * 2, DAY))
        .err()
        .map(|e| e.kind());
    ensure!(longer == Some(ErrorKind::InvalidLifetime), "{longer:?}");
    s.set_lifetime(Lifetime::new(IDLE / 2, DAY / 2))?;
    Ok(())
}
