//! Bad input gets a 4xx or the anonymous page, never a 5xx; bad cookies never reach the store.

use std::sync::Arc;

use anyhow::ensure;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use cloakroom::{MemoryStore, SessionConfig, SessionLayer};
use cloakroom_test::CountingStore;

use crate::support::{app_over, get, login, post_form, send};

#[tokio::test]
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
        let layer = SessionLayer::new(
            Arc::new(MemoryStore::new()),
            SessionConfig::new(b"some-other-secret-some-other-secret-!!")?,
        )?;
        login(&cloakroom_demo::app(layer), "eve").await?
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

#[tokio::test]
async fn bad_login_forms_get_a_4xx_with_a_message() -> anyhow::Result<()> {
    let counting = CountingStore::new(Arc::new(MemoryStore::new()));
    let counts = counting.counts();
    let app = app_over(Arc::new(counting))?;
    let long = "x".repeat(65);
    let cases: Vec<(&str, Body, StatusCode, &str)> = vec![
        (
            "no field",
            Body::from(""),
            StatusCode::BAD_REQUEST,
            "Please enter a username.",
        ),
        (
            "empty",
            Body::from("username="),
            StatusCode::BAD_REQUEST,
            "Please enter a username.",
        ),
        (
            "blank",
            Body::from("username=+++"),
            StatusCode::BAD_REQUEST,
            "Please enter a username.",
        ),
        (
            "too long",
            Body::from(format!("username={long}")),
            StatusCode::BAD_REQUEST,
            "too long",
        ),
        (
            "control",
            Body::from("username=a%0D%0Ab"),
            StatusCode::BAD_REQUEST,
            "control characters",
        ),
        (
            "bad utf-8",
            Body::from(&b"username=%FF%FE"[..]),
            StatusCode::BAD_REQUEST,
            "valid UTF-8",
        ),
        (
            "10 KB",
            Body::from(format!("username={}", "y".repeat(10_000))),
            StatusCode::BAD_REQUEST,
            "too long",
        ),
    ];
    for (what, body, status, message) in cases {
        let reply = post_form(&app, "/login", None, body).await?;
        ensure!(reply.status == status, "{what}: {}", reply.status);
        ensure!(reply.body.contains(message), "{what}: {}", reply.body);
        ensure!(
            reply.headers.get(header::SET_COOKIE).is_none(),
            "{what} logged in"
        );
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
    let app = axum::Router::new().route("/", axum::routing::get(handler));
    let reply = get(&app, "/", None).await?;
    ensure!(reply.status == StatusCode::INTERNAL_SERVER_ERROR);
    ensure!(!reply.body.contains("unreachable"));
    Ok(())
}
