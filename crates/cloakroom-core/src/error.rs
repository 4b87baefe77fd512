//! The one error type of cloakroom, with questions to ask of it.

use std::fmt;

/// What went wrong, in a form a caller can branch on.
///
/// The enum is `#[non_exhaustive]`: match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The session store could not be reached in time (connection refused, dropped, timed out).
    /// Retrying later may succeed; an HTTP layer answers 503.
    Unavailable,
    /// The session store answered with an error that is not about reachability.
    Backend,
    /// The store holds data cloakroom did not write or cannot read (wrong type, bad UTF-8, ...).
    Corrupt,
    /// A value could not be encoded as JSON.
    Encode,
    /// A stored field value could not be decoded into the requested type.
    Decode,
    /// The field name is empty or starts with the reserved prefix `__`.
    InvalidFieldName,
    /// An increment was asked of a field that does not hold an integer.
    NotAnInteger,
    /// An increment would leave the range of integers JSON readers agree on, ±(2^53 − 1).
    OutOfRange,
    /// A write was asked of a request that has no session (none was started and no valid cookie
    /// was presented).
    NoSession,
    /// The configuration is contradictory or too weak (for example a short secret key).
    Config,
    /// The operating system's random number generator failed.
    Random,
    /// The call needs a setting that is off (for example a header token without
    /// [`SessionConfig::with_header_sessions`](crate::SessionConfig::with_header_sessions)):
    /// a mistake in the application, answered with a 500.
    Unsupported,
    /// A lifetime asked of a session is past the configured maxima, or too short for the touch
    /// interval ([`Session::set_lifetime`](crate::Session::set_lifetime)).
    InvalidLifetime,
    /// A field name, a value, or the session as a whole would exceed a configured limit
    /// ([`SessionLimits`](crate::SessionLimits)); nothing was written. An HTTP layer answers 413.
    TooLarge,
    /// A login was refused: its user has the most sessions allowed
    /// ([`SessionConfig::with_max_sessions_per_user`](crate::SessionConfig::with_max_sessions_per_user)
    /// with [`CapPolicy::RefuseNew`](crate::CapPolicy::RefuseNew)), or its session lost to
    /// logins of the same user made at the same moment. Nothing of the login is kept. An HTTP
    /// layer answers 409.
    TooManySessions,
}

/// The error type of every fallible cloakroom operation.
///
/// Ask it questions with [`Error::kind`] and the `is_*` methods; the underlying cause, when there
/// is one, is kept in [`std::error::Error::source`]. Its `Display` text may name a backend's
/// message: log it, never send it to a client.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    // The operation may have taken effect although it failed (see `is_outcome_unknown`).
    outcome_unknown: bool,
}

impl Error {
    /// An error of `kind` with a message for logs.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
            outcome_unknown: false,
        }
    }

    /// An error of `kind` caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: message.into(),
            source: Some(Box::new(source)),
            outcome_unknown: false,
        }
    }

    /// The same error, saying that its operation may have taken effect: a store implementation
    /// marks so a command that was sent and not answered in time, or whose connection dropped
    /// after it was sent.
    pub fn with_unknown_outcome(mut self) -> Self {
        self.outcome_unknown = true;
        self
    }

    /// True when the failed operation may nevertheless have taken effect in the store (a
    /// timed-out or cut-off command may still have run): retrying a write then may apply it
    /// twice, an increment for example, and a logout that failed this way may or may not have
    /// deleted the session. False when the store is known not to have run it (the connection
    /// was refused, the command was rejected).
    pub fn is_outcome_unknown(&self) -> bool {
        self.outcome_unknown
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// True when the store could not be reached: the request may succeed later.
    pub fn is_unavailable(&self) -> bool {
        self.kind == ErrorKind::Unavailable
    }

    /// True when the failure lies with the storage backend (unreachable, erroring or holding data
    /// cloakroom cannot read) rather than with the caller.
    pub fn is_storage(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Unavailable | ErrorKind::Backend | ErrorKind::Corrupt
        )
    }

    /// True when the caller asked for something that cannot be done (bad field name, not an
    /// integer, no session, ...): fixing the call fixes the error.
    pub fn is_usage(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Encode
                | ErrorKind::Decode
                | ErrorKind::InvalidFieldName
                | ErrorKind::NotAnInteger
                | ErrorKind::OutOfRange
                | ErrorKind::NoSession
                | ErrorKind::InvalidLifetime
                | ErrorKind::Unsupported
                | ErrorKind::TooLarge
        )
    }
}

impl Error {
    /// The HTTP status a failed request is answered with: 503 for anything wrong with the store
    /// (unreachable, erroring, holding unreadable data, refusing our credentials after a
    /// reconnect), 413 for data past the configured limits (most often a client's form field
    /// stored in the session), 500 for a mistake in the handler's own use of the session.
    pub(crate) fn http_status(&self) -> u16 {
        if self.is_storage() || self.kind == ErrorKind::Config {
            503
        } else if self.kind == ErrorKind::TooLarge {
            413
        } else if self.kind == ErrorKind::TooManySessions {
            409
        } else {
            500
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if self.outcome_unknown {
            d.field("outcome_unknown", &true);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

// The message only: the cause is reported through `source()`, so that error reporters that walk
// the chain (anyhow's `{:#}`, tracing's error fields) do not print it twice.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
