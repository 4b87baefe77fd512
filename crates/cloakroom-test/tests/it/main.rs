//! Store-level tests: the conformance suite over every store, and store-specific checks.

mod cluster;
mod memory;
mod redis;
mod session;
mod tls;
