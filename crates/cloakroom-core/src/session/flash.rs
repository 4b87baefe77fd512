//! Flash messages: a one-shot message set in one request and shown in the next ("Welcome,
//! Ann."), read and removed in the round trip the request makes anyway.

use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorKind, Result};

use super::Session;
use super::state::{FlashTake, Phase};

/// The field that holds a session's flash message. Handlers should not write it otherwise.
pub const FLASH_FIELD: &str = "_flash";

impl Session {
    /// Sets the flash message: shown once, by the request that takes it next
    /// ([`Session::take_flash`]). A login handler sets it after [`Session::start`]; it is
    /// written with the rest of the request's changes. The message is any value that
    /// serializes to JSON, within the field limits.
    ///
    /// # Errors
    ///
    /// As [`Session::insert`].
    pub fn flash<T: serde::Serialize>(&self, message: T) -> Result<()> {
        self.insert(FLASH_FIELD, message)
    }

    /// Takes the flash message, if the session has one: it is removed from the session and
    /// handed to this request only.
    ///
    /// The read and the removal cost no round trip of their own when this is called before the
    /// request's first session call: they ride on that call's step (an [`Session::incr`], a
    /// [`Session::get`]), and [`Flash::message`] then answers without store access. Called
    /// after the session was loaded, the message comes from the loaded copy and its removal is
    /// written with the request's next step, or at its end.
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
    /// # let login = adapter::session_from_cookie_headers(&manager, []);
    /// # login.start()?;
    /// login.flash("Welcome, Ann.")?; // the login request
    /// # let cookie = adapter::finish(&login).await?.set_cookie.expect("cookie");
    /// # let pair = format!("{}={}", cookie.name(), cookie.value());
    /// # let session = adapter::session_from_cookie_headers(&manager, [pair.as_bytes()]);
    /// // The next request: one step counts the visit, reads the flash and removes it.
    /// let flash = session.take_flash();
    /// let visits = session.incr("visits", 1).await?;
    /// assert_eq!(flash.message::<String>().await?.as_deref(), Some("Welcome, Ann."));
    /// # assert_eq!(visits, Some(1));
    /// # adapter::finish(&session).await?;
    /// # let again = adapter::session_from_cookie_headers(&manager, [pair.as_bytes()]);
    /// # assert!(again.take_flash().message::<String>().await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn take_flash(&self) -> Flash {
        let mut state = self.lock();
        state.accessed = true;
        if state.flash == FlashTake::NotAsked {
            let taken = match &mut state.phase {
                Phase::Anonymous | Phase::Gone => Some(None),
                Phase::Started { fields, .. } => Some(fields.remove(FLASH_FIELD)),
                Phase::Live { fields, .. } => Some(fields.get(FLASH_FIELD).cloned()),
                Phase::Unloaded { .. } => None,
            };
            let live = matches!(state.phase, Phase::Live { .. } | Phase::Unloaded { .. });
            // A message the request wrote itself is taken from the buffered writes.
            let buffered = state
                .pending
                .writes()
                .find(|(name, _)| *name == FLASH_FIELD)
                .map(|(_, value)| value.map(str::to_owned));
            match buffered.or(taken) {
                Some(value) => {
                    // Read here: a live session's copy (or buffered write) goes with the next
                    // step or the end of the request.
                    if live && value.is_some() {
                        let _ = state.pending.remove(FLASH_FIELD);
                    }
                    state.flash = FlashTake::Taken(value);
                }
                None => {
                    // Not loaded yet: the next step reads and removes it.
                    let _ = state.pending.take(FLASH_FIELD);
                    state.flash = FlashTake::Pending;
                }
            }
        }
        Flash {
            session: self.clone(),
        }
    }
}

/// A flash message being taken: see [`Session::take_flash`].
#[derive(Debug, Clone)]
#[must_use = "the message is read with `.message()`"]
pub struct Flash {
    session: Session,
}

impl Flash {
    /// The message, decoded as `T`; `None` when the session had none. Costs no store access
    /// when a step of the request already took it; otherwise one step loads the session and
    /// takes it.
    ///
    /// # Errors
    ///
    /// A store failure, as [`Session::get`]; [`ErrorKind::Decode`] when the message is not a
    /// `T`.
    pub async fn message<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let session = &self.session;
        if session.lock().flash == FlashTake::Pending {
            let _steps = session.inner.steps.lock().await;
            session.ensure_loaded().await?;
        }
        let text = match &session.lock().flash {
            FlashTake::Taken(text) => text.clone(),
            // The step that loaded the session did not carry the take (it was replaced
            // meanwhile): there is no message for this request.
            FlashTake::Pending | FlashTake::NotAsked => None,
        };
        text.map(|text| {
            serde_json::from_str(&text).map_err(|e| {
                session.shared.metrics.decode_error();
                Error::with_source(
                    ErrorKind::Decode,
                    "the flash message is not of that type",
                    e,
                )
            })
        })
        .transpose()
    }
}
