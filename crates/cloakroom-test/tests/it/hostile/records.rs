//! Corrupted session records: what a bug, an operator's mistake, another application sharing
//! the database, or an attacker with write access to Redis could leave under a session's key.
//!
//! Expected outcomes: data cloakroom cannot read is a typed error (`Corrupt`, a 503 over HTTP,
//! or `Decode` for one field), never a panic, never a guess; a record that is not a session of
//! ours is treated as absent; either way the record is left exactly as it was, for whoever
//! investigates, and nothing planted outlives the configured timeouts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use cloakroom_core::store::Op;
use cloakroom_core::{ErrorKind, SessionConfig, SessionManager};
use cloakroom_redis::RedisStore;
use cloakroom_test::conformance::apply_step;
use cloakroom_test::requests::{login, request, token_of};
use cloakroom_test::{CallCounts, RedisServer, StoreFixture};
use redis::Commands;

use super::{SECRET, counted, ensure_kind};

const PATIENT: Duration = Duration::from_secs(10);

/// A logged-in session on a fresh redis-server, with a connection to tamper with its record.
struct Planted {
    m: SessionManager,
    counts: Arc<CallCounts>,
    cookie: String,
    key: String,
    conn: redis::Connection,
    _server: RedisServer,
}

async fn planted() -> anyhow::Result<Planted> {
    let server = RedisServer::spawn()?;
    let store = RedisStore::builder(server.url())
        .with_operation_timeout(PATIENT)
        .with_connect_timeout(PATIENT)
        .connect()
        .await?;
    let store = Arc::new(store);
    let (m, counts) = counted(store.clone(), SessionConfig::new(SECRET)?)?;
    let cookie = login(&m, "ann").await?;
    let key = store.redis_key(&token_of(&cookie)?.key());
    let conn = server.connection()?;
    Ok(Planted {
        m,
        counts,
        cookie,
        key,
        conn,
        _server: server,
    })
}

type Record = Vec<(Vec<u8>, Vec<u8>)>;

fn record(p: &mut Planted) -> anyhow::Result<Record> {
    let mut fields: Record = p.conn.hgetall(&p.key)?;
    fields.sort();
    Ok(fields)
}

/// Reading the session is a `Corrupt` error and leaves the record as it was; logging out still
/// deletes it. With `wrong_type`, the key is not a hash at all, and writes fail the same way.
/// (A hash with one unreadable field still takes writes to other fields: the store applies
/// them without reading the rest, and only the reply, which carries every field, fails.)
async fn unreadable(p: &mut Planted, wrong_type: bool) -> anyhow::Result<()> {
    let before = raw_dump(p)?;
    let s = request(&p.m, &p.cookie);
    ensure_kind(s.exists().await, ErrorKind::Corrupt)?;
    let s = request(&p.m, &p.cookie);
    ensure_kind(s.get::<String>("username").await, ErrorKind::Corrupt)?;
    if wrong_type {
        let s = request(&p.m, &p.cookie);
        ensure_kind(s.incr("visits", 1).await, ErrorKind::Corrupt)?;
        let s = request(&p.m, &p.cookie);
        s.insert("theme", "dark").await?;
        ensure_kind(s.finish().await, ErrorKind::Corrupt)?;
    }
    ensure!(raw_dump(p)? == before, "the corrupted record was modified");
    let s = request(&p.m, &p.cookie);
    s.destroy().await;
    s.finish().await?;
    let exists: bool = p.conn.exists(&p.key)?;
    ensure!(!exists, "logging out did not delete the corrupted record");
    Ok(())
}

fn raw_dump(p: &mut Planted) -> anyhow::Result<Vec<u8>> {
    let dump: Option<Vec<u8>> = redis::cmd("DUMP").arg(&p.key).query(&mut p.conn)?;
    dump.context("the record is gone")
}

const WRONG_TYPE: bool = true;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_under_the_session_key() -> anyhow::Result<()> {
    let mut p = planted().await?;
    let bytes: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(97) ^ 0xA5).collect();
    let _: () = p.conn.set(&p.key, bytes)?;
    unreadable(&mut p, WRONG_TYPE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_under_the_session_key() -> anyhow::Result<()> {
    let mut p = planted().await?;
    let _: () = p.conn.del(&p.key)?;
    let _: () = p.conn.rpush(&p.key, &["__deadline", "99999999999999"])?;
    unreadable(&mut p, WRONG_TYPE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_value_that_is_not_utf8() -> anyhow::Result<()> {
    let mut p = planted().await?;
    let _: () = p.conn.hset(&p.key, "username", &b"\"\xff\xfe\""[..])?;
    unreadable(&mut p, !WRONG_TYPE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_name_that_is_not_utf8() -> anyhow::Result<()> {
    let mut p = planted().await?;
    let _: () = p.conn.hset(&p.key, &b"user\xc0name"[..], "1")?;
    unreadable(&mut p, !WRONG_TYPE).await
}

/// The record is not a session of ours: treated as absent after one lookup, a write to it
/// lands nowhere, and the record (fields and TTL) is left alone.
async fn foreign(p: &mut Planted) -> anyhow::Result<()> {
    let (before, ttl_before) = (record(p)?, p.conn.pttl::<_, i64>(&p.key)?);
    let calls = p.counts.total();
    let s = request(&p.m, &p.cookie);
    s.insert("username", "mallory").await?;
    ensure!(
        s.incr("visits", 1).await?.is_none(),
        "a foreign record counted a visit"
    );
    ensure!(!s.exists().await?);
    s.finish().await?;
    ensure!(p.counts.total() == calls + 1, "expected one lookup");
    ensure!(record(p)? == before, "the foreign record was modified");
    let ttl: i64 = p.conn.pttl(&p.key)?;
    ensure!(ttl <= ttl_before, "the foreign record's TTL was extended");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_missing_its_deadline() -> anyhow::Result<()> {
    let mut p = planted().await?;
    let _: () = p.conn.hdel(&p.key, "__deadline")?;
    foreign(&mut p).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_whose_deadline_is_not_a_number() -> anyhow::Result<()> {
    let mut p = planted().await?;
    let _: () = p.conn.hset(&p.key, "__deadline", "tomorrow")?;
    foreign(&mut p).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_of_another_application_under_our_key() -> anyhow::Result<()> {
    let mut p = planted().await?;
    let _: () = p.conn.del(&p.key)?;
    let _: () = p
        .conn
        .hset_multiple(&p.key, &[("user_id", "42"), ("role", "admin")])?;
    foreign(&mut p).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_of_an_unknown_newer_schema() -> anyhow::Result<()> {
    // Fields a later version might add, reserved prefix and all: the session still works,
    // and they are kept, not dropped by a write.
    let mut p = planted().await?;
    let _: () = p
        .conn
        .hset_multiple(&p.key, &[("__schema", "2"), ("__owner", "\"x\"")])?;
    let s = request(&p.m, &p.cookie);
    ensure!(s.incr("visits", 1).await? == Some(1));
    ensure!(s.get::<String>("username").await? == Some("ann".into()));
    s.insert("theme", "dark").await?;
    s.finish().await?;
    let schema: Option<String> = p.conn.hget(&p.key, "__schema")?;
    ensure!(
        schema.as_deref() == Some("2"),
        "an unknown field was dropped"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_deadline_in_the_far_future() -> anyhow::Result<()> {
    // Someone moves the deadline a million years out: the idle timeout still bounds the key.
    let mut p = planted().await?;
    let _: () = p.conn.hset(&p.key, "__deadline", "31536000000000000000")?;
    ensure!(request(&p.m, &p.cookie).exists().await?);
    let ttl: i64 = p.conn.pttl(&p.key)?;
    let idle = i64::try_from(p.m.config().idle_timeout().as_millis())?;
    ensure!(
        ttl > 0 && ttl <= idle,
        "TTL {ttl} ms beyond the idle timeout"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_key_stripped_of_its_ttl() -> anyhow::Result<()> {
    // PERSIST by mistake: the next access gives the key its expiry back.
    let mut p = planted().await?;
    let _: () = p.conn.persist(&p.key)?;
    ensure!(request(&p.m, &p.cookie).exists().await?);
    let ttl: i64 = p.conn.pttl(&p.key)?;
    ensure!(ttl > 0, "the key still has no TTL: {ttl}");
    Ok(())
}

// Field-level corruption, planted through the store interface itself, so that it runs over the
// memory store too.

cloakroom_test::test_over_memory_and_redis!(
    a_field_holding_text_that_is_not_json,
    a_counter_holding_text,
    a_counter_past_two_to_the_fifty_third,
    a_session_planted_past_the_limits,
);

/// Logs in over `f` and plants `fields` in the session with no bounds checked.
async fn plant(
    f: &StoreFixture,
    fields: Vec<(String, String)>,
) -> anyhow::Result<(SessionManager, Arc<CallCounts>, String)> {
    let (m, counts) = counted(f.store.clone(), SessionConfig::new(SECRET)?)?;
    let cookie = login(&m, "ann").await?;
    let ops = fields
        .into_iter()
        .map(|(name, value)| Op::Set { name, value })
        .collect();
    apply_step(f.store(), &token_of(&cookie)?.key(), ops, false, None).await?;
    Ok((m, counts, cookie))
}

async fn user_field(f: &StoreFixture, cookie: &str, name: &str) -> anyhow::Result<Option<String>> {
    let fields = cloakroom_test::conformance::load(f.store(), &token_of(cookie)?.key()).await?;
    Ok(fields.context("session gone")?.get(name).cloned())
}

async fn a_field_holding_text_that_is_not_json(f: StoreFixture) -> anyhow::Result<()> {
    let (m, _, cookie) = plant(&f, vec![("cart".into(), "{not json".into())]).await?;
    let s = request(&m, &cookie);
    ensure_kind(s.get::<Vec<u32>>("cart").await, ErrorKind::Decode)?;
    ensure!(s.get::<String>("username").await? == Some("ann".into()));
    ensure!(m.metrics().decode_errors() == 1);
    s.finish().await?;
    ensure!(user_field(&f, &cookie, "cart").await?.as_deref() == Some("{not json"));
    Ok(())
}

/// An increment of a counter planted as `stored` is `NotAnInteger`, and the value stays.
async fn not_a_counter_of_ours(f: StoreFixture, stored: &str) -> anyhow::Result<()> {
    let (m, _, cookie) = plant(&f, vec![("visits".into(), stored.into())]).await?;
    ensure_kind(
        request(&m, &cookie).incr("visits", 1).await,
        ErrorKind::NotAnInteger,
    )?;
    ensure!(user_field(&f, &cookie, "visits").await?.as_deref() == Some(stored));
    Ok(())
}

async fn a_counter_holding_text(f: StoreFixture) -> anyhow::Result<()> {
    not_a_counter_of_ours(f, "\"ten\"").await
}

async fn a_counter_past_two_to_the_fifty_third(f: StoreFixture) -> anyhow::Result<()> {
    // Beyond the integers every JSON reader holds exactly: not a counter of ours.
    not_a_counter_of_ours(f, "9007199254740993").await
}

async fn a_session_planted_past_the_limits(f: StoreFixture) -> anyhow::Result<()> {
    // 300 fields where 256 are allowed: readable, may shrink, may not grow.
    let fields = (0..300).map(|i| (format!("f{i}"), i.to_string())).collect();
    let (m, _, cookie) = plant(&f, fields).await?;
    let s = request(&m, &cookie);
    ensure!(s.get::<u32>("f299").await? == Some(299));
    ensure_kind(s.insert("extra", &1).await, ErrorKind::TooLarge)?;
    s.remove("f0").await?;
    s.finish().await?;
    // A blind write (nothing loaded) is refused by the store itself.
    let s = request(&m, &cookie);
    s.insert("extra", &1).await?;
    ensure_kind(s.finish().await, ErrorKind::TooLarge)?;
    ensure!(user_field(&f, &cookie, "extra").await?.is_none());
    ensure!(user_field(&f, &cookie, "f0").await?.is_none());
    Ok(())
}
