//! The per-request session handle: what handlers call. Its reads and store steps are here; the
//! buffered writes, the manager that makes handles from cookies and ends a user's sessions, the
//! request's state, and the end-of-request save each have a module of their own.

mod cap;
mod flash;
mod machine;
mod manager;
mod save;
mod state;
mod writes;

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::clock::{duration_millis, unix_millis};
use crate::config::SessionConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::SessionMetrics;
use crate::store::{Access, META_USER, Store};
use crate::token::SessionKey;
use crate::users::UserKey;

pub use self::flash::{FLASH_FIELD, Flash};
use self::machine::{ApplyStep, Count};
use self::manager::end_indexed;
pub use self::manager::{CookieState, Inspection, SessionManager};
use self::state::{Phase, State};

struct Shared {
    store: Arc<dyn Store>,
    config: SessionConfig,
    metrics: SessionMetrics,
    // The `Vary` value of responses that used the session, made once.
    vary: Arc<str>,
}

/// A request's view of its session.
///
/// Reads load the session on first use; plain writes are buffered as a per-field delta and
/// written once when the request ends ([`adapter::finish`](crate::adapter::finish), called by the HTTP layer), so two
/// requests writing different fields never undo each other. [`Session::incr`] is the exception:
/// it runs at once, server-side, and also loads the session in the same round trip when it has not
/// been loaded. Reads see the request's own writes.
///
/// Buffered writes ([`insert`](Session::insert), [`remove`](Session::remove),
/// [`start`](Session::start), [`set_user`](Session::set_user), [`destroy`](Session::destroy))
/// are synchronous: they never wait for the store. Clones share state; the handle is cheap to
/// clone.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    inner: Arc<Inner>,
}

// The request's state, and the gate that keeps the handle's store steps one at a time. A
// buffered write takes the state's lock for a few map operations and never waits for I/O. A
// step that talks to the store holds the gate throughout, and the state's lock only around its
// own reads and writes: a write made while the step is in flight stays buffered (see
// `State::forget_sent`), and a step whose session was replaced meanwhile (a `start` or a
// `destroy` during the I/O) leaves the new state alone (see `State::holds`).
struct Inner {
    state: std::sync::Mutex<State>,
    steps: Mutex<()>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    fn new(shared: Arc<Shared>, state: State) -> Self {
        Self {
            shared,
            inner: Arc::new(Inner {
                state: std::sync::Mutex::new(state),
                steps: Mutex::new(()),
            }),
        }
    }

    // The state's lock is held for map operations only, never across an `.await`; a panic while
    // holding it cannot leave worse than that one operation half done, so a poisoned lock is
    // still used.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now_ms(&self) -> u64 {
        unix_millis(self.shared.config.clock.now())
    }

    fn access(&self) -> Access {
        Access {
            now_ms: self.now_ms(),
            idle_ms: duration_millis(self.shared.config.idle_timeout).max(1),
            touch_ms: duration_millis(self.shared.config.touch_interval()),
        }
    }

    /// The manager this handle came from: what a "your sessions" page calls
    /// ([`SessionManager::sessions_of`], [`SessionManager::end_session_of`]).
    pub fn manager(&self) -> SessionManager {
        SessionManager {
            shared: self.shared.clone(),
        }
    }

    /// The store key of the request's session, looking the session up if needed: safe to show
    /// and to put in a form (it cannot act as the cookie), and what
    /// [`UserSession::key`](crate::UserSession) holds, so a "your sessions" page can mark this
    /// one. `None` when the request has no session.
    ///
    /// # Errors
    ///
    /// A store failure while looking the session up.
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
    /// assert_eq!(session.key().await?, None);
    /// session.start()?;
    /// let key = session.key().await?.expect("a session was started");
    /// // Safe to show: it names the session in the store and cannot act as the cookie.
    /// assert_eq!(key.short().len(), 8);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn key(&self) -> Result<Option<SessionKey>> {
        let _steps = self.inner.steps.lock().await;
        self.lock().accessed = true;
        self.ensure_loaded().await?;
        Ok(match &self.lock().phase {
            Phase::Live { token, .. } | Phase::Started { token, .. } => Some(token.key()),
            _ => None,
        })
    }

    /// The user the request's session is bound to ([`Session::set_user`]), as the store names
    /// it; `None` when the request has no session or its session has no user.
    ///
    /// # Errors
    ///
    /// A store failure while looking the session up.
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
    /// assert_eq!(session.user().await?, Some(cloakroom_core::UserKey::of("user-42")));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn user(&self) -> Result<Option<UserKey>> {
        let _steps = self.inner.steps.lock().await;
        self.lock().accessed = true;
        self.ensure_loaded().await?;
        Ok(match &self.lock().phase {
            Phase::Live { fields, .. } => {
                fields.get(META_USER).and_then(|u| UserKey::from_stored(u))
            }
            Phase::Started { meta, .. } => meta.user.clone(),
            _ => None,
        })
    }

    /// What the request's cookie said.
    pub fn cookie_state(&self) -> CookieState {
        self.lock().cookie
    }

    /// Reads a field, decoded from JSON; `None` when the field or the session is absent.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Decode`](crate::ErrorKind::Decode) when the stored value does not decode to `T`
    /// (counted in [`SessionMetrics`](crate::SessionMetrics)); a store failure
    /// ([`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable),
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend); see
    /// [`Error::is_outcome_unknown`](crate::Error::is_outcome_unknown) for a write that may have
    /// run) while loading.
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
    /// session.insert("theme", "dark")?;
    /// let theme: Option<String> = session.get("theme").await?;
    /// assert_eq!(theme.as_deref(), Some("dark"));
    /// assert_eq!(session.get::<u64>("missing").await?, None);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let buffered = {
            let mut state = self.lock();
            state.accessed = true;
            state
                .pending
                .write_of(name)
                .map(|write| write.map(str::to_owned))
        };
        let raw = match buffered {
            Some(pending) => pending,
            None => {
                let _steps = self.inner.steps.lock().await;
                self.ensure_loaded().await?;
                let state = self.lock();
                match (state.pending.write_of(name), &state.phase) {
                    // Written while the session was loading.
                    (Some(pending), _) => pending.map(str::to_owned),
                    (None, Phase::Live { fields, .. }) => fields.get(name).cloned(),
                    (None, Phase::Started { fields, .. }) => fields.get(name).cloned(),
                    (None, _) => None,
                }
            }
        };
        match raw {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
                self.shared.metrics.decode_error();
                Error::with_source(
                    ErrorKind::Decode,
                    format!("session field {name:?} does not decode to the requested type"),
                    e,
                )
            }),
        }
    }

    /// True when the request has a live session (looking it up if needed).
    ///
    /// # Errors
    ///
    /// a store failure ([`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable),
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend); see
    /// [`Error::is_outcome_unknown`](crate::Error::is_outcome_unknown) for a write that may have
    /// run) while loading.
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
    /// assert!(!session.exists().await?); // no cookie, no session
    /// session.start()?;
    /// assert!(session.exists().await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn exists(&self) -> Result<bool> {
        let _steps = self.inner.steps.lock().await;
        self.lock().accessed = true;
        self.ensure_loaded().await?;
        Ok(matches!(
            self.lock().phase,
            Phase::Live { .. } | Phase::Started { .. }
        ))
    }

    /// Adds `by` to an integer field (absent counts as 0) atomically in the store and returns
    /// the new value, or `None` when the request has no session (nothing is created).
    ///
    /// Runs at once in one round trip that also flushes buffered writes, slides the TTL and, if
    /// the session was not loaded yet, loads it: calling `incr` before `get` makes a typical
    /// request cost one round trip in all.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotAnInteger`](crate::ErrorKind::NotAnInteger) when the field holds something
    /// else, [`ErrorKind::OutOfRange`](crate::ErrorKind::OutOfRange) when the sum would leave
    /// ±(2^53 − 1), [`ErrorKind::InvalidFieldName`](crate::ErrorKind::InvalidFieldName),
    /// [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge) for a new field past the bounds; the
    /// store is left as it was. a store failure
    /// ([`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable),
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend); see
    /// [`Error::is_outcome_unknown`](crate::Error::is_outcome_unknown) for a write that may have
    /// run).
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
    /// // The tutorial's page: one round trip counts the visit, slides the TTL and loads.
    /// assert_eq!(session.incr("visits", 1).await?, None); // not logged in: nothing created
    /// session.start()?;
    /// assert_eq!(session.incr("visits", 1).await?, Some(1));
    /// assert_eq!(session.incr("visits", 1).await?, Some(2));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn incr(&self, name: &str, by: i64) -> Result<Option<i64>> {
        let _steps = self.inner.steps.lock().await;
        let step = match self.lock().count_step(name, by, self.access())? {
            Count::Done(value) => return Ok(value),
            Count::Send(step) => *step,
        };
        self.run(step).await
    }

    /// Gives the session a fresh token and keeps its data and its absolute deadline (for
    /// example when privileges change). The old token stops working when the request ends.
    /// Returns false when the request has no session.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Random`](crate::ErrorKind::Random) as for [`Session::start`]; a store failure
    /// ([`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable),
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend); see
    /// [`Error::is_outcome_unknown`](crate::Error::is_outcome_unknown) for a write that may have
    /// run) while loading.
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
    /// session.insert("role", "user")?;
    /// adapter::finish(&session).await?;
    /// // Later, when privileges change: same data, a new token.
    /// session.insert("role", "admin")?;
    /// assert!(session.cycle_id().await?);
    /// assert_eq!(session.get::<String>("role").await?.as_deref(), Some("admin"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn cycle_id(&self) -> Result<bool> {
        let _steps = self.inner.steps.lock().await;
        self.lock().accessed = true;
        self.ensure_loaded().await?;
        self.lock().rotate(&self.shared.metrics)
    }

    /// Ends every other session of this session's user (after a password change, for example)
    /// and keeps this one. Returns how many sessions were ended; 0 when the request has no
    /// session or its session has no user.
    ///
    /// # Errors
    ///
    /// a store failure ([`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable),
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend); see
    /// [`Error::is_outcome_unknown`](crate::Error::is_outcome_unknown) for a write that may have
    /// run); sessions ended before the failure stay ended.
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
    /// // After a password change: every other session of the user ends.
    /// session.start()?;
    /// session.set_user("user-42")?;
    /// assert_eq!(session.end_other_sessions().await?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn end_other_sessions(&self) -> Result<usize> {
        let _steps = self.inner.steps.lock().await;
        self.lock().accessed = true;
        // A session started here is created first, so that it is in the index and kept.
        self.write_changes().await?;
        self.ensure_loaded().await?;
        let (own, user) = {
            let state = self.lock();
            let Phase::Live { token, fields } = &state.phase else {
                return Ok(0);
            };
            let Some(user) = fields.get(META_USER).and_then(|u| UserKey::from_stored(u)) else {
                return Ok(0);
            };
            (token.key(), user)
        };
        end_indexed(&self.shared, &user, |key| *key != own).await
    }

    // Loads a session not looked up yet, with the buffered writes in the same step. Called with
    // the steps' gate held.
    async fn ensure_loaded(&self) -> Result<()> {
        let Some(step) = self.lock().load_step(|| self.access()) else {
            return Ok(());
        };
        self.run(step).await.map(drop)
    }

    // Runs a step on the existing session and records its outcome. Called with the steps'
    // gate held; the state's lock is not held across the store call.
    //
    // An async block rather than an `async fn`: an `async fn` would keep the step (some 270
    // bytes) twice, as its argument and as a local, in every future that awaits it, and
    // frameworks box a handler's future on every request.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold the step twice"
    )]
    fn run(&self, step: ApplyStep) -> impl Future<Output = Result<Option<i64>>> + Send + '_ {
        async move {
            let outcome = self
                .shared
                .store
                .apply(&step.token.key(), &step.apply)
                .await;
            let (result, endings) = {
                let mut state = self.lock();
                let result = state.after_apply(step, outcome, &self.shared.metrics);
                (result, std::mem::take(&mut state.endings))
            };
            // Outside the lock: a hook may call into the session.
            for ending in endings {
                let hooks = &self.shared.config.hooks;
                hooks.ended(&ending.key, ending.user.as_ref(), ending.reason);
            }
            result
        }
    }
}
