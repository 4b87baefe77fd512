//! Driving the demo's router in-process, with cookies handled by hand.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use cloakroom::{SessionConfig, SessionLayer, Store};
use http_body_util::BodyExt;
use tower::ServiceExt;

pub(crate) const SECRET: &[u8] = b"demo-test-secret-0123456789abcdef0123456789";

pub(crate) fn app_over(store: Arc<dyn Store>) -> anyhow::Result<Router> {
    let layer = SessionLayer::new(store, SessionConfig::new(SECRET)?)?;
    Ok(cloakroom_demo::app(layer))
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    /// The cookie pair a browser would keep from this response: `Some("")` when it was cleared.
    pub(crate) fn cookie(&self) -> Option<String> {
        let header = self.headers.get(header::SET_COOKIE)?.to_str().ok()?;
        let pair = header.split(';').next()?.trim().to_owned();
        Some(if pair.ends_with('=') {
            String::new()
        } else {
            pair
        })
    }

    pub(crate) fn set_cookie_header(&self) -> Option<&str> {
        self.headers.get(header::SET_COOKIE)?.to_str().ok()
    }

    pub(crate) fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

pub(crate) async fn send(app: &Router, request: Request<Body>) -> anyhow::Result<Reply> {
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

pub(crate) async fn get(app: &Router, path: &str, cookie: Option<&str>) -> anyhow::Result<Reply> {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    send(app, request.body(Body::empty())?).await
}

pub(crate) async fn post_form(
    app: &Router,
    path: &str,
    cookie: Option<&str>,
    body: impl Into<Body>,
) -> anyhow::Result<Reply> {
    let mut request =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    send(app, request.body(body.into())?).await
}

/// What a browser gets with the login form: the CSRF cookie pair and the token in the page.
pub(crate) async fn csrf_for_login(app: &Router) -> anyhow::Result<(String, String)> {
    let form = get(app, "/login", None).await?;
    let cookie = form
        .cookie()
        .filter(|c| c.starts_with("__Host-cloakroom-csrf="))
        .ok_or_else(|| anyhow::anyhow!("the login form set no CSRF cookie: {form:?}"))?;
    let token = form
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| anyhow::anyhow!("the login form has no CSRF field: {}", form.body))?
        .to_owned();
    Ok((cookie, token))
}

/// Posts the login form as a browser would after showing it: with the form's CSRF token in the
/// body and its cookie beside `cookie` (the browser's session cookie, if any).
pub(crate) async fn post_login(
    app: &Router,
    cookie: Option<&str>,
    body: impl AsRef<[u8]>,
) -> anyhow::Result<Reply> {
    let (csrf_cookie, token) = csrf_for_login(app).await?;
    let cookies = match cookie {
        Some(cookie) => format!("{cookie}; {csrf_cookie}"),
        None => csrf_cookie,
    };
    let mut full = format!("csrf={token}&").into_bytes();
    full.extend_from_slice(body.as_ref());
    post_form(app, "/login", Some(&cookies), full).await
}

/// Whether a response logged someone in (set the session cookie, not just the CSRF one).
pub(crate) fn sets_session_cookie(reply: &Reply) -> bool {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.starts_with("__Host-cloakroom="))
}

/// Logs in as `name` (form-encoded by the caller's choice of text) and returns the cookie.
pub(crate) async fn login(app: &Router, encoded_name: &str) -> anyhow::Result<String> {
    let reply = post_login(app, None, format!("username={encoded_name}")).await?;
    anyhow::ensure!(
        reply.status == StatusCode::SEE_OTHER,
        "login answered {}",
        reply.status
    );
    reply
        .cookie()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| anyhow::anyhow!("login set no cookie"))
}

/// The visit count on a logged-in index page.
pub(crate) fn visits(body: &str) -> Option<i64> {
    let rest = body.split("Visits: ").nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}
