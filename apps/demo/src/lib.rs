//! The session-store tutorial app on cloakroom: `/`, `/login` and `/logout`.
//!
//! Faithful to the tutorial's routes and texts; safe where it was not: the username is
//! HTML-escaped, the login form carries a CSRF token, the session id rotates at login, logout
//! deletes the session server-side (by `POST` from the page; `GET /logout` still works as in the
//! tutorial), and bad input gets a 4xx with a message instead of an error page.

use axum::extract::rejection::FormRejection;
use axum::extract::{DefaultBodyLimit, Form};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Extension, Router};
use cloakroom::{Error, ErrorKind, Session, SessionLayer, SessionToken};
use serde::Deserialize;

/// Longest accepted username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Largest accepted request body: a login form is tiny.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The app's routes, wrapped in `layer`. Tests drive this router directly.
pub fn app(layer: SessionLayer) -> Router {
    let csrf = Csrf {
        secure: layer.manager().config().is_secure(),
    };
    Router::new()
        .route("/", get(index))
        .route("/whoami", get(whoami))
        .route("/login", get(login_form).post(login))
        .route("/logout", get(logout).post(logout))
        .layer(layer)
        .layer(Extension(csrf))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Login CSRF protection by double submit: the form carries a random token that must match a
/// cookie of the same value. A cross-site page can make the browser post the form, but it
/// cannot read or set the cookie: it is `SameSite=Strict` (so the browser does not send it on a
/// cross-site post at all), `HttpOnly`, and `__Host-` prefixed when cookies are `Secure`, so a
/// sibling subdomain cannot plant one. No session is created for the form, so showing it costs
/// the store nothing.
#[derive(Clone, Copy)]
struct Csrf {
    secure: bool,
}

impl Csrf {
    fn cookie_name(self) -> &'static str {
        if self.secure {
            "__Host-cloakroom-csrf"
        } else {
            "cloakroom-csrf"
        }
    }

    fn set_cookie(self, token: &str) -> Option<HeaderValue> {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{}={token}; Path=/; HttpOnly; SameSite=Strict{secure}",
            self.cookie_name()
        ))
        .ok()
    }

    /// The token in the request's cookie, if exactly one well-formed one is there.
    fn cookie_token(self, headers: &HeaderMap) -> Option<String> {
        // As bytes: another cookie of the site that is not ASCII must not hide this one.
        let mut found = cloakroom::cookies::values_named(
            headers
                .get_all(header::COOKIE)
                .iter()
                .map(HeaderValue::as_bytes),
            self.cookie_name(),
        );
        match (found.next(), found.next()) {
            (Some(token), None) => std::str::from_utf8(token)
                .ok()
                .filter(|token| SessionToken::parse(token).is_some())
                .map(str::to_owned),
            _ => None,
        }
    }
}

/// Compares two tokens without an early exit, so the time taken says nothing about where they
/// differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
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
    // Logout is a POST from the page: a cross-site link cannot log the user out (the session
    // cookie is SameSite=Lax, so a cross-site POST does not carry it).
    Html(format!(
        "{HEAD}<p>Logged in as {}.<br>\nVisits: {visits}</p>\n\
         <form method=\"post\" action=\"/logout\"><button type=\"submit\">Log out</button></form>\n{FOOT}",
        escape(username)
    ))
    .into_response()
}

fn anonymous_page() -> Response {
    page("<p>You are not logged in</p>\n<p><a href=\"/login\">Log in</a></p>\n")
}

// The login form with a fresh CSRF token, in the page and in its cookie.
fn login_page(csrf: Csrf, status: StatusCode, message: Option<&str>) -> Result<Response, Error> {
    let token = SessionToken::generate()?.to_text();
    let alert = message
        .map(|m| format!("<p role=\"alert\">{}</p>\n", escape(m)))
        .unwrap_or_default();
    let mut response = page(&format!(
        "{alert}<form method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\n\
         <p><input type=\"text\" name=\"username\" maxlength=\"{MAX_USERNAME_CHARS}\" required autofocus>\n\
         <p><input type=\"submit\" value=\"Login\">\n</form>\n"
    ));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(cookie) = csrf.set_cookie(&token) {
        headers.append(header::SET_COOKIE, cookie);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

async fn index(session: Session) -> Result<Response, Error> {
    // Increment first: one round trip increments, slides the TTL and loads the session, so the
    // username read below needs no second trip.
    let visits = match session.incr("visits", 1).await {
        Ok(Some(visits)) => visits,
        Ok(None) => return Ok(anonymous_page()),
        // Something other than this app wrote the counter: start it again rather than fail
        // every visit until the session ends (nothing was written by the failed increment).
        Err(e) if matches!(e.kind(), ErrorKind::NotAnInteger | ErrorKind::OutOfRange) => {
            tracing::warn!("the visits field is not a counter that can grow; it starts again at 1");
            session.insert("visits", 1)?;
            1
        }
        Err(e) => return Err(e),
    };
    match session.get::<String>("username").await {
        Ok(Some(username)) => Ok(index_page(&username, visits)),
        Ok(None) => Ok(anonymous_page()),
        // A username this app did not write: shown as logged out, and logging in again
        // replaces the session.
        Err(e) if e.kind() == ErrorKind::Decode => {
            tracing::warn!("the username field is not text; the page is shown as logged out");
            Ok(anonymous_page())
        }
        Err(e) => Err(e),
    }
}

// The check most requests of a real app make, is this user logged in and who is it: a read,
// without counting a visit. With the near-cache on, a hit costs no round trip.
async fn whoami(session: Session) -> Result<Response, Error> {
    match session.get::<String>("username").await {
        Ok(Some(username)) => Ok(page(&format!(
            "<p>Logged in as {}.</p>\n",
            escape(&username)
        ))),
        Ok(None) => Ok(anonymous_page()),
        // As on the index page: a username this app did not write reads as logged out.
        Err(e) if e.kind() == ErrorKind::Decode => Ok(anonymous_page()),
        Err(e) => Err(e),
    }
}

async fn login_form(Extension(csrf): Extension<Csrf>) -> Result<Response, Error> {
    login_page(csrf, StatusCode::OK, None)
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
struct LoginForm {
    username: Option<String>,
    csrf: Option<String>,
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
    if name.chars().any(is_invisible_format) {
        return Err("Usernames cannot contain invisible or text-direction characters.");
    }
    // The form decoder replaces bytes that are not UTF-8 with U+FFFD: refuse rather than store
    // a name the user did not type.
    if name.contains(char::REPLACEMENT_CHARACTER) {
        return Err("Usernames must be valid UTF-8 text.");
    }
    Ok(name)
}

/// Characters that change how the text around them is shown without being seen: direction
/// overrides and isolates (which can make `admin\u{202e}txt` read as another name) and
/// zero-width characters (which make two different names look alike).
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

async fn login(
    session: Session,
    Extension(csrf): Extension<Csrf>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, Error> {
    let form = match form {
        Ok(Form(form)) => form,
        Err(rejection) => {
            let status = rejection.status();
            let status = if status.is_client_error() {
                status
            } else {
                StatusCode::BAD_REQUEST
            };
            return login_page(csrf, status, Some("The form could not be read."));
        }
    };
    // The form's token must match the cookie's: only a page of this site could read the one
    // and be sent the other.
    let genuine = match (csrf.cookie_token(&headers), form.csrf.as_deref()) {
        (Some(cookie), Some(field)) => same_token(&cookie, field),
        _ => false,
    };
    if !genuine {
        return login_page(
            csrf,
            StatusCode::FORBIDDEN,
            Some("This login form has expired or came from another site. Please try again."),
        );
    }
    let username = match validate_username(form.username.as_deref().unwrap_or("")) {
        Ok(name) => name,
        Err(message) => return login_page(csrf, StatusCode::BAD_REQUEST, Some(message)),
    };
    // A fresh session with a fresh token: any session this browser had is deleted, so a token
    // planted before login is worthless after it.
    session.start()?;
    session.insert("username", username)?;
    Ok(Redirect::to("/").into_response())
}

async fn logout(session: Session) -> Redirect {
    session.destroy();
    Redirect::to("/")
}
