//! Redis, Valkey and Amazon ElastiCache store for cloakroom sessions.
//!
//! Each session is one Redis HASH named `PREFIX + base64url(SHA-256(token))`, holding one field
//! per session field (JSON text, so `redis-cli HGETALL` is readable and counters stay decimal
//! for `HINCRBY`) and two reserved fields, `__created` and `__deadline`. Every operation is one
//! Lua script on that one key, sent with `EVALSHA`: one round trip, atomic, and cluster-safe
//! because no script touches a second key. Request paths never use `KEYS`, `SCAN`, `CONFIG` or
//! `RENAME`.
//!
//! The same URL serves a standalone server and a cluster: the store asks the seed node whether
//! it is part of a cluster (see [`ClusterMode`]) and then uses redis-rs's auto-reconnecting
//! [`ConnectionManager`](redis::aio::ConnectionManager) or its cluster client, which discovers
//! the nodes, follows `MOVED`/`ASK` and refreshes its slot map after a failover or a reshard.
//! Every operation is bounded by a timeout (one second by default), so while Redis is
//! unreachable requests fail fast with [`ErrorKind::Unavailable`] and succeed again once it is
//! back, without a restart.

mod connection;
mod eviction;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cloakroom_core::store::parse_millis;
use cloakroom_core::store::{
    Applied, Apply, Created, Fields, META_DEADLINE, NewSession, Op, Store, check_ops,
};
use cloakroom_core::{Error, ErrorKind, IndexEntry, Result, SessionKey, UserKey};
use redis::{Script, Value};

pub use crate::connection::ClusterMode;
use crate::connection::Connection;
pub use crate::eviction::EvictionPolicy;

/// Default prefix of session keys.
pub const DEFAULT_PREFIX: &str = "cloakroom:";
/// Default bound on each operation, reconnection included.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(1);

// The share of the operation timeout that no `WAIT` may use: kept for the round trip that
// brings the answer back (a tenth: 100 ms of the default second).
const ROUND_TRIP_SHARE: u32 = 10;

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
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.connection.is_cluster())
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .field("replica_acks", &self.replica_acks)
            .finish_non_exhaustive()
    }
}

/// Which writes wait for replicas (Redis `WAIT`) before they are acknowledged.
///
/// Replication is asynchronous: a write the primary acknowledged can be lost if the primary dies
/// before a replica has it and the replica is promoted. For most session writes that only
/// costs a visit count or a login, but a lost *delete* brings a logged-out session back. With
/// this set, the write and a `WAIT` go out together in one pipeline (still one round trip), on a
/// connection of their own so that no other request queues behind a `WAIT`. A write that fewer
/// replicas confirmed within the timeout is logged and counted
/// ([`RedisStore::unconfirmed_writes`]); it still happened on the primary, so it is not an
/// error unless [`ReplicaAcks::required`] says so. Writes that wait share their connection, so
/// while replicas are missing they queue one `WAIT` timeout each; a write whose caller gave up
/// in the queue may still run later, as after any timeout.
///
/// A write that takes several hops (`MOVED` or `ASK` during a failover or a reshard, a lost
/// script cache) sends a `WAIT` with each, and a refused hop's `WAIT` still blocks on a node
/// whose replicas lag. So the whole call stays within the operation timeout: each `WAIT` gets
/// the configured timeout at most, and never more than half of what is left of the operation
/// timeout once a tenth of it is kept for the answer. A write left no time to wait is sent
/// alone and counts as unconfirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaAcks {
    replicas: u32,
    timeout: Duration,
    every_write: bool,
    required: bool,
}

impl ReplicaAcks {
    /// Deletes (logout, and the old id when a session id rotates) wait until `replicas`
    /// replicas have them, or `timeout` passes. The timeout must be shorter than half the
    /// operation timeout.
    pub fn on_deletes(replicas: u32, timeout: Duration) -> Self {
        Self {
            replicas,
            timeout,
            every_write: false,
            required: false,
        }
    }

    /// Every write waits: creates, field writes and increments too. Each write then costs the
    /// replication delay.
    pub fn on_every_write(replicas: u32, timeout: Duration) -> Self {
        Self {
            every_write: true,
            ..Self::on_deletes(replicas, timeout)
        }
    }

    /// An unconfirmed write becomes an error ([`ErrorKind::Unavailable`], so a 503) instead of
    /// a warning: the caller never takes a write for durable unless a replica has it. The write
    /// did happen on the primary, so its outcome is unknown, as after a timeout. While a shard
    /// has no live replica, its writes fail.
    pub fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }
}

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
}

impl RedisStore {
    /// A builder for a store at `url`: `redis://[user:password@]host[:port][/db]` or
    /// `rediss://...` for TLS (certificates verified against the system's roots). In cluster
    /// mode the URL names any one node, or ElastiCache's configuration endpoint.
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
        }
    }

    /// Connects to `url` with the default settings.
    pub async fn connect(url: impl Into<String>) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// Whether the store talks to a cluster (detected at start-up, or as configured).
    pub fn is_cluster(&self) -> bool {
        self.connection.is_cluster()
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
    fn index_key(&self, user: &UserKey) -> String {
        format!("{}user:{}", self.prefix, user.as_str())
    }

    async fn run_index(
        &self,
        user: &UserKey,
        now_ms: u64,
        op: &str,
        key: Option<&SessionKey>,
        // 'A': the session's deadline; 'R': when the entry was written.
        time_ms: Option<u64>,
        replica_acks: Option<ReplicaAcks>,
    ) -> Result<Value> {
        let index_key = self.index_key(user);
        self.run_on(&self.index, &index_key, replica_acks, false, |inv| {
            inv.arg(now_ms).arg(op);
            if let Some(key) = key {
                inv.arg(key.as_str());
            }
            if let Some(time) = time_ms {
                inv.arg(time);
            }
        })
        .await
    }

    fn waits_on_every_write(&self) -> Option<ReplicaAcks> {
        self.replica_acks.filter(|acks| acks.every_write)
    }

    // One EVALSHA on one key. The command is built by hand rather than through redis-rs's
    // script invocation, which copies every argument once more; if the server has lost its
    // script cache (restart, failover, SCRIPT FLUSH) the source is sent once with EVAL, which
    // caches it again.
    async fn run(
        &self,
        script: &ScriptSource,
        key: &SessionKey,
        replica_acks: Option<ReplicaAcks>,
        idempotent: bool,
        add_args: impl Fn(&mut redis::Cmd),
    ) -> Result<Value> {
        let redis_key = self.redis_key(key);
        self.run_on(script, &redis_key, replica_acks, idempotent, add_args)
            .await
    }

    async fn run_on(
        &self,
        script: &ScriptSource,
        redis_key: &str,
        replica_acks: Option<ReplicaAcks>,
        idempotent: bool,
        add_args: impl Fn(&mut redis::Cmd),
    ) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + self.operation_timeout;
        let attempt = || async {
            // Sized for a typical call, so that building it does not reallocate.
            let mut cmd = redis::Cmd::with_capacity(16, 256);
            cmd.arg("EVALSHA").arg(&script.sha).arg(1).arg(redis_key);
            add_args(&mut cmd);
            match self.send(cmd, replica_acks, deadline).await {
                Err(e) if e.code() == Some("NOSCRIPT") => {
                    let mut cmd = redis::cmd("EVAL");
                    cmd.arg(script.source).arg(1).arg(redis_key);
                    add_args(&mut cmd);
                    self.send(cmd, replica_acks, deadline).await
                }
                other => other,
            }
        };
        let call = async {
            match attempt().await {
                // A connection that broke while idle (its server restarted, or failed over) is
                // found out by the first request sent on it. A read may be sent again on the
                // fresh connection: running it twice changes nothing. A write may not, since
                // it may have run.
                Err(e) if idempotent && e.is_connection_dropped() => attempt().await,
                other => other,
            }
        };
        let (reply, confirmed) = bounded(self.operation_timeout, "answer", call).await?;
        self.settle(confirmed, replica_acks)?;
        Ok(reply)
    }

    // Sends one command; when replicas must confirm, it goes with a `WAIT` in one pipeline over
    // the connection kept for such writes: Redis serves nothing else on a connection blocked in
    // `WAIT`, and every other request must not queue behind it. Every `WAIT` of the call (one
    // per hop: redirections, a lost script cache) fits before `deadline`, so the call answers
    // with the write's real outcome instead of timing out after it ran.
    async fn send(
        &self,
        cmd: redis::Cmd,
        replica_acks: Option<ReplicaAcks>,
        deadline: tokio::time::Instant,
    ) -> redis::RedisResult<(Value, bool)> {
        let (Some(acks), Some(connection)) = (replica_acks, &self.acks_connection) else {
            return Ok((self.connection.query(&cmd).await?, true));
        };
        let wait = connection::AckWait {
            replicas: acks.replicas,
            timeout: acks.timeout,
            deadline,
            margin: self.operation_timeout / ROUND_TRIP_SHARE,
        };
        let (reply, confirmed) = connection.query_acked(&cmd, wait).await?;
        // The command's outcome first; a `WAIT` that did not answer with a count confirmed
        // nothing.
        let reply = reply.extract_error()?;
        let confirmed = matches!(confirmed, Value::Int(n) if n >= i64::from(acks.replicas));
        Ok((reply, confirmed))
    }

    // What an unconfirmed write means: counted and logged, and an error when confirmation is
    // required.
    fn settle(&self, confirmed: bool, acks: Option<ReplicaAcks>) -> Result<()> {
        let Some(acks) = acks.filter(|_| !confirmed) else {
            return Ok(());
        };
        self.unconfirmed_writes.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            wanted = acks.replicas,
            "a session write was not confirmed by enough replicas in time; a failover now could \
             undo it"
        );
        if acks.required {
            return Err(Error::new(
                ErrorKind::Unavailable,
                "the write was not confirmed by enough replicas in time; it happened on the \
                 primary but may not survive a failover",
            ));
        }
        Ok(())
    }
}

// Runs a Redis call within `limit`: a late answer is `Unavailable`, like a refused connection,
// and Redis's own errors are mapped to their kinds.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(map_error),
        Err(_) => Err(Error::new(
            ErrorKind::Unavailable,
            format!("Redis did not {what} within {} ms", limit.as_millis()),
        )),
    }
}

/// A Lua script and its SHA-1, as `EVALSHA` names it.
#[derive(Clone)]
struct ScriptSource {
    source: &'static str,
    sha: String,
}

impl ScriptSource {
    fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: Script::new(source).get_hash().to_owned(),
        }
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

fn map_error(e: redis::RedisError) -> Error {
    let kind = if e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_io_error()
    {
        ErrorKind::Unavailable
    } else {
        match e.code() {
            Some("NOTINT") => ErrorKind::NotAnInteger,
            Some("RANGE") => ErrorKind::OutOfRange,
            Some("TOOLARGE") => ErrorKind::TooLarge,
            Some("WRONGTYPE" | "CORRUPT") => ErrorKind::Corrupt,
            _ => match e.kind() {
                redis::ErrorKind::AuthenticationFailed | redis::ErrorKind::InvalidClientConfig => {
                    ErrorKind::Config
                }
                redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
                | redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain)
                | redis::ErrorKind::Server(redis::ServerErrorKind::ClusterDown)
                | redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown)
                // Cluster mode: no connection to the node owning the slot (it is down, or the
                // slot map is being refreshed after a failover).
                | redis::ErrorKind::ClusterConnectionNotFound => {
                    ErrorKind::Unavailable
                }
                _ => ErrorKind::Backend,
            },
        }
    };
    let message = match kind {
        ErrorKind::NotAnInteger => "session field does not hold an integer",
        ErrorKind::OutOfRange => "session counter would leave ±(2^53 − 1)",
        ErrorKind::Corrupt => "a session key holds data cloakroom did not write",
        ErrorKind::Unavailable => "Redis is unavailable",
        ErrorKind::Config => "Redis refused the connection settings",
        _ => "Redis returned an error",
    };
    Error::with_source(kind, message, e)
}

fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorKind::Corrupt,
        format!("unexpected reply from Redis: {what}"),
    )
}

// Arguments go straight into the command buffer: no intermediate strings.
fn add_op_args(invocation: &mut redis::Cmd, apply: &Apply) {
    invocation
        .arg(apply.access.now_ms)
        .arg(apply.access.idle_ms)
        .arg(if apply.load { "1" } else { "0" });
    match apply.bounds {
        Some(bounds) => invocation.arg(bounds.max_fields).arg(bounds.max_bytes),
        None => invocation.arg("").arg(""),
    };
    for op in &apply.ops {
        match op {
            Op::Set { name, value } => {
                invocation.arg("S").arg(name).arg(value);
            }
            Op::Remove { name } => {
                invocation.arg("D").arg(name);
            }
            Op::Incr { name, by } => {
                invocation.arg("I").arg(name).arg(*by);
            }
            _ => {}
        }
    }
}

// The script returns the HGETALL list as one JSON array of strings (built by Redis's cjson): one
// reply item instead of two per field, which is cheaper to produce and to parse.
fn parse_fields(value: Value) -> Result<Fields> {
    let Value::BulkString(bytes) = value else {
        return Err(corrupt("the fields are not a JSON text"));
    };
    // An empty Lua table encodes as `{}`.
    if bytes.as_slice() == b"{}" {
        return Ok(Fields::new());
    }
    match serde_json::from_slice::<FlatFields>(&bytes) {
        Ok(flat) => Ok(flat.0),
        // cjson passes bytes that are not UTF-8 through as they are: a field written into the
        // hash by something other than cloakroom. Read the strings as bytes, and leave out
        // exactly the fields whose name or value is not text.
        Err(_) if std::str::from_utf8(&bytes).is_err() => {
            let pairs = serde_json::from_slice::<Vec<JsonBytes>>(&bytes)
                .map_err(|_| corrupt("the fields are not a JSON array of name, value strings"))?;
            if pairs.len() % 2 != 0 {
                return Err(corrupt("a session field has no value"));
            }
            let mut fields = Fields::with_capacity(pairs.len() / 2);
            let mut unreadable = 0usize;
            let mut pairs = pairs.into_iter();
            while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
                match (String::from_utf8(name.0), String::from_utf8(value.0)) {
                    (Ok(name), Ok(value)) => {
                        fields.insert(name, value);
                    }
                    _ => unreadable += 1,
                }
            }
            warn_unreadable(unreadable);
            Ok(fields)
        }
        Err(_) => Err(corrupt(
            "the fields are not a JSON array of name, value strings",
        )),
    }
}

// Fields that are not UTF-8 text were not written by cloakroom: they are left out of what is
// read, and that is said.
fn warn_unreadable(dropped: usize) {
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "a session holds fields that are not UTF-8 text; they are left out of what is read"
        );
    }
}

/// A JSON string read as its bytes (escapes decoded, UTF-8 not required): serde_json's
/// `deserialize_bytes` reads strings this way.
struct JsonBytes(Vec<u8>);

impl<'de> serde::Deserialize<'de> for JsonBytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl serde::de::Visitor<'_> for Bytes {
            type Value = JsonBytes;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<JsonBytes, E> {
                Ok(JsonBytes(bytes.to_vec()))
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<JsonBytes, E> {
                Ok(JsonBytes(text.as_bytes().to_vec()))
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

/// `["name", "value", ...]` read straight into a map, without an intermediate list.
struct FlatFields(Fields);

impl<'de> serde::Deserialize<'de> for FlatFields {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = FlatFields;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of name, value strings")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<FlatFields, A::Error> {
                let mut fields = Fields::with_capacity(seq.size_hint().unwrap_or(8) / 2);
                while let Some(name) = seq.next_element::<String>()? {
                    let value = seq
                        .next_element::<String>()?
                        .ok_or_else(|| serde::de::Error::custom("a name without a value"))?;
                    fields.insert(name, value);
                }
                Ok(FlatFields(fields))
            }
        }
        deserializer.deserialize_seq(Pairs)
    }
}

fn after_ops(mut fields: Fields, ops: &[Op], counters: &[i64]) -> Result<Fields> {
    let mut counters = counters.iter();
    for op in ops {
        match op {
            Op::Set { name, value } => {
                fields.insert(name.clone(), value.clone());
            }
            Op::Remove { name } => {
                fields.remove(name);
            }
            Op::Incr { name, .. } => {
                let value = counters
                    .next()
                    .ok_or_else(|| corrupt("fewer counters than increments"))?;
                fields.insert(name.clone(), value.to_string());
            }
            _ => {}
        }
    }
    Ok(fields)
}

#[async_trait]
impl Store for RedisStore {
    async fn create(&self, key: &SessionKey, session: &NewSession) -> Result<Created> {
        let ttl = session.access.ttl_ms(session.deadline_ms);
        if ttl <= 0 {
            return Err(Error::new(
                ErrorKind::Config,
                "a new session must have a deadline in the future",
            ));
        }
        let add_args = |inv: &mut redis::Cmd| {
            inv.arg(ttl);
            for (name, value) in &session.fields {
                inv.arg(name).arg(value);
            }
        };
        let acks = self.waits_on_every_write();
        match self.run(&self.create, key, acks, false, add_args).await? {
            Value::Int(1) => Ok(Created::Created),
            Value::Int(0) => Ok(Created::Exists),
            _ => Err(corrupt("create answered neither 0 nor 1")),
        }
    }

    async fn apply(&self, key: &SessionKey, apply: &Apply) -> Result<Applied> {
        // Reserved names and increments beyond ±(2^53 − 1) (which the script, adding in double
        // precision, would round) are refused before anything is sent.
        check_ops(&apply.ops)?;
        for op in &apply.ops {
            if !matches!(op, Op::Set { .. } | Op::Remove { .. } | Op::Incr { .. }) {
                // A kind of change this store does not know must fail, not vanish.
                return Err(Error::new(
                    ErrorKind::Backend,
                    "the Redis store does not support this session operation",
                ));
            }
        }
        // Reads (no ops) never wait for replicas.
        let acks = self
            .waits_on_every_write()
            .filter(|_| !apply.ops.is_empty());
        let reply = self
            .run(&self.apply, key, acks, apply.ops.is_empty(), |inv| {
                add_op_args(inv, apply)
            })
            .await?;
        let parts = match reply {
            Value::Nil | Value::Boolean(false) => return Ok(Applied::Missing),
            // A lone increment: the new value, or every field after it.
            Value::Int(counter) => {
                return Ok(Applied::Done {
                    counters: vec![counter],
                    fields: None,
                });
            }
            Value::BulkString(_) => {
                let fields = parse_fields(reply)?;
                let Some(Op::Incr { name, .. }) = apply.ops.first() else {
                    return Err(corrupt(
                        "apply answered fields to a step that is not an increment",
                    ));
                };
                let counter = fields
                    .get(name)
                    .and_then(|v| v.parse::<i64>().ok())
                    .ok_or_else(|| corrupt("the incremented field is missing from the reply"))?;
                return Ok(Applied::Done {
                    counters: vec![counter],
                    fields: Some(fields),
                });
            }
            Value::Array(parts) if parts.len() == 2 => parts,
            _ => return Err(corrupt("apply answered an unexpected shape")),
        };
        let mut parts = parts.into_iter();
        let (Some(counters), Some(fields)) = (parts.next(), parts.next()) else {
            return Err(corrupt("apply answered an unexpected shape"));
        };
        let counters = match counters {
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::Int(n) => Ok(n),
                    _ => Err(corrupt("a counter is not an integer")),
                })
                .collect::<Result<Vec<i64>>>()?,
            // An empty Lua table may come back as an empty array or a nil.
            Value::Nil => Vec::new(),
            _ => return Err(corrupt("counters are not a list")),
        };
        let fields = match fields {
            Value::Int(0) => None,
            // The script returns the fields as they were before the ops (one HGETALL serves to
            // read the deadline too); the ops' effect is known here, so apply it.
            before => Some(after_ops(parse_fields(before)?, &apply.ops, &counters)?),
        };
        Ok(Applied::Done { counters, fields })
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool> {
        let mut cmd = redis::cmd("DEL");
        cmd.arg(self.redis_key(key));
        let deadline = tokio::time::Instant::now() + self.operation_timeout;
        let (deleted, confirmed) = bounded(
            self.operation_timeout,
            "answer DEL",
            self.send(cmd, self.replica_acks, deadline),
        )
        .await?;
        self.settle(confirmed, self.replica_acks)?;
        Ok(matches!(deleted, Value::Int(n) if n > 0))
    }

    async fn peek(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Fields>> {
        // A plain read: it neither slides the TTL nor needs the script.
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(self.redis_key(key));
        let reply = bounded(
            self.operation_timeout,
            "answer HGETALL",
            self.connection.query::<Value>(&cmd),
        )
        .await?;
        let fields = parse_field_pairs(reply)?;
        if fields.is_empty() {
            return Ok(None);
        }
        // The same reading of the deadline as the script's, with the same outcome.
        let deadline = fields
            .get(META_DEADLINE)
            .and_then(|d| parse_millis(d))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    "a session key holds data cloakroom did not write",
                )
            })?;
        Ok((deadline > now_ms).then_some(fields))
    }

    async fn index_add(
        &self,
        user: &UserKey,
        key: &SessionKey,
        deadline_ms: u64,
        now_ms: u64,
    ) -> Result<()> {
        // Like a delete, an index entry protects a logout: it waits for replicas whenever
        // deletes do.
        self.run_index(
            user,
            now_ms,
            "A",
            Some(key),
            Some(deadline_ms),
            self.replica_acks,
        )
        .await?;
        Ok(())
    }

    async fn index_remove(&self, user: &UserKey, entry: &IndexEntry, now_ms: u64) -> Result<()> {
        let acks = self.waits_on_every_write();
        let written = Some(entry.written_ms);
        self.run_index(user, now_ms, "R", Some(&entry.key), written, acks)
            .await?;
        Ok(())
    }

    async fn index_members(&self, user: &UserKey, now_ms: u64) -> Result<Vec<IndexEntry>> {
        let reply = self.run_index(user, now_ms, "L", None, None, None).await?;
        let items = match reply {
            Value::Array(items) => items,
            Value::Nil => Vec::new(),
            _ => return Err(corrupt("the user index is not a list")),
        };
        let text = |value: &Value| match value {
            Value::BulkString(bytes) => std::str::from_utf8(bytes).ok().map(str::to_owned),
            _ => None,
        };
        let mut members = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks(2) {
            let member = pair.first().and_then(text);
            // Scores are written as integers; Redis prints them back as such below 2^53.
            let deadline = pair.get(1).and_then(text).and_then(|t| parse_millis(&t));
            match (member.as_deref().and_then(parse_member), deadline) {
                (Some((key, written)), Some(deadline)) => {
                    members.push(IndexEntry::new(key, deadline, written));
                }
                // Not written by cloakroom: skipped, so one bad entry cannot keep the others
                // from being listed or ended.
                _ => tracing::warn!("a user index holds an entry that is not a session key"),
            }
        }
        // One entry per session, the latest written, should a key ever be listed twice.
        members.sort_by(|a, b| (&a.key, b.written_ms).cmp(&(&b.key, a.written_ms)));
        members.dedup_by(|later, kept| later.key == kept.key);
        members.sort_by_key(|entry| entry.deadline_ms);
        Ok(members)
    }
}

// An index member, `SESSIONKEY:WRITTEN`. A member without a time (written before entries
// carried one) counts as written long ago.
fn parse_member(member: &str) -> Option<(SessionKey, u64)> {
    let (key, written) = match member.split_once(':') {
        Some((key, written)) => (key, parse_millis(written)?),
        None => (member, 0),
    };
    Some((SessionKey::from_stored(key)?, written))
}

// An HGETALL reply read into fields; names and values must be UTF-8 text.
fn parse_field_pairs(reply: Value) -> Result<Fields> {
    let items = match reply {
        Value::Array(items) => items,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        Value::Nil => Vec::new(),
        _ => return Err(corrupt("the session is not a list of fields")),
    };
    // `None` for bytes that are not UTF-8: such a field is left out, as the script's reply
    // reader does.
    let text = |value: Value| match value {
        Value::BulkString(bytes) => Ok(String::from_utf8(bytes).ok()),
        _ => Err(corrupt("a session field is not a string")),
    };
    let mut fields = Fields::with_capacity(items.len() / 2);
    let mut unreadable = 0usize;
    let mut items = items.into_iter();
    while let Some(name) = items.next() {
        let value = items
            .next()
            .ok_or_else(|| corrupt("a session field has no value"))?;
        match (text(name)?, text(value)?) {
            (Some(name), Some(value)) => {
                fields.insert(name, value);
            }
            _ => unreadable += 1,
        }
    }
    warn_unreadable(unreadable);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(json: &str) -> Result<Fields> {
        parse_fields(Value::BulkString(json.as_bytes().to_vec()))
    }

    #[test]
    fn field_lists_parse_into_maps() -> Result<()> {
        let parsed = fields(r#"["username","\"ann\"","visits","3"]"#)?;
        assert_eq!(parsed.get("username").map(String::as_str), Some("\"ann\""));
        assert_eq!(parsed.get("visits").map(String::as_str), Some("3"));
        assert!(fields("{}")?.is_empty());
        Ok(())
    }

    #[test]
    fn fields_that_are_not_utf8_are_left_out_and_no_other() -> Result<()> {
        // As cjson writes them: `a` holds a genuine U+FFFD, `b`'s value and the name of the
        // third field are not UTF-8, `c` is plain.
        let mut raw = Vec::new();
        raw.extend_from_slice("[\"a\",\"\\\"\u{fffd}\\\"\",\"b\",\"\\\"".as_bytes());
        raw.push(0xff);
        raw.extend_from_slice(b"\\\"\",\"");
        raw.push(0xc0);
        raw.extend_from_slice(b"\",\"1\",\"c\",\"2\"]");
        let parsed = parse_fields(Value::BulkString(raw))?;
        assert_eq!(parsed.len(), 2, "{parsed:?}");
        assert_eq!(parsed.get("a").map(String::as_str), Some("\"\u{fffd}\""));
        assert_eq!(parsed.get("c").map(String::as_str), Some("2"));
        Ok(())
    }

    #[test]
    fn malformed_field_lists_are_corruption_not_panics() {
        for bad in [
            r#"["a"]"#,
            r#"["a",1]"#,
            r#"{"a":"b"}"#,
            "not json",
            "",
            "[\"\u{0}",
        ] {
            let kind = fields(bad).map_err(|e| e.kind());
            assert_eq!(kind, Err(ErrorKind::Corrupt), "{bad:?}");
        }
        let kind = parse_fields(Value::Int(3)).map_err(|e| e.kind());
        assert_eq!(kind, Err(ErrorKind::Corrupt));
    }
}
