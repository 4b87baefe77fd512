//! The store conformance suite: the same assertions for every [`Store`].
//!
//! Each function takes a fresh, empty store. Timing tests use real time with short timeouts,
//! because a networked store expires keys on its own clock.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};
use cloakroom_core::store::{
    Access, Applied, Apply, Created, Delta, Fields, META_CREATED, META_DEADLINE, META_TOUCHED,
    NewSession, Store,
};
use cloakroom_core::{ErrorKind, IndexEntry, SessionKey, SessionLimits, SessionToken, UserKey};

mod expiry;
mod take;

pub use self::expiry::*;
pub use self::take::*;

const LONG: u64 = 60_000;

/// The current time, Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn key() -> anyhow::Result<SessionKey> {
    Ok(SessionToken::generate()?.key())
}

fn access(idle_ms: u64) -> Access {
    Access {
        now_ms: now_ms(),
        idle_ms,
        touch_ms: 0,
    }
}

/// A new session with `fields`, an idle timeout and an absolute lifetime from now.
pub fn new_session(fields: &[(&str, &str)], idle_ms: u64, lifetime_ms: u64) -> NewSession {
    let now = now_ms();
    let deadline_ms = now + lifetime_ms;
    let mut all: Fields = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    all.insert(META_CREATED.to_owned(), now.to_string());
    all.insert(META_DEADLINE.to_owned(), deadline_ms.to_string());
    all.insert(META_TOUCHED.to_owned(), now.to_string());
    NewSession {
        fields: all,
        access: Access {
            now_ms: now,
            idle_ms,
            touch_ms: 0,
        },
        deadline_ms,
        origin: cloakroom_core::store::Origin::Login,
    }
}

// One change to a delta, as the tests below write a step: `vec![set("a", "1"), incr("n", 1)]`.
// Each calls the delta's own constructor.
type Edit = Box<dyn FnOnce(&mut Delta) -> cloakroom_core::Result<()>>;

fn set(name: &str, value: &str) -> Edit {
    let (name, value) = (name.to_owned(), value.to_owned());
    Box::new(move |delta| delta.set(&name, value).map(drop))
}

fn remove(name: &str) -> Edit {
    let name = name.to_owned();
    Box::new(move |delta| delta.remove(&name).map(drop))
}

fn incr(name: &str, by: i64) -> Edit {
    let name = name.to_owned();
    Box::new(move |delta| delta.incr(&name, by).map(drop))
}

// The delta of `edits`, under `limits`.
fn delta(limits: SessionLimits, edits: Vec<Edit>) -> cloakroom_core::Result<Delta> {
    let mut delta = Delta::new(limits);
    for edit in edits {
        edit(&mut delta)?;
    }
    Ok(delta)
}

// Limits with the session-wide bounds a test sets.
fn bounds(max_fields: usize, max_bytes: usize) -> SessionLimits {
    SessionLimits::default()
        .with_max_fields(max_fields)
        .with_max_session_bytes(max_bytes)
}

/// All fields of the session, or `None` when it is missing.
pub async fn load(store: &dyn Store, key: &SessionKey) -> anyhow::Result<Option<Fields>> {
    load_with(store, key, access(LONG)).await
}

async fn load_with(
    store: &dyn Store,
    key: &SessionKey,
    access: Access,
) -> anyhow::Result<Option<Fields>> {
    let apply = Apply {
        access,
        delta: Delta::default(),
        load: true,
    };
    match store.apply(key, &apply).await? {
        Applied::Missing => Ok(None),
        Applied::Done { fields, .. } => Ok(Some(
            fields
                .as_deref()
                .cloned()
                .context("load returned no fields")?,
        )),
        _ => bail!("unknown outcome"),
    }
}

/// Applies `delta` to the session now, with a one-minute idle timeout, returning its fields when
/// `load` is set: one store step as a test (or a second writer sharing the store) makes it,
/// below the session handle.
pub async fn apply_step(
    store: &dyn Store,
    key: &SessionKey,
    delta: Delta,
    load: bool,
) -> cloakroom_core::Result<Applied> {
    let apply = Apply {
        access: access(LONG),
        delta,
        load,
    };
    store.apply(key, &apply).await
}

async fn run(
    store: &dyn Store,
    key: &SessionKey,
    edits: Vec<Edit>,
) -> cloakroom_core::Result<Applied> {
    apply_step(store, key, delta(SessionLimits::default(), edits)?, false).await
}

// A step under the session-wide bounds of `limits`.
async fn run_within(
    store: &dyn Store,
    key: &SessionKey,
    limits: SessionLimits,
    edits: Vec<Edit>,
    load: bool,
) -> cloakroom_core::Result<Applied> {
    apply_step(store, key, delta(limits, edits)?, load).await
}

/// Fails unless the session's non-reserved fields are exactly `expected`.
async fn ensure_user_fields(
    store: &dyn Store,
    k: &SessionKey,
    expected: &[(&str, &str)],
) -> anyhow::Result<()> {
    let fields = load(store, k).await?.context("session missing")?;
    let expected: HashMap<&str, &str> = expected.iter().copied().collect();
    ensure!(
        user(&fields) == expected,
        "expected {expected:?}, found {fields:?} (a partial or lost write)"
    );
    Ok(())
}

fn user(fields: &Fields) -> HashMap<&str, &str> {
    fields
        .iter()
        .filter(|(k, _)| !k.starts_with("__"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// A created session loads with its fields and its metadata.
pub async fn create_then_load_returns_fields(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    let created = store
        .create(&k, &new_session(&[("username", "\"ann\"")], LONG, LONG))
        .await?;
    ensure!(created == Created::Created, "{created:?}");
    let fields = load(store, &k)
        .await?
        .context("session missing after create")?;
    ensure!(user(&fields) == HashMap::from([("username", "\"ann\"")]));
    ensure!(fields.contains_key(META_CREATED) && fields.contains_key(META_DEADLINE));
    Ok(())
}

/// `create` is insert-if-absent: it never overwrites an existing session.
pub async fn create_never_overwrites(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    store
        .create(&k, &new_session(&[("a", "1")], LONG, LONG))
        .await?;
    let second = store
        .create(&k, &new_session(&[("b", "2")], LONG, LONG))
        .await?;
    ensure!(second == Created::Exists, "{second:?}");
    ensure_user_fields(store, &k, &[("a", "1")]).await?;
    Ok(())
}

/// Writes and increments on a session that does not exist report `Missing` and create nothing.
pub async fn write_to_missing_session_creates_nothing(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    ensure!(run(store, &k, vec![set("a", "1")]).await? == Applied::Missing);
    ensure!(run(store, &k, vec![incr("visits", 1)]).await? == Applied::Missing);
    ensure!(
        load(store, &k).await?.is_none(),
        "a write created a session"
    );
    // Nothing is there: a create under that key succeeds.
    let created = store.create(&k, &new_session(&[], LONG, LONG)).await?;
    ensure!(created == Created::Created, "{created:?}");
    Ok(())
}

/// A delta changes only the fields it names.
pub async fn delta_touches_only_named_fields(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    store
        .create(
            &k,
            &new_session(&[("a", "1"), ("b", "2"), ("c", "3")], LONG, LONG),
        )
        .await?;
    run(store, &k, vec![set("a", "10")]).await?;
    run(store, &k, vec![remove("b")]).await?;
    ensure_user_fields(store, &k, &[("a", "10"), ("c", "3")]).await?;
    Ok(())
}

/// An absent counter starts at 0; each increment's new value is reported in order.
pub async fn incr_starts_at_zero_and_reports_each_value(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    store.create(&k, &new_session(&[], LONG, LONG)).await?;
    let applied = run(store, &k, vec![incr("v", 1), incr("v", 5), incr("w", -2)]).await?;
    let Applied::Done { counters, .. } = applied else {
        bail!("{applied:?}")
    };
    ensure!(counters == vec![1, 6, -2], "{counters:?}");
    let fields = load(store, &k).await?.context("missing")?;
    ensure!(fields.get("v").map(String::as_str) == Some("6"));
    ensure!(fields.get("w").map(String::as_str) == Some("-2"));
    Ok(())
}

/// Incrementing a field that holds no integer fails and writes nothing, not even the other ops
/// of the same step.
pub async fn bad_incr_fails_and_writes_nothing(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    store
        .create(
            &k,
            &new_session(&[("name", "\"ann\""), ("n", "1")], LONG, LONG),
        )
        .await?;
    for bad in ["\"ann\"", "1.5", "007", "-0", "true"] {
        let result = run(store, &k, vec![set("n", bad), incr("n", 1)]).await;
        let kind = result.err().map(|e| e.kind());
        ensure!(kind == Some(ErrorKind::NotAnInteger), "{bad}: {kind:?}");
    }
    // The same values met by a lone increment (the common one-op step).
    for (bad, by) in [
        ("\"ann\"", 1),
        ("1.5", 1),
        ("007", 1),
        ("-0", 1),
        ("true", 1),
        ("99999999999999999", 1),
        // Beyond the range but brought back into it by the increment: still not a counter.
        ("9007199254740993", -2),
        ("-9007199254740993", 2),
    ] {
        run(store, &k, vec![set("n", bad)]).await?;
        let result = run(store, &k, vec![incr("n", by)]).await;
        let kind = result.err().map(|e| e.kind());
        ensure!(
            kind == Some(ErrorKind::NotAnInteger),
            "lone incr on {bad}: {kind:?}"
        );
        let fields = load(store, &k).await?.context("missing")?;
        ensure!(
            fields.get("n").map(String::as_str) == Some(bad),
            "{bad} was changed"
        );
    }
    run(store, &k, vec![set("n", "1")]).await?;
    let result = run(store, &k, vec![set("other", "2"), incr("name", 1)]).await;
    ensure!(result.err().map(|e| e.kind()) == Some(ErrorKind::NotAnInteger));
    ensure_user_fields(store, &k, &[("name", "\"ann\""), ("n", "1")]).await?;
    Ok(())
}

/// Increments that would leave ±(2^53 − 1) fail and write nothing.
pub async fn incr_out_of_range_fails_and_writes_nothing(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    store
        .create(&k, &new_session(&[("n", "9007199254740990")], LONG, LONG))
        .await?;
    let applied = run(store, &k, vec![incr("n", 1)]).await?;
    ensure!(
        matches!(&applied, Applied::Done { counters, .. } if counters == &vec![9007199254740991])
    );
    let result = run(store, &k, vec![incr("n", 1)]).await;
    ensure!(result.err().map(|e| e.kind()) == Some(ErrorKind::OutOfRange));
    let result = run(store, &k, vec![incr("m", i64::MIN)]).await;
    ensure!(result.err().map(|e| e.kind()) == Some(ErrorKind::OutOfRange));
    ensure_user_fields(store, &k, &[("n", "9007199254740991")]).await?;
    Ok(())
}

/// 2,000 concurrent increments of one counter lose none.
pub async fn concurrent_increments_lose_none(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    store.create(&k, &new_session(&[], LONG, LONG)).await?;
    let results =
        futures_util::future::join_all((0..2000).map(|_| run(store, &k, vec![incr("visits", 1)])))
            .await;
    let mut seen = Vec::new();
    for r in results {
        match r? {
            Applied::Done { counters, .. } => seen.extend(counters),
            other => bail!("{other:?}"),
        }
    }
    seen.sort_unstable();
    ensure!(
        seen == (1..=2000).collect::<Vec<i64>>(),
        "each increment must see its own value"
    );
    let fields = load(store, &k).await?.context("missing")?;
    ensure!(fields.get("visits").map(String::as_str) == Some("2000"));
    Ok(())
}

/// Concurrent steps writing different fields all survive.
pub async fn concurrent_writes_to_different_fields_survive(
    store: &dyn Store,
) -> anyhow::Result<()> {
    let k = key()?;
    store.create(&k, &new_session(&[], LONG, LONG)).await?;
    let names: Vec<String> = (0..200).map(|i| format!("f{i}")).collect();
    let results =
        futures_util::future::join_all(names.iter().map(|n| run(store, &k, vec![set(n, "true")])))
            .await;
    for r in results {
        r?;
    }
    let fields = load(store, &k).await?.context("missing")?;
    ensure!(
        user(&fields).len() == 200,
        "{} of 200 fields survived",
        user(&fields).len()
    );
    Ok(())
}

/// `delete` removes the session and says whether it existed.
pub async fn delete_removes_and_reports(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    store
        .create(&k, &new_session(&[("a", "1")], LONG, LONG))
        .await?;
    ensure!(
        store.delete(&k).await?,
        "delete of an existing session said false"
    );
    ensure!(!store.delete(&k).await?, "second delete said true");
    ensure!(load(store, &k).await?.is_none());
    Ok(())
}

/// Reserved names cannot be written through a store step either (writing `__deadline` would
/// move the absolute deadline): no delta can hold them, so no store ever sees one.
pub async fn reserved_names_never_reach_the_store(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    store
        .create(&k, &new_session(&[("a", "1")], LONG, LONG))
        .await?;
    let before = load(store, &k).await?.context("missing")?;
    let steps: [Vec<Edit>; 4] = [
        vec![set(META_DEADLINE, "99999999999999")],
        vec![remove(META_DEADLINE)],
        vec![incr(META_DEADLINE, 1)],
        vec![set("a", "2"), set("__other", "1")],
    ];
    for (i, step) in steps.into_iter().enumerate() {
        let kind = run(store, &k, step).await.err().map(|e| e.kind());
        ensure!(
            kind == Some(ErrorKind::InvalidFieldName),
            "step {i}: {kind:?}"
        );
    }
    // Loads touch the session; nothing else may change.
    let untouched = |mut fields: Fields| {
        fields.remove(META_TOUCHED);
        fields
    };
    ensure!(
        untouched(load(store, &k).await?.context("missing")?) == untouched(before),
        "a refused step wrote"
    );
    Ok(())
}

/// Within one step, writes apply before increments, and a load sees the result.
pub async fn reads_see_the_ops_of_the_same_step(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    store
        .create(&k, &new_session(&[("n", "1")], LONG, LONG))
        .await?;
    let apply = Apply {
        access: access(LONG),
        delta: delta(
            SessionLimits::default(),
            vec![set("n", "5"), incr("n", 2), set("s", "\"x\"")],
        )?,
        load: true,
    };
    let applied = store.apply(&k, &apply).await?;
    let Applied::Done {
        counters,
        fields: Some(fields),
        ..
    } = applied
    else {
        bail!("{applied:?}")
    };
    ensure!(counters == vec![7]);
    ensure!(
        user(&fields) == HashMap::from([("n", "7"), ("s", "\"x\"")]),
        "{fields:?}"
    );
    // A lone increment with a load (the common request), on an existing and an absent counter,
    // near the top of the range so that no exponent notation creeps in.
    run(store, &k, vec![set("big", "9007199254740990")]).await?;
    for (name, expected, text) in [
        ("big", 9007199254740991, "9007199254740991"),
        ("fresh", 1, "1"),
    ] {
        let apply = Apply {
            access: access(LONG),
            delta: delta(SessionLimits::default(), vec![incr(name, 1)])?,
            load: true,
        };
        let applied = store.apply(&k, &apply).await?;
        let Applied::Done {
            counters,
            fields: Some(fields),
            ..
        } = applied
        else {
            bail!("{applied:?}")
        };
        ensure!(counters == vec![expected], "{counters:?}");
        ensure!(
            fields.get(name).map(String::as_str) == Some(text),
            "{fields:?}"
        );
        ensure!(
            fields.get("s").map(String::as_str) == Some("\"x\""),
            "{fields:?}"
        );
    }
    Ok(())
}

/// A step that would take the session past its bounds fails with `TooLarge` and writes nothing,
/// counted against the session as stored (reserved fields not counted), whatever the step's own
/// size; a session already past a bound can still shrink.
pub async fn steps_past_the_bounds_fail_and_write_nothing(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    // Two user fields of 1 + 3 bytes each: 2 fields, 8 bytes.
    store
        .create(
            &k,
            &new_session(&[("a", "\"x\""), ("b", "\"y\"")], LONG, LONG),
        )
        .await?;
    let limits = bounds(3, 20);
    let too_large = |r: cloakroom_core::Result<Applied>, what: &str| match r {
        Err(e) if e.kind() == ErrorKind::TooLarge => Ok(()),
        other => Err(anyhow::anyhow!("{what}: expected TooLarge, got {other:?}")),
    };
    // A fourth and a fifth field, by a step that also changes a field: nothing of it lands.
    let step = vec![set("a", "1"), set("c", "1"), set("d", "1")];
    too_large(
        run_within(store, &k, limits, step, false).await,
        "five fields",
    )?;
    // A value that takes the bytes past 20 (8 + 1 + 12).
    let step = vec![set("c", "\"0123456789\"")];
    too_large(run_within(store, &k, limits, step, true).await, "21 bytes")?;
    // An increment that creates a fourth field, alone (the fast path) and loaded or not.
    run_within(store, &k, limits, vec![set("c", "1")], false).await?;
    for load in [true, false] {
        too_large(
            run_within(store, &k, limits, vec![incr("d", 1)], load).await,
            "a counter as a fourth field",
        )?;
    }
    ensure_user_fields(store, &k, &[("a", "\"x\""), ("b", "\"y\""), ("c", "1")]).await?;
    // Within the bounds: replace a value, increment an existing field, remove then add.
    run_within(store, &k, limits, vec![set("a", "\"xyz\"")], false).await?;
    run_within(store, &k, limits, vec![incr("c", 41)], true).await?;
    let step = vec![remove("b"), set("d", "2")];
    run_within(store, &k, limits, step, false).await?;
    ensure_user_fields(store, &k, &[("a", "\"xyz\""), ("c", "42"), ("d", "2")]).await?;
    // Lowered bounds: the session holds 3 fields, past a bound of 1; it may shrink, not grow.
    let lowered = bounds(1, 1);
    too_large(
        run_within(store, &k, lowered, vec![set("e", "1")], false).await,
        "growing past lowered bounds",
    )?;
    run_within(store, &k, lowered, vec![remove("d"), set("a", "1")], false).await?;
    ensure_user_fields(store, &k, &[("a", "1"), ("c", "42")]).await?;
    // At the byte bound exactly, an increment of an existing counter is not checked (it adds a
    // digit at most), loaded or not; one that re-creates a removed counter is.
    let k = key()?;
    store
        .create(&k, &new_session(&[("v", "9")], LONG, LONG))
        .await?;
    let exact = bounds(1, 2);
    for load in [true, false] {
        run_within(store, &k, exact, vec![incr("v", 1)], load).await?;
    }
    ensure_user_fields(store, &k, &[("v", "11")]).await?;
    let step = vec![remove("v"), incr("v", 100)];
    too_large(
        run_within(store, &k, exact, step, false).await,
        "a counter re-created past the bytes",
    )?;
    ensure_user_fields(store, &k, &[("v", "11")]).await?;
    Ok(())
}

/// A user's index lists what was added until each entry's deadline, with when each entry was
/// written, forgets what was removed, and is kept per user.
pub async fn the_user_index_lists_until_each_deadline(store: &dyn Store) -> anyhow::Result<()> {
    let (ann, bob) = (UserKey::of("ann"), UserKey::of("bob"));
    let (k1, k2, k3, k4, k5) = (key()?, key()?, key()?, key()?, key()?);
    let now = now_ms();
    store.index_add(&ann, &k1, now + LONG, now).await?;
    store.index_add(&ann, &k2, now + 300, now).await?;
    store.index_add(&bob, &k3, now + LONG, now).await?;
    // Added with a deadline already past: never listed.
    store.index_add(&ann, &k4, now - 1, now).await?;
    let members = |user: &UserKey, at: u64| {
        let user = user.clone();
        async move {
            let mut members: Vec<_> = store
                .index_members(&user, at)
                .await?
                .into_iter()
                .map(|e| (e.key, e.deadline_ms, e.written_ms))
                .collect();
            members.sort();
            anyhow::Ok(members)
        }
    };
    let mut expected = vec![(k1.clone(), now + LONG, now), (k2.clone(), now + 300, now)];
    expected.sort();
    ensure!(
        members(&ann, now).await? == expected,
        "ann's index is wrong"
    );
    ensure!(members(&bob, now).await? == vec![(k3.clone(), now + LONG, now)]);
    // Past k2's deadline, only k1 is left.
    ensure!(members(&ann, now + 301).await? == vec![(k1.clone(), now + LONG, now)]);
    let listed = IndexEntry::new(k1.clone(), now + LONG, now);
    store.index_remove(&ann, &listed, now).await?;
    ensure!(members(&ann, now).await?.is_empty());
    // Removing what is not there is not an error.
    store.index_remove(&ann, &listed, now).await?;
    ensure!(members(&UserKey::of("nobody"), now).await?.is_empty());
    ensure!(members(&bob, now).await? == vec![(k3.clone(), now + LONG, now)]);
    // An entry written later with an earlier deadline (a rotation keeps its session's
    // deadline) reports when it was really written.
    store.index_add(&bob, &k5, now + LONG - 5, now + 7).await?;
    let mut expected = vec![
        (k3.clone(), now + LONG, now),
        (k5.clone(), now + LONG - 5, now + 7),
    ];
    expected.sort();
    ensure!(
        members(&bob, now + 7).await? == expected,
        "bob's index is wrong"
    );
    Ok(())
}

/// `peek` reads a session's fields without sliding its idle timeout, and finds nothing past
/// the deadline or where there is no session.
pub async fn peek_reads_without_extending(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    store
        .create(&k, &new_session(&[("a", "1")], 1000, LONG))
        .await?;
    let fields = store
        .peek(&k, now_ms())
        .await?
        .context("peek found nothing")?;
    ensure!(user(&fields) == HashMap::from([("a", "1")]), "{fields:?}");
    ensure!(
        fields.contains_key(META_DEADLINE),
        "no metadata: {fields:?}"
    );
    // Peeking every 100 ms for well over the idle timeout does not keep it alive.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        store.peek(&k, now_ms()).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        store.peek(&k, now_ms()).await?.is_none(),
        "peeking kept the session alive"
    );
    let k = key()?;
    store.create(&k, &new_session(&[], LONG, LONG)).await?;
    ensure!(store.peek(&k, now_ms() + 2 * LONG).await?.is_none());
    ensure!(store.peek(&key()?, now_ms()).await?.is_none());
    Ok(())
}
