//! The embedded store: sessions in this process's memory, bounded and expiring.
//!
//! One mutex guards a map and two indexes (deadlines, and the creation order of sessions not
//! used since). Every operation holds it for a few map lookups and never across an `.await`,
//! which makes each operation atomic per session (and, more strongly, across sessions) at a cost
//! of well under a microsecond.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::{Clock, unix_millis};
use crate::error::{Error, ErrorKind, Result};
use crate::store::{
    Access, Applied, Apply, Created, Fields, META_TOUCHED, META_USER, NewSession, Origin, Store,
    parse_millis,
};
use crate::token::SessionKey;
use crate::users::{INDEX_GRACE, IndexEntry, UserKey};

mod builder;
pub use self::builder::MemoryStoreBuilder;

pub(crate) const DEFAULT_MAX_SESSIONS: usize = 100_000;
pub(crate) const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
// A full store evicts sessions on probation while they are at least this share of the bound
// (one tenth): enough for a new login to survive the logins that follow it until its first
// request, little enough that the sessions in use keep the rest.
const PROBATION_SHARE: usize = 10;

/// An in-process session store, the default when no server is configured.
///
/// * **Bounded**: it holds at most `max_sessions` sessions. Creating one more first drops every
///   expired session. If the store is still full it evicts a session on probation, the oldest,
///   while at least a tenth of the bound is on probation, and otherwise the session that would
///   expire soonest (with sliding expiry, mostly the one idle the longest; a session near its
///   absolute deadline goes earlier). A login's session is on probation from its creation until
///   its first use (a load or write; a peek does not count), and a rotated one
///   ([`Origin::Rotation`](crate::store::Origin)) is not, so a flood of logins that are never
///   used again evicts its own sessions, not the sessions in use. Existing sessions are never
///   refused writes and a login is never refused, but during such a flood a new login may be
///   evicted before its first request: the segment protects the sessions in use.
/// * **Expiring**: a deadline index lets a background task (started when the store is built
///   inside a Tokio runtime, stopped when the store is dropped) and every create reclaim expired
///   sessions without waiting for them to be accessed; every access also checks expiry itself.
/// * Sessions live and die with the process: a restart logs everyone out.
///
/// Cloning is cheap and clones share the sessions.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    max_sessions: usize,
    // While at least this many sessions are on probation, a full store evicts one of them.
    probation_floor: usize,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<SessionKey, Entry>,
    // (expires_at_ms, key): the first entry is the next to expire.
    by_expiry: BTreeSet<(u64, SessionKey)>,
    // Each user's sessions with their deadlines and when they were indexed. A session leaves its
    // user's index when it leaves the store, and an entry whose session never arrived leaves
    // after `INDEX_GRACE`: the index holds the sessions held plus the logins of the last minute.
    users: HashMap<UserKey, BTreeMap<SessionKey, Listed>>,
    // The sessions on probation (created and not used since) by creation number: the first
    // entry is the oldest. A session leaves at its first use or when it leaves the store.
    probation: BTreeMap<u64, SessionKey>,
    // The creation number of the next session.
    next_creation: u64,
    evictions: u64,
}

// One entry of a user's index: the session's deadline and when the entry was written.
#[derive(Clone, Copy)]
struct Listed {
    deadline_ms: u64,
    written_ms: u64,
}

struct Entry {
    // Shared with the requests that loaded it: a load hands out the pointer, and a write
    // clones the fields only while such a request still holds them.
    fields: Arc<Fields>,
    expires_at_ms: u64,
    deadline_ms: u64,
    // When the idle timeout last restarted (also in `fields`, as the store gives it back).
    touched_ms: Option<u64>,
    standing: Standing,
}

// Whether a session has been used since its creation: what a full store evicts first.
#[derive(Clone, Copy)]
enum Standing {
    // Created and not used since; the number is its key in `State::probation`.
    Probation(u64),
    // Used at least once since its creation.
    InUse,
}

// Which rule picked the session a full store evicts.
#[derive(Clone, Copy)]
enum Eviction {
    OldestOnProbation,
    IdleLongest,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_sessions", &self.inner.max_sessions)
            .field("len", &self.len())
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store holding at most [`MemoryStore::DEFAULT_MAX_SESSIONS`](crate::MemoryStore::DEFAULT_MAX_SESSIONS) sessions, on the system clock.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to set the bound, the clock or the sweep interval.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use cloakroom_core::MemoryStore;
    ///
    /// let store = MemoryStore::builder()
    ///     .with_max_sessions(10_000)
    ///     .with_sweep_interval(Some(Duration::from_secs(60)))
    ///     .build();
    /// assert!(store.is_empty());
    /// ```
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::new()
    }

    /// Number of sessions held, expired ones not yet reclaimed included.
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sessions evicted because the store was full, since it was built.
    pub fn evictions(&self) -> u64 {
        self.lock().evictions
    }

    /// Drops every session whose time is up; returns how many. The background sweeper calls this.
    pub fn sweep_expired(&self) -> usize {
        let now = unix_millis(self.inner.clock.now());
        self.lock().purge_expired(now)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated in a way that breaks
        // invariants worse than losing that one operation, so a poisoned lock is still used.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn remove(&mut self, key: &SessionKey) -> bool {
        // The map gives back its own copy of the key, which the deadline index's entry is built
        // from: no copy of a key is made to remove a session.
        match self.sessions.remove_entry(key) {
            Some((key, entry)) => {
                if let Standing::Probation(number) = entry.standing {
                    self.probation.remove(&number);
                }
                if let Some(user) = entry
                    .fields
                    .get(META_USER)
                    .and_then(|u| UserKey::from_stored(u))
                {
                    self.unindex(&user, &key);
                }
                self.by_expiry.remove(&(entry.expires_at_ms, key));
                true
            }
            None => false,
        }
    }

    fn unindex(&mut self, user: &UserKey, key: &SessionKey) {
        if let Some(index) = self.users.get_mut(user) {
            index.remove(key);
            if index.is_empty() {
                self.users.remove(user);
            }
        }
    }

    // Drops the entries of `user`'s index whose deadline has passed, or whose session is gone.
    fn prune_index(&mut self, user: &UserKey, now_ms: u64) {
        let Some(index) = self.users.get_mut(user) else {
            return;
        };
        let sessions = &self.sessions;
        let grace = crate::clock::duration_millis(INDEX_GRACE);
        // An entry written just before its session's create has no session yet: keep it for the
        // grace period, so a racing listing cannot drop it.
        index.retain(|key, entry| {
            entry.deadline_ms > now_ms
                && match sessions.get(key) {
                    Some(session) => session.expires_at_ms > now_ms,
                    None => now_ms < entry.written_ms.saturating_add(grace),
                }
        });
        if index.is_empty() {
            self.users.remove(user);
        }
    }

    fn purge_expired(&mut self, now_ms: u64) -> usize {
        let mut purged = 0;
        while self.by_expiry.first().is_some_and(|(at, _)| *at <= now_ms) {
            let Some((_, key)) = self.by_expiry.pop_first() else {
                break;
            };
            self.remove(&key);
            purged += 1;
        }
        purged
    }

    // Evicts one session from a full store; returns it and why it was picked. Sessions on
    // probation go first, oldest first, while they are at least `floor`: a flood of logins never
    // used again evicts its own. Below the floor the session idle longest goes, in use or not, so
    // that a store full of sessions in use still gives each new login a tenth of the bound's
    // worth of logins to be used in.
    fn evict(&mut self, floor: usize) -> Option<(SessionKey, Eviction)> {
        let (key, why) = if self.probation.len() >= floor
            && let Some((_, key)) = self.probation.pop_first()
        {
            (key, Eviction::OldestOnProbation)
        } else {
            let (_, key) = self.by_expiry.pop_first()?;
            (key, Eviction::IdleLongest)
        };
        if self.remove(&key) {
            self.evictions += 1;
            metrics::counter!(crate::metrics::MEMORY_STORE_EVICTIONS).increment(1);
            crate::metrics::sessions_ended(crate::hooks::EndReason::Evicted, 1);
        }
        Some((key, why))
    }

    fn insert(&mut self, key: &SessionKey, session: &NewSession, expires_at_ms: u64) {
        let (fields, deadline_ms) = (session.fields.clone(), session.deadline_ms);
        let touched_ms = fields.get(META_TOUCHED).and_then(|t| parse_millis(t));
        // A rotated session continues one in use: it is not on probation.
        let standing = if session.origin == Origin::Rotation {
            Standing::InUse
        } else {
            // Numbers never wrap: no store sees 2^64 creations.
            let number = self.next_creation;
            self.next_creation = number.wrapping_add(1);
            self.probation.insert(number, key.clone());
            Standing::Probation(number)
        };
        self.by_expiry.insert((expires_at_ms, key.clone()));
        self.sessions.insert(
            key.clone(),
            Entry {
                fields: Arc::new(fields),
                expires_at_ms,
                deadline_ms,
                touched_ms,
                standing,
            },
        );
    }

    // Records a use of the session: its new expiry, and that it is no longer on probation.
    fn record_use(&mut self, key: &SessionKey, expires_at_ms: u64) {
        let Some(entry) = self.sessions.get_mut(key) else {
            return;
        };
        if let Standing::Probation(number) = entry.standing {
            self.probation.remove(&number);
            entry.standing = Standing::InUse;
        }
        if entry.expires_at_ms != expires_at_ms {
            // The index's own copy of the key moves to the new deadline.
            let moved = self
                .by_expiry
                .take(&(entry.expires_at_ms, key.clone()))
                .map_or_else(|| key.clone(), |(_, key)| key);
            entry.expires_at_ms = expires_at_ms;
            self.by_expiry.insert((expires_at_ms, moved));
        }
    }
}

fn expires_at(access: &Access, deadline_ms: u64) -> Option<u64> {
    let ttl = u64::try_from(access.ttl_ms(deadline_ms)).ok()?;
    (ttl > 0).then(|| access.now_ms.saturating_add(ttl))
}

// The size gauge follows creates and deletes; sessions that expire unseen leave it a little
// high until the next of those.
fn report_size(sessions: usize) {
    metrics::gauge!(crate::metrics::MEMORY_STORE_SESSIONS).set(sessions as f64);
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, key: &SessionKey, session: &NewSession) -> Result<Created> {
        let access = session.access.for_session(&session.fields);
        let Some(expires_at_ms) = expires_at(&access, session.deadline_ms) else {
            return Err(Error::new(
                ErrorKind::Config,
                "a new session must have a deadline in the future",
            ));
        };
        let now = session.access.now_ms;
        let mut state = self.lock();
        if let Some(existing) = state.sessions.get(key) {
            if existing.expires_at_ms > now {
                return Ok(Created::Exists);
            }
            state.remove(key);
        }
        if state.sessions.len() >= self.inner.max_sessions {
            state.purge_expired(now);
        }
        while state.sessions.len() >= self.inner.max_sessions {
            let Some((victim, why)) = state.evict(self.inner.probation_floor) else {
                break;
            };
            match why {
                Eviction::OldestOnProbation => tracing::debug!(
                    victim = victim.short(),
                    "memory store full: evicted the oldest session not used since its creation"
                ),
                Eviction::IdleLongest => tracing::debug!(
                    victim = victim.short(),
                    "memory store full: evicted the session idle longest"
                ),
            }
        }
        state.insert(key, session, expires_at_ms);
        report_size(state.sessions.len());
        Ok(Created::Created)
    }

    async fn apply(&self, key: &SessionKey, apply: &Apply) -> Result<Applied> {
        let now = apply.access.now_ms;
        let mut state = self.lock();
        let Some(entry) = state.sessions.get_mut(key) else {
            return Ok(Applied::Missing);
        };
        // Timed by the session's own idle timeout, if it was given one.
        let access = &apply.access.for_session(&entry.fields);
        if entry.expires_at_ms <= now || !access.finds_alive(entry.deadline_ms, entry.touched_ms) {
            state.remove(key);
            return Ok(Applied::Missing);
        }
        // All or nothing: a failing delta leaves the session untouched.
        let taken = apply.delta.taken_from(&entry.fields);
        // A pure load leaves the fields alone: they stay shared, not cloned. Fields a request
        // still holds are written as a copy, swapped in only when the delta is accepted: a
        // refused write leaves them shared.
        let counters = if apply.delta.is_empty() {
            Vec::new()
        } else if let Some(fields) = Arc::get_mut(&mut entry.fields) {
            apply.delta.apply(fields)?
        } else {
            let mut fields = Fields::clone(&entry.fields);
            let counters = apply.delta.apply(&mut fields)?;
            entry.fields = Arc::new(fields);
            counters
        };
        let mut new_expiry = entry.expires_at_ms;
        if access.touch_due(entry.touched_ms) {
            // Alive, so before its deadline: the TTL is positive.
            new_expiry = expires_at(access, entry.deadline_ms).unwrap_or(new_expiry);
            entry.touched_ms = Some(now);
            Arc::make_mut(&mut entry.fields).insert(META_TOUCHED.to_owned(), now.to_string());
        }
        let fields = apply.load.then(|| Arc::clone(&entry.fields));
        // A step that succeeds, a plain load included, is a use: it ends the session's probation.
        state.record_use(key, new_expiry);
        Ok(Applied::Done {
            counters,
            fields,
            taken,
        })
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool> {
        let mut state = self.lock();
        let existed = state.remove(key);
        report_size(state.sessions.len());
        Ok(existed)
    }

    async fn peek(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Fields>> {
        // Not a use: listing a user's sessions must not take them off probation.
        let state = self.lock();
        Ok(state
            .sessions
            .get(key)
            .filter(|e| e.expires_at_ms > now_ms && e.deadline_ms > now_ms)
            .map(|e| Fields::clone(&e.fields)))
    }

    async fn index_add(
        &self,
        user: &UserKey,
        key: &SessionKey,
        deadline_ms: u64,
        now_ms: u64,
    ) -> Result<()> {
        let mut state = self.lock();
        state.prune_index(user, now_ms);
        if deadline_ms > now_ms {
            state.users.entry(user.clone()).or_default().insert(
                key.clone(),
                Listed {
                    deadline_ms,
                    written_ms: now_ms,
                },
            );
        }
        Ok(())
    }

    async fn index_remove(&self, user: &UserKey, entry: &IndexEntry, _now_ms: u64) -> Result<()> {
        // The entry alone: pruning the rest would cost the size of the index for each removal.
        self.lock().unindex(user, &entry.key);
        Ok(())
    }

    async fn index_members(&self, user: &UserKey, now_ms: u64) -> Result<Vec<IndexEntry>> {
        let mut state = self.lock();
        state.prune_index(user, now_ms);
        Ok(state
            .users
            .get(user)
            .map(|index| {
                index
                    .iter()
                    .map(|(key, listed)| {
                        IndexEntry::new(key.clone(), listed.deadline_ms, listed.written_ms)
                    })
                    .collect()
            })
            .unwrap_or_default())
    }
}

// The constants, with the type they belong to.
impl MemoryStore {
    /// Default bound on the number of sessions held.
    pub const DEFAULT_MAX_SESSIONS: usize = DEFAULT_MAX_SESSIONS;

    /// Default interval between sweeps of expired sessions.
    pub const DEFAULT_SWEEP_INTERVAL: Duration = DEFAULT_SWEEP_INTERVAL;
}
