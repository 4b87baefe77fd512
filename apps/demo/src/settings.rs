//! The demo's configuration, read from the environment by both binaries:
//!
//! * `REDIS_URL`: absent, the embedded memory store; present, Redis (`redis://` or `rediss://`,
//!   with `user:password@` for ACL auth). For a cluster, any one node or ElastiCache's
//!   configuration endpoint: cluster mode is detected. Behind Sentinel,
//!   `redis+sentinel://[user:password@]host:port[,host:port...]/SERVICE` (`rediss+sentinel://`
//!   for TLS).
//! * `REDIS_CLUSTER`: `auto` (default), `yes` or `no`, to override the detection.
//! * `REDIS_TIMEOUT_MS`: the bound on connecting and on each Redis operation (default 1000).
//! * `SECRET_KEY`: the cookie signing key, at least 32 bytes; absent, a random key (sessions
//!   then end when the process does) and a warning.
//! * `SECRET_KEY_PREVIOUS` and `SECRET_KEY_PREVIOUS_UNTIL`: after a key rotation, the old key
//!   and the Unix time (seconds) until which cookies it signed are still accepted.
//! * `SECRET_KEY_NEXT`: the key that will sign next, accepted but not yet signing: the first
//!   phase of a rotation across several instances.
//! * `SESSION_TTL`: idle timeout in seconds (default 1800).
//! * `BIND`: address to listen on (default `127.0.0.1:3000`).
//! * `COOKIE_SECURE`: `0` to send the cookie without `Secure` when serving plain http on an
//!   address other than localhost (browsers accept `Secure` cookies from http://localhost).
//! * `REDIS_CA_FILE`: a PEM file of the CA that signed the Redis server's certificate, for a
//!   `rediss://` server with a private CA (verification stays on).
//! * `REDIS_REPLICA_ACKS`: a number of replicas; logouts (and the old id at login) then wait up
//!   to 100 ms for that many replicas to confirm the delete, and an unconfirmed one is logged.
//! * `REDIS_TLS_INSECURE`: `1` turns TLS certificate checks off, with a warning. For tests
//!   against throwaway certificates only.
//! * `MAX_SESSIONS`: bound of the memory store (default 100000).
//! * `NEAR_CACHE`: `on` keeps local copies of recently read sessions, kept correct by
//!   invalidations from Redis, so a request that only reads its session (`GET /whoami`) costs
//!   no round trip; `off` (the default). Redis only.
//! * `MAX_SESSIONS_PER_USER`: the most live sessions one user may have; absent, no bound. A
//!   login past it ends the user's oldest session, or with `SESSION_CAP_POLICY=refuse-new` is
//!   refused (`end-oldest` is the default; `_` for `-` is accepted too).
//! * `REDIS_IAM_USER` and `AWS_REGION`: log in to ElastiCache with IAM tokens as that user (its
//!   user id), made from the standard AWS credential chain and renewed every 10 minutes; the
//!   URL must be `rediss://`. `REDIS_IAM_CACHE_NAME` names the cache when its endpoint does not.
//! * `METRICS_BIND`: an address on which a second listener serves the metrics in Prometheus's
//!   text format at `GET /metrics`; absent, no metrics are served (the default).
//! * `LOG_FORMAT`: `text` (the default; coloured only on a terminal) or `json`, one object per
//!   line. `RUST_LOG` filters (default `info`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use cloakroom::redis::{
    ClusterMode, Credentials, ElastiCacheIam, NearCache, RedisStore, RedisStoreBuilder, ReplicaAcks,
};
use cloakroom::signing::CookieSigner;
use cloakroom::{CapPolicy, MemoryStore, SessionConfig, SessionManager, Store};

/// What a binary needs to serve the demo.
#[derive(Debug)]
pub struct Settings {
    /// The address to listen on.
    pub bind: SocketAddr,
    /// The sessions, over the configured store.
    pub manager: SessionManager,
    /// Where to serve `GET /metrics`, if anywhere.
    pub metrics_bind: Option<SocketAddr>,
}

impl Settings {
    /// Reads the environment and connects to the store; prints the store line of the start-up
    /// banner, prefixed with `program`.
    ///
    /// # Errors
    ///
    /// A variable that is not valid (named in the message), or a store that cannot be used.
    pub async fn from_env(program: &str) -> anyhow::Result<Self> {
        let bind: SocketAddr = parse_env("BIND", SocketAddr::from(([127, 0, 0, 1], 3000)))?;
        let metrics_bind: Option<SocketAddr> = match env("METRICS_BIND") {
            None => None,
            Some(_) => Some(parse_env("METRICS_BIND", bind)?),
        };
        let max_sessions: usize = parse_env("MAX_SESSIONS", MemoryStore::DEFAULT_MAX_SESSIONS)?;
        let near_cache = match env("NEAR_CACHE").as_deref() {
            None | Some("off") => false,
            Some("on") => true,
            Some(other) => bail!("NEAR_CACHE={other:?}: use on or off"),
        };
        if env("SECRET_KEY").is_none() {
            tracing::warn!(
                "SECRET_KEY is not set: using a random key; sessions will not survive a restart"
            );
        }
        let config = session_config_from_env()?;
        if config.is_secure() && !bind.ip().is_loopback() {
            tracing::warn!(
                "cookies are Secure: browsers send them only over https (or to localhost); \
                 serve through TLS or set COOKIE_SECURE=0 for plain-http development"
            );
        }

        let store: Arc<dyn Store> = match env("REDIS_URL") {
            Some(url) => {
                let mut builder = redis_builder_from_env(&url).await?;
                if near_cache {
                    builder = builder.with_near_cache(NearCache::new());
                }
                let store = builder
                    .connect()
                    .await
                    .with_context(|| format!("cannot use Redis at {}", redacted(&url)))?;
                let shape = if store.is_cluster() {
                    "Redis Cluster"
                } else if url.contains("+sentinel://") {
                    "Redis via Sentinel"
                } else {
                    "Redis"
                };
                let cache = if near_cache { ", near-cache on" } else { "" };
                println!(
                    "{program}: session store: {shape} at {}{cache}",
                    redacted(&url)
                );
                Arc::new(store)
            }
            None => {
                if near_cache {
                    tracing::warn!(
                        "NEAR_CACHE=on applies to Redis only: the memory store is local"
                    );
                }
                println!(
                    "{program}: session store: embedded memory store (at most {max_sessions} sessions; set REDIS_URL to use Redis)"
                );
                Arc::new(
                    MemoryStore::builder()
                        .with_max_sessions(max_sessions)
                        .build(),
                )
            }
        };
        let manager = SessionManager::new(store, crate::pages::session_config(config))
            .context("the session settings are not usable")?;
        Ok(Self {
            bind,
            manager,
            metrics_bind,
        })
    }
}

/// The session settings from the environment: the signing keys (`SECRET_KEY`, a random one
/// when it is not set, `SECRET_KEY_PREVIOUS`, `SECRET_KEY_PREVIOUS_UNTIL`, `SECRET_KEY_NEXT`),
/// `SESSION_TTL`, `COOKIE_SECURE`, `MAX_SESSIONS_PER_USER` and `SESSION_CAP_POLICY`. Shared
/// with the admin CLI, so that both read a session the same way.
///
/// # Errors
///
/// A variable that is not valid, named in the message.
pub fn session_config_from_env() -> anyhow::Result<SessionConfig> {
    let ttl_secs: u64 = parse_env("SESSION_TTL", 1800)?;
    if ttl_secs == 0 {
        bail!("SESSION_TTL must be at least 1 second");
    }
    let secure = flag("COOKIE_SECURE", true)?;
    let secret: Vec<u8> = match env("SECRET_KEY") {
        Some(secret) => secret.into_bytes(),
        None => CookieSigner::random_secret()?.to_vec(),
    };
    // Each key is checked here, so that a mistake names its variable.
    for (variable, key) in [
        ("SECRET_KEY", Some(secret.clone())),
        (
            "SECRET_KEY_PREVIOUS",
            env("SECRET_KEY_PREVIOUS").map(String::into_bytes),
        ),
        (
            "SECRET_KEY_NEXT",
            env("SECRET_KEY_NEXT").map(String::into_bytes),
        ),
    ] {
        if let Some(key) = key {
            CookieSigner::new(&key).with_context(|| {
                format!("{variable} is not usable (generate one with `openssl rand -base64 32`)")
            })?;
        }
    }
    let previous = match (env("SECRET_KEY_PREVIOUS"), env("SECRET_KEY_PREVIOUS_UNTIL")) {
        (None, None) => None,
        (Some(previous), Some(_)) => {
            let until: u64 = parse_env("SECRET_KEY_PREVIOUS_UNTIL", 0)?;
            let Some(retire_at) = std::time::UNIX_EPOCH.checked_add(Duration::from_secs(until))
            else {
                bail!("SECRET_KEY_PREVIOUS_UNTIL={until} is not a time this system can represent");
            };
            Some((previous, retire_at))
        }
        _ => bail!(
            "SECRET_KEY_PREVIOUS and SECRET_KEY_PREVIOUS_UNTIL go together: the old key, and the \
             Unix time (seconds) until which its cookies are accepted (the rotation time plus \
             the longest session lifetime, 30 days with \"Remember me\", logs nobody out)"
        ),
    };
    let idle = Duration::from_secs(ttl_secs);
    let mut config = SessionConfig::new(secret)
        .context("SECRET_KEY is not usable")?
        .with_idle_timeout(idle)
        .with_secure(secure);
    if let Some((previous, retire_at)) = previous {
        config = config
            .with_previous_secret(previous, retire_at)
            .context("SECRET_KEY_PREVIOUS is not usable")?;
    }
    if let Some(next) = env("SECRET_KEY_NEXT") {
        config = config
            .with_next_secret(next)
            .context("SECRET_KEY_NEXT is not usable")?;
    }
    if env("MAX_SESSIONS_PER_USER").is_some() {
        let max: usize = parse_env("MAX_SESSIONS_PER_USER", 0)?;
        if max == 0 {
            bail!("MAX_SESSIONS_PER_USER must be at least 1");
        }
        config = config.with_max_sessions_per_user(max);
    }
    config = config.with_cap_policy(match env("SESSION_CAP_POLICY").as_deref() {
        None | Some("end_oldest" | "end-oldest") => CapPolicy::EndOldest,
        Some("refuse_new" | "refuse-new") => CapPolicy::RefuseNew,
        Some(other) => bail!("SESSION_CAP_POLICY={other:?}: use end-oldest or refuse-new"),
    });
    Ok(config)
}

/// A Redis store builder for `url` with the settings of the environment: `REDIS_CA_FILE`,
/// `REDIS_TIMEOUT_MS`, `REDIS_CLUSTER`, `REDIS_REPLICA_ACKS`, `REDIS_TLS_INSECURE`, and
/// ElastiCache IAM authentication (`REDIS_IAM_USER`, see [`iam_credentials_from_env`]). Shared
/// with the admin CLI, so that both reach Redis the same way.
///
/// # Errors
///
/// A variable that is not valid, named in the message, a CA file that cannot be read, or no AWS
/// credentials for IAM authentication.
pub async fn redis_builder_from_env(url: &str) -> anyhow::Result<RedisStoreBuilder> {
    let mut builder = redis_settings_from_env(url)?;
    if let Some(credentials) = iam_credentials_from_env(url).await? {
        builder = builder.with_credentials(credentials);
    }
    Ok(builder)
}

/// With `REDIS_IAM_USER` set, credentials that log in to the ElastiCache cache of `url` as that
/// user with IAM tokens, made from the standard AWS credential chain (environment, profile, web
/// identity, container, instance) for `AWS_REGION`, renewed every 10 minutes. The cache's name
/// is `REDIS_IAM_CACHE_NAME`, or read from the endpoint in `url` ([`cache_name_of`]).
///
/// # Errors
///
/// `AWS_REGION` missing, a URL without TLS (ElastiCache requires it for IAM), a cache name that
/// cannot be read from the URL, or no AWS credentials.
pub async fn iam_credentials_from_env(url: &str) -> anyhow::Result<Option<Credentials>> {
    let Some(user) = env("REDIS_IAM_USER") else {
        return Ok(None);
    };
    let Some(region) = env("AWS_REGION") else {
        bail!("REDIS_IAM_USER needs AWS_REGION: the region of the ElastiCache cache");
    };
    if !url.starts_with("rediss://") {
        bail!(
            "REDIS_IAM_USER needs a TLS URL (rediss://): ElastiCache takes IAM tokens over TLS only"
        );
    }
    let host = url
        .split_once("://")
        .map(|(_, rest)| rest.rsplit('@').next().unwrap_or(rest))
        .and_then(|rest| rest.split([':', '/']).next())
        .unwrap_or_default();
    let (cache, serverless) = match env("REDIS_IAM_CACHE_NAME") {
        Some(name) => (name, host.contains(".serverless.")),
        None => cache_name_of(host).with_context(|| {
            format!("cannot tell the cache's name from {host}: set REDIS_IAM_CACHE_NAME")
        })?,
    };
    let mut iam = ElastiCacheIam::new(user, cache, region.clone());
    if serverless {
        iam = iam.serverless();
    }
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .http_client(http)
        .load()
        .await;
    let Some(provider) = aws.credentials_provider() else {
        bail!("no AWS credentials provider for IAM authentication");
    };
    let credentials = iam
        .credentials(provider)
        .await
        .context("cannot make an ElastiCache IAM token")?;
    Ok(Some(credentials))
}

/// The cache name (replication group id, or serverless cache name) and whether it is a
/// serverless cache, from an ElastiCache endpoint: `master.NAME.…`, `replica.NAME.…`,
/// `clustercfg.NAME.…`, a node's `NAME-0001-001.NAME.…`, `NAME.xxxxxx.ng.0001.…` or a serverless
/// `NAME-xxxxxx.serverless.…`; `None` for a host that is not an ElastiCache endpoint.
pub fn cache_name_of(host: &str) -> Option<(String, bool)> {
    let host = host.to_ascii_lowercase();
    if !host.ends_with(".cache.amazonaws.com") {
        return None;
    }
    let labels: Vec<&str> = host.split('.').collect();
    let (first, second) = (*labels.first()?, *labels.get(1)?);
    if second == "serverless" {
        // `NAME-ID`: the id is the last hyphenated part.
        let (name, _id) = first.rsplit_once('-')?;
        return Some((name.to_owned(), true));
    }
    let name = if matches!(first, "master" | "replica" | "clustercfg")
        || first.starts_with(&format!("{second}-"))
    {
        second
    } else {
        first
    };
    Some((name.to_owned(), false))
}

fn redis_settings_from_env(url: &str) -> anyhow::Result<RedisStoreBuilder> {
    let mut builder = RedisStore::builder(url);
    if let Some(path) = env("REDIS_CA_FILE") {
        let pem =
            std::fs::read(&path).with_context(|| format!("cannot read REDIS_CA_FILE {path}"))?;
        builder = builder.with_root_certificate_pem(pem);
    }
    let timeout_ms: u64 = parse_env("REDIS_TIMEOUT_MS", 1000)?;
    if timeout_ms == 0 {
        bail!("REDIS_TIMEOUT_MS must be at least 1");
    }
    let timeout = Duration::from_millis(timeout_ms);
    builder = builder
        .with_operation_timeout(timeout)
        .with_connect_timeout(timeout);
    builder = builder.with_cluster_mode(match env("REDIS_CLUSTER").as_deref() {
        None | Some("auto") => ClusterMode::Auto,
        Some("1" | "true" | "yes") => ClusterMode::Cluster,
        Some("0" | "false" | "no") => ClusterMode::Standalone,
        Some(other) => bail!("REDIS_CLUSTER={other:?}: use auto, yes or no"),
    });
    let replicas: u32 = parse_env("REDIS_REPLICA_ACKS", 0)?;
    if replicas > 0 {
        builder = builder.with_replica_acks(ReplicaAcks::on_deletes(
            replicas,
            Duration::from_millis(100),
        ));
    }
    if flag("REDIS_TLS_INSECURE", false)? {
        builder = builder.danger_accept_invalid_certificates();
    }
    Ok(builder)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_env<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match env(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid value")),
    }
}

/// A yes/no setting: `1`, `true`, `yes` or `0`, `false`, `no`; anything else is an error rather
/// than a silent default.
fn flag(name: &str, default: bool) -> anyhow::Result<bool> {
    match env(name).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "yes") => Ok(true),
        Some("0" | "false" | "no") => Ok(false),
        Some(other) => bail!("{name}={other:?}: use 1, true, yes, 0, false or no"),
    }
}

/// The URL without its password, for printing.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::cache_name_of;

    #[test]
    fn the_cache_name_is_read_from_each_kind_of_elasticache_endpoint() {
        for (host, expected) in [
            (
                "master.sessions.abc123.use1.cache.amazonaws.com",
                Some(("sessions", false)),
            ),
            (
                "replica.sessions.abc123.use1.cache.amazonaws.com",
                Some(("sessions", false)),
            ),
            (
                "clustercfg.sessions.abc123.use1.cache.amazonaws.com",
                Some(("sessions", false)),
            ),
            (
                "sessions-0001-001.sessions.abc123.use1.cache.amazonaws.com",
                Some(("sessions", false)),
            ),
            (
                "sessions.abc123.ng.0001.use1.cache.amazonaws.com",
                Some(("sessions", false)),
            ),
            (
                "my-cache-abc123.serverless.use1.cache.amazonaws.com",
                Some(("my-cache", true)),
            ),
            (
                "Sessions.abc123.ng.0001.use1.cache.amazonaws.com",
                Some(("sessions", false)),
            ),
            ("redis.internal.example", None),
        ] {
            let found = cache_name_of(host);
            assert_eq!(
                found
                    .as_ref()
                    .map(|(name, serverless)| (name.as_str(), *serverless)),
                expected,
                "{host}"
            );
        }
    }
}
