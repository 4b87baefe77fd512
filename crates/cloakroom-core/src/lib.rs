//! Core of cloakroom: server-side sessions for Rust web apps.
//!
//! Most users depend on the `cloakroom` crate, which re-exports this one together with the
//! HTTP layer and, behind a feature, the Redis store. This crate holds what every part shares:
//!
//! * [`SessionToken`] and [`SessionKey`]: 256-bit tokens from the OS CSPRNG, and the SHA-256
//!   hash of a token that names the session in the store;
//! * [`CookieSigner`]: HMAC-SHA256 signed cookie values, checked before any store access;
//! * [`Store`]: the storage contract, one atomic single-key step per call;
//! * [`MemoryStore`]: the embedded, bounded, expiring default store;
//! * [`Session`] and [`SessionManager`]: the per-request handle that records a delta of changed
//!   fields and writes only that.
//!
//! [`adapter`] is what a framework integration needs: the request's session from its cookies,
//! and the end of the request.
//!
//! The `actix` feature adds the `actix` module: `SessionMiddleware` for actix-web, which makes
//! [`Session`] an actix-web extractor and [`Error`] a `ResponseError`.
//!
//! The `axum` feature adds `SessionLayer`, the tower layer that gives each request its
//! [`Session`], makes [`Session`] an axum extractor and [`Error`] an axum response.

#[cfg(feature = "actix")]
pub mod actix;
pub mod adapter;
#[cfg(feature = "axum")]
mod axum;
mod builder;
mod clock;
mod config;
pub mod cookies;
mod delta;
mod error;
mod hooks;
mod lifetime;
mod memory;
pub mod metrics;
mod observed;
mod session;
mod signing;
pub mod store;
mod token;
mod users;

#[cfg(feature = "axum")]
pub use crate::axum::{MissingSessionLayer, SessionLayer, SessionLayerBuilder, SessionService};
pub use crate::builder::SessionBuilder;
pub use crate::clock::{Clock, LATEST_MILLIS, ManualClock, SystemClock};
pub use crate::config::{CapPolicy, SameSite, SessionConfig, SessionLimits};
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::hooks::{EndReason, SessionEvent, SessionHooks};
pub use crate::lifetime::Lifetime;
pub use crate::memory::{MemoryStore, MemoryStoreBuilder};
pub use crate::metrics::SessionMetrics;
pub use crate::session::{CookieState, FLASH_FIELD, Flash, Inspection, Session, SessionManager};
pub use crate::signing::CookieSigner;
pub use crate::store::Store;
pub use crate::token::{SessionKey, SessionToken};
pub use crate::users::{IndexEntry, UserKey, UserSession};
