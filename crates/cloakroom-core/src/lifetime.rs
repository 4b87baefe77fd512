//! A session's own lifetime: "remember me", and cookies that end with the browser.

use std::time::Duration;

/// How long one session lives and how long its cookie is kept, chosen by a handler at login
/// with [`Session::set_lifetime`](crate::Session::set_lifetime), within the configured maxima
/// ([`SessionConfig::with_max_lifetime`](crate::SessionConfig::with_max_lifetime)).
///
/// It is stored with the session, so every instance and every store times the session alike.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use cloakroom_core::Lifetime;
///
/// // "Remember me" checked: 30 days, idle or not, and a cookie that lasts as long.
/// let remembered = Lifetime::new(Duration::from_secs(30 * 86_400), Duration::from_secs(30 * 86_400));
/// // Unchecked: the configured timeouts, and a cookie that ends when the browser closes.
/// let until_closed = Lifetime::configured().ending_with_browser();
/// assert!(until_closed.ends_with_browser() && !remembered.ends_with_browser());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lifetime {
    // `None`: the configured timeout.
    pub(crate) idle: Option<Duration>,
    pub(crate) absolute: Option<Duration>,
    pub(crate) browser_cookie: bool,
}

impl Lifetime {
    /// The configured idle timeout and absolute lifetime, with a cookie kept for the session's
    /// lifetime: what a session has when no lifetime is set.
    pub fn configured() -> Self {
        Self::default()
    }

    /// An idle timeout and an absolute lifetime of the session's own, with a cookie kept for
    /// the absolute lifetime.
    pub fn new(idle: Duration, absolute: Duration) -> Self {
        Self {
            idle: Some(idle),
            absolute: Some(absolute),
            browser_cookie: false,
        }
    }

    /// The same timeouts, with a cookie that has neither `Max-Age` nor `Expires`: the browser
    /// drops it when it closes. The server-side timeouts still apply.
    pub fn ending_with_browser(mut self) -> Self {
        self.browser_cookie = true;
        self
    }

    /// The session's own idle timeout; `None` for the configured one.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle
    }

    /// The session's own absolute lifetime; `None` for the configured one.
    pub fn absolute_timeout(&self) -> Option<Duration> {
        self.absolute
    }

    /// Whether the cookie ends with the browser.
    pub fn ends_with_browser(&self) -> bool {
        self.browser_cookie
    }
}
