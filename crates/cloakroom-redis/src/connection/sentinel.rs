//! A primary found through Redis Sentinel, followed across failovers.
//!
//! `redis+sentinel://[user:password@]host[:port][,host[:port]...]/SERVICE` (or `rediss+sentinel://`
//! for TLS to the sentinels and the servers) names the sentinels and the service they watch, the
//! URL form other clients use. The sentinels are asked for the service's primary at start-up;
//! the store then talks to that primary through an auto-reconnecting connection, as to a
//! standalone server. A failover shows up as errors on that connection: refused or dropped
//! connections (the primary died) or `READONLY` (it was demoted and is now a replica). Any of
//! those makes the store ask the sentinels again, once at a time, and move to the new primary;
//! the request that saw the error fails fast as any request does while Redis is unreachable.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cloakroom_core::{Error, ErrorKind, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::credentials::Credentials;
use redis::{ConnectionAddr, ConnectionInfo, FromRedisValue, RedisResult, TlsMode, Value};

use super::{AckWait, Settings};
use crate::scripts::bounded;

mod url;

use url::{SentinelUrl, parse};

/// Whether `url` names sentinels rather than a server.
pub(crate) fn is_sentinel_url(url: &str) -> bool {
    url.starts_with("redis+sentinel://") || url.starts_with("rediss+sentinel://")
}

/// The connection to the service's current primary.
#[derive(Clone)]
pub(crate) struct SentinelConnection {
    shared: Arc<Shared>,
}

struct Shared {
    sentinels: tokio::sync::Mutex<Sentinels>,
    // The primary in use, and how many times it changed: a refresh started for an older one
    // does nothing.
    current: RwLock<Current>,
    connect_timeout: Duration,
    // How connections to a primary are made (timeouts, credentials).
    config: ConnectionManagerConfig,
    // A refresh after an error is under way: errors meanwhile start no other.
    refreshing: AtomicBool,
}

#[derive(Clone)]
struct Current {
    generation: u64,
    manager: ConnectionManager,
    info: ConnectionInfo,
}

impl SentinelConnection {
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        let current = self.current();
        let result = cmd.query_async(&mut current.manager.clone()).await;
        if let Err(e) = &result {
            self.after_error(e, current.generation);
        }
        result
    }

    pub(crate) async fn query_acked(
        &self,
        cmd: &redis::Cmd,
        wait: AckWait,
    ) -> RedisResult<(Value, Value)> {
        let current = self.current();
        let mut manager = current.manager.clone();
        let result = match wait.pipeline(cmd) {
            Some(pipeline) => pipeline.query_async(&mut manager).await,
            None => cmd.query_async(&mut manager).await.map(|v| (v, Value::Nil)),
        };
        match &result {
            Err(e) => self.after_error(e, current.generation),
            // `ignore_errors`: the write's own `READONLY` comes back as a value.
            Ok((Value::ServerError(e), _)) if e.code() == "READONLY" => {
                self.refresh_soon(current.generation);
            }
            Ok(_) => {}
        }
        result
    }

    /// Where the current primary is, with the URL's credentials and TLS.
    pub(crate) fn primary_info(&self) -> ConnectionInfo {
        self.current().info
    }

    fn current(&self) -> Current {
        // A poisoned lock only means a panic elsewhere while swapping in a new primary: the
        // value is whole either way.
        match self.shared.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    // An error that says the primary is gone or is a primary no longer.
    fn after_error(&self, error: &redis::RedisError, generation: u64) {
        if error.code() == Some("READONLY")
            || error.is_connection_refusal()
            || error.is_connection_dropped()
            || error.is_io_error()
            || error.is_timeout()
        {
            self.refresh_soon(generation);
        }
    }

    // Asks the sentinels for the primary in a task of its own (the request that failed returns
    // at once), unless a refresh since `generation` already ran or is running.
    fn refresh_soon(&self, generation: u64) {
        if self.shared.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            if let Err(e) = refresh(&shared, Some(generation)).await {
                tracing::warn!(error = %e, "the sentinels did not name a usable primary");
            }
            shared.refreshing.store(false, Ordering::Release);
        });
    }
}

impl Shared {
    fn generation(&self) -> u64 {
        match self.current.read() {
            Ok(current) => current.generation,
            Err(poisoned) => poisoned.into_inner().generation,
        }
    }

    fn address(&self) -> String {
        match self.current.read() {
            Ok(current) => address_of(&current.info),
            Err(poisoned) => address_of(&poisoned.into_inner().info),
        }
    }
}

// Asks the sentinels for the primary and moves to it: after an error of the connection at
// `generation` (`Some`: nothing is done if another refresh came first, and the connection is
// renewed even at the same address), or on the watcher's schedule (`None`: only when the
// sentinels name another primary).
async fn refresh(shared: &Shared, after_error_at: Option<u64>) -> Result<()> {
    // One refresh at a time; one that waited behind another may find the work done.
    let mut sentinels = shared.sentinels.lock().await;
    if after_error_at.is_some_and(|generation| generation != shared.generation()) {
        return Ok(());
    }
    let client = sentinels.primary(shared.connect_timeout).await?;
    let address = address_of(client.get_connection_info());
    if after_error_at.is_none() && address == shared.address() {
        return Ok(());
    }
    let (manager, info) = connect(client, shared.config.clone(), shared.connect_timeout).await?;
    let mut current = match shared.current.write() {
        Ok(current) => current,
        Err(poisoned) => poisoned.into_inner(),
    };
    if address_of(&current.info) != address {
        tracing::warn!(primary = %address, "following the sentinels to a new primary");
    }
    *current = Current {
        generation: current.generation + 1,
        manager,
        info,
    };
    Ok(())
}

// How often the sentinels are asked whether the primary changed, errors or not: a primary that
// freezes answers nothing, so no error of its own would ever send the store to its successor.
const WATCH_EVERY: Duration = Duration::from_secs(1);

// Asks the sentinels on a schedule until the store is dropped.
fn watch(shared: &Arc<Shared>) {
    let shared = Arc::downgrade(shared);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(WATCH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if let Err(e) = refresh(&shared, None).await {
                tracing::debug!(error = %e, "the sentinels could not be asked for the primary");
            }
        }
    });
}

fn address_of(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{host}:{port}")
        }
        other => other.to_string(),
    }
}

// Connects to the primary the sentinels named (redis-rs checked that it calls itself one).
async fn connect(
    client: redis::Client,
    config: ConnectionManagerConfig,
    connect_timeout: Duration,
) -> Result<(ConnectionManager, ConnectionInfo)> {
    let info = client.get_connection_info().clone();
    let manager = bounded(
        connect_timeout,
        "accept a connection",
        ConnectionManager::new_with_config(client, config),
    )
    .await?;
    Ok((manager, info))
}

/// How to ask the sentinels: rebuilt when the servers' credentials change, since redis-rs's
/// Sentinel client checks the primary it names (`ROLE`) with credentials fixed when it is built.
struct Sentinels {
    url: SentinelUrl,
    accept_invalid_certificates: bool,
    root_certificate: Option<Vec<u8>>,
    credentials: Option<Credentials>,
    // The client, and the servers' credentials it was built with.
    client: Option<(SentinelClient, Option<(String, String)>)>,
}

impl Sentinels {
    // The primary's client, from a Sentinel client built with the current credentials.
    async fn primary(&mut self, timeout: Duration) -> Result<redis::Client> {
        let wanted = self
            .credentials
            .as_ref()
            .map(|c| (c.username(), c.password()));
        if self
            .client
            .as_ref()
            .is_none_or(|(_, built)| *built != wanted)
        {
            self.client = Some((self.build(wanted.as_ref())?, wanted));
        }
        let Some((client, _)) = self.client.as_mut() else {
            return Err(Error::new(ErrorKind::Config, "no Sentinel client"));
        };
        bounded(
            timeout,
            "name the primary (Sentinel)",
            client.async_get_client(),
        )
        .await
    }

    fn build(&self, credentials: Option<&(String, String)>) -> Result<SentinelClient> {
        let url = &self.url;
        let addresses = url.sentinels.iter().map(|(host, port)| {
            if url.tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: self.accept_invalid_certificates,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            }
        });
        let invalid = |e| Error::with_source(ErrorKind::Config, "invalid Sentinel settings", e);
        let mut builder =
            SentinelClientBuilder::new(addresses, &url.service, SentinelServerType::Master)
                .map_err(invalid)?;
        if url.tls {
            let mode = if self.accept_invalid_certificates {
                TlsMode::Insecure
            } else {
                TlsMode::Secure
            };
            builder = builder
                .set_client_to_redis_tls_mode(mode)
                .set_client_to_sentinel_tls_mode(mode);
            if let Some(pem) = &self.root_certificate {
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                };
                builder = builder
                    .set_client_to_redis_certificates(certificates.clone())
                    .set_client_to_sentinel_certificates(certificates);
            }
        }
        // The servers' credentials: the changing ones when the store has them, else the URL's.
        let (username, password) = match credentials {
            Some((username, password)) => (Some(username), Some(password)),
            None => (url.username.as_ref(), url.password.as_ref()),
        };
        if let Some(username) = username {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = password {
            builder = builder.set_client_to_redis_password(password);
        }
        if let Some(username) = &url.sentinel_username {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = &url.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password);
        }
        builder.build().map_err(invalid)
    }
}

/// Connects to the primary the sentinels of `settings.url` name.
pub(crate) async fn open(settings: &Settings<'_>) -> Result<SentinelConnection> {
    let url = parse(settings.url)?;
    if url.tls {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if settings.accept_invalid_certificates {
            tracing::warn!(
                "TLS certificate checks are OFF for the Redis connection: anyone on the path can \
                 read and change session data. Use this in tests only."
            );
        }
    } else if settings.accept_invalid_certificates || settings.root_certificate.is_some() {
        return Err(Error::new(
            ErrorKind::Config,
            "TLS settings were given but the URL is not a TLS one (rediss+sentinel://)",
        ));
    }
    let mut sentinels = Sentinels {
        url,
        accept_invalid_certificates: settings.accept_invalid_certificates,
        root_certificate: settings.root_certificate.map(<[u8]>::to_vec),
        credentials: settings.credentials.cloned(),
        client: None,
    };
    let client = sentinels.primary(settings.connect_timeout).await?;
    let config = settings.manager_config();
    let (manager, info) = connect(client, config.clone(), settings.connect_timeout).await?;
    let shared = Arc::new(Shared {
        sentinels: tokio::sync::Mutex::new(sentinels),
        current: RwLock::new(Current {
            generation: 0,
            manager,
            info,
        }),
        connect_timeout: settings.connect_timeout,
        config,
        refreshing: AtomicBool::new(false),
    });
    watch(&shared);
    Ok(SentinelConnection { shared })
}
