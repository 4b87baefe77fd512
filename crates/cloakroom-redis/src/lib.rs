//! Redis, Valkey and Amazon ElastiCache store for cloakroom sessions.
//!
//! Each session is one Redis HASH named `PREFIX + base64url(SHA-256(token))`, holding one field
//! per session field (JSON text, so `redis-cli HGETALL` is readable and counters stay decimal
//! for `HINCRBY`) and two reserved fields, `__created` and `__deadline`. Every operation that
//! writes is one Lua script on that one key, sent with `EVALSHA` (a logout one `DEL`): one round
//! trip, atomic, and cluster-safe because no script touches a second key. A plain load is one
//! `HGETALL`, followed by the script only when it finds a touch due (at most once per touch
//! interval) or a record the script must end or report. Request paths never use `KEYS`, `SCAN`,
//! `CONFIG` or `RENAME`.
//!
//! The same URL serves a standalone server and a cluster: the store asks the seed node whether
//! it is part of a cluster (see [`ClusterMode`]) and then uses redis-rs's auto-reconnecting
//! [`ConnectionManager`](redis::aio::ConnectionManager) or its cluster client, which discovers
//! the nodes, follows `MOVED`/`ASK` and refreshes its slot map after a failover or a reshard.
//! Every operation is bounded by a timeout (one second by default), so while Redis is
//! unreachable requests fail fast with
//! [`ErrorKind::Unavailable`](cloakroom_core::ErrorKind::Unavailable) and succeed again once it
//! is back, without a restart.
//!
//! The modules follow the concerns: `builder` (settings, connecting, start-up checks),
//! `connection` (standalone or cluster, redirections), `scripts` (one `EVALSHA` on one key),
//! `acks` (writes that wait for replicas), `store` (the `Store` contract), `reply` (reading
//! replies), `errors` (Redis errors as cloakroom's), `eviction` (the server's policy),
//! `near_cache` (local copies of sessions kept correct by key tracking), `nodes` (connections
//! of its own to each primary) and `inventory` (what the store holds, by a scan, for tools).

mod acks;
mod builder;
mod connection;
mod credentials;
mod errors;
mod eviction;
#[cfg(feature = "iam")]
mod iam;
mod inventory;
mod near_cache;
mod nodes;
mod reply;
mod scripts;
mod store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cloakroom_core::{Result, SessionKey, UserKey};
use redis::Value;

pub use crate::acks::ReplicaAcks;
pub use crate::builder::RedisStoreBuilder;
pub use crate::connection::ClusterMode;
use crate::connection::Connection;
pub use crate::credentials::Credentials;
pub use crate::eviction::EvictionPolicy;
#[cfg(feature = "iam")]
pub use crate::iam::ElastiCacheIam;
pub use crate::inventory::{Inventory, ServerInfo};
pub use crate::near_cache::{NearCache, NearCacheStats};
use crate::scripts::{ScriptSource, bounded};
#[cfg(feature = "iam")]
pub use aws_credential_types;

pub(crate) const DEFAULT_PREFIX: &str = "cloakroom:";
pub(crate) const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(1);

/// A session store in Redis (or Valkey, or ElastiCache), cheap to clone.
#[derive(Clone)]
pub struct RedisStore {
    connection: Connection,
    // A second connection, only for writes followed by `WAIT` (see `send`).
    acks_connection: Option<Connection>,
    prefix: String,
    operation_timeout: Duration,
    replica_acks: Option<ReplicaAcks>,
    unconfirmed_writes: Arc<AtomicU64>,
    create: ScriptSource,
    apply: ScriptSource,
    index: ScriptSource,
    // Local copies of sessions, when the near-cache is on.
    near_cache: Option<Arc<near_cache::Shared>>,
    // Connections of their own to each primary: the inventory's scans.
    nodes: nodes::NodeClients,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.connection.is_cluster())
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .field("replica_acks", &self.replica_acks)
            .field("near_cache", &self.near_cache.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Whether the store talks to a cluster (detected at start-up, or as configured).
    pub fn is_cluster(&self) -> bool {
        self.connection.is_cluster()
    }

    /// The near-cache's hits, misses, invalidations and resets since start-up; `None` when it
    /// is off ([`RedisStoreBuilder::with_near_cache`]).
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        self.near_cache.as_ref().map(|cache| cache.stats())
    }

    /// How many writes fewer replicas confirmed than [`ReplicaAcks`] asked for, since start-up.
    pub fn unconfirmed_writes(&self) -> u64 {
        self.unconfirmed_writes.load(Ordering::Relaxed)
    }

    /// The server's eviction policy, from `INFO memory` (on a cluster, the weakest primary's);
    /// `None` when the server does not report one. The store reads it at start-up and warns
    /// when it can evict a user's index while the user's sessions live on
    /// ([`EvictionPolicy::keeps_user_indexes`]).
    pub async fn eviction_policy(&self) -> Result<Option<EvictionPolicy>> {
        let mut cmd = redis::cmd("INFO");
        cmd.arg("memory");
        let reply = bounded(
            self.operation_timeout,
            "answer INFO",
            self.connection.query::<Value>(&cmd),
        )
        .await?;
        Ok(EvictionPolicy::from_reply(&reply))
    }

    /// The full Redis key of a session: useful to inspect it with `redis-cli`.
    pub fn redis_key(&self, key: &SessionKey) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.as_str().len());
        full.push_str(&self.prefix);
        full.push_str(key.as_str());
        full
    }

    // A user's index: beside the sessions, under `user:`, which no session key can start with
    // (session keys are base64url, without ':').
    pub(crate) fn index_key(&self, user: &UserKey) -> String {
        format!("{}user:{}", self.prefix, user.as_str())
    }
}

// The constants, with the type they belong to.
impl RedisStore {
    /// Default prefix of session keys.
    pub const DEFAULT_PREFIX: &'static str = DEFAULT_PREFIX;

    /// Default bound on each operation, reconnection included.
    pub const DEFAULT_OPERATION_TIMEOUT: Duration = DEFAULT_OPERATION_TIMEOUT;
}
