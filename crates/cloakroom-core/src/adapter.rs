//! What a framework integration needs, and nothing a handler needs.
//!
//! An integration (the axum layer of this crate is one; an actix-web middleware would be
//! another) does three things per request:
//!
//! 1. Before the handler runs, it makes the request's [`Session`] from the request's `Cookie`
//!    header values, as bytes: [`session_from_cookie_headers`]. This costs no store access; a
//!    cookie that does not verify is treated as absent.
//! 2. It hands the handler the session (a clone: clones share the request's state).
//! 3. When the handler has returned, it calls [`finish`], which writes what the request changed
//!    and says what the response needs ([`Finished`]): a [`SetCookie`] to send, if any, and
//!    whether the handler used the session, in which case the response depends on the cookie
//!    and must be marked `Cache-Control: no-store` (or `private`) and `Vary: Cookie`. Where it
//!    can, the integration runs [`finish`] in a task of its own when [`has_unsaved_changes`]
//!    says there is something to write, so that a client going away cannot cancel a logout's
//!    delete.
//!
//! [`Finished::cache_marks`] says how to mark the response for caches. A failed [`finish`] (or a
//! session call whose error the handler returns) is an [`Error`]: the response becomes the
//! one [`error_reply`] describes (503 for a store failure, 413 for a limit, 500 for misuse), with
//! a generic body.
//!
//! [`Finished`] is non-exhaustive and [`SetCookie`] has private fields, so what the core decides
//! about a response can grow (a token for a client that sends it in a header, a cookie that
//! ends with the browser) without breaking integrations.

use std::fmt;
use std::time::Duration;

use crate::config::{SameSite, SessionConfig};
use crate::error::{Error, Result};
use crate::session::{Session, SessionManager};

/// A request's session, made from its `Cookie` header values as bytes (a header may hold other
/// cookies that are not ASCII; only ours must be). Costs no store access: the session is looked
/// up only when the handler first uses it. A cookie that does not verify, or two cookies of our
/// name, count as no cookie and are recorded in [`SessionMetrics`](crate::SessionMetrics).
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// use cloakroom_core::{MemoryStore, SessionConfig, SessionManager, adapter};
///
/// let manager = SessionManager::new(
///     Arc::new(MemoryStore::new()),
///     SessionConfig::new("an example secret of at least 32 bytes")?,
/// )?;
/// let session = adapter::session_from_cookie_headers(&manager, [b"__Host-cloakroom=forged".as_slice()]);
/// assert_eq!(session.cookie_state(), cloakroom_core::CookieState::Invalid);
/// # Ok::<(), cloakroom_core::Error>(())
/// ```
pub fn session_from_cookie_headers<'a>(
    manager: &SessionManager,
    cookie_headers: impl IntoIterator<Item = &'a [u8]>,
) -> Session {
    manager.session_from_headers(cookie_headers, [])
}

/// A request's session, made from its `Cookie` header values and, when the configuration lets
/// sessions travel in a header ([`SessionConfig::session_header`]), the values of that header,
/// all as bytes. A request that carries the session header is a header session: its cookies
/// are not read, and no response to it sets or clears a cookie. Costs no store access, as
/// [`session_from_cookie_headers`].
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// use cloakroom_core::{MemoryStore, SessionConfig, SessionManager, adapter};
///
/// let config = SessionConfig::new("an example secret of at least 32 bytes")?
///     .with_header_sessions("authorization");
/// let manager = SessionManager::new(Arc::new(MemoryStore::new()), config)?;
/// let session = adapter::session_from_headers(
///     &manager,
///     [],
///     [b"Bearer forged".as_slice()],
/// );
/// assert_eq!(session.cookie_state(), cloakroom_core::CookieState::Invalid);
/// # Ok::<(), cloakroom_core::Error>(())
/// ```
pub fn session_from_headers<'a>(
    manager: &SessionManager,
    cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    session_headers: impl IntoIterator<Item = &'a [u8]>,
) -> Session {
    manager.session_from_headers(cookie_headers, session_headers)
}

/// True when finishing the request will write to the store: a session to create, sessions to
/// delete, or buffered writes. An integration that can spawn a task runs [`finish`] in one
/// then, and calls it in place otherwise (it costs no store access).
pub fn has_unsaved_changes(session: &Session) -> bool {
    session.has_unsaved_changes()
}

/// Writes what the request changed (creates a session started in it, deletes retired ones,
/// applies the buffered writes) and says what the response needs. Called once per request,
/// when the handler has returned.
///
/// # Errors
///
/// As [`Session::save`].
///
/// # Examples
///
/// ```
/// # use std::sync::Arc;
/// # use cloakroom_core::{MemoryStore, SessionConfig, SessionManager, adapter};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cloakroom_core::Result<()> {
/// # let manager = SessionManager::new(
/// #     Arc::new(MemoryStore::new()),
/// #     SessionConfig::new("an example secret of at least 32 bytes")?,
/// # )?;
/// let session = adapter::session_from_cookie_headers(&manager, []);
/// session.start()?; // what a login handler does
/// let finished = adapter::finish(&session).await?;
/// let cookie = finished.set_cookie.expect("a login sets the cookie");
/// assert_eq!(cookie.name(), "__Host-cloakroom");
/// assert!(!cookie.is_removal());
/// # Ok(())
/// # }
/// ```
pub async fn finish(session: &Session) -> Result<Finished> {
    session.finish().await
}

/// [`finish`], in a task of its own when there is something to write
/// ([`has_unsaved_changes`]): if the client goes away and the framework drops the request's
/// future, the logout's delete or the rotation's second step still happens. Nothing to write
/// costs no task and no store access. What the HTTP integrations of this crate call.
///
/// # Errors
///
/// As [`finish`]; a task that did not complete is an
/// [`ErrorKind::Backend`](crate::ErrorKind::Backend) error whose outcome is unknown (it may
/// have written part of what it had to).
pub async fn finish_detached(session: Session) -> Result<Finished> {
    if !has_unsaved_changes(&session) {
        return finish(&session).await;
    }
    // The task keeps the request's span, so the save's store calls and log lines name it.
    let save = async move { finish(&session).await };
    match tokio::spawn(tracing::Instrument::in_current_span(save)).await {
        Ok(finished) => finished,
        Err(e) => Err(Error::new(
            crate::ErrorKind::Backend,
            format!("saving the session did not complete: {e}"),
        )
        .with_unknown_outcome()),
    }
}

/// What the end of a request must do to the response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finished {
    /// A cookie to set or clear, if the session's cookie changed.
    pub set_cookie: Option<SetCookie>,
    /// Whether the handler used the session: the response then depends on the cookie and must
    /// not be cached by shared caches.
    pub accessed: bool,
    // What a response that used the session varies on: `Cookie`, and the session header when
    // sessions may travel in one.
    pub(crate) vary: std::sync::Arc<str>,
}

impl Finished {
    /// How to mark the response for caches. `sets_cookie` is whether the response carries any
    /// `Set-Cookie` (this session's, or one the handler set); `cache_control` is the
    /// `Cache-Control` value the handler gave, if any.
    ///
    /// A response that sets a cookie is never stored by anyone (a cache that kept it would hand
    /// the cookie, and the session, to the next visitor). A response that used the session
    /// depends on who asked: no shared cache may keep it, and none may hand it to another cookie;
    /// a handler's own `private` or `no-store` policy is kept.
    pub fn cache_marks(&self, sets_cookie: bool, cache_control: Option<&[u8]>) -> CacheMarks<'_> {
        const NO_STORE: Option<&str> = Some("no-store");
        if sets_cookie {
            return CacheMarks {
                cache_control: NO_STORE,
                vary: Some(&self.vary),
            };
        }
        if !self.accessed {
            return CacheMarks {
                cache_control: None,
                vary: None,
            };
        }
        // Directive by directive: `private="Set-Cookie"` names fields and lets shared caches
        // keep the rest, so only a bare `private` or `no-store` counts.
        let private_already = cache_control.is_some_and(|v| {
            let directives: Vec<Vec<u8>> = v
                .split(|&b| b == b',')
                .map(|d| d.trim_ascii().to_ascii_lowercase())
                .collect();
            let has = |name: &[u8]| directives.iter().any(|d| d.as_slice() == name);
            (has(b"private") || has(b"no-store")) && !has(b"public")
        });
        CacheMarks {
            cache_control: if private_already { None } else { NO_STORE },
            vary: Some(&self.vary),
        }
    }
}

/// How a response must be marked for caches: see [`Finished::cache_marks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheMarks<'a> {
    /// A `Cache-Control` value to put in place of the handler's, if any.
    pub cache_control: Option<&'static str>,
    /// A `Vary` value to append, if any: `Cookie`, and the session header when sessions may
    /// travel in one (`Cookie, authorization`).
    pub vary: Option<&'a str>,
}

/// The response to a request whose session work failed: a status, a short generic body, and
/// whether to add `Retry-After: 1` (on a 503). The error itself goes to the log here, never to
/// the client. The response is also marked `Cache-Control: no-store`.
pub fn error_reply(error: &Error) -> ErrorReply {
    let status = error.http_status();
    let body = match status {
        503 => {
            tracing::warn!(error = ?error, "session store unavailable");
            "Service temporarily unavailable, please retry shortly.\n"
        }
        413 => {
            tracing::error!(error = ?error, "session error");
            "Request too large.\n"
        }
        409 => {
            tracing::info!(error = ?error, "login refused");
            "Too many sessions for this account: end one of its other sessions, or try again.\n"
        }
        _ => {
            tracing::error!(error = ?error, "session error");
            "Internal server error.\n"
        }
    };
    ErrorReply {
        status,
        body,
        retry_after: status == 503,
    }
}

/// See [`error_reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorReply {
    /// The HTTP status code: 503, 413, 409 or 500.
    pub status: u16,
    /// The body, the same for every error of a status.
    pub body: &'static str,
    /// Whether to add `Retry-After: 1`.
    pub retry_after: bool,
}

/// The session cookie a response sets, or clears, with the configured attributes: always
/// `HttpOnly`, `Secure` unless configured off, the configured `SameSite`, `Path` and `Domain`,
/// and a `Max-Age` of the session's remaining lifetime, or none for a cookie that ends with the
/// browser ([`Lifetime::ending_with_browser`](crate::Lifetime::ending_with_browser)); to clear
/// it, an empty value, `Max-Age=0` and an `Expires` in the past.
///
/// Its [`Display`](fmt::Display) form is the `Set-Cookie` header value. It holds only ASCII
/// without control characters: the name and the attributes are checked when the
/// configuration is built, and the value is a signed token in base64url. Its `Debug` form
/// leaves the value out: the value is a credential, and logs must not hold one.
#[derive(Clone, PartialEq, Eq)]
pub struct SetCookie {
    name: String,
    value: String,
    max_age: Option<Duration>,
    header: String,
}

impl SetCookie {
    // The session cookie carrying `value`, kept `max_age` (`None`: until the browser closes).
    pub(crate) fn issued(config: &SessionConfig, value: &str, max_age: Option<Duration>) -> Self {
        Self::build(config, value, max_age)
    }

    // The cookie that clears the session cookie.
    pub(crate) fn removal(config: &SessionConfig) -> Self {
        Self::build(config, "", Some(Duration::ZERO))
    }

    fn build(config: &SessionConfig, value: &str, max_age: Option<Duration>) -> Self {
        let name = config.cookie_name().to_owned();
        let mut cookie = cookie::Cookie::build((name.clone(), value.to_owned()))
            .http_only(true)
            .secure(config.secure)
            .path(config.path.clone())
            .same_site(match config.same_site {
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::None => cookie::SameSite::None,
            });
        if let Some(domain) = &config.domain {
            cookie = cookie.domain(domain.clone());
        }
        if let Some(max_age) = max_age {
            // Whole seconds, rounded up: a cookie must not end before its session.
            let seconds = max_age.as_millis().div_ceil(1000);
            let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
            cookie = cookie.max_age(cookie::time::Duration::seconds(seconds));
        }
        if value.is_empty() {
            cookie = cookie.expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
        }
        Self {
            name,
            value: value.to_owned(),
            max_age,
            header: cookie.build().to_string(),
        }
    }

    /// The cookie's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cookie's value: the signed token, or empty when the cookie is cleared.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// How long the browser keeps the cookie: zero when it is cleared, `None` when it ends with
    /// the browser.
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }

    /// True when the response clears the cookie (a logout, a session that ended).
    pub fn is_removal(&self) -> bool {
        self.value.is_empty()
    }

    /// The `Set-Cookie` header value.
    pub fn header_value(&self) -> &str {
        &self.header
    }

    /// The `Set-Cookie` header value as an `http` header value (feature `axum`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Encode`](crate::ErrorKind::Encode) (a 500, not to be retried) should the
    /// value hold a byte a header may not, which the configuration's checks rule out.
    #[cfg(feature = "axum")]
    pub fn to_header_value(&self) -> Result<http::HeaderValue> {
        http::HeaderValue::from_str(&self.header).map_err(|e| {
            crate::Error::with_source(
                crate::ErrorKind::Encode,
                "the session cookie is not a valid header value",
                e,
            )
        })
    }
}

impl fmt::Debug for SetCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetCookie")
            .field("name", &self.name)
            .field("removal", &self.is_removal())
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for SetCookie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header)
    }
}

#[cfg(test)]
mod tests;
