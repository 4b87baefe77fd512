//! The per-user index: which sessions belong to a user, so that they can be listed and ended
//! together ("log out everywhere", "end my other sessions", a disabled account).
//!
//! A session is bound to a user at login ([`Session::set_user`](crate::Session::set_user)).
//! The store then keeps, beside the sessions, one index per user: session keys with their
//! absolute deadlines. Each index step touches the index alone, and each session step the
//! session alone, so a cluster never sees a multi-key command. The index is written before the
//! session is created, so there is never a session of a user that the index does not list. An
//! entry is dropped when its session is ended through the index, at its deadline, or when it
//! is met without a session more than [`IndexEntry::GRACE`](crate::IndexEntry::GRACE) after it was written (a logout deletes
//! the session alone); a younger entry without a session may belong to a login whose session
//! is being created, and is kept.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::store::Fields;
use crate::token::SessionKey;

pub(crate) const INDEX_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// The name of a user's index in the store: base64url of SHA-256 of the application's user id
/// (43 characters), so that ids of any length and alphabet make one safe key.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserKey(String);

impl UserKey {
    /// The key of the user the application calls `user_id`.
    pub fn of(user_id: &str) -> Self {
        Self(URL_SAFE_NO_PAD.encode(Sha256::digest(user_id.as_bytes())))
    }

    /// A key as stored in a session's metadata, if it is one.
    pub fn from_stored(text: &str) -> Option<Self> {
        is_digest_text(text).then(|| Self(text.to_owned()))
    }

    /// The key's text, without any store prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserKey({}…)", self.0.get(..8).unwrap_or(&self.0))
    }
}

/// Whether `text` is a SHA-256 digest in canonical unpadded base64url: 43 characters of the
/// URL-safe alphabet whose last one carries no stray bits.
pub(crate) fn is_digest_text(text: &str) -> bool {
    text.len() == 43
        && URL_SAFE_NO_PAD
            .decode(text)
            .is_ok_and(|bytes| bytes.len() == 32 && URL_SAFE_NO_PAD.encode(&bytes) == text)
}

/// One entry of a user's index, as [`Store::index_members`](crate::Store::index_members)
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub struct IndexEntry {
    /// The session the entry lists.
    pub key: SessionKey,
    /// The session's absolute deadline, Unix milliseconds: the entry is dropped then.
    pub deadline_ms: u64,
    /// When the entry was written, Unix milliseconds, as the store's caller gave it. The grace
    /// given to an entry whose session is not there yet runs from here: a rotation lists its
    /// new session with the old deadline, so the deadline says nothing about the entry's age.
    pub written_ms: u64,
}

impl IndexEntry {
    /// An entry for `key`, listed until `deadline_ms`, written at `written_ms`.
    pub fn new(key: SessionKey, deadline_ms: u64, written_ms: u64) -> Self {
        Self {
            key,
            deadline_ms,
            written_ms,
        }
    }

    /// Whether the entry was written more than [`IndexEntry::GRACE`](crate::IndexEntry::GRACE) before `now_ms`, so that its
    /// session, if absent, is gone rather than on its way.
    pub fn is_past_grace(&self, now_ms: u64) -> bool {
        let grace = crate::clock::duration_millis(INDEX_GRACE);
        now_ms >= self.written_ms.saturating_add(grace)
    }
}

/// One live session of a user, as [`SessionManager::sessions_of`](crate::SessionManager::sessions_of)
/// lists it (reading it does not extend it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserSession {
    /// The session's store key: what
    /// [`SessionManager::end_session_of`](crate::SessionManager::end_session_of) takes. It names
    /// the session without being able to act as its cookie.
    pub key: SessionKey,
    /// When the session started, Unix milliseconds.
    pub created_ms: u64,
    /// When it ends however active it is, Unix milliseconds.
    pub deadline_ms: u64,
    /// When it was last used, Unix milliseconds, to within the touch interval
    /// ([`SessionConfig::with_touch_interval`](crate::SessionConfig::with_touch_interval)): the
    /// last time a request slid its idle timeout. Its creation for a session written by a
    /// version that did not record it.
    pub last_seen_ms: u64,
    /// When it ends if unused until then, Unix milliseconds: its idle timeout after it was last
    /// seen, never past its deadline.
    pub idle_deadline_ms: u64,
    /// Its fields, metadata not included (for example a device name the app stored at login).
    pub fields: Fields,
}

// The constants, with the type they belong to.
impl IndexEntry {
    /// How long an index entry whose session cannot be found is kept after it was written: its
    /// session may still be on its way to the store (a login writes the entry first).
    pub const GRACE: std::time::Duration = INDEX_GRACE;
}
