//! Building the store: settings, connecting, and the start-up checks.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use cloakroom_core::{Error, ErrorKind, Result};
use redis::Value;

use crate::acks::ReplicaAcks;
use crate::connection::{self, ClusterMode};
use crate::credentials::Credentials;
use crate::near_cache::NearCache;
use crate::nodes::NodeClients;
use crate::scripts::{ScriptSource, bounded};
use crate::{DEFAULT_OPERATION_TIMEOUT, DEFAULT_PREFIX, RedisStore};

/// Builds a [`RedisStore`].
#[derive(Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    operation_timeout: Duration,
    connect_timeout: Duration,
    root_certificate: Option<Vec<u8>>,
    accept_invalid_certificates: bool,
    cluster_mode: ClusterMode,
    replica_acks: Option<ReplicaAcks>,
    near_cache: Option<NearCache>,
    credentials: Option<Credentials>,
}

impl RedisStore {
    /// A builder for a store at `url`: `redis://[user:password@]host[:port][/db]` or
    /// `rediss://...` for TLS (certificates verified against the system's roots). In cluster
    /// mode the URL names any one node, or ElastiCache's configuration endpoint.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// use cloakroom_redis::{RedisStore, ReplicaAcks};
    ///
    /// # async fn run() -> cloakroom_core::Result<()> {
    /// // An ElastiCache cluster's configuration endpoint, over TLS, with an ACL user.
    /// let store = RedisStore::builder("rediss://sessions:PASSWORD@clustercfg.example.cache.amazonaws.com:6379")
    ///     .with_operation_timeout(Duration::from_millis(500))
    ///     .with_replica_acks(ReplicaAcks::on_deletes(1, Duration::from_millis(100)))
    ///     .connect()
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            connect_timeout: DEFAULT_OPERATION_TIMEOUT,
            root_certificate: None,
            accept_invalid_certificates: false,
            cluster_mode: ClusterMode::Auto,
            replica_acks: None,
            near_cache: None,
            credentials: None,
        }
    }

    /// Connects to `url` with the default settings.
    pub async fn connect(url: impl Into<String>) -> Result<Self> {
        Self::builder(url).connect().await
    }
}

impl std::fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("root_certificate", &self.root_certificate.is_some())
            .field(
                "accept_invalid_certificates",
                &self.accept_invalid_certificates,
            )
            .field("cluster_mode", &self.cluster_mode)
            .field("replica_acks", &self.replica_acks)
            .field("near_cache", &self.near_cache)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// The prefix of every session key (default `cloakroom:`). In cluster mode keep it free of
    /// `{`: a hash tag in the prefix would put every session in one slot, on one node.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The bound on each operation, reconnection and cluster redirections included (default 1 s).
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Trust this CA certificate (PEM) instead of the system's roots for a `rediss://` URL: for
    /// servers whose certificate a private CA signed. Verification stays on.
    pub fn with_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificate = Some(pem.into());
        self
    }

    /// Turns TLS certificate verification off, and logs a warning when connecting. For tests
    /// against servers with throwaway certificates only: without verification anyone on the
    /// network path can read and change sessions. A `#insecure` URL fragment is refused unless
    /// this is set.
    pub fn danger_accept_invalid_certificates(mut self) -> Self {
        self.accept_invalid_certificates = true;
        self
    }

    /// Standalone or cluster (default: [`ClusterMode::Auto`], ask the server).
    pub fn with_cluster_mode(mut self, mode: ClusterMode) -> Self {
        self.cluster_mode = mode;
        self
    }

    /// Makes writes wait for replicas: see [`ReplicaAcks`]. Off by default.
    pub fn with_replica_acks(mut self, acks: ReplicaAcks) -> Self {
        self.replica_acks = Some(acks);
        self
    }

    /// Serves plain loads from local copies of recently loaded sessions, kept correct by
    /// invalidations from Redis (`CLIENT TRACKING`): a request that only reads its session then
    /// costs no round trip. Off by default. Writes, increments and due touches still go to
    /// Redis; a change made elsewhere is seen within [`NearCache::with_lease`] at worst. Needs
    /// RESP3 (Redis 6 or later, Valkey, ElastiCache) and, for an ACL user, `+hello`,
    /// `+client|tracking`, `+role` and, on a cluster, `+cluster|nodes`. docs/DESIGN.md, "The near-cache", has the contract.
    pub fn with_near_cache(mut self, settings: NearCache) -> Self {
        self.near_cache = Some(settings);
        self
    }

    /// Logs in with `credentials` instead of the URL's user and password, and again on every
    /// connection whenever they change ([`Credentials::update`]): a rotated password, or an
    /// ElastiCache IAM token refreshed before it expires. No request fails because of a
    /// rotation, and reconnects use the newest credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The bound on connecting at start-up (default 1 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Connects and checks the server answers. A bad URL, a refused connection, a TLS failure
    /// or an authentication failure is an error naming the cause: never a fallback elsewhere.
    pub async fn connect(self) -> Result<RedisStore> {
        if let Some(acks) = self.replica_acks
            && (acks.replicas == 0
                || acks
                    .timeout
                    .checked_mul(2)
                    .is_none_or(|twice| twice >= self.operation_timeout))
        {
            // Twice: a call may take several round trips (a lost script cache, redirections),
            // each with a `WAIT`; the first one only gets its full timeout within the first half
            // of the operation timeout (see `connection::AckWait`).
            return Err(Error::new(
                ErrorKind::Config,
                "replica acknowledgement needs at least one replica and a timeout shorter than \
                 half the operation timeout",
            ));
        }
        let settings = connection::Settings {
            url: &self.url,
            cluster_mode: self.cluster_mode,
            root_certificate: self.root_certificate.as_deref(),
            accept_invalid_certificates: self.accept_invalid_certificates,
            connect_timeout: self.connect_timeout,
            operation_timeout: self.operation_timeout,
            credentials: self.credentials.as_ref(),
        };
        let connection = connection::open(&settings).await?;
        let acks_connection = match self.replica_acks {
            None => None,
            Some(_) => Some(
                connection::open(&connection::Settings {
                    cluster_mode: if connection.is_cluster() {
                        ClusterMode::Cluster
                    } else {
                        ClusterMode::Standalone
                    },
                    ..settings
                })
                .await?,
            ),
        };
        if connection.is_cluster() && self.prefix.contains('{') {
            tracing::warn!(
                prefix = %self.prefix,
                "the key prefix holds a hash tag: every session will live in one slot, on one \
                 node of the cluster"
            );
        }
        let near_cache = match self.near_cache {
            None => None,
            Some(_) if connection::is_sentinel_url(&self.url) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "the near-cache does not follow Sentinel failovers yet: use it with a \
                     standalone server or a cluster",
                ));
            }
            Some(cache) => {
                let shared = crate::near_cache::Shared::new(cache);
                let tracking = crate::near_cache::Tracking {
                    clients: NodeClients::new(&settings, &connection)?,
                    data: connection.clone(),
                    prefix: self.prefix.clone(),
                    lease: cache.lease,
                    connect_timeout: self.connect_timeout,
                };
                crate::near_cache::start(&shared, tracking).await?;
                Some(shared)
            }
        };
        let connection_for_nodes = connection.clone();
        let store = RedisStore {
            connection,
            acks_connection,
            prefix: self.prefix,
            operation_timeout: self.operation_timeout,
            replica_acks: self.replica_acks,
            unconfirmed_writes: Arc::new(AtomicU64::new(0)),
            create: ScriptSource::new(include_str!("lua/create.lua")),
            apply: ScriptSource::new(include_str!("lua/apply.lua")),
            index: ScriptSource::new(include_str!("lua/index.lua")),
            near_cache,
            nodes: NodeClients::new(&settings, &connection_for_nodes)?,
        };
        // Load the scripts now (on every primary, in cluster mode) so the first requests cost
        // one round trip, like the rest. This is also the start-up check that the server answers
        // and that the user may run scripts.
        for script in [&store.create, &store.apply, &store.index] {
            let mut load = redis::cmd("SCRIPT");
            load.arg("LOAD").arg(script.source);
            bounded(
                store.operation_timeout,
                "load the scripts",
                store.connection.query::<Value>(&load),
            )
            .await?;
        }
        store.check_eviction_policy().await;
        Ok(store)
    }
}

impl RedisStore {
    // Says at start-up whether the server's eviction policy keeps the per-user guarantees. Not
    // an error: the policy can change at run time, and a server without `maxmemory` evicts
    // nothing whatever its policy says.
    async fn check_eviction_policy(&self) {
        match self.eviction_policy().await {
            Ok(Some(policy)) if !policy.keeps_user_indexes() => tracing::warn!(
                policy = %policy.name,
                maxmemory = policy.maxmemory,
                "this eviction policy can evict a user's session index while the user's \
                 sessions live on, and \"log out everywhere\" would then miss them: use \
                 volatile-lru (or another volatile-* policy) or noeviction"
            ),
            Ok(Some(policy)) => {
                tracing::debug!(policy = %policy.name, "the eviction policy keeps user indexes");
            }
            Ok(None) => tracing::warn!("the server did not report its eviction policy"),
            Err(e) => tracing::warn!(
                error = %e,
                "could not read the eviction policy with INFO memory (does the Redis user have \
                 +info?)"
            ),
        }
    }
}
