//! The request's view of its session between store steps: what it holds, what it has
//! buffered, and what the end of the request must do.

use std::sync::Arc;

use super::CookieState;
use crate::delta::Delta;
use crate::error::{Error, ErrorKind, Result};
use crate::store::{
    Fields, META_COOKIE, META_CREATED, META_DEADLINE, META_IDLE, META_USER, parse_millis,
};
use crate::token::SessionToken;
use crate::users::UserKey;

pub(super) struct State {
    // What the request's cookie (or session header) said, before any store access.
    pub(super) cookie: CookieState,
    // How the session travels between client and server.
    pub(super) transport: Transport,
    // The session the request's cookie named, if it was valid: a header token issued in this
    // request leaves it alone (`Session::issue_header_token`).
    pub(super) from_cookie: Option<SessionToken>,
    pub(super) phase: Phase,
    // Buffered writes to an existing session, as the delta the next step carries.
    pub(super) pending: Delta,
    // Sessions to delete at the end of the request (after any new one is created).
    pub(super) to_delete: Vec<SessionToken>,
    pub(super) set_cookie: Option<IssuedCookie>,
    pub(super) clear_cookie: bool,
    pub(super) accessed: bool,
    // Where the request's take of the flash message stands (`Session::take_flash`).
    pub(super) flash: FlashTake,
    // The session whose data a `cycle_id` copied: if it turns out to have been deleted meanwhile
    // (a logout in another request), the copy must not outlive it.
    pub(super) rotated_from: Option<SessionToken>,
    // The users of retired sessions whose data the request had, for the hooks of their end.
    pub(super) retired_users: Vec<(SessionToken, UserKey)>,
    // Sessions seen to have ended while the lock was held, for the hooks once it is released.
    pub(super) endings: Vec<crate::hooks::Ending>,
}

/// Where the request's take of the flash message stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FlashTake {
    /// Not asked for.
    NotAsked,
    /// Asked for before the session was loaded: the buffered writes take it, and the next step
    /// on the session reads and removes it.
    Pending,
    /// Taken: the message as JSON text, if there was one.
    Taken(Option<String>),
}

/// How a session travels between the client and the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    /// In the session cookie: responses set and clear it.
    Cookie,
    /// In the configured request header (`SessionConfig::with_header_sessions`): no response
    /// sets or clears a cookie; a new token reaches the client through the handler's response
    /// (`Session::issue_header_token`).
    Header,
}

/// A session cookie the response must set: the session's token, and how long the browser may
/// keep it (`None`: until it closes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IssuedCookie {
    pub(super) token: SessionToken,
    pub(super) max_age: Option<std::time::Duration>,
}

#[derive(Clone)]
pub(super) struct Meta {
    pub(super) created_ms: u64,
    pub(super) deadline_ms: u64,
    // The session's own idle timeout (`Session::set_lifetime`); `None`: the configured one.
    pub(super) idle_ms: Option<u64>,
    // Whether the session's cookie ends with the browser.
    pub(super) browser_cookie: bool,
    // The user the session belongs to, if one was bound: the session is listed in that user's
    // index.
    pub(super) user: Option<UserKey>,
}

pub(super) enum Phase {
    /// No session, none started.
    Anonymous,
    /// A validly signed token, not yet looked up.
    Unloaded { token: SessionToken },
    /// A session known to exist, with its fields as of the last store access.
    /// Shared with the store's copy where it has one (the memory store, the near-cache): the
    /// request clones the fields only to replay its own writes into them.
    Live {
        token: SessionToken,
        fields: Arc<Fields>,
    },
    /// A session started in this request, to be created when the request ends.
    Started {
        token: SessionToken,
        fields: Fields,
        meta: Meta,
    },
    /// The cookie's session does not exist (expired or deleted), or it was destroyed here.
    Gone,
}

impl State {
    // After a store step that carried `sent` (the buffered writes as they were when the step
    // left), drops those still as sent: a write made while the step was in flight stays
    // buffered for the next one.
    pub(super) fn forget_sent(&mut self, sent: &Delta) {
        self.pending.forget_sent(sent);
    }

    // Whether the request's session is still the existing one `token` names (loaded or not):
    // a step that ran for it may record its outcome.
    pub(super) fn holds(&self, token: &SessionToken) -> bool {
        match &self.phase {
            Phase::Live { token: t, .. } | Phase::Unloaded { token: t } => t == token,
            _ => false,
        }
    }

    // The request's current session, if any, is to be deleted at the end of the request.
    pub(super) fn retire_current(&mut self) {
        match std::mem::replace(&mut self.phase, Phase::Gone) {
            Phase::Live { token, fields } => {
                if let Some(user) = fields.get(META_USER).and_then(|u| UserKey::from_stored(u)) {
                    self.retired_users.push((token.clone(), user));
                }
                self.to_delete.push(token);
            }
            Phase::Unloaded { token } => self.to_delete.push(token),
            // A session started and not yet created simply never exists.
            Phase::Started { .. } | Phase::Anonymous | Phase::Gone => {}
        }
        self.pending.clear();
        self.set_cookie = None;
    }

    // The session does not exist (any more). The cookie is left alone: the browser may already
    // hold a newer one from a concurrent login, which clearing would destroy; a dead token is
    // harmless and is replaced at the next login.
    pub(super) fn mark_gone(&mut self) {
        if self.flash == FlashTake::Pending {
            self.flash = FlashTake::Taken(None);
        }
        self.phase = Phase::Gone;
        self.pending.clear();
        self.set_cookie = None;
        self.rotated_from = None;
    }

    // The session ended by this request's own doing (logout, its lifetime running out, a
    // rotation that lost to a logout): gone, and the browser's cookie is cleared.
    pub(super) fn end_here(&mut self) {
        self.mark_gone();
        self.clear_cookie =
            self.cookie != CookieState::Absent && self.transport == Transport::Cookie;
    }
}

/// The value of [`META_COOKIE`] for a cookie that ends with the browser.
pub(super) const COOKIE_ENDS_WITH_BROWSER: &str = "browser";

pub(super) fn no_session() -> Error {
    Error::new(
        ErrorKind::NoSession,
        "this request has no session; start one before writing to it",
    )
}

pub(super) fn meta_of(fields: &Fields) -> Result<Meta> {
    let read = |name: &str| {
        fields
            .get(name)
            .and_then(|v| parse_millis(v))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Corrupt,
                    format!("the stored session lacks a valid {name} field"),
                )
            })
    };
    Ok(Meta {
        created_ms: read(META_CREATED)?,
        deadline_ms: read(META_DEADLINE)?,
        // An unreadable own idle timeout counts as none, as the stores read it.
        idle_ms: fields
            .get(META_IDLE)
            .and_then(|v| parse_millis(v))
            .filter(|&idle| idle > 0),
        browser_cookie: fields
            .get(META_COOKIE)
            .is_some_and(|v| v == COOKIE_ENDS_WITH_BROWSER),
        user: fields
            .get(META_USER)
            .and_then(|text| UserKey::from_stored(text)),
    })
}
