//! The demo on axum: the routes of [`pages`], wrapped in cloakroom's
//! `SessionLayer`.

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use cloakroom::{Error, Session, SessionLayer};
use tower::ServiceBuilder;
use tracing::Instrument as _;

use crate::MAX_BODY_BYTES;
use crate::account::{self, SessionsForm};
use crate::api;
use crate::csrf::Csrf;
use crate::pages::{self, LoginForm, Reply};

/// The app's routes, wrapped in `layer`. Tests drive this router directly.
pub fn app(layer: SessionLayer) -> Router {
    let csrf = Csrf::new(layer.manager().config().is_secure());
    Router::new()
        .route("/", get(index))
        .route("/whoami", get(whoami))
        .route("/login", get(login_form).post(login))
        .route("/logout", get(logout).post(logout))
        .route("/sessions", get(sessions))
        .route("/sessions/end", post(end_session))
        .route("/sessions/end-others", post(end_other_sessions))
        .route("/api/login", post(api_login))
        .route("/api/me", get(api_me))
        .route("/api/logout", post(api_logout))
        // One stack, outermost first: each `Router::layer` call would wrap every route once
        // more, a boxed service cloned per request.
        .layer(
            ServiceBuilder::new()
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
                .layer(Extension(csrf))
                // Outside the session layer, so that the session is named on the request's span.
                .layer(axum::middleware::from_fn(in_request_span))
                .layer(layer),
        )
}

// Not an `async fn`: one would hold the request twice (its argument, and inside `next.run`),
// in a future boxed on every request.
fn in_request_span(
    request: axum::extract::Request,
    next: Next,
) -> impl Future<Output = Response> + Send {
    let span = crate::logging::request_span(request.method().as_str(), request.uri().path());
    next.run(request).instrument(span)
}

fn respond(reply: Reply) -> Response {
    match reply {
        Reply::Redirect(to) => Redirect::to(to).into_response(),
        Reply::NoContent => StatusCode::NO_CONTENT.into_response(),
        Reply::Json { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response();
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
        Reply::Page(page) => {
            let mut response = Html(page.html).into_response();
            *response.status_mut() =
                StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let headers = response.headers_mut();
            if let Some(cookie) = page.set_cookie.and_then(|c| HeaderValue::try_from(c).ok()) {
                headers.append(header::SET_COOKIE, cookie);
            }
            if page.no_store {
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            response
        }
    }
}

async fn index(session: Session) -> Result<Response, Error> {
    pages::index(&session).await.map(respond)
}

async fn whoami(session: Session) -> Result<Response, Error> {
    pages::whoami(&session).await.map(respond)
}

async fn login_form(Extension(csrf): Extension<Csrf>) -> Result<Response, Error> {
    pages::login_form(csrf).map(respond)
}

async fn login(
    session: Session,
    Extension(csrf): Extension<Csrf>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let form = body
        .map_err(|rejection| rejection.status().as_u16())
        .and_then(|body| {
            let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
            LoginForm::parse(content_type, &body)
        });
    pages::login(&session, csrf, cookies(&headers), form).map(respond)
}

async fn sessions(session: Session, Extension(csrf): Extension<Csrf>) -> Result<Response, Error> {
    account::sessions(&session, csrf).await.map(respond)
}

// A posted form of the sessions page, and the request's cookies.
fn sessions_form(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<SessionsForm, u16> {
    body.map_err(|rejection| rejection.status().as_u16())
        .and_then(|body| {
            let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
            SessionsForm::parse(content_type, &body)
        })
}

fn cookies(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
}

async fn end_session(
    session: Session,
    Extension(csrf): Extension<Csrf>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let form = sessions_form(&headers, body);
    account::end(&session, csrf, cookies(&headers), form)
        .await
        .map(respond)
}

async fn end_other_sessions(
    session: Session,
    Extension(csrf): Extension<Csrf>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let form = sessions_form(&headers, body);
    account::end_others(&session, csrf, cookies(&headers), form)
        .await
        .map(respond)
}

async fn logout(session: Session) -> Response {
    respond(pages::logout(&session))
}

async fn api_login(
    session: Session,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    let body = body.map_err(|rejection| rejection.status().as_u16());
    api::login(
        &session,
        content_type,
        body.as_deref().map_err(|&status| status),
    )
    .map(respond)
}

async fn api_me(session: Session) -> Result<Response, Error> {
    api::me(&session).await.map(respond)
}

async fn api_logout(session: Session) -> Response {
    respond(api::logout(&session))
}
