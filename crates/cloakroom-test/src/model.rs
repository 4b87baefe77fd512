//! A reference model of a session store, and a checker that drives a store through a sequence
//! of steps and compares every answer with the model: counters count exactly, sliding expiry
//! and the absolute deadline end sessions when the model says, an expired or deleted session
//! never answers again, a peek reads without extending, and a write past the session-wide
//! bounds is refused and writes nothing. The proptest in the test suite and the `memory_model` fuzz target both
//! drive it, from bytes.

use cloakroom_core::store::{
    Access, Applied, Apply, Created, Delta, Fields, META_CREATED, META_DEADLINE, NewSession, Store,
};
use cloakroom_core::{ErrorKind, SessionKey, SessionLimits, SessionToken};

// Time moves in 7 ms steps; expiry (100 ms after an access) and deadlines (1,000 ms after a
// creation) never land on a step, so the model needs no opinion about the boundary instant.
const STEP_MS: u64 = 7;
const IDLE_MS: u64 = 100;
const LIFETIME_MS: u64 = 1_000;
const SESSIONS: usize = 3;
// `Grow` sets one of four fields under a bound of three user fields (`visits` counts).
const GROWN_FIELDS: u8 = 4;
const MAX_FIELDS: usize = 3;

/// One thing done to the store.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Create session `n` (refused while it lives).
    Create(usize),
    /// Increment session `n`'s counter.
    Incr(usize),
    /// Load session `n`.
    Load(usize),
    /// Delete session `n`.
    Delete(usize),
    /// Let this many 7 ms steps pass.
    Wait(u64),
    /// Read session `n` without touching it.
    Peek(usize),
    /// Set field `g{k}` of session `n` under the bounds (session, k).
    Grow(usize, u8),
}

/// Steps read from bytes, two per step (which step, and its argument): any bytes are a valid
/// sequence, which is what a fuzzer and a property test both want.
pub fn steps_from_bytes(bytes: &[u8]) -> Vec<Step> {
    bytes
        .chunks_exact(2)
        .map(|pair| {
            let session = usize::from(pair[1]) % SESSIONS;
            match pair[0] % 7 {
                0 => Step::Create(session),
                1 => Step::Incr(session),
                2 => Step::Load(session),
                3 => Step::Delete(session),
                4 => Step::Peek(session),
                5 => Step::Grow(session, (pair[1] / 3) % GROWN_FIELDS),
                _ => Step::Wait(u64::from(pair[1] % 30) + 1),
            }
        })
        .collect()
}

/// What the model knows of a session: its user fields, changed only by [`Delta::apply`], the
/// one statement of what a change means, so that every store is held to it.
#[derive(Debug, Clone)]
struct Entry {
    fields: Fields,
    expires: u64,
    deadline: u64,
}

fn live(entry: &Option<Entry>, now: u64) -> Option<Entry> {
    entry
        .as_ref()
        .filter(|e| now < e.expires && now < e.deadline)
        .cloned()
}

// The user fields of `fields`: the store's copy without its metadata.
fn user_fields(fields: &Fields) -> Fields {
    fields
        .iter()
        .filter(|(name, _)| !name.starts_with("__"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// Drives `store` through `steps`; the error names the first step where the store and the model
/// disagree.
pub async fn check_against_model(store: &dyn Store, steps: &[Step]) -> Result<(), String> {
    let keys: Vec<SessionKey> = (0..SESSIONS)
        .map(|_| SessionToken::generate().map(|t| t.key()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut model: [Option<Entry>; SESSIONS] = Default::default();
    let mut now: u64 = 1_700_000_000_000;
    let access = |now_ms| Access {
        now_ms,
        idle_ms: IDLE_MS,
        touch_ms: 0,
    };
    for (index, &step) in steps.iter().enumerate() {
        let fail = |what: String| Err(format!("step {index} ({step:?}): {what}"));
        match step {
            Step::Wait(n) => now += n * STEP_MS,
            Step::Create(i) => {
                let deadline = now + LIFETIME_MS;
                let mut fields = Fields::new();
                fields.insert(META_CREATED.to_owned(), now.to_string());
                fields.insert(META_DEADLINE.to_owned(), deadline.to_string());
                let session = NewSession {
                    fields,
                    access: access(now),
                    deadline_ms: deadline,
                    origin: cloakroom_core::store::Origin::Login,
                };
                let created = store.create(&keys[i], &session).await;
                let alive = live(&model[i], now).is_some();
                match (alive, &created) {
                    (true, Ok(Created::Exists)) => {}
                    (false, Ok(Created::Created)) => {
                        model[i] = Some(Entry {
                            fields: Fields::new(),
                            expires: now + IDLE_MS,
                            deadline,
                        });
                    }
                    _ => return fail(format!("live: {alive}, create answered {created:?}")),
                }
            }
            Step::Incr(i) | Step::Load(i) | Step::Grow(i, _) => {
                let limits = SessionLimits::default()
                    .with_max_fields(MAX_FIELDS)
                    .with_max_session_bytes(1_000);
                let mut delta = Delta::new(limits);
                match step {
                    Step::Incr(_) => delta.incr("visits", 1).map(drop),
                    Step::Grow(_, k) => delta.set(&format!("g{k}"), "1").map(drop),
                    _ => Ok(()),
                }
                .map_err(|e| format!("step {index}: {e}"))?;
                let load = matches!(step, Step::Load(_));
                let apply = Apply {
                    access: access(now),
                    delta,
                    load,
                };
                let applied = store.apply(&keys[i], &apply).await;
                let Some(mut entry) = live(&model[i], now) else {
                    // Never resurrected: once dead, every access finds nothing.
                    if !matches!(applied, Ok(Applied::Missing)) {
                        return fail(format!("model: gone, store answered {applied:?}"));
                    }
                    model[i] = None;
                    continue;
                };
                // The model's own expectation, independent of `Delta::apply`: a visit adds one,
                // and a new field is refused once three user fields are held.
                let visits = entry
                    .fields
                    .get("visits")
                    .map_or(Some(0), |v| v.parse().ok());
                let independent = match step {
                    // A first visit creates a field: refused at the bound like any other.
                    Step::Incr(_)
                        if !entry.fields.contains_key("visits")
                            && entry.fields.len() >= MAX_FIELDS =>
                    {
                        Some(Err(ErrorKind::TooLarge))
                    }
                    Step::Incr(_) => visits.map(|v: i64| Ok(vec![v + 1])),
                    Step::Grow(_, k) => {
                        let new = !entry.fields.contains_key(&format!("g{k}"));
                        Some(if new && entry.fields.len() >= MAX_FIELDS {
                            Err(ErrorKind::TooLarge)
                        } else {
                            Ok(Vec::new())
                        })
                    }
                    _ => Some(Ok(Vec::new())),
                };
                let expected = apply.delta.apply(&mut entry.fields);
                let agreed = expected.as_ref().map(Vec::clone).map_err(|e| e.kind());
                if independent != Some(agreed.clone()) {
                    return fail(format!(
                        "Delta::apply answered {agreed:?}, the model expects {independent:?}"
                    ));
                }
                match (expected, applied) {
                    (
                        Ok(expected),
                        Ok(Applied::Done {
                            counters, fields, ..
                        }),
                    ) => {
                        if counters != expected {
                            return fail(format!("counted {counters:?}, not {expected:?}"));
                        }
                        let stored = fields.as_deref().map(user_fields);
                        if load && stored.as_ref() != Some(&entry.fields) {
                            return fail(format!("holds {stored:?}, not {:?}", entry.fields));
                        }
                        // Each access slides the idle timeout, never past the deadline.
                        entry.expires = (now + IDLE_MS).min(entry.deadline);
                        model[i] = Some(entry);
                    }
                    // Refused as the model refuses it, and nothing written (the model's entry
                    // is left as it was).
                    (Err(expected), Err(e)) if e.kind() == expected.kind() => {}
                    (expected, applied) => {
                        return fail(format!("model {expected:?}, store answered {applied:?}"));
                    }
                }
            }
            Step::Delete(i) => {
                if let Err(e) = store.delete(&keys[i]).await {
                    return fail(format!("delete failed: {e}"));
                }
                model[i] = None;
            }
            Step::Peek(i) => {
                // Nothing slides: the model's entry is left exactly as it is.
                let peeked = store.peek(&keys[i], now).await;
                match (live(&model[i], now), peeked) {
                    (None, Ok(None)) => {}
                    (Some(entry), Ok(Some(fields))) => {
                        if user_fields(&fields) != entry.fields {
                            return fail(format!("peeked {fields:?}, not {:?}", entry.fields));
                        }
                    }
                    (expected, peeked) => {
                        return fail(format!("model {expected:?}, peek answered {peeked:?}"));
                    }
                }
            }
        }
    }
    Ok(())
}
