//! Driving [`Session`] handles as requests would: log in, send a cookie back, read the cookie a
//! response leaves in the browser.

use anyhow::Context;
use cloakroom_core::{Session, SessionManager, SessionToken};

/// The `name=value` pair a browser would send back after a response with this `Set-Cookie`, if
/// there is one; `Some("")` when the response cleared the cookie.
pub fn returned_cookie(set_cookie: &Option<String>) -> Option<String> {
    let header = set_cookie.as_ref()?;
    let pair = header.split(';').next()?.trim().to_owned();
    Some(if pair.ends_with('=') {
        String::new()
    } else {
        pair
    })
}

/// Logs in as `name` (a fresh session holding `username`) and returns the cookie pair.
pub async fn login(m: &SessionManager, name: &str) -> anyhow::Result<String> {
    let s = m.session_from_cookie_headers([]);
    s.start()?;
    s.insert("username", name)?;
    let finished = s.finish().await?;
    returned_cookie(&finished.set_cookie).context("login set no cookie")
}

/// A request carrying `cookie` as its only `Cookie` header.
pub fn request(m: &SessionManager, cookie: &str) -> Session {
    m.session_from_cookie_headers([cookie.as_bytes()])
}

/// The token inside a `name=token.signature` cookie pair.
pub fn token_of(cookie: &str) -> anyhow::Result<SessionToken> {
    cookie
        .split_once('=')
        .and_then(|(_, value)| value.split_once('.'))
        .and_then(|(token, _)| SessionToken::parse(token))
        .context("not a signed session cookie")
}
