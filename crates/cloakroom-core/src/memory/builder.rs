//! Building a memory store, and the background task that sweeps it.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::{
    DEFAULT_MAX_SESSIONS, DEFAULT_SWEEP_INTERVAL, Inner, MemoryStore, PROBATION_SHARE, State,
};
use crate::clock::{Clock, SystemClock};

/// Builds a [`MemoryStore`].
#[derive(Debug)]
pub struct MemoryStoreBuilder {
    max_sessions: usize,
    sweep_interval: Option<Duration>,
    clock: Arc<dyn Clock>,
}

impl MemoryStoreBuilder {
    pub(super) fn new() -> Self {
        Self {
            max_sessions: DEFAULT_MAX_SESSIONS,
            sweep_interval: Some(DEFAULT_SWEEP_INTERVAL),
            clock: Arc::new(SystemClock),
        }
    }

    /// The most sessions held at once (at least 1).
    pub fn with_max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max.max(1);
        self
    }

    /// How often the background task reclaims expired sessions; `None` disables the task
    /// (creates and accesses still reclaim).
    pub fn with_sweep_interval(mut self, interval: Option<Duration>) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// The clock the sweeper reads; operations use the time their caller passes.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the store; starts the sweeper when called inside a Tokio runtime.
    pub fn build(self) -> MemoryStore {
        let store = MemoryStore {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                max_sessions: self.max_sessions,
                probation_floor: (self.max_sessions / PROBATION_SHARE).max(1),
                clock: self.clock,
            }),
        };
        if let (Some(interval), Ok(runtime)) =
            (self.sweep_interval, tokio::runtime::Handle::try_current())
        {
            runtime.spawn(sweep_until_dropped(Arc::downgrade(&store.inner), interval));
        }
        store
    }
}

// Holds only a weak reference, so the task ends once the last clone of the store is gone.
async fn sweep_until_dropped(inner: Weak<Inner>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let swept = MemoryStore { inner }.sweep_expired();
        if swept > 0 {
            tracing::debug!(swept, "memory store reclaimed expired sessions");
        }
    }
}
