//! Time as cloakroom sees it: injectable so that expiry can be tested without sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
///
/// Expiry deadlines are stored as Unix milliseconds, so every process sharing a store must agree
/// on the time to within the precision that matters for sessions (NTP is plenty).
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to: for tests of expiry.
#[derive(Debug, Clone)]
pub struct ManualClock {
    millis: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: SystemTime) -> Self {
        Self {
            millis: Arc::new(AtomicU64::new(unix_millis(start))),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.millis.fetch_add(duration_millis(by), Ordering::SeqCst);
    }

    /// Sets the clock to `to`, forwards or backwards.
    pub fn set(&self, to: SystemTime) {
        self.millis.store(unix_millis(to), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

/// The latest time a clock is read as, in Unix milliseconds: 2^53 − 1 less twice the longest
/// timeout, about the year 287,000. Later readings count as this one, so every time and deadline
/// cloakroom computes stays an integer that a double (Redis's Lua numbers, JSON readers) holds
/// exactly, and both stores agree on what has expired.
pub const LATEST_MILLIS: u64 = (1 << 53) - 1 - 2 * crate::config::MAX_TIMEOUT.as_secs() * 1000;

/// Milliseconds since the Unix epoch; times before it count as 0, times after
/// [`LATEST_MILLIS`] as that.
pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(duration_millis)
        .unwrap_or(0)
        .min(LATEST_MILLIS)
}

/// Whole milliseconds of `d`, saturating.
pub(crate) fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
