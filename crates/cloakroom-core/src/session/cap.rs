//! The per-user session cap ([`SessionConfig::with_max_sessions_per_user`](crate::SessionConfig::with_max_sessions_per_user)),
//! kept by each login after its session is created.
//!
//! The user's index and the sessions are separate keys, so no one atomic step can count and
//! admit (a cluster would see a cross-slot command). Instead every login, once its session
//! exists, lists the index and ends every session that is not among the `max` the policy keeps:
//! the newest ([`CapPolicy::EndOldest`]) or the oldest ([`CapPolicy::RefuseNew`]), ordered by
//! when each was listed, then by key. Why exactly `max` are left when logins race: the last
//! login to list the index lists every session created before it, since each login lists only
//! after its own create; and no pass ever ends one of the `max` the policy keeps out of all of
//! them, since a session kept out of a set is kept out of any part of it that holds it. So the
//! last pass leaves exactly those `max`, and no pass ends any of them. (A pass counts only the
//! sessions it finds: an entry whose session is absent was logged out, or belongs to a login
//! still on its way, which will make its own pass.)

use crate::clock::unix_millis;
use crate::config::CapPolicy;
use crate::error::{Error, ErrorKind, Result};
use crate::hooks::EndReason;
use crate::token::SessionKey;
use crate::users::{IndexEntry, UserKey};

use super::Shared;
use super::state::meta_of;

/// Ends the sessions of `user` past the cap, as the login that created `own` sees them; an
/// error of kind [`ErrorKind::TooManySessions`] when `own` is among them (it is then ended too,
/// and out of the index). `retired` are sessions this request is about to delete (the one a
/// login replaces): they do not count. On any other error `own` is ended too, best effort: a
/// login that could not check the cap must not leave behind a session, without a cookie, that
/// later logins would count.
pub(super) async fn keep_cap(
    shared: &Shared,
    max: usize,
    user: &UserKey,
    own: &SessionKey,
    retired: &[SessionKey],
) -> Result<()> {
    let mut outcome = Ok(());
    for _ in 0..CAP_PASSES {
        match pass(shared, max, user, own, retired).await {
            Ok(Pass::Done) => break,
            Ok(Pass::Again) => {}
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    if let Err(e) = &outcome
        && e.kind() != ErrorKind::TooManySessions
    {
        tracing::warn!(error = %e, "a login could not check its user's session cap; it is ended");
        if shared.store.delete(own).await.unwrap_or(false) {
            shared
                .config
                .hooks
                .ended(own, Some(user), EndReason::Capped);
        }
    }
    outcome
}

// Most passes of one login: a session that a rotation replaced while a pass ended it (its new
// id unseen by that pass) is met by the next.
const CAP_PASSES: usize = 4;

// What a pass found.
enum Pass {
    Done,
    // A session counted live was gone when the pass came to end it: a rotation may have
    // replaced it under a key this pass did not list.
    Again,
}

async fn pass(
    shared: &Shared,
    max: usize,
    user: &UserKey,
    own: &SessionKey,
    retired: &[SessionKey],
) -> Result<Pass> {
    let store = &shared.store;
    let now = unix_millis(shared.config.clock.now());
    let mut counted: Vec<IndexEntry> = Vec::new();
    let mut listed = false;
    for entry in store.index_members(user, now).await? {
        if entry.key == *own {
            listed = true;
            counted.push(entry);
            continue;
        }
        if retired.contains(&entry.key) {
            continue;
        }
        match store.peek(&entry.key, now).await {
            // A session that names another user is not this user's, whatever the index says.
            Ok(Some(fields)) => {
                if meta_of(&fields).is_ok_and(|meta| meta.user.as_ref() == Some(user)) {
                    counted.push(entry);
                }
            }
            // Absent: ended (a logout leaves its entry), or a login on its way. Neither
            // counts: a user who just logged out is not refused, and a login on its way lists
            // the index itself once its session exists. Forgotten once too old to be on its way.
            Ok(None) => {
                if entry.is_past_grace(now) {
                    store.index_remove(user, &entry, now).await?;
                }
            }
            Err(e) if e.is_unavailable() => return Err(e),
            // Unreadable: neither counted nor ended; it expires as any session does.
            Err(_) => {}
        }
    }
    if !listed {
        // Another login ended this one before it could look (its pass had it among the ended).
        if store.delete(own).await? {
            shared
                .config
                .hooks
                .ended(own, Some(user), EndReason::Capped);
        }
        return Err(lost());
    }
    counted.sort_by(|a, b| (a.written_ms, &a.key).cmp(&(b.written_ms, &b.key)));
    let past = counted.len().saturating_sub(max);
    let ended: Vec<IndexEntry> = match shared.config.cap_policy {
        CapPolicy::RefuseNew => counted.split_off(max.min(counted.len())),
        // The oldest go; `EndOldest` is the default, and a policy added later keeps the
        // newest until it says otherwise.
        _ => counted.drain(..past).collect(),
    };
    let mut own_ended = false;
    let mut count = 0;
    let mut vanished = false;
    for entry in &ended {
        // The session first, then its entry: an entry outliving its session is harmless, the
        // reverse would hide a session from the cap and from `sessions_of`.
        if store.delete(&entry.key).await? {
            count += 1;
            shared
                .config
                .hooks
                .ended(&entry.key, Some(user), EndReason::Capped);
        } else if entry.key != *own {
            vanished = true;
        }
        store.index_remove(user, entry, now).await?;
        own_ended |= entry.key == *own;
    }
    if count > 0 {
        tracing::info!(ended = count, "a login ended sessions past its user's cap");
    }
    if own_ended {
        return Err(match shared.config.cap_policy {
            CapPolicy::RefuseNew => Error::new(
                ErrorKind::TooManySessions,
                "the user has the most sessions allowed",
            ),
            _ => lost(),
        });
    }
    Ok(if vanished { Pass::Again } else { Pass::Done })
}

fn lost() -> Error {
    Error::new(
        ErrorKind::TooManySessions,
        "newer logins of the same user took the sessions allowed",
    )
}
