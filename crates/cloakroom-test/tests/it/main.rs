//! Store-level tests: the conformance suite over every store, and store-specific checks.

mod cluster;
mod credentials;
mod eviction;
mod failed_saves;
mod failover;
mod flash;
mod foreign_store;
mod future_sizes;
mod header_sessions;
mod held;
mod hooks;
mod hostile;
mod in_flight;
mod index_races;
mod lifetime;
mod memory;
mod metrics;
mod near_cache;
mod redis;
mod sentinel;
mod session;
mod session_cap;
mod tls;
mod users;
