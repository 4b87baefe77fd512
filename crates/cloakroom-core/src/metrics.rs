//! What cloakroom counts, for dashboards and alerts.
//!
//! Everything is reported through the [`metrics`](https://docs.rs/metrics) facade, so the
//! application picks the exporter (Prometheus, StatsD, OpenTelemetry, ...) and installs it; with
//! none installed the calls cost next to nothing. Every name starts with `cloakroom_`; the
//! constants below are the names, and each says its labels.
//!
//! The counters of hostile or broken input are also kept in [`SessionMetrics`], readable without
//! an exporter: a spike in forged cookies is someone guessing or replaying tampered cookies; a
//! spike in unknown tokens is stolen cookies of ended sessions being replayed (or a store that
//! lost its data); decode errors are a deployment that changed a field's type. Read them with
//! [`SessionManager::metrics`](crate::SessionManager::metrics). Nothing here records a token or
//! a key: logs name a session only by a short prefix of its key's hash.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::hooks::EndReason;

/// Counter: sessions created. Label `origin`: `login` (a new session) or `rotation` (a new id
/// for a session in use, [`Session::cycle_id`](crate::Session::cycle_id); its old id is counted
/// as ended with reason `rotation`). Created minus ended is not the live sessions: an idle
/// expiry inside Redis is counted only if a request comes back for it, and then each time one
/// does (see [`SESSIONS_ENDED`]); count live sessions with `cloakroom-admin stats`.
pub const SESSIONS_CREATED: &str = "cloakroom_sessions_created_total";

/// Counter: sessions ended, as this process saw them end. Label `reason`
/// ([`EndReason::as_str`](crate::EndReason::as_str)):
/// * `logout`: deleted by [`Session::destroy`](crate::Session::destroy);
/// * `rotation`: an id retired by a new one (`cycle_id`, or a login over an existing session);
/// * `expired`: a request came with a validly signed token whose session was gone (its idle
///   timeout or deadline had passed, or it had ended elsewhere); counted for every such request,
///   so a client that keeps sending a dead token counts again each time, and a session ended
///   with another reason may count here too; a session that expires inside the store without a
///   request for it is not seen;
/// * `revoked`: ended through its user's index
///   ([`SessionManager::end_sessions_of`](crate::SessionManager::end_sessions_of) and the like);
/// * `evicted`: dropped by a full [`MemoryStore`](crate::MemoryStore);
/// * `capped`: ended by a login of its user past
///   [`SessionConfig::with_max_sessions_per_user`](crate::SessionConfig::with_max_sessions_per_user).
pub const SESSIONS_ENDED: &str = "cloakroom_sessions_ended_total";

/// Counter: calls to the session store. Label `operation`: `create`, `apply`, `delete`, `peek`,
/// `index_add`, `index_remove`, `index_members`.
pub const STORE_CALLS: &str = "cloakroom_store_calls_total";

/// Histogram: how long each store call took, seconds, failed ones included. Label `operation`.
pub const STORE_CALL_SECONDS: &str = "cloakroom_store_call_duration_seconds";

/// Counter: store calls that failed. Labels `operation`, and `kind`: `timeout` (its outcome
/// is unknown: sent and not answered in time, or its connection dropped after sending; it may
/// have run), `unavailable` (the store could not be reached, nothing ran),
/// `corrupt` (a record cloakroom cannot read), `backend` (any other error of the store), or
/// `refused` (the store refused the change: a bound, a field that is not a counter).
pub const STORE_ERRORS: &str = "cloakroom_store_errors_total";

/// Counter: deletes whose replica acknowledgements did not all arrive in time (the Redis
/// store's `ReplicaAcks`): a failover then could bring the session back.
pub const REPLICA_ACKS_UNCONFIRMED: &str = "cloakroom_replica_acks_unconfirmed_total";

/// Counter: session cookies (or session header values) refused before any store access.
/// Label `reason`: `forged` (not one of our signed values), `oversized` (longer than any value
/// cloakroom issues) or `ambiguous` (more than one value in one request).
pub const COOKIES_REJECTED: &str = "cloakroom_cookies_rejected_total";

/// Counter: session fields that did not decode to the type a handler asked for.
pub const DECODE_ERRORS: &str = "cloakroom_decode_errors_total";

/// Counter: session records the store could not read as cloakroom writes them.
pub const CORRUPT_RECORDS: &str = "cloakroom_corrupt_records_total";

/// Gauge: sessions held by the [`MemoryStore`](crate::MemoryStore).
pub const MEMORY_STORE_SESSIONS: &str = "cloakroom_memory_store_sessions";

/// Counter: sessions a full [`MemoryStore`](crate::MemoryStore) evicted.
pub const MEMORY_STORE_EVICTIONS: &str = "cloakroom_memory_store_evictions_total";

/// Every name above: for an application that describes them to its exporter, and for tests.
pub const ALL: [&str; 11] = [
    SESSIONS_CREATED,
    SESSIONS_ENDED,
    STORE_CALLS,
    STORE_CALL_SECONDS,
    STORE_ERRORS,
    REPLICA_ACKS_UNCONFIRMED,
    COOKIES_REJECTED,
    DECODE_ERRORS,
    CORRUPT_RECORDS,
    MEMORY_STORE_SESSIONS,
    MEMORY_STORE_EVICTIONS,
];

/// Counts the end of `count` sessions for `reason`.
pub(crate) fn sessions_ended(reason: EndReason, count: u64) {
    if count > 0 {
        metrics::counter!(SESSIONS_ENDED, "reason" => reason.as_str()).increment(count);
    }
}

/// Counts a session created, by a login or by a rotation.
pub(crate) fn session_created(origin: crate::store::Origin) {
    let origin = match origin {
        crate::store::Origin::Rotation => "rotation",
        crate::store::Origin::Login => "login",
    };
    metrics::counter!(SESSIONS_CREATED, "origin" => origin).increment(1);
}

/// Why a session cookie was refused before any store access, as [`COOKIES_REJECTED`] labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    Forged,
    Oversized,
    Ambiguous,
}

/// What requests brought that the session layer refused or could not use.
#[derive(Debug, Default)]
pub struct SessionMetrics {
    forged_cookies: AtomicU64,
    oversized_cookies: AtomicU64,
    unknown_tokens: AtomicU64,
    decode_errors: AtomicU64,
    corrupt_records: AtomicU64,
}

impl SessionMetrics {
    /// Session cookies that were not one validly signed token (garbled, tampered, signed by an
    /// unknown or retired key, or sent twice): refused before any store access.
    pub fn forged_cookies(&self) -> u64 {
        self.forged_cookies.load(Ordering::Relaxed)
    }

    /// Of the forged cookies, those longer than any cookie cloakroom issues.
    pub fn oversized_cookies(&self) -> u64 {
        self.oversized_cookies.load(Ordering::Relaxed)
    }

    /// Validly signed tokens whose session does not exist: expired, logged out, rotated away,
    /// or replayed after any of those.
    pub fn unknown_tokens(&self) -> u64 {
        self.unknown_tokens.load(Ordering::Relaxed)
    }

    /// Session fields that did not decode to the type a handler asked for.
    pub fn decode_errors(&self) -> u64 {
        self.decode_errors.load(Ordering::Relaxed)
    }

    /// Session records the store could not read as cloakroom writes them (a key of another
    /// type, a hash without a valid deadline or metadata): someone or something other than
    /// cloakroom wrote there, and the request went on without the session. Increments of a
    /// field that does not hold an integer (`NotAnInteger`) count here too, although that may
    /// be the application's own mistake of storing text where it counts.
    pub fn corrupt_records(&self) -> u64 {
        self.corrupt_records.load(Ordering::Relaxed)
    }

    pub(crate) fn corrupt_record(&self) {
        self.corrupt_records.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(CORRUPT_RECORDS).increment(1);
    }

    pub(crate) fn forged_cookie(&self, why: Rejection) {
        self.forged_cookies.fetch_add(1, Ordering::Relaxed);
        if why == Rejection::Oversized {
            self.oversized_cookies.fetch_add(1, Ordering::Relaxed);
        }
        let reason = match why {
            Rejection::Forged => "forged",
            Rejection::Oversized => "oversized",
            Rejection::Ambiguous => "ambiguous",
        };
        metrics::counter!(COOKIES_REJECTED, "reason" => reason).increment(1);
    }

    // A validly signed token whose session is gone: reported as an ending (`EndReason::Expired`)
    // by the caller, once the session's lock is released.
    pub(crate) fn unknown_token(&self) {
        self.unknown_tokens.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn decode_error(&self) {
        self.decode_errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(DECODE_ERRORS).increment(1);
    }
}
