//! Failures of a live three-primary, three-replica cluster under load, with bookkeeping: every
//! increment is recorded as acknowledged or failed, and the ledger reports what each failure
//! cost (see `cloakroom_test::ledger`). Run with `--nocapture` to see the figures.
//!
//! Two groups of sessions run side by side: one through a store with default settings, one
//! through a store that requires a replica's confirmation of every write
//! (`ReplicaAcks::on_every_write(..).required()`). Only the second can promise that nothing
//! acknowledged is lost when a primary dies: asynchronous replication may not have shipped the
//! last writes, and the first group's figure shows whether that happened in this run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use cloakroom_core::{SessionKey, Store};
use cloakroom_redis::{RedisStore, ReplicaAcks};
use cloakroom_test::RedisCluster;
use cloakroom_test::ledger::{Load, Report};

const SESSIONS_PER_GROUP: usize = 24;
const WORKERS_PER_GROUP: usize = 4;
const PAUSE: Duration = Duration::from_millis(5);

struct Group {
    title: &'static str,
    store: Arc<RedisStore>,
    keys: Vec<SessionKey>,
    shard_of: Vec<usize>,
}

struct Running {
    group: Group,
    load: Load,
}

impl Running {
    async fn finish(self, fault: Instant) -> anyhow::Result<(Report, u64)> {
        let fault_at = self.load.elapsed().saturating_sub(fault.elapsed());
        let report = self.load.finish(fault_at, &self.group.shard_of).await?;
        report.print(self.group.title);
        ensure!(
            report.unexplained_increments == 0,
            "{}: increments nobody made",
            self.group.title
        );
        Ok((report, self.group.store.unconfirmed_writes()))
    }
}

// How long the second group's writes wait for a replica's acknowledgement.
const ACK_WAIT: Duration = Duration::from_millis(200);

// The two groups of sessions, each key mapped to its shard (numbered by the primaries' order).
// The second group's writes wait up to `ack_wait` for a replica.
async fn groups(cluster: &RedisCluster, ack_wait: Duration) -> anyhow::Result<Vec<Group>> {
    let primaries: Vec<usize> = cluster
        .topology()?
        .iter()
        .filter(|n| n.is_primary)
        .filter_map(|n| cluster.index_of_port(n.port))
        .collect();
    let mut groups = Vec::new();
    for (title, acks) in [
        ("default store", None),
        (
            "store requiring a replica's confirmation",
            Some(ReplicaAcks::on_every_write(1, ack_wait).required()),
        ),
    ] {
        let mut builder = RedisStore::builder(cluster.url());
        if let Some(acks) = acks {
            builder = builder.with_replica_acks(acks);
        }
        let store = Arc::new(builder.connect().await?);
        let keys = if acks.is_some() {
            let (keys, skipped) =
                Load::create_confirmed_sessions(&store, SESSIONS_PER_GROUP).await?;
            if skipped > 0 {
                println!("{title}: {skipped} creates unconfirmed in the setup were left out");
            }
            keys
        } else {
            Load::create_sessions(store.as_ref(), SESSIONS_PER_GROUP).await?
        };
        let shard_of = keys
            .iter()
            .map(|key| {
                let node = cluster.primary_of_key(&store.redis_key(key))?;
                primaries
                    .iter()
                    .position(|&p| p == node)
                    .context("a key's primary is not a primary")
            })
            .collect::<anyhow::Result<Vec<usize>>>()?;
        groups.push(Group {
            title,
            store,
            keys,
            shard_of,
        });
    }
    Ok(groups)
}

fn start(groups: Vec<Group>) -> Vec<Running> {
    groups
        .into_iter()
        .map(|group| {
            let store: Arc<dyn Store> = group.store.clone();
            let load = Load::start(store, group.keys.clone(), WORKERS_PER_GROUP, PAUSE);
            Running { group, load }
        })
        .collect()
}

// Waits (on this thread: the cluster's helpers block) until the cluster is healthy again.
fn heal(cluster: &RedisCluster) -> anyhow::Result<()> {
    tokio::task::block_in_place(|| cluster.wait_until_healthy(Duration::from_secs(30)))
}

// The index of the primary that holds the first session, the victim of each fault.
fn victim(cluster: &RedisCluster, group: &Group) -> anyhow::Result<usize> {
    cluster.primary_of_key(&group.store.redis_key(&group.keys[0]))
}

// Lets the load run on the healed cluster for a while, stops it, and checks that the fault did
// reach it (some call failed).
async fn finish_after_recovery(
    running: Vec<Running>,
    fault: Instant,
    what: &str,
) -> anyhow::Result<Vec<(Report, u64)>> {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut results = Vec::new();
    for group in running {
        results.push(group.finish(fault).await?);
    }
    ensure!(
        results[0].0.errors > 0,
        "no call failed: the {what} did not reach the load"
    );
    Ok(results)
}

// What every fault must leave behind: everything created survived, the acknowledged writes
// that a replica confirmed are all there, and requests succeed again.
fn check_after_fault(title: &str, results: &[(Report, u64)]) -> anyhow::Result<()> {
    for (report, _) in results {
        ensure!(
            report.sessions_survived.0 == report.sessions_survived.1,
            "{title}: sessions lost: {report:?}"
        );
        // Every shard, the faulty one included, acknowledged writes again after the fault.
        ensure!(
            report
                .last_ack_per_shard
                .iter()
                .all(|&last| last > report.fault_at),
            "{title}: a shard never recovered: {report:?}"
        );
    }
    // Every write this group saw acknowledged, a replica had confirmed.
    let (confirmed, _) = &results[1];
    ensure!(
        confirmed.lost_acknowledged == 0,
        "{title}: {} increments lost though a replica had confirmed them",
        confirmed.lost_acknowledged
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_load_is_replaced_by_its_replica() -> anyhow::Result<()> {
    let mut cluster = RedisCluster::spawn()?;
    let groups = groups(&cluster, ACK_WAIT).await?;
    let victim = victim(&cluster, &groups[0])?;
    let running = start(groups);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let fault = Instant::now();
    cluster.node_mut(victim).context("no victim")?.kill();
    heal(&cluster)?;
    println!(
        "SIGKILL: the replica served the shard {} ms after the kill",
        fault.elapsed().as_millis()
    );
    // The dead node comes back (empty: persistence is off) and rejoins as the new primary's
    // replica, so writes that require a replica's confirmation can succeed again.
    cluster.node_mut(victim).context("no victim")?.restart()?;
    heal(&cluster)?;
    println!(
        "SIGKILL: the restarted node was an in-sync replica {} ms after the kill",
        fault.elapsed().as_millis()
    );
    let results = finish_after_recovery(running, fault, "kill").await?;
    check_after_fault("SIGKILL", &results)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_frozen_past_the_timeout_is_replaced_and_rejoins() -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn()?;
    let groups = groups(&cluster, ACK_WAIT).await?;
    let victim = victim(&cluster, &groups[0])?;
    let running = start(groups);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let fault = Instant::now();
    let frozen = &cluster.nodes()[victim];
    frozen.pause()?;
    // Past the one-second operation timeout and the one-second node timeout, until the replica
    // is promoted while the old primary still holds its clients' connections.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let witness = (0..cluster.nodes().len())
        .find(|&i| i != victim)
        .context("no other node")?;
    let frozen_port = frozen.port();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = tokio::task::block_in_place(|| cluster.topology_seen_by(witness))?;
        let replaced = view
            .iter()
            .any(|n| n.port == frozen_port && n.slot_count == 0)
            && view
                .iter()
                .filter(|n| n.is_primary && n.slot_count > 0)
                .count()
                == 3;
        if replaced {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the frozen primary was never replaced"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "SIGSTOP: the replica was promoted {} ms after the freeze",
        fault.elapsed().as_millis()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    frozen.resume()?;
    heal(&cluster)?;
    println!(
        "SIGSTOP: thawed, demoted and in sync {} ms after the freeze",
        fault.elapsed().as_millis()
    );
    let results = finish_after_recovery(running, fault, "freeze").await?;
    let roles = cluster.topology()?;
    let old = roles
        .iter()
        .find(|n| n.port == cluster.nodes()[victim].port())
        .context("the frozen node left the cluster")?;
    ensure!(
        !old.is_primary,
        "the frozen primary was not demoted: {old:?}"
    );
    check_after_fault("SIGSTOP", &results)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_load_fails_no_request() -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn()?;
    // A reshard moves slots between primaries while their replicas follow: on two shared cores a
    // replica's acknowledgement then took more than 200 ms for a few writes in some runs, which
    // is not a request the reshard failed. 400 ms stays below half the operation timeout, as
    // the store requires.
    let groups = groups(&cluster, Duration::from_millis(400)).await?;
    let source = victim(&cluster, &groups[0])?;
    let topology = cluster.topology()?;
    let port = cluster.nodes()[source].port();
    let from = topology
        .iter()
        .find(|n| n.port == port)
        .context("no source")?
        .id
        .clone();
    let to = topology
        .iter()
        .find(|n| n.is_primary && n.port != port)
        .context("no target")?
        .id
        .clone();
    let before: Vec<Vec<usize>> = groups
        .iter()
        .map(|g| {
            g.keys
                .iter()
                .map(|k| cluster.primary_of_key(&g.store.redis_key(k)))
                .collect()
        })
        .collect::<anyhow::Result<_>>()?;
    let running = start(groups);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let fault = Instant::now();
    let args: Vec<String> = [
        "--cluster",
        "reshard",
        &format!("127.0.0.1:{port}"),
        "--cluster-from",
        &from,
        "--cluster-to",
        &to,
        "--cluster-slots",
        "3000",
        "--cluster-yes",
    ]
    .map(str::to_owned)
    .to_vec();
    tokio::task::block_in_place(|| cluster.redis_cli(&args))?;
    println!(
        "reshard: 3000 slots moved in {} ms",
        fault.elapsed().as_millis()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut moved = 0;
    let mut results = Vec::new();
    for (running, before) in running.into_iter().zip(before) {
        for (key, was) in running.group.keys.iter().zip(before) {
            if cluster.primary_of_key(&running.group.store.redis_key(key))? != was {
                moved += 1;
            }
        }
        results.push(running.finish(fault).await?);
    }
    println!("reshard: {moved} of the sessions under load changed node");
    ensure!(moved > 0, "no session under load was moved");
    for (report, _) in &results {
        ensure!(report.errors == 0, "resharding failed requests: {report:?}");
        ensure!(
            report.lost_acknowledged == 0,
            "resharding lost writes: {report:?}"
        );
    }
    check_after_fault("reshard", &results)
}
