//! The store as the manager calls it: every call timed, counted and traced, whatever the store.
//!
//! Wrapping the store once, in [`SessionManager::new`](crate::SessionManager::new), measures
//! every call the same way (the request path, the per-user index, the admin functions) for
//! every backend, the third-party ones included, without each backend repeating it.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use metrics::{Key, Label, Metadata};
use tracing::Instrument as _;

use crate::error::{Error, ErrorKind, Result};
use crate::metrics::{STORE_CALL_SECONDS, STORE_CALLS, STORE_ERRORS};
use crate::store::{Applied, Apply, Created, Fields, NewSession, Store};
use crate::token::{SessionKey, SessionToken};
use crate::users::{IndexEntry, UserKey};

/// A store whose calls are measured: a span per call (the operation and a short prefix of the
/// key's hash, never a token), a count and a latency per operation, a count of failures by kind.
#[derive(Debug)]
pub(crate) struct ObservedStore {
    inner: Arc<dyn Store>,
}

impl ObservedStore {
    pub(crate) fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner }
    }
}

// What a store call is about, as its span names it: a session, or a user's index (each by a
// short prefix of its hash).
enum About<'a> {
    Session(&'a str),
    User(&'a str),
}

/// A store operation as its span and metrics name it, with its metric keys made once, at
/// compile time: a call's count and latency are recorded without building or hashing a key.
struct Operation {
    name: &'static str,
    calls: Key,
    seconds: Key,
}

macro_rules! operations {
    ($($constant:ident = $name:literal),* $(,)?) => {
        $(static $constant: Operation = {
            static LABELS: [Label; 1] = [Label::from_static_parts("operation", $name)];
            Operation {
                name: $name,
                calls: Key::from_static_parts(STORE_CALLS, &LABELS),
                seconds: Key::from_static_parts(STORE_CALL_SECONDS, &LABELS),
            }
        };)*
    };
}

operations! {
    CREATE = "create",
    APPLY = "apply",
    DELETE = "delete",
    PEEK = "peek",
    INDEX_ADD = "index_add",
    INDEX_REMOVE = "index_remove",
    INDEX_MEMBERS = "index_members",
}

// What the `metrics` macros attach to a metric they register.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

// Runs one store call as `operation` on what `about` names.
async fn observe<T>(
    operation: &'static Operation,
    about: About<'_>,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    let name = operation.name;
    let span = match about {
        About::Session(short) => {
            tracing::debug_span!("cloakroom.store", operation = name, session = %short)
        }
        About::User(short) => {
            tracing::debug_span!("cloakroom.store", operation = name, user = %short)
        }
    };
    let started = Instant::now();
    let outcome = call.instrument(span).await;
    metrics::with_recorder(|recorder| {
        recorder
            .register_counter(&operation.calls, &METADATA)
            .increment(1);
        recorder
            .register_histogram(&operation.seconds, &METADATA)
            .record(started.elapsed().as_secs_f64());
    });
    if let Err(e) = &outcome {
        metrics::counter!(STORE_ERRORS, "operation" => name, "kind" => error_label(e)).increment(1);
    }
    outcome
}

// The `kind` label of a failed store call.
fn error_label(error: &Error) -> &'static str {
    match error.kind() {
        ErrorKind::Unavailable if error.is_outcome_unknown() => "timeout",
        ErrorKind::Unavailable => "unavailable",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::Backend => "backend",
        _ => "refused",
    }
}

// A user's index named in a span: the prefix of its key, as a session's.
fn user_short(user: &UserKey) -> &str {
    user.as_str().get(..8).unwrap_or(user.as_str())
}

#[async_trait]
impl Store for ObservedStore {
    async fn create(&self, key: &SessionKey, session: &NewSession) -> Result<Created> {
        observe(
            &CREATE,
            About::Session(key.short()),
            self.inner.create(key, session),
        )
        .await
    }

    async fn apply(&self, key: &SessionKey, apply: &Apply) -> Result<Applied> {
        observe(
            &APPLY,
            About::Session(key.short()),
            self.inner.apply(key, apply),
        )
        .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool> {
        observe(&DELETE, About::Session(key.short()), self.inner.delete(key)).await
    }

    async fn peek(&self, key: &SessionKey, now_ms: u64) -> Result<Option<Fields>> {
        observe(
            &PEEK,
            About::Session(key.short()),
            self.inner.peek(key, now_ms),
        )
        .await
    }

    async fn index_add(
        &self,
        user: &UserKey,
        key: &SessionKey,
        deadline_ms: u64,
        now_ms: u64,
    ) -> Result<()> {
        let call = self.inner.index_add(user, key, deadline_ms, now_ms);
        observe(&INDEX_ADD, About::Session(key.short()), call).await
    }

    async fn index_remove(&self, user: &UserKey, entry: &IndexEntry, now_ms: u64) -> Result<()> {
        let call = self.inner.index_remove(user, entry, now_ms);
        observe(&INDEX_REMOVE, About::Session(entry.key.short()), call).await
    }

    async fn index_members(&self, user: &UserKey, now_ms: u64) -> Result<Vec<IndexEntry>> {
        let call = self.inner.index_members(user, now_ms);
        observe(&INDEX_MEMBERS, About::User(user_short(user)), call).await
    }
}

/// Names the request's session on the current span when that span declares a `session` field
/// (an application's request span made with `session = tracing::field::Empty`): the same short
/// prefix the store's spans carry, so a request's log lines and its store calls meet.
pub(crate) fn name_on_request_span(token: &SessionToken) {
    let span = tracing::Span::current();
    // The key is a hash of the token: computed only for a span that will show it.
    if span.has_field("session") {
        span.record("session", tracing::field::display(token.key().short()));
    }
}
