//! The buffered writes: what the handler changes, kept by the handle until the request ends.
//! None of them waits for the store.

use serde::Serialize;

use crate::clock::duration_millis;
use crate::delta::Delta;
use crate::error::{Error, ErrorKind, Result};
use crate::lifetime::Lifetime;
use crate::store::Fields;
use crate::token::SessionToken;
use crate::users::UserKey;

use super::Session;
use super::state::{Meta, Phase, State, Transport, no_session};

impl Session {
    /// Sets a field to `value`, encoded as JSON. Written when the request ends.
    ///
    /// Fails with [`ErrorKind::NoSession`] when the request has no session: start one first.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidFieldName`](crate::ErrorKind::InvalidFieldName) for an empty or reserved
    /// (`__`) name, [`ErrorKind::Encode`](crate::ErrorKind::Encode) when the value has no JSON
    /// form, [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge) past a
    /// [`SessionLimits`](crate::SessionLimits) bound,
    /// [`ErrorKind::NoSession`](crate::ErrorKind::NoSession) when the request has no session.
    /// Nothing is written then.
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
    /// # let session = adapter::session_from_cookie_headers(&manager, []);
    /// session.start()?;
    /// session.insert("visits", 5)?;
    /// session.insert("name", String::from("ann"))?;
    /// session.insert("roles", ["editor", "viewer"])?;
    /// assert_eq!(session.get::<String>("name").await?.as_deref(), Some("ann"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn insert<T: Serialize>(&self, name: &str, value: T) -> Result<()> {
        let json = serde_json::to_string(&value).map_err(|e| {
            Error::with_source(
                ErrorKind::Encode,
                format!("session field {name:?} does not encode as JSON"),
                e,
            )
        })?;
        self.write(name, Some(json))
    }

    /// Removes a field. Written when the request ends.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidFieldName`](crate::ErrorKind::InvalidFieldName) for an empty or reserved
    /// name, [`ErrorKind::NoSession`](crate::ErrorKind::NoSession) when the request has no session.
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
    /// # let session = adapter::session_from_cookie_headers(&manager, []);
    /// session.start()?;
    /// session.insert("cart", [3, 4])?;
    /// session.remove("cart")?;
    /// assert_eq!(session.get::<Vec<u32>>("cart").await?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn remove(&self, name: &str) -> Result<()> {
        self.write(name, None)
    }

    // The write is checked as a delta: against the whole session for one started here (the
    // handle holds all of it), against what the handle knows otherwise (the store checks the
    // rest when it applies the buffered delta).
    fn write(&self, name: &str, value: Option<String>) -> Result<()> {
        let limits = self.shared.config.limits;
        let mut state = self.lock();
        state.accessed = true;
        let State { phase, pending, .. } = &mut *state;
        match phase {
            Phase::Started { fields, .. } => {
                let mut delta = Delta::new(limits);
                match value {
                    Some(json) => delta.set(name, json)?,
                    None => delta.remove(name)?,
                };
                delta.apply(fields)?;
                Ok(())
            }
            Phase::Live { fields, .. } => pending.write_within_bounds(name, value, fields),
            // Not loaded: the request's own writes are what the handle knows.
            Phase::Unloaded { .. } => pending.write_within_bounds(name, value, &Fields::new()),
            Phase::Anonymous | Phase::Gone => {
                // A bad write is reported as such, whether or not there is a session.
                let mut delta = Delta::new(limits);
                match value {
                    Some(json) => delta.set(name, json)?,
                    None => delta.remove(name)?,
                };
                Err(no_session())
            }
        }
    }

    /// Starts a new, empty session with a fresh token (at login). Any session the request had
    /// is deleted when the request ends, after the new one is created: its data does not carry
    /// over, and its token stops working.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Random`](crate::ErrorKind::Random) when the operating system cannot give
    /// randomness for the token.
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
    /// # let session = adapter::session_from_cookie_headers(&manager, []);
    /// // A login handler: a fresh session, whatever the request had.
    /// session.start()?;
    /// session.insert("username", "ann")?;
    /// assert!(session.exists().await?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn start(&self) -> Result<()> {
        let token = SessionToken::generate()?;
        let now = self.now_ms();
        let meta = Meta {
            created_ms: now,
            deadline_ms: now.saturating_add(duration_millis(self.shared.config.absolute_timeout)),
            idle_ms: None,
            browser_cookie: false,
            user: None,
        };
        let mut state = self.lock();
        state.accessed = true;
        state.retire_current();
        state.rotated_from = None;
        state.phase = Phase::Started {
            token,
            fields: Fields::new(),
            meta,
        };
        Ok(())
    }

    /// Binds the session started in this request to the user the application calls `user_id`
    /// (call it at login, after [`Session::start`]). The session is then listed in the user's
    /// index, so that [`SessionManager::sessions_of`](crate::SessionManager::sessions_of),
    /// [`SessionManager::end_sessions_of`](crate::SessionManager::end_sessions_of) and
    /// [`Session::end_other_sessions`] find it; [`Session::cycle_id`] keeps the binding.
    ///
    /// Fails with [`ErrorKind::NoSession`] when no session was started in this request.
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
    /// # let session = adapter::session_from_cookie_headers(&manager, []);
    /// session.start()?;
    /// session.set_user("user-42")?;
    /// session.insert("username", "ann")?;
    /// adapter::finish(&session).await?; // the layer does this when the handler returns
    /// assert_eq!(manager.sessions_of("user-42").await?.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_user(&self, user_id: &str) -> Result<()> {
        let mut state = self.lock();
        state.accessed = true;
        match &mut state.phase {
            Phase::Started { meta, .. } => {
                meta.user = Some(UserKey::of(user_id));
                Ok(())
            }
            _ => Err(Error::new(
                ErrorKind::NoSession,
                "a user is bound to a session started in this request: call start() first",
            )),
        }
    }

    /// Gives the session started in this request its own lifetime: an idle timeout and an
    /// absolute lifetime (counted from the session's creation: its login, which
    /// [`Session::cycle_id`] keeps) within the configured maxima
    /// ([`SessionConfig::with_max_lifetime`](crate::SessionConfig::with_max_lifetime)), and a
    /// cookie that lasts that long or ends with the browser. Call it at login, after
    /// [`Session::start`]. The lifetime is stored with the session: every instance and every
    /// store times it alike, and [`Session::cycle_id`] keeps it.
    ///
    /// To change the lifetime of a session that already exists (a "keep me signed in" setting
    /// changed later), give it a new id first with [`Session::cycle_id`]: a change of
    /// lifetime, like a change of privilege, deserves a fresh token.
    ///
    /// Fails with [`ErrorKind::NoSession`] when no session was started (or given a new id) in
    /// this request, and with [`ErrorKind::InvalidLifetime`] for a timeout past the maxima, or
    /// an idle timeout shorter than twice the touch interval (the session could end between
    /// two touches).
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use cloakroom_core::{Lifetime, ManualClock, MemoryStore, SessionConfig, SessionManager, adapter};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cloakroom_core::Result<()> {
    /// let thirty_days = Duration::from_secs(30 * 86_400);
    /// let config = SessionConfig::new("an example secret of at least 32 bytes")?
    ///     .with_max_lifetime(thirty_days, thirty_days);
    /// # // A clock that stands still: on the system clock, the cookie's exact remaining
    /// # // lifetime is a millisecond shorter when one passes between start and finish.
    /// # let config = config.with_clock(Arc::new(ManualClock::new(std::time::SystemTime::now())));
    /// let manager = SessionManager::new(Arc::new(MemoryStore::new()), config)?;
    /// # let session = adapter::session_from_cookie_headers(&manager, []);
    /// // A login handler, "remember me" checked.
    /// session.start()?;
    /// session.set_lifetime(Lifetime::new(thirty_days, thirty_days))?;
    /// let cookie = adapter::finish(&session).await?.set_cookie.expect("a login sets the cookie");
    /// assert_eq!(cookie.max_age(), Some(thirty_days));
    /// assert!(cookie.header_value().split("; ").any(|a| a == "Max-Age=2592000"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_lifetime(&self, lifetime: Lifetime) -> Result<()> {
        let config = &self.shared.config;
        let idle = lifetime.idle.unwrap_or(config.idle_timeout);
        let absolute = lifetime.absolute.unwrap_or(config.absolute_timeout);
        let invalid = |message: String| Err(Error::new(ErrorKind::InvalidLifetime, message));
        if idle > config.max_idle_timeout() || absolute > config.max_absolute_timeout() {
            return invalid(format!(
                "a session may be given at most {:?} idle and {:?} in all \
                 (SessionConfig::with_max_lifetime)",
                config.max_idle_timeout(),
                config.max_absolute_timeout()
            ));
        }
        if absolute.is_zero() || idle < config.touch_interval() * 2 || idle.is_zero() {
            return invalid(format!(
                "a session's idle timeout must be at least twice the touch interval ({:?})",
                config.touch_interval()
            ));
        }
        let mut state = self.lock();
        state.accessed = true;
        match &mut state.phase {
            Phase::Started { meta, .. } => {
                // From the session's creation, kept across `cycle_id`: a handler that gives an
                // existing session a lifetime again cannot push its end further than the
                // maximum from its login.
                meta.deadline_ms = meta.created_ms.saturating_add(duration_millis(absolute));
                meta.idle_ms = lifetime.idle.map(|idle| duration_millis(idle).max(1));
                meta.browser_cookie = lifetime.browser_cookie;
                Ok(())
            }
            _ => Err(Error::new(
                ErrorKind::NoSession,
                "a lifetime is given to a session started in this request: call start() (or \
                 cycle_id()) first",
            )),
        }
    }

    /// The value a client sends back in the session header
    /// ([`SessionConfig::with_header_sessions`](crate::SessionConfig::with_header_sessions)) to
    /// carry the session started (or given a new id) in this request: an API login answers it in
    /// its body. From then on the session travels in the header: the response sets no cookie.
    /// The value is signed and only its hash reaches the store, as a cookie's.
    ///
    /// Call it last, after [`Session::start`] and [`Session::cycle_id`]: each makes a new token,
    /// and a token handed out before names a session that is never created. A request that came with a browser's cookie session
    /// keeps it: [`Session::start`] would retire it, but the header client gets a session of
    /// its own and the browser's is left as it was. After [`Session::cycle_id`] on a header session, hand
    /// the client the new value, or it is logged out.
    ///
    /// Fails with [`ErrorKind::NoSession`] when no session was started (or given a new id) in
    /// this request, and with [`ErrorKind::Unsupported`] when sessions may not travel in a
    /// header.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cloakroom_core::{MemoryStore, SessionConfig, SessionManager, adapter};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cloakroom_core::Result<()> {
    /// let config = SessionConfig::new("an example secret of at least 32 bytes")?
    ///     .with_header_sessions("authorization");
    /// let manager = SessionManager::new(Arc::new(MemoryStore::new()), config)?;
    /// // An API login.
    /// let login = adapter::session_from_headers(&manager, [], []);
    /// login.start()?;
    /// login.insert("username", "ann")?;
    /// let token = login.issue_header_token()?;
    /// assert!(adapter::finish(&login).await?.set_cookie.is_none());
    /// // The client's next request.
    /// let bearer = format!("Bearer {token}");
    /// let next = adapter::session_from_headers(&manager, [], [bearer.as_bytes()]);
    /// assert_eq!(next.get::<String>("username").await?.as_deref(), Some("ann"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn issue_header_token(&self) -> Result<String> {
        if self.shared.config.session_header().is_none() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "sessions may not travel in a header: see SessionConfig::with_header_sessions",
            ));
        }
        let mut state = self.lock();
        state.accessed = true;
        let Phase::Started { token, .. } = &state.phase else {
            return Err(Error::new(
                ErrorKind::NoSession,
                "a header token is issued for a session started in this request: call start() \
                 (or cycle_id()) first",
            ));
        };
        let value = self.shared.config.signer.sign(token);
        if let Some(cookie_session) = state.from_cookie.take() {
            // The request came with a browser's cookie session: the header client gets a
            // session of its own, and the browser keeps its own (a page of another site that
            // makes the browser post to an API login must not log it out).
            state.to_delete.retain(|retired| *retired != cookie_session);
            if state.rotated_from.as_ref() == Some(&cookie_session) {
                state.rotated_from = None;
            }
        }
        state.transport = Transport::Header;
        state.clear_cookie = false;
        Ok(value)
    }

    /// True when the request's session travels in the session header
    /// ([`SessionConfig::with_header_sessions`](crate::SessionConfig::with_header_sessions)):
    /// it came in one, or this request issued one ([`Session::issue_header_token`]). An API
    /// route that relies on header sessions needing no CSRF token refuses the others: a
    /// browser attaches its cookie to any request, including one another site makes it send.
    pub fn is_header_session(&self) -> bool {
        self.lock().transport == Transport::Header
    }

    /// Ends the session: it is deleted in the store when the request ends and the cookie is
    /// cleared.
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
    /// # let session = adapter::session_from_cookie_headers(&manager, []);
    /// session.start()?;
    /// session.destroy(); // a logout handler
    /// assert!(!session.exists().await?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn destroy(&self) {
        let mut state = self.lock();
        state.accessed = true;
        state.retire_current();
        state.end_here();
    }
}
