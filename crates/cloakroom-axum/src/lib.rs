//! tower layer and axum integration for cloakroom sessions.
//!
//! [`SessionLayer`] gives every request a lazily loaded [`Session`] (an axum extractor) and, when
//! the handler has returned, writes the session's delta once, sets or clears the cookie only
//! when needed, and marks responses that used the session `Cache-Control: no-store` and
//! `Vary: Cookie`. Store failures become a [`SessionRejection`]: a 503 with a short generic body
//! and a log line, never backend text in the body, never a panic.

mod layer;
mod rejection;

pub use crate::layer::{SessionLayer, SessionService};
pub use crate::rejection::SessionRejection;
pub use cloakroom_core::Session;
