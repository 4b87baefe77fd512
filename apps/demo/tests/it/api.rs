//! The demo's API for clients that are not browsers: a bearer token from `POST /api/login`,
//! `GET /api/me` counting visits, `POST /api/logout`; never a cookie; bad input gets a 4xx with
//! a JSON error and never reaches the store.

use std::sync::Arc;

use anyhow::{Context, ensure};
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cloakroom_test::{CountingStore, StoreFixture};

use crate::support::{Demo, Reply, app_over, get, login, send};

crate::support::over_each_app!(
    test_over_each_store;
    an_api_client_logs_in_counts_visits_and_logs_out,
    bad_api_requests_get_a_4xx_and_never_reach_the_store,
    the_api_leaves_a_browsers_cookie_session_alone,
);

async fn api(
    app: &Demo,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<(&str, &str)>,
) -> anyhow::Result<Reply> {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = match body {
        Some((content_type, body)) => request
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body.to_owned()))?,
        None => request.body(Body::empty())?,
    };
    let reply = send(app, request).await?;
    ensure!(
        reply.headers.get(header::SET_COOKIE).is_none(),
        "the API set a cookie: {reply:?}"
    );
    Ok(reply)
}

fn json(reply: &Reply) -> anyhow::Result<serde_json::Value> {
    ensure!(
        reply.header(header::CONTENT_TYPE) == Some("application/json"),
        "{reply:?}"
    );
    Ok(serde_json::from_str(&reply.body)?)
}

async fn token(app: &Demo, content_type: &str, body: &str) -> anyhow::Result<String> {
    let reply = api(app, "POST", "/api/login", None, Some((content_type, body))).await?;
    ensure!(reply.status == StatusCode::OK, "{reply:?}");
    json(&reply)?["token"]
        .as_str()
        .map(str::to_owned)
        .context("no token")
}

async fn an_api_client_logs_in_counts_visits_and_logs_out(f: StoreFixture) -> anyhow::Result<()> {
    let app = app_over(f.store.clone())?;
    let from_json = token(&app, "application/json", r#"{"username":"<b>ann"}"#).await?;
    let from_form = token(&app, "application/x-www-form-urlencoded", "username=bob").await?;
    for expected in 1..=2 {
        let me = api(&app, "GET", "/api/me", Some(&from_json), None).await?;
        ensure!(me.status == StatusCode::OK, "{me:?}");
        ensure!(
            json(&me)? == serde_json::json!({"username": "<b>ann", "visits": expected}),
            "{}",
            me.body
        );
        ensure!(
            me.header(header::CACHE_CONTROL) == Some("no-store"),
            "{me:?}"
        );
    }
    let me = api(&app, "GET", "/api/me", Some(&from_form), None).await?;
    ensure!(json(&me)? == serde_json::json!({"username": "bob", "visits": 1}));
    // Logout: 204, and the token is refused from then on; the other client is still in.
    let out = api(&app, "POST", "/api/logout", Some(&from_json), None).await?;
    ensure!(
        out.status == StatusCode::NO_CONTENT && out.body.is_empty(),
        "{out:?}"
    );
    let after = api(&app, "GET", "/api/me", Some(&from_json), None).await?;
    ensure!(after.status == StatusCode::UNAUTHORIZED, "{after:?}");
    ensure!(after.header(header::WWW_AUTHENTICATE) == Some("Bearer"));
    ensure!(json(&after)?["error"].is_string());
    let still = api(&app, "GET", "/api/me", Some(&from_form), None).await?;
    ensure!(json(&still)?["visits"] == 2);
    Ok(())
}

/// The API answers header sessions only: a browser's cookie, which any page can make it send,
/// neither reads `/api/me`, nor is ended by `/api/logout`, nor is ended by `/api/login`.
async fn the_api_leaves_a_browsers_cookie_session_alone(f: StoreFixture) -> anyhow::Result<()> {
    let app = app_over(f.store.clone())?;
    let cookie = login(&app, "ann").await?;
    let with_cookie = |method: &'static str, path: &'static str, body: Option<&'static str>| {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::COOKIE, cookie.as_str());
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        request.body(Body::from(body.unwrap_or_default()))
    };
    let me = send(&app, with_cookie("GET", "/api/me", None)?).await?;
    ensure!(me.status == StatusCode::UNAUTHORIZED, "{me:?}");
    let out = send(&app, with_cookie("POST", "/api/logout", None)?).await?;
    ensure!(out.status == StatusCode::NO_CONTENT, "{out:?}");
    let login = send(
        &app,
        with_cookie("POST", "/api/login", Some("username=eve"))?,
    )
    .await?;
    ensure!(login.status == StatusCode::OK, "{login:?}");
    ensure!(login.headers.get(header::SET_COOKIE).is_none(), "{login:?}");
    let page = get(&app, "/", Some(&cookie)).await?;
    ensure!(
        page.body.contains("Logged in as ann."),
        "the API ended the browser's session: {}",
        page.body
    );
    Ok(())
}

async fn bad_api_requests_get_a_4xx_and_never_reach_the_store(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let counting = CountingStore::new(f.store.clone());
    let counts = counting.counts();
    let app = app_over(Arc::new(counting))?;
    let cases: [(Option<(&str, &str)>, StatusCode); 7] = [
        (None, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (
            Some(("text/plain", "username=ann")),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Some(("application/json", "{\"username\":")),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some(("application/json", "{\"username\":42}")),
            StatusCode::BAD_REQUEST,
        ),
        (Some(("application/json", "{}")), StatusCode::BAD_REQUEST),
        (
            Some(("application/x-www-form-urlencoded", "username=a%0Ab")),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some(("application/json", "{\"username\":\"\u{202e}nimda\"}")),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (body, status) in cases {
        let reply = api(&app, "POST", "/api/login", None, body).await?;
        ensure!(reply.status == status, "{body:?}: {reply:?}");
        ensure!(
            json(&reply)?["error"].is_string(),
            "{body:?}: {}",
            reply.body
        );
    }
    for token in ["", "garbage", "a.b", &"A".repeat(5_000)] {
        let reply = api(&app, "GET", "/api/me", Some(token), None).await?;
        ensure!(reply.status == StatusCode::UNAUTHORIZED, "{reply:?}");
        let reply = api(&app, "POST", "/api/logout", Some(token), None).await?;
        ensure!(reply.status == StatusCode::NO_CONTENT, "{reply:?}");
    }
    ensure!(
        counts.total() == 0,
        "bad API requests reached the store {} times",
        counts.total()
    );
    Ok(())
}
