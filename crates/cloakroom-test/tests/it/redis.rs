//! The conformance suite over a real redis-server, and Redis-specific checks.

use std::time::Duration;

use anyhow::{Context, ensure};
use cloakroom_core::store::{Applied, Delta, Store};
use cloakroom_core::{ErrorKind, SessionToken};
use cloakroom_redis::RedisStore;
use cloakroom_test::conformance::{apply_step, load, new_session};
use cloakroom_test::{RedisServer, redis_fixture};
use redis::Commands;

cloakroom_test::store_conformance!(redis_fixture());

/// The suite again, logged in as the least-privilege ACL user: proves its rules are enough.
mod acl {
    cloakroom_test::store_conformance!(cloakroom_test::redis_acl_fixture());
}

/// Every key under the prefix, and its PTTL: test-only inspection (SCAN never runs in the
/// library).
fn keys_and_ttls(server: &RedisServer) -> anyhow::Result<Vec<(String, i64)>> {
    let mut conn = server.connection()?;
    let keys: Vec<String> = conn
        .scan_match::<_, String>("*")?
        .collect::<Result<_, _>>()?;
    keys.into_iter()
        .map(|k| {
            let ttl: i64 = conn.pttl(&k)?;
            Ok((k, ttl))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_session_key_is_ever_left_without_a_ttl() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let store = RedisStore::connect(server.url()).await?;
    let mut keys = Vec::new();
    for i in 0..20 {
        let k = SessionToken::generate()?.key();
        store
            .create(&k, &new_session(&[("n", "1")], 60_000, 3_600_000))
            .await?;
        let mut delta = Delta::default();
        delta.set(&format!("f{i}"), "1")?.incr("n", 1)?;
        apply_step(&store, &k, delta.clone(), i % 2 == 0).await?;
        // Writes to sessions that never existed must not create keys either.
        let ghost = SessionToken::generate()?.key();
        ensure!(apply_step(&store, &ghost, delta, i % 2 == 0).await? == Applied::Missing);
        keys.push(k);
    }
    let found = keys_and_ttls(&server)?;
    ensure!(found.len() == 20, "expected 20 keys, found {}", found.len());
    for (key, ttl) in found {
        ensure!(ttl > 0 && ttl <= 60_000, "{key} has PTTL {ttl}");
        ensure!(key.starts_with("cloakroom:"), "{key} lacks the prefix");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_one_readable_hash_keyed_by_a_hash_of_the_token() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let store = RedisStore::builder(server.url())
        .with_prefix("app1:")
        .connect()
        .await?;
    let token = SessionToken::generate()?;
    store
        .create(
            &token.key(),
            &new_session(
                &[("username", "\"ann\""), ("visits", "3")],
                60_000,
                3_600_000,
            ),
        )
        .await?;
    let mut conn = server.connection()?;
    let keys: Vec<String> = conn
        .scan_match::<_, String>("*")?
        .collect::<Result<_, _>>()?;
    ensure!(keys == vec![format!("app1:{}", token.key())], "{keys:?}");
    ensure!(
        !keys[0].contains(&token.to_text()),
        "the token itself reached Redis"
    );
    let kind: String = redis::cmd("TYPE").arg(&keys[0]).query(&mut conn)?;
    ensure!(kind == "hash");
    let username: String = conn.hget(&keys[0], "username")?;
    ensure!(username == "\"ann\"");
    let visits: i64 = conn.hincr(&keys[0], "visits", 1)?;
    ensure!(visits == 4, "counters are plain decimal for HINCRBY");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_is_reported_corrupt_not_overwritten() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let store = RedisStore::connect(server.url()).await?;
    let k = SessionToken::generate()?.key();
    let mut conn = server.connection()?;
    let full = store.redis_key(&k);
    let _: () = conn.set(&full, "not a hash")?;
    let err = load(&store, &k)
        .await
        .err()
        .context("a string key loaded as a session")?;
    let kind = err
        .downcast_ref::<cloakroom_core::Error>()
        .map(|e| e.kind());
    ensure!(kind == Some(ErrorKind::Corrupt), "{err:?}");
    let still: String = conn.get(&full)?;
    ensure!(still == "not a hash");
    // A hash without cloakroom's metadata is corrupt too; its fields are left alone, and it
    // expires after the idle timeout instead of never.
    let _: () = conn.del(&full)?;
    let _: () = conn.hset(&full, "username", "\"mallory\"")?;
    let err = load(&store, &k)
        .await
        .err()
        .context("a foreign hash loaded")?;
    let kind = err
        .downcast_ref::<cloakroom_core::Error>()
        .map(|e| e.kind());
    ensure!(kind == Some(ErrorKind::Corrupt), "{err:?}");
    let fields: Vec<(String, String)> = conn.hgetall(&full)?;
    ensure!(fields == [("username".to_owned(), "\"mallory\"".to_owned())]);
    let ttl: i64 = conn.pttl(&full)?;
    ensure!(ttl > 0, "the foreign hash has no expiry: {ttl}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_fails_fast_and_recovery_needs_no_restart() -> anyhow::Result<()> {
    let mut server = RedisServer::spawn()?;
    let store = RedisStore::connect(server.url()).await?;
    let k = SessionToken::generate()?.key();
    store
        .create(&k, &new_session(&[], 60_000, 3_600_000))
        .await?;
    server.kill();
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let err = load(&store, &k)
            .await
            .err()
            .context("a dead server answered")?;
        let elapsed = started.elapsed();
        let kind = err
            .downcast_ref::<cloakroom_core::Error>()
            .map(|e| e.kind());
        ensure!(kind == Some(ErrorKind::Unavailable), "{err:?}");
        ensure!(elapsed < Duration::from_millis(1_500), "took {elapsed:?}");
    }
    server.restart()?;
    // The restarted server is empty (no persistence); the store reconnects by itself.
    let start = std::time::Instant::now();
    loop {
        match store.create(&k, &new_session(&[], 60_000, 3_600_000)).await {
            Ok(_) => break,
            Err(e) if e.is_unavailable() && start.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    ensure!(load(&store, &k).await?.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_user_and_password_in_the_url() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let mut conn = server.connection()?;
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                "sessions",
                "on",
                ">s3cret-pass",
                "~cloakroom:*",
                "+@all",
            ][..],
        )
        .query(&mut conn)?;
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "default", "off"][..])
        .query(&mut conn)?;
    let port = server.port();
    let good = format!("redis://sessions:s3cret-pass@127.0.0.1:{port}");
    let store = RedisStore::connect(good).await?;
    let k = SessionToken::generate()?.key();
    store
        .create(&k, &new_session(&[], 60_000, 3_600_000))
        .await?;
    ensure!(load(&store, &k).await?.is_some());
    let bad = RedisStore::connect(format!("redis://sessions:wrong@127.0.0.1:{port}")).await;
    let kind = bad.err().map(|e| e.kind());
    ensure!(kind == Some(ErrorKind::Config), "wrong password: {kind:?}");
    Ok(())
}

#[tokio::test]
async fn a_bad_url_is_a_clear_error() {
    let kind = RedisStore::connect("http://example.com")
        .await
        .err()
        .map(|e| e.kind());
    assert_eq!(kind, Some(ErrorKind::Config));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_script_cache_is_refilled_without_an_error() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let store = RedisStore::connect(server.url()).await?;
    let k = SessionToken::generate()?.key();
    // As after a failover to a replica that never saw SCRIPT LOAD, or an operator's flush.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut server.connection()?)?;
    store
        .create(&k, &new_session(&[("a", "1")], 60_000, 3_600_000))
        .await?;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut server.connection()?)?;
    let fields = load(&store, &k)
        .await?
        .context("missing after a script flush")?;
    ensure!(fields.get("a").map(String::as_str) == Some("1"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_timed_out_says_its_outcome_is_unknown() -> anyhow::Result<()> {
    // A frozen server has the increment in its socket: it may run when the server thaws, so
    // the error says the outcome is unknown, and it did run.
    let server = RedisServer::spawn()?;
    let store = RedisStore::builder(server.url())
        .with_operation_timeout(Duration::from_millis(300))
        .connect()
        .await?;
    let k = SessionToken::generate()?.key();
    store
        .create(&k, &new_session(&[("n", "0")], 60_000, 3_600_000))
        .await?;
    let mut incr = Delta::default();
    incr.incr("n", 1)?;
    server.pause()?;
    let frozen = apply_step(&store, &k, incr.clone(), false).await;
    server.resume()?;
    let err = frozen.err().context("a frozen server answered")?;
    ensure!(err.is_unavailable() && err.is_outcome_unknown(), "{err:?}");
    // It ran once the server thawed.
    let mut conn = server.connection()?;
    let mut ran = false;
    for _ in 0..50 {
        let n: Option<String> = conn.hget(store.redis_key(&k), "n")?;
        if n.as_deref() == Some("1") {
            ran = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(ran, "the timed-out increment never ran");
    Ok(())
}
