//! The state machine driven by hand, without a store: each test takes a step out, changes the
//! state as a concurrent future holding a clone of the handle would, and gives an outcome back.

use std::sync::atomic::{AtomicU8, Ordering};

use super::*;
use crate::session::CookieState;
use crate::token::TOKEN_BYTES;

const NOW: u64 = 1_764_500_000_000;

// Distinct tokens; randomness is not what these tests are about.
fn token() -> SessionToken {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    SessionToken::from_bytes([NEXT.fetch_add(1, Ordering::Relaxed); TOKEN_BYTES])
}

fn fail<T>(what: &str) -> Result<T> {
    Err(Error::new(ErrorKind::Backend, what.to_owned()))
}

fn state(phase: Phase) -> State {
    State {
        cookie: CookieState::Valid,
        transport: super::super::state::Transport::Cookie,
        from_cookie: None,
        phase,
        pending: Delta::default(),
        to_delete: Vec::new(),
        set_cookie: None,
        clear_cookie: false,
        accessed: false,
        flash: super::super::state::FlashTake::NotAsked,
        rotated_from: None,
        retired_users: Vec::new(),
        endings: Vec::new(),
    }
}

fn access(now_ms: u64) -> Access {
    Access {
        now_ms,
        idle_ms: 60_000,
        touch_ms: 0,
    }
}

fn stored(pairs: &[(&str, &str)]) -> Fields {
    let mut fields: Fields = pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    fields.insert(META_CREATED.to_owned(), NOW.to_string());
    fields.insert(META_DEADLINE.to_owned(), (NOW + 3_600_000).to_string());
    fields
}

fn done(fields: Option<Fields>, counters: Vec<i64>) -> Result<Applied> {
    Ok(Applied::Done {
        counters,
        fields: fields.map(Arc::new),
        taken: Fields::new(),
    })
}

fn write(state: &mut State, name: &str, json: &str) -> Result<()> {
    let known = match &state.phase {
        Phase::Live { fields, .. } => Fields::clone(fields),
        _ => Fields::new(),
    };
    state
        .pending
        .write_within_bounds(name, Some(json.to_owned()), &known)
}

#[test]
fn a_write_made_while_a_load_is_in_flight_stays_buffered() -> Result<()> {
    let metrics = SessionMetrics::default();
    let mut s = state(Phase::Unloaded { token: token() });
    write(&mut s, "a", "1")?;
    let step = s
        .load_step(|| access(NOW))
        .ok_or_else(|| Error::new(ErrorKind::Backend, "no load"))?;
    assert_eq!(
        step.apply.delta.writes().count(),
        1,
        "the load carries the write"
    );
    // Meanwhile: `a` changes again, `b` is written.
    write(&mut s, "a", "2")?;
    write(&mut s, "b", "3")?;
    s.after_apply(step, done(Some(stored(&[("a", "1")])), vec![]), &metrics)?;
    assert!(matches!(s.phase, Phase::Live { .. }));
    let left: Vec<_> = s.pending.writes().collect();
    assert_eq!(left, vec![("a", Some("2")), ("b", Some("3"))]);
    Ok(())
}

#[test]
fn a_logout_during_a_load_is_not_overwritten_by_the_load() -> Result<()> {
    let metrics = SessionMetrics::default();
    let old = token();
    let mut s = state(Phase::Unloaded { token: old.clone() });
    let step = s
        .load_step(|| access(NOW))
        .ok_or_else(|| Error::new(ErrorKind::Backend, "no load"))?;
    s.retire_current();
    s.end_here();
    s.after_apply(step, done(Some(stored(&[])), vec![]), &metrics)?;
    assert!(matches!(s.phase, Phase::Gone));
    assert_eq!(s.to_delete, vec![old]);
    assert!(s.clear_cookie);
    Ok(())
}

#[test]
fn an_increment_for_a_session_replaced_meanwhile_leaves_the_new_one_alone() -> Result<()> {
    let metrics = SessionMetrics::default();
    let mut s = state(Phase::Live {
        token: token(),
        fields: Arc::new(stored(&[("visits", "4")])),
    });
    let Count::Send(step) = s.count_step("visits", 1, access(NOW))? else {
        return fail("an existing session is counted by the store");
    };
    // Meanwhile: a login.
    let fresh = token();
    s.retire_current();
    s.phase = Phase::Started {
        token: fresh.clone(),
        fields: Fields::new(),
        meta: meta_of(&stored(&[]))?,
    };
    assert_eq!(
        s.after_apply(*step, done(None, vec![5]), &metrics)?,
        Some(5)
    );
    assert!(matches!(&s.phase, Phase::Started { token, fields, .. }
        if *token == fresh && fields.is_empty()));
    Ok(())
}

#[test]
fn the_cache_follows_the_stores_counter() -> Result<()> {
    let metrics = SessionMetrics::default();
    let mut s = state(Phase::Live {
        token: token(),
        fields: Arc::new(stored(&[("visits", "4")])),
    });
    write(&mut s, "theme", "\"dark\"")?;
    let Count::Send(step) = s.count_step("visits", 1, access(NOW))? else {
        return fail("an existing session is counted by the store");
    };
    // Other requests counted meanwhile: the store says 9, not 5.
    assert_eq!(
        s.after_apply(*step, done(None, vec![9]), &metrics)?,
        Some(9)
    );
    let Phase::Live { fields, .. } = &s.phase else {
        return fail("the session is live");
    };
    assert_eq!(fields.get("visits").map(String::as_str), Some("9"));
    assert_eq!(fields.get("theme").map(String::as_str), Some("\"dark\""));
    assert!(s.pending.is_empty(), "the sent write is still buffered");
    Ok(())
}

#[test]
fn a_save_creates_then_deletes_then_writes() -> Result<()> {
    let metrics = SessionMetrics::default();
    let (old, new) = (token(), token());
    let mut s = state(Phase::Started {
        token: new.clone(),
        fields: Fields::new(),
        meta: meta_of(&stored(&[]))?,
    });
    s.to_delete.push(old.clone());
    let Some(SaveStep::Create(create)) = s.next_save_step(access(NOW)) else {
        return fail("the new session is created first");
    };
    // Written while the create was in flight: kept, and written by a step of its own.
    if let Phase::Started { fields, .. } = &mut s.phase {
        fields.insert("late".to_owned(), "1".to_owned());
    }
    s.after_create(create, new.clone())?;
    assert_eq!(s.set_cookie.as_ref().map(|c| &c.token), Some(&new));
    let Some(SaveStep::Delete(deleted)) = s.next_save_step(access(NOW)) else {
        return fail("the retired session is deleted next");
    };
    assert_eq!(deleted, old);
    s.after_delete(&deleted, true);
    let Some(SaveStep::Write(write)) = s.next_save_step(access(NOW)) else {
        return fail("the late write is written last");
    };
    assert_eq!(write.token, new);
    s.after_apply(write, done(None, vec![]), &metrics)?;
    assert!(s.next_save_step(access(NOW)).is_none());
    Ok(())
}

#[test]
fn a_rotation_whose_original_was_logged_out_meanwhile_is_deleted() -> Result<()> {
    let metrics = SessionMetrics::default();
    let original = token();
    let mut s = state(Phase::Live {
        token: original.clone(),
        fields: Arc::new(stored(&[("a", "1")])),
    });
    assert!(s.rotate(&metrics)?);
    let Some(SaveStep::Create(create)) = s.next_save_step(access(NOW)) else {
        return fail("the copy is created first");
    };
    let copy = create.token.clone();
    s.after_create(create, copy.clone())?;
    let Some(SaveStep::Delete(deleted)) = s.next_save_step(access(NOW)) else {
        return fail("the original is deleted next");
    };
    // Another request's logout deleted the original first.
    s.after_delete(&deleted, false);
    assert_eq!(s.to_delete, vec![copy]);
    assert!(matches!(s.phase, Phase::Gone));
    assert!(s.clear_cookie && s.set_cookie.is_none());
    Ok(())
}

#[test]
fn a_session_whose_lifetime_ran_out_during_the_request_is_not_created() -> Result<()> {
    let mut s = state(Phase::Started {
        token: token(),
        fields: Fields::new(),
        meta: meta_of(&stored(&[]))?,
    });
    assert!(s.next_save_step(access(NOW + 3_600_000)).is_none());
    assert!(matches!(s.phase, Phase::Gone));
    assert!(s.clear_cookie);
    Ok(())
}

// The fields a load returns become the request's view as they are, shared with the store's
// copy, not cloned.
#[test]
fn a_loaded_session_holds_the_fields_the_store_returned() -> Result<()> {
    let metrics = SessionMetrics::default();
    let mut s = state(Phase::Unloaded { token: token() });
    let step = s
        .load_step(|| access(NOW))
        .ok_or_else(|| Error::new(ErrorKind::Backend, "no load"))?;
    let returned = Arc::new(stored(&[("a", "1")]));
    let reply = Ok(Applied::Done {
        counters: vec![],
        fields: Some(Arc::clone(&returned)),
        taken: Fields::new(),
    });
    s.after_apply(step, reply, &metrics)?;
    let Phase::Live { fields, .. } = &s.phase else {
        return fail("the load left no live session");
    };
    assert!(
        Arc::ptr_eq(fields, &returned),
        "the load's fields were cloned"
    );
    Ok(())
}
