//! Any `Cookie` header, as bytes: turning it into a session handle never panics and never
//! touches the store, and only a header holding exactly one validly signed cookie of our name is
//! `Valid`. A valid cookie stays valid whatever neighbours (any bytes, UTF-8 or not) share its
//! header.
#![no_main]

use std::sync::{Arc, OnceLock};

use cloakroom_core::adapter;
use cloakroom_core::{CookieState, MemoryStore, SessionConfig, SessionManager};
use libfuzzer_sys::fuzz_target;

fn manager() -> &'static SessionManager {
    static MANAGER: OnceLock<SessionManager> = OnceLock::new();
    MANAGER.get_or_init(|| {
        let config = SessionConfig::new([7u8; 32]).unwrap_or_else(|_| unreachable!());
        SessionManager::new(Arc::new(MemoryStore::new()), config).unwrap_or_else(|_| unreachable!())
    })
}

// One validly signed cookie pair of our name, made once.
fn valid_pair() -> &'static Vec<u8> {
    static PAIR: OnceLock<Vec<u8>> = OnceLock::new();
    PAIR.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|_| unreachable!());
        let session = adapter::session_from_cookie_headers(manager(), []);
        let finished = runtime.block_on(async {
            session.start()?;
            adapter::finish(&session).await
        });
        let set_cookie = finished
            .ok()
            .and_then(|f| f.set_cookie)
            .unwrap_or_else(|| unreachable!());
        format!("{}={}", set_cookie.name(), set_cookie.value()).into_bytes()
    })
}

fn state_of(headers: &[&[u8]]) -> CookieState {
    adapter::session_from_cookie_headers(manager(), headers.iter().copied()).cookie_state()
}

fuzz_target!(|input: (Vec<&[u8]>, Vec<u8>)| {
    let (headers, neighbours) = input;
    let name = manager().config().cookie_name().as_bytes();
    if state_of(&headers) == CookieState::Valid {
        // A random header can only be valid by containing our cookie name.
        assert!(
            headers
                .iter()
                .any(|h| h.windows(name.len()).any(|w| w == name))
        );
    }
    // Our valid cookie beside arbitrary neighbours (split into pairs by `;` and never naming our
    // cookie) is still found and accepted.
    if neighbours.windows(name.len()).any(|w| w == name) {
        return;
    }
    let mut header = neighbours.clone();
    header.extend_from_slice(b"; ");
    header.extend_from_slice(valid_pair());
    header.extend_from_slice(b"; ");
    header.extend_from_slice(&neighbours);
    assert_eq!(state_of(&[&header]), CookieState::Valid);
});
