//! A store that holds its next `create` or `apply` at its start until released, to force an
//! interleaving: a test lets a step leave, does something while it is in flight, then lets it
//! finish. It can also refuse its next `create`, as a store with a fault would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cloakroom_core::store::{Applied, Apply, Created, Fields, NewSession, Store};
use cloakroom_core::{IndexEntry, Result, SessionKey, UserKey};
use tokio::sync::{Notify, Semaphore};

/// Which step the store holds next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    Nothing,
    Apply,
    Create,
}

/// A store that can hold its next `apply` or `create` at its start until released, and
/// remembers the keys it created.
#[derive(Debug)]
pub(crate) struct Held {
    inner: Arc<dyn Store>,
    hold: Mutex<Hold>,
    pub(crate) reached: Notify,
    pub(crate) release: Semaphore,
    created: Mutex<Vec<SessionKey>>,
    refuse_create: std::sync::atomic::AtomicBool,
}

impl Held {
    pub(crate) fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            hold: Mutex::new(Hold::Nothing),
            reached: Notify::new(),
            release: Semaphore::new(0),
            created: Mutex::new(Vec::new()),
            refuse_create: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The next `create` fails, with an error that is not the store being unreachable.
    pub(crate) fn refuse_next_create(&self) {
        self.refuse_create
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn hold_next(&self, step: Hold) {
        *self.hold.lock().unwrap_or_else(|p| p.into_inner()) = step;
    }

    async fn pause_if(&self, step: Hold) {
        let held = {
            let mut hold = self.hold.lock().unwrap_or_else(|p| p.into_inner());
            let held = *hold == step;
            if held {
                *hold = Hold::Nothing;
            }
            held
        };
        if held {
            self.reached.notify_one();
            if let Ok(permit) = self.release.acquire().await {
                permit.forget();
            }
        }
    }

    /// Runs `step` in a task of its own with the next `which` step held, and returns once that
    /// step is in flight.
    pub(crate) async fn in_flight<T: Send + 'static>(
        &self,
        which: Hold,
        step: impl std::future::Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.hold_next(which);
        let task = tokio::spawn(step);
        self.reached.notified().await;
        task
    }

    /// Lets the held step go on.
    pub(crate) fn let_go(&self) {
        self.release.add_permits(1);
    }

    pub(crate) fn created(&self) -> Vec<SessionKey> {
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[async_trait]
impl Store for Held {
    async fn create(&self, key: &SessionKey, session: &NewSession) -> Result<Created> {
        self.pause_if(Hold::Create).await;
        if self
            .refuse_create
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(cloakroom_core::Error::new(
                cloakroom_core::ErrorKind::Backend,
                "create refused by the test",
            ));
        }
        let created = self.inner.create(key, session).await?;
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key.clone());
        Ok(created)
    }
    async fn apply(&self, key: &SessionKey, apply: &Apply) -> Result<Applied> {
        self.pause_if(Hold::Apply).await;
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

/// Waits for a step's task, failing instead of hanging if a change makes it wait for ever.
pub(crate) async fn joined<T>(task: tokio::task::JoinHandle<T>) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(Duration::from_secs(10), task).await??)
}
