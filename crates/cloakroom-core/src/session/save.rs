//! The end of a request: creating a started session, deleting retired ones, writing buffered
//! changes, and the `Set-Cookie` that results.

use std::sync::Arc;

use crate::adapter::{Finished, SetCookie};
use crate::error::{Error, ErrorKind, Result};
use crate::store::{Created, Origin};
use crate::token::SessionToken;

use super::Session;
use super::machine::{CreateStep, SaveStep};
use super::state::{Phase, Transport};

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
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use cloakroom_core::{MemoryStore, SessionConfig, SessionManager, adapter};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cloakroom_core::Result<()> {
    /// # let manager = SessionManager::new(
    /// #     Arc::new(MemoryStore::new()),
    /// #     SessionConfig::new("an example secret of at least 32 bytes")?,
    /// # )?;
    /// # let session = adapter::session_from_cookie_headers(&manager, []);
    /// session.start()?;
    /// session.insert("step", 1)?;
    /// // Written now rather than when the request ends; true: the session exists.
    /// assert!(session.save().await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn save(&self) -> Result<bool> {
        let _steps = self.inner.steps.lock().await;
        self.write_changes().await?;
        self.ensure_loaded().await?;
        Ok(matches!(self.lock().phase, Phase::Live { .. }))
    }

    // Runs the steps the request's state asks for (create a session started here, delete the
    // retired ones, write the buffered changes) until none is left. Called with the steps'
    // gate held; the state's lock is taken around each step, never across one.
    pub(super) async fn write_changes(&self) -> Result<()> {
        // Changes made while a step was in flight (by another future holding a clone of the
        // handle) are taken by the steps that follow, within a bound on creates and writes.
        // Deletes are not bounded: the list is finite, and a session this request retired (a
        // logout, the session a login replaced) must end with it.
        let mut budget = SAVE_STEPS;
        loop {
            // The guard ends with this statement: never held across a step.
            let step = self.lock().next_save_step(self.access());
            let Some(step) = step else {
                return Ok(());
            };
            let outcome = match step {
                SaveStep::Delete(old) => {
                    self.delete_retired(&old).await?;
                    continue;
                }
                _ if budget == 0 => {
                    tracing::warn!(
                        "session changes kept arriving while they were saved; the rest is left \
                         for the next save"
                    );
                    return self.delete_all_retired().await;
                }
                SaveStep::Create(step) => {
                    budget -= 1;
                    match self.create(&step).await {
                        Ok(created) => self.lock().after_create(step, created),
                        Err(e) => Err(e),
                    }
                }
                SaveStep::Write(step) => {
                    budget -= 1;
                    self.run(step).await.map(drop)
                }
            };
            if let Err(e) = outcome {
                // A create or a write failed: the sessions this request retired (a logout, the
                // session a login replaces, a copy that must not outlive a failed record) are
                // still deleted, so a failure does not leave an old cookie working. Not when
                // the store is unreachable: each delete would only wait out the timeout again.
                if !e.is_unavailable()
                    && let Err(also) = self.delete_all_retired().await
                {
                    tracing::warn!(error = %also, "a retired session could not be deleted");
                }
                return Err(e);
            }
        }
    }

    async fn delete_retired(&self, old: &SessionToken) -> Result<()> {
        let key = old.key();
        let existed = self.shared.store.delete(&key).await?;
        // The guard ends with this statement: a hook may call into the session.
        let ended = self.lock().after_delete(old, existed);
        if let Some((reason, user)) = ended {
            self.shared.config.hooks.ended(&key, user.as_ref(), reason);
        }
        Ok(())
    }

    // Deletes every retired session, including a copy that a delete adds to the list.
    async fn delete_all_retired(&self) -> Result<()> {
        loop {
            // The guard ends with this statement: never held across the delete.
            let next = self.lock().to_delete.first().cloned();
            let Some(old) = next else {
                return Ok(());
            };
            self.delete_retired(&old).await?;
        }
    }

    // Lists the session in its user's index, then creates it; returns the token it was created
    // under. A collision of 256-bit random tokens does not happen; if the store ever says the
    // key exists, something is wrong with randomness, and we refuse to share a session.
    async fn create(&self, step: &CreateStep) -> Result<SessionToken> {
        let mut token = step.token.clone();
        for _ in 0..2 {
            if let Some(user) = &step.user {
                // Listed before the session exists, so that no session of a user is ever
                // missing from the index.
                let session = &step.session;
                self.shared
                    .store
                    .index_add(
                        user,
                        &token.key(),
                        session.deadline_ms,
                        session.access.now_ms,
                    )
                    .await?;
            }
            if self
                .shared
                .store
                .create(&token.key(), &step.session)
                .await?
                == Created::Created
            {
                let hooks = &self.shared.config.hooks;
                hooks.created(&token.key(), step.user.as_ref(), step.session.origin);
                crate::observed::name_on_request_span(&token);
                self.keep_cap(step, &token).await?;
                return Ok(token);
            }
            token = SessionToken::generate()?;
        }
        Err(Error::new(
            ErrorKind::Random,
            "two fresh tokens named existing sessions",
        ))
    }

    // A login of a user with a cap on their sessions ends those past it; refused, the login
    // leaves nothing behind (`ErrorKind::TooManySessions`). A new id for a session in use is
    // never refused: it replaces a session the cap already counts.
    async fn keep_cap(&self, step: &CreateStep, token: &SessionToken) -> Result<()> {
        let (Some(user), Some(max), Origin::Login) = (
            &step.user,
            self.shared.config.max_sessions_per_user,
            step.session.origin,
        ) else {
            return Ok(());
        };
        // The sessions this request retires (the one a login replaces) are not counted: they
        // are deleted right after.
        let retired: Vec<_> = self.lock().to_delete.iter().map(|t| t.key()).collect();
        let kept = super::cap::keep_cap(&self.shared, max, user, &token.key(), &retired).await;
        // Refused or not checked, the session was ended: the request has none.
        if kept.is_err() {
            self.lock().mark_gone();
        }
        kept
    }

    // True when ending the request will write to the store: a session to create, sessions to
    // delete, or buffered writes (`adapter::has_unsaved_changes`).
    pub(crate) fn has_unsaved_changes(&self) -> bool {
        let state = self.lock();
        matches!(state.phase, Phase::Started { .. })
            || !state.to_delete.is_empty()
            || !state.pending.is_empty()
    }

    // Saves the request's changes and says what the response needs (`adapter::finish`).
    pub(crate) async fn finish(&self) -> Result<Finished> {
        let _steps = self.inner.steps.lock().await;
        // Most requests have nothing left to write: when this is false, `write_changes` would
        // do nothing. The writing is boxed so that its state, some 1.5 KiB, is not part of
        // every request's future, which the integrations box on every request.
        if self.has_unsaved_changes() {
            Box::pin(self.write_changes()).await?;
        }
        let state = self.lock();
        let config = &self.shared.config;
        let set_cookie = if state.transport == Transport::Header {
            // A header session's token reaches the client through the handler's response.
            None
        } else if let Some(issued) = &state.set_cookie {
            Some(SetCookie::issued(
                config,
                &config.signer.sign(&issued.token),
                issued.max_age,
            ))
        } else if state.clear_cookie {
            Some(SetCookie::removal(config))
        } else {
            None
        };
        Ok(Finished {
            set_cookie,
            accessed: state.accessed,
            vary: Arc::clone(&self.shared.vary),
        })
    }
}

// Most creates and writes of one save: a create and a write, and those of changes buffered
// while they were in flight; what keeps arriving after that is left for the next save.
const SAVE_STEPS: usize = 16;
