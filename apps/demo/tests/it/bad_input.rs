//! Bad input gets a 4xx or the anonymous page, never a 5xx; bad cookies never reach the store.

use std::sync::Arc;

use anyhow::ensure;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cloakroom::{MemoryStore, SessionConfig};
use cloakroom_test::CountingStore;

use crate::support::{
    Demo, app_over, app_with, csrf_for_login, get, login, post_form, post_login, send,
    sets_session_cookie,
};

crate::support::over_each_app!(
    plain;
    forged_and_malformed_cookies_never_reach_the_store_nor_give_a_5xx,
    bad_login_forms_get_a_4xx_with_a_message,
    a_login_without_a_matching_csrf_token_is_refused,
);

async fn forged_and_malformed_cookies_never_reach_the_store_nor_give_a_5xx() -> anyhow::Result<()> {
    let counting = CountingStore::new(Arc::new(MemoryStore::new()));
    let counts = counting.counts();
    let app = app_over(Arc::new(counting))?;
    let real = login(&app, "ann").await?;
    let value = real
        .split_once('=')
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    let other = {
        let app = app_with(
            Arc::new(MemoryStore::new()),
            SessionConfig::new(b"some-other-secret-some-other-secret-!!")?,
        )?;
        login(&app, "eve").await?
    };
    let cases = [
        "__Host-cloakroom=".to_owned(),
        "__Host-cloakroom=x".to_owned(),
        format!("__Host-cloakroom={}", "A".repeat(87)),
        format!("__Host-cloakroom={value}A"),
        format!("__Host-cloakroom={}", &value[1..]),
        format!("__Host-cloakroom={}", value.replace('.', "")),
        format!("__Host-cloakroom=\"{value}\""),
        format!("__Host-cloakroom={value}; __Host-cloakroom={value}"),
        format!("__Host-cloakroom={}*", &value[..value.len() - 1]),
        other,
        "__Host-cloakroom={}{}{}".to_owned(),
        "__Host-cloakroom=a*b?c[d]".to_owned(),
        (0..3000)
            .map(|i| format!("c{i}=v"))
            .collect::<Vec<_>>()
            .join("; "),
        ";;;===;;".to_owned(),
    ];
    let before = counts.total();
    for cookie in &cases {
        for path in ["/", "/logout"] {
            let reply = get(&app, path, Some(cookie)).await?;
            ensure!(
                !reply.status.is_server_error(),
                "{cookie:.60}: {}",
                reply.status
            );
        }
        let page = get(&app, "/", Some(cookie)).await?;
        ensure!(page.body.contains("You are not logged in"), "{cookie:.60}");
    }
    // Non-UTF-8 bytes in the header.
    let request = Request::get("/")
        .header(header::COOKIE, &b"__Host-cloakroom=\xff\xfe"[..])
        .body(Body::empty())?;
    ensure!(send(&app, request).await?.status == StatusCode::OK);
    ensure!(
        counts.total() == before,
        "bad cookies reached the store {} times",
        counts.total() - before
    );
    Ok(())
}

async fn bad_login_forms_get_a_4xx_with_a_message() -> anyhow::Result<()> {
    let counting = CountingStore::new(Arc::new(MemoryStore::new()));
    let counts = counting.counts();
    let app = app_over(Arc::new(counting))?;
    let long = "x".repeat(65);
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "no field",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            "Please enter a username.",
        ),
        (
            "empty",
            b"username=".to_vec(),
            StatusCode::BAD_REQUEST,
            "Please enter a username.",
        ),
        (
            "blank",
            b"username=+++".to_vec(),
            StatusCode::BAD_REQUEST,
            "Please enter a username.",
        ),
        (
            "too long",
            format!("username={long}").into_bytes(),
            StatusCode::BAD_REQUEST,
            "too long",
        ),
        (
            "control",
            b"username=a%0D%0Ab".to_vec(),
            StatusCode::BAD_REQUEST,
            "control characters",
        ),
        (
            "bad utf-8",
            b"username=%FF%FE".to_vec(),
            StatusCode::BAD_REQUEST,
            "valid UTF-8",
        ),
        (
            "10 KB",
            format!("username={}", "y".repeat(10_000)).into_bytes(),
            StatusCode::BAD_REQUEST,
            "too long",
        ),
    ];
    for (what, body, status, message) in cases {
        let reply = post_login(&app, None, body).await?;
        ensure!(reply.status == status, "{what}: {}", reply.status);
        ensure!(reply.body.contains(message), "{what}: {}", reply.body);
        ensure!(!sets_session_cookie(&reply), "{what} logged in");
    }
    // A 2 MiB body is refused before it is read.
    let reply = post_form(&app, "/login", None, vec![b'a'; 2 * 1024 * 1024]).await?;
    ensure!(
        reply.status == StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.status
    );
    // A body that is not a form.
    let request = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"username\":\"ann\"}"))?;
    let reply = send(&app, request).await?;
    ensure!(reply.status.is_client_error(), "{}", reply.status);
    ensure!(counts.total() == 0, "refused logins reached the store");
    // Unicode names are fine and escaped.
    let cookie = login(&app, "%E2%9C%93%20%3Cscript%3E").await?;
    let page = get(&app, "/", Some(&cookie)).await?;
    ensure!(
        page.body.contains("Logged in as ✓ &lt;script&gt;."),
        "{}",
        page.body
    );
    Ok(())
}

#[tokio::test]
async fn a_route_without_the_layer_is_a_500_not_an_empty_session() -> anyhow::Result<()> {
    async fn handler(_session: cloakroom::Session) -> &'static str {
        "unreachable"
    }
    let app = Demo::Axum(axum::Router::new().route("/", axum::routing::get(handler)));
    let reply = get(&app, "/", None).await?;
    ensure!(reply.status == StatusCode::INTERNAL_SERVER_ERROR);
    ensure!(!reply.body.contains("unreachable"));
    Ok(())
}

// The same mistake on actix-web: a handler that takes a `Session` on an app without the
// middleware gets a 500 and a log line, not an empty session.
#[test]
fn an_actix_route_without_the_middleware_is_a_500_not_an_empty_session() -> anyhow::Result<()> {
    async fn handler(_session: cloakroom::Session) -> &'static str {
        "unreachable"
    }
    actix_web::rt::System::new().block_on(async {
        let app = actix_web::test::init_service(
            actix_web::App::new().route("/", actix_web::web::get().to(handler)),
        )
        .await;
        let request = actix_web::test::TestRequest::get().uri("/").to_request();
        let response = actix_web::test::call_service(&app, request).await;
        ensure!(response.status().as_u16() == 500, "{}", response.status());
        let body = actix_web::test::read_body(response).await;
        ensure!(!body.windows(11).any(|w| w == b"unreachable"));
        Ok(())
    })
}

// The token with its last character changed (to one a token may end with, so only the value is
// wrong, not the shape).
fn one_off(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    format!("{head}{}", if last == "A" { "E" } else { "A" })
}

async fn a_login_without_a_matching_csrf_token_is_refused() -> anyhow::Result<()> {
    let counting = CountingStore::new(Arc::new(MemoryStore::new()));
    let counts = counting.counts();
    let app = app_over(Arc::new(counting))?;
    let (cookie, token) = csrf_for_login(&app).await?;
    let (_, other_token) = csrf_for_login(&app).await?;
    let cases: Vec<(&str, Option<String>, String)> = vec![
        ("no token, no cookie", None, "username=eve".to_owned()),
        (
            "token without its cookie",
            None,
            format!("csrf={token}&username=eve"),
        ),
        (
            "cookie without a token",
            Some(cookie.clone()),
            "username=eve".to_owned(),
        ),
        (
            "another form's token",
            Some(cookie.clone()),
            format!("csrf={other_token}&username=eve"),
        ),
        (
            "a token one character off",
            Some(cookie.clone()),
            format!("csrf={}&username=eve", one_off(&token)),
        ),
        (
            "an empty token and cookie",
            Some("__Host-cloakroom-csrf=".to_owned()),
            "csrf=&username=eve".to_owned(),
        ),
        (
            "a cookie planted twice",
            Some(format!("{cookie}; {cookie}")),
            format!("csrf={token}&username=eve"),
        ),
        (
            "a token that is not one",
            Some("__Host-cloakroom-csrf=<script>".to_owned()),
            "csrf=%3Cscript%3E&username=eve".to_owned(),
        ),
    ];
    for (what, cookie, body) in cases {
        let reply = post_form(&app, "/login", cookie.as_deref(), body).await?;
        ensure!(
            reply.status == StatusCode::FORBIDDEN,
            "{what}: {}",
            reply.status
        );
        ensure!(
            reply.body.contains("Please try again"),
            "{what}: {}",
            reply.body
        );
        ensure!(!sets_session_cookie(&reply), "{what} logged in");
        // The refusal comes with a fresh form and token, so the user can simply try again.
        ensure!(
            reply.body.contains("name=\"csrf\""),
            "{what}: no fresh form"
        );
    }
    ensure!(counts.total() == 0, "refused logins reached the store");
    // The genuine pair logs in.
    let reply = post_form(
        &app,
        "/login",
        Some(&cookie),
        format!("csrf={token}&username=ann"),
    )
    .await?;
    ensure!(reply.status == StatusCode::SEE_OTHER, "{}", reply.status);
    ensure!(sets_session_cookie(&reply));
    Ok(())
}
