//! The near-cache: local copies of recently loaded sessions, kept correct by Redis's own key
//! tracking, so that a request that only reads its session costs no round trip.
//!
//! * `copies`: the copies and the rules for serving, filling and dropping them (no I/O).
//! * `tracking`: the invalidation channel, one connection per primary with
//!   `CLIENT TRACKING ON BCAST`, and the liveness check that bounds how stale a copy can be.
//!
//! The contract (docs/DESIGN.md, "The near-cache"): a change made anywhere (a logout, a write on
//! another instance) stops being hidden by a copy within the lease at worst, within the time an
//! invalidation takes to arrive normally; increments and every other write always go to Redis,
//! so counters stay exact; a copy is never served past the session's idle or absolute deadline,
//! and a due touch goes to Redis.

mod copies;
mod tracking;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cloakroom_core::store::{Access, Fields};

pub use self::copies::NearCacheStats;
use self::copies::{Copies, Ticket};
pub(crate) use self::tracking::{Tracking, start};

/// Settings of the near-cache ([`RedisStoreBuilder::with_near_cache`](crate::RedisStoreBuilder::with_near_cache)).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
///
/// use cloakroom_redis::{NearCache, RedisStore};
///
/// # async fn run() -> cloakroom_core::Result<()> {
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .with_near_cache(NearCache::new().with_capacity(50_000).with_lease(Duration::from_millis(500)))
///     .connect()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearCache {
    pub(crate) capacity: usize,
    pub(crate) max_bytes: usize,
    pub(crate) lease: Duration,
}

impl Default for NearCache {
    fn default() -> Self {
        Self::new()
    }
}

impl NearCache {
    /// At most [`NearCache::DEFAULT_CAPACITY`] copies, with a lease of
    /// [`NearCache::DEFAULT_LEASE`].
    pub fn new() -> Self {
        Self {
            capacity: Self::DEFAULT_CAPACITY,
            max_bytes: Self::DEFAULT_MAX_BYTES,
            lease: Self::DEFAULT_LEASE,
        }
    }

    /// The most sessions copied at once (at least 1); the least recently used go first.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The most bytes of field names and values all copies may hold (with an allowance of 64
    /// bytes per field; at least [`NearCache::MIN_MAX_BYTES`]); the least recently used go
    /// first, and a session heavier than a sixteenth of it is never copied.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes.max(Self::MIN_MAX_BYTES);
        self
    }

    /// How long copies may be served after the invalidation channel was last confirmed alive
    /// (at least 100 ms): the worst case for a change made elsewhere to be seen. The channel is
    /// checked four times per lease.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Self::MIN_LEASE);
        self
    }

    /// Default capacity: ten thousand sessions.
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// Default byte budget: 64 MiB.
    pub const DEFAULT_MAX_BYTES: usize = 64 << 20;

    /// Smallest byte budget accepted: 64 KiB, so that a session of a few kilobytes is copied.
    pub const MIN_MAX_BYTES: usize = 64 << 10;

    /// Default lease: one second.
    pub const DEFAULT_LEASE: Duration = Duration::from_secs(1);

    /// Shortest lease accepted.
    pub const MIN_LEASE: Duration = Duration::from_millis(100);
}

/// A load in flight whose reply may fill a copy. Dropped without [`Fill::finish`] (the request
/// was cancelled), it withdraws its note, so that notes never pile up.
pub(crate) struct Fill<'a> {
    shared: &'a Shared,
    ticket: Option<Ticket>,
}

impl Fill<'_> {
    /// Records the load's reply: the session's fields, or `None` when it was missing or the
    /// load failed.
    pub(crate) fn finish(mut self, fields: Option<&Arc<Fields>>) {
        if let Some(ticket) = self.ticket.take() {
            self.shared.lock().finish_fill(ticket, fields);
        }
    }
}

impl Drop for Fill<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.shared.lock().withdraw(ticket);
        }
    }
}

/// The copies, shared by the store's clones, the push handlers and the liveness task.
pub(crate) struct Shared {
    copies: Mutex<Copies>,
}

impl Shared {
    pub(crate) fn new(settings: NearCache) -> Arc<Self> {
        Arc::new(Self {
            copies: Mutex::new(Copies::new(
                settings.capacity,
                settings.max_bytes,
                settings.lease,
            )),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Copies> {
        // Every update leaves the copies consistent; a panic elsewhere cannot corrupt them.
        self.copies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The shared copy of the session at `redis_key` for a plain load, when one may be served.
    pub(crate) fn serve(&self, redis_key: &str, access: &Access) -> Option<Arc<Fields>> {
        self.lock().serve(redis_key, access, Instant::now())
    }

    /// Notes a plain load of `redis_key` about to be sent; its reply may fill the copy.
    pub(crate) fn begin_fill(&self, redis_key: &str) -> Fill<'_> {
        Fill {
            shared: self,
            ticket: Some(self.lock().begin_fill(redis_key)),
        }
    }

    /// Before and after a write of this process to `redis_key`: its copy goes, and no load in
    /// flight may fill it. (Own writes drop the copy rather than patch it: two writes of this
    /// process may reach Redis in one order and come back in the other.)
    pub(crate) fn invalidate(&self, redis_key: &str) {
        self.lock().invalidate(redis_key);
    }

    pub(crate) fn stats(&self) -> NearCacheStats {
        let copies = self.lock();
        NearCacheStats {
            copies: copies.len(),
            bytes: copies.bytes(),
            ..copies.stats
        }
    }
}
