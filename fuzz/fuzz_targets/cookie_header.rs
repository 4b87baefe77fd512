//! Any `Cookie` header: turning it into a session handle never panics and never touches the
//! store, and only a header holding exactly one validly signed cookie of our name is `Valid`.
#![no_main]

use std::sync::{Arc, OnceLock};

use cloakroom_core::{CookieState, MemoryStore, SessionConfig, SessionManager};
use libfuzzer_sys::fuzz_target;

fn manager() -> &'static SessionManager {
    static MANAGER: OnceLock<SessionManager> = OnceLock::new();
    MANAGER.get_or_init(|| {
        let config = SessionConfig::new([7u8; 32]).unwrap_or_else(|_| unreachable!());
        SessionManager::new(Arc::new(MemoryStore::new()), config).unwrap_or_else(|_| unreachable!())
    })
}

fuzz_target!(|headers: Vec<&str>| {
    let manager = manager();
    let session = manager.session_from_cookie_headers(headers.iter().copied());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|_| unreachable!());
    let state = runtime.block_on(session.cookie_state());
    if state == CookieState::Valid {
        // A random header can only be valid by containing our cookie name.
        assert!(
            headers
                .iter()
                .any(|h| h.contains(manager.config().cookie_name()))
        );
    }
});
