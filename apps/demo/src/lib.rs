//! The session-store tutorial app on cloakroom: `/`, `/login` and `/logout`.
//!
//! Faithful to the tutorial's routes and texts; safe where it was not: the username is
//! HTML-escaped, the session id rotates at login, logout deletes the session server-side, and
//! bad input gets a 4xx with a message instead of an error page.

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use cloakroom::{Session, SessionLayer, SessionRejection};
use serde::Deserialize;

/// Longest accepted username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Largest accepted request body: a login form is tiny.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The app's routes, wrapped in `layer`. Tests drive this router directly.
pub fn app(layer: SessionLayer) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login))
        .route("/logout", get(logout))
        .layer(layer)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Escapes text for HTML content and quoted attributes (`&`, `<`, `>`, `"`, `'`).
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_quoted_attribute(text)
}

const HEAD: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>cloakroom demo</title></head>\n<body>\n";
const FOOT: &str = "</body></html>\n";

fn page(body: &str) -> Response {
    Html(format!("{HEAD}{body}{FOOT}")).into_response()
}

fn index_page(username: &str, visits: i64) -> Response {
    Html(format!(
        "{HEAD}<p>Logged in as {}.<br>\nVisits: {visits}</p>\n\
         <p><a href=\"/logout\">Log out</a></p>\n{FOOT}",
        escape(username)
    ))
    .into_response()
}

fn anonymous_page() -> Response {
    page("<p>You are not logged in</p>\n<p><a href=\"/login\">Log in</a></p>\n")
}

fn login_page(message: Option<&str>) -> Response {
    let alert = message
        .map(|m| format!("<p role=\"alert\">{}</p>\n", escape(m)))
        .unwrap_or_default();
    page(&format!(
        "{alert}<form method=\"post\" action=\"/login\">\n\
         <p><input type=\"text\" name=\"username\" maxlength=\"{MAX_USERNAME_CHARS}\" required autofocus>\n\
         <p><input type=\"submit\" value=\"Login\">\n</form>\n"
    ))
}

async fn index(session: Session) -> Result<Response, SessionRejection> {
    // Increment first: one round trip increments, slides the TTL and loads the session, so the
    // username read below needs no second trip.
    let Some(visits) = session.incr("visits", 1).await? else {
        return Ok(anonymous_page());
    };
    match session.get::<String>("username").await? {
        Some(username) => Ok(index_page(&username, visits)),
        None => Ok(anonymous_page()),
    }
}

async fn login_form() -> Response {
    login_page(None)
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
struct LoginForm {
    username: Option<String>,
}

fn bad_login(status: StatusCode, message: &str) -> Response {
    let mut response = login_page(Some(message));
    *response.status_mut() = status;
    response
}

/// Checks a username; the error is a message for the user.
pub fn validate_username(raw: &str) -> Result<&str, &'static str> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("Please enter a username.");
    }
    if name.chars().count() > MAX_USERNAME_CHARS {
        return Err("That username is too long (64 characters at most).");
    }
    if name.chars().any(char::is_control) {
        return Err("Usernames cannot contain control characters.");
    }
    // The form decoder replaces bytes that are not UTF-8 with U+FFFD: refuse rather than store
    // a name the user did not type.
    if name.contains(char::REPLACEMENT_CHARACTER) {
        return Err("Usernames must be valid UTF-8 text.");
    }
    Ok(name)
}

async fn login(
    session: Session,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, SessionRejection> {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            let status = rejection.status();
            let status = if status.is_client_error() {
                status
            } else {
                StatusCode::BAD_REQUEST
            };
            return Ok(bad_login(status, "The form could not be read."));
        }
    };
    let username = match validate_username(form.username.as_deref().unwrap_or("")) {
        Ok(name) => name,
        Err(message) => return Ok(bad_login(StatusCode::BAD_REQUEST, message)),
    };
    // A fresh session with a fresh token: any session this browser had is deleted, so a token
    // planted before login is worthless after it.
    session.start().await?;
    session.insert("username", username).await?;
    Ok(Redirect::to("/").into_response())
}

async fn logout(session: Session) -> Redirect {
    session.destroy().await;
    Redirect::to("/")
}
