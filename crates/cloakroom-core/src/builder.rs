//! One builder for everything made from a store, a secret and options: the manager, the axum
//! layer and the actix-web middleware take the same options, written once here.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::Clock;
use crate::config::{SameSite, SessionConfig, SessionLimits};
use crate::error::Result;
use crate::session::SessionManager;
use crate::store::Store;

/// Builds a [`SessionManager`], or what wraps one (`SessionLayer` for axum, `SessionMiddleware`
/// for actix-web), from a store, a secret and options. Each option is the [`SessionConfig`]
/// setting of the same name; the first mistake (a short secret, a bad key, a contradiction) is
/// reported once, by [`build`](Self::build).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use cloakroom_core::{MemoryStore, SessionManager};
///
/// # fn main() -> Result<(), cloakroom_core::Error> {
/// let secret = "a secret of at least 32 bytes, from the environment";
/// let manager: SessionManager = SessionManager::builder(MemoryStore::new(), secret)
///     .with_idle_timeout(Duration::from_secs(30 * 60))
///     .build()?;
/// # let _ = manager;
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `.build()`"]
pub struct SessionBuilder<T> {
    store: Arc<dyn Store>,
    // The first mistake is kept for `build` to report.
    config: Result<SessionConfig>,
    // What `build` makes; `fn() -> T` keeps the builder `Send` and `Sync` whatever `T` is.
    target: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for SessionBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBuilder")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish()
    }
}

impl<T: From<SessionManager>> SessionBuilder<T> {
    /// A builder over `store` (taken by value; an `Arc` of a store is a store too) whose cookies
    /// are signed with `secret` (a `&str`, a `String` or bytes, at least
    /// [`CookieSigner::MIN_SECRET_LEN`](crate::CookieSigner::MIN_SECRET_LEN) bytes).
    pub fn new(store: impl Store, secret: impl AsRef<[u8]>) -> Self {
        Self {
            store: Arc::new(store),
            config: SessionConfig::new(secret),
            target: PhantomData,
        }
    }

    fn map(mut self, change: impl FnOnce(SessionConfig) -> Result<SessionConfig>) -> Self {
        self.config = self.config.and_then(change);
        self
    }

    /// See [`SessionConfig::with_idle_timeout`].
    pub fn with_idle_timeout(self, timeout: Duration) -> Self {
        self.map(|c| Ok(c.with_idle_timeout(timeout)))
    }

    /// See [`SessionConfig::with_touch_interval`].
    pub fn with_touch_interval(self, interval: Duration) -> Self {
        self.map(|c| Ok(c.with_touch_interval(interval)))
    }

    /// See [`SessionConfig::with_absolute_timeout`].
    pub fn with_absolute_timeout(self, timeout: Duration) -> Self {
        self.map(|c| Ok(c.with_absolute_timeout(timeout)))
    }

    /// See [`SessionConfig::with_secure`].
    pub fn with_secure(self, secure: bool) -> Self {
        self.map(|c| Ok(c.with_secure(secure)))
    }

    /// See [`SessionConfig::with_same_site`].
    pub fn with_same_site(self, same_site: SameSite) -> Self {
        self.map(|c| Ok(c.with_same_site(same_site)))
    }

    /// See [`SessionConfig::with_cookie_name`].
    pub fn with_cookie_name(self, name: impl Into<String>) -> Self {
        self.map(|c| Ok(c.with_cookie_name(name)))
    }

    /// See [`SessionConfig::with_path`].
    pub fn with_path(self, path: impl Into<String>) -> Self {
        self.map(|c| Ok(c.with_path(path)))
    }

    /// See [`SessionConfig::with_domain`].
    pub fn with_domain(self, domain: impl Into<String>) -> Self {
        self.map(|c| Ok(c.with_domain(domain)))
    }

    /// See [`SessionConfig::with_header_sessions`].
    pub fn with_header_sessions(self, header: impl Into<String>) -> Self {
        self.map(|c| Ok(c.with_header_sessions(header)))
    }

    /// See [`SessionConfig::with_max_lifetime`].
    pub fn with_max_lifetime(self, idle: Duration, absolute: Duration) -> Self {
        self.map(|c| Ok(c.with_max_lifetime(idle, absolute)))
    }

    /// See [`SessionConfig::with_limits`].
    pub fn with_limits(self, limits: SessionLimits) -> Self {
        self.map(|c| Ok(c.with_limits(limits)))
    }

    /// See [`SessionConfig::with_previous_secret`].
    pub fn with_previous_secret(self, secret: impl AsRef<[u8]>, retire_at: SystemTime) -> Self {
        self.map(|c| c.with_previous_secret(secret, retire_at))
    }

    /// See [`SessionConfig::with_next_secret`].
    pub fn with_next_secret(self, secret: impl AsRef<[u8]>) -> Self {
        self.map(|c| c.with_next_secret(secret))
    }

    /// See [`SessionConfig::with_clock`].
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        self.map(|c| Ok(c.with_clock(clock)))
    }

    /// What the builder makes.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`](crate::ErrorKind::Config) for a secret shorter than
    /// [`CookieSigner::MIN_SECRET_LEN`](crate::CookieSigner::MIN_SECRET_LEN), too many previous
    /// or next keys, or a contradictory cookie setting (for example `SameSite=None` without
    /// `Secure`).
    pub fn build(self) -> Result<T> {
        SessionManager::new(self.store, self.config?).map(T::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use crate::error::ErrorKind;

    const SECRET: &str = "session-builder-secret-0123456789abcdef012345";

    #[test]
    fn the_builder_takes_options_and_reports_mistakes_once() -> Result<()> {
        // A shared store, and the secret as a `String`.
        let shared = Arc::new(MemoryStore::new());
        let secret = String::from(SECRET);
        let manager = SessionManager::builder(shared.clone(), secret)
            .with_idle_timeout(Duration::from_secs(60))
            .with_cookie_name("id")
            .build()?;
        assert_eq!(manager.config().idle_timeout(), Duration::from_secs(60));
        assert_eq!(manager.config().cookie_name(), "id");
        let kind = |built: Result<SessionManager>| built.map(|_| ()).map_err(|e| e.kind());
        // A short secret, reported by `build` even after more options.
        let short = SessionManager::builder(MemoryStore::new(), b"short".as_slice())
            .with_secure(false)
            .build();
        assert_eq!(kind(short), Err(ErrorKind::Config));
        // A contradiction between options.
        let contradiction = SessionManager::builder(MemoryStore::new(), SECRET)
            .with_secure(false)
            .with_same_site(SameSite::None)
            .build();
        assert_eq!(kind(contradiction), Err(ErrorKind::Config));
        // A bad next key.
        let bad_next = SessionManager::builder(MemoryStore::new(), SECRET)
            .with_next_secret("short")
            .build();
        assert_eq!(kind(bad_next), Err(ErrorKind::Config));
        Ok(())
    }
}
