//! The hostile-input suite: the bad input a session layer meets, one named test per input, each
//! asserting its expected outcome, over the memory store and a real redis-server (over Redis
//! alone where the input can only exist there). The same inputs at the HTTP level, through the
//! layer, are in the demo's `hostile` tests.
//!
//! Outcomes: a bad cookie is treated as no cookie, with no store access at all; a replayed token
//! costs one lookup that finds nothing, and nothing is created; bad data in the store is a typed
//! error or is ignored, and is left as it was; a write past a limit is a typed error that
//! writes nothing; a contradictory configuration is refused at start-up.
//!
//! Run with `cargo test -p cloakroom-test --test it hostile`.

mod clock;
mod config;
mod cookies;
mod records;
mod replays;
mod values;

use std::sync::Arc;

use cloakroom_core::{ErrorKind, SessionConfig, SessionManager, Store};
use cloakroom_test::{CallCounts, CountingStore};

pub(crate) const SECRET: &[u8] = b"hostile-input-secret-0123456789abcdef0123";

/// A manager over `store` whose store calls are counted.
pub(crate) fn counted(
    store: Arc<dyn Store>,
    config: SessionConfig,
) -> anyhow::Result<(SessionManager, Arc<CallCounts>)> {
    let counting = CountingStore::new(store);
    let counts = counting.counts();
    Ok((SessionManager::new(Arc::new(counting), config)?, counts))
}

/// Fails unless `result` is an error of `kind`.
pub(crate) fn ensure_kind<T: std::fmt::Debug>(
    result: cloakroom_core::Result<T>,
    kind: ErrorKind,
) -> anyhow::Result<()> {
    match result {
        Err(e) if e.kind() == kind => Ok(()),
        other => anyhow::bail!("expected {kind:?}, got {other:?}"),
    }
}
