//! The demo's API for clients that are not browsers (mobile apps, scripts): the same session
//! store, with the session carried in `Authorization: Bearer` instead of a cookie.
//!
//! * `POST /api/login` with a form field or a JSON member `username`: `{"token": "..."}`.
//! * `GET /api/me`: `{"username": "...", "visits": N}`, counting a visit; 401 without a session.
//! * `POST /api/logout`: 204; the token is refused from then on.
//!
//! No CSRF token here, unlike the login form: a browser never adds an `Authorization` header to
//! a request on its own, so another site cannot make it send one; and the login's token comes
//! back in the response body, which another site cannot read. For that to hold, these routes
//! act on header sessions only: `/api/me` and `/api/logout` ignore a browser's cookie, and
//! `/api/login` leaves the browser's cookie session as it was.

use cloakroom::{Error, ErrorKind, Session};
use serde::{Deserialize, Serialize};

use crate::pages::{FORM, Reply, count_visit, media_type};
use crate::username::validate_username;

#[derive(Debug, Default, Deserialize)]
struct Login {
    username: Option<String>,
}

#[derive(Serialize)]
struct Token<'a> {
    token: &'a str,
}

#[derive(Serialize)]
struct Me<'a> {
    username: &'a str,
    visits: i64,
}

#[derive(Serialize)]
struct Failure<'a> {
    error: &'a str,
}

fn json(status: u16, document: &impl Serialize) -> Reply {
    match serde_json::to_string(document) {
        Ok(body) => Reply::Json { status, body },
        // Our documents are a few strings and a number: they always serialize.
        Err(_) => Reply::Json {
            status: 500,
            body: "{\"error\":\"Internal server error.\"}".to_owned(),
        },
    }
}

fn failure(status: u16, error: &str) -> Reply {
    json(status, &Failure { error })
}

fn not_logged_in() -> Reply {
    failure(401, "You are not logged in.")
}

/// `POST /api/login`: `body` is the posted body, or the status for one that could not be read.
pub fn login(
    session: &Session,
    content_type: Option<&[u8]>,
    body: Result<&[u8], u16>,
) -> Result<Reply, Error> {
    let body = match body {
        Ok(body) => body,
        Err(status) => return Ok(failure(status, "The request body could not be read.")),
    };
    let login: Result<Login, ()> = match media_type(content_type).as_deref() {
        Some("application/json") => serde_json::from_slice(body).map_err(drop),
        Some(FORM) => serde_urlencoded::from_bytes(body).map_err(drop),
        _ => {
            return Ok(failure(
                415,
                "Send a form (application/x-www-form-urlencoded) or JSON (application/json).",
            ));
        }
    };
    let Ok(login) = login else {
        return Ok(failure(400, "The request body could not be read."));
    };
    let username = match validate_username(login.username.as_deref().unwrap_or("")) {
        Ok(name) => name,
        Err(message) => return Ok(failure(400, message)),
    };
    // A fresh session with a fresh token, whatever the request carried.
    session.start()?;
    session.insert("username", username)?;
    // Listed with the user's browser sessions (see `pages::login`).
    session.set_user(username)?;
    let token = session.issue_header_token()?;
    Ok(json(200, &Token { token: &token }))
}

/// `GET /api/me`: who is logged in, counting a visit (one round trip, as `GET /`).
pub async fn me(session: &Session) -> Result<Reply, Error> {
    // The API answers header sessions only: a browser's cookie, which any site can make it
    // send, is not an API credential here.
    if !session.is_header_session() {
        return Ok(not_logged_in());
    }
    let Some(visits) = count_visit(session).await? else {
        return Ok(not_logged_in());
    };
    match session.get::<String>("username").await {
        Ok(Some(username)) => Ok(json(
            200,
            &Me {
                username: &username,
                visits,
            },
        )),
        Ok(None) => Ok(not_logged_in()),
        Err(e) if e.kind() == ErrorKind::Decode => Ok(not_logged_in()),
        Err(e) => Err(e),
    }
}

/// `POST /api/logout`: ends the bearer's session in the store; 204 whether there was one or not.
pub fn logout(session: &Session) -> Reply {
    // A browser's cookie session is not ended here (see `me`): only the bearer's.
    if session.is_header_session() {
        tracing::info!("logged out");
        session.destroy();
    }
    Reply::NoContent
}
