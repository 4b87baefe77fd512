//! The axum (and any tower) integration, behind the `axum` feature.
//!
//! [`SessionLayer`] gives every request a lazily loaded [`Session`](crate::Session), which
//! handlers take as an extractor, and, when the handler has returned, writes the session's delta
//! once, sets or clears the cookie only when needed, and marks responses that used the session
//! `Cache-Control: no-store` and `Vary: Cookie`. [`Error`](crate::Error) is a response: a handler
//! returns `Result<_, cloakroom::Error>` and uses `?` on session calls; the client gets a status
//! and a generic body, never the error's text.

mod extract;
mod layer;
mod response;

pub use self::extract::MissingSessionLayer;
pub use self::layer::{SessionLayer, SessionLayerBuilder, SessionService};
