//! Takes: a field read and removed in one step (the flash message).

use anyhow::{Context, bail, ensure};
use cloakroom_core::SessionLimits;
use cloakroom_core::store::{Applied, Delta, Fields, Store};

use super::{LONG, apply_step, key, load, new_session, user};

// One step taking `taken`, then `then` (other changes), loading or not; what it took, its
// counters, and the fields it answered.
async fn take_step(
    store: &dyn Store,
    key: &cloakroom_core::SessionKey,
    taken: &str,
    then: impl FnOnce(&mut Delta) -> cloakroom_core::Result<()>,
    load: bool,
) -> anyhow::Result<(Fields, Vec<i64>, Option<Fields>)> {
    let mut delta = Delta::new(SessionLimits::default());
    delta.take(taken)?;
    then(&mut delta)?;
    match apply_step(store, key, delta, load).await? {
        Applied::Done {
            counters,
            fields,
            taken,
        } => Ok((taken, counters, fields.as_deref().cloned())),
        other => bail!("{other:?}"),
    }
}

/// A take reports the field's value before the step and removes it, in the same step as the
/// rest of the delta, whether the step loads or not (an increment on the fast path included);
/// a take of an absent field reports nothing; a write of the taken name in the same step leaves
/// the new value; a missing session is still never created.
pub async fn a_take_reports_the_value_and_removes_it(store: &dyn Store) -> anyhow::Result<()> {
    let k = key()?;
    let flash = "\"Welcome, Ann.\"";
    store
        .create(
            &k,
            &new_session(&[("_flash", flash), ("visits", "1")], LONG, LONG),
        )
        .await?;
    // With an increment, not loading: the request's usual step.
    let (taken, counters, _) = take_step(
        store,
        &k,
        "_flash",
        |d| d.incr("visits", 1).map(drop),
        false,
    )
    .await?;
    ensure!(
        taken.get("_flash").map(String::as_str) == Some(flash),
        "{taken:?}"
    );
    ensure!(counters == vec![2], "{counters:?}");
    let fields = load(store, &k).await?.context("missing")?;
    ensure!(
        !fields.contains_key("_flash"),
        "the taken field is still there"
    );
    ensure!(fields.get("visits").map(String::as_str) == Some("2"));
    // Nothing left to take: nothing reported, the increment still applied, loading this time.
    let (taken, counters, fields) =
        take_step(store, &k, "_flash", |d| d.incr("visits", 1).map(drop), true).await?;
    ensure!(taken.is_empty(), "{taken:?}");
    ensure!(counters == vec![3]);
    let fields = fields.context("no fields")?;
    ensure!(
        fields.get("visits").map(String::as_str) == Some("3"),
        "{fields:?}"
    );
    // A plain take, with a new message written in the same step.
    let (taken, _, _) = take_step(
        store,
        &k,
        "_flash",
        |d| d.set("_flash", "\"next\"").map(drop),
        false,
    )
    .await?;
    ensure!(taken.is_empty());
    let (taken, _, fields) = take_step(store, &k, "_flash", |_| Ok(()), true).await?;
    ensure!(
        taken.get("_flash").map(String::as_str) == Some("\"next\""),
        "{taken:?}"
    );
    ensure!(!fields.context("no fields")?.contains_key("_flash"));
    ensure!(user(&load(store, &k).await?.context("missing")?).len() == 1);
    // A missing session: nothing taken, nothing created.
    let missing = key()?;
    let mut delta = Delta::default();
    delta.take("_flash")?;
    ensure!(apply_step(store, &missing, delta, false).await? == Applied::Missing);
    ensure!(load(store, &missing).await?.is_none());
    Ok(())
}
