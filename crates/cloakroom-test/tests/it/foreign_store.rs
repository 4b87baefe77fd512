//! The conformance suite run as a store written outside this repository runs it: a store type
//! of the test's own, wrapped in `StoreFixture::of`, through `store_conformance!`. Here the
//! foreign store keeps its sessions in a memory store behind an interface of its own.

use async_trait::async_trait;
use cloakroom_core::store::{Applied, Apply, Created, Fields, NewSession, Store};
use cloakroom_core::{IndexEntry, MemoryStore, Result, SessionKey, UserKey};
use cloakroom_test::StoreFixture;

/// A store from elsewhere.
#[derive(Debug, Default)]
struct ForeignStore {
    inner: MemoryStore,
}

#[async_trait]
impl Store for ForeignStore {
    async fn create(&self, key: &SessionKey, session: &NewSession) -> Result<Created> {
        self.inner.create(key, session).await
    }
    async fn apply(&self, key: &SessionKey, apply: &Apply) -> Result<Applied> {
        self.inner.apply(key, apply).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<bool> {
        self.inner.delete(key).await
    }
    async fn peek(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Fields>> {
        self.inner.peek(key, now_ms).await
    }
    async fn index_add(&self, u: &UserKey, k: &SessionKey, deadline: u64, now: u64) -> Result<()> {
        self.inner.index_add(u, k, deadline, now).await
    }
    async fn index_remove(&self, user: &UserKey, entry: &IndexEntry, now_ms: u64) -> Result<()> {
        self.inner.index_remove(user, entry, now_ms).await
    }
    async fn index_members(&self, user: &UserKey, now_ms: u64) -> Result<Vec<IndexEntry>> {
        self.inner.index_members(user, now_ms).await
    }
}

async fn foreign_fixture() -> anyhow::Result<StoreFixture> {
    Ok(StoreFixture::of(ForeignStore::default()))
}

cloakroom_test::store_conformance!(foreign_fixture());
