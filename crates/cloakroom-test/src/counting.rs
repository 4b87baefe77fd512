//! A store wrapper that counts the calls reaching the store underneath.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use cloakroom_core::store::{Applied, Apply, Created, Fields, NewSession, Store};
use cloakroom_core::{IndexEntry, Result, SessionKey, UserKey};

/// Calls made through a [`CountingStore`].
#[derive(Debug, Default)]
pub struct CallCounts {
    creates: AtomicUsize,
    applies: AtomicUsize,
    deletes: AtomicUsize,
    others: AtomicUsize,
}

impl CallCounts {
    /// Every call so far.
    pub fn total(&self) -> usize {
        self.creates() + self.applies() + self.deletes() + self.others()
    }
    /// `create` calls.
    pub fn creates(&self) -> usize {
        self.creates.load(Ordering::SeqCst)
    }
    /// `apply` calls.
    pub fn applies(&self) -> usize {
        self.applies.load(Ordering::SeqCst)
    }
    /// `peek` and user-index calls.
    pub fn others(&self) -> usize {
        self.others.load(Ordering::SeqCst)
    }
    /// `delete` calls.
    pub fn deletes(&self) -> usize {
        self.deletes.load(Ordering::SeqCst)
    }
}

/// Passes every call to a real store and counts it.
#[derive(Debug, Clone)]
pub struct CountingStore {
    inner: Arc<dyn Store>,
    counts: Arc<CallCounts>,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            counts: Arc::default(),
        }
    }

    /// The shared counters.
    pub fn counts(&self) -> Arc<CallCounts> {
        self.counts.clone()
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn create(&self, key: &SessionKey, session: &NewSession) -> Result<Created> {
        self.counts.creates.fetch_add(1, Ordering::SeqCst);
        self.inner.create(key, session).await
    }

    async fn apply(&self, key: &SessionKey, apply: &Apply) -> Result<Applied> {
        self.counts.applies.fetch_add(1, Ordering::SeqCst);
        self.inner.apply(key, apply).await
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool> {
        self.counts.deletes.fetch_add(1, Ordering::SeqCst);
        self.inner.delete(key).await
    }

    async fn peek(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Fields>> {
        self.counts.others.fetch_add(1, Ordering::SeqCst);
        self.inner.peek(key, now_ms).await
    }

    async fn index_add(
        &self,
        user: &UserKey,
        key: &SessionKey,
        deadline_ms: u64,
        now_ms: u64,
    ) -> Result<()> {
        self.counts.others.fetch_add(1, Ordering::SeqCst);
        self.inner.index_add(user, key, deadline_ms, now_ms).await
    }

    async fn index_remove(&self, user: &UserKey, entry: &IndexEntry, now_ms: u64) -> Result<()> {
        self.counts.others.fetch_add(1, Ordering::SeqCst);
        self.inner.index_remove(user, entry, now_ms).await
    }

    async fn index_members(&self, user: &UserKey, now_ms: u64) -> Result<Vec<IndexEntry>> {
        self.counts.others.fetch_add(1, Ordering::SeqCst);
        self.inner.index_members(user, now_ms).await
    }
}
