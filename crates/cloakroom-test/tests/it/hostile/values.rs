//! Values and field names a handler might store on a client's behalf: oversized, deeply nested,
//! or full of characters that mean something elsewhere (globs, hash tags, markup, controls).
//!
//! Expected outcomes: anything past a limit is a `TooLarge` error (a 413 over HTTP) that writes
//! nothing, whether the handle loaded the session or wrote blind; anything within the limits is
//! plain data that reads back byte for byte and changes no key.

use anyhow::ensure;
use cloakroom_core::adapter;
use cloakroom_core::store::Delta;
use cloakroom_core::{ErrorKind, SessionConfig, SessionLimits};
use cloakroom_test::StoreFixture;
use cloakroom_test::conformance::{apply_step, load};
use cloakroom_test::requests::{login, request, token_of};
use serde_json::Value;

use super::{SECRET, counted, ensure_kind};

cloakroom_test::test_over_memory_and_redis!(
    a_value_nested_deeper_than_can_be_read_back,
    a_stored_value_nested_a_hundred_thousand_deep,
    a_value_over_the_size_limit,
    a_field_name_over_the_length_limit,
    a_metadata_field_written_by_a_handler,
    blind_writes_past_the_field_limit,
    blind_writes_past_the_session_size_limit,
    glob_and_hash_tag_characters_in_names_and_values,
    markup_controls_and_unicode_in_values,
);

fn nested(depth: usize) -> Value {
    (0..depth).fold(Value::Null, |inner, _| Value::Array(vec![inner]))
}

/// The session's user fields as stored.
async fn stored(f: &StoreFixture, cookie: &str) -> anyhow::Result<Vec<(String, String)>> {
    let fields = load(f.store(), &token_of(cookie)?.key()).await?;
    let mut user: Vec<_> = fields
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("__"))
        .collect();
    user.sort();
    Ok(user)
}

async fn a_value_nested_deeper_than_can_be_read_back(f: StoreFixture) -> anyhow::Result<()> {
    let (m, _) = counted(f.store.clone(), SessionConfig::new(SECRET)?)?;
    let cookie = login(&m, "ann").await?;
    let before = stored(&f, &cookie).await?;
    let s = request(&m, &cookie);
    ensure_kind(
        s.insert("deep", nested(SessionLimits::MAX_VALUE_DEPTH + 1)),
        ErrorKind::TooLarge,
    )?;
    // The deepest accepted value reads back.
    s.insert("deepest", nested(SessionLimits::MAX_VALUE_DEPTH))?;
    adapter::finish(&s).await?;
    let value = request(&m, &cookie).get::<Value>("deepest").await?;
    ensure!(
        value == Some(nested(SessionLimits::MAX_VALUE_DEPTH)),
        "the deepest value did not read back"
    );
    let after = stored(&f, &cookie).await?;
    ensure!(after.len() == before.len() + 1, "{} fields", after.len());
    Ok(())
}

async fn a_stored_value_nested_a_hundred_thousand_deep(f: StoreFixture) -> anyhow::Result<()> {
    // Below the handle, a step of the store itself cannot carry it either: no delta holds it,
    // so no store is ever asked to keep it. (Planted in Redis by another writer, reading it is
    // an error, not a stack overflow: `hostile::records`.)
    let (m, _) = counted(f.store.clone(), SessionConfig::new(SECRET)?)?;
    let cookie = login(&m, "ann").await?;
    let before = stored(&f, &cookie).await?;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut delta = Delta::default();
    ensure_kind(delta.set("deep", deep).map(drop), ErrorKind::TooLarge)?;
    apply_step(f.store(), &token_of(&cookie)?.key(), delta, false).await?;
    ensure!(
        stored(&f, &cookie).await? == before,
        "something was written"
    );
    Ok(())
}

async fn a_value_over_the_size_limit(f: StoreFixture) -> anyhow::Result<()> {
    let limits = SessionLimits::default().with_max_value_bytes(1024);
    let (m, _) = counted(
        f.store.clone(),
        SessionConfig::new(SECRET)?.with_limits(limits),
    )?;
    let cookie = login(&m, "ann").await?;
    let before = stored(&f, &cookie).await?;
    let s = request(&m, &cookie);
    // 1,023 characters plus two quotes: one byte over.
    ensure_kind(s.insert("note", "x".repeat(1023)), ErrorKind::TooLarge)?;
    s.insert("fits", "x".repeat(1022))?;
    adapter::finish(&s).await?;
    ensure!(stored(&f, &cookie).await?.len() == before.len() + 1);
    Ok(())
}

async fn a_field_name_over_the_length_limit(f: StoreFixture) -> anyhow::Result<()> {
    let (m, _) = counted(f.store.clone(), SessionConfig::new(SECRET)?)?;
    let cookie = login(&m, "ann").await?;
    let before = stored(&f, &cookie).await?;
    let s = request(&m, &cookie);
    ensure_kind(s.insert(&"n".repeat(129), 1), ErrorKind::TooLarge)?;
    ensure_kind(s.incr(&"n".repeat(129), 1).await, ErrorKind::TooLarge)?;
    s.insert(&"n".repeat(128), 1)?;
    adapter::finish(&s).await?;
    ensure!(stored(&f, &cookie).await?.len() == before.len() + 1);
    Ok(())
}

async fn a_metadata_field_written_by_a_handler(f: StoreFixture) -> anyhow::Result<()> {
    // A handler passing a client-chosen name must not be able to move the absolute deadline.
    let (m, _) = counted(f.store.clone(), SessionConfig::new(SECRET)?)?;
    let cookie = login(&m, "ann").await?;
    let key = token_of(&cookie)?.key();
    let deadline = load(f.store(), &key)
        .await?
        .and_then(|f| f.get("__deadline").cloned());
    let s = request(&m, &cookie);
    for name in ["__deadline", "__created", "__anything", ""] {
        ensure_kind(s.insert(name, u64::MAX), ErrorKind::InvalidFieldName)?;
        ensure_kind(s.incr(name, 1).await, ErrorKind::InvalidFieldName)?;
        ensure_kind(s.remove(name), ErrorKind::InvalidFieldName)?;
    }
    adapter::finish(&s).await?;
    let after = load(f.store(), &key)
        .await?
        .and_then(|f| f.get("__deadline").cloned());
    ensure!(
        after == deadline,
        "the deadline moved: {deadline:?} -> {after:?}"
    );
    Ok(())
}

async fn blind_writes_past_the_field_limit(f: StoreFixture) -> anyhow::Result<()> {
    // Each request writes without reading, so only the store sees the whole session.
    let limits = SessionLimits::default().with_max_fields(8);
    let (m, _) = counted(
        f.store.clone(),
        SessionConfig::new(SECRET)?.with_limits(limits),
    )?;
    let cookie = login(&m, "ann").await?; // username: 1 field
    for i in 0..7 {
        let s = request(&m, &cookie);
        s.insert(&format!("f{i}"), i)?;
        adapter::finish(&s).await?;
    }
    let s = request(&m, &cookie);
    s.insert("f7", 7)?;
    ensure_kind(adapter::finish(&s).await, ErrorKind::TooLarge)?;
    let s = request(&m, &cookie);
    ensure_kind(s.incr("f8", 1).await, ErrorKind::TooLarge)?;
    ensure!(stored(&f, &cookie).await?.len() == 8);
    Ok(())
}

async fn blind_writes_past_the_session_size_limit(f: StoreFixture) -> anyhow::Result<()> {
    let limits = SessionLimits::default()
        .with_max_value_bytes(1000)
        .with_max_session_bytes(4000);
    let (m, _) = counted(
        f.store.clone(),
        SessionConfig::new(SECRET)?.with_limits(limits),
    )?;
    let cookie = login(&m, "ann").await?;
    let chunk = "x".repeat(990);
    for i in 0..3 {
        let s = request(&m, &cookie);
        s.insert(&format!("c{i}"), &chunk)?;
        adapter::finish(&s).await?;
    }
    // About 3,000 bytes stored; the fourth and fifth chunk together would make about 5,000.
    let s = request(&m, &cookie);
    s.insert("c3", &chunk)?;
    s.insert("c4", &chunk)?;
    ensure_kind(adapter::finish(&s).await, ErrorKind::TooLarge)?;
    let fields = stored(&f, &cookie).await?;
    ensure!(
        fields.len() == 4,
        "{} fields: a partial write",
        fields.len()
    );
    Ok(())
}

async fn glob_and_hash_tag_characters_in_names_and_values(f: StoreFixture) -> anyhow::Result<()> {
    let (m, _) = counted(f.store.clone(), SessionConfig::new(SECRET)?)?;
    let cookie = login(&m, "ann").await?;
    let names = [
        "*",
        "?",
        "[a-z]",
        "{tag}",
        "{",
        "}",
        "cloakroom:*",
        "a b",
        "\\",
    ];
    let s = request(&m, &cookie);
    for name in names {
        s.insert(name, format!("{name}*{{x}}?["))?;
    }
    adapter::finish(&s).await?;
    let s = request(&m, &cookie);
    for name in names {
        let value = s.get::<String>(name).await?;
        ensure!(
            value == Some(format!("{name}*{{x}}?[")),
            "{name}: {value:?}"
        );
    }
    // Still one record: the names did not spill into keys.
    ensure!(stored(&f, &cookie).await?.len() == names.len() + 1);
    Ok(())
}

async fn markup_controls_and_unicode_in_values(f: StoreFixture) -> anyhow::Result<()> {
    let (m, _) = counted(f.store.clone(), SessionConfig::new(SECRET)?)?;
    let cookie = login(&m, "ann").await?;
    let values = [
        "<script>alert(1)</script>",
        "\"'><img src=x onerror=alert(1)>",
        "line\r\nSet-Cookie: evil=1",
        "nul\0byte\u{7f}\u{1b}[31m",
        "\u{202e}txt.exe \u{200b}\u{feff}",
        "Zoë 東京 🧥 مرحبا",
        "\u{10FFFF}\u{FFFD}",
    ];
    let s = request(&m, &cookie);
    for (i, value) in values.iter().enumerate() {
        s.insert(&format!("v{i}"), value)?;
    }
    adapter::finish(&s).await?;
    let s = request(&m, &cookie);
    for (i, value) in values.iter().enumerate() {
        let read = s.get::<String>(&format!("v{i}")).await?;
        ensure!(
            read.as_deref() == Some(*value),
            "{value:?} read back as {read:?}"
        );
    }
    Ok(())
}
