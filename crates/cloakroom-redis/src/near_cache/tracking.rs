//! The invalidation channel: one RESP3 connection per primary in `CLIENT TRACKING ON BCAST`
//! mode for the session keys' prefix, whose invalidation pushes drop copies as they arrive, and
//! a task that checks four times per lease that every one of those connections is alive and
//! still talks to a primary.
//!
//! Broadcast mode, not the default mode that tracks the keys a connection read: the loads run on
//! the store's own self-healing connection, which reconnects on its own and would lose its
//! tracking state unseen; broadcast mode needs nothing from the connection that reads. Its cost:
//! every instance hears of every write to a session key on the primaries it tracks.
//!
//! Why a confirmation is worth what it says: invalidations and the reply to a `ROLE` come back
//! on the same connection, in the order Redis wrote them, and redis-rs hands each push to the
//! handler (which drops the copies at once) before it delivers any later reply. Redis sends
//! broadcast invalidations at the end of the event-loop cycle that produced them, which can be
//! just after a `ROLE` answered in that cycle; so a round of checks confirms the channel only up
//! to when the previous round started, one interval earlier.

use std::sync::{Arc, Weak};
use std::time::Duration;

use cloakroom_core::{Error, ErrorKind, Result};
use redis::aio::MultiplexedConnection;
use redis::{PushInfo, PushKind, Value};
use tokio::time::Instant;

use super::Shared;
use crate::connection::Connection;
use crate::nodes::NodeClients;

/// What the liveness task needs to find the primaries and open connections to them.
pub(crate) struct Tracking {
    pub(crate) clients: NodeClients,
    pub(crate) data: Connection,
    pub(crate) prefix: String,
    pub(crate) lease: Duration,
    pub(crate) connect_timeout: Duration,
}

/// Opens the channel once (so that a server that cannot track keys fails at start-up, with the
/// reason) and starts the task that keeps it alive. The task ends when the store is dropped.
pub(crate) async fn start(shared: &Arc<Shared>, tracking: Tracking) -> Result<()> {
    let mut nodes = Vec::new();
    connect_all(shared, &tracking, &mut nodes).await?;
    // Only a weak reference: the task must not keep the copies alive once the store is gone.
    tokio::spawn(keep_alive(Arc::downgrade(shared), tracking, nodes));
    Ok(())
}

struct Node {
    address: (String, u16),
    connection: MultiplexedConnection,
}

async fn keep_alive(weak: Weak<Shared>, tracking: Tracking, mut nodes: Vec<Node>) {
    let interval = tracking.lease / 4;
    // The start of the previous round that succeeded, with the losses counted when it started.
    let mut previous: Option<(std::time::Instant, u64)> = None;
    // Whether the channel is down, so that its loss and its return are logged once each.
    let mut down = false;
    loop {
        tokio::time::sleep(interval).await;
        let Some(shared) = weak.upgrade() else { return };
        let started = std::time::Instant::now();
        let losses = shared.lock().losses();
        match check(&shared, &tracking, &mut nodes).await {
            Ok(true) => {
                if std::mem::take(&mut down) {
                    tracing::info!("the near-cache's invalidation channel is back");
                }
                if let Some((at, earlier_losses)) = previous
                    && earlier_losses == losses
                {
                    shared.lock().confirm(at, losses);
                }
                previous = Some((started, losses));
            }
            // Reconnected: the copies were emptied; the next rounds confirm anew.
            Ok(false) => previous = None,
            Err(e) => {
                shared.lock().reset(true);
                nodes.clear();
                previous = None;
                if !std::mem::replace(&mut down, true) {
                    tracing::warn!(
                        error = %e,
                        "the near-cache's invalidation channel is down; reads go to Redis until \
                         it is back"
                    );
                }
            }
        }
    }
}

// One round: the primaries are the ones connected to (else reconnect, and answer false), and
// each answers a PING within half a lease.
async fn check(shared: &Arc<Shared>, tracking: &Tracking, nodes: &mut Vec<Node>) -> Result<bool> {
    let listing = tracking.clients.primaries(&tracking.data);
    let wanted = tokio::time::timeout(tracking.lease / 2, listing)
        .await
        .map_err(|_| {
            Error::new(
                ErrorKind::Unavailable,
                "the primaries were not listed within half a lease",
            )
        })??;
    // Nothing tracked confirms nothing.
    if wanted.is_empty() {
        return Err(no_primary());
    }
    let mut connected: Vec<(String, u16)> = nodes.iter().map(|n| n.address.clone()).collect();
    connected.sort();
    if connected != wanted {
        shared.lock().reset(true);
        nodes.clear();
        connect_all(shared, tracking, nodes).await?;
        return Ok(false);
    }
    // `ROLE` rather than `PING`: as cheap, and it also says whether the node still takes the
    // writes. A primary demoted behind the same address (a failover behind a DNS name) would
    // hear of writes only through replication, late or never.
    let checks = nodes.iter().map(|node| {
        let mut connection = node.connection.clone();
        async move {
            let command = redis::cmd("ROLE");
            let role = command.query_async::<Value>(&mut connection);
            match tokio::time::timeout(tracking.lease / 2, role).await {
                Ok(Ok(Value::Array(parts))) if is_primary(parts.first()) => Ok(()),
                Ok(Ok(_)) => Err(Error::new(
                    ErrorKind::Unavailable,
                    "a node the near-cache tracks is no longer a primary",
                )),
                Ok(Err(e)) => Err(crate::errors::map_error(e)),
                Err(_) => Err(Error::new(
                    ErrorKind::Unavailable,
                    "a primary did not answer the near-cache's check within half a lease",
                )),
            }
        }
    });
    for outcome in futures_util::future::join_all(checks).await {
        outcome?;
    }
    Ok(true)
}

fn is_primary(role: Option<&Value>) -> bool {
    matches!(role, Some(Value::BulkString(r)) if r.as_slice() == b"master")
}

// Connects to every primary and turns broadcast tracking on. Copies are dropped once the last
// connection tracks: a load sent before that could have read a value whose invalidation no
// connection was there to hear.
async fn connect_all(
    shared: &Arc<Shared>,
    tracking: &Tracking,
    nodes: &mut Vec<Node>,
) -> Result<()> {
    let deadline = Instant::now() + tracking.connect_timeout;
    let primaries = tracking.clients.primaries(&tracking.data).await?;
    if primaries.is_empty() {
        return Err(no_primary());
    }
    for address in primaries {
        let weak = Arc::downgrade(shared);
        let handler = move |push: PushInfo| -> std::result::Result<(), redis::aio::SendError> {
            let Some(shared) = weak.upgrade() else {
                return Err(redis::aio::SendError);
            };
            on_push(&shared, push);
            Ok(())
        };
        let config = tracking.clients.with_credentials(
            redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(tracking.connect_timeout))
                .set_response_timeout(Some(tracking.connect_timeout))
                .set_push_sender(handler),
        );
        let client = tracking.clients.resp3_client(&address)?;
        let mut connection = tokio::time::timeout_at(
            deadline,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(track_error)?;
        let mut on = redis::cmd("CLIENT");
        on.arg("TRACKING")
            .arg("ON")
            .arg("BCAST")
            .arg("PREFIX")
            .arg(&tracking.prefix);
        tokio::time::timeout_at(deadline, on.query_async::<Value>(&mut connection))
            .await
            .map_err(|_| timed_out())?
            .map_err(track_error)?;
        nodes.push(Node {
            address,
            connection,
        });
    }
    nodes.sort_by(|a, b| a.address.cmp(&b.address));
    shared.lock().reset(false);
    Ok(())
}

fn no_primary() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "the cluster lists no primary to track",
    )
}

fn timed_out() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "the near-cache's tracking connection was not ready in time",
    )
}

fn track_error(e: redis::RedisError) -> Error {
    if e.code() == Some("NOPERM") {
        return Error::with_source(
            ErrorKind::Config,
            "the Redis user may not track keys for the near-cache; grant +hello, \
             +client|tracking, +role and, on a cluster, +cluster|nodes",
            e,
        );
    }
    crate::errors::map_error(e)
}

// Runs in the connection's read loop, before any later reply is delivered.
fn on_push(shared: &Shared, push: PushInfo) {
    match push.kind {
        PushKind::Invalidate => {
            let mut copies = shared.lock();
            match push.data.first() {
                Some(Value::Array(keys)) => {
                    for key in keys {
                        match key {
                            // A key that is not text is not one cloakroom writes.
                            Value::BulkString(bytes) => {
                                if let Ok(key) = std::str::from_utf8(bytes) {
                                    copies.invalidate(key);
                                }
                            }
                            // Not a key at all: drop everything rather than guess.
                            _ => copies.reset(false),
                        }
                    }
                }
                // A null invalidation: the database was flushed.
                _ => copies.reset(false),
            }
        }
        PushKind::Disconnection => shared.lock().reset(true),
        _ => {}
    }
}
