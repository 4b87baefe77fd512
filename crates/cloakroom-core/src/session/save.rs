//! The end of a request: creating a started session, deleting retired ones, writing buffered
//! changes, and the `Set-Cookie` that results.

use crate::config::{SameSite, SessionConfig};
use crate::error::{Error, ErrorKind, Result};
use crate::store::{
    Applied, Apply, Created, META_CREATED, META_DEADLINE, META_USER, NewSession, Origin, Store,
};
use crate::token::SessionToken;

use super::state::{Phase, State, merge_pending, pending_ops};
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
        let mut state = self.state.lock().await;
        self.save_locked(&mut state).await?;
        self.ensure_loaded(&mut state).await?;
        Ok(matches!(state.phase, Phase::Live { .. }))
    }

    pub(super) async fn save_locked(&self, state: &mut State) -> Result<()> {
        if let Phase::Started {
            token,
            fields,
            meta,
        } = &state.phase
        {
            let (mut token, mut fields, meta) = (token.clone(), fields.clone(), meta.clone());
            let access = self.access();
            if access.ttl_ms(meta.deadline_ms) <= 0 {
                // The absolute lifetime ran out while the request ran (a rotation near the end of
                // a session): the session is over, not an error.
                state.end_here();
                return self.delete_retired(state).await;
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
                origin: if state.rotated_from.is_some() {
                    Origin::Rotation
                } else {
                    Origin::Login
                },
            };
            // A collision of 256-bit random tokens does not happen; if the store ever says the
            // key exists, something is wrong with randomness, and we refuse to share a session.
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
            state.set_cookie = Some(token.clone());
            state.clear_cookie = false;
            state.phase = Phase::Live {
                token,
                fields: new.fields,
            };
        }
        self.delete_retired(state).await?;
        if !state.pending.is_empty() {
            let token = match &state.phase {
                Phase::Live { token, .. } | Phase::Unloaded { token } => token.clone(),
                _ => {
                    state.pending.clear();
                    return Ok(());
                }
            };
            let ops = pending_ops(&state.pending);
            let apply = Apply {
                access: self.access(),
                bounds: self.bounds_for(&ops),
                ops,
                load: false,
            };
            let applied = match self.shared.store.apply(&token.key(), &apply).await {
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    self.unreadable(state, &token, &e);
                    return Ok(());
                }
                other => other?,
            };
            let pending = std::mem::take(&mut state.pending);
            match applied {
                Applied::Missing => {
                    tracing::info!(
                        session = token.key().short(),
                        "session ended before its changes were saved; nothing was written"
                    );
                    state.mark_gone();
                }
                Applied::Done { .. } => {
                    if let Phase::Live { fields, .. } = &mut state.phase {
                        merge_pending(fields, pending);
                    }
                }
            }
        }
        Ok(())
    }

    // Deletes the sessions this request retired. A token leaves the list only once its delete
    // has succeeded, so a failed delete is retried by the next save, never forgotten.
    pub(super) async fn delete_retired(&self, state: &mut State) -> Result<()> {
        while let Some(old) = state.to_delete.first().cloned() {
            let existed = self.shared.store.delete(&old.key()).await?;
            state.to_delete.remove(0);
            if !existed && state.rotated_from.as_ref() == Some(&old) {
                // The session `cycle_id` copied was deleted by another request (a logout)
                // between our load and now: its copy must not bring it back.
                if let Phase::Live { token, .. } = &state.phase {
                    self.shared.store.delete(&token.key()).await?;
                }
                state.end_here();
            }
        }
        Ok(())
    }

    /// True when ending the request will write to the store: a session to create, sessions to
    /// delete, or buffered writes.
    pub async fn has_unsaved_changes(&self) -> bool {
        let state = self.state.lock().await;
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
        let mut state = self.state.lock().await;
        self.save_locked(&mut state).await?;
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
