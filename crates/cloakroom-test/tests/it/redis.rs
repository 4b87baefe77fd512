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

/// A plain load with a touch interval is one HGETALL, checked in Rust: on every record, good
/// or planted, it answers what the script answers (missing, the fields, or the error's kind),
/// and it leaves to the script, in a second call, exactly the reads that must write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_load_answers_as_the_script_does_and_sends_it_only_when_it_must_write()
-> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let proxy = cloakroom_test::CountingProxy::start(server.port()).await?;
    let store = RedisStore::connect(proxy.url()).await?;
    let mut conn = server.connection()?;
    let now = cloakroom_test::conformance::now_ms();
    let (idle, touch) = (60_000u64, 10_000u64);
    let fresh = (now - 1_000).to_string();
    let stale = (now - 20_000).to_string();
    let (later, past) = ((now + 3_600_000).to_string(), (now - 1).to_string());
    let over_idle = (now - 61_000).to_string();
    let ahead = (now + 60_000).to_string();
    let non_utf8: &[u8] = b"\xff\xfe";
    // Each record (its name, its fields), and the commands its load must send.
    type Case<'a> = (&'a str, Vec<(&'a str, &'a [u8])>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        ("missing", vec![], &["HGETALL"]),
        (
            "live, touched within the interval",
            vec![
                ("__deadline", later.as_bytes()),
                ("__touched", fresh.as_bytes()),
                ("u", b"1"),
            ],
            &["HGETALL"],
        ),
        (
            "live, a touch due",
            vec![
                ("__deadline", later.as_bytes()),
                ("__touched", stale.as_bytes()),
                ("u", b"1"),
            ],
            &["HGETALL", "EVALSHA"],
        ),
        (
            "never touched",
            vec![("__deadline", later.as_bytes()), ("u", b"1")],
            &["HGETALL", "EVALSHA"],
        ),
        (
            "past its deadline",
            vec![
                ("__deadline", past.as_bytes()),
                ("__touched", fresh.as_bytes()),
            ],
            &["HGETALL", "EVALSHA"],
        ),
        (
            "idle too long",
            vec![
                ("__deadline", later.as_bytes()),
                ("__touched", over_idle.as_bytes()),
            ],
            &["HGETALL", "EVALSHA"],
        ),
        (
            "its own idle timeout, passed",
            vec![
                ("__deadline", later.as_bytes()),
                ("__touched", stale.as_bytes()),
                ("__idle", b"15000"),
            ],
            &["HGETALL", "EVALSHA"],
        ),
        (
            "a deadline in exponent notation",
            vec![("__deadline", b"1e15"), ("__touched", fresh.as_bytes())],
            &["HGETALL", "EVALSHA"],
        ),
        (
            "a touch with a leading zero",
            vec![("__deadline", later.as_bytes()), ("__touched", b"01")],
            &["HGETALL", "EVALSHA"],
        ),
        (
            "its own idle timeout, longer than the configured one",
            vec![
                ("__deadline", later.as_bytes()),
                ("__touched", over_idle.as_bytes()),
                ("__idle", b"120000"),
                ("u", b"1"),
            ],
            &["HGETALL", "EVALSHA"],
        ),
        (
            "an own idle timeout of 0, which counts as none",
            vec![
                ("__deadline", later.as_bytes()),
                ("__touched", fresh.as_bytes()),
                ("__idle", b"0"),
                ("u", b"1"),
            ],
            &["HGETALL"],
        ),
        (
            "a touch stamped by a clock ahead",
            vec![
                ("__deadline", later.as_bytes()),
                ("__touched", ahead.as_bytes()),
                ("u", b"1"),
            ],
            &["HGETALL"],
        ),
        ("no deadline", vec![("u", b"1")], &["HGETALL", "EVALSHA"]),
        (
            "a field that is not text",
            vec![
                ("__deadline", later.as_bytes()),
                ("__touched", fresh.as_bytes()),
                ("u", non_utf8),
            ],
            &["HGETALL"],
        ),
        (
            "nothing that is text",
            vec![("__deadline", non_utf8)],
            &["HGETALL", "EVALSHA"],
        ),
        ("a string key", vec![], &["HGETALL", "EVALSHA"]),
    ];
    let outcome = |result: cloakroom_core::Result<Applied>| match result {
        Ok(Applied::Missing) => "missing".to_owned(),
        Ok(Applied::Done { fields, .. }) => {
            let mut user: Vec<_> = fields
                .as_deref()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|(name, _)| !name.starts_with("__"))
                .collect();
            user.sort();
            format!("fields {user:?}")
        }
        Ok(_) => "another outcome".to_owned(),
        Err(e) => format!("error {:?}", e.kind()),
    };
    for (what, record, commands) in cases {
        let mut results = Vec::new();
        // The interval, then 0: with a touch on every access, every load is the script's.
        for touch_ms in [touch, 0] {
            let k = SessionToken::generate()?.key();
            let full = store.redis_key(&k);
            if what == "a string key" {
                let _: () = conn.set(&full, "not a hash")?;
            }
            for (name, value) in &record {
                let _: () = conn.hset(&full, *name, *value)?;
            }
            let apply = cloakroom_core::store::Apply {
                access: cloakroom_core::store::Access {
                    now_ms: now,
                    idle_ms: idle,
                    touch_ms,
                },
                delta: Delta::default(),
                load: true,
            };
            proxy.reset();
            results.push(outcome(store.apply(&k, &apply).await));
            // With a touch interval of 0 the script is the only call.
            let expected: &[&str] = if touch_ms == touch {
                commands
            } else {
                &["EVALSHA"]
            };
            ensure!(
                proxy.commands() == expected,
                "{what}, touch interval {touch_ms} ms: {:?}, not {expected:?}",
                proxy.commands()
            );
        }
        ensure!(
            results[0] == results[1],
            "{what}: the plain read answered {}, the script {}",
            results[0],
            results[1]
        );
    }
    Ok(())
}
