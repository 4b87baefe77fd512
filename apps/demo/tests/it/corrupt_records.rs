//! Corrupt session records over HTTP: whatever is planted under a logged-in user's key, the demo
//! answers no 5xx, the user can log out and log in again, and nothing else in Redis is touched.
//!
//! Run with `cargo test -p cloakroom-demo --test it corrupt_records`.

use std::sync::Arc;

use anyhow::{Context, ensure};
use cloakroom::redis::RedisStore;
use cloakroom_test::RedisServer;
use cloakroom_test::requests::token_of;
use redis::Commands;

use crate::support::{Demo, app_over, get, login, post_form, visits};

crate::support::over_each_app!(plain; no_corrupt_record_gives_a_5xx_or_locks_the_user_out);

/// One way to corrupt the record at `key`.
type Corruption = fn(&mut redis::Connection, &str) -> redis::RedisResult<()>;

const CORRUPTIONS: &[(&str, Corruption)] = &[
    ("visits holding text", |c, k| c.hset(k, "visits", "abc")),
    ("visits past 2^53", |c, k| {
        c.hset(k, "visits", "9007199254740993")
    }),
    ("visits at 2^53 - 1", |c, k| {
        c.hset(k, "visits", "9007199254740991")
    }),
    ("username not a string", |c, k| c.hset(k, "username", "123")),
    ("username not JSON", |c, k| c.hset(k, "username", "ann")),
    ("username not UTF-8", |c, k| {
        c.hset(k, "username", &b"\"\xff\""[..])
    }),
    ("a field name not UTF-8", |c, k| {
        c.hset(k, &b"x\xc0"[..], "1")
    }),
    ("deadline nan", |c, k| c.hset(k, "__deadline", "nan")),
    ("deadline fractional", |c, k| {
        c.hset(k, "__deadline", "4102444800000.5")
    }),
    ("deadline in exponent form", |c, k| {
        c.hset(k, "__deadline", "1.9e12")
    }),
    ("deadline with a space", |c, k| {
        c.hset(k, "__deadline", " 4102444800000")
    }),
    ("no deadline", |c, k| c.hdel(k, "__deadline")),
    ("no creation time", |c, k| c.hdel(k, "__created")),
    ("a string key", |c, k| {
        c.del::<_, ()>(k)?;
        c.set(k, "\u{1}\u{2}garbage")
    }),
    ("a list key", |c, k| {
        c.del::<_, ()>(k)?;
        c.rpush(k, "__deadline")
    }),
];

async fn no_corrupt_record_gives_a_5xx_or_locks_the_user_out() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let store = Arc::new(RedisStore::connect(server.url()).await?);
    let app = app_over(store.clone())?;
    let mut conn = server.connection()?;
    // A bystander whose record must stay exactly as it is.
    let bob = login(&app, "bob").await?;
    let bob_key = store.redis_key(&token_of(&bob)?.key());
    let bob_before: Option<Vec<u8>> = redis::cmd("DUMP").arg(&bob_key).query(&mut conn)?;
    let mut failures = Vec::new();
    for (what, corrupt) in CORRUPTIONS {
        if let Err(e) = survive(&app, &store, &mut conn, *corrupt).await {
            failures.push(format!("{what}: {e:#}"));
        }
    }
    ensure!(
        failures.is_empty(),
        "{} of {} corruptions failed:\n{}",
        failures.len(),
        CORRUPTIONS.len(),
        failures.join("\n")
    );
    let bob_after: Option<Vec<u8>> = redis::cmd("DUMP").arg(&bob_key).query(&mut conn)?;
    ensure!(bob_before == bob_after, "another user's record was touched");
    Ok(())
}

/// Logs ann in, corrupts her record, and checks that she gets pages, can log out (deleting the
/// record) and can log in again.
async fn survive(
    app: &Demo,
    store: &RedisStore,
    conn: &mut redis::Connection,
    corrupt: Corruption,
) -> anyhow::Result<()> {
    let cookie = login(app, "ann").await?;
    let key = store.redis_key(&token_of(&cookie)?.key());
    corrupt(conn, &key).context("planting")?;
    for _ in 0..2 {
        let page = get(app, "/", Some(&cookie)).await?;
        ensure!(page.status.is_success(), "GET / answered {}", page.status);
    }
    let reply = post_form(app, "/logout", Some(&cookie), "").await?;
    ensure!(
        reply.status.is_redirection(),
        "logout answered {}",
        reply.status
    );
    let exists: bool = conn.exists(&key)?;
    ensure!(!exists, "logging out left the record");
    let fresh = login(app, "ann").await.context("login")?;
    let page = get(app, "/", Some(&fresh)).await?;
    ensure!(visits(&page.body) == Some(1), "{}", page.body);
    Ok(())
}
