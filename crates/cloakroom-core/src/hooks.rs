//! Lifecycle hooks: the application's callbacks for a session created and a session ended,
//! called in the application's own process when that process creates or ends a session, or sees
//! that one has ended.
//!
//! What a hook sees, exactly (DESIGN.md, "Which endings does a hook see?"): every session this
//! process creates (a login, a new id); every session it ends (logout, a new id, a user's
//! sessions ended through the index, a login past the per-user cap); and a session that ended
//! elsewhere or timed out, once a request comes with its cookie ([`EndReason::Expired`]). A
//! session that times out inside Redis while nobody asks for it is never seen: Redis deletes it
//! on its own, and the only way to hear of that would be keyspace notifications, which managed
//! services restrict (`CONFIG` is blocked) and which a cluster delivers per node, without
//! retries. Evictions by a full [`MemoryStore`](crate::MemoryStore) are counted in the metrics,
//! not passed to hooks: the store has no handle on the application's hooks.

use std::fmt;
use std::sync::Arc;

use crate::store::Origin;
use crate::token::SessionKey;
use crate::users::UserKey;

/// Why a session ended, as hooks receive it and as the `cloakroom_sessions_ended_total` metric
/// labels it (`reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EndReason {
    /// Deleted by [`Session::destroy`](crate::Session::destroy): a logout.
    Logout,
    /// Its id was retired for a new one ([`Session::cycle_id`](crate::Session::cycle_id), or a
    /// login over it); the session's data lives on under the new id.
    Rotation,
    /// A request came with a validly signed cookie whose session was gone: timed out, or ended
    /// by another process.
    Expired,
    /// Ended through its user's index: log out everywhere, "end my other sessions", an
    /// administrator ([`SessionManager::end_sessions_of`](crate::SessionManager::end_sessions_of)
    /// and the like).
    Revoked,
    /// Evicted by a full [`MemoryStore`](crate::MemoryStore) (counted; never passed to hooks).
    Evicted,
    /// Ended by a login of its user past
    /// [`SessionConfig::with_max_sessions_per_user`](crate::SessionConfig::with_max_sessions_per_user).
    Capped,
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EndReason {
    /// The reason's name, as the metric labels it: `logout`, `rotation`, `expired`, `revoked`,
    /// `evicted` or `capped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Rotation => "rotation",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Evicted => "evicted",
            Self::Capped => "capped",
        }
    }
}

/// The session a hook is called for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionEvent {
    /// The session's store key (its [`SessionKey::short`] is the id safe for logs); never the
    /// token, which could act as the cookie.
    pub key: SessionKey,
    /// The user the session was bound to, when this process knew it without a store call (a
    /// session it created or loaded, or ended through the user's index): the [`UserKey`], a hash
    /// of the application's user id, never the id itself.
    pub user: Option<UserKey>,
    /// For a created session: a new login, or a new id for a session in use.
    pub origin: Option<Origin>,
}

type Created = Arc<dyn Fn(&SessionEvent) + Send + Sync>;
type Ended = Arc<dyn Fn(&SessionEvent, EndReason) + Send + Sync>;

/// The application's callbacks, given to
/// [`SessionConfig::with_hooks`](crate::SessionConfig::with_hooks).
///
/// A hook is called after the store has done what it reports, on the task of the request (or
/// of the manager call) that did it, outside the lock on the session's state: it may read and
/// write the session's buffered fields. The request's store steps are serialized, and a hook
/// runs inside one: it must not wait for another step of the same session (`block_on` of one
/// of its `async` calls would never finish). It should be quick; one that must do I/O spawns a
/// task.
///
/// [`EndReason::Expired`] is reported for each request that comes with the token of a session
/// already gone, so it may repeat, and may follow another ending of the same session: a hook
/// that keeps an audit trail deduplicates by key.
///
/// # Examples
///
/// ```
/// use cloakroom_core::{SessionConfig, SessionHooks};
///
/// let hooks = SessionHooks::new()
///     .on_created(|event| eprintln!("session {} signed in", event.key.short()))
///     .on_ended(|event, reason| {
///         eprintln!("session {} ended: {}", event.key.short(), reason.as_str())
///     });
/// let config = SessionConfig::new("an example secret of at least 32 bytes")?.with_hooks(hooks);
/// # Ok::<(), cloakroom_core::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct SessionHooks {
    created: Vec<Created>,
    ended: Vec<Ended>,
}

impl fmt::Debug for SessionHooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHooks")
            .field("created", &self.created.len())
            .field("ended", &self.ended.len())
            .finish()
    }
}

impl SessionHooks {
    /// No hooks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a callback for each session created.
    pub fn on_created(mut self, hook: impl Fn(&SessionEvent) + Send + Sync + 'static) -> Self {
        self.created.push(Arc::new(hook));
        self
    }

    /// Adds a callback for each session ended, with the reason.
    pub fn on_ended(
        mut self,
        hook: impl Fn(&SessionEvent, EndReason) + Send + Sync + 'static,
    ) -> Self {
        self.ended.push(Arc::new(hook));
        self
    }

    // Reports a session created: counted, then passed to the hooks.
    pub(crate) fn created(&self, key: &SessionKey, user: Option<&UserKey>, origin: Origin) {
        crate::metrics::session_created(origin);
        if self.created.is_empty() {
            return;
        }
        let event = SessionEvent {
            key: key.clone(),
            user: user.cloned(),
            origin: Some(origin),
        };
        for hook in &self.created {
            hook(&event);
        }
    }

    // Reports a session ended: counted, then passed to the hooks.
    pub(crate) fn ended(&self, key: &SessionKey, user: Option<&UserKey>, reason: EndReason) {
        crate::metrics::sessions_ended(reason, 1);
        if self.ended.is_empty() {
            return;
        }
        let event = SessionEvent {
            key: key.clone(),
            user: user.cloned(),
            origin: None,
        };
        for hook in &self.ended {
            hook(&event, reason);
        }
    }
}

/// A session ending the request saw while it held the session's lock, reported once the lock is
/// released (a hook may call into the session).
#[derive(Debug, Clone)]
pub(crate) struct Ending {
    pub(crate) key: SessionKey,
    pub(crate) user: Option<UserKey>,
    pub(crate) reason: EndReason,
}
