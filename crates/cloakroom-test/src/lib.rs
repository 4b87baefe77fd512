//! Test harness for cloakroom: real `redis-server` processes on free ports, a counting proxy
//! that shows how many commands cross the wire, a store wrapper that counts calls, and the store
//! conformance suite that every store must pass unchanged.
//!
//! Set `CLOAKROOM_REDIS_SERVER` to use another server binary (for example `valkey-server`) and
//! `CLOAKROOM_REDIS_CLI` for another `redis-cli` (for example `valkey-cli`).

mod certificates;
mod cluster;
pub mod conformance;
mod counting;
pub mod ledger;
pub mod model;
mod proxy;
pub mod requests;
pub mod sentinel;
mod server;

pub use crate::certificates::TestCertificates;
pub use crate::cluster::{ClusterNode, NODE_TIMEOUT, RedisCluster};
pub use crate::counting::{CallCounts, CountingStore};
pub use crate::proxy::CountingProxy;
pub use crate::sentinel::SentinelGroup;
pub use crate::server::{ADMIN_USER, RedisServer, SESSION_USER, SESSION_USER_RULES, ServerOptions};

use std::sync::Arc;

use cloakroom_core::{MemoryStore, Store};
use cloakroom_redis::RedisStore;

// Fixtures test behaviour, not speed: a loaded CI machine must not turn a slow answer into a
// failure. The fail-fast tests build their stores with the default one-second bound.
const FIXTURE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A store under test, and whatever must stay alive while it is used.
pub struct StoreFixture {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The server behind it, if any.
    pub server: Option<RedisServer>,
    /// The cluster behind it, if any.
    pub cluster: Option<RedisCluster>,
}

impl StoreFixture {
    /// A fixture of a store that needs nothing kept alive beside it: how a store written
    /// elsewhere runs the conformance suite (see [`store_conformance!`]).
    pub fn of(store: impl Store) -> Self {
        Self {
            store: Arc::new(store),
            server: None,
            cluster: None,
        }
    }

    /// The store.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }
}

/// A fresh memory store.
pub async fn memory_fixture() -> anyhow::Result<StoreFixture> {
    Ok(StoreFixture {
        store: Arc::new(MemoryStore::new()),
        server: None,
        cluster: None,
    })
}

/// A fresh `redis-server` and a store connected to it.
pub async fn redis_fixture() -> anyhow::Result<StoreFixture> {
    let server = RedisServer::spawn()?;
    let builder = RedisStore::builder(server.url());
    fixture_over(Some(server), None, builder).await
}

/// A fresh TLS-only `redis-server` and a store connected to it with `rediss://`, trusting the
/// server's private CA (certificate verification on).
pub async fn redis_tls_fixture() -> anyhow::Result<StoreFixture> {
    let server = RedisServer::spawn_tls()?;
    let builder =
        RedisStore::builder(server.url()).with_root_certificate_pem(server.ca_certificate_pem()?);
    fixture_over(Some(server), None, builder).await
}

/// A fresh `redis-server` whose default user is off, and a store logged in as the
/// least-privilege [`SESSION_USER`].
pub async fn redis_acl_fixture() -> anyhow::Result<StoreFixture> {
    let server = RedisServer::spawn_acl()?;
    let builder = RedisStore::builder(server.url_as(SESSION_USER));
    fixture_over(Some(server), None, builder).await
}

/// A fresh three-primary, three-replica cluster and a store given one node's URL (cluster mode
/// detected, not configured).
pub async fn redis_cluster_fixture() -> anyhow::Result<StoreFixture> {
    let cluster = RedisCluster::spawn()?;
    let builder = RedisStore::builder(cluster.url());
    fixture_over(None, Some(cluster), builder).await
}

/// A fresh three-primary, three-replica cluster speaking only TLS (clients, bus and replication),
/// default user off, and a store logged in as [`SESSION_USER`] with `rediss://`.
pub async fn redis_cluster_tls_acl_fixture() -> anyhow::Result<StoreFixture> {
    let options = ServerOptions {
        tls: Some(TestCertificates::generate()?),
        acl: true,
        ..ServerOptions::default()
    };
    let cluster = RedisCluster::spawn_with(options, 1)?;
    let builder = RedisStore::builder(cluster.url_as(SESSION_USER))
        .with_root_certificate_pem(cluster.ca_certificate_pem()?);
    fixture_over(None, Some(cluster), builder).await
}

async fn fixture_over(
    server: Option<RedisServer>,
    cluster: Option<RedisCluster>,
    builder: cloakroom_redis::RedisStoreBuilder,
) -> anyhow::Result<StoreFixture> {
    let store = builder
        .with_operation_timeout(FIXTURE_TIMEOUT)
        .with_connect_timeout(FIXTURE_TIMEOUT)
        .connect()
        .await?;
    anyhow::ensure!(
        store.is_cluster() == cluster.is_some(),
        "cluster mode was detected wrongly"
    );
    Ok(StoreFixture {
        store: Arc::new(store),
        server,
        cluster,
    })
}

/// Runs every conformance test against the store made by `$make` (an async expression giving
/// `anyhow::Result<StoreFixture>`, a fresh, empty store each time), each as its own
/// `#[tokio::test]`.
///
/// A store written outside this repository proves itself the same way, from its own tests
/// (with `cloakroom-test`, `anyhow` and `tokio` as dev-dependencies):
///
/// ```text
/// async fn my_fixture() -> anyhow::Result<cloakroom_test::StoreFixture> {
///     Ok(cloakroom_test::StoreFixture::of(MyStore::connect_fresh().await?))
/// }
///
/// cloakroom_test::store_conformance!(my_fixture());
/// ```
#[macro_export]
macro_rules! store_conformance {
    ($make:expr) => {
        $crate::store_conformance!(@each $make;
            create_then_load_returns_fields,
            create_never_overwrites,
            write_to_missing_session_creates_nothing,
            delta_touches_only_named_fields,
            incr_starts_at_zero_and_reports_each_value,
            bad_incr_fails_and_writes_nothing,
            incr_out_of_range_fails_and_writes_nothing,
            concurrent_increments_lose_none,
            concurrent_writes_to_different_fields_survive,
            delete_removes_and_reports,
            idle_session_expires,
            access_slides_the_idle_timeout,
            a_touch_is_due_only_after_the_interval,
            a_session_ends_within_idle_of_its_last_touch,
            a_session_is_timed_by_its_own_idle_timeout,
            absolute_deadline_ends_an_active_session,
            expired_session_is_not_resurrected_by_a_write,
            create_with_past_deadline_is_refused,
            reads_see_the_ops_of_the_same_step,
            a_take_reports_the_value_and_removes_it,
            reserved_names_never_reach_the_store,
            steps_past_the_bounds_fail_and_write_nothing,
            the_user_index_lists_until_each_deadline,
            peek_reads_without_extending
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() -> anyhow::Result<()> {
                let fixture = $make.await?;
                $crate::conformance::$name(fixture.store()).await
            }
        )*
    };
}

/// Turns each named `async fn(StoreFixture) -> anyhow::Result<()>` in scope into a test over a
/// fresh memory store (`on_memory::NAME`) and one over a fresh `redis-server` (`on_redis::NAME`):
/// for tests about input, where the other Redis set-ups add time and nothing new.
#[macro_export]
macro_rules! test_over_memory_and_redis {
    ($($name:ident),* $(,)?) => {
        $crate::test_over_each_store!(@on on_memory, memory_fixture; $($name),*);
        $crate::test_over_each_store!(@on on_redis, redis_fixture; $($name),*);
    };
}

/// Turns each named `async fn(StoreFixture) -> anyhow::Result<()>` in scope into one test per
/// store: a fresh memory store (`on_memory::NAME`), a `redis-server` (`on_redis::NAME`), a
/// TLS-only one reached with `rediss://` (`on_redis_tls::NAME`), one whose only usable user is
/// the least-privilege [`SESSION_USER`] (`on_redis_acl::NAME`), a three-primary, three-replica
/// cluster (`on_redis_cluster::NAME`) and the same cluster with TLS and ACL
/// (`on_redis_cluster_tls_acl::NAME`).
#[macro_export]
macro_rules! test_over_each_store {
    ($($name:ident),* $(,)?) => {
        $crate::test_over_each_store!(@on on_memory, memory_fixture; $($name),*);
        $crate::test_over_each_store!(@on on_redis, redis_fixture; $($name),*);
        $crate::test_over_each_store!(@on on_redis_tls, redis_tls_fixture; $($name),*);
        $crate::test_over_each_store!(@on on_redis_acl, redis_acl_fixture; $($name),*);
        $crate::test_over_each_store!(@on on_redis_cluster, redis_cluster_fixture; $($name),*);
        $crate::test_over_each_store!(
            @on on_redis_cluster_tls_acl, redis_cluster_tls_acl_fixture; $($name),*
        );
    };
    (@on $module:ident, $fixture:ident; $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name($crate::$fixture().await?).await
                }
            )*
        }
    };
}
