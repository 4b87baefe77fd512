//! Token text is canonical: whatever parses prints back to exactly the same text.
#![no_main]

use cloakroom_core::SessionToken;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Some(token) = SessionToken::parse(text) {
        assert_eq!(token.to_text(), text);
    }
});
