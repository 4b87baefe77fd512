//! The storage contract every backend fulfils.
//!
//! A session is a set of named fields whose values are JSON text, plus reserved metadata fields.
//! Each method is one atomic step on one session, so that a networked store can run it as one
//! script on one key in one round trip (or, for a plain load, a plain read), and a cluster never
//! sees a multi-key command.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

pub use crate::delta::Delta;
use crate::error::Result;
use crate::token::SessionKey;
use crate::users::{IndexEntry, UserKey};

/// A session's fields: name to JSON text, metadata included when it comes from a store.
pub type Fields = HashMap<String, String>;

/// Field names starting with this prefix belong to cloakroom; handlers cannot write them.
pub const RESERVED_PREFIX: &str = "__";
/// Reserved field: when the session was created, Unix milliseconds.
pub const META_CREATED: &str = "__created";
/// Reserved field: the absolute deadline after which the session is gone however active it is,
/// Unix milliseconds.
pub const META_DEADLINE: &str = "__deadline";

/// Reserved field: when the session's idle timeout last restarted (its TTL last slid), Unix
/// milliseconds. The session is over once the idle timeout has passed since then.
pub const META_TOUCHED: &str = "__touched";

/// Reserved field: the session's own idle timeout, milliseconds, when it was given one
/// ([`Session::set_lifetime`](crate::Session::set_lifetime)); without it, the configured one
/// ([`Access::idle_ms`]). Stores time the session by it ([`Access::for_session`]).
pub const META_IDLE: &str = "__idle";

/// Reserved field: `browser` when the session's cookie ends with the browser (it has no
/// `Max-Age`); without it, the cookie lasts the session's lifetime.
pub const META_COOKIE: &str = "__cookie";

/// Reserved field: the [`UserKey`] of the user the session belongs to, when one was bound at
/// login.
pub const META_USER: &str = "__user";

/// Largest magnitude of a counter: 2^53 − 1, the integers every JSON reader represents exactly.
pub const MAX_COUNTER: i64 = (1 << 53) - 1;

/// Timing of one access.
///
/// A session is alive while `now_ms` is before both its absolute deadline ([`META_DEADLINE`])
/// and its last touch ([`META_TOUCHED`]) plus `idle_ms`. An access that finds it alive touches
/// it (slides its idle TTL from `now_ms`, never past the deadline) only when `touch_ms` has
/// passed since the last touch ([`Access::touch_due`]): so the session ends between
/// `idle_ms − touch_ms` and `idle_ms` after its last access, never later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The current time, Unix milliseconds.
    pub now_ms: u64,
    /// The idle timeout, milliseconds: the configured one, which a session's own
    /// ([`META_IDLE`]) replaces (see [`Access::for_session`]).
    pub idle_ms: u64,
    /// The touch interval, milliseconds: 0 touches on every access.
    pub touch_ms: u64,
}

impl Access {
    /// This access as it applies to the session whose fields (metadata included) are `fields`:
    /// timed by its own idle timeout ([`META_IDLE`]) when it has a valid one (a canonical time,
    /// [`parse_millis`], of at least 1), else by the configured one.
    pub fn for_session(&self, fields: &Fields) -> Access {
        let own_idle = fields.get(META_IDLE).and_then(|idle| parse_millis(idle));
        match own_idle.filter(|&idle| idle > 0) {
            Some(idle_ms) => Access { idle_ms, ..*self },
            None => *self,
        }
    }

    /// Whether a session last touched at `touched_ms` (`None`: never, as a session written by
    /// an earlier version) is touched by this access.
    pub fn touch_due(&self, touched_ms: Option<u64>) -> bool {
        touched_ms.is_none_or(|touched| self.now_ms.saturating_sub(touched) >= self.touch_ms)
    }

    /// Whether a session with this deadline, last touched at `touched_ms`, is alive at this
    /// access: before its deadline and within the idle timeout of its last touch.
    pub fn finds_alive(&self, deadline_ms: u64, touched_ms: Option<u64>) -> bool {
        self.now_ms < deadline_ms
            && touched_ms.is_none_or(|touched| self.now_ms < touched.saturating_add(self.idle_ms))
    }

    /// Milliseconds the session may live from now: the idle timeout, cut at the deadline.
    /// Zero or less means the session is over.
    pub fn ttl_ms(&self, deadline_ms: u64) -> i64 {
        let left = i128::from(deadline_ms) - i128::from(self.now_ms);
        let ttl = left.min(i128::from(self.idle_ms));
        i64::try_from(ttl).unwrap_or(if ttl > 0 { i64::MAX } else { i64::MIN })
    }
}

/// One atomic step on an existing session: check it is alive, apply `delta`, slide its TTL,
/// and when `load` is set return all its fields as they are afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Apply {
    /// Timing of this access.
    pub access: Access,
    /// The change, valid by construction, with the session-wide bounds the store keeps
    /// (checked against the session as it is, so that they hold for writes to a session the
    /// handle never loaded and for requests racing each other); may be empty (a pure load or
    /// touch).
    pub delta: Delta,
    /// Return every field after the change.
    pub load: bool,
}

/// What [`Store::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Applied {
    /// The session does not exist (never did, expired, or was deleted). Nothing was written.
    Missing,
    /// The changes were applied and the TTL slid.
    Done {
        /// The new value of each increment, in order.
        counters: Vec<i64>,
        /// All fields after the changes, metadata included, when `load` was asked. Shared, so
        /// that a store holding the session in memory (or a near-cache) hands out its copy
        /// without cloning every field; the session clones it only to apply its own writes.
        fields: Option<Arc<Fields>>,
        /// What the delta's takes ([`Delta::take`]) found before the step: each taken field
        /// that held a value, with it ([`Delta::taken_from`]). Empty when the delta takes
        /// nothing.
        taken: Fields,
    },
}

/// What [`Store::create`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Created {
    /// The session was written with its TTL, in one atomic step.
    Created,
    /// A session with that key already exists; nothing was written.
    Exists,
}

/// A session to create: its fields (metadata included) and the timing that sets its TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Every field, [`META_CREATED`] and [`META_DEADLINE`] included.
    pub fields: Fields,
    /// Timing of the creation.
    pub access: Access,
    /// The absolute deadline, Unix milliseconds (also in `fields`).
    pub deadline_ms: u64,
    /// Where the session comes from.
    pub origin: Origin,
}

/// Where a new session comes from: what a bounded store may weigh when it must evict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// A login: nothing says yet that the session will be used.
    #[default]
    Login,
    /// A new id for a session in use (`Session::cycle_id`): its data, and its use, carry over.
    Rotation,
}

/// A session storage backend.
///
/// Every method touches exactly one session and is atomic with respect to other calls on that
/// session. Implementations must not offer whole-keyspace operations in request paths. There are
/// no provided methods: each guarantee is the backend's to keep. A call that fails after the
/// operation may have taken effect (a request sent and not answered in time) returns its error
/// marked [`Error::with_unknown_outcome`](crate::Error::with_unknown_outcome), so callers know a retry could apply it twice.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Inserts the session if no session has `key`; never overwrites. The data and its TTL are
    /// written together: there is no moment when the session exists without an expiry.
    async fn create(&self, key: &SessionKey, session: &NewSession) -> Result<Created>;

    /// Applies `apply` to the session if it exists and is within its deadline; a session past its
    /// absolute deadline is deleted and reported [`Applied::Missing`]. A missing session is never
    /// created by this call. The delta means what [`Delta::apply`] says, and fails as it does
    /// ([`ErrorKind::NotAnInteger`](crate::ErrorKind::NotAnInteger), [`ErrorKind::OutOfRange`](crate::ErrorKind::OutOfRange), [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge)),
    /// writing nothing then; a store that keeps fields as a map simply calls it.
    async fn apply(&self, key: &SessionKey, apply: &Apply) -> Result<Applied>;

    /// Deletes the session; true when it existed.
    async fn delete(&self, key: &SessionKey) -> Result<bool>;

    /// The session's fields, metadata included, without touching it (its idle timeout does not
    /// slide); `None` when it is missing or past its deadline at `now_ms`.
    async fn peek(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Fields>>;

    /// Lists `key` in `user`'s index until `deadline_ms`, written at `now_ms`, and drops the
    /// entries whose deadline has passed at `now_ms`. One step on the index alone.
    async fn index_add(
        &self,
        user: &UserKey,
        key: &SessionKey,
        deadline_ms: u64,
        now_ms: u64,
    ) -> Result<()>;

    /// Drops `entry`, as [`Store::index_members`] listed it, from `user`'s index. One step on
    /// the index alone, costing no more than the removal of one entry whatever the index's size.
    async fn index_remove(&self, user: &UserKey, entry: &IndexEntry, now_ms: u64) -> Result<()>;

    /// The entries of `user`'s index whose deadline has not passed at `now_ms`, each with its
    /// deadline and the `now_ms` its [`Store::index_add`] was given. Some of their sessions may
    /// have ended otherwise (logout, idle timeout), or may not be created yet; callers check.
    async fn index_members(&self, user: &UserKey, now_ms: u64) -> Result<Vec<IndexEntry>>;
}

// A shared store is a store: `SessionLayer::builder` takes a store by value, and an application
// that keeps a handle of its own (for `MemoryStore::len`, say) passes an `Arc` of it.
#[async_trait]
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    async fn create(&self, key: &SessionKey, session: &NewSession) -> Result<Created> {
        (**self).create(key, session).await
    }
    async fn apply(&self, key: &SessionKey, apply: &Apply) -> Result<Applied> {
        (**self).apply(key, apply).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<bool> {
        (**self).delete(key).await
    }
    async fn peek(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Fields>> {
        (**self).peek(key, now_ms).await
    }
    async fn index_add(
        &self,
        user: &UserKey,
        key: &SessionKey,
        deadline_ms: u64,
        now_ms: u64,
    ) -> Result<()> {
        (**self).index_add(user, key, deadline_ms, now_ms).await
    }
    async fn index_remove(&self, user: &UserKey, entry: &IndexEntry, now_ms: u64) -> Result<()> {
        (**self).index_remove(user, entry, now_ms).await
    }
    async fn index_members(&self, user: &UserKey, now_ms: u64) -> Result<Vec<IndexEntry>> {
        (**self).index_members(user, now_ms).await
    }
}

/// Reads a counter as stored: a canonical decimal integer within ±[`MAX_COUNTER`].
///
/// Canonical means no sign but a leading `-`, no leading zeros, no `-0`: exactly the spellings
/// Redis's `HINCRBY` accepts, so both stores agree on what a counter is.
pub fn parse_counter(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    let magnitude = i64::try_from(canonical_magnitude(digits)?).ok()?;
    match (negative, magnitude) {
        (true, 0) => None,
        (true, m) => Some(-m),
        (false, m) => Some(m),
    }
}

// Digits only, no sign, no leading zero (`0` itself aside), at most 2^53 − 1: the one spelling
// of a number both stores and the Redis script agree on.
fn canonical_magnitude(digits: &str) -> Option<u64> {
    let canonical = digits == "0"
        || (!digits.is_empty()
            && digits.len() <= 16
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    (value <= MAX_COUNTER.unsigned_abs()).then_some(value)
}

/// Reads a time stored in a session's metadata (`__created`, `__deadline`) or an index: Unix
/// milliseconds as a canonical decimal integer (digits only, no sign, no leading zero) of at
/// most 2^53 − 1, so that a script computing in double precision reads exactly the same
/// number. Any other spelling (`+1`, ` 1`, `1e12`, `1.5`, `0x10`, `nan`) is not a time.
///
/// The Redis store's script applies the same rule; a session whose deadline does not follow it
/// is corrupt ([`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt)) in every operation.
pub fn parse_millis(text: &str) -> Option<u64> {
    canonical_magnitude(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_canonical_integers() {
        assert_eq!(parse_counter("0"), Some(0));
        assert_eq!(parse_counter("42"), Some(42));
        assert_eq!(parse_counter("-7"), Some(-7));
        assert_eq!(parse_counter("9007199254740991"), Some(MAX_COUNTER));
        for bad in [
            "",
            "-",
            "-0",
            "007",
            "+1",
            "1.0",
            "1e3",
            " 1",
            "\"1\"",
            "9007199254740992",
            "99999999999999999",
        ] {
            assert_eq!(parse_counter(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn times_are_canonical_integers() {
        assert_eq!(parse_millis("0"), Some(0));
        assert_eq!(parse_millis("1764500000000"), Some(1_764_500_000_000));
        assert_eq!(
            parse_millis("9007199254740991"),
            Some(9_007_199_254_740_991)
        );
        for bad in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "01",
            "1.5",
            "1.0",
            "1e12",
            "1.9e12",
            "0x10",
            "nan",
            "inf",
            "9007199254740992",
            "99999999999999999",
            "١٢",
        ] {
            assert_eq!(parse_millis(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ttl_is_cut_at_the_deadline() {
        let a = Access {
            now_ms: 1_000,
            idle_ms: 500,
            touch_ms: 0,
        };
        assert_eq!(a.ttl_ms(10_000), 500);
        assert_eq!(a.ttl_ms(1_200), 200);
        assert_eq!(a.ttl_ms(1_000), 0);
        assert_eq!(a.ttl_ms(900), -100);
    }

    #[test]
    fn a_touch_is_due_once_the_interval_has_passed() {
        let a = Access {
            now_ms: 10_000,
            idle_ms: 3_000,
            touch_ms: 100,
        };
        assert!(a.touch_due(None));
        assert!(a.touch_due(Some(9_900)));
        assert!(!a.touch_due(Some(9_901)));
        // A touch stamped by a clock slightly ahead is not due yet.
        assert!(!a.touch_due(Some(10_050)));
        let every = Access { touch_ms: 0, ..a };
        assert!(every.touch_due(Some(10_000)));
        assert!(every.touch_due(Some(10_050)));
    }

    #[test]
    fn a_session_is_alive_before_its_deadline_and_within_idle_of_its_touch() {
        let a = Access {
            now_ms: 10_000,
            idle_ms: 3_000,
            touch_ms: 100,
        };
        assert!(a.finds_alive(10_001, Some(7_001)));
        assert!(!a.finds_alive(10_000, Some(9_000)));
        assert!(!a.finds_alive(20_000, Some(7_000)));
        assert!(a.finds_alive(20_000, None));
    }
}
