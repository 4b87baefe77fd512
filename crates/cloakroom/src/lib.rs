//! Server-side sessions for Rust web apps, kept in Redis, Valkey, Amazon ElastiCache or in
//! process memory.
//!
//! The browser holds a ticket (a signed random token in a cookie); the cloakroom keeps the coat
//! (the session's fields). A session is one Redis HASH; handlers change fields one by one and
//! only those changes are written, so concurrent requests never undo each other, and counters
//! are incremented atomically in the store.
//!
//! # Quick start
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use cloakroom::{MemoryStore, Session, SessionLayer};
//!
//! async fn index(session: Session) -> Result<String, cloakroom::Error> {
//!     // One round trip: increments, slides the TTL and loads the session.
//!     match session.incr("visits", 1).await? {
//!         Some(visits) => {
//!             let name: Option<String> = session.get("username").await?;
//!             Ok(format!("{} visited {visits} times", name.unwrap_or_default()))
//!         }
//!         None => Ok("not logged in".to_owned()),
//!     }
//! }
//!
//! async fn login(session: Session) -> Result<&'static str, cloakroom::Error> {
//!     session.start()?; // fresh token; any previous session is deleted
//!     session.insert("username", "alice")?;
//!     Ok("welcome")
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = SessionLayer::builder(MemoryStore::new(), std::env::var("SECRET_KEY")?).build()?;
//! let app: Router = Router::new()
//!     .route("/", get(index))
//!     .route("/login", get(login))
//!     .layer(layer);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! With the `redis` feature, use `cloakroom::redis::RedisStore::connect("redis://...")` instead
//! of the memory store.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | [`SessionLayer`], the [`Session`] extractor, [`Error`] as a response |
//! | `actix` | no | [`actix::SessionMiddleware`] for actix-web, the [`Session`] extractor, [`Error`] as a `ResponseError` |
//! | `redis` | no | [`redis::RedisStore`] for Redis, Valkey and ElastiCache (standalone, cluster, Sentinel) |
//! | `iam` | no | `redis::ElastiCacheIam`: ElastiCache IAM authentication (implies `redis`) |
//!
//! # Guarantees
//!
//! * Tokens are 256 bits from the OS CSPRNG; the store sees only their SHA-256 hash.
//! * Cookies are signed; a cookie that does not verify is treated as absent without any store
//!   access. An unknown token is never adopted: new sessions always get fresh tokens.
//! * Idle timeout (slid by every access) and absolute lifetime are enforced together; an expired
//!   or deleted session is never resurrected by a write.
//! * Each store operation touches one key, in one round trip (a plain load that finds a touch
//!   due on Redis: two, at most once per touch interval).

// What a handler and an application's set-up use, at the root; the rest under the module that
// owns it.
pub use cloakroom_core::{
    CapPolicy, CookieState, EndReason, Error, ErrorKind, FLASH_FIELD, Flash, Inspection, Lifetime,
    MemoryStore, MemoryStoreBuilder, Result, SameSite, Session, SessionConfig, SessionEvent,
    SessionHooks, SessionKey, SessionLimits, SessionManager, SessionMetrics, SessionToken, Store,
    UserKey, UserSession,
};
#[cfg(feature = "axum")]
pub use cloakroom_core::{MissingSessionLayer, SessionLayer, SessionLayerBuilder, SessionService};

pub use cloakroom_core::{SessionBuilder, adapter, cookies, metrics, store};

/// The actix-web integration (feature `actix`): [`SessionMiddleware`](actix::SessionMiddleware)
/// gives each request its [`Session`], which handlers take as an extractor.
#[cfg(feature = "actix")]
pub mod actix {
    pub use cloakroom_core::actix::*;
}

/// Time: the clock sessions are timed by, and a manual one for tests.
pub mod clock {
    pub use cloakroom_core::{Clock, LATEST_MILLIS, ManualClock, SystemClock};
}

/// Signed cookie values (the signer's bounds are its associated constants, such as
/// `CookieSigner::MIN_SECRET_LEN`).
pub mod signing {
    pub use cloakroom_core::CookieSigner;
}

/// The per-user index, for stores and tools that read it.
pub mod users {
    pub use cloakroom_core::{IndexEntry, UserKey, UserSession};
}

/// The Redis store (feature `redis`).
#[cfg(feature = "redis")]
pub mod redis {
    pub use cloakroom_redis::*;
}

// The README's example is compiled with the doc tests, so it cannot drift from the API.
#[cfg(all(doctest, feature = "redis", feature = "actix"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
