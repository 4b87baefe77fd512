use std::sync::Arc;
use std::time::{Duration, Instant};

use cloakroom_core::store::{Access, Fields, META_DEADLINE, META_TOUCHED};

use super::Copies;

const LEASE: Duration = Duration::from_secs(1);

fn session(deadline_ms: u64, touched_ms: u64) -> Fields {
    Fields::from([
        (META_DEADLINE.to_owned(), deadline_ms.to_string()),
        (META_TOUCHED.to_owned(), touched_ms.to_string()),
        ("username".to_owned(), "\"ann\"".to_owned()),
    ])
}

fn at(now_ms: u64) -> Access {
    Access {
        now_ms,
        idle_ms: 1_000,
        touch_ms: 100,
    }
}

// Copies whose channel was confirmed alive at `now`.
fn confirmed(now: Instant) -> Copies {
    let mut copies = Copies::new(100, 1 << 20, LEASE);
    copies.confirm(now, 0);
    copies
}

fn fill(copies: &mut Copies, key: &str, fields: &Fields) {
    let ticket = copies.begin_fill(key);
    copies.finish_fill(ticket, Some(&Arc::new(fields.clone())));
}

#[test]
fn a_filled_copy_is_served_while_the_session_is_alive_and_no_touch_is_due() {
    let now = Instant::now();
    let mut copies = confirmed(now);
    fill(&mut copies, "k", &session(10_000, 5_000));
    assert!(copies.serve("k", &at(5_050), now).is_some());
    // A touch is due: Redis must see the request.
    assert!(copies.serve("k", &at(5_100), now).is_none());
    // Past idle after the last touch, or past the deadline: never served, and the copy goes.
    assert!(copies.serve("k", &at(6_000), now).is_none());
    assert_eq!(copies.len(), 0);
    fill(&mut copies, "k", &session(5_060, 5_000));
    assert!(copies.serve("k", &at(5_059), now).is_some());
    assert!(copies.serve("k", &at(5_060), now).is_none());
    assert_eq!(copies.stats.hits, 2);
}

// A hit hands out the reply the copy was filled from, not a clone of its fields.
#[test]
fn a_hit_shares_the_fields_of_the_reply_that_filled_the_copy() {
    let now = Instant::now();
    let mut copies = confirmed(now);
    let reply = Arc::new(session(10_000, 5_000));
    let ticket = copies.begin_fill("k");
    copies.finish_fill(ticket, Some(&reply));
    let first = copies.serve("k", &at(5_010), now);
    let second = copies.serve("k", &at(5_020), now);
    assert!(first.is_some_and(|fields| Arc::ptr_eq(&fields, &reply)));
    assert!(second.is_some_and(|fields| Arc::ptr_eq(&fields, &reply)));
}

#[test]
fn a_reply_overtaken_by_its_invalidation_is_never_served() {
    let now = Instant::now();
    let mut copies = confirmed(now);
    let ticket = copies.begin_fill("k");
    // The invalidation of a write that ran after the load comes in before the load's reply.
    copies.invalidate("k");
    copies.finish_fill(ticket, Some(&Arc::new(session(10_000, 5_000))));
    assert!(copies.serve("k", &at(5_001), now).is_none());
    assert_eq!(copies.len(), 0);
}

#[test]
fn a_write_of_this_process_withdraws_a_fill_in_flight_and_drops_the_copy() {
    let now = Instant::now();
    let mut copies = confirmed(now);
    fill(&mut copies, "k", &session(10_000, 5_000));
    let ticket = copies.begin_fill("other");
    copies.invalidate("k");
    copies.invalidate("other");
    copies.finish_fill(ticket, Some(&Arc::new(session(10_000, 5_000))));
    assert!(copies.serve("k", &at(5_001), now).is_none());
    assert!(copies.serve("other", &at(5_001), now).is_none());
    // A later load's reply fills again.
    fill(&mut copies, "k", &session(10_000, 5_000));
    assert!(copies.serve("k", &at(5_001), now).is_some());
}

#[test]
fn nothing_is_served_outside_the_lease_and_a_lost_channel_empties_the_copies() {
    let start = Instant::now();
    let mut copies = Copies::new(100, 1 << 20, LEASE);
    fill(&mut copies, "k", &session(10_000, 5_000));
    // Never confirmed: nothing served.
    assert!(copies.serve("k", &at(5_001), start).is_none());
    copies.confirm(start, copies.losses());
    assert!(copies.serve("k", &at(5_001), start + LEASE / 2).is_some());
    assert!(copies.serve("k", &at(5_001), start + LEASE).is_none());
    // A fill in flight when the channel is lost never lands.
    let ticket = copies.begin_fill("k2");
    let losses = copies.losses();
    copies.reset(true);
    copies.finish_fill(ticket, Some(&Arc::new(session(10_000, 5_000))));
    assert_eq!(copies.len(), 0);
    // A check that started before the loss confirms nothing.
    copies.confirm(start + LEASE, losses);
    assert!(copies.serve("k", &at(5_001), start + LEASE).is_none());
    copies.confirm(start + LEASE, copies.losses());
    assert!(copies.serve("k", &at(5_001), start + LEASE).is_none());
    assert!(copies.serve("k2", &at(5_001), start + LEASE).is_none());
}

#[test]
fn the_copies_stay_within_their_capacity_keeping_the_recently_used() {
    let now = Instant::now();
    let mut copies = Copies::new(16, 1 << 20, LEASE);
    copies.confirm(now, 0);
    fill(&mut copies, "hot", &session(10_000, 5_000));
    for i in 0..100 {
        fill(&mut copies, &format!("k{i}"), &session(10_000, 5_000));
        assert!(copies.serve("hot", &at(5_001), now).is_some(), "round {i}");
        assert!(copies.len() <= 16);
    }
}

#[test]
fn a_missing_session_or_a_record_without_deadline_fills_nothing() {
    let now = Instant::now();
    let mut copies = confirmed(now);
    let ticket = copies.begin_fill("k");
    copies.finish_fill(ticket, None);
    let mut bad = session(10_000, 5_000);
    bad.remove(META_DEADLINE);
    fill(&mut copies, "k2", &bad);
    assert_eq!(copies.len(), 0);
}

#[test]
fn a_withdrawn_fill_leaves_no_note_and_fills_nothing() {
    let now = Instant::now();
    let mut copies = confirmed(now);
    let cancelled = copies.begin_fill("k");
    copies.withdraw(cancelled);
    assert!(copies.filling.is_empty());
    // A withdrawal does not cancel a later load of the same key.
    let first = copies.begin_fill("k");
    let second = copies.begin_fill("k");
    copies.withdraw(first);
    copies.finish_fill(second, Some(&Arc::new(session(10_000, 5_000))));
    assert!(copies.serve("k", &at(5_001), now).is_some());
}

#[test]
fn the_copies_stay_within_their_byte_budget_and_skip_a_session_too_large() {
    let now = Instant::now();
    let mut copies = Copies::new(1_000, 16 * 1024, LEASE);
    copies.confirm(now, 0);
    let mut large = session(10_000, 5_000);
    large.insert("blob".to_owned(), "x".repeat(2_000));
    fill(&mut copies, "large", &large);
    assert_eq!(
        copies.len(),
        0,
        "a session past a sixteenth of the budget was copied"
    );
    for i in 0..200 {
        fill(&mut copies, &format!("k{i}"), &session(10_000, 5_000));
        assert!(copies.bytes() <= 16 * 1024);
    }
    assert!(copies.len() > 10);
    for key in ["k0", "k199"] {
        copies.invalidate(key);
    }
    copies.reset(false);
    assert_eq!(copies.bytes(), 0);
}
