//! Redis behind Sentinel: a primary, its replica and three sentinels spawned by the harness. The
//! store finds the primary through a `redis+sentinel://` URL, passes the conformance checks, and
//! follows a failover when the primary is killed under load, with the same bookkeeping as the
//! cluster's failover tests (run with `--nocapture` to see the figures).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use cloakroom_core::Store;
use cloakroom_core::store::{Applied, Delta};
use cloakroom_redis::{Credentials, RedisStore};
use cloakroom_test::conformance;
use cloakroom_test::ledger::Load;
use cloakroom_test::{SESSION_USER, SentinelGroup, ServerOptions};

async fn store(url: &str) -> anyhow::Result<RedisStore> {
    Ok(RedisStore::builder(url)
        .with_operation_timeout(Duration::from_millis(500))
        .with_connect_timeout(Duration::from_millis(500))
        .connect()
        .await?)
}

// The conformance checks that need no waiting for a TTL, in a row on one store.
async fn conforms(store: &dyn Store) -> anyhow::Result<()> {
    conformance::create_then_load_returns_fields(store).await?;
    conformance::create_never_overwrites(store).await?;
    conformance::write_to_missing_session_creates_nothing(store).await?;
    conformance::delta_touches_only_named_fields(store).await?;
    conformance::incr_starts_at_zero_and_reports_each_value(store).await?;
    conformance::bad_incr_fails_and_writes_nothing(store).await?;
    conformance::concurrent_increments_lose_none(store).await?;
    conformance::concurrent_writes_to_different_fields_survive(store).await?;
    conformance::delete_removes_and_reports(store).await?;
    conformance::reads_see_the_ops_of_the_same_step(store).await?;
    conformance::reserved_names_never_reach_the_store(store).await?;
    conformance::the_user_index_lists_until_each_deadline(store).await?;
    conformance::peek_reads_without_extending(store).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_behind_sentinel_conforms_as_a_least_privilege_user() -> anyhow::Result<()> {
    let group = tokio::task::block_in_place(|| {
        SentinelGroup::spawn_with(ServerOptions {
            acl: true,
            ..ServerOptions::default()
        })
    })?;
    let store = store(&group.url(Some(SESSION_USER))).await?;
    ensure!(!store.is_cluster());
    conforms(&store).await?;
    // Credentials given apart from the URL (rotating ones, IAM tokens) reach the primary and
    // the check that it is one.
    let (user, password) = SESSION_USER;
    let rotating = RedisStore::builder(group.url(None))
        .with_credentials(Credentials::new(user, password))
        .connect()
        .await?;
    conformance::create_then_load_returns_fields(&rotating).await?;
    // A wrong password fails at start-up, naming the cause.
    let refused = RedisStore::connect(group.url(Some(("cloakroom", "wrong")))).await;
    ensure!(refused.is_err(), "a wrong password was accepted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_load_is_replaced_through_sentinel() -> anyhow::Result<()> {
    let mut group = tokio::task::block_in_place(SentinelGroup::spawn)?;
    let store = Arc::new(store(&group.url(None)).await?);
    let keys = Load::create_sessions(store.as_ref(), 24).await?;
    // Let the replica catch up with the sessions before anything fails.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let load = Load::start(store.clone(), keys.clone(), 4, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let old_port = group.primary_port()?;
    let fault = Instant::now();
    let victim = group
        .servers_mut()
        .iter_mut()
        .find(|s| s.port() == old_port)
        .context("no primary")?;
    victim.kill();
    let new_port =
        tokio::task::block_in_place(|| group.wait_for_failover(old_port, Duration::from_secs(30)))?;
    println!(
        "Sentinel, SIGKILL: the sentinels named the replica (port {new_port}) {} ms after the kill",
        fault.elapsed().as_millis()
    );
    // Requests succeed again within a bound: the watcher asks the sentinels every second.
    let recovered = loop {
        let probe =
            conformance::apply_step(store.as_ref(), &keys[0], Delta::default(), false).await;
        // Found: the session, on the new primary.
        if matches!(probe, Ok(Applied::Done { .. })) {
            break fault.elapsed();
        }
        ensure!(
            fault.elapsed() < Duration::from_secs(30),
            "no recovery: {probe:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "Sentinel, SIGKILL: the store wrote to the new primary {} ms after the kill",
        recovered.as_millis()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fault_at = load.elapsed().saturating_sub(fault.elapsed());
    let report = load.finish(fault_at, &vec![0; keys.len()]).await?;
    report.print("Sentinel, SIGKILL");
    ensure!(
        report.errors > 0,
        "no call failed: the kill did not reach the load"
    );
    ensure!(report.unexplained_increments == 0, "increments nobody made");
    ensure!(
        report.sessions_survived.0 == report.sessions_survived.1,
        "sessions lost: {report:?}"
    );
    ensure!(
        report.last_ack_per_shard[0] > report.fault_at,
        "never acknowledged again: {report:?}"
    );
    Ok(())
}
