//! The request's session as a state machine: each store step it needs comes out as a value, and
//! the step's outcome goes back in. Nothing here waits for I/O; [`Session`](super::Session)
//! runs the steps.
//!
//! A step is taken from the state as it is when the step leaves, and its outcome is recorded in
//! the state as it is when the step returns, which may have changed meanwhile (another future
//! holding a clone of the handle wrote a field, logged out, logged in). The rules for that are
//! here, in one place: a write made while a step was in flight stays buffered
//! ([`State::forget_sent`]); an outcome for a session the request no longer holds is not recorded
//! over the new one ([`State::holds`]).

use std::sync::Arc;
use std::time::Duration;

use crate::delta::Delta;
use crate::error::{Error, ErrorKind, Result};
use crate::hooks::{EndReason, Ending};
use crate::metrics::SessionMetrics;
use crate::store::{
    Access, Applied, Apply, Fields, META_COOKIE, META_CREATED, META_DEADLINE, META_IDLE,
    META_TOUCHED, META_USER, NewSession, Origin, RESERVED_PREFIX,
};
use crate::token::SessionToken;
use crate::users::UserKey;

use super::flash::FLASH_FIELD;
use super::state::{COOKIE_ENDS_WITH_BROWSER, FlashTake, IssuedCookie, Phase, State, meta_of};

/// A step on the existing session: a load, an increment, or the buffered writes.
pub(super) struct ApplyStep {
    pub(super) token: SessionToken,
    pub(super) apply: Apply,
    // The buffered writes as they were when the step left.
    sent: Delta,
}

/// What an increment needs.
pub(super) enum Count {
    /// Nothing from the store: the request has no session, or created it here.
    Done(Option<i64>),
    /// A step on the existing session.
    Send(Box<ApplyStep>),
}

/// The creation of a session started in this request. The store step lists the session in its
/// user's index (when it has one) and then creates it, under a fresh token should the first
/// one ever name an existing session.
pub(super) struct CreateStep {
    pub(super) token: SessionToken,
    pub(super) session: NewSession,
    pub(super) user: Option<UserKey>,
    // How long the browser may keep the cookie (`None`: until it closes).
    cookie_max_age: Option<Duration>,
    // The user fields as they were when the step left.
    sent: Fields,
}

/// The next thing the end of the request must do in the store.
pub(super) enum SaveStep {
    Create(CreateStep),
    Delete(SessionToken),
    Write(ApplyStep),
}

impl State {
    /// The load of a session not looked up yet, carrying the buffered writes.
    /// `access` is read only when a load is needed: most reads find the session loaded.
    pub(super) fn load_step(&self, access: impl FnOnce() -> Access) -> Option<ApplyStep> {
        let Phase::Unloaded { token } = &self.phase else {
            return None;
        };
        Some(self.pending_step(token.clone(), self.pending.clone(), access(), true))
    }

    /// An increment of `name` by `by`, with the buffered writes, loading the session when it
    /// was not loaded. A bad name or amount is refused first, whether or not there is a session.
    pub(super) fn count_step(&mut self, name: &str, by: i64, access: Access) -> Result<Count> {
        Delta::check_increment(self.pending.limits(), name, by)?;
        self.accessed = true;
        let (token, load) = match &mut self.phase {
            Phase::Anonymous | Phase::Gone => return Ok(Count::Done(None)),
            // The whole session is here: the increment is applied to it, bounds included.
            Phase::Started { fields, .. } => {
                // Checked above: on an empty delta, `incr` refuses nothing more.
                let mut increment = Delta::new(*self.pending.limits());
                increment.incr(name, by)?;
                let counters = increment.apply(fields)?;
                return Ok(Count::Done(counters.last().copied()));
            }
            Phase::Live { token, .. } => (token.clone(), false),
            Phase::Unloaded { token } => (token.clone(), true),
        };
        let mut delta = self.pending.clone();
        delta.incr(name, by)?;
        Ok(Count::Send(Box::new(
            self.pending_step(token, delta, access, load),
        )))
    }

    /// Records the outcome of a step on the existing session (a load, an increment, the
    /// buffered writes); returns the increment's new value, if the step carried one.
    pub(super) fn after_apply(
        &mut self,
        step: ApplyStep,
        outcome: Result<Applied>,
        metrics: &SessionMetrics,
    ) -> Result<Option<i64>> {
        // The session was replaced while the step ran (`start`, `destroy`): the new state is
        // not touched. An increment still reports what became of it, to its caller.
        let current = self.holds(&step.token);
        let counts = step.apply.delta.increments().len() > 0;
        if outcome.is_err()
            && self.flash == FlashTake::Pending
            && step.sent.takes().any(|name| name == FLASH_FIELD)
        {
            // The step that was to take the flash message failed: this request shows none,
            // and its end does not try again (a request that failed writes as little as it
            // can). The message stays for a later request, unless the step ran after all.
            self.pending.drop_take(FLASH_FIELD);
            self.flash = FlashTake::Taken(None);
        }
        let applied = match outcome {
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                if current {
                    self.unreadable(&step.token, &e, metrics);
                }
                return Ok(None);
            }
            Err(_) if !current && !counts => return Ok(None),
            Err(e) => {
                if e.kind() == ErrorKind::NotAnInteger {
                    metrics.corrupt_record();
                }
                return Err(e);
            }
            Ok(applied) => applied,
        };
        match applied {
            Applied::Missing => {
                if step.apply.load {
                    metrics.unknown_token();
                    self.endings.push(Ending {
                        key: step.token.key(),
                        user: None,
                        reason: EndReason::Expired,
                    });
                }
                if current {
                    if !step.apply.load && !counts {
                        tracing::info!(
                            session = step.token.key().short(),
                            "session ended before its changes were saved; nothing was written"
                        );
                    }
                    self.mark_gone();
                }
                Ok(None)
            }
            Applied::Done {
                counters,
                fields,
                mut taken,
            } => {
                let value = match counters.last() {
                    Some(&value) => Some(value),
                    None if counts => {
                        return Err(Error::new(
                            ErrorKind::Corrupt,
                            "the store returned no counter value",
                        ));
                    }
                    None => None,
                };
                if current {
                    if self.flash == FlashTake::Pending
                        && step.sent.takes().any(|name| name == FLASH_FIELD)
                    {
                        self.flash = FlashTake::Taken(taken.remove(FLASH_FIELD));
                    }
                    self.forget_sent(&step.sent);
                    if let Phase::Live { fields: cached, .. } = &mut self.phase {
                        // A step that changed nothing leaves the copy shared, not cloned.
                        if !(step.apply.delta.is_empty() && counters.is_empty()) {
                            step.apply.delta.replay(Arc::make_mut(cached), &counters)?;
                        }
                    } else if let Some(fields) = fields {
                        self.phase = Phase::Live {
                            token: step.token,
                            fields,
                        };
                    }
                }
                Ok(value)
            }
        }
    }

    /// The next store step of the end of the request: create a session started here, then
    /// delete the retired ones, then write the buffered changes. `None` when nothing is left.
    pub(super) fn next_save_step(&mut self, access: Access) -> Option<SaveStep> {
        if let Some(create) = self.create_step(access) {
            return Some(SaveStep::Create(create));
        }
        if let Some(old) = self.to_delete.first() {
            return Some(SaveStep::Delete(old.clone()));
        }
        self.write_step(access).map(SaveStep::Write)
    }

    fn create_step(&mut self, access: Access) -> Option<CreateStep> {
        let Phase::Started {
            token,
            fields,
            meta,
        } = &self.phase
        else {
            return None;
        };
        // Timed by the session's own idle timeout, if it was given one.
        let access = Access {
            idle_ms: meta.idle_ms.unwrap_or(access.idle_ms),
            ..access
        };
        if access.ttl_ms(meta.deadline_ms) <= 0 {
            // The absolute lifetime ran out while the request ran (a rotation near the end of a
            // session): the session is over, not an error.
            self.end_here();
            return None;
        }
        let mut stored = fields.clone();
        stored.insert(META_CREATED.to_owned(), meta.created_ms.to_string());
        stored.insert(META_DEADLINE.to_owned(), meta.deadline_ms.to_string());
        stored.insert(META_TOUCHED.to_owned(), access.now_ms.to_string());
        if let Some(user) = &meta.user {
            stored.insert(META_USER.to_owned(), user.as_str().to_owned());
        }
        if let Some(idle_ms) = meta.idle_ms {
            stored.insert(META_IDLE.to_owned(), idle_ms.to_string());
        }
        if meta.browser_cookie {
            stored.insert(META_COOKIE.to_owned(), COOKIE_ENDS_WITH_BROWSER.to_owned());
        }
        // The cookie lasts as long as the session can: to its deadline.
        let cookie_max_age = (!meta.browser_cookie)
            .then(|| Duration::from_millis(meta.deadline_ms.saturating_sub(access.now_ms)));
        let origin = if self.rotated_from.is_some() {
            Origin::Rotation
        } else {
            Origin::Login
        };
        Some(CreateStep {
            token: token.clone(),
            session: NewSession {
                fields: stored,
                access,
                deadline_ms: meta.deadline_ms,
                origin,
            },
            user: meta.user.clone(),
            cookie_max_age,
            sent: fields.clone(),
        })
    }

    /// Records the creation of `step`'s session under `created` (its token, or the fresh one
    /// the store step fell back to).
    pub(super) fn after_create(&mut self, step: CreateStep, created: SessionToken) -> Result<()> {
        let changed_meanwhile = match self.changes_since_create(&step) {
            Ok(changes) => changes,
            Err(e) => {
                // The session exists in the store: it must not outlive a failed record of it.
                self.to_delete.push(created);
                return Err(e);
            }
        };
        match changed_meanwhile {
            Some(changes) => {
                self.set_cookie = Some(IssuedCookie {
                    token: created.clone(),
                    max_age: step.cookie_max_age,
                });
                self.clear_cookie = false;
                self.phase = Phase::Live {
                    token: created,
                    fields: Arc::new(step.session.fields),
                };
                // Writes made during the create are written by the next step.
                self.pending = changes;
            }
            // Replaced while it was being created (`start`, `destroy`, a new binding): the
            // session created must not outlive the request's interest in it.
            None => self.to_delete.push(created),
        }
        Ok(())
    }

    // What changed in the started session while `step` created it: `None` when the session
    // was replaced meanwhile, or bound to a user (then it is created again, under a fresh
    // token, as it now is).
    fn changes_since_create(&mut self, step: &CreateStep) -> Result<Option<Delta>> {
        let limits = *self.pending.limits();
        Ok(match &mut self.phase {
            Phase::Started {
                token: current,
                meta,
                ..
            } if *current == step.token && meta.user != step.user => {
                // Bound to a user while it was being created: the session created lacks the
                // binding and its index entry. It goes; the next step creates it again.
                *current = SessionToken::generate()?;
                None
            }
            Phase::Started {
                token: current,
                fields: now,
                ..
            } if *current == step.token => {
                Some(changes_between(&step.sent, now, Delta::new(limits))?)
            }
            _ => None,
        })
    }

    /// Records the delete of `old`, a retired session; `existed` is the store's answer. A token
    /// leaves the list only once its delete has succeeded, so a failed delete is retried by the
    /// next save, never forgotten. Returns why the session ended, and its user when known, when
    /// the delete ended one.
    pub(super) fn after_delete(
        &mut self,
        old: &SessionToken,
        existed: bool,
    ) -> Option<(EndReason, Option<UserKey>)> {
        if let Some(at) = self.to_delete.iter().position(|t| t == old) {
            self.to_delete.remove(at);
        }
        let user = self
            .retired_users
            .iter()
            .position(|(t, _)| t == old)
            .map(|at| self.retired_users.swap_remove(at).1);
        let ended = existed.then(|| {
            // A session retired while the request has none left was logged out; one retired
            // for a successor (a new id, a login over it) was rotated.
            let reason =
                if self.rotated_from.as_ref() != Some(old) && matches!(self.phase, Phase::Gone) {
                    EndReason::Logout
                } else {
                    EndReason::Rotation
                };
            (reason, user)
        });
        if existed || self.rotated_from.as_ref() != Some(old) {
            return ended;
        }
        // The session `cycle_id` copied was deleted by another request (a logout) between our
        // load and now: its copy must not bring it back. It joins the list, so a failed delete
        // of it is retried like any other.
        if let Phase::Live { token, .. } = &self.phase {
            let copy = token.clone();
            self.to_delete.push(copy);
        }
        self.end_here();
        None
    }

    fn write_step(&mut self, access: Access) -> Option<ApplyStep> {
        if self.pending.is_empty() {
            return None;
        }
        match &self.phase {
            Phase::Live { token, .. } | Phase::Unloaded { token } => {
                Some(self.pending_step(token.clone(), self.pending.clone(), access, false))
            }
            _ => {
                self.pending.clear();
                None
            }
        }
    }

    /// Gives the loaded or started session a fresh token, keeping its data and deadline; false
    /// when there is no session. The old session is deleted at the end of the request.
    pub(super) fn rotate(&mut self, metrics: &SessionMetrics) -> Result<bool> {
        let (fields, meta) = match &self.phase {
            Phase::Anonymous | Phase::Gone | Phase::Unloaded { .. } => return Ok(false),
            Phase::Started { fields, meta, .. } => (fields.clone(), meta.clone()),
            Phase::Live { token, fields } => {
                let meta = match meta_of(fields) {
                    Ok(meta) => meta,
                    Err(e) => {
                        let token = token.clone();
                        self.unreadable(&token, &e, metrics);
                        return Ok(false);
                    }
                };
                let mut merged = Fields::clone(fields);
                let limits = *self.pending.limits();
                let pending = std::mem::replace(&mut self.pending, Delta::new(limits));
                // What the store would make of the buffered writes; they are not sent to the
                // old session, which is retired.
                pending.replay(&mut merged, &[])?;
                (merged, meta)
            }
        };
        let token = SessionToken::generate()?;
        if let Phase::Live { token: old, .. } = &self.phase {
            self.rotated_from = Some(old.clone());
        }
        self.retire_current();
        self.phase = Phase::Started {
            token,
            fields: fields
                .into_iter()
                .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
                .collect(),
            meta,
        };
        Ok(true)
    }

    // A step on `token`'s session carrying `delta`: the buffered writes, and an increment if
    // the step counts.
    fn pending_step(
        &self,
        token: SessionToken,
        delta: Delta,
        access: Access,
        load: bool,
    ) -> ApplyStep {
        ApplyStep {
            token,
            apply: Apply {
                access,
                delta,
                load,
            },
            sent: self.pending.clone(),
        }
    }

    // The session's record cannot be read as a session (a key of another type, a hash without a
    // valid deadline or metadata): the request goes on without a session, as if it had expired.
    // The record is left as it is, for whoever investigates; it expires, and a logout or the
    // next login deletes it. The cookie is left alone, as for an expired session: clearing it
    // could wipe a login made meanwhile in another tab. Never an error: the user could not
    // change the record, and must not be locked out by it.
    pub(super) fn unreadable(
        &mut self,
        token: &SessionToken,
        error: &Error,
        metrics: &SessionMetrics,
    ) {
        metrics.corrupt_record();
        tracing::warn!(
            session = token.key().short(),
            error = %error,
            "the session's record cannot be read; the request goes on without a session"
        );
        self.mark_gone();
    }
}

// The delta that turns `before` into `after`: the writes to a started session made while it
// was being created.
fn changes_between(before: &Fields, after: &Fields, mut changes: Delta) -> Result<Delta> {
    for (name, value) in after {
        if before.get(name) != Some(value) {
            changes.set(name, value.clone())?;
        }
    }
    for name in before.keys() {
        if !after.contains_key(name) {
            changes.remove(name)?;
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests;
