//! The near-cache: every store guarantee holds with it on (the conformance suite, standalone and
//! cluster), and its own contract: a change made on another instance is seen within the lease,
//! a process reads its own writes, a hit costs no round trip, a lost channel serves nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use cloakroom_core::store::{Access, Applied, Apply, Delta, Fields};
use cloakroom_core::{SessionKey, SessionToken, Store};
use cloakroom_redis::{NearCache, RedisStore};
use cloakroom_test::conformance::{new_session, now_ms};
use cloakroom_test::{RedisCluster, RedisServer, StoreFixture};

const PATIENT: Duration = Duration::from_secs(5);
const LEASE: Duration = NearCache::DEFAULT_LEASE;

async fn near_cached(url: String) -> anyhow::Result<RedisStore> {
    Ok(RedisStore::builder(url)
        .with_operation_timeout(PATIENT)
        .with_connect_timeout(PATIENT)
        .with_near_cache(NearCache::new())
        .connect()
        .await?)
}

async fn standalone() -> anyhow::Result<StoreFixture> {
    let server = RedisServer::spawn()?;
    let store = near_cached(server.url()).await?;
    Ok(StoreFixture {
        store: Arc::new(store),
        server: Some(server),
        cluster: None,
    })
}

async fn cluster() -> anyhow::Result<StoreFixture> {
    let cluster = RedisCluster::spawn()?;
    let store = near_cached(cluster.url()).await?;
    Ok(StoreFixture {
        store: Arc::new(store),
        server: None,
        cluster: Some(cluster),
    })
}

mod on_standalone {
    cloakroom_test::store_conformance!(super::standalone());
}

mod on_cluster {
    cloakroom_test::store_conformance!(super::cluster());
}

// Loads never touch in these tests (a touch is a write, which drops the copies).
fn reading() -> Access {
    Access {
        now_ms: now_ms(),
        idle_ms: 600_000,
        touch_ms: 300_000,
    }
}

async fn load(store: &RedisStore, key: &SessionKey) -> anyhow::Result<Option<Fields>> {
    let apply = Apply {
        access: reading(),
        delta: Delta::default(),
        load: true,
    };
    match store.apply(key, &apply).await? {
        Applied::Missing => Ok(None),
        Applied::Done { fields, .. } => Ok(Some(fields.as_deref().cloned().context("no fields")?)),
        _ => bail!("unknown outcome"),
    }
}

fn hits(store: &RedisStore) -> u64 {
    store.near_cache_stats().map_or(0, |s| s.hits)
}

// A new session, loaded until a load is served from the copy (the channel is confirmed alive
// within a lease of start-up).
async fn cached_session(store: &RedisStore, creator: &RedisStore) -> anyhow::Result<SessionKey> {
    let key = SessionToken::generate()?.key();
    creator
        .create(&key, &new_session(&[("a", "1")], 600_000, 3_600_000))
        .await?;
    let start = Instant::now();
    loop {
        let before = hits(store);
        ensure!(load(store, &key).await?.is_some(), "the session is missing");
        if hits(store) > before {
            return Ok(key);
        }
        ensure!(
            start.elapsed() < 4 * LEASE,
            "no load was ever served from a copy"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[Duration], share: f64) -> Duration {
    let rank = ((sorted.len() as f64 - 1.0) * share).round() as usize;
    sorted.get(rank).copied().unwrap_or_default()
}

// Instances A and B on the server or cluster at `url`: `trials` times, B holds a copy of a
// session, A deletes it, and the time until B refuses it is recorded. Never past the lease.
async fn times_to_refusal(url: String, trials: usize) -> anyhow::Result<Vec<Duration>> {
    let a = near_cached(url.clone()).await?;
    let b = near_cached(url).await?;
    let mut delays = Vec::with_capacity(trials);
    for _ in 0..trials {
        let key = cached_session(&b, &a).await?;
        a.delete(&key).await?;
        let deleted = Instant::now();
        while load(&b, &key).await?.is_some() {
            ensure!(
                deleted.elapsed() <= LEASE,
                "a logout was still hidden after the lease"
            );
        }
        delays.push(deleted.elapsed());
    }
    delays.sort();
    Ok(delays)
}

fn report(what: &str, delays: &[Duration]) {
    println!(
        "{what}, logout on A to refusal on B, {} trials: p50 {:?}, p99 {:?}, max {:?} (lease {:?})",
        delays.len(),
        percentile(delays, 0.5),
        percentile(delays, 0.99),
        delays.last().copied().unwrap_or_default(),
        LEASE
    );
}

/// A logout on instance A is refused by instance B, which held a copy of the session: within
/// the lease at worst. Over 1,000 trials, prints the time from A's delete to B's first refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_instance_is_refused_by_another_within_the_lease() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let delays = times_to_refusal(server.url(), 1_000).await?;
    report("standalone", &delays);
    ensure!(delays.last().is_some_and(|max| *max <= LEASE));
    Ok(())
}

/// The same on a three-primary cluster: each primary's invalidations reach B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_instance_is_refused_by_another_on_a_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn()?;
    let delays = times_to_refusal(cluster.url(), 200).await?;
    report("cluster", &delays);
    ensure!(delays.last().is_some_and(|max| *max <= LEASE));
    Ok(())
}

// Sets the field `a` to `value`, without loading.
async fn write_field(store: &RedisStore, key: &SessionKey, value: &str) -> anyhow::Result<()> {
    let mut write = Delta::default();
    write.set("a", value)?;
    let apply = Apply {
        access: reading(),
        delta: write,
        load: false,
    };
    ensure!(matches!(
        store.apply(key, &apply).await?,
        Applied::Done { .. }
    ));
    Ok(())
}

/// A write made on another instance replaces B's copy as fast; and B's own writes are read back
/// at once, never hidden by its copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_anywhere_reach_the_readers() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let a = near_cached(server.url()).await?;
    let b = near_cached(server.url()).await?;
    let key = cached_session(&b, &a).await?;
    for round in 0..200 {
        // B writes, then reads its own write back.
        let value = format!("\"b{round}\"");
        write_field(&b, &key, &value).await?;
        let fields = load(&b, &key).await?.context("missing")?;
        ensure!(
            fields.get("a") == Some(&value),
            "B did not read its own write"
        );
        // A writes; B sees it within the lease.
        let value = format!("\"a{round}\"");
        write_field(&a, &key, &value).await?;
        let written = Instant::now();
        loop {
            let fields = load(&b, &key).await?.context("missing")?;
            if fields.get("a") == Some(&value) {
                break;
            }
            ensure!(
                written.elapsed() <= LEASE,
                "A's write hidden past the lease"
            );
        }
    }
    ensure!(hits(&b) > 0, "nothing was ever served from a copy");
    Ok(())
}

/// A hit costs no round trip: a hundred loads of a copied session run no command in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_costs_no_round_trip() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let store = near_cached(server.url()).await?;
    let key = cached_session(&store, &store).await?;
    let mut conn = server.connection()?;
    // A load that misses is one HGETALL: this store's touch interval is long enough that no
    // touch falls due during the test (one would add a script, and the HGETALL inside it).
    let calls = |conn: &mut redis::Connection| -> anyhow::Result<u64> {
        let info: String = redis::cmd("INFO").arg("commandstats").query(conn)?;
        let calls_of = |command: &str| -> u64 {
            info.lines()
                .find(|l| l.starts_with(&format!("cmdstat_{command}:")))
                .and_then(|l| l.split("calls=").nth(1))
                .and_then(|l| l.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        Ok(calls_of("evalsha") + calls_of("hgetall"))
    };
    let (before, hits_before) = (calls(&mut conn)?, hits(&store));
    for _ in 0..100 {
        ensure!(load(&store, &key).await?.is_some());
    }
    let (after, hits_after) = (calls(&mut conn)?, hits(&store));
    // A confirmation lost in between (a slow round) may send a load or two to Redis.
    ensure!(
        after - before == 100 - (hits_after - hits_before),
        "{} loads reached Redis for {} hits",
        after - before,
        hits_after - hits_before
    );
    ensure!(hits_after - hits_before >= 90, "too few hits");
    Ok(())
}

/// The idle and absolute deadlines are checked locally: a copy is never served past either,
/// and a due touch goes to Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_is_never_served_past_a_deadline_or_instead_of_a_due_touch() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let store = near_cached(server.url()).await?;
    let key = cached_session(&store, &store).await?;
    let fields = load(&store, &key).await?.context("missing")?;
    let stored = |name: &str| -> anyhow::Result<u64> {
        let text = fields.get(name).context("no metadata")?;
        Ok(text.parse()?)
    };
    let (deadline, touched) = (stored("__deadline")?, stored("__touched")?);
    let at = |now_ms: u64, touch_ms: u64| Apply {
        access: Access {
            now_ms,
            idle_ms: 600_000,
            touch_ms,
        },
        delta: Delta::default(),
        load: true,
    };
    // A touch due: Redis sees the load and touches.
    let before = hits(&store);
    let due = store.apply(&key, &at(touched + 1, 1)).await?;
    ensure!(
        hits(&store) == before,
        "a due touch was served from the copy"
    );
    let Applied::Done {
        fields: Some(touched_now),
        ..
    } = due
    else {
        bail!("missing");
    };
    ensure!(touched_now.get("__touched") == Some(&(touched + 1).to_string()));
    // Past the idle timeout of the last touch, and past the deadline: gone, not served.
    let key2 = cached_session(&store, &store).await?;
    let late = store.apply(&key2, &at(now_ms() + 600_000, 300_000)).await?;
    ensure!(late == Applied::Missing, "served past the idle timeout");
    ensure!(load(&store, &key2).await?.is_none(), "came back");
    let key3 = cached_session(&store, &store).await?;
    let past = store
        .apply(&key3, &at(deadline + 3_600_000, 300_000))
        .await?;
    ensure!(past == Applied::Missing, "served past the deadline");
    Ok(())
}

/// When the invalidation channel is lost, the copies go at once and nothing is served until it
/// is back; it comes back by itself, with an empty cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_channel_serves_nothing_until_it_is_back() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let a = near_cached(server.url()).await?;
    let b = near_cached(server.url()).await?;
    let key = cached_session(&b, &a).await?;
    let resets = b.near_cache_stats().map_or(0, |s| s.resets);
    // Kill every tracking connection on the server (B's and A's).
    let mut conn = server.connection()?;
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut conn)?;
    let mut killed = 0;
    for line in clients.lines() {
        let flags = line.split(' ').find_map(|f| f.strip_prefix("flags="));
        let id = line.split(' ').find_map(|f| f.strip_prefix("id="));
        if let (Some(flags), Some(id)) = (flags, id)
            && flags.contains('t')
        {
            let _: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query(&mut conn)?;
            killed += 1;
        }
    }
    ensure!(killed == 2, "{killed} tracking connections found");
    // The logout B could not hear of while its channel is down.
    a.delete(&key).await?;
    let start = Instant::now();
    while b.near_cache_stats().map_or(0, |s| s.resets) == resets {
        ensure!(start.elapsed() < LEASE, "the loss was not noticed");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    ensure!(
        load(&b, &key).await?.is_none(),
        "a copy served after the channel was lost"
    );
    ensure!(b.near_cache_stats().map_or(1, |s| s.copies) == 0);
    // Back by itself: copies are served again.
    let again = cached_session(&b, &a).await?;
    ensure!(load(&b, &again).await?.is_some());
    Ok(())
}
