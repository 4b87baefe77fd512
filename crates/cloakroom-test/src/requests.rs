//! Driving [`Session`] handles as requests would: log in, send a cookie back, read the cookie a
//! response leaves in the browser.

use anyhow::Context;
use cloakroom_core::adapter::{self, SetCookie};
use cloakroom_core::{Session, SessionManager, SessionToken};

/// The `name=value` pair a browser would send back after a response with this `Set-Cookie`, if
/// there is one; `Some("")` when the response cleared the cookie.
pub fn returned_cookie(set_cookie: &Option<SetCookie>) -> Option<String> {
    let cookie = set_cookie.as_ref()?;
    Some(if cookie.is_removal() {
        String::new()
    } else {
        format!("{}={}", cookie.name(), cookie.value())
    })
}

/// Logs in as `name` (a fresh session holding `username`) and returns the cookie pair.
pub async fn login(m: &SessionManager, name: &str) -> anyhow::Result<String> {
    let s = adapter::session_from_cookie_headers(m, []);
    s.start()?;
    s.insert("username", name)?;
    let finished = adapter::finish(&s).await?;
    returned_cookie(&finished.set_cookie).context("login set no cookie")
}

/// A request carrying `cookie` as its only `Cookie` header.
pub fn request(m: &SessionManager, cookie: &str) -> Session {
    adapter::session_from_cookie_headers(m, [cookie.as_bytes()])
}

/// The token inside a `name=token.signature` cookie pair.
pub fn token_of(cookie: &str) -> anyhow::Result<SessionToken> {
    cookie
        .split_once('=')
        .and_then(|(_, value)| value.split_once('.'))
        .and_then(|(token, _)| SessionToken::parse(token))
        .context("not a signed session cookie")
}
