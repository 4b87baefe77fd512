//! Session configuration: the secret, cookie attributes and timeouts.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, ErrorKind, Result};
use crate::hooks::SessionHooks;
use crate::signing::CookieSigner;

mod forbidden;
mod limits;

pub use limits::SessionLimits;

pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
pub(crate) const DEFAULT_ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);
pub(crate) const MAX_DEFAULT_TOUCH_INTERVAL: Duration = Duration::from_secs(60);
pub(crate) const MAX_TIMEOUT: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
pub(crate) const MAX_VALUE_DEPTH: usize = 127;
pub(crate) const DEFAULT_COOKIE_NAME: &str = "cloakroom";
pub(crate) const DEFAULT_SECURE_COOKIE_NAME: &str = "__Host-cloakroom";

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SameSite {
    /// Sent only on same-site requests.
    Strict,
    /// Sent on same-site requests and top-level navigations (the default).
    Lax,
    /// Sent on every request; browsers require `Secure` with it.
    None,
}

/// How sessions are named, signed, carried and timed.
///
/// Defaults are the secure ones: `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/`, no `Domain`,
/// hence the `__Host-` cookie name; 30 minutes idle, 24 hours absolute.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub(crate) signer: CookieSigner,
    pub(crate) cookie_name: Option<String>,
    pub(crate) secure: bool,
    pub(crate) same_site: SameSite,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) idle_timeout: Duration,
    // `None`: the default, derived from the idle timeout.
    pub(crate) touch_interval: Option<Duration>,
    pub(crate) absolute_timeout: Duration,
    // The request header that may carry a session instead of the cookie (lower case); `None`:
    // cookies only.
    pub(crate) session_header: Option<String>,
    // The longest timeouts a handler may give one session (`Session::set_lifetime`); `None`:
    // the configured ones.
    pub(crate) max_idle_timeout: Option<Duration>,
    pub(crate) max_absolute_timeout: Option<Duration>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: SessionLimits,
    // The most live sessions a user may have at once; `None`: no bound.
    pub(crate) max_sessions_per_user: Option<usize>,
    pub(crate) cap_policy: CapPolicy,
    // The application's callbacks for sessions created and ended.
    pub(crate) hooks: SessionHooks,
}

/// What a login does when its user already has the most sessions allowed
/// ([`SessionConfig::with_max_sessions_per_user`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CapPolicy {
    /// The new login wins: the user's oldest sessions end (the default). A forgotten device
    /// never locks its owner out.
    #[default]
    EndOldest,
    /// The new login is refused with [`ErrorKind::TooManySessions`](crate::ErrorKind::TooManySessions)
    /// until the user ends a session (from another device, or by waiting for one to expire).
    RefuseNew,
}

impl SessionConfig {
    /// A configuration signing cookies with `secret` (at least 32 bytes; for example 32 random
    /// bytes, or the text of `openssl rand -base64 32`).
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self> {
        Ok(Self {
            signer: CookieSigner::new(secret.as_ref())?,
            cookie_name: None,
            secure: true,
            same_site: SameSite::Lax,
            path: "/".to_owned(),
            domain: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            touch_interval: None,
            absolute_timeout: DEFAULT_ABSOLUTE_TIMEOUT,
            session_header: None,
            max_idle_timeout: None,
            max_absolute_timeout: None,
            clock: Arc::new(SystemClock),
            limits: SessionLimits::default(),
            max_sessions_per_user: None,
            cap_policy: CapPolicy::EndOldest,
            hooks: SessionHooks::new(),
        })
    }

    /// Keeps accepting cookies signed with `secret`, a key that signed before the current one,
    /// until `retire_at`; after that, its cookies count as forged. Call once per previous key
    /// (at most [`CookieSigner::MAX_PREVIOUS_KEYS`](crate::CookieSigner::MAX_PREVIOUS_KEYS)).
    ///
    /// To rotate without logging anyone out, keep the old key until every session it signed has
    /// reached its absolute lifetime: `retire_at` = the time of the rotation + the absolute
    /// timeout. New sessions, and ids rotated by `start` or `cycle_id`, are signed with the
    /// current key at once.
    pub fn with_previous_secret(
        mut self,
        secret: impl AsRef<[u8]>,
        retire_at: std::time::SystemTime,
    ) -> Result<Self> {
        self.signer
            .add_previous(secret.as_ref(), crate::clock::unix_millis(retire_at))?;
        Ok(self)
    }

    /// Accepts cookies signed with `secret`, the key that will sign next, without signing with
    /// it yet (at most [`CookieSigner::MAX_NEXT_KEYS`](crate::CookieSigner::MAX_NEXT_KEYS)).
    ///
    /// With several instances, rotate in two phases so that no instance meets a cookie signed
    /// by a key it does not know: first deploy every instance with the new key as next; once
    /// all run it, deploy the new key as current and the old one as previous
    /// ([`with_previous_secret`](Self::with_previous_secret)); drop the old key after it
    /// retires. Without the first phase, an instance still on the old configuration treats the
    /// cookies of users who logged in on an updated instance as forged, and clears them.
    pub fn with_next_secret(mut self, secret: impl AsRef<[u8]>) -> Result<Self> {
        self.signer.add_next(secret.as_ref())?;
        Ok(self)
    }

    /// A configuration with a random secret: sessions do not survive a restart of the process
    /// and are not shared between processes.
    pub fn with_random_secret() -> Result<Self> {
        Self::new(CookieSigner::random_secret()?)
    }

    /// Whether the cookie is `Secure` (default true). Turn off only for plain-http development.
    pub fn with_secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The `SameSite` attribute (default `Lax`).
    pub fn with_same_site(mut self, same_site: SameSite) -> Self {
        self.same_site = same_site;
        self
    }

    /// The cookie name; by default `__Host-cloakroom` where that prefix applies, else
    /// `cloakroom`.
    pub fn with_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = Some(name.into());
        self
    }

    /// The cookie's `Path` (default `/`).
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The cookie's `Domain` (default none: host-only, the safer choice).
    pub fn with_domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// How long a session lives without a request (default 30 minutes). Every access, reads
    /// included, restarts this timer, at most once per [touch interval](Self::with_touch_interval).
    pub fn with_idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How often a session in use has its idle timer restarted in the store (default: a
    /// thirtieth of the idle timeout, at most 60 seconds; zero restarts it on every request).
    ///
    /// A request restarts the timer only when this long has passed since it was last restarted,
    /// so a session read many times a second costs one write per interval, not one per request.
    /// The price: a session ends between `idle − interval` and `idle` after its last request,
    /// never later. At most half the idle timeout.
    pub fn with_touch_interval(mut self, interval: Duration) -> Self {
        self.touch_interval = Some(interval);
        self
    }

    /// The touch interval in use: the one set, or the default for the idle timeout.
    pub fn touch_interval(&self) -> Duration {
        self.touch_interval
            .unwrap_or_else(|| (self.idle_timeout / 30).min(MAX_DEFAULT_TOUCH_INTERVAL))
    }

    /// How long a session lives at most, active or not (default 24 hours).
    pub fn with_absolute_timeout(mut self, timeout: Duration) -> Self {
        self.absolute_timeout = timeout;
        self
    }

    /// The longest idle timeout and absolute lifetime a handler may give one session with
    /// [`Session::set_lifetime`](crate::Session::set_lifetime), for "remember me" (default: the
    /// configured timeouts, so a handler can only shorten them). At least the configured
    /// timeouts.
    pub fn with_max_lifetime(mut self, idle: Duration, absolute: Duration) -> Self {
        self.max_idle_timeout = Some(idle);
        self.max_absolute_timeout = Some(absolute);
        self
    }

    /// The longest idle timeout a handler may give one session.
    pub fn max_idle_timeout(&self) -> Duration {
        self.max_idle_timeout.unwrap_or(self.idle_timeout)
    }

    /// The longest absolute lifetime a handler may give one session.
    pub fn max_absolute_timeout(&self) -> Duration {
        self.max_absolute_timeout.unwrap_or(self.absolute_timeout)
    }

    /// What a session may hold (default [`SessionLimits::default`]).
    pub fn with_limits(mut self, limits: SessionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The limits in use.
    pub fn limits(&self) -> SessionLimits {
        self.limits
    }

    /// The clock that times sessions (default the system clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Lets clients carry a session in a request header instead of the cookie: API and mobile
    /// clients, beside browsers on cookies (default: cookies only). With `authorization`, the
    /// header is `Authorization: Bearer <value>`; with any other name, the header's value is
    /// the session's value itself. The value is what
    /// [`Session::issue_header_token`](crate::Session::issue_header_token) hands the handler:
    /// signed, checked before any store access, hashed for the store, as a cookie's is.
    ///
    /// A request that carries the header is a header session, whatever cookies it also has; no
    /// response to it sets or clears a cookie. Header sessions need no CSRF token: a browser
    /// never adds this header to a request on its own, so a page of another site cannot make it
    /// send one, whereas it does attach cookies.
    pub fn with_header_sessions(mut self, header: impl Into<String>) -> Self {
        self.session_header = Some(header.into().to_ascii_lowercase());
        self
    }

    /// The request header that may carry a session, lower case; `None` when sessions travel in
    /// cookies only.
    pub fn session_header(&self) -> Option<&str> {
        self.session_header.as_deref()
    }

    /// The cookie name in use.
    pub fn cookie_name(&self) -> &str {
        match &self.cookie_name {
            Some(name) => name,
            None if self.host_prefix_applies() => DEFAULT_SECURE_COOKIE_NAME,
            None => DEFAULT_COOKIE_NAME,
        }
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// The absolute lifetime.
    pub fn absolute_timeout(&self) -> Duration {
        self.absolute_timeout
    }

    /// Whether the cookie is `Secure`.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    fn host_prefix_applies(&self) -> bool {
        self.secure && self.domain.is_none() && self.path == "/"
    }

    /// Bounds the live sessions of one user (bound with [`Session::set_user`](crate::Session::set_user))
    /// to `max`; what a login past it does is the [`CapPolicy`] (by default the oldest
    /// sessions end). Checked by each login after its session is created, so that logins of
    /// one user racing on several instances still leave exactly `max`; a login costs one store
    /// call more, and one per session of the user. Sessions are ordered by when they were
    /// listed: at login, or at their last new id.
    pub fn with_max_sessions_per_user(mut self, max: usize) -> Self {
        self.max_sessions_per_user = Some(max);
        self
    }

    /// What a login past [`SessionConfig::with_max_sessions_per_user`] does.
    pub fn with_cap_policy(mut self, policy: CapPolicy) -> Self {
        self.cap_policy = policy;
        self
    }

    /// The most live sessions a user may have, if bounded.
    pub fn max_sessions_per_user(&self) -> Option<usize> {
        self.max_sessions_per_user
    }

    /// What a login past the bound does.
    pub fn cap_policy(&self) -> CapPolicy {
        self.cap_policy
    }

    /// Calls `hooks` when a session is created or ended (see [`SessionHooks`] for which
    /// endings a hook sees).
    pub fn with_hooks(mut self, hooks: SessionHooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Refuses contradictory settings that browsers would silently punish.
    pub fn validate(&self) -> Result<()> {
        let fail = |msg: &str| Err(Error::new(ErrorKind::Config, msg.to_owned()));
        let name = self.cookie_name();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return fail("the cookie name must be a non-empty HTTP token");
        }
        if let Some(header) = &self.session_header
            && (header.is_empty()
                || !header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                || forbidden::set_by_browsers(header))
        {
            return fail(
                "the session header must be an HTTP header name that browsers and proxies do \
                 not set on their own (not Cookie, Origin, Referer, Sec-*, X-Forwarded-*, ...)",
            );
        }
        if self.same_site == SameSite::None && !self.secure {
            return fail("SameSite=None requires a Secure cookie; browsers drop it otherwise");
        }
        if name.starts_with("__Host-") && !self.host_prefix_applies() {
            return fail("a __Host- cookie must be Secure, have Path=/ and no Domain");
        }
        if name.starts_with("__Secure-") && !self.secure {
            return fail("a __Secure- cookie must be Secure");
        }
        if !self.path.starts_with('/')
            || self
                .path
                .bytes()
                .any(|b| !b.is_ascii() || b.is_ascii_control() || b == b';')
        {
            return fail(
                "the cookie path must start with / and hold only ASCII, no control characters \
                 or ';'",
            );
        }
        if self.idle_timeout < Duration::from_millis(1)
            || self.absolute_timeout < Duration::from_millis(1)
        {
            return fail("timeouts must be at least one millisecond");
        }
        if self.max_sessions_per_user == Some(0) {
            return fail("a user must be allowed at least one session");
        }
        let limits = self.limits;
        if limits.max_field_name_bytes == 0
            || limits.max_value_bytes == 0
            || limits.max_fields == 0
            || limits.max_value_bytes > limits.max_session_bytes
        {
            return fail(
                "session limits must be at least 1, and a value may not exceed the session size",
            );
        }
        if self.idle_timeout > MAX_TIMEOUT || self.absolute_timeout > MAX_TIMEOUT {
            return fail("timeouts must be at most ten years");
        }
        if self.max_idle_timeout() < self.idle_timeout
            || self.max_absolute_timeout() < self.absolute_timeout
            || self.max_idle_timeout() > MAX_TIMEOUT
            || self.max_absolute_timeout() > MAX_TIMEOUT
        {
            return fail(
                "the longest lifetime a session may be given must be at least the configured \
                 timeouts and at most ten years",
            );
        }
        if self.touch_interval() > self.idle_timeout / 2 {
            return fail("the touch interval must be at most half the idle timeout");
        }
        if let Some(domain) = &self.domain
            && (domain.is_empty()
                || !domain
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
        {
            return fail("the cookie domain must be a host name (letters, digits, '.', '-')");
        }
        Ok(())
    }
}

// The constants, with the type they belong to.
impl SessionConfig {
    /// Default idle timeout: 30 minutes without a request ends a session.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = DEFAULT_IDLE_TIMEOUT;

    /// Default absolute lifetime: a session ends 24 hours after it started, however active.
    pub const DEFAULT_ABSOLUTE_TIMEOUT: Duration = DEFAULT_ABSOLUTE_TIMEOUT;

    /// Longest default touch interval: a session's idle timer is restarted at least once a
    /// minute while it is in use.
    pub const MAX_DEFAULT_TOUCH_INTERVAL: Duration = MAX_DEFAULT_TOUCH_INTERVAL;

    /// Longest accepted timeout: ten years, far below where millisecond arithmetic overflows.
    pub const MAX_TIMEOUT: Duration = MAX_TIMEOUT;

    /// Cookie name when the cookie is not `Secure`.
    pub const DEFAULT_COOKIE_NAME: &'static str = DEFAULT_COOKIE_NAME;

    /// Cookie name when the cookie is `Secure`, host-only and on path `/`: the `__Host-` prefix
    /// makes browsers refuse the cookie from subdomains and from plain-http pages.
    pub const DEFAULT_SECURE_COOKIE_NAME: &'static str = DEFAULT_SECURE_COOKIE_NAME;
}

// The constants, with the type they belong to.
impl SessionLimits {
    /// Deepest nesting of arrays and objects a field value may have: the most `serde_json` reads
    /// back by default, so nothing is stored that could not be read.
    pub const MAX_VALUE_DEPTH: usize = MAX_VALUE_DEPTH;
}

#[cfg(test)]
mod tests;
