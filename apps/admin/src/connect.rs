//! Reaching the application's Redis with the application's settings.

use std::sync::Arc;

use anyhow::{Context, bail};
use cloakroom::redis::RedisStore;
use cloakroom::{SessionManager, Store};
use cloakroom_demo::settings::{redacted, redis_builder_from_env, session_config_from_env};

/// The store, and a manager over it with the application's session settings.
pub(crate) struct Admin {
    pub(crate) store: RedisStore,
    pub(crate) manager: SessionManager,
}

impl Admin {
    /// Connects to `url` (`REDIS_URL`), with the environment's other settings.
    pub(crate) async fn connect(url: &Option<String>) -> anyhow::Result<Self> {
        let url = required_url(url)?;
        let store = redis_builder_from_env(url)
            .await?
            .connect()
            .await
            .with_context(|| format!("cannot use Redis at {}", redacted(url)))?;
        let manager = manager_over(&store)?;
        Ok(Self { store, manager })
    }
}

/// The URL, or an error saying where it comes from.
pub(crate) fn required_url(url: &Option<String>) -> anyhow::Result<&str> {
    match url.as_deref() {
        Some(url) if !url.is_empty() => Ok(url),
        _ => bail!("REDIS_URL is not set: give the Redis the application uses (or --redis-url)"),
    }
}

/// A manager over `store` with the environment's session settings.
pub(crate) fn manager_over(store: &RedisStore) -> anyhow::Result<SessionManager> {
    let config = session_config_from_env()?;
    let store: Arc<dyn Store> = Arc::new(store.clone());
    SessionManager::new(store, config).context("the session settings are not usable")
}
