//! The local copies of sessions and the rules that keep them correct, without any I/O: what may
//! be served, what a reply may fill, what an invalidation drops.
//!
//! A copy is only ever filled from the reply to a plain load, and only if nothing that could
//! have changed the session happened between the moment the load was sent and the moment its
//! reply is recorded: no invalidation of its key, no write of this process to it, no loss of the
//! invalidation channel. That is checked with a ticket: [`Copies::begin_fill`] notes the load
//! before it is sent; any of those events withdraws the note; [`Copies::finish_fill`] keeps the
//! reply only if its note is still there. An invalidation that overtakes the reply it
//! invalidates (they come on different connections) therefore withdraws the note, and the reply
//! is served to its own request but never cached.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloakroom_core::store::{Access, Fields, META_DEADLINE, META_TOUCHED, parse_millis};

/// A load whose reply may fill a copy, if nothing intervenes.
#[derive(Debug)]
pub(crate) struct Ticket {
    key: String,
    id: u64,
}

struct Copy {
    // Shared with the loads that filled and were served it: a hit hands out the pointer, and a
    // request clones the fields only to apply its own writes.
    fields: Arc<Fields>,
    // What the copy weighs against the byte budget.
    bytes: usize,
    deadline_ms: u64,
    touched_ms: Option<u64>,
    // When it was last served or filled, by the copies' own counter: what eviction looks at.
    used: u64,
}

/// Hits and misses of the near-cache, since the store was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearCacheStats {
    /// Loads answered from a local copy, with no round trip.
    pub hits: u64,
    /// Loads that went to Redis: no copy, a touch due, or the channel not confirmed alive.
    pub misses: u64,
    /// Copies dropped by an invalidation from Redis or a write of this process.
    pub invalidations: u64,
    /// Times every copy was dropped: a lost or reconnected invalidation channel, a flush.
    pub resets: u64,
    /// Copies held now.
    pub copies: usize,
    /// Bytes of names and values the copies hold now (with a per-field allowance).
    pub bytes: usize,
}

pub(crate) struct Copies {
    copies: HashMap<String, Copy>,
    // The loads in flight whose reply may fill a copy: key to ticket id.
    filling: HashMap<String, u64>,
    next_id: u64,
    clock: u64,
    capacity: usize,
    // The most bytes of names and values all copies may hold, and what they hold now.
    max_bytes: usize,
    bytes: usize,
    lease: Duration,
    // The invalidation channel is known to have delivered every invalidation Redis produced
    // up to this moment (see `tracking`). `None`: not confirmed since it was last lost.
    confirmed_until: Option<Instant>,
    // Counts the losses of the channel: a confirmation measured across a loss is void.
    losses: u64,
    pub(crate) stats: NearCacheStats,
}

impl Copies {
    pub(crate) fn new(capacity: usize, max_bytes: usize, lease: Duration) -> Self {
        Self {
            copies: HashMap::new(),
            filling: HashMap::new(),
            next_id: 0,
            clock: 0,
            capacity: capacity.max(1),
            max_bytes,
            bytes: 0,
            lease,
            confirmed_until: None,
            losses: 0,
            stats: NearCacheStats::default(),
        }
    }

    // Copies are served only while the channel was confirmed alive within the lease.
    fn live(&self, now: Instant) -> bool {
        self.confirmed_until
            .is_some_and(|at| now.saturating_duration_since(at) < self.lease)
    }

    /// The copy of `key` for a plain load at `access`, if one may be served: the channel is
    /// confirmed alive within the lease, the session is alive at `access` by its own deadline
    /// and last touch, and no touch is due (a due touch goes to Redis, so that a read-mostly
    /// session costs one write per touch interval).
    pub(crate) fn serve(
        &mut self,
        key: &str,
        access: &Access,
        now: Instant,
    ) -> Option<Arc<Fields>> {
        if !self.live(now) {
            self.stats.misses += 1;
            return None;
        }
        self.clock += 1;
        let clock = self.clock;
        let served = match self.copies.get_mut(key) {
            Some(copy)
                if access
                    .for_session(&copy.fields)
                    .finds_alive(copy.deadline_ms, copy.touched_ms) =>
            {
                if access.touch_due(copy.touched_ms) {
                    None
                } else {
                    copy.used = clock;
                    Some(Arc::clone(&copy.fields))
                }
            }
            // Over: Redis decides (and deletes it); the copy goes.
            Some(_) => {
                self.remove(key);
                None
            }
            None => None,
        };
        match served {
            Some(_) => self.stats.hits += 1,
            None => self.stats.misses += 1,
        }
        served
    }

    /// Notes a plain load of `key` about to be sent.
    pub(crate) fn begin_fill(&mut self, key: &str) -> Ticket {
        self.next_id += 1;
        self.filling.insert(key.to_owned(), self.next_id);
        Ticket {
            key: key.to_owned(),
            id: self.next_id,
        }
    }

    /// Records the reply of the load `ticket` noted: kept as the copy only if nothing withdrew
    /// the note meanwhile. `None`: the session was missing, or the load failed.
    pub(crate) fn finish_fill(&mut self, ticket: Ticket, fields: Option<&Arc<Fields>>) {
        if self.filling.get(&ticket.key) != Some(&ticket.id) {
            return;
        }
        self.filling.remove(&ticket.key);
        let Some(fields) = fields else { return };
        let Some(deadline_ms) = fields.get(META_DEADLINE).and_then(|d| parse_millis(d)) else {
            return;
        };
        // Names and values, and about what a map entry costs beside them.
        let bytes: usize = fields.iter().map(|(n, v)| n.len() + v.len() + 64).sum();
        // One large session must not push out many small ones: it is read from Redis instead.
        if bytes > self.max_bytes / 16 {
            return;
        }
        self.remove(&ticket.key);
        while !self.copies.is_empty()
            && (self.copies.len() >= self.capacity || self.bytes + bytes > self.max_bytes)
        {
            self.evict_least_used();
        }
        self.clock += 1;
        self.bytes += bytes;
        self.copies.insert(
            ticket.key,
            Copy {
                fields: Arc::clone(fields),
                bytes,
                deadline_ms,
                touched_ms: fields.get(META_TOUCHED).and_then(|t| parse_millis(t)),
                used: self.clock,
            },
        );
    }

    fn remove(&mut self, key: &str) -> bool {
        match self.copies.remove(key) {
            Some(copy) => {
                self.bytes -= copy.bytes;
                true
            }
            None => false,
        }
    }

    /// Forgets the load `ticket` noted, whose reply will never be recorded (its request was
    /// cancelled).
    pub(crate) fn withdraw(&mut self, ticket: Ticket) {
        if self.filling.get(&ticket.key) == Some(&ticket.id) {
            self.filling.remove(&ticket.key);
        }
    }

    /// Drops the copy of `key` and withdraws any fill in flight: Redis said it changed, or this
    /// process is writing it.
    pub(crate) fn invalidate(&mut self, key: &str) {
        let dropped = self.remove(key);
        self.filling.remove(key);
        if dropped {
            self.stats.invalidations += 1;
        }
    }

    /// Drops every copy and withdraws every fill in flight; with `lost`, copies are not served
    /// again until the channel is confirmed alive anew.
    pub(crate) fn reset(&mut self, lost: bool) {
        self.copies.clear();
        self.bytes = 0;
        self.filling.clear();
        self.stats.resets += 1;
        if lost {
            self.confirmed_until = None;
            self.losses += 1;
        }
    }

    /// How many times the channel was lost so far: what a liveness check notes when it starts.
    pub(crate) fn losses(&self) -> u64 {
        self.losses
    }

    /// The channel has delivered every invalidation Redis produced up to `at`, as checked by a
    /// round that started when [`Copies::losses`] was `losses`; ignored if the channel was lost
    /// since.
    pub(crate) fn confirm(&mut self, at: Instant, losses: u64) {
        if losses != self.losses {
            return;
        }
        self.confirmed_until = Some(match self.confirmed_until {
            Some(earlier) => earlier.max(at),
            None => at,
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.copies.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    // Drops the least recently used eighth of the copies (at least one): one pass for many
    // inserts. `used` values are distinct, so exactly that many go.
    fn evict_least_used(&mut self) {
        let mut used: Vec<u64> = self.copies.values().map(|c| c.used).collect();
        if used.is_empty() {
            return;
        }
        let cut = (used.len() / 8).max(1);
        let (_, threshold, _) = used.select_nth_unstable(cut - 1);
        let threshold = *threshold;
        let mut freed = 0;
        self.copies.retain(|_, copy| {
            let keep = copy.used > threshold;
            if !keep {
                freed += copy.bytes;
            }
            keep
        });
        self.bytes -= freed;
    }
}

#[cfg(test)]
mod tests;
