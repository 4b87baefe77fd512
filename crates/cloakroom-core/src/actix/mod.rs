//! The actix-web integration, behind the `actix` feature.
//!
//! [`SessionMiddleware`] gives every request a lazily loaded [`Session`](crate::Session), which
//! handlers take as an extractor, and, when the handler has returned, writes the session's delta
//! once, sets or clears the cookie only when needed, and marks responses that used the session
//! `Cache-Control: no-store` and `Vary: Cookie`. [`Error`](crate::Error) is an actix-web
//! `ResponseError`: a handler returns `Result<_, cloakroom::Error>` and uses `?` on session
//! calls; the client gets a status and a generic body, never the error's text.
//!
//! It does what the axum layer does, through the same [`adapter`](crate::adapter) calls, so the
//! two cannot drift apart.

mod extract;
mod middleware;
mod response;

pub use self::extract::MissingSessionMiddleware;
pub use self::middleware::{SessionMiddleware, SessionMiddlewareBuilder, SessionMiddlewareService};
