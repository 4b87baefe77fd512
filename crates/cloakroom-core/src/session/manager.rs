//! The manager: one per application; makes handles from cookies, and lists and ends a
//! user's sessions through the per-user index.

use std::fmt;
use std::sync::Arc;

use crate::builder::SessionBuilder;
use crate::clock::{duration_millis, unix_millis};
use crate::config::SessionConfig;
use crate::delta::Delta;
use crate::error::Result;
use crate::hooks::EndReason;
use crate::metrics::{Rejection, SessionMetrics};
use crate::observed::{ObservedStore, name_on_request_span};
use crate::signing::SIGNED_VALUE_LEN;
use crate::store::{META_TOUCHED, RESERVED_PREFIX, Store, parse_millis};
use crate::token::SessionKey;
use crate::users::{UserKey, UserSession};

use super::state::{FlashTake, Phase, State, Transport, meta_of};
use super::{Session, Shared};

/// Makes [`Session`] handles from request cookies; one per application, cheap to clone.
#[derive(Clone)]
pub struct SessionManager {
    pub(super) shared: Arc<Shared>,
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.shared.store)
            .field("config", &self.shared.config)
            .finish()
    }
}

/// What [`SessionManager::inspect_cookie`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inspection {
    /// The value is not one this application signed (or its key was retired).
    Forged,
    /// A validly signed value whose session has ended (logout, timeout, rotation).
    Ended {
        /// The session's store key.
        key: SessionKey,
    },
    /// A live session.
    Live {
        /// The session's store key.
        key: SessionKey,
        /// Its fields, metadata included, as stored.
        fields: crate::store::Fields,
    },
}

/// What the request's cookie said, decided before any store access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CookieState {
    /// No session cookie.
    Absent,
    /// A session cookie that is not one validly signed token (forged, garbled, repeated): treated
    /// as absent, never looked up.
    Invalid,
    /// A validly signed token, not yet looked up.
    Valid,
}

impl SessionManager {
    /// Starts a manager over `store` whose cookies are signed with `secret`; options are
    /// chained and the first mistake is reported by
    /// [`SessionBuilder::build`](crate::SessionBuilder::build).
    pub fn builder(store: impl Store, secret: impl AsRef<[u8]>) -> SessionBuilder<Self> {
        SessionBuilder::new(store, secret)
    }

    /// A manager over `store`, after checking `config` for contradictions.
    pub fn new(store: Arc<dyn Store>, config: SessionConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                vary: match config.session_header() {
                    Some(header) => format!("Cookie, {header}").into(),
                    None => "Cookie".into(),
                },
                store: Arc::new(ObservedStore::new(store)),
                config,
                metrics: SessionMetrics::default(),
            }),
        })
    }

    /// Counters of forged cookies, unknown tokens and decode errors since start-up.
    pub fn metrics(&self) -> &SessionMetrics {
        &self.shared.metrics
    }

    /// The configuration in use.
    pub fn config(&self) -> &SessionConfig {
        &self.shared.config
    }

    /// The store in use.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// The live sessions of the user the application calls `user_id` (bound with
    /// [`Session::set_user`]), oldest first, for a "your sessions" page. Reading them does not
    /// extend them. Costs one store call for the index and one per session.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) when the store cannot be reached;
    /// a session whose record cannot be read is left out and logged.
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
    /// # for _ in 0..2 {
    /// #     let login = adapter::session_from_cookie_headers(&manager, []);
    /// #     login.start()?;
    /// #     login.set_user("user-42")?;
    /// #     adapter::finish(&login).await?;
    /// # }
    /// // Two logins of user-42, on a phone and a laptop.
    /// let sessions = manager.sessions_of("user-42").await?;
    /// assert_eq!(sessions.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn sessions_of(&self, user_id: &str) -> Result<Vec<UserSession>> {
        let user = UserKey::of(user_id);
        let now = unix_millis(self.shared.config.clock.now());
        let store = &self.shared.store;
        let mut sessions = Vec::new();
        for entry in store.index_members(&user, now).await? {
            let key = entry.key.clone();
            let fields = match store.peek(&key, now).await {
                Ok(Some(fields)) => fields,
                Ok(None) => {
                    // Ended by logout or idle timeout, or not created yet: forget it only when
                    // it is too old to be a login on its way.
                    if entry.is_past_grace(now) {
                        store.index_remove(&user, &entry, now).await?;
                    }
                    continue;
                }
                Err(e) if e.is_unavailable() => return Err(e),
                Err(e) => {
                    // One unreadable record must not hide the user's other sessions.
                    tracing::warn!(session = key.short(), error = %e, "an indexed session cannot be read");
                    continue;
                }
            };
            let Ok(meta) = meta_of(&fields) else {
                tracing::warn!(
                    session = key.short(),
                    "an indexed session lacks its metadata"
                );
                continue;
            };
            // A session that names another user is not this user's, whatever the index says.
            if meta.user.as_ref() != Some(&user) {
                continue;
            }
            let last_seen_ms = fields
                .get(META_TOUCHED)
                .and_then(|text| parse_millis(text))
                .unwrap_or(meta.created_ms);
            let idle_ms = meta
                .idle_ms
                .unwrap_or_else(|| duration_millis(self.shared.config.idle_timeout));
            sessions.push(UserSession {
                key,
                created_ms: meta.created_ms,
                deadline_ms: meta.deadline_ms,
                last_seen_ms,
                idle_deadline_ms: last_seen_ms.saturating_add(idle_ms).min(meta.deadline_ms),
                fields: fields
                    .into_iter()
                    .filter(|(name, _)| !name.starts_with(RESERVED_PREFIX))
                    .collect(),
            });
        }
        sessions.sort_by(|a, b| (a.created_ms, &a.key).cmp(&(b.created_ms, &b.key)));
        Ok(sessions)
    }

    /// Ends every session of the user the application calls `user_id` (log out everywhere; an
    /// account disabled or deleted). Returns how many were ended.
    ///
    /// # Errors
    ///
    /// a store failure ([`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable),
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend); see
    /// [`Error::is_outcome_unknown`](crate::Error::is_outcome_unknown) for a write that may have
    /// run); sessions ended before the failure stay ended, and calling again ends the rest.
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
    /// # for _ in 0..2 {
    /// #     let login = adapter::session_from_cookie_headers(&manager, []);
    /// #     login.start()?;
    /// #     login.set_user("user-42")?;
    /// #     adapter::finish(&login).await?;
    /// # }
    /// // "Log out everywhere", or an administrator locking an account.
    /// assert_eq!(manager.end_sessions_of("user-42").await?, 2);
    /// assert!(manager.sessions_of("user-42").await?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn end_sessions_of(&self, user_id: &str) -> Result<usize> {
        end_indexed(&self.shared, &UserKey::of(user_id), |_| true).await
    }

    /// Ends one session of the user the application calls `user_id`, named by its
    /// [`UserSession::key`]; false when the user has no such session (a key of another user's
    /// session is refused, so a user can only end their own).
    ///
    /// # Errors
    ///
    /// a store failure ([`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable),
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
    /// # for _ in 0..2 {
    /// #     let login = adapter::session_from_cookie_headers(&manager, []);
    /// #     login.start()?;
    /// #     login.set_user("user-42")?;
    /// #     adapter::finish(&login).await?;
    /// # }
    /// // The "end" button of a "your sessions" page, given the key the page showed.
    /// let sessions = manager.sessions_of("user-42").await?;
    /// assert!(manager.end_session_of("user-42", &sessions[0].key).await?);
    /// assert_eq!(manager.sessions_of("user-42").await?.len(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn end_session_of(&self, user_id: &str, key: &SessionKey) -> Result<bool> {
        let ended = end_indexed(&self.shared, &UserKey::of(user_id), |k| k == key).await?;
        Ok(ended > 0)
    }

    /// The session a cookie's value names (the signed value, as the browser sends it), read
    /// without extending it: for support tools. The value is checked as a request's would be,
    /// against every accepted signing key.
    ///
    /// # Errors
    ///
    /// A store failure; a record the store cannot read ([`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt)).
    pub async fn inspect_cookie(&self, value: &str) -> Result<Inspection> {
        let config = &self.shared.config;
        let now = unix_millis(config.clock.now());
        let Some(token) = config.signer.verify(value.trim(), now) else {
            return Ok(Inspection::Forged);
        };
        let key = token.key();
        Ok(match self.shared.store.peek(&key, now).await? {
            Some(fields) => Inspection::Live { key, fields },
            None => Inspection::Ended { key },
        })
    }

    // A handle for a request carrying these `Cookie` header values and these values of the
    // configured session header, as bytes (`adapter::session_from_headers`). A request that
    // carries the session header is a header session: its cookies are not read.
    pub(crate) fn session_from_headers<'a>(
        &self,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
        session_headers: impl IntoIterator<Item = &'a [u8]>,
    ) -> Session {
        let config = &self.shared.config;
        // The session header first: a request that carries it is a header session.
        let mut found = Found::default();
        if let Some(header) = config.session_header() {
            found = Found::of(
                session_headers
                    .into_iter()
                    .filter_map(|value| header_value(header, value)),
            );
        }
        let transport = if found.count > 0 {
            Transport::Header
        } else {
            found = Found::of(crate::cookies::values_named(
                cookie_headers,
                config.cookie_name(),
            ));
            Transport::Cookie
        };
        // Two values make the request ambiguous (a subdomain may have planted a cookie): trust
        // neither.
        let token = match (found.count, found.first) {
            // A value that is not text cannot be one we signed.
            (1, Some(value)) => std::str::from_utf8(value)
                .ok()
                .and_then(|value| config.signer.verify(value, unix_millis(config.clock.now()))),
            _ => None,
        };
        let cookie = match (found.count, &token) {
            (0, _) => CookieState::Absent,
            (_, None) => CookieState::Invalid,
            (_, Some(_)) => CookieState::Valid,
        };
        if cookie == CookieState::Invalid {
            self.shared.metrics.forged_cookie(if found.oversized {
                Rejection::Oversized
            } else if found.count > 1 {
                Rejection::Ambiguous
            } else {
                Rejection::Forged
            });
            tracing::debug!("session cookie rejected before any store access");
        }
        if let Some(token) = &token {
            name_on_request_span(token);
        }
        let from_cookie = token.clone().filter(|_| transport == Transport::Cookie);
        let phase = match token {
            Some(token) => Phase::Unloaded { token },
            None => Phase::Anonymous,
        };
        Session::new(
            self.shared.clone(),
            State {
                cookie,
                transport,
                from_cookie,
                phase,
                pending: Delta::new(config.limits),
                to_delete: Vec::new(),
                set_cookie: None,
                clear_cookie: cookie == CookieState::Invalid && transport == Transport::Cookie,
                accessed: false,
                flash: FlashTake::NotAsked,
                rotated_from: None,
                retired_users: Vec::new(),
                endings: Vec::new(),
            },
        )
    }
}

// What a request carries of our session, cookie or header: how many values, the first, and
// whether any is longer than any value cloakroom issues. Counted, not collected: the cookie
// path is every request's.
#[derive(Default)]
struct Found<'a> {
    count: usize,
    first: Option<&'a [u8]>,
    oversized: bool,
}

impl<'a> Found<'a> {
    fn of(values: impl Iterator<Item = &'a [u8]>) -> Self {
        let mut found = Self::default();
        for value in values {
            found.count += 1;
            found.first = found.first.or(Some(value));
            found.oversized |= value.len() > SIGNED_VALUE_LEN;
        }
        found
    }
}

// The session's value in one value of the session header `header`, if it carries one: for
// `authorization`, the credentials of the `Bearer` scheme (another scheme is not ours, and is
// left to the application); for any other header, the whole value.
fn header_value<'a>(header: &str, value: &'a [u8]) -> Option<&'a [u8]> {
    if header != "authorization" {
        return Some(value.trim_ascii());
    }
    let value = value.trim_ascii();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, credentials) = value.split_at(space);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| credentials.trim_ascii())
}

// Most passes over a user's index when ending sessions: a session created by a rotation or a
// login that raced the first pass is listed by the next.
const END_PASSES: usize = 4;

// Deletes the sessions in `user`'s index that `chosen` picks, then their entries (an entry
// outliving its session is harmless; the reverse would hide a session). Lists the index again
// until a pass finds nothing new to end, so a session rotated meanwhile is ended too. An entry
// whose session is absent and young is kept: its login may be creating it. Counts the sessions
// that existed.
pub(super) async fn end_indexed(
    shared: &Shared,
    user: &UserKey,
    chosen: impl Fn(&SessionKey) -> bool,
) -> Result<usize> {
    let mut ended = 0;
    let mut tried = std::collections::HashSet::new();
    for _ in 0..END_PASSES {
        let now = unix_millis(shared.config.clock.now());
        let mut found = false;
        for entry in shared.store.index_members(user, now).await? {
            let key = &entry.key;
            if !chosen(key) || !tried.insert(key.clone()) {
                continue;
            }
            found = true;
            let existed = shared.store.delete(key).await?;
            if existed {
                ended += 1;
                shared
                    .config
                    .hooks
                    .ended(key, Some(user), EndReason::Revoked);
            }
            if existed || entry.is_past_grace(now) {
                shared.store.index_remove(user, &entry, now).await?;
            }
        }
        if !found {
            break;
        }
    }
    if ended > 0 {
        tracing::info!(ended, "ended sessions of a user");
    }
    Ok(ended)
}
