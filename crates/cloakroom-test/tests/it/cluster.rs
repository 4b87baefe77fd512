//! The conformance suite over a three-primary, three-replica Redis Cluster reached through one
//! node's URL, plain and with TLS plus a least-privilege ACL user; and what cluster mode must
//! guarantee beyond it: sessions spread over every primary, detection from any node's URL, clear
//! errors when the settings are wrong, and replica acknowledgement.

use std::time::Duration;

use anyhow::{Context, ensure};
use cloakroom_core::store::Store;
use cloakroom_core::{ErrorKind, SessionKey, SessionToken};
use cloakroom_redis::{ClusterMode, RedisStore, ReplicaAcks};
use cloakroom_test::conformance::{apply_step, load, new_session};
use cloakroom_test::{
    RedisCluster, RedisServer, SESSION_USER, redis_cluster_fixture, redis_cluster_tls_acl_fixture,
};

cloakroom_test::store_conformance!(redis_cluster_fixture());

mod tls_acl {
    use super::*;

    cloakroom_test::store_conformance!(redis_cluster_tls_acl_fixture());
}

/// A store with bounds no loaded machine reaches: these tests are about behaviour, not speed.
fn patient_builder(url: impl Into<String>) -> cloakroom_redis::RedisStoreBuilder {
    RedisStore::builder(url)
        .with_connect_timeout(Duration::from_secs(10))
        .with_operation_timeout(Duration::from_secs(10))
}

async fn patient(url: impl Into<String>) -> cloakroom_core::Result<RedisStore> {
    patient_builder(url).connect().await
}

/// The key of a new, empty session created in `store`.
async fn new_key(store: &RedisStore) -> anyhow::Result<SessionKey> {
    let key = SessionToken::generate()?.key();
    store
        .create(&key, &new_session(&[], 60_000, 3_600_000))
        .await?;
    Ok(key)
}

fn dbsize(server: &RedisServer) -> anyhow::Result<i64> {
    Ok(redis::cmd("DBSIZE").query(&mut server.connection()?)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_spread_over_every_primary() -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn()?;
    let store = patient(cluster.url()).await?;
    ensure!(store.is_cluster(), "cluster mode was not detected");
    let sessions = 60;
    for _ in 0..sessions {
        let key = SessionToken::generate()?.key();
        store
            .create(&key, &new_session(&[("n", "1")], 60_000, 3_600_000))
            .await?;
    }
    let mut per_primary = Vec::new();
    for node in cluster.topology()?.iter().filter(|n| n.is_primary) {
        let index = cluster.index_of_port(node.port).context("unknown node")?;
        per_primary.push(dbsize(&cluster.nodes()[index])?);
    }
    println!("sessions per primary: {per_primary:?}");
    ensure!(per_primary.len() == 3, "{per_primary:?}");
    ensure!(
        per_primary.iter().all(|&n| n > 0),
        "a primary holds no session: {per_primary:?}"
    );
    ensure!(per_primary.iter().sum::<i64>() == sessions);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_url_finds_the_whole_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn()?;
    // A replica's URL, as an application might be given by mistake: the cluster client still
    // discovers the primaries and sends writes there.
    let replica = cluster
        .topology()?
        .into_iter()
        .find(|n| !n.is_primary)
        .context("no replica")?;
    let store = patient(format!("redis://127.0.0.1:{}", replica.port)).await?;
    ensure!(store.is_cluster());
    let mut keys = Vec::new();
    for _ in 0..20 {
        let key = SessionToken::generate()?.key();
        store
            .create(&key, &new_session(&[("n", "1")], 60_000, 3_600_000))
            .await?;
        keys.push(key);
    }
    for key in &keys {
        ensure!(load(&store, key).await?.is_some(), "a session went missing");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_forced_on_a_standalone_server_is_a_clear_error() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let result = patient_builder(server.url())
        .with_cluster_mode(ClusterMode::Cluster)
        .connect()
        .await;
    let err = result
        .err()
        .context("cluster mode against a standalone server")?;
    println!("{err}: {err:?}");
    ensure!(!err.is_usage(), "{err:?}");
    // Forced standalone on a standalone server, and detection, both work.
    let forced = patient_builder(server.url())
        .with_cluster_mode(ClusterMode::Standalone)
        .connect()
        .await?;
    ensure!(!forced.is_cluster());
    ensure!(!patient(server.url()).await?.is_cluster());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_not_list_slots_is_told_what_to_do() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let mut conn = server.connection()?;
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "narrow",
                "on",
                ">narrow-password",
                "~cloakroom:*",
                "+@all",
            ][..],
        )
        .arg("-cluster|slots")
        .query(&mut conn)?;
    let url = format!("redis://narrow:narrow-password@127.0.0.1:{}", server.port());
    let err = patient(url.as_str())
        .await
        .err()
        .context("detection without CLUSTER SLOTS passed")?;
    ensure!(err.kind() == ErrorKind::Config, "{err:?}");
    ensure!(err.to_string().contains("CLUSTER SLOTS"), "{err}");
    // The explicit setting is the way out.
    patient_builder(url)
        .with_cluster_mode(ClusterMode::Standalone)
        .connect()
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cluster_password_and_refused_connections_are_clear_errors() -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn_with(
        cloakroom_test::ServerOptions {
            acl: true,
            ..Default::default()
        },
        0,
    )?;
    let good = patient(cluster.url_as(SESSION_USER)).await?;
    ensure!(good.is_cluster());
    let wrong = patient(cluster.url_as((SESSION_USER.0, "wrong"))).await;
    let kind = wrong.err().map(|e| e.kind());
    ensure!(kind == Some(ErrorKind::Config), "wrong password: {kind:?}");
    // Nobody listens on this port: the error says so, and nothing falls back to another host.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let refused = RedisStore::connect(format!("redis://127.0.0.1:{port}"))
        .await
        .err()
        .context("connected to a closed port")?;
    ensure!(refused.is_unavailable(), "{refused:?}");
    let text = format!("{refused:?}").to_lowercase();
    ensure!(text.contains("refused"), "the cause is not named: {text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_wait_for_a_replica_when_asked() -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn()?;
    // Generous bounds: on a loaded machine a replica may take a while to acknowledge, and this
    // test is about confirmation, not speed.
    let store = RedisStore::builder(cluster.url())
        .with_operation_timeout(Duration::from_secs(10))
        .with_replica_acks(ReplicaAcks::on_deletes(1, Duration::from_secs(4)))
        .connect()
        .await?;
    for _ in 0..10 {
        let key = new_key(&store).await?;
        ensure!(store.delete(&key).await?, "the delete found nothing");
        ensure!(load(&store, &key).await?.is_none());
    }
    ensure!(
        store.unconfirmed_writes() == 0,
        "replicas did not confirm {} deletes",
        store.unconfirmed_writes()
    );
    // Without a replica nothing can confirm: the delete still happens, and it is reported.
    let lone = RedisServer::spawn()?;
    let store = patient_builder(lone.url())
        .with_replica_acks(ReplicaAcks::on_every_write(1, Duration::from_millis(50)))
        .connect()
        .await?;
    let key = new_key(&store).await?;
    ensure!(store.delete(&key).await?);
    ensure!(load(&store, &key).await?.is_none());
    ensure!(
        store.unconfirmed_writes() == 2,
        "unconfirmed writes: {}",
        store.unconfirmed_writes()
    );
    // Required: the unconfirmed write is an error for the caller, though it happened.
    let strict = patient_builder(lone.url())
        .with_replica_acks(ReplicaAcks::on_deletes(1, Duration::from_millis(50)).required())
        .connect()
        .await?;
    let key = new_key(&strict).await?;
    let err = strict
        .delete(&key)
        .await
        .err()
        .context("an unconfirmed delete was reported as done")?;
    ensure!(err.is_unavailable(), "{err:?}");
    ensure!(
        load(&strict, &key).await?.is_none(),
        "the delete did not happen"
    );
    ensure!(strict.unconfirmed_writes() == 1);
    // Script errors keep their kind when a WAIT follows the script in the pipeline.
    store
        .create(
            &key,
            &new_session(&[("name", "\"ann\"")], 60_000, 3_600_000),
        )
        .await?;
    let mut incr = cloakroom_core::store::Delta::default();
    incr.incr("name", 1)?;
    let kind = apply_step(&store, &key, incr, false)
        .await
        .err()
        .map(|e| e.kind());
    ensure!(kind == Some(ErrorKind::NotAnInteger), "{kind:?}");
    // A timeout that the operation timeout would cut short is refused at start-up.
    let too_long = patient_builder(lone.url())
        .with_replica_acks(ReplicaAcks::on_deletes(1, Duration::from_secs(5)))
        .connect()
        .await;
    ensure!(too_long.err().map(|e| e.kind()) == Some(ErrorKind::Config));
    Ok(())
}

// Runs one command on the node at `index` of the cluster, as the harness's admin connection.
fn on_node<T: redis::FromRedisValue>(
    cluster: &RedisCluster,
    index: usize,
    args: &[&str],
) -> anyhow::Result<T> {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    Ok(cmd.query(&mut cluster.nodes()[index].connection()?)?)
}

async fn counter_after_increment(store: &RedisStore, key: &SessionKey) -> anyhow::Result<i64> {
    use cloakroom_core::store::{Applied, Delta};
    let mut incr = Delta::default();
    incr.incr("visits", 1)?;
    match apply_step(store, key, incr, false).await? {
        Applied::Done { counters, .. } => counters.first().copied().context("no counter"),
        other => anyhow::bail!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_in_a_migrating_slot_is_followed_with_ask_then_moved() -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn_with(Default::default(), 0)?;
    let store = patient(cluster.url()).await?;
    follow_a_migration(&cluster, &store, false).await
}

/// The same, as the least-privilege ACL user over TLS: its rules must allow `ASKING`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_user_follows_a_migration_too() -> anyhow::Result<()> {
    let options = cloakroom_test::ServerOptions {
        tls: Some(cloakroom_test::TestCertificates::generate()?),
        acl: true,
        ..Default::default()
    };
    let cluster = RedisCluster::spawn_with(options, 0)?;
    let store = patient_builder(cluster.url_as(SESSION_USER))
        .with_root_certificate_pem(cluster.ca_certificate_pem()?)
        .connect()
        .await?;
    follow_a_migration(&cluster, &store, true).await
}

async fn follow_a_migration(
    cluster: &RedisCluster,
    store: &RedisStore,
    acl: bool,
) -> anyhow::Result<()> {
    let key = new_key(store).await?;
    ensure!(counter_after_increment(store, &key).await? == 1);

    let redis_key = store.redis_key(&key);
    let migration = half_migrate(cluster, &redis_key, acl)?;
    ensure!(
        counter_after_increment(store, &key).await? == 2,
        "ASK not followed"
    );
    ensure!(load(store, &key).await?.is_some());

    // Migration finished: the slot is the target's, and the source answers MOVED.
    for node in 0..3 {
        let _: () = on_node(
            cluster,
            node,
            &[
                "CLUSTER",
                "SETSLOT",
                &migration.slot,
                "NODE",
                &migration.target_id,
            ],
        )?;
    }
    ensure!(
        counter_after_increment(store, &key).await? == 3,
        "MOVED not followed"
    );
    ensure!(cluster.primary_of_key(&redis_key)? == migration.target);
    let on_target: i64 = on_node(cluster, migration.target, &["HGET", &redis_key, "visits"])?;
    ensure!(on_target == 3, "the target holds {on_target}");
    Ok(())
}

struct Migration {
    slot: String,
    target: usize,
    target_id: String,
}

// Half-way through a migration of `redis_key`'s slot: the key already sits on another primary,
// the slot still belongs to its old one, which answers ASK. The target has also lost its script
// cache.
fn half_migrate(cluster: &RedisCluster, redis_key: &str, acl: bool) -> anyhow::Result<Migration> {
    let slot: i64 = on_node(cluster, 0, &["CLUSTER", "KEYSLOT", redis_key])?;
    let slot = slot.to_string();
    let source = cluster.primary_of_key(redis_key)?;
    let target = (0..3).find(|&i| i != source).context("no target")?;
    let id = |i: usize| -> anyhow::Result<String> { on_node(cluster, i, &["CLUSTER", "MYID"]) };
    let (source_id, target_id) = (id(source)?, id(target)?);
    let target_port = cluster.nodes()[target].port().to_string();
    let _: () = on_node(
        cluster,
        target,
        &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source_id],
    )?;
    let _: () = on_node(
        cluster,
        source,
        &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target_id],
    )?;
    let mut migrate = vec!["MIGRATE", "127.0.0.1", &target_port, redis_key, "0", "5000"];
    if acl {
        // The source logs in to the target as the admin user.
        let (user, password) = cloakroom_test::ADMIN_USER;
        migrate.extend(["AUTH2", user, password]);
    }
    let _: () = on_node(cluster, source, &migrate)?;
    let _: () = on_node(cluster, target, &["SCRIPT", "FLUSH"])?;
    Ok(Migration {
        slot,
        target,
        target_id,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_not_run_asking_is_told_so() -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn_with(Default::default(), 0)?;
    let rules = cloakroom_test::SESSION_USER_RULES.replace("+asking", "");
    for node in 0..3 {
        let mut setuser = vec!["ACL", "SETUSER", "no-asking", "on", ">no-asking-password"];
        setuser.extend(rules.split_whitespace());
        let _: () = on_node(&cluster, node, &setuser)?;
    }
    let url = format!(
        "redis://no-asking:no-asking-password@127.0.0.1:{}",
        cluster.nodes()[0].port()
    );
    let store = patient(url).await?;
    let key = new_key(&store).await?;
    half_migrate(&cluster, &store.redis_key(&key), false)?;
    let err = counter_after_increment(&store, &key)
        .await
        .err()
        .context("an increment needing ASKING passed without the right to it")?;
    let chain = format!("{err:?}");
    ensure!(chain.contains("+asking"), "the cause is not named: {chain}");
    ensure!(
        err.downcast_ref::<cloakroom_core::Error>()
            .map(cloakroom_core::Error::kind)
            == Some(ErrorKind::Config),
        "{chain}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_checks_certificates_unless_told_not_to() -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn_with(
        cloakroom_test::ServerOptions {
            tls: Some(cloakroom_test::TestCertificates::generate()?),
            ..Default::default()
        },
        0,
    )?;
    // The system's roots do not vouch for the test CA: refused, with the cause named.
    let err = RedisStore::builder(cluster.url())
        .with_connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .err()
        .context("a TLS cluster was trusted without its CA")?;
    let text = format!("{err:?}").to_lowercase();
    ensure!(
        text.contains("certificate"),
        "the cause is not named: {text}"
    );
    // With the CA, and with the explicit opt-out, every node is reached.
    for store in [
        patient_builder(cluster.url())
            .with_root_certificate_pem(cluster.ca_certificate_pem()?)
            .connect()
            .await?,
        patient_builder(cluster.url())
            .danger_accept_invalid_certificates()
            .connect()
            .await?,
    ] {
        ensure!(store.is_cluster());
        for _ in 0..12 {
            let key = new_key(&store).await?;
            ensure!(load(&store, &key).await?.is_some());
        }
    }
    Ok(())
}

/// With replica acknowledgement a write goes with a `WAIT`, and a redirected hop runs that
/// `WAIT` too, on the node that refused the write. Where nothing can acknowledge (no replicas
/// here), each such `WAIT` used to block its whole timeout, so a write redirected a few times ran
/// but was reported unavailable. The whole call must fit the operation timeout: the write is
/// done, reported, and counted as unconfirmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirected_writes_that_wait_for_replicas_end_within_the_operation_timeout()
-> anyhow::Result<()> {
    use cloakroom_core::UserKey;
    use cloakroom_test::conformance::now_ms;

    let cluster = RedisCluster::spawn_with(Default::default(), 0)?;
    // Each hop's `WAIT` used to take 900 ms here: three hops took 2.7 s, four 3.6 s.
    let operation_timeout = Duration::from_secs(2);
    let store = RedisStore::builder(cluster.url())
        .with_connect_timeout(Duration::from_secs(10))
        .with_operation_timeout(operation_timeout)
        .with_replica_acks(ReplicaAcks::on_deletes(1, Duration::from_millis(900)))
        .connect()
        .await?;
    // A user's index, written now while every node still has the scripts.
    let user = UserKey::of("ann");
    let index_key = format!(
        "{}user:{}",
        cloakroom_redis::RedisStore::DEFAULT_PREFIX,
        user.as_str()
    );
    let deadline = now_ms() + 3_600_000;
    let key = new_key(&store).await?;
    store.index_add(&user, &key, deadline, now_ms()).await?;

    // A delete three hops away: its slot moves to another primary after the store learnt the
    // slot map, then starts moving on. The old owner answers MOVED, the new one ASK, and the
    // third runs the delete after ASKING.
    let redis_key = store.redis_key(&key);
    let first = half_migrate(&cluster, &redis_key, false)?;
    for node in 0..3 {
        let _: () = on_node(
            &cluster,
            node,
            &["CLUSTER", "SETSLOT", &first.slot, "NODE", &first.target_id],
        )?;
    }
    let second = half_migrate(&cluster, &redis_key, false)?;
    let started = std::time::Instant::now();
    let deleted = store.delete(&key).await;
    let took = started.elapsed();
    println!("redirected delete: {deleted:?} in {took:?}");
    ensure!(
        matches!(deleted, Ok(true)),
        "the delete was not reported done: {deleted:?}"
    );
    ensure!(took <= operation_timeout, "the delete took {took:?}");
    // The key sits on the importing node, which shows it only after ASKING.
    let (left,): (i64,) = redis::pipe()
        .cmd("ASKING")
        .ignore()
        .cmd("EXISTS")
        .arg(&redis_key)
        .query(&mut cluster.nodes()[second.target].connection()?)?;
    ensure!(left == 0, "the session is still there");
    ensure!(
        store.unconfirmed_writes() == 2,
        "{}",
        store.unconfirmed_writes()
    );

    // An index entry (it waits whenever deletes do) four hops away: ASK, then NOSCRIPT from a
    // target that lost its script cache, then the same again with the script's source.
    half_migrate(&cluster, &index_key, false)?;
    let other = new_key(&store).await?;
    let started = std::time::Instant::now();
    let added = store.index_add(&user, &other, deadline, now_ms()).await;
    let took = started.elapsed();
    println!("redirected index entry with a lost script cache: {added:?} in {took:?}");
    ensure!(
        added.is_ok(),
        "the index entry was not reported done: {added:?}"
    );
    ensure!(took <= operation_timeout, "the index entry took {took:?}");
    let listed = store.index_members(&user, now_ms()).await?;
    ensure!(
        listed.iter().any(|entry| entry.key == other),
        "the entry is not listed"
    );
    ensure!(
        store.unconfirmed_writes() == 3,
        "{}",
        store.unconfirmed_writes()
    );
    Ok(())
}
