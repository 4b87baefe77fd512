//! The hostile-input suite at the HTTP level: the demo's router, through the session layer, over
//! the memory store and a real redis-server, one named test per input. Store calls are counted,
//! so "no store access" is checked, not assumed. The same inputs at the store and handle level
//! are in `cloakroom-test`'s `hostile` tests.
//!
//! Run with `cargo test -p cloakroom-demo --test it hostile`.

use std::sync::Arc;

use anyhow::ensure;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cloakroom_test::{CallCounts, CountingStore, StoreFixture};

use crate::support::{
    Demo, Reply, app_over, get, login, post_form, post_login, send, sets_session_cookie, visits,
};

crate::support::over_each_app!(
    test_over_memory_and_redis;
    a_username_with_markup,
    a_username_breaking_out_of_an_attribute,
    a_username_with_crlf_and_a_header,
    a_username_of_ten_kilobytes,
    a_username_with_a_nul_byte,
    a_username_with_direction_overrides,
    a_username_with_zero_width_characters,
    a_username_in_many_scripts,
    a_username_that_is_not_utf8,
    a_cookie_header_that_is_not_utf8,
    non_ascii_neighbour_cookies,
    ten_thousand_cookies_in_one_header,
    our_cookie_in_two_cookie_headers,
    a_logged_out_cookie_replayed,
    a_forged_cookie_sent_to_logout,
);

fn counted_app(f: &StoreFixture) -> anyhow::Result<(Demo, Arc<CallCounts>)> {
    let counting = CountingStore::new(f.store.clone());
    let counts = counting.counts();
    Ok((app_over(Arc::new(counting))?, counts))
}

/// Logs in with `encoded` as the form-encoded username and returns the index page.
async fn index_after_login(app: &Demo, encoded: &str) -> anyhow::Result<Reply> {
    let cookie = login(app, encoded).await?;
    get(app, "/", Some(&cookie)).await
}

/// The login is refused with a 400 and `message`, no session cookie and no store access.
async fn refused_login(f: StoreFixture, encoded: &str, message: &str) -> anyhow::Result<()> {
    let (app, counts) = counted_app(&f)?;
    let reply = post_login(&app, None, format!("username={encoded}")).await?;
    ensure!(reply.status == StatusCode::BAD_REQUEST, "{}", reply.status);
    ensure!(reply.body.contains(message), "{}", reply.body);
    ensure!(!sets_session_cookie(&reply), "logged in");
    ensure!(counts.total() == 0, "{} store calls", counts.total());
    Ok(())
}

/// The request is anonymous and nothing reached the store.
async fn anonymous_without_store_access(
    app: &Demo,
    counts: &CallCounts,
    request: Request<Body>,
) -> anyhow::Result<()> {
    let before = counts.total();
    let reply = send(app, request).await?;
    ensure!(reply.status == StatusCode::OK, "{}", reply.status);
    ensure!(
        reply.body.contains("You are not logged in"),
        "{}",
        reply.body
    );
    ensure!(
        counts.total() == before,
        "{} store calls",
        counts.total() - before
    );
    Ok(())
}

async fn a_username_with_markup(f: StoreFixture) -> anyhow::Result<()> {
    let (app, _) = counted_app(&f)?;
    let page = index_after_login(&app, "%3Cscript%3Ealert(1)%3C%2Fscript%3E").await?;
    ensure!(
        page.body
            .contains("Logged in as &lt;script&gt;alert(1)&lt;/script&gt;."),
        "{}",
        page.body
    );
    ensure!(!page.body.contains("<script>"), "markup reached the page");
    Ok(())
}

async fn a_username_breaking_out_of_an_attribute(f: StoreFixture) -> anyhow::Result<()> {
    let (app, _) = counted_app(&f)?;
    let page = index_after_login(&app, "%22%27%3E%3Cimg+src%3Dx+onerror%3Dalert(1)%3E").await?;
    ensure!(
        page.body
            .contains("Logged in as &quot;&#x27;&gt;&lt;img src=x onerror=alert(1)&gt;."),
        "{}",
        page.body
    );
    ensure!(!page.body.contains("<img"), "markup reached the page");
    Ok(())
}

async fn a_username_with_crlf_and_a_header(f: StoreFixture) -> anyhow::Result<()> {
    refused_login(f, "ann%0D%0ASet-Cookie%3A+evil%3D1", "control characters").await
}

async fn a_username_of_ten_kilobytes(f: StoreFixture) -> anyhow::Result<()> {
    refused_login(f, &"y".repeat(10_240), "too long").await
}

async fn a_username_with_a_nul_byte(f: StoreFixture) -> anyhow::Result<()> {
    refused_login(f, "ann%00admin", "control characters").await
}

async fn a_username_with_direction_overrides(f: StoreFixture) -> anyhow::Result<()> {
    // U+202E makes "admin" + override + "gpj.exe" display as another name.
    refused_login(f, "admin%E2%80%AEgpj.exe", "text-direction").await
}

async fn a_username_with_zero_width_characters(f: StoreFixture) -> anyhow::Result<()> {
    // "ad" + U+200B + "min" looks like "admin".
    refused_login(f, "ad%E2%80%8Bmin", "invisible").await
}

async fn a_username_in_many_scripts(f: StoreFixture) -> anyhow::Result<()> {
    let (app, _) = counted_app(&f)?;
    // "Zoë 東京 🧥 مرحبا": accepted, stored and shown exactly.
    let page = index_after_login(
        &app,
        "Zo%C3%AB+%E6%9D%B1%E4%BA%AC+%F0%9F%A7%A5+%D9%85%D8%B1%D8%AD%D8%A8%D8%A7",
    )
    .await?;
    ensure!(
        page.body.contains("Logged in as Zoë 東京 🧥 مرحبا."),
        "{}",
        page.body
    );
    Ok(())
}

async fn a_username_that_is_not_utf8(f: StoreFixture) -> anyhow::Result<()> {
    refused_login(f, "ann%FF%FE", "valid UTF-8").await
}

async fn a_cookie_header_that_is_not_utf8(f: StoreFixture) -> anyhow::Result<()> {
    let (app, counts) = counted_app(&f)?;
    let cookie = login(&app, "ann").await?;
    // The real cookie with a byte that is not UTF-8 in front.
    let mut bytes = b"\xff".to_vec();
    bytes.extend_from_slice(cookie.as_bytes());
    let request = Request::get("/")
        .header(header::COOKIE, bytes.as_slice())
        .body(Body::empty())?;
    anonymous_without_store_access(&app, &counts, request).await
}

/// `bytes` as one `Cookie` header (bytes that are not ASCII are allowed on the wire).
fn with_cookie_bytes(
    request: axum::http::request::Builder,
    bytes: &[u8],
) -> anyhow::Result<Request<Body>> {
    Ok(request
        .header(header::COOKIE, header::HeaderValue::from_bytes(bytes)?)
        .body(Body::empty())?)
}

/// Other cookies of the site, in UTF-8 and in Latin-1, around ours.
fn among_neighbours(cookie: &str) -> Vec<u8> {
    let mut bytes = "city=Zürich; ".as_bytes().to_vec();
    bytes.extend_from_slice(cookie.as_bytes());
    bytes.extend_from_slice(b"; name=Ren\xe9e; emoji=\xf0\x9f\x8d\xaa");
    bytes
}

async fn non_ascii_neighbour_cookies(f: StoreFixture) -> anyhow::Result<()> {
    let (app, _) = counted_app(&f)?;
    // Logging in works: the CSRF cookie is found among the neighbours.
    let (csrf_cookie, token) = crate::support::csrf_for_login(&app).await?;
    let request = axum::http::Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(
            header::COOKIE,
            header::HeaderValue::from_bytes(&among_neighbours(&csrf_cookie))?,
        )
        .body(Body::from(format!("csrf={token}&username=ann")))?;
    let reply = send(&app, request).await?;
    ensure!(reply.status == StatusCode::SEE_OTHER, "{}", reply.status);
    let cookie = reply.cookie().unwrap_or_default();
    ensure!(!cookie.is_empty(), "the login set no session cookie");
    // The logged-in user stays logged in.
    let page = send(
        &app,
        with_cookie_bytes(Request::get("/"), &among_neighbours(&cookie))?,
    )
    .await?;
    ensure!(visits(&page.body) == Some(1), "{}", page.body);
    // Logging out deletes the session and clears the cookie.
    let reply = send(
        &app,
        with_cookie_bytes(Request::post("/logout"), &among_neighbours(&cookie))?,
    )
    .await?;
    ensure!(reply.status == StatusCode::SEE_OTHER, "{}", reply.status);
    ensure!(
        reply.cookie().as_deref() == Some(""),
        "the cookie was not cleared"
    );
    let page = get(&app, "/", Some(&cookie)).await?;
    ensure!(page.body.contains("You are not logged in"), "{}", page.body);
    Ok(())
}

async fn ten_thousand_cookies_in_one_header(f: StoreFixture) -> anyhow::Result<()> {
    let (app, counts) = counted_app(&f)?;
    let cookie = login(&app, "ann").await?;
    let header = vec![cookie; 10_000].join("; ");
    let request = Request::get("/")
        .header(header::COOKIE, header)
        .body(Body::empty())?;
    anonymous_without_store_access(&app, &counts, request).await
}

async fn our_cookie_in_two_cookie_headers(f: StoreFixture) -> anyhow::Result<()> {
    // Two headers naming two different sessions: ambiguous, so neither is used.
    let (app, counts) = counted_app(&f)?;
    let (ann, bob) = (login(&app, "ann").await?, login(&app, "bob").await?);
    let request = Request::get("/")
        .header(header::COOKIE, ann)
        .header(header::COOKIE, bob)
        .body(Body::empty())?;
    anonymous_without_store_access(&app, &counts, request).await
}

async fn a_logged_out_cookie_replayed(f: StoreFixture) -> anyhow::Result<()> {
    let (app, counts) = counted_app(&f)?;
    let cookie = login(&app, "ann").await?;
    ensure!(visits(&get(&app, "/", Some(&cookie)).await?.body) == Some(1));
    post_form(&app, "/logout", Some(&cookie), "").await?;
    let (calls, creates) = (counts.total(), counts.creates());
    let page = get(&app, "/", Some(&cookie)).await?;
    ensure!(page.body.contains("You are not logged in"), "{}", page.body);
    ensure!(counts.total() == calls + 1, "expected one lookup");
    ensure!(counts.creates() == creates, "the replay created a session");
    // Logging in again from the same browser gives a fresh session, counting from 1.
    let reply = post_login(&app, Some(&cookie), "username=ann").await?;
    let fresh = reply.cookie().unwrap_or_default();
    ensure!(!fresh.is_empty() && fresh != cookie, "no fresh cookie");
    ensure!(visits(&get(&app, "/", Some(&fresh)).await?.body) == Some(1));
    Ok(())
}

async fn a_forged_cookie_sent_to_logout(f: StoreFixture) -> anyhow::Result<()> {
    let (app, counts) = counted_app(&f)?;
    let cookie = login(&app, "ann").await?;
    let forged = format!("{}A", &cookie[..cookie.len() - 1]);
    let forged = if forged == cookie {
        format!("{}B", &cookie[..cookie.len() - 1])
    } else {
        forged
    };
    let before = counts.total();
    let reply = post_form(&app, "/logout", Some(&forged), "").await?;
    ensure!(reply.status == StatusCode::SEE_OTHER, "{}", reply.status);
    ensure!(
        reply.cookie().as_deref() == Some(""),
        "the forged cookie was not cleared"
    );
    ensure!(
        counts.total() == before,
        "the forged logout reached the store"
    );
    // The real session is untouched.
    ensure!(visits(&get(&app, "/", Some(&cookie)).await?.body) == Some(1));
    Ok(())
}
