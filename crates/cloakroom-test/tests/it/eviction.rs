//! Redis at `maxmemory`: eviction must never drop a user's index while the user's sessions live
//! on, under the policies the operator guide recommends; the store reads the policy at start-up
//! and tells which policies break that.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use cloakroom_core::adapter;
use cloakroom_core::{SessionConfig, SessionManager, Store, UserKey};
use cloakroom_redis::RedisStore;
use cloakroom_test::RedisServer;
use cloakroom_test::requests::{request, returned_cookie};

const SECRET: &[u8] = b"eviction-test-secret-0123456789abcdef012345";

/// Writes `count` keys of 1 KiB with a TTL (volatile, like sessions) through one pipeline.
fn fill(conn: &mut redis::Connection, tag: &str, count: usize) -> anyhow::Result<()> {
    let value = "x".repeat(1024);
    let mut pipe = redis::pipe();
    for i in 0..count {
        pipe.cmd("SET")
            .arg(format!("filler:{tag}:{i}"))
            .arg(&value)
            .arg("PX")
            .arg(3_600_000)
            .ignore();
    }
    pipe.query::<()>(conn)?;
    Ok(())
}

fn evicted_keys(conn: &mut redis::Connection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("stats").query(conn)?;
    info.lines()
        .find_map(|line| line.trim().strip_prefix("evicted_keys:"))
        .and_then(|n| n.parse().ok())
        .context("INFO stats has no evicted_keys")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volatile_lru_never_evicts_the_index_of_a_live_session() -> anyhow::Result<()> {
    let server = RedisServer::spawn_with_args(&[
        "--maxmemory",
        "4mb",
        "--maxmemory-policy",
        "volatile-lru",
        // Sample widely, so that LRU finds the key used longest ago.
        "--maxmemory-samples",
        "64",
    ])?;
    let store = Arc::new(RedisStore::connect(server.url()).await?);
    let policy = store
        .eviction_policy()
        .await?
        .context("no eviction policy")?;
    ensure!(policy.name == "volatile-lru" && policy.maxmemory == 4 << 20);
    ensure!(policy.keeps_user_indexes());
    let m = SessionManager::new(store.clone(), SessionConfig::new(SECRET)?)?;
    let login = adapter::session_from_cookie_headers(&m, []);
    login.start()?;
    login.set_user("ann")?;
    let ann =
        returned_cookie(&adapter::finish(&login).await?.set_cookie).context("no login cookie")?;
    let index = format!("cloakroom:user:{}", UserKey::of("ann").as_str());

    // The index is now the key used longest ago; then memory fills with keys used less long
    // ago, and ann keeps clicking, so her session is the most recently used of all. Fewer keys
    // are evicted than were written before her clicks, so LRU never needs to pick her session.
    let mut conn = server.connection()?;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    fill(&mut conn, "old", 2_000)?;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for round in 0..10 {
        ensure!(
            request(&m, &ann).incr("visits", 1).await?.is_some(),
            "ann's session was evicted although she is the most active user"
        );
        fill(&mut conn, &format!("new{round}"), 150)?;
    }
    let evicted = evicted_keys(&mut conn)?;
    ensure!(evicted > 500, "only {evicted} keys were evicted");
    let exists: bool = redis::cmd("EXISTS").arg(&index).query(&mut conn)?;
    ensure!(exists, "ann's index was evicted while her session lives on");
    ensure!(
        m.end_sessions_of("ann").await? == 1,
        "log out everywhere missed ann's live session"
    );
    ensure!(!request(&m, &ann).exists().await?, "ann's session survived");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_that_can_evict_an_index_are_detected() -> anyhow::Result<()> {
    for (args, name, keeps) in [
        (
            vec!["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"],
            "allkeys-lru",
            false,
        ),
        (
            vec!["--maxmemory", "64mb", "--maxmemory-policy", "noeviction"],
            "noeviction",
            true,
        ),
        // No memory limit: nothing is ever evicted, whatever the policy.
        (
            vec!["--maxmemory-policy", "allkeys-lfu"],
            "allkeys-lfu",
            true,
        ),
    ] {
        let server = RedisServer::spawn_with_args(&args)?;
        let store = RedisStore::connect(server.url()).await?;
        let policy = store
            .eviction_policy()
            .await?
            .context("no eviction policy")?;
        ensure!(policy.name == name, "{policy}");
        ensure!(policy.keeps_user_indexes() == keeps, "{policy}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_written_by_an_earlier_version_is_upgraded_in_place() -> anyhow::Result<()> {
    // Earlier indexes had a TTL and bare session keys as members: the next login's entry takes
    // the TTL away (or the index would expire with the new entry in it, and stay evictable),
    // and a bare member is listed as written long ago and can be removed.
    let server = RedisServer::spawn()?;
    let store = Arc::new(RedisStore::connect(server.url()).await?);
    let m = SessionManager::new(store.clone(), SessionConfig::new(SECRET)?)?;
    let index = format!("cloakroom:user:{}", UserKey::of("ann").as_str());
    let old = cloakroom_core::SessionToken::generate()?.key();
    let far = cloakroom_test::conformance::now_ms() + 3_600_000;
    let mut conn = server.connection()?;
    let _: () = redis::cmd("ZADD")
        .arg(&index)
        .arg(far)
        .arg(old.as_str())
        .query(&mut conn)?;
    let _: () = redis::cmd("PEXPIRE")
        .arg(&index)
        .arg(60_000)
        .query(&mut conn)?;
    let login = adapter::session_from_cookie_headers(&m, []);
    login.start()?;
    login.set_user("ann")?;
    adapter::finish(&login).await?;
    let ttl: i64 = redis::cmd("PTTL").arg(&index).query(&mut conn)?;
    ensure!(ttl == -1, "the index kept its TTL: {ttl}");
    let now = cloakroom_test::conformance::now_ms();
    let entries = store.index_members(&UserKey::of("ann"), now).await?;
    let bare = entries
        .iter()
        .find(|e| e.key == old)
        .context("the bare member is not listed")?;
    ensure!(bare.written_ms == 0 && entries.len() == 2, "{entries:?}");
    store.index_remove(&UserKey::of("ann"), bare, now).await?;
    let left = store.index_members(&UserKey::of("ann"), now).await?;
    ensure!(left.len() == 1 && left[0].key != old, "{left:?}");
    Ok(())
}
