//! Credentials that change while the store runs: a password the operator rotates, or an
//! ElastiCache IAM token (feature `iam`), which lasts 15 minutes.
//!
//! Every connection the store opens (standalone, each node of a cluster, the primary behind
//! Sentinel, the near-cache's and the inventory's own) logs in with the credentials current at
//! that moment, and each live connection logs in again (`AUTH`) as soon as they change, so a
//! rotation fails no request and a reconnect uses the new credential (redis-rs's
//! credentials-provider hook).

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use redis::RedisResult;
use redis::auth::{BasicAuth, StreamingCredentialsProvider};
use tokio::sync::watch;

/// A Redis user's name and password, which may be replaced while the store runs
/// ([`RedisStoreBuilder::with_credentials`](crate::RedisStoreBuilder::with_credentials)).
/// Cheap to clone: clones share the current value.
///
/// # Examples
///
/// ```
/// use cloakroom_redis::Credentials;
///
/// let credentials = Credentials::new("cloakroom", "first-password");
/// // RedisStore::builder(url).with_credentials(credentials.clone()).connect().await?;
/// // Later, after `ACL SETUSER cloakroom >second-password` on the server:
/// credentials.update("cloakroom", "second-password");
/// ```
#[derive(Clone)]
pub struct Credentials {
    current: Arc<watch::Sender<BasicAuth>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.current.borrow().username())
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials starting as `username` and `password`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        let (current, _) = watch::channel(BasicAuth::new(username.into(), password.into()));
        Self {
            current: Arc::new(current),
        }
    }

    /// Replaces the credentials: live connections log in again with them, new ones use them.
    pub fn update(&self, username: impl Into<String>, password: impl Into<String>) {
        self.current
            .send_replace(BasicAuth::new(username.into(), password.into()));
    }

    /// The user name in use.
    pub fn username(&self) -> String {
        self.current.borrow().username().to_owned()
    }

    // The password in use: for clients that take fixed credentials (Sentinel's `ROLE` check).
    pub(crate) fn password(&self) -> String {
        self.current.borrow().password().to_owned()
    }

    // A handle that does not keep the credentials alive: a refresher holds one, and stops once
    // the store and everyone else have let them go.
    #[cfg_attr(not(feature = "iam"), allow(dead_code))]
    pub(crate) fn downgrade(&self) -> WeakCredentials {
        WeakCredentials(Arc::downgrade(&self.current))
    }
}

/// See [`Credentials::downgrade`].
#[cfg_attr(not(feature = "iam"), allow(dead_code))]
pub(crate) struct WeakCredentials(std::sync::Weak<watch::Sender<BasicAuth>>);

#[cfg_attr(not(feature = "iam"), allow(dead_code))]
impl WeakCredentials {
    pub(crate) fn upgrade(&self) -> Option<Credentials> {
        self.0.upgrade().map(|current| Credentials { current })
    }
}

impl StreamingCredentialsProvider for Credentials {
    // The current credentials at once (a new connection logs in with them), then each change.
    fn subscribe(&self) -> Pin<Box<dyn Stream<Item = RedisResult<BasicAuth>> + Send + 'static>> {
        let receiver = self.current.subscribe();
        Box::pin(futures_util::stream::unfold(
            (receiver, true),
            |(mut receiver, first)| async move {
                if !first && receiver.changed().await.is_err() {
                    return None;
                }
                let current = receiver.borrow_and_update().clone();
                Some((Ok(current), (receiver, false)))
            },
        ))
    }
}

/// `config` logging in with `credentials`, when there are any: the one place every connection
/// of its own (a probe, a node's) takes them.
pub(crate) fn logging_in_with(
    credentials: Option<&Credentials>,
    config: redis::AsyncConnectionConfig,
) -> redis::AsyncConnectionConfig {
    match credentials {
        Some(credentials) => config.set_credentials_provider(credentials.clone()),
        None => config,
    }
}
