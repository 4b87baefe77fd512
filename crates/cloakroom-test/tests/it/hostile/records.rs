//! Corrupted session records: what a bug, an operator's mistake, another application sharing
//! the database, or an attacker with write access to Redis could leave under a session's key.
//!
//! Expected outcomes: a record cloakroom cannot read as a session (a key of another type, a hash
//! without a valid deadline) is no session for the request, which goes on (the cookie is
//! cleared, the event counted and logged), and `Corrupt` for a store-level read; a field that is
//! not UTF-8 is left out of what is read; a field that does not decode is `Decode` for that field
//! alone. Never a panic, never a guess, never a user locked out: the record is left exactly as it
//! was, for whoever investigates, logging in again replaces it, and nothing planted outlives the
//! configured timeouts.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, ensure};
use cloakroom_core::adapter;
use cloakroom_core::store::Delta;
use cloakroom_core::{ErrorKind, SessionConfig, SessionLimits, SessionManager};
use cloakroom_redis::RedisStore;
use cloakroom_test::conformance::{apply_step, now_ms};
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

/// The record cannot be read as a session: the request goes on without a session (as if it had
/// expired) after one lookup, the cookie is left alone (as for an expired session), the event
/// is counted, the record is left exactly as it was, and logging in again replaces it.
async fn no_session_here(p: &mut Planted) -> anyhow::Result<()> {
    let before = raw_dump(p)?;
    let (calls, corrupt) = (p.counts.total(), p.m.metrics().corrupt_records());
    let s = request(&p.m, &p.cookie);
    s.insert("username", "mallory")?;
    ensure!(s.incr("visits", 1).await?.is_none(), "a visit was counted");
    ensure!(!s.exists().await?, "the unreadable record is a session");
    ensure!(s.get::<String>("username").await?.is_none());
    let finished = adapter::finish(&s).await?;
    ensure!(finished.set_cookie.is_none(), "{:?}", finished.set_cookie);
    ensure!(p.counts.total() == calls + 1, "expected one lookup");
    ensure!(
        p.m.metrics().corrupt_records() == corrupt + 1,
        "not counted"
    );
    let s = request(&p.m, &p.cookie);
    s.insert("theme", "dark")?;
    adapter::finish(&s).await?;
    ensure!(raw_dump(p)? == before, "the unreadable record was modified");
    // Logging in again from the same browser works and replaces it.
    let s = request(&p.m, &p.cookie);
    s.start()?;
    s.insert("username", "ann")?;
    let fresh = adapter::finish(&s)
        .await?
        .set_cookie
        .context("no new cookie")?;
    let fresh = format!("{}={}", fresh.name(), fresh.value());
    ensure!(request(&p.m, &fresh).incr("visits", 1).await? == Some(1));
    let exists: bool = p.conn.exists(&p.key)?;
    ensure!(
        !exists,
        "logging in again did not delete the unreadable record"
    );
    Ok(())
}

fn raw_dump(p: &mut Planted) -> anyhow::Result<Vec<u8>> {
    let dump: Option<Vec<u8>> = redis::cmd("DUMP").arg(&p.key).query(&mut p.conn)?;
    dump.context("the record is gone")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_under_the_session_key() -> anyhow::Result<()> {
    let mut p = planted().await?;
    let bytes: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(97) ^ 0xA5).collect();
    let _: () = p.conn.set(&p.key, bytes)?;
    no_session_here(&mut p).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_under_the_session_key() -> anyhow::Result<()> {
    let mut p = planted().await?;
    let _: () = p.conn.del(&p.key)?;
    let _: () = p.conn.rpush(&p.key, &["__deadline", "99999999999999"])?;
    no_session_here(&mut p).await
}

/// A field that is not UTF-8 text was not written by cloakroom: it is left out of what is read,
/// the rest of the session works (the visit counts), and the field stays as it was.
async fn left_out(p: &mut Planted, name: &[u8], value: &[u8]) -> anyhow::Result<()> {
    let _: () = p.conn.hset(&p.key, name, value)?;
    let s = request(&p.m, &p.cookie);
    ensure!(s.incr("visits", 1).await? == Some(1), "the visit failed");
    ensure!(s.exists().await?);
    s.insert("theme", "dark")?;
    adapter::finish(&s).await?;
    let s = request(&p.m, &p.cookie);
    ensure!(s.get::<String>("theme").await? == Some("dark".into()));
    let stored: Option<Vec<u8>> = p.conn.hget(&p.key, name)?;
    ensure!(stored.as_deref() == Some(value), "the field was changed");
    // Peeking (the user's list of sessions) leaves it out the same way.
    let listed =
        p.m.store()
            .peek(&token_of(&p.cookie)?.key(), now_ms())
            .await?;
    let listed = listed.context("the session is not seen by peek")?;
    ensure!(listed.get("theme").map(String::as_str) == Some("\"dark\""));
    ensure!(
        !listed
            .keys()
            .any(|k| k.contains(char::REPLACEMENT_CHARACTER))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_value_that_is_not_utf8() -> anyhow::Result<()> {
    let mut p = planted().await?;
    left_out(&mut p, b"username", b"\"\xff\xfe\"").await?;
    // The username is gone from what is read: the user looks logged out to the app, which
    // can log them in again.
    ensure!(
        request(&p.m, &p.cookie)
            .get::<String>("username")
            .await?
            .is_none()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_name_that_is_not_utf8() -> anyhow::Result<()> {
    let mut p = planted().await?;
    left_out(&mut p, b"user\xc0name", b"1").await?;
    ensure!(request(&p.m, &p.cookie).get::<String>("username").await? == Some("ann".into()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_missing_its_deadline() -> anyhow::Result<()> {
    let mut p = planted().await?;
    let _: () = p.conn.hdel(&p.key, "__deadline")?;
    no_session_here(&mut p).await
}

/// Every spelling of a deadline that is not a canonical decimal integer within 2^53: one
/// outcome everywhere (no session for the request, corrupt for a peek, nothing written), where
/// a looser reading once served some of them and called others dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_that_are_not_canonical_integers() -> anyhow::Result<()> {
    for bad in [
        "tomorrow",
        "nan",
        "inf",
        "1.5",
        "4102444800000.0",
        "4.1e12",
        " 4102444800000",
        "4102444800000 ",
        "+4102444800000",
        "04102444800000",
        "0x3bb2cc3d800",
        "31536000000000000000",
        "",
    ] {
        let mut p = planted().await?;
        let _: () = p.conn.hset(&p.key, "__deadline", bad)?;
        let key = token_of(&p.cookie)?.key();
        ensure_kind(p.m.store().peek(&key, now_ms()).await, ErrorKind::Corrupt)
            .with_context(|| format!("peek of {bad:?}"))?;
        no_session_here(&mut p)
            .await
            .with_context(|| format!("deadline {bad:?}"))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_record_without_a_ttl_gets_one() -> anyhow::Result<()> {
    // Nothing planted outlives the idle timeout: the record is left as it is, but expires.
    let mut p = planted().await?;
    let _: () = p.conn.hset(&p.key, "__deadline", "nan")?;
    let _: () = p.conn.persist(&p.key)?;
    ensure!(!request(&p.m, &p.cookie).exists().await?);
    let ttl: i64 = p.conn.pttl(&p.key)?;
    let idle = i64::try_from(p.m.config().idle_timeout().as_millis())?;
    ensure!(ttl > 0 && ttl <= idle, "PTTL {ttl}");
    // A key of another type too.
    let _: () = p.conn.del(&p.key)?;
    let _: () = p.conn.set(&p.key, "planted")?;
    ensure!(!request(&p.m, &p.cookie).exists().await?);
    let ttl: i64 = p.conn.pttl(&p.key)?;
    ensure!(ttl > 0 && ttl <= idle, "PTTL {ttl} for a string key");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_of_another_application_under_our_key() -> anyhow::Result<()> {
    let mut p = planted().await?;
    let _: () = p.conn.del(&p.key)?;
    let _: () = p
        .conn
        .hset_multiple(&p.key, &[("user_id", "42"), ("role", "admin")])?;
    no_session_here(&mut p).await
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
    s.insert("theme", "dark")?;
    adapter::finish(&s).await?;
    let schema: Option<String> = p.conn.hget(&p.key, "__schema")?;
    ensure!(
        schema.as_deref() == Some("2"),
        "an unknown field was dropped"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_deadline_in_the_far_future() -> anyhow::Result<()> {
    // Someone moves the deadline to the year 287396 (2^53 - 1 ms, the furthest a deadline can
    // be): the idle timeout still bounds the key.
    let mut p = planted().await?;
    let _: () = p.conn.hset(&p.key, "__deadline", "9007199254740991")?;
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
    // PERSIST by mistake: the next touch gives the key its expiry back. (A touch is due once the
    // touch interval has passed since the last one; here the last was 61 s ago, past the default
    // interval of a 30-minute idle timeout, 60 s.)
    let mut p = planted().await?;
    let _: () = p.conn.persist(&p.key)?;
    let long_ago = cloakroom_test::conformance::now_ms() - 61_000;
    let _: () = p.conn.hset(&p.key, "__touched", long_ago.to_string())?;
    ensure!(request(&p.m, &p.cookie).exists().await?);
    let ttl: i64 = p.conn.pttl(&p.key)?;
    ensure!(ttl > 0, "the key still has no TTL: {ttl}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_value_nested_a_hundred_thousand_deep() -> anyhow::Result<()> {
    // Deeper than any delta may carry, so only another writer can plant it: reading it is a
    // `Decode` error for that field, not a stack overflow, and the rest of the session reads.
    let mut p = planted().await?;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let _: () = p.conn.hset(&p.key, "deep", deep)?;
    let s = request(&p.m, &p.cookie);
    let kind = s
        .get::<serde_json::Value>("deep")
        .await
        .err()
        .map(|e| e.kind());
    ensure!(kind == Some(ErrorKind::Decode), "{kind:?}");
    ensure!(s.get::<String>("username").await? == Some("ann".into()));
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

/// Logs in over `f` and plants `fields` in the session with no session-wide bound checked.
async fn plant(
    f: &StoreFixture,
    fields: Vec<(String, String)>,
) -> anyhow::Result<(SessionManager, Arc<CallCounts>, String)> {
    let (m, counts) = counted(f.store.clone(), SessionConfig::new(SECRET)?)?;
    let cookie = login(&m, "ann").await?;
    let unbounded = SessionLimits::default()
        .with_max_fields(usize::MAX)
        .with_max_session_bytes(usize::MAX);
    let mut delta = Delta::new(unbounded);
    for (name, value) in fields {
        delta.set(&name, value)?;
    }
    apply_step(f.store(), &token_of(&cookie)?.key(), delta, false).await?;
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
    adapter::finish(&s).await?;
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
    ensure_kind(s.insert("extra", 1), ErrorKind::TooLarge)?;
    s.remove("f0")?;
    adapter::finish(&s).await?;
    // A blind write (nothing loaded) is refused by the store itself.
    let s = request(&m, &cookie);
    s.insert("extra", 1)?;
    ensure_kind(adapter::finish(&s).await, ErrorKind::TooLarge)?;
    ensure!(user_field(&f, &cookie, "extra").await?.is_none());
    ensure!(user_field(&f, &cookie, "f0").await?.is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_touch_of_zero_ends_the_session_as_the_memory_store_would() -> anyhow::Result<()> {
    // `__touched` = 0 is a valid time, 1970: idle ended long ago. The script reads times as
    // `parse_millis` does, so both stores agree the session is over.
    let mut p = planted().await?;
    let _: () = p.conn.hset(&p.key, "__touched", "0")?;
    ensure!(
        !request(&p.m, &p.cookie).exists().await?,
        "alive after idle"
    );
    let exists: bool = p.conn.exists(&p.key)?;
    ensure!(!exists, "the session over was not deleted");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_touch_in_the_future_counts_as_just_made() -> anyhow::Result<()> {
    // A touch stamped by a clock ahead of this one (or planted): the session lives, and no
    // touch is due until the interval has passed since it. Past 2^53 - 1 it is no time at all:
    // the next request touches.
    let mut p = planted().await?;
    let ahead = (cloakroom_test::conformance::now_ms() + 3_600_000).to_string();
    let _: () = p.conn.hset(&p.key, "__touched", &ahead)?;
    ensure!(request(&p.m, &p.cookie).exists().await?);
    let touched: String = p.conn.hget(&p.key, "__touched")?;
    ensure!(touched == ahead, "touched again: {touched}");
    let _: () = p.conn.hset(&p.key, "__touched", "9999999999999999")?;
    ensure!(request(&p.m, &p.cookie).exists().await?);
    let touched: String = p.conn.hget(&p.key, "__touched")?;
    ensure!(
        touched != "9999999999999999",
        "a touch past 2^53 - 1 was read as a time"
    );
    Ok(())
}
