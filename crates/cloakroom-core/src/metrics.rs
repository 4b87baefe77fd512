//! Counters of hostile or broken input, for dashboards and alerts.
//!
//! A spike in forged cookies is someone guessing or replaying tampered cookies; a spike in
//! unknown tokens is stolen cookies of ended sessions being replayed (or a store that lost its
//! data); decode errors are a deployment that changed a field's type. The counters only ever
//! rise; read them with [`SessionManager::metrics`](crate::SessionManager::metrics) (or
//! `SessionLayer::manager().metrics()`) and export them to whatever the application uses.
//! Nothing here records a token: logs name a session only by a short prefix of its key's hash.

use std::sync::atomic::{AtomicU64, Ordering};

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
    }

    pub(crate) fn forged_cookie(&self, oversized: bool) {
        self.forged_cookies.fetch_add(1, Ordering::Relaxed);
        if oversized {
            self.oversized_cookies.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn unknown_token(&self) {
        self.unknown_tokens.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn decode_error(&self) {
        self.decode_errors.fetch_add(1, Ordering::Relaxed);
    }
}
