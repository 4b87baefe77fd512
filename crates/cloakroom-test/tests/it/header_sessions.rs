//! Sessions carried in a request header (`Authorization: Bearer`, or a header of the app's
//! choosing) instead of a cookie, alone or beside cookie sessions, over every store: the same
//! signed value, checks before any store access, rotation and logout; never a cookie.

use std::sync::Arc;

use anyhow::{Context, ensure};
use cloakroom_core::adapter::{self, Finished};
use cloakroom_core::{CookieState, ErrorKind, Session, SessionConfig, SessionManager, Store};
use cloakroom_test::requests::{login, request};
use cloakroom_test::{CountingStore, StoreFixture};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

cloakroom_test::test_over_each_store!(
    an_api_client_logs_in_counts_and_logs_out_with_a_bearer_token,
    bad_header_values_never_reach_the_store,
    cookie_and_header_sessions_live_side_by_side,
    a_rotated_header_session_reaches_the_client_through_the_handler,
);

fn api(store: Arc<dyn Store>, header: &str) -> anyhow::Result<SessionManager> {
    Ok(SessionManager::new(
        store,
        SessionConfig::new(SECRET)?.with_header_sessions(header),
    )?)
}

/// An API login: a session whose token the handler hands out.
async fn api_login(m: &SessionManager, name: &str) -> anyhow::Result<(String, Finished)> {
    let s = adapter::session_from_headers(m, [], []);
    s.start()?;
    s.insert("username", name)?;
    let token = s.issue_header_token()?;
    Ok((token, adapter::finish(&s).await?))
}

fn bearer(m: &SessionManager, token: &str) -> Session {
    let value = format!("Bearer {token}");
    adapter::session_from_headers(m, [], [value.as_bytes()])
}

async fn an_api_client_logs_in_counts_and_logs_out_with_a_bearer_token(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let m = api(f.store.clone(), "Authorization")?;
    let (token, finished) = api_login(&m, "ann").await?;
    ensure!(finished.set_cookie.is_none(), "an API login set a cookie");
    ensure!(
        finished.cache_marks(false, None).vary == Some("Cookie, authorization"),
        "{:?}",
        finished.cache_marks(false, None)
    );
    for expected in 1..=3 {
        let s = bearer(&m, &token);
        ensure!(s.cookie_state() == CookieState::Valid);
        ensure!(s.incr("visits", 1).await? == Some(expected));
        ensure!(s.get::<String>("username").await?.as_deref() == Some("ann"));
        ensure!(adapter::finish(&s).await?.set_cookie.is_none());
    }
    // The scheme's name is case-insensitive, and spaces around the value are not the value's.
    let loose = format!("bEaReR   {token}  ");
    let s = adapter::session_from_headers(&m, [], [loose.as_bytes()]);
    ensure!(s.exists().await?);
    // Logout: deleted in the store, no cookie cleared, the token refused from then on.
    let s = bearer(&m, &token);
    s.destroy();
    ensure!(adapter::finish(&s).await?.set_cookie.is_none());
    let s = bearer(&m, &token);
    ensure!(!s.exists().await?, "the token still works after logout");
    ensure!(s.incr("visits", 1).await?.is_none());
    // A custom header carries the value itself.
    let m = api(f.store.clone(), "X-Session")?;
    let (token, _) = api_login(&m, "bob").await?;
    let s = adapter::session_from_headers(&m, [], [token.as_bytes()]);
    ensure!(s.get::<String>("username").await?.as_deref() == Some("bob"));
    Ok(())
}

async fn bad_header_values_never_reach_the_store(f: StoreFixture) -> anyhow::Result<()> {
    let counting = CountingStore::new(f.store.clone());
    let counts = counting.counts();
    let m = api(Arc::new(counting), "authorization")?;
    let (token, _) = api_login(&m, "ann").await?;
    let other = SessionManager::new(
        f.store.clone(),
        SessionConfig::new(b"another-secret-another-secret-another!!")?
            .with_header_sessions("authorization"),
    )?;
    let (foreign, _) = api_login(&other, "eve").await?;
    let long = "A".repeat(10_000);
    let bad: Vec<Vec<Vec<u8>>> = vec![
        vec![b"Bearer garbage".to_vec()],
        vec![format!("Bearer {token}x").into_bytes()],
        vec![format!("Bearer {}", &token[..token.len() - 1]).into_bytes()],
        vec![format!("Bearer {foreign}").into_bytes()],
        vec![format!("Bearer {long}").into_bytes()],
        vec![b"Bearer \xff\xfe".to_vec()],
        // Two bearer values: ambiguous, neither is trusted.
        vec![
            format!("Bearer {token}").into_bytes(),
            format!("Bearer {token}").into_bytes(),
        ],
    ];
    let before = counts.total();
    let forged_before = m.metrics().forged_cookies();
    for headers in &bad {
        let s = adapter::session_from_headers(&m, [], headers.iter().map(Vec::as_slice));
        ensure!(s.cookie_state() == CookieState::Invalid, "{:.60?}", headers);
        ensure!(!s.exists().await?);
        ensure!(s.incr("visits", 1).await?.is_none());
        let finished = adapter::finish(&s).await?;
        ensure!(
            finished.set_cookie.is_none(),
            "a header session touched the cookie"
        );
    }
    ensure!(
        counts.total() == before,
        "bad header values reached the store {} times",
        counts.total() - before
    );
    ensure!(m.metrics().forged_cookies() - forged_before == bad.len() as u64);
    // Another scheme is the application's business, not ours: it is not a session header.
    let s = adapter::session_from_headers(&m, [], [b"Basic YWxhZGRpbjpvcGVuc2VzYW1l".as_slice()]);
    ensure!(s.cookie_state() == CookieState::Absent);
    Ok(())
}

async fn cookie_and_header_sessions_live_side_by_side(f: StoreFixture) -> anyhow::Result<()> {
    let m = api(f.store.clone(), "authorization")?;
    let cookie = login(&m, "browser-user").await?;
    let (token, _) = api_login(&m, "api-user").await?;
    // Each on its own.
    let s = request(&m, &cookie);
    ensure!(s.get::<String>("username").await?.as_deref() == Some("browser-user"));
    let s = bearer(&m, &token);
    ensure!(s.get::<String>("username").await?.as_deref() == Some("api-user"));
    // A request carrying both is a header session: its cookie is not read, and its logout
    // clears no cookie.
    let value = format!("Bearer {token}");
    let both = adapter::session_from_headers(&m, [cookie.as_bytes()], [value.as_bytes()]);
    ensure!(both.get::<String>("username").await?.as_deref() == Some("api-user"));
    both.destroy();
    ensure!(adapter::finish(&both).await?.set_cookie.is_none());
    // The browser's session is untouched.
    let s = request(&m, &cookie);
    ensure!(s.get::<String>("username").await?.as_deref() == Some("browser-user"));
    ensure!(!request(&m, &cookie).is_header_session());
    ensure!(bearer(&m, &token).is_header_session());
    // An API login from a request that carries a browser's cookie (a page of another site can
    // make the browser post one): the client gets a session of its own, and the browser keeps
    // its session and its cookie.
    let s = request(&m, &cookie);
    s.start()?;
    s.insert("username", "other")?;
    let other = s.issue_header_token()?;
    ensure!(s.is_header_session());
    ensure!(adapter::finish(&s).await?.set_cookie.is_none());
    let s = request(&m, &cookie);
    ensure!(
        s.get::<String>("username").await?.as_deref() == Some("browser-user"),
        "an API login ended the browser's session"
    );
    ensure!(
        bearer(&m, &other)
            .get::<String>("username")
            .await?
            .as_deref()
            == Some("other")
    );
    // A forged header with a valid cookie: refused, not a fallback to the cookie.
    let forged =
        adapter::session_from_headers(&m, [cookie.as_bytes()], [b"Bearer forged".as_slice()]);
    ensure!(forged.cookie_state() == CookieState::Invalid && !forged.exists().await?);
    // Without header sessions configured, the header means nothing, and no token is issued.
    let cookies_only = SessionManager::new(f.store.clone(), SessionConfig::new(SECRET)?)?;
    let s = adapter::session_from_headers(&cookies_only, [cookie.as_bytes()], [value.as_bytes()]);
    ensure!(s.get::<String>("username").await?.as_deref() == Some("browser-user"));
    let s = adapter::session_from_headers(&cookies_only, [], []);
    s.start()?;
    let refused = s.issue_header_token().err().map(|e| e.kind());
    ensure!(refused == Some(ErrorKind::Unsupported), "{refused:?}");
    // Nothing was started: no token either.
    let s = adapter::session_from_headers(&m, [], []);
    let refused = s.issue_header_token().err().map(|e| e.kind());
    ensure!(refused == Some(ErrorKind::NoSession), "{refused:?}");
    // A header that cannot be a session header is a configuration error.
    for bad in [
        "",
        "cookie",
        "bad header",
        "x:y",
        "Origin",
        "referer",
        "sec-fetch-site",
        "x-forwarded-for",
        "proxy-authorization",
        "host",
    ] {
        let config = SessionConfig::new(SECRET)?.with_header_sessions(bad);
        let kind = SessionManager::new(f.store.clone(), config)
            .err()
            .map(|e| e.kind());
        ensure!(kind == Some(ErrorKind::Config), "{bad:?}: {kind:?}");
    }
    Ok(())
}

async fn a_rotated_header_session_reaches_the_client_through_the_handler(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let m = api(f.store.clone(), "authorization")?;
    let (old, _) = api_login(&m, "ann").await?;
    let s = bearer(&m, &old);
    ensure!(s.cycle_id().await?);
    let new = s.issue_header_token()?;
    let finished = adapter::finish(&s).await?;
    ensure!(
        finished.set_cookie.is_none(),
        "a rotated header session set a cookie"
    );
    ensure!(new != old);
    ensure!(
        !bearer(&m, &old).exists().await?,
        "the old token still works"
    );
    let s = bearer(&m, &new);
    ensure!(s.get::<String>("username").await?.as_deref() == Some("ann"));
    let key = cloakroom_test::requests::token_of(&format!("x={new}"))?.key();
    ensure!(s.key().await?.context("no key")? == key);
    Ok(())
}
