//! Credentials rotated while requests run: a Redis user's password is replaced on the server
//! and in the store's `Credentials`, again and again, under load, on a standalone server and a
//! cluster. No request fails because of a rotation; once the old passwords are gone, connections
//! cut by the server come back with the newest one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::ensure;
use cloakroom_core::store::Delta;
use cloakroom_core::{SessionKey, Store};
use cloakroom_redis::{Credentials, RedisStore};
use cloakroom_test::conformance::{apply_step, new_session};
use cloakroom_test::{RedisCluster, RedisServer, SESSION_USER_RULES, ServerOptions};

const USER: &str = "rotating";
const NEXT_USER: &str = "rotating-next";

// The ids of the connections logged in as `user`, on every node.
fn clients_of(nodes: &[&RedisServer], user: &str) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for node in nodes {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut node.connection()?)?;
        for line in list.lines() {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            };
            if field("user") == Some(user)
                && let Some(id) = field("id")
            {
                ids.push(format!("{}:{id}", node.port()));
            }
        }
    }
    Ok(ids)
}

// Runs `args` as an ACL command on every node (each keeps its own users).
fn acl(nodes: &[&RedisServer], args: &[&str]) -> anyhow::Result<()> {
    for node in nodes {
        let mut cmd = redis::cmd("ACL");
        cmd.arg(args);
        cmd.query::<()>(&mut node.connection()?)?;
    }
    Ok(())
}

fn add_user(nodes: &[&RedisServer], password: &str) -> anyhow::Result<()> {
    let mut args = vec!["SETUSER", USER, "on"];
    let with = format!(">{password}");
    args.push(&with);
    args.extend(SESSION_USER_RULES.split_whitespace());
    acl(nodes, &args)
}

struct Counts {
    ok: AtomicUsize,
    failed: AtomicUsize,
}

// Increments `keys` in a loop on four tasks until `stop`, counting outcomes.
fn load(
    store: Arc<RedisStore>,
    keys: Vec<SessionKey>,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4)
        .map(|worker| {
            let (store, keys, stop, counts) =
                (store.clone(), keys.clone(), stop.clone(), counts.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    for key in keys.iter().skip(worker).step_by(4) {
                        let mut delta = Delta::default();
                        let outcome = match delta.incr("visits", 1) {
                            Ok(_) => apply_step(store.as_ref(), key, delta, false).await,
                            Err(e) => Err(e),
                        };
                        let counter = if outcome.is_ok() {
                            &counts.ok
                        } else {
                            &counts.failed
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
            })
        })
        .collect()
}

async fn rotates_under_load(nodes: &[&RedisServer], url: &str) -> anyhow::Result<()> {
    add_user(nodes, "password-0")?;
    let credentials = Credentials::new(USER, "password-0");
    let store = Arc::new(
        RedisStore::builder(url)
            .with_credentials(credentials.clone())
            .connect()
            .await?,
    );
    let mut keys = Vec::new();
    for _ in 0..16 {
        let key = cloakroom_core::SessionToken::generate()?.key();
        store
            .create(&key, &new_session(&[], 600_000, 3_600_000))
            .await?;
        keys.push(key);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts {
        ok: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
    });
    let workers = load(store.clone(), keys.clone(), stop.clone(), counts.clone());

    // Ten rotations, as an operator (or a token refresher) makes them: the new password is
    // added on the server, handed to the store, and the old one removed once the store has
    // logged in again.
    for n in 1..=10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (old, new) = (format!("password-{}", n - 1), format!("password-{n}"));
        acl(nodes, &["SETUSER", USER, &format!(">{new}")])?;
        credentials.update(USER, &new);
        tokio::time::sleep(Duration::from_millis(100)).await;
        acl(nodes, &["SETUSER", USER, &format!("<{old}")])?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = (
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    );
    println!(
        "credentials rotated 10 times under load: {} requests succeeded, {} failed",
        during.0, during.1
    );
    ensure!(
        during.1 == 0,
        "{} requests failed during the rotations",
        during.1
    );
    ensure!(during.0 > 100, "too little load: {}", during.0);

    // Live connections log in again, not only new ones: a change of user shows on the
    // server's connections, which keep their ids.
    let before = clients_of(nodes, USER)?;
    ensure!(!before.is_empty(), "no connection of {USER}");
    let mut args = vec!["SETUSER", NEXT_USER, "on", ">next-password"];
    args.extend(SESSION_USER_RULES.split_whitespace());
    acl(nodes, &args)?;
    credentials.update(NEXT_USER, "next-password");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_switch = clients_of(nodes, NEXT_USER)?;
    ensure!(
        clients_of(nodes, USER)?.is_empty(),
        "connections still logged in as {USER}"
    );
    ensure!(
        before.iter().all(|id| after_switch.contains(id)),
        "connections were replaced, not logged in again: {before:?} then {after_switch:?}"
    );
    ensure!(
        counts.failed.load(Ordering::Relaxed) == 0,
        "a request failed at the switch"
    );

    // Connections the server cuts come back with the newest credentials.
    acl(nodes, &["DELUSER", USER])?;
    for node in nodes {
        redis::cmd("CLIENT")
            .arg("KILL")
            .arg("USER")
            .arg(NEXT_USER)
            .query::<()>(&mut node.connection()?)?;
    }
    let killed_at = counts.ok.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await?;
    }
    let after = counts.ok.load(Ordering::Relaxed) - killed_at;
    let failed = counts.failed.load(Ordering::Relaxed);
    println!(
        "after the connections were cut: {after} requests succeeded, {failed} failed (in flight at the cut)"
    );
    ensure!(
        after > 100,
        "requests did not come back after the cut: {after}"
    );
    // The sessions hold every increment the store acknowledged.
    let mut total = 0;
    for key in &keys {
        if let cloakroom_core::store::Applied::Done {
            fields: Some(fields),
            ..
        } = apply_step(store.as_ref(), key, Delta::default(), true).await?
        {
            total += fields
                .get("visits")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
        }
    }
    ensure!(
        total >= counts.ok.load(Ordering::Relaxed),
        "acknowledged increments lost: {total} stored"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_fails_no_request_on_a_server() -> anyhow::Result<()> {
    let server = RedisServer::spawn_acl()?;
    let url = server.url();
    rotates_under_load(&[&server], &url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_password_fails_no_request_on_a_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn_with(
        ServerOptions {
            acl: true,
            ..ServerOptions::default()
        },
        0,
    )?;
    let nodes: Vec<&RedisServer> = cluster.nodes().iter().collect();
    rotates_under_load(&nodes, &cluster.url()).await
}
