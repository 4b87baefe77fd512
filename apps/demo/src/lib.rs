//! The session-store tutorial app on cloakroom: `/`, `/login` and `/logout`, on axum
//! (`cloakroom-demo`) and on actix-web (`cloakroom-demo-actix`).
//!
//! Faithful to the tutorial's routes and texts; safe where it was not: the username is
//! HTML-escaped, the login form carries a CSRF token, the session id rotates at login, logout
//! deletes the session server-side (by `POST` from the page; `GET /logout` still works as in the
//! tutorial), and bad input gets a 4xx with a message instead of an error page.
//!
//! `/sessions` ([`account`]) lists the user's sessions and ends them.
//!
//! `/api/login`, `/api/me` and `/api/logout` ([`api`]) serve clients that carry their session in
//! `Authorization: Bearer` instead of a cookie.
//!
//! What each route answers is written once, in [`pages`] and [`api`], without a web framework;
//! [`axum_app`] and [`actix_app`] only translate requests and replies, so the two apps serve
//! the same texts, forms and headers. [`settings`] reads the environment for both binaries.

pub mod account;
pub mod actix_app;
pub mod api;
pub mod axum_app;
pub mod csrf;
pub mod logging;
pub mod metrics_endpoint;
pub mod pages;
pub mod settings;
pub mod username;

pub use crate::axum_app::app;
pub use crate::username::{MAX_USERNAME_CHARS, validate_username};

/// Largest accepted request body: a login form is tiny.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
