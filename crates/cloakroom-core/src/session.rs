//! The per-request session handle and the manager that makes handles from cookies.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::clock::{duration_millis, unix_millis};
use crate::config::{SameSite, SessionConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::metrics::SessionMetrics;
use crate::signing::SIGNED_VALUE_LEN;
use crate::store::{
    Access, Applied, Apply, Bounds, Created, Fields, META_CREATED, META_DEADLINE, META_USER,
    NewSession, Op, Origin, RESERVED_PREFIX, Store, Totals, add_to_counter, check_field_name,
    check_increment, parse_millis,
};
use crate::token::{SessionKey, SessionToken};
use crate::users::{UserKey, UserSession};

/// Makes [`Session`] handles from request cookies; one per application, cheap to clone.
#[derive(Clone)]
pub struct SessionManager {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn Store>,
    config: SessionConfig,
    metrics: SessionMetrics,
}

impl fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.shared.store)
            .field("config", &self.shared.config)
            .finish()
    }
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
    /// A manager over `store`, after checking `config` for contradictions.
    pub fn new(store: Arc<dyn Store>, config: SessionConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared {
                store,
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
            sessions.push(UserSession {
                key,
                created_ms: meta.created_ms,
                deadline_ms: meta.deadline_ms,
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
    pub async fn end_sessions_of(&self, user_id: &str) -> Result<usize> {
        end_indexed(&self.shared, &UserKey::of(user_id), |_| true).await
    }

    /// Ends one session of the user the application calls `user_id`, named by its
    /// [`UserSession::key`]; false when the user has no such session (a key of another user's
    /// session is refused, so a user can only end their own).
    pub async fn end_session_of(&self, user_id: &str, key: &SessionKey) -> Result<bool> {
        let ended = end_indexed(&self.shared, &UserKey::of(user_id), |k| k == key).await?;
        Ok(ended > 0)
    }

    /// A handle for a request carrying these `Cookie` header values, as bytes (a header may
    /// hold other cookies that are not ASCII; only ours must be). Costs no store access: the
    /// session is looked up only when the handler first uses it.
    pub fn session_from_cookie_headers<'a>(
        &self,
        cookie_headers: impl IntoIterator<Item = &'a [u8]>,
    ) -> Session {
        let name = self.shared.config.cookie_name();
        let mut found: Option<&[u8]> = None;
        let mut count = 0usize;
        let mut oversized = false;
        for value in crate::cookies::values_named(cookie_headers, name) {
            count += 1;
            found = Some(value);
            oversized |= value.len() > SIGNED_VALUE_LEN;
        }
        // Two cookies of our name make the request ambiguous (a subdomain may have planted one):
        // trust neither.
        let token = match (count, found) {
            // A value that is not text cannot be one we signed.
            (1, Some(value)) => std::str::from_utf8(value).ok().and_then(|value| {
                self.shared
                    .config
                    .signer
                    .verify(value, unix_millis(self.shared.config.clock.now()))
            }),
            _ => None,
        };
        let cookie = match (count, &token) {
            (0, _) => CookieState::Absent,
            (_, None) => CookieState::Invalid,
            (_, Some(_)) => CookieState::Valid,
        };
        if cookie == CookieState::Invalid {
            self.shared.metrics.forged_cookie(oversized);
            tracing::debug!("session cookie rejected before any store access");
        }
        let phase = match token {
            Some(token) => Phase::Unloaded { token },
            None => Phase::Anonymous,
        };
        Session {
            shared: self.shared.clone(),
            state: Arc::new(Mutex::new(State {
                cookie,
                phase,
                pending: BTreeMap::new(),
                to_delete: Vec::new(),
                set_cookie: None,
                clear_cookie: cookie == CookieState::Invalid,
                accessed: false,
                rotated_from: None,
            })),
        }
    }
}

/// A request's view of its session.
///
/// Reads load the session on first use; plain writes are buffered as a per-field delta and
/// written once when the request ends ([`Session::finish`], called by the HTTP layer), so two
/// requests writing different fields never undo each other. [`Session::incr`] is the exception:
/// it runs at once, server-side, and also loads the session in the same round trip when it has not
/// been loaded. Reads see the request's own writes.
///
/// Clones share state; the handle is cheap to clone.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

struct State {
    cookie: CookieState,
    phase: Phase,
    // Buffered writes to an existing session: Some(json) sets, None removes.
    pending: BTreeMap<String, Option<String>>,
    // Sessions to delete at the end of the request (after any new one is created).
    to_delete: Vec<SessionToken>,
    set_cookie: Option<SessionToken>,
    clear_cookie: bool,
    accessed: bool,
    // The session whose data a `cycle_id` copied: if it turns out to have been deleted meanwhile
    // (a logout in another request), the copy must not outlive it.
    rotated_from: Option<SessionToken>,
}

#[derive(Clone)]
struct Meta {
    created_ms: u64,
    deadline_ms: u64,
    // The user the session belongs to, if one was bound: the session is listed in that user's
    // index.
    user: Option<UserKey>,
}

enum Phase {
    /// No session, none started.
    Anonymous,
    /// A validly signed token, not yet looked up.
    Unloaded { token: SessionToken },
    /// A session known to exist, with its fields as of the last store access.
    Live { token: SessionToken, fields: Fields },
    /// A session started in this request, to be created when the request ends.
    Started {
        token: SessionToken,
        fields: Fields,
        meta: Meta,
    },
    /// The cookie's session does not exist (expired or deleted), or it was destroyed here.
    Gone,
}

/// What the end of a request must do to the response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finished {
    /// A `Set-Cookie` header value to send, if the cookie must be set or cleared.
    pub set_cookie: Option<String>,
    /// Whether the handler used the session: the response then depends on the cookie and must
    /// not be cached by shared caches.
    pub accessed: bool,
}

impl Session {
    fn now_ms(&self) -> u64 {
        unix_millis(self.shared.config.clock.now())
    }

    fn access(&self) -> Access {
        Access {
            now_ms: self.now_ms(),
            idle_ms: duration_millis(self.shared.config.idle_timeout).max(1),
        }
    }

    // Steps that may add fields or bytes carry the session-wide bounds for the store to check
    // against the session as it is.
    fn bounds_for(&self, ops: &[Op]) -> Option<Bounds> {
        ops.iter()
            .any(|op| !matches!(op, Op::Remove { .. }))
            .then(|| self.shared.config.limits.bounds())
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
    pub async fn key(&self) -> Result<Option<SessionKey>> {
        let mut state = self.state.lock().await;
        state.accessed = true;
        self.ensure_loaded(&mut state).await?;
        Ok(match &state.phase {
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
    pub async fn user(&self) -> Result<Option<UserKey>> {
        let mut state = self.state.lock().await;
        state.accessed = true;
        self.ensure_loaded(&mut state).await?;
        Ok(match &state.phase {
            Phase::Live { fields, .. } => {
                fields.get(META_USER).and_then(|u| UserKey::from_stored(u))
            }
            Phase::Started { meta, .. } => meta.user.clone(),
            _ => None,
        })
    }

    /// What the request's cookie said.
    pub async fn cookie_state(&self) -> CookieState {
        self.state.lock().await.cookie
    }

    /// Reads a field, decoded from JSON; `None` when the field or the session is absent.
    pub async fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let mut state = self.state.lock().await;
        state.accessed = true;
        let raw = match state.pending.get(name) {
            Some(pending) => pending.clone(),
            None => {
                self.ensure_loaded(&mut state).await?;
                match &state.phase {
                    Phase::Live { fields, .. } | Phase::Started { fields, .. } => {
                        fields.get(name).cloned()
                    }
                    _ => None,
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
    pub async fn exists(&self) -> Result<bool> {
        let mut state = self.state.lock().await;
        state.accessed = true;
        self.ensure_loaded(&mut state).await?;
        Ok(matches!(
            state.phase,
            Phase::Live { .. } | Phase::Started { .. }
        ))
    }

    /// Sets a field to `value`, encoded as JSON. Written when the request ends.
    ///
    /// Fails with [`ErrorKind::NoSession`] when the request has no session: start one first.
    pub async fn insert<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        check_field_name(name)?;
        let json = serde_json::to_string(value).map_err(|e| {
            Error::with_source(
                ErrorKind::Encode,
                format!("session field {name:?} does not encode as JSON"),
                e,
            )
        })?;
        self.write(name, Some(json)).await
    }

    /// Removes a field. Written when the request ends.
    pub async fn remove(&self, name: &str) -> Result<()> {
        check_field_name(name)?;
        self.write(name, None).await
    }

    async fn write(&self, name: &str, value: Option<String>) -> Result<()> {
        let limits = self.shared.config.limits;
        limits.check_field(name, value.as_deref())?;
        let mut state = self.state.lock().await;
        state.accessed = true;
        let State { phase, pending, .. } = &mut *state;
        // The session's user fields after this write, where the handle knows them; for a
        // session not loaded yet, this request's own changes.
        let empty = Fields::new();
        let known = match phase {
            Phase::Started { fields, .. } => Some(fields as &Fields),
            Phase::Live { fields, .. } => Some(fields as &Fields),
            Phase::Unloaded { .. } => Some(&empty),
            Phase::Anonymous | Phase::Gone => None,
        };
        let Some(known) = known else {
            return Err(no_session());
        };
        let (before, after) = totals_around(known, pending, name, value.as_deref());
        limits.bounds().check(before, after)?;
        match phase {
            Phase::Started { fields, .. } => {
                match value {
                    Some(v) => fields.insert(name.to_owned(), v),
                    None => fields.remove(name),
                };
            }
            _ => {
                pending.insert(name.to_owned(), value);
            }
        }
        Ok(())
    }

    /// Adds `by` to an integer field (absent counts as 0) atomically in the store and returns
    /// the new value, or `None` when the request has no session (nothing is created).
    ///
    /// Runs at once in one round trip that also flushes buffered writes, slides the TTL and, if
    /// the session was not loaded yet, loads it: calling `incr` before `get` makes a typical
    /// request cost one round trip in all.
    pub async fn incr(&self, name: &str, by: i64) -> Result<Option<i64>> {
        check_field_name(name)?;
        self.shared.config.limits.check_field(name, None)?;
        check_increment(name, by)?;
        let mut state = self.state.lock().await;
        state.accessed = true;
        let token = match &mut state.phase {
            Phase::Anonymous | Phase::Gone => return Ok(None),
            Phase::Started { fields, .. } => {
                let value = add_to_counter(name, fields.get(name).map(String::as_str), by)?;
                let text = value.to_string();
                if !fields.contains_key(name) {
                    // A new field: the same bounds a store applies to an increment that
                    // creates one.
                    let (before, after) =
                        totals_around(fields, &BTreeMap::new(), name, Some(&text));
                    self.shared.config.limits.bounds().check(before, after)?;
                }
                fields.insert(name.to_owned(), text);
                return Ok(Some(value));
            }
            Phase::Live { token, .. } | Phase::Unloaded { token } => token.clone(),
        };
        let load = matches!(state.phase, Phase::Unloaded { .. });
        let mut ops = pending_ops(&state.pending);
        ops.push(Op::Incr {
            name: name.to_owned(),
            by,
        });
        let apply = Apply {
            access: self.access(),
            bounds: self.bounds_for(&ops),
            ops,
            load,
        };
        let applied = match self.shared.store.apply(&token.key(), &apply).await {
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                self.unreadable(&mut state, &token, &e);
                return Ok(None);
            }
            Err(e) => {
                if e.kind() == ErrorKind::NotAnInteger {
                    self.shared.metrics.corrupt_record();
                }
                return Err(e);
            }
            Ok(applied) => applied,
        };
        match applied {
            Applied::Missing => {
                if load {
                    self.shared.metrics.unknown_token();
                }
                state.mark_gone();
                Ok(None)
            }
            Applied::Done { counters, fields } => {
                let value = counters.last().copied().ok_or_else(|| {
                    Error::new(ErrorKind::Corrupt, "the store returned no counter value")
                })?;
                let pending = std::mem::take(&mut state.pending);
                if let Phase::Live { fields: cached, .. } = &mut state.phase {
                    merge_pending(cached, pending);
                    cached.insert(name.to_owned(), value.to_string());
                } else if let Some(fields) = fields {
                    state.phase = Phase::Live { token, fields };
                }
                Ok(Some(value))
            }
        }
    }

    /// Starts a new, empty session with a fresh token (at login). Any session the request had
    /// is deleted when the request ends, after the new one is created: its data does not carry
    /// over, and its token stops working.
    pub async fn start(&self) -> Result<()> {
        let token = SessionToken::generate()?;
        let now = self.now_ms();
        let meta = Meta {
            created_ms: now,
            deadline_ms: now.saturating_add(duration_millis(self.shared.config.absolute_timeout)),
            user: None,
        };
        let mut state = self.state.lock().await;
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

    /// Gives the session a fresh token and keeps its data and its absolute deadline (for
    /// example when privileges change). The old token stops working when the request ends.
    /// Returns false when the request has no session.
    pub async fn cycle_id(&self) -> Result<bool> {
        let mut state = self.state.lock().await;
        state.accessed = true;
        self.ensure_loaded(&mut state).await?;
        let (fields, meta) = match &state.phase {
            Phase::Anonymous | Phase::Gone | Phase::Unloaded { .. } => return Ok(false),
            Phase::Started { fields, meta, .. } => (fields.clone(), meta.clone()),
            Phase::Live { token, fields } => {
                let meta = match meta_of(fields) {
                    Ok(meta) => meta,
                    Err(e) => {
                        let token = token.clone();
                        self.unreadable(&mut state, &token, &e);
                        return Ok(false);
                    }
                };
                let mut merged = fields.clone();
                merge_pending(&mut merged, std::mem::take(&mut state.pending));
                (merged, meta)
            }
        };
        let token = SessionToken::generate()?;
        if let Phase::Live { token: old, .. } = &state.phase {
            state.rotated_from = Some(old.clone());
        }
        state.retire_current();
        state.phase = Phase::Started {
            token,
            fields: fields
                .into_iter()
                .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
                .collect(),
            meta,
        };
        Ok(true)
    }

    /// Binds the session started in this request to the user the application calls `user_id`
    /// (call it at login, after [`Session::start`]). The session is then listed in the user's
    /// index, so that [`SessionManager::sessions_of`], [`SessionManager::end_sessions_of`] and
    /// [`Session::end_other_sessions`] find it; [`Session::cycle_id`] keeps the binding.
    ///
    /// Fails with [`ErrorKind::NoSession`] when no session was started in this request.
    pub async fn set_user(&self, user_id: &str) -> Result<()> {
        let mut state = self.state.lock().await;
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

    /// Ends every other session of this session's user (after a password change, for example)
    /// and keeps this one. Returns how many sessions were ended; 0 when the request has no
    /// session or its session has no user.
    pub async fn end_other_sessions(&self) -> Result<usize> {
        let mut state = self.state.lock().await;
        state.accessed = true;
        // A session started here is created first, so that it is in the index and kept.
        self.save_locked(&mut state).await?;
        self.ensure_loaded(&mut state).await?;
        let Phase::Live { token, fields } = &state.phase else {
            return Ok(0);
        };
        let Some(user) = fields.get(META_USER).and_then(|u| UserKey::from_stored(u)) else {
            return Ok(0);
        };
        let own = token.key();
        end_indexed(&self.shared, &user, |key| *key != own).await
    }

    // Lists a new session in its user's index before the session is created, so that no
    // session of a user is ever missing from the index.
    async fn index(
        &self,
        user: Option<&UserKey>,
        token: &SessionToken,
        access: &Access,
        deadline_ms: u64,
    ) -> Result<()> {
        match user {
            Some(user) => {
                self.shared
                    .store
                    .index_add(user, &token.key(), deadline_ms, access.now_ms)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Ends the session: it is deleted in the store when the request ends and the cookie is
    /// cleared.
    pub async fn destroy(&self) {
        let mut state = self.state.lock().await;
        state.accessed = true;
        state.retire_current();
        state.end_here();
    }

    // The session's record cannot be read as a session (a key of another type, a hash without a
    // valid deadline or metadata): the request goes on without a session, as if it had expired.
    // The record is left as it is, for whoever investigates; it expires, and a logout or the
    // next login deletes it. The cookie is left alone, as for an expired session: clearing it
    // could wipe a login made meanwhile in another tab. Never an error: the user could not
    // change the record, and must not be locked out by it.
    fn unreadable(&self, state: &mut State, token: &SessionToken, error: &Error) {
        self.shared.metrics.corrupt_record();
        tracing::warn!(
            session = token.key().short(),
            error = %error,
            "the session's record cannot be read; the request goes on without a session"
        );
        state.mark_gone();
    }

    async fn ensure_loaded(&self, state: &mut State) -> Result<()> {
        let Phase::Unloaded { token } = &state.phase else {
            return Ok(());
        };
        let token = token.clone();
        let ops = pending_ops(&state.pending);
        let apply = Apply {
            access: self.access(),
            bounds: self.bounds_for(&ops),
            ops,
            load: true,
        };
        match self.shared.store.apply(&token.key(), &apply).await {
            Err(e) if e.kind() == ErrorKind::Corrupt => self.unreadable(state, &token, &e),
            Err(e) => return Err(e),
            Ok(Applied::Missing) => {
                self.shared.metrics.unknown_token();
                state.mark_gone();
            }
            Ok(Applied::Done { fields, .. }) => {
                state.pending.clear();
                state.phase = Phase::Live {
                    token,
                    fields: fields.unwrap_or_default(),
                };
            }
        }
        Ok(())
    }

    /// Writes what the request changed: creates a started session, deletes retired ones, applies
    /// buffered writes. The HTTP layer calls this once when the handler has returned; a handler
    /// may call it earlier to learn the outcome. Returns whether the session still exists.
    pub async fn save(&self) -> Result<bool> {
        let mut state = self.state.lock().await;
        self.save_locked(&mut state).await?;
        self.ensure_loaded(&mut state).await?;
        Ok(matches!(state.phase, Phase::Live { .. }))
    }

    async fn save_locked(&self, state: &mut State) -> Result<()> {
        if let Phase::Started {
            token,
            fields,
            meta,
        } = &state.phase
        {
            let (mut token, mut fields, meta) = (token.clone(), fields.clone(), meta.clone());
            let access = self.access();
            if access.ttl_ms(meta.deadline_ms) <= 0 {
                // The absolute lifetime ran out while the request ran (a rotation near the end of
                // a session): the session is over, not an error.
                state.end_here();
                return self.delete_retired(state).await;
            }
            fields.insert(META_CREATED.to_owned(), meta.created_ms.to_string());
            fields.insert(META_DEADLINE.to_owned(), meta.deadline_ms.to_string());
            if let Some(user) = &meta.user {
                fields.insert(META_USER.to_owned(), user.as_str().to_owned());
            }
            let new = NewSession {
                fields,
                access,
                deadline_ms: meta.deadline_ms,
                origin: if state.rotated_from.is_some() {
                    Origin::Rotation
                } else {
                    Origin::Login
                },
            };
            // A collision of 256-bit random tokens does not happen; if the store ever says the
            // key exists, something is wrong with randomness, and we refuse to share a session.
            self.index(meta.user.as_ref(), &token, &access, meta.deadline_ms)
                .await?;
            if self.shared.store.create(&token.key(), &new).await? == Created::Exists {
                token = SessionToken::generate()?;
                self.index(meta.user.as_ref(), &token, &access, meta.deadline_ms)
                    .await?;
                if self.shared.store.create(&token.key(), &new).await? == Created::Exists {
                    return Err(Error::new(
                        ErrorKind::Random,
                        "two fresh tokens named existing sessions",
                    ));
                }
            }
            state.set_cookie = Some(token.clone());
            state.clear_cookie = false;
            state.phase = Phase::Live {
                token,
                fields: new.fields,
            };
        }
        self.delete_retired(state).await?;
        if !state.pending.is_empty() {
            let token = match &state.phase {
                Phase::Live { token, .. } | Phase::Unloaded { token } => token.clone(),
                _ => {
                    state.pending.clear();
                    return Ok(());
                }
            };
            let ops = pending_ops(&state.pending);
            let apply = Apply {
                access: self.access(),
                bounds: self.bounds_for(&ops),
                ops,
                load: false,
            };
            let applied = match self.shared.store.apply(&token.key(), &apply).await {
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    self.unreadable(state, &token, &e);
                    return Ok(());
                }
                other => other?,
            };
            let pending = std::mem::take(&mut state.pending);
            match applied {
                Applied::Missing => {
                    tracing::info!(
                        session = token.key().short(),
                        "session ended before its changes were saved; nothing was written"
                    );
                    state.mark_gone();
                }
                Applied::Done { .. } => {
                    if let Phase::Live { fields, .. } = &mut state.phase {
                        merge_pending(fields, pending);
                    }
                }
            }
        }
        Ok(())
    }

    // Deletes the sessions this request retired. A token leaves the list only once its delete
    // has succeeded, so a failed delete is retried by the next save, never forgotten.
    async fn delete_retired(&self, state: &mut State) -> Result<()> {
        while let Some(old) = state.to_delete.first().cloned() {
            let existed = self.shared.store.delete(&old.key()).await?;
            state.to_delete.remove(0);
            if !existed && state.rotated_from.as_ref() == Some(&old) {
                // The session `cycle_id` copied was deleted by another request (a logout)
                // between our load and now: its copy must not bring it back.
                if let Phase::Live { token, .. } = &state.phase {
                    self.shared.store.delete(&token.key()).await?;
                }
                state.end_here();
            }
        }
        Ok(())
    }

    /// True when ending the request will write to the store: a session to create, sessions to
    /// delete, or buffered writes.
    pub async fn has_unsaved_changes(&self) -> bool {
        let state = self.state.lock().await;
        matches!(state.phase, Phase::Started { .. })
            || !state.to_delete.is_empty()
            || !state.pending.is_empty()
    }

    /// Saves the request's changes and says what the response needs. Called once by the HTTP
    /// layer when the handler has returned.
    pub async fn finish(&self) -> Result<Finished> {
        let mut state = self.state.lock().await;
        self.save_locked(&mut state).await?;
        let config = &self.shared.config;
        let set_cookie = if let Some(token) = &state.set_cookie {
            Some(cookie_header(config, Some(&config.signer.sign(token))))
        } else if state.clear_cookie {
            Some(cookie_header(config, None))
        } else {
            None
        };
        Ok(Finished {
            set_cookie,
            accessed: state.accessed,
        })
    }
}

impl State {
    // The request's current session, if any, is to be deleted at the end of the request.
    fn retire_current(&mut self) {
        match std::mem::replace(&mut self.phase, Phase::Gone) {
            Phase::Unloaded { token } | Phase::Live { token, .. } => self.to_delete.push(token),
            // A session started and not yet created simply never exists.
            Phase::Started { .. } | Phase::Anonymous | Phase::Gone => {}
        }
        self.pending.clear();
        self.set_cookie = None;
    }

    // The session does not exist (any more). The cookie is left alone: the browser may already
    // hold a newer one from a concurrent login, which clearing would destroy; a dead token is
    // harmless and is replaced at the next login.
    fn mark_gone(&mut self) {
        self.phase = Phase::Gone;
        self.pending.clear();
        self.set_cookie = None;
        self.rotated_from = None;
    }

    // The session ended by this request's own doing (logout, its lifetime running out, a
    // rotation that lost to a logout): gone, and the browser's cookie is cleared.
    fn end_here(&mut self) {
        self.mark_gone();
        self.clear_cookie = self.cookie != CookieState::Absent;
    }
}

fn no_session() -> Error {
    Error::new(
        ErrorKind::NoSession,
        "this request has no session; start one before writing to it",
    )
}

// Applies buffered writes (Some sets, None removes) to a cached copy of the fields.
fn merge_pending(fields: &mut Fields, pending: BTreeMap<String, Option<String>>) {
    for (name, value) in pending {
        match value {
            Some(value) => fields.insert(name, value),
            None => fields.remove(&name),
        };
    }
}

// Field count and bytes of the user fields (metadata excluded) once `pending` and then one more
// write of `name` are applied to `fields`.
// The session's user totals before and after setting `name` to `value` (or removing it), given
// what the handle knows: `fields` as loaded or started, overlaid with `pending` changes.
fn totals_around(
    fields: &Fields,
    pending: &BTreeMap<String, Option<String>>,
    name: &str,
    value: Option<&str>,
) -> (Totals, Totals) {
    let mut before = Totals::default();
    for (field, stored) in fields {
        if !pending.contains_key(field) {
            before.add(field, stored);
        }
    }
    for (field, change) in pending {
        if let Some(v) = change {
            before.add(field, v);
        }
    }
    let current = match pending.get(name) {
        Some(change) => change.as_deref(),
        None => fields.get(name).map(String::as_str),
    };
    let mut after = before;
    if let Some(old) = current {
        after.fields -= 1;
        after.bytes -= name.len() + old.len();
    }
    if let Some(v) = value {
        after.add(name, v);
    }
    (before, after)
}

fn pending_ops(pending: &BTreeMap<String, Option<String>>) -> Vec<Op> {
    pending
        .iter()
        .map(|(name, value)| match value {
            Some(value) => Op::Set {
                name: name.clone(),
                value: value.clone(),
            },
            None => Op::Remove { name: name.clone() },
        })
        .collect()
}

// Most passes over a user's index when ending sessions: a session created by a rotation or a
// login that raced the first pass is listed by the next.
const END_PASSES: usize = 4;

// Deletes the sessions in `user`'s index that `chosen` picks, then their entries (an entry
// outliving its session is harmless; the reverse would hide a session). Lists the index again
// until a pass finds nothing new to end, so a session rotated meanwhile is ended too. An entry
// whose session is absent and young is kept: its login may be creating it. Counts the sessions
// that existed.
async fn end_indexed(
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

fn meta_of(fields: &Fields) -> Result<Meta> {
    let read = |name: &str| {
        fields
            .get(name)
            .and_then(|v| parse_millis(v))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!("the stored session lacks a valid {name} field"),
                )
            })
    };
    Ok(Meta {
        created_ms: read(META_CREATED)?,
        deadline_ms: read(META_DEADLINE)?,
        user: fields
            .get(META_USER)
            .and_then(|text| UserKey::from_stored(text)),
    })
}

fn cookie_header(config: &SessionConfig, value: Option<&str>) -> String {
    let mut builder = cookie::Cookie::build((
        config.cookie_name().to_owned(),
        value.unwrap_or("").to_owned(),
    ))
    .http_only(true)
    .secure(config.secure)
    .path(config.path.clone())
    .same_site(match config.same_site {
        SameSite::Strict => cookie::SameSite::Strict,
        SameSite::Lax => cookie::SameSite::Lax,
        SameSite::None => cookie::SameSite::None,
    });
    if let Some(domain) = &config.domain {
        builder = builder.domain(domain.clone());
    }
    let seconds = if value.is_some() {
        i64::try_from(config.absolute_timeout.as_secs()).unwrap_or(i64::MAX)
    } else {
        0
    };
    builder = builder.max_age(cookie::time::Duration::seconds(seconds));
    if value.is_none() {
        builder = builder.expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
    }
    builder.build().to_string()
}
