//! Replica acknowledgement: writes followed by `WAIT`, within the operation timeout.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cloakroom_core::{Error, ErrorKind, Result};
use redis::Value;

use crate::RedisStore;
use crate::connection;

// The share of the operation timeout that no `WAIT` may use: kept for the round trip that
// brings the answer back (a tenth: 100 ms of the default second).
const ROUND_TRIP_SHARE: u32 = 10;

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
    pub(crate) replicas: u32,
    pub(crate) timeout: Duration,
    pub(crate) every_write: bool,
    pub(crate) required: bool,
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

impl RedisStore {
    pub(crate) fn waits_on_every_write(&self) -> Option<ReplicaAcks> {
        self.replica_acks.filter(|acks| acks.every_write)
    }

    // Sends one command; when replicas must confirm, it goes with a `WAIT` in one pipeline over
    // the connection kept for such writes: Redis serves nothing else on a connection blocked in
    // `WAIT`, and every other request must not queue behind it. Every `WAIT` of the call (one
    // per hop: redirections, a lost script cache) fits before `deadline`, so the call answers
    // with the write's real outcome instead of timing out after it ran.
    pub(crate) async fn send(
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
        // Boxed: the acknowledged path's state would otherwise size every call's future,
        // unacknowledged ones included (this one waits on replicas anyway).
        let (reply, confirmed) = Box::pin(connection.query_acked(&cmd, wait)).await?;
        // The command's outcome first; a `WAIT` that did not answer with a count confirmed
        // nothing.
        let reply = reply.extract_error()?;
        let confirmed = matches!(confirmed, Value::Int(n) if n >= i64::from(acks.replicas));
        Ok((reply, confirmed))
    }

    // What an unconfirmed write means: counted and logged, and an error when confirmation is
    // required.
    pub(crate) fn settle(&self, confirmed: bool, acks: Option<ReplicaAcks>) -> Result<()> {
        let Some(acks) = acks.filter(|_| !confirmed) else {
            return Ok(());
        };
        self.unconfirmed_writes.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(cloakroom_core::metrics::REPLICA_ACKS_UNCONFIRMED).increment(1);
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
            )
            .with_unknown_outcome());
        }
        Ok(())
    }
}
