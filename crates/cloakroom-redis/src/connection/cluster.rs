//! One request to a cluster: redirections (`MOVED`, `ASK`) followed and refusals retried, never
//! a resend of what may have run.

use std::time::Duration;

use redis::RedisResult;
use redis::Value;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

use super::AckWait;

#[derive(Clone, Copy)]
pub(super) enum Request<'a> {
    Command(&'a redis::Cmd),
    /// A write followed by a `WAIT`, built anew for each hop.
    Acked(&'a redis::Cmd, AckWait),
}

/// What one hop sends.
#[derive(Clone, Copy)]
enum Hop<'a> {
    Command(&'a redis::Cmd),
    Pipeline(&'a redis::Pipeline),
}

/// Where the cluster told us to go.
enum Redirect {
    None,
    /// The slot lives elsewhere now.
    Moved {
        host: String,
        port: u16,
    },
    /// The slot is being migrated and this key is already at the target: ask there, once.
    Ask {
        host: String,
        port: u16,
    },
}

// The cluster client is built with no retries of its own (see `open_cluster`): it would resend a
// command whose connection dropped after sending, and an increment that had already run would
// count twice. Here a command is sent again only when the cluster refused to run it: a
// redirection (`MOVED`, `ASK`), a slot that is busy or has no primary yet (`TRYAGAIN`,
// `CLUSTERDOWN`, `MASTERDOWN`, `LOADING`), or no connection to the slot's node at all. A dropped
// connection or a late answer is reported to the caller as it is: its outcome is unknown. The
// caller's operation timeout bounds the loop.
pub(super) async fn cluster_request(
    connection: &ClusterConnection,
    request: Request<'_>,
) -> RedisResult<Value> {
    let mut redirect = Redirect::None;
    let mut redirects = 0;
    // The node that answered MOVED to an `ASKING` + command sent to it, if any.
    let mut ignored_asking: Option<String> = None;
    let mut pause = Duration::from_millis(5);
    loop {
        let acked;
        let (hop, waits) = match request {
            Request::Command(cmd) => (Hop::Command(cmd), false),
            Request::Acked(cmd, wait) => match wait.pipeline(cmd) {
                Some(pipeline) => {
                    acked = pipeline;
                    (Hop::Pipeline(&acked), true)
                }
                None => (Hop::Command(cmd), false),
            },
        };
        let mut connection = connection.clone();
        let asking_node = match &redirect {
            Redirect::Ask { host, port } => Some(format!("{host}:{port}")),
            _ => None,
        };
        let result = match redirect {
            Redirect::None => match hop {
                Hop::Command(cmd) => cmd.query_async::<Value>(&mut connection).await,
                Hop::Pipeline(pipeline) => pipeline.query_async::<Value>(&mut connection).await,
            },
            Redirect::Moved { host, port } => {
                let node = SingleNodeRoutingInfo::ByAddress { host, port };
                match hop {
                    Hop::Command(cmd) => connection
                        .route_command(cmd.clone(), RoutingInfo::SingleNode(node))
                        .await
                        .and_then(Value::extract_error),
                    Hop::Pipeline(pipeline) => connection
                        .route_pipeline(pipeline.clone(), 0, pipeline.len(), node)
                        .await
                        .and_then(|values| Value::Array(values).extract_error()),
                }
            }
            Redirect::Ask { host, port } => {
                let node = SingleNodeRoutingInfo::ByAddress { host, port };
                let mut asking = redis::pipe();
                asking.cmd("ASKING");
                let count = match hop {
                    Hop::Command(cmd) => {
                        asking.add_command(cmd.clone());
                        1
                    }
                    Hop::Pipeline(pipeline) => {
                        for cmd in pipeline.cmd_iter() {
                            asking.add_command(cmd.clone());
                        }
                        pipeline.len()
                    }
                };
                // A routed pipeline hands back each answer as a value, errors included: turn
                // them back into errors, as a plain query would, ASKING's own first.
                connection
                    .route_pipeline(asking, 0, count + 1, node)
                    .await
                    .and_then(|values| {
                        let mut values = values.into_iter();
                        values.next().map(Value::extract_error).transpose()?;
                        match hop {
                            Hop::Command(_) => values.next().map_or_else(
                                || {
                                    Err(redis::RedisError::from((
                                        redis::ErrorKind::UnexpectedReturnType,
                                        "no answer to a redirected command",
                                    )))
                                },
                                Value::extract_error,
                            ),
                            Hop::Pipeline(_) => Value::Array(values.collect()).extract_error(),
                        }
                    })
            }
        };
        let error = match result {
            // A write sent without its `WAIT`: answered in the shape of one sent with it.
            Ok(value) if !waits && matches!(request, Request::Acked(..)) => {
                return Ok(Value::Array(vec![value, Value::Nil]));
            }
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if error.redirect_node().is_some() {
            // Two nodes sending a request back and forth (slot maps in flux during a failover)
            // must not spin: pause from the second redirection on, and give up after a few.
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(error);
            }
            if redirects > 1 {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
        }
        redirect = match (error.code(), error.redirect_node()) {
            (Some("MOVED"), Some((address, _))) => {
                // A node we sent `ASKING` to answered as if it had not been asked.
                if asking_node.is_some() {
                    ignored_asking = asking_node;
                }
                match split_address(address) {
                    Some((host, port)) => Redirect::Moved { host, port },
                    None => return Err(error),
                }
            }
            (Some("ASK"), Some((address, _))) => {
                // Sent back to a node that ignored `ASKING` before: that is what a user
                // without the right to run ASKING sees (redis-rs hides the NOPERM behind the
                // MOVED that follows it). Say so instead of bouncing until the timeout.
                if ignored_asking.as_deref() == Some(address) {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::InvalidClientConfig,
                        "a node ignored ASKING during a slot migration",
                        "the Redis user may need +asking".to_owned(),
                    )));
                }
                match split_address(address) {
                    Some((host, port)) => Redirect::Ask { host, port },
                    None => return Err(error),
                }
            }
            _ if refused_before_running(&error) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
                Redirect::None
            }
            _ => return Err(error),
        };
    }
}

/// Redirections followed for one request before giving up (a reshard needs at most two: `ASK`,
/// then `MOVED` once the slot has moved).
const MAX_REDIRECTS: u32 = 16;

fn split_address(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    Some((host.to_owned(), port.parse().ok()?))
}

// Errors that prove the command did not run.
fn refused_before_running(error: &redis::RedisError) -> bool {
    matches!(
        error.code(),
        Some("TRYAGAIN" | "CLUSTERDOWN" | "MASTERDOWN" | "LOADING" | "READONLY")
    ) || error.kind() == redis::ErrorKind::ClusterConnectionNotFound
        || error.is_connection_refusal()
}
