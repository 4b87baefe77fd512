//! What the store holds, counted by scanning every primary: for operators and their tools
//! (`cloakroom-admin stats`), never on a request path. `SCAN` walks the keyspace a batch at a
//! time, so the server keeps serving while it runs; `KEYS` would block it.

use std::time::Duration;

use cloakroom_core::{Error, ErrorKind, Result};
use redis::Value;
use redis::aio::MultiplexedConnection;

use crate::RedisStore;
use crate::errors::map_error;

// Keys asked of `SCAN` per call: large enough to keep round trips few, small enough to keep
// each call short on the server.
const SCAN_COUNT: u64 = 1000;

/// What [`RedisStore::inventory`] found under the store's prefix.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Inventory {
    /// The primaries scanned.
    pub primaries: usize,
    /// Session hashes.
    pub sessions: u64,
    /// Session hashes without a TTL: a session that would never expire. Cloakroom writes none;
    /// anything here was written by something else, and should be 0.
    pub sessions_without_ttl: u64,
    /// Fields of all sessions, reserved ones included.
    pub session_fields: u64,
    /// Bytes of all sessions as `MEMORY USAGE` reports them (`None` when the Redis user may not
    /// run it).
    pub session_bytes: Option<u64>,
    /// Milliseconds left of each session's TTL, sorted: their spread says when they will expire.
    pub ttl_ms: Vec<u64>,
    /// Per-user indexes (sorted sets; they have no TTL on purpose, see `index.lua`).
    pub indexes: u64,
    /// Entries of all indexes.
    pub index_entries: u64,
    /// Entries of the largest index.
    pub largest_index: u64,
    /// Other keys under the prefix, of a type or name cloakroom does not write.
    pub other_keys: u64,
}

impl Inventory {
    /// The TTL left at quantile `q` (0 to 1) of the sessions, if there are any.
    pub fn ttl_quantile(&self, q: f64) -> Option<Duration> {
        let last = self.ttl_ms.len().checked_sub(1)?;
        let at = ((last as f64) * q.clamp(0.0, 1.0)).round() as usize;
        self.ttl_ms.get(at).map(|&ms| Duration::from_millis(ms))
    }
}

impl RedisStore {
    /// Counts what the store holds under its prefix on every primary (see [`Inventory`]),
    /// calling `progress` with the number of keys seen so far after each batch. A whole-keyspace
    /// walk: for tools, never for requests.
    ///
    /// # Errors
    ///
    /// A primary that cannot be reached or scanned ([`ErrorKind::Unavailable`],
    /// [`ErrorKind::Backend`]; `NOPERM` names the command the Redis user lacks).
    pub async fn inventory(&self, mut progress: impl FnMut(u64)) -> Result<Inventory> {
        let mut inventory = Inventory::default();
        let mut memory_usage = true;
        let mut bytes = 0u64;
        let mut seen = 0u64;
        let primaries = self.nodes.primaries(&self.connection).await?;
        inventory.primaries = primaries.len();
        for address in &primaries {
            let client = self.nodes.resp3_client(address)?;
            let config = self
                .nodes
                .with_credentials(redis::AsyncConnectionConfig::new());
            let mut node = tokio::time::timeout(
                self.operation_timeout,
                client.get_multiplexed_async_connection_with_config(&config),
            )
            .await
            .map_err(|_| Error::new(ErrorKind::Unavailable, "a primary did not answer in time"))?
            .map_err(map_error)?;
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}*", glob_escaped(&self.prefix)))
                    .arg("COUNT")
                    .arg(SCAN_COUNT);
                let (next, keys): (u64, Vec<String>) =
                    scan.query_async(&mut node).await.map_err(map_error)?;
                seen += keys.len() as u64;
                self.count_batch(
                    &mut node,
                    &keys,
                    &mut inventory,
                    &mut memory_usage,
                    &mut bytes,
                )
                .await?;
                progress(seen);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        inventory.session_bytes = memory_usage.then_some(bytes);
        inventory.ttl_ms.sort_unstable();
        Ok(inventory)
    }

    // Counts a batch of keys found by the scan in two round trips: each key's type and TTL,
    // then the length (and, when allowed, the size) of each session and index.
    async fn count_batch(
        &self,
        node: &mut MultiplexedConnection,
        keys: &[String],
        inventory: &mut Inventory,
        memory_usage: &mut bool,
        bytes: &mut u64,
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut looks = redis::pipe();
        for key in keys {
            looks.cmd("TYPE").arg(key).cmd("PTTL").arg(key);
        }
        let looked: Vec<(String, i64)> = looks.query_async(node).await.map_err(map_error)?;
        let mut lengths = redis::pipe();
        // Optional: a Redis user granted only what cloakroom needs may not run `MEMORY`.
        lengths.ignore_errors();
        let mut asked = Vec::new();
        for (key, (kind, ttl)) in keys.iter().zip(looked) {
            let name = key.strip_prefix(self.prefix.as_str()).unwrap_or(key);
            match (kind.as_str(), name.strip_prefix("user:")) {
                ("hash", None) if !name.contains(':') => {
                    inventory.sessions += 1;
                    match u64::try_from(ttl) {
                        Ok(ttl) => inventory.ttl_ms.push(ttl),
                        Err(_) => inventory.sessions_without_ttl += 1,
                    }
                    lengths.cmd("HLEN").arg(key);
                    asked.push(Asked::SessionFields);
                    if *memory_usage {
                        lengths.cmd("MEMORY").arg("USAGE").arg(key);
                        asked.push(Asked::SessionBytes);
                    }
                }
                ("zset", Some(_)) => {
                    inventory.indexes += 1;
                    lengths.cmd("ZCARD").arg(key);
                    asked.push(Asked::IndexEntries);
                }
                // Gone between the scan and the look (expired, logged out).
                ("none", _) => {}
                _ => inventory.other_keys += 1,
            }
        }
        if asked.is_empty() {
            return Ok(());
        }
        let answers: Vec<redis::RedisResult<Option<u64>>> =
            lengths.query_async(node).await.map_err(map_error)?;
        for (asked, answer) in asked.into_iter().zip(answers) {
            // A key gone meanwhile counts 0; a refused `MEMORY USAGE` turns sizes off.
            match (asked, answer) {
                (Asked::SessionBytes, Err(_)) => *memory_usage = false,
                (Asked::SessionBytes, Ok(size)) => *bytes += size.unwrap_or(0),
                (_, Err(e)) => return Err(map_error(e)),
                (Asked::SessionFields, Ok(n)) => inventory.session_fields += n.unwrap_or(0),
                (Asked::IndexEntries, Ok(n)) => {
                    let n = n.unwrap_or(0);
                    inventory.index_entries += n;
                    inventory.largest_index = inventory.largest_index.max(n);
                }
            }
        }
        Ok(())
    }
}

// What one command of the second pipeline of a batch asked.
#[derive(Clone, Copy)]
enum Asked {
    SessionFields,
    SessionBytes,
    IndexEntries,
}

// `text` as a `SCAN MATCH` pattern that matches itself only.
fn glob_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The server's version and shape, for a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerInfo {
    /// `redis` or `valkey`.
    pub server: String,
    /// The version it reports.
    pub version: String,
    /// `CLUSTER INFO`'s `cluster_state` (`ok` or `fail`), for a cluster.
    pub cluster_state: Option<String>,
    /// The primaries the store would scan or track.
    pub primaries: usize,
}

impl RedisStore {
    /// The server's name and version (`INFO server`) and, for a cluster, its state.
    ///
    /// # Errors
    ///
    /// The server cannot be reached, or the Redis user may not run `INFO` or `CLUSTER INFO`.
    pub async fn server_info(&self) -> Result<ServerInfo> {
        let mut info = redis::cmd("INFO");
        info.arg("server");
        let text = text_of(
            self.connection
                .query::<Value>(&info)
                .await
                .map_err(map_error)?,
        );
        let field = |name: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        };
        let (server, version) = match field("valkey_version") {
            Some(version) => ("valkey".to_owned(), version),
            None => (
                "redis".to_owned(),
                field("redis_version").unwrap_or_else(|| "unknown".to_owned()),
            ),
        };
        let cluster_state = if self.connection.is_cluster() {
            let mut cluster = redis::cmd("CLUSTER");
            cluster.arg("INFO");
            let text = text_of(
                self.connection
                    .query::<Value>(&cluster)
                    .await
                    .map_err(map_error)?,
            );
            text.lines()
                .find_map(|line| line.strip_prefix("cluster_state:"))
                .map(|v| v.trim().to_owned())
        } else {
            None
        };
        let primaries = self.nodes.primaries(&self.connection).await?.len();
        Ok(ServerInfo {
            server,
            version,
            cluster_state,
            primaries,
        })
    }
}

// The text of an `INFO`-like reply; on a cluster, the replies of every node joined.
fn text_of(reply: Value) -> String {
    match reply {
        Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => text,
        Value::Map(entries) => entries
            .into_iter()
            .map(|(_, v)| text_of(v))
            .collect::<Vec<_>>()
            .join("\n"),
        Value::Array(items) => items
            .into_iter()
            .map(text_of)
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}
