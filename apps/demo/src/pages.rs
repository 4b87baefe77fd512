//! The demo's pages and what each route answers, without a web framework: the axum and the
//! actix-web apps turn a [`Reply`] into their own response type, so both serve exactly the same
//! texts, forms and headers.

use std::time::Duration;

use cloakroom::{Error, ErrorKind, Lifetime, Session, SessionConfig, SessionToken};

use crate::csrf::Csrf;
use crate::username::{MAX_USERNAME_CHARS, validate_username};

/// How long "Remember me" keeps a user logged in, active or not.
pub const REMEMBER_FOR: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The session settings the pages need, on top of `config`: "Remember me" may give a session
/// [`REMEMBER_FOR`], and API clients carry sessions in `Authorization: Bearer`.
pub fn session_config(config: SessionConfig) -> SessionConfig {
    let idle = config.idle_timeout().max(REMEMBER_FOR);
    let absolute = config.absolute_timeout().max(REMEMBER_FOR);
    config
        .with_max_lifetime(idle, absolute)
        // API clients (`/api/...`) carry their session in `Authorization: Bearer`.
        .with_header_sessions("authorization")
}

/// What a route answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An HTML page.
    Page(Page),
    /// A `303 See Other` to a path of this app.
    Redirect(&'static str),
    /// A JSON document (`application/json`), for the API; a 401 also carries
    /// `WWW-Authenticate: Bearer`.
    Json {
        /// The HTTP status code.
        status: u16,
        /// The document.
        body: String,
    },
    /// A `204 No Content`.
    NoContent,
}

/// An HTML page, with the headers a page of this app may need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The HTTP status code.
    pub status: u16,
    /// The whole document.
    pub html: String,
    /// A `Set-Cookie` value to send: the login form's CSRF cookie.
    pub set_cookie: Option<String>,
    /// Whether to send `Cache-Control: no-store` (a page carrying a one-time token).
    pub no_store: bool,
}

/// The login form's fields, as the browser posts them.
#[derive(Debug, Default, serde::Deserialize)]
pub struct LoginForm {
    username: Option<String>,
    csrf: Option<String>,
    // The "Remember me" checkbox: present when checked.
    remember: Option<String>,
}

impl LoginForm {
    /// Reads a posted body (see [`parse_form`]); both failures are answered with the form again.
    pub fn parse(content_type: Option<&[u8]>, body: &[u8]) -> Result<Self, u16> {
        parse_form(content_type, body)
    }
}

/// Reads a posted form: a body that is not `application/x-www-form-urlencoded` is a 415, one
/// that does not decode as the form a 400.
pub fn parse_form<T: serde::de::DeserializeOwned>(
    content_type: Option<&[u8]>,
    body: &[u8],
) -> Result<T, u16> {
    if media_type(content_type).as_deref() != Some(FORM) {
        return Err(415);
    }
    serde_urlencoded::from_bytes(body).map_err(|_| 400)
}

/// The status that answers a posted body that could not be read as a form: the reader's own
/// when it is a client error (413, 415), else 400.
pub(crate) fn unreadable_form_status(status: u16) -> u16 {
    if (400..500).contains(&status) {
        status
    } else {
        400
    }
}

/// A Unix time in milliseconds as HTTP writes dates: `Tue, 01 Dec 2026 03:00:00 GMT`. HTTP
/// dates end with the year 9999 (the formatter panics past it): a later time, which only a
/// record cloakroom did not write can hold, prints as "-".
pub fn http_date(unix_ms: u64) -> String {
    const LAST_HTTP_DATE_MS: u64 = 253_402_300_799_999;
    if unix_ms > LAST_HTTP_DATE_MS {
        return "-".to_owned();
    }
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_millis(unix_ms))
}

/// The media type of a form post.
pub const FORM: &str = "application/x-www-form-urlencoded";

/// The media type a `Content-Type` value names, in lower case and without its parameters.
pub fn media_type(content_type: Option<&[u8]>) -> Option<String> {
    content_type
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// Escapes text for HTML content and quoted attributes (`&`, `<`, `>`, `"`, `'`).
pub(crate) fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    html_escape::encode_quoted_attribute(text)
}

const HEAD: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>cloakroom demo</title></head>\n<body>\n";
const FOOT: &str = "</body></html>\n";

/// A whole document around `body`.
pub(crate) fn page_html(body: &str) -> String {
    format!("{HEAD}{body}{FOOT}")
}

fn page(body: &str) -> Reply {
    Reply::Page(Page {
        status: 200,
        html: page_html(body),
        set_cookie: None,
        no_store: false,
    })
}

fn index_page(username: &str, visits: i64, flash: Option<&str>) -> Reply {
    let flash = flash
        .map(|message| format!("<p role=\"status\">{}</p>\n", escape(message)))
        .unwrap_or_default();
    // The page logs out with a POST (the session cookie is SameSite=Lax, so a cross-site POST
    // does not carry it); `GET /logout` stays, as in the tutorial.
    page(&format!(
        "{flash}<p>Logged in as {}.<br>\nVisits: {visits}</p>\n\
         <form method=\"post\" action=\"/logout\"><button type=\"submit\">Log out</button></form>\n\
         <p><a href=\"/sessions\">Your sessions</a></p>\n",
        escape(username)
    ))
}

fn anonymous_page() -> Reply {
    page("<p>You are not logged in</p>\n<p><a href=\"/login\">Log in</a></p>\n")
}

// The login form with a fresh CSRF token, in the page and in its cookie.
fn login_page(csrf: Csrf, status: u16, message: Option<&str>) -> Result<Reply, Error> {
    let token = SessionToken::generate()?.to_text();
    let alert = message
        .map(|m| format!("<p role=\"alert\">{}</p>\n", escape(m)))
        .unwrap_or_default();
    Ok(Reply::Page(Page {
        status,
        html: format!(
            "{HEAD}{alert}<form method=\"post\" action=\"/login\">\n\
             <input type=\"hidden\" name=\"csrf\" value=\"{token}\">\n\
             <p><input type=\"text\" name=\"username\" maxlength=\"{MAX_USERNAME_CHARS}\" required autofocus>\n\
             <p><label><input type=\"checkbox\" name=\"remember\" value=\"1\"> Remember me</label>\n\
             <p><input type=\"submit\" value=\"Login\">\n</form>\n{FOOT}"
        ),
        set_cookie: Some(csrf.set_cookie(&token)),
        no_store: true,
    }))
}

/// Counts a visit of the session: its new count, `None` without a session. One round trip, which
/// also slides the TTL and loads the session for the reads that follow.
pub async fn count_visit(session: &Session) -> Result<Option<i64>, Error> {
    match session.incr("visits", 1).await {
        Ok(visits) => Ok(visits),
        // Something other than this app wrote the counter: start it again rather than fail
        // every visit until the session ends (nothing was written by the failed increment).
        Err(e) if matches!(e.kind(), ErrorKind::NotAnInteger | ErrorKind::OutOfRange) => {
            tracing::warn!("the visits field is not a counter that can grow; it starts again at 1");
            session.insert("visits", 1)?;
            Ok(Some(1))
        }
        Err(e) => Err(e),
    }
}

/// `GET /`: the visit count and the username, or the anonymous page.
pub async fn index(session: &Session) -> Result<Reply, Error> {
    // The flash message ("Welcome, Ann." after login) is read and removed by the increment's
    // step: taken before it, it costs no round trip of its own.
    let flash = session.take_flash();
    // Increment first: one round trip increments, slides the TTL and loads the session, so the
    // username read below needs no second trip.
    let Some(visits) = count_visit(session).await? else {
        return Ok(anonymous_page());
    };
    let flash = match flash.message::<String>().await {
        Ok(message) => message,
        // A message this app did not write is not shown.
        Err(e) if e.kind() == ErrorKind::Decode => None,
        Err(e) => return Err(e),
    };
    match session.get::<String>("username").await {
        Ok(Some(username)) => Ok(index_page(&username, visits, flash.as_deref())),
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

/// `GET /whoami`: the check most requests of a real app make, is this user logged in and who is
/// it. A read, without counting a visit; with the near-cache on, a hit costs no round trip.
pub async fn whoami(session: &Session) -> Result<Reply, Error> {
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

/// `GET /login`: the form.
pub fn login_form(csrf: Csrf) -> Result<Reply, Error> {
    login_page(csrf, 200, None)
}

/// `POST /login`: checks the form's CSRF token against its cookie (found among
/// `cookie_headers`) and the username, then starts a fresh session. `form` is the posted form,
/// or the status for a body that could not be read as one.
pub fn login<'a>(
    session: &Session,
    csrf: Csrf,
    cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    form: Result<LoginForm, u16>,
) -> Result<Reply, Error> {
    let form = match form {
        Ok(form) => form,
        Err(status) => {
            let status = unreadable_form_status(status);
            return login_page(csrf, status, Some("The form could not be read."));
        }
    };
    // The form's token must match the cookie's: only a page of this site could read the one
    // and be sent the other.
    if !csrf.matches(cookie_headers, form.csrf.as_deref()) {
        return login_page(
            csrf,
            403,
            Some("This login form has expired or came from another site. Please try again."),
        );
    }
    let username = match validate_username(form.username.as_deref().unwrap_or("")) {
        Ok(name) => name,
        Err(message) => return login_page(csrf, 400, Some(message)),
    };
    // A fresh session with a fresh token: any session this browser had is deleted, so a token
    // planted before login is worthless after it.
    session.start()?;
    // Remembered: a cookie and a session that last 30 days, active or not. Otherwise, as
    // Flask's default session: a cookie that ends with the browser, and the idle timeout.
    session.set_lifetime(if form.remember.is_some() {
        Lifetime::new(REMEMBER_FOR, REMEMBER_FOR)
    } else {
        Lifetime::configured().ending_with_browser()
    })?;
    session.insert("username", username)?;
    // Listed in the user's index: the sessions page, the per-user cap and the admin CLI's
    // `sessions` commands find the session by its user. Costs the login one store call.
    session.set_user(username)?;
    // Shown once, on the next page.
    session.flash(format!("Welcome, {username}."))?;
    Ok(Reply::Redirect("/"))
}

/// `GET` or `POST /logout`: ends the session, here and in the store.
pub fn logout(session: &Session) -> Reply {
    // Logged in the request's span, which names the session.
    tracing::info!("logged out");
    session.destroy();
    Reply::Redirect("/")
}
