//! The end of a request: creating a started session, deleting retired ones, writing buffered
//! changes, and the `Set-Cookie` that results.

use crate::config::{SameSite, SessionConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::store::{
    Applied, Apply, Created, META_CREATED, META_DEADLINE, META_USER, NewSession, Origin, Store,
};
use crate::token::SessionToken;

use std::collections::BTreeMap;

use crate::store::Fields;

use super::state::{Phase, merge_pending, pending_ops};
use super::{Finished, Session};

impl Session {
    /// Writes what the request changed: creates a started session, deletes retired ones, applies
    /// buffered writes. The HTTP layer calls this once when the handler has returned; a handler
    /// may call it earlier to learn the outcome. Returns whether the session still exists.
    ///
    /// # Errors
    ///
    /// a store failure ([`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable),
    /// [`ErrorKind::Backend`](crate::ErrorKind::Backend); see
    /// [`Error::is_outcome_unknown`](crate::Error::is_outcome_unknown) for a write that may have
    /// run), or [`ErrorKind::TooLarge`](crate::ErrorKind::TooLarge) when the store refuses buffered
    /// writes past the bounds; what failed is written by the next save.
    pub async fn save(&self) -> Result<bool> {
        let _steps = self.inner.steps.lock().await;
        self.write_changes().await?;
        self.ensure_loaded().await?;
        Ok(matches!(self.lock().phase, Phase::Live { .. }))
    }

    // Creates a session started here, deletes the retired ones, then writes buffered changes.
    // Called with the steps' gate held; the state's lock is taken around each step, never
    // across one.
    pub(super) async fn write_changes(&self) -> Result<()> {
        // Changes made while a pass was in flight (by another future holding a clone of the
        // handle) stay buffered: a few more passes take them.
        for _ in 0..WRITE_PASSES {
            self.create_started().await?;
            self.delete_retired().await?;
            self.write_pending().await?;
            if !self.has_unsaved_changes() {
                return Ok(());
            }
        }
        tracing::warn!(
            "session changes kept arriving while they were saved; the rest is left for the next \
             save"
        );
        Ok(())
    }

    async fn create_started(&self) -> Result<()> {
        let (original, mut fields, meta, origin) = {
            let state = self.lock();
            let Phase::Started {
                token,
                fields,
                meta,
            } = &state.phase
            else {
                return Ok(());
            };
            let origin = if state.rotated_from.is_some() {
                Origin::Rotation
            } else {
                Origin::Login
            };
            (token.clone(), fields.clone(), meta.clone(), origin)
        };
        let sent = fields.clone();
        let access = self.access();
        if access.ttl_ms(meta.deadline_ms) <= 0 {
            // The absolute lifetime ran out while the request ran (a rotation near the end of a
            // session): the session is over, not an error.
            let mut state = self.lock();
            if matches!(&state.phase, Phase::Started { token, .. } if *token == original) {
                state.end_here();
            }
            return Ok(());
        }
        fields.insert(META_CREATED.to_owned(), meta.created_ms.to_string());
        fields.insert(META_DEADLINE.to_owned(), meta.deadline_ms.to_string());
        if let Some(user) = &meta.user {
            fields.insert(META_USER.to_owned(), user.as_str().to_owned());
        }
        let new = NewSession {
            fields,
            access,
            deadline_ms: meta.deadline_ms,
            origin,
        };
        // A collision of 256-bit random tokens does not happen; if the store ever says the key
        // exists, something is wrong with randomness, and we refuse to share a session.
        let mut token = original.clone();
        self.index(meta.user.as_ref(), &token, &access, meta.deadline_ms)
            .await?;
        if self.shared.store.create(&token.key(), &new).await? == Created::Exists {
            token = SessionToken::generate()?;
            self.index(meta.user.as_ref(), &token, &access, meta.deadline_ms)
                .await?;
            if self.shared.store.create(&token.key(), &new).await? == Created::Exists {
                return Err(Error::new(
                    ErrorKind::Random,
                    "two fresh tokens named existing sessions",
                ));
            }
        }
        let mut state = self.lock();
        let changed_meanwhile = match &mut state.phase {
            Phase::Started {
                token: current,
                meta: now_meta,
                ..
            } if *current == original && now_meta.user != meta.user => {
                // Bound to a user while it was being created: the session created lacks the
                // binding and its index entry. It goes; the next pass creates the session
                // again, under a fresh token, as it is now.
                *current = SessionToken::generate()?;
                None
            }
            Phase::Started {
                token: current,
                fields: now,
                ..
            } if *current == original => Some(changes_between(&sent, now)),
            _ => None,
        };
        match changed_meanwhile {
            Some(changes) => {
                state.set_cookie = Some(token.clone());
                state.clear_cookie = false;
                state.phase = Phase::Live {
                    token,
                    fields: new.fields,
                };
                // Writes made during the create are written by the next step.
                state.pending.extend(changes);
            }
            // Replaced while it was being created (`start`, `destroy`, a new binding): the
            // session created must not outlive the request's interest in it.
            None => state.to_delete.push(token),
        }
        Ok(())
    }

    // Writes the buffered changes to the existing session; true when there were any.
    async fn write_pending(&self) -> Result<bool> {
        let (token, sent) = {
            let mut state = self.lock();
            if state.pending.is_empty() {
                return Ok(false);
            }
            match &state.phase {
                Phase::Live { token, .. } | Phase::Unloaded { token } => {
                    (token.clone(), state.pending.clone())
                }
                _ => {
                    state.pending.clear();
                    return Ok(false);
                }
            }
        };
        let ops = pending_ops(&sent);
        let apply = Apply {
            access: self.access(),
            bounds: self.bounds_for(&ops),
            ops,
            load: false,
        };
        let outcome = self.shared.store.apply(&token.key(), &apply).await;
        let mut state = self.lock();
        if !state.holds(&token) {
            return Ok(true);
        }
        let applied = match outcome {
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                self.unreadable(&mut state, &token, &e);
                return Ok(false);
            }
            other => other?,
        };
        match applied {
            Applied::Missing => {
                tracing::info!(
                    session = token.key().short(),
                    "session ended before its changes were saved; nothing was written"
                );
                state.mark_gone();
            }
            Applied::Done { .. } => {
                state.forget_sent(&sent);
                if let Phase::Live { fields, .. } = &mut state.phase {
                    merge_pending(fields, sent);
                }
            }
        }
        Ok(true)
    }

    // Deletes the sessions this request retired. A token leaves the list only once its delete
    // has succeeded, so a failed delete is retried by the next save, never forgotten.
    pub(super) async fn delete_retired(&self) -> Result<()> {
        loop {
            let Some(old) = self.lock().to_delete.first().cloned() else {
                return Ok(());
            };
            let existed = self.shared.store.delete(&old.key()).await?;
            {
                let mut state = self.lock();
                if let Some(at) = state.to_delete.iter().position(|t| *t == old) {
                    state.to_delete.remove(at);
                }
                if existed || state.rotated_from.as_ref() != Some(&old) {
                    continue;
                }
                // The session `cycle_id` copied was deleted by another request (a logout)
                // between our load and now: its copy must not bring it back. It joins the
                // list, so a failed delete of it is retried like any other.
                if let Phase::Live { token, .. } = &state.phase {
                    let copy = token.clone();
                    state.to_delete.push(copy);
                }
                state.end_here();
            }
        }
    }

    /// True when ending the request will write to the store: a session to create, sessions to
    /// delete, or buffered writes.
    pub fn has_unsaved_changes(&self) -> bool {
        let state = self.lock();
        matches!(state.phase, Phase::Started { .. })
            || !state.to_delete.is_empty()
            || !state.pending.is_empty()
    }

    /// Saves the request's changes and says what the response needs. Called once by the HTTP
    /// layer when the handler has returned.
    ///
    /// # Errors
    ///
    /// As [`Session::save`].
    pub async fn finish(&self) -> Result<Finished> {
        let _steps = self.inner.steps.lock().await;
        self.write_changes().await?;
        let state = self.lock();
        let config = &self.shared.config;
        let set_cookie = if let Some(token) = &state.set_cookie {
            Some(cookie_header(config, Some(&config.signer.sign(token))))
        } else if state.clear_cookie {
            Some(cookie_header(config, None))
        } else {
            None
        };
        Ok(Finished {
            set_cookie,
            accessed: state.accessed,
        })
    }
}

// Passes over writes buffered while an earlier pass was in flight.
const WRITE_PASSES: usize = 4;

// The buffered changes that turn `before` into `after`: a write to a started session made while
// it was being created.
fn changes_between(before: &Fields, after: &Fields) -> BTreeMap<String, Option<String>> {
    let mut changes = BTreeMap::new();
    for (name, value) in after {
        if before.get(name) != Some(value) {
            changes.insert(name.clone(), Some(value.clone()));
        }
    }
    for name in before.keys() {
        if !after.contains_key(name) {
            changes.insert(name.clone(), None);
        }
    }
    changes
}

fn cookie_header(config: &SessionConfig, value: Option<&str>) -> String {
    let mut builder = cookie::Cookie::build((
        config.cookie_name().to_owned(),
        value.unwrap_or("").to_owned(),
    ))
    .http_only(true)
    .secure(config.secure)
    .path(config.path.clone())
    .same_site(match config.same_site {
        SameSite::Strict => cookie::SameSite::Strict,
        SameSite::Lax => cookie::SameSite::Lax,
        SameSite::None => cookie::SameSite::None,
    });
    if let Some(domain) = &config.domain {
        builder = builder.domain(domain.clone());
    }
    let seconds = if value.is_some() {
        i64::try_from(config.absolute_timeout.as_secs()).unwrap_or(i64::MAX)
    } else {
        0
    };
    builder = builder.max_age(cookie::time::Duration::seconds(seconds));
    if value.is_none() {
        builder = builder.expires(cookie::time::OffsetDateTime::UNIX_EPOCH);
    }
    builder.build().to_string()
}
