//! Running the Lua scripts: one `EVALSHA` on one key, bounded by the operation timeout.

use std::time::Duration;

use cloakroom_core::{Error, ErrorKind, Result, SessionKey, UserKey};
use futures_util::FutureExt;
use redis::{Script, Value};

use crate::RedisStore;
use crate::acks::ReplicaAcks;
use crate::errors::map_error;

/// Whether a call (a script, or a plain read) may be sent again after the connection dropped under
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resend {
    /// A read: running it twice changes nothing.
    IfDropped,
    /// A write: it may have run, and must not run twice.
    Never,
}

/// One step of `index.lua` on a user's index.
#[derive(Debug, Clone, Copy)]
pub(crate) enum IndexStep<'a> {
    /// List `key` until `deadline_ms` ('A').
    Add {
        key: &'a SessionKey,
        deadline_ms: u64,
    },
    /// Drop the entry of `key` written at `written_ms` ('R').
    Remove {
        key: &'a SessionKey,
        written_ms: u64,
    },
    /// The live entries ('L').
    List,
}

impl RedisStore {
    pub(crate) async fn run_index(
        &self,
        user: &UserKey,
        now_ms: u64,
        step: IndexStep<'_>,
        replica_acks: Option<ReplicaAcks>,
    ) -> Result<Value> {
        let index_key = self.index_key(user);
        let deadline = tokio::time::Instant::now() + self.operation_timeout;
        self.run(
            &self.index,
            &index_key,
            replica_acks,
            Resend::Never,
            deadline,
            |inv| {
                inv.arg(now_ms);
                match step {
                    IndexStep::Add { key, deadline_ms } => {
                        inv.arg("A").arg(key.as_str()).arg(deadline_ms)
                    }
                    IndexStep::Remove { key, written_ms } => {
                        inv.arg("R").arg(key.as_str()).arg(written_ms)
                    }
                    IndexStep::List => inv.arg("L"),
                };
            },
        )
        .await
    }

    // One EVALSHA on one key. The command is built by hand rather than through redis-rs's
    // script invocation, which copies every argument once more; if the server has lost its
    // script cache (restart, failover, SCRIPT FLUSH) the source is sent once with EVAL, which
    // caches it again.
    // `deadline` ends the whole operation, of which the script may be the second call (a plain
    // load that found a touch due).
    //
    // A function returning an async block rather than an `async fn`: an `async fn` keeps its
    // arguments twice (as arguments, and moved into locals), in a future that every store call
    // boxes.
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn would hold its arguments twice"
    )]
    pub(crate) fn run<'a>(
        &'a self,
        script: &'a ScriptSource,
        redis_key: &'a str,
        replica_acks: Option<ReplicaAcks>,
        resend: Resend,
        deadline: tokio::time::Instant,
        add_args: impl Fn(&mut redis::Cmd) + 'a,
    ) -> impl Future<Output = Result<Value>> + 'a {
        async move {
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
                    // A connection that broke while idle (its server restarted, or failed
                    // over) is found out by the first request sent on it. A read may be sent
                    // again on the fresh connection: running it twice changes nothing. A write
                    // may not, since it may have run.
                    Err(e) if resend == Resend::IfDropped && e.is_connection_dropped() => {
                        attempt().await
                    }
                    other => other,
                }
            };
            let (reply, confirmed) =
                bounded_until(deadline, self.operation_timeout, "answer", call).await?;
            self.settle(confirmed, replica_acks)?;
            Ok(reply)
        }
    }
}

// Runs a Redis call within `limit`: a late answer is `Unavailable`, like a refused connection,
// and Redis's own errors are mapped to their kinds.
pub(crate) fn bounded<'a, T>(
    limit: Duration,
    what: &'a str,
    call: impl Future<Output = redis::RedisResult<T>> + 'a,
) -> impl Future<Output = Result<T>> + 'a {
    bounded_until(tokio::time::Instant::now() + limit, limit, what, call)
}

// `bounded`, ending at `deadline`: the end of an operation of which this call may be the second
// part. `budget` is the operation's whole bound, which a late answer's error names.
//
// A plain function returning the timed call, not an `async fn`: an `async fn` keeps its future
// argument in its own state beside the `Timeout` that holds it, so every call through it doubled
// the size of the future around it (a store call's future, boxed on every request, grew past
// 6 KiB through two of them).
pub(crate) fn bounded_until<'a, T>(
    deadline: tokio::time::Instant,
    budget: Duration,
    what: &'a str,
    call: impl Future<Output = redis::RedisResult<T>> + 'a,
) -> impl Future<Output = Result<T>> + 'a {
    tokio::time::timeout_at(deadline, call).map(move |outcome| match outcome {
        Ok(result) => result.map_err(map_error),
        // The command may have been sent, and may have run.
        Err(_) => Err(Error::new(
            ErrorKind::Unavailable,
            format!("Redis did not {what} within {} ms", budget.as_millis()),
        )
        .with_unknown_outcome()),
    })
}

/// A Lua script and its SHA-1, as `EVALSHA` names it.
#[derive(Clone)]
pub(crate) struct ScriptSource {
    pub(crate) source: &'static str,
    pub(crate) sha: String,
}

impl ScriptSource {
    pub(crate) fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: Script::new(source).get_hash().to_owned(),
        }
    }
}
