//! Opening the connection: one URL, standalone or cluster, plain or TLS.
//!
//! A deployment is one of two shapes and the application should not have to know which: the same
//! `REDIS_URL` names a standalone server, a Valkey node, an ElastiCache primary endpoint or the
//! configuration endpoint of a cluster. So the seed node is asked `CLUSTER SLOTS` once at start-up:
//! an answer means cluster mode (redis-rs's cluster client then discovers every node, follows
//! `MOVED`/`ASK` and refreshes its slot map after failover or resharding); an `ERR` means a
//! standalone server. [`ClusterMode`] overrides the guess. A `redis+sentinel://` URL names
//! sentinels instead, which name the primary (`connection/sentinel.rs`).

use std::time::Duration;

use cloakroom_core::{Error, ErrorKind, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    ConnectionAddr, ConnectionInfo, FromRedisValue, IntoConnectionInfo, RedisResult, Value,
};
use tokio::time::Instant;

use crate::credentials::Credentials;
use crate::scripts::bounded;

mod cluster;
mod sentinel;

use cluster::{Request, cluster_request};

pub(crate) use sentinel::is_sentinel_url;

/// Whether the server is a Redis Cluster (ElastiCache "cluster mode enabled") or a standalone
/// server (or a primary with replicas, ElastiCache "cluster mode disabled").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterMode {
    /// Ask the seed node at start-up (the default): a node that answers `CLUSTER SLOTS` is part
    /// of a cluster.
    #[default]
    Auto,
    /// One server: every command goes to the URL's host.
    Standalone,
    /// A cluster: the URL names any node (or a configuration endpoint), the rest is discovered.
    Cluster,
}

/// A live connection of either shape. Both are cheap handles to shared, multiplexed,
/// self-healing connections.
#[derive(Clone)]
pub(crate) enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    /// A primary found through Sentinel, followed across failovers.
    Sentinel(sentinel::SentinelConnection),
}

impl Connection {
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self {
            Self::Standalone(connection) => cmd.query_async(&mut connection.clone()).await,
            // The other shapes are boxed: their state (a cluster call's redirections and
            // retries, some 2 KiB; a Sentinel primary's handle) would otherwise size every store
            // call's future, standalone ones included, and that future is boxed per request.
            Self::Cluster(connection) => {
                let value = Box::pin(cluster_request(connection, Request::Command(cmd))).await?;
                Ok(T::from_redis_value(value)?)
            }
            Self::Sentinel(connection) => Box::pin(connection.query(cmd)).await,
        }
    }

    /// A write followed by a `WAIT` in one pipeline, sent in one write and answered in one read;
    /// in cluster mode it goes to the node owning the write's key (`WAIT`, without a key,
    /// follows it there). Answers the write's reply (an error reply included, as a value) and
    /// `WAIT`'s, or `Nil` for it when no time was left to wait.
    pub(crate) async fn query_acked(
        &self,
        cmd: &redis::Cmd,
        wait: AckWait,
    ) -> RedisResult<(Value, Value)> {
        match self {
            Self::Standalone(connection) => match wait.pipeline(cmd) {
                Some(pipeline) => pipeline.query_async(&mut connection.clone()).await,
                None => Ok((cmd.query_async(&mut connection.clone()).await?, Value::Nil)),
            },
            Self::Cluster(connection) => {
                let value =
                    Box::pin(cluster_request(connection, Request::Acked(cmd, wait))).await?;
                Ok(<(Value, Value)>::from_redis_value(value)?)
            }
            Self::Sentinel(connection) => connection.query_acked(cmd, wait).await,
        }
    }

    /// For a primary found through Sentinel, where it is now.
    pub(crate) fn sentinel_primary(&self) -> Option<ConnectionInfo> {
        match self {
            Self::Sentinel(connection) => Some(connection.primary_info()),
            _ => None,
        }
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }
}

/// The `WAIT` that follows a write, bounded by the deadline of the whole call.
///
/// A call may take several hops: `MOVED`, `ASK`, a lost script cache. Each hop sends the write
/// and its `WAIT` together, and a hop that was refused (redirected, `NOSCRIPT`) still runs its
/// `WAIT`, on a node that may have no replica to answer it. So the timeout is worked out anew
/// for each hop from what is left of the call, never from the configured timeout alone.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AckWait {
    /// How many replicas must confirm.
    pub(crate) replicas: u32,
    /// The configured `WAIT` timeout: the most any one hop waits.
    pub(crate) timeout: Duration,
    /// When the whole call must have answered.
    pub(crate) deadline: Instant,
    /// Kept free for the last round trip and the answer.
    pub(crate) margin: Duration,
}

impl AckWait {
    // The write and a `WAIT` that fits the time left, or `None` when too little is left to wait
    // at all (`WAIT n 0` would block forever): then the write goes alone and counts as
    // unconfirmed. A hop waits at most half of what is left beyond the margin, so however many
    // refused hops come first, the one that runs the write still has time to run it and answer.
    pub(crate) fn pipeline(&self, cmd: &redis::Cmd) -> Option<redis::Pipeline> {
        let left = self
            .deadline
            .saturating_duration_since(Instant::now())
            .saturating_sub(self.margin);
        let millis = u64::try_from(self.timeout.min(left / 2).as_millis()).unwrap_or(u64::MAX);
        if millis == 0 {
            return None;
        }
        let mut pipeline = redis::pipe();
        pipeline
            .add_command(cmd.clone())
            .cmd("WAIT")
            .arg(self.replicas)
            .arg(millis)
            // The write's own error comes back as it is (with its code), not as a pipeline
            // error.
            .ignore_errors();
        Some(pipeline)
    }
}

/// What [`open`] needs from the builder.
#[derive(Clone, Copy)]
pub(crate) struct Settings<'a> {
    pub(crate) url: &'a str,
    pub(crate) cluster_mode: ClusterMode,
    pub(crate) root_certificate: Option<&'a [u8]>,
    pub(crate) accept_invalid_certificates: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) operation_timeout: Duration,
    /// Credentials that may change while the store runs; `None`: the URL's, if any.
    pub(crate) credentials: Option<&'a Credentials>,
}

impl Settings<'_> {
    /// `config` logging in with the changing credentials, when there are any.
    pub(crate) fn with_credentials(
        &self,
        config: redis::AsyncConnectionConfig,
    ) -> redis::AsyncConnectionConfig {
        crate::credentials::logging_in_with(self.credentials, config)
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        // Reconnection attempts are short and capped so that a request waiting on a reconnect
        // is bounded by the operation timeout anyway.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            // Each operation is bounded by the operation timeout around the whole call
            // (reconnection included), so no second per-response timer is needed.
            .set_response_timeout(None)
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        match self.credentials {
            Some(credentials) => config.set_credentials_provider(credentials.clone()),
            None => config,
        }
    }
}

pub(crate) async fn open(settings: &Settings<'_>) -> Result<Connection> {
    if is_sentinel_url(settings.url) {
        if settings.cluster_mode == ClusterMode::Cluster {
            return Err(Error::new(
                ErrorKind::Config,
                "a Sentinel URL names one primary, not a cluster",
            ));
        }
        return Ok(Connection::Sentinel(sentinel::open(settings).await?));
    }
    let info = connection_info(settings)?;
    let certificates = tls_certificates(settings, &info)?;
    let cluster = match settings.cluster_mode {
        ClusterMode::Standalone => false,
        ClusterMode::Cluster => true,
        ClusterMode::Auto => is_cluster_node(settings, &info, certificates.clone()).await?,
    };
    if cluster {
        open_cluster(settings, info, certificates).await
    } else {
        open_standalone(settings, info, certificates).await
    }
}

fn config_error(message: &'static str) -> impl FnOnce(redis::RedisError) -> Error {
    move |e| Error::with_source(ErrorKind::Config, message, e)
}

pub(crate) fn connection_info(settings: &Settings<'_>) -> Result<ConnectionInfo> {
    let info = settings
        .url
        .into_connection_info()
        .map_err(config_error("invalid Redis URL"))?;
    let ConnectionAddr::TcpTls {
        host,
        port,
        insecure,
        tls_params,
    } = info.addr().clone()
    else {
        if settings.accept_invalid_certificates {
            return Err(Error::new(
                ErrorKind::Config,
                "certificate checks were turned off but the URL is not a TLS one (rediss://)",
            ));
        }
        return Ok(info);
    };
    // redis-rs reads `#insecure` at the end of a URL as "skip certificate checks". A URL is
    // configuration that travels (environment, secrets store), so it must not be able to turn
    // verification off silently: only the builder's explicit, logged opt-out can.
    if insecure && !settings.accept_invalid_certificates {
        return Err(Error::new(
            ErrorKind::Config,
            "the Redis URL asks to skip certificate checks (#insecure); remove it, or opt out \
             explicitly with RedisStoreBuilder::danger_accept_invalid_certificates (tests only)",
        ));
    }
    // rustls needs a process-wide crypto provider; with more than one compiled in (as when
    // another crate enables aws-lc-rs) it cannot pick one itself and would panic at the first
    // handshake. Install ring unless the application installed one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if settings.accept_invalid_certificates {
        tracing::warn!(
            "TLS certificate checks are OFF for the Redis connection: anyone on the path can \
             read and change session data. Use this in tests only."
        );
    }
    Ok(info.set_addr(ConnectionAddr::TcpTls {
        host,
        port,
        insecure: settings.accept_invalid_certificates,
        tls_params,
    }))
}

pub(crate) fn tls_certificates(
    settings: &Settings<'_>,
    info: &ConnectionInfo,
) -> Result<Option<redis::TlsCertificates>> {
    let Some(pem) = settings.root_certificate else {
        return Ok(None);
    };
    if settings.accept_invalid_certificates {
        // The two contradict each other, and redis-rs would honour one or the other depending
        // on the cluster mode.
        return Err(Error::new(
            ErrorKind::Config,
            "a CA certificate was given and certificate checks were turned off: choose one",
        ));
    }
    if !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        return Err(Error::new(
            ErrorKind::Config,
            "a CA certificate was given but the URL is not a TLS one (rediss://)",
        ));
    }
    use rustls::pki_types::pem::PemObject as _;
    let certificates_in_pem =
        rustls::pki_types::CertificateDer::pem_slice_iter(pem).filter(Result::is_ok);
    if certificates_in_pem.count() == 0 {
        return Err(Error::new(
            ErrorKind::Config,
            "the CA file holds no PEM certificate",
        ));
    }
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.to_vec()),
    }))
}

pub(crate) fn client(
    info: ConnectionInfo,
    certificates: Option<redis::TlsCertificates>,
) -> Result<redis::Client> {
    match certificates {
        None => redis::Client::open(info).map_err(config_error("invalid Redis URL")),
        Some(certificates) => redis::Client::build_with_tls(info, certificates)
            .map_err(config_error("invalid Redis URL or CA certificate")),
    }
}

// One throwaway connection to the seed node. `CLUSTER SLOTS` is what the cluster client sends
// first anyway, so an ACL user fit for cluster mode may run it; a standalone server answers
// `ERR This instance has cluster support disabled` (and a service that hides the command,
// `ERR unknown command`).
async fn is_cluster_node(
    settings: &Settings<'_>,
    info: &ConnectionInfo,
    certificates: Option<redis::TlsCertificates>,
) -> Result<bool> {
    let probe = client(info.clone(), certificates)?;
    let config = settings.with_credentials(
        redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.connect_timeout)),
    );
    let mut connection = bounded(
        settings.connect_timeout,
        "accept a connection",
        probe.get_multiplexed_async_connection_with_config(&config),
    )
    .await?;
    let slots = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async::<redis::Value>(&mut connection)
        .await;
    match slots {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("ERR") => Ok(false),
        Err(e) if e.code() == Some("NOPERM") => Err(Error::with_source(
            ErrorKind::Config,
            "the Redis user may not run CLUSTER SLOTS, so cluster mode cannot be detected; \
             grant +cluster|slots or set the cluster mode explicitly",
            e,
        )),
        Err(e) => Err(crate::errors::map_error(e)),
    }
}

async fn open_standalone(
    settings: &Settings<'_>,
    info: ConnectionInfo,
    certificates: Option<redis::TlsCertificates>,
) -> Result<Connection> {
    let client = client(info, certificates)?;
    let config = settings.manager_config();
    let connection = bounded(
        settings.connect_timeout,
        "accept a connection",
        ConnectionManager::new_with_config(client, config),
    )
    .await?;
    Ok(Connection::Standalone(connection))
}

async fn open_cluster(
    settings: &Settings<'_>,
    info: ConnectionInfo,
    certificates: Option<redis::TlsCertificates>,
) -> Result<Connection> {
    let mut builder = ClusterClientBuilder::new([info])
        .connection_timeout(settings.connect_timeout)
        // A node that stops answering is given up on within one operation.
        .response_timeout(settings.operation_timeout)
        // No resends by the client: `cluster_request` retries only what provably did not run.
        // The client still refreshes its slot map on every redirection and lost connection.
        .retries(0);
    if let Some(certificates) = certificates {
        builder = builder.certs(certificates);
    }
    if let Some(credentials) = settings.credentials {
        builder = builder.set_credentials_provider(credentials.clone());
    }
    let client = builder
        .build()
        .map_err(config_error("invalid Redis cluster settings"))?;
    let connection = bounded(
        settings.connect_timeout,
        "accept a connection and list the cluster's slots",
        client.get_async_connection(),
    )
    .await?;
    Ok(Connection::Cluster(connection))
}
