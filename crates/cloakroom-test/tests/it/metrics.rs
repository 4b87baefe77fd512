//! What cloakroom reports through the `metrics` facade, read back from a recorder installed for
//! the test alone: sessions created and ended by reason, store calls with their latency and
//! errors, refused cookies, and the memory store's size and evictions.

use std::time::Duration;

use anyhow::{Context, ensure};
use cloakroom_core::metrics::{
    COOKIES_REJECTED, MEMORY_STORE_EVICTIONS, MEMORY_STORE_SESSIONS, SESSIONS_CREATED,
    SESSIONS_ENDED, STORE_CALL_SECONDS, STORE_CALLS, STORE_ERRORS,
};
use cloakroom_core::{MemoryStore, SessionConfig, SessionManager, adapter};
use cloakroom_redis::RedisStore;
use cloakroom_test::requests::{login, request};
use cloakroom_test::{RedisServer, StoreFixture};
use metrics::{SharedString, Unit};
use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

cloakroom_test::test_over_each_store!(a_sessions_life_is_counted_by_reason);

// Runs `body` with a recorder of its own (on this thread: the recorder is thread-local, and
// every call measured runs in the future `body` makes) and returns what was recorded.
fn recorded<F: Future<Output = anyhow::Result<()>>>(body: F) -> anyhow::Result<Recorded> {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        metrics::with_local_recorder(&recorder, || handle.block_on(body))
    })?;
    // Taken once: a snapshot drains what it reads.
    Ok(Recorded(snapshotter.snapshot().into_vec()))
}

struct Recorded(Vec<(CompositeKey, Option<Unit>, Option<SharedString>, DebugValue)>);

impl Recorded {
    // The value of the counter `name` with exactly these labels (0 when never incremented).
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.find(name, labels)
            .and_then(|value| match value {
                DebugValue::Counter(n) => Some(*n),
                _ => None,
            })
            .unwrap_or(0)
    }

    fn gauge(&self, name: &str) -> Option<f64> {
        match self.find(name, &[])? {
            DebugValue::Gauge(value) => Some(value.into_inner()),
            _ => None,
        }
    }

    fn histogram_len(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.find(name, labels) {
            Some(DebugValue::Histogram(values)) => values.len() as u64,
            _ => 0,
        }
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        self.0
            .iter()
            .find(|(key, ..)| {
                let key = key.key();
                let mut found: Vec<(&str, &str)> =
                    key.labels().map(|l| (l.key(), l.value())).collect();
                found.sort();
                let mut wanted = labels.to_vec();
                wanted.sort();
                key.name() == name && found == wanted
            })
            .map(|(.., value)| value)
    }
}

async fn a_sessions_life_is_counted_by_reason(f: StoreFixture) -> anyhow::Result<()> {
    let m = SessionManager::new(f.store.clone(), SessionConfig::new(SECRET)?)?;
    let recorded = recorded(async {
        // A login, then a new id for it.
        let cookie = login(&m, "ann").await?;
        let s = request(&m, &cookie);
        ensure!(s.cycle_id().await?);
        let finished = adapter::finish(&s).await?;
        let cookie = cloakroom_test::requests::returned_cookie(&finished.set_cookie)
            .context("no new cookie")?;
        // A logout, and the old cookie replayed.
        let s = request(&m, &cookie);
        s.destroy();
        adapter::finish(&s).await?;
        ensure!(
            request(&m, &cookie)
                .get::<String>("username")
                .await?
                .is_none()
        );
        // A login bound to a user, ended by an administrator.
        let s = adapter::session_from_cookie_headers(&m, []);
        s.start()?;
        s.set_user("user-7")?;
        adapter::finish(&s).await?;
        ensure!(m.end_sessions_of("user-7").await? == 1);
        // Cookies refused before any store access.
        let (named, value) = cookie.split_once('=').context("no name")?;
        let flipped = if value.ends_with('A') { 'B' } else { 'A' };
        let forged = format!("{named}={}{flipped}", &value[..value.len() - 1]);
        request(&m, &forged).get::<String>("username").await?;
        let oversized = format!("{named}={}", "a".repeat(400));
        request(&m, &oversized).get::<String>("username").await?;
        let twice = format!("{cookie}; {named}=other");
        request(&m, &twice).get::<String>("username").await?;
        Ok(())
    })?;
    let created = |origin| recorded.counter(SESSIONS_CREATED, &[("origin", origin)]);
    let ended = |reason| recorded.counter(SESSIONS_ENDED, &[("reason", reason)]);
    ensure!((created("login"), created("rotation")) == (2, 1));
    ensure!(
        (
            ended("rotation"),
            ended("logout"),
            ended("expired"),
            ended("revoked")
        ) == (1, 1, 1, 1),
        "{:?}",
        ["rotation", "logout", "expired", "revoked"].map(ended)
    );
    let rejected = |reason| recorded.counter(COOKIES_REJECTED, &[("reason", reason)]);
    ensure!(
        ["forged", "oversized", "ambiguous"].map(rejected) == [1, 1, 1],
        "{:?}",
        ["forged", "oversized", "ambiguous"].map(rejected)
    );
    // Every call counted and timed: three creates (two logins, one new id), the index's add
    // and its two listings (ending the user's sessions lists it until nothing is left).
    for (operation, calls) in [("create", 3), ("index_add", 1), ("index_members", 2)] {
        let labels = [("operation", operation)];
        ensure!(
            recorded.counter(STORE_CALLS, &labels) == calls
                && recorded.histogram_len(STORE_CALL_SECONDS, &labels) == calls,
            "{operation}: {} calls, {} timings",
            recorded.counter(STORE_CALLS, &labels),
            recorded.histogram_len(STORE_CALL_SECONDS, &labels)
        );
    }
    ensure!(recorded.counter(STORE_CALLS, &[("operation", "apply")]) >= 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_memory_store_counts_its_evictions_and_its_size() -> anyhow::Result<()> {
    let store = MemoryStore::builder().with_max_sessions(2).build();
    let m = SessionManager::new(std::sync::Arc::new(store), SessionConfig::new(SECRET)?)?;
    let recorded = recorded(async {
        for name in ["a", "b", "c", "d"] {
            login(&m, name).await?;
        }
        Ok(())
    })?;
    ensure!(recorded.counter(MEMORY_STORE_EVICTIONS, &[]) == 2);
    ensure!(recorded.counter(SESSIONS_ENDED, &[("reason", "evicted")]) == 2);
    ensure!(recorded.gauge(MEMORY_STORE_SESSIONS) == Some(2.0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_errors_are_counted_by_kind() -> anyhow::Result<()> {
    let mut server = RedisServer::spawn()?;
    let store = RedisStore::builder(server.url())
        .with_operation_timeout(Duration::from_millis(200))
        .connect()
        .await?;
    let m = SessionManager::new(std::sync::Arc::new(store), SessionConfig::new(SECRET)?)?;
    let cookie = login(&m, "ann").await?;
    // Frozen: sent and not answered. Killed: not reachable at all.
    server.pause()?;
    let frozen = recorded(async {
        let outcome = request(&m, &cookie).incr("visits", 1).await;
        ensure!(outcome.is_err_and(|e| e.is_unavailable()));
        Ok(())
    });
    server.resume()?;
    let frozen = frozen?;
    ensure!(
        frozen.counter(STORE_ERRORS, &[("operation", "apply"), ("kind", "timeout")]) == 1,
        "{:?}",
        frozen.find(STORE_ERRORS, &[("operation", "apply"), ("kind", "timeout")])
    );
    server.kill();
    // The first call after the kill may learn of it from its own dropped connection (then its
    // outcome is unknown, a timeout); the last finds nothing listening.
    let killed = recorded(async {
        for name in ["bob", "cy", "di"] {
            ensure!(login(&m, name).await.is_err());
        }
        Ok(())
    })?;
    let create = |kind| killed.counter(STORE_ERRORS, &[("operation", "create"), ("kind", kind)]);
    ensure!(
        create("unavailable") >= 2 && create("unavailable") + create("timeout") == 3,
        "{} unavailable, {} timeouts",
        create("unavailable"),
        create("timeout")
    );
    Ok(())
}
