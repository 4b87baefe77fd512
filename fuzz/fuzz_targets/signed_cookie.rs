//! Signed cookie values: only exactly what the signer wrote verifies, under the current key or a
//! live previous one; a retired key's values never do.
#![no_main]

use std::sync::OnceLock;

use cloakroom_core::CookieSigner;
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_800_000_000_000;

fn signers() -> &'static (CookieSigner, CookieSigner, CookieSigner) {
    static SIGNERS: OnceLock<(CookieSigner, CookieSigner, CookieSigner)> = OnceLock::new();
    SIGNERS.get_or_init(|| {
        let new = |byte| CookieSigner::new(&[byte; 32]).unwrap_or_else(|_| unreachable!());
        let mut rotated = new(1);
        rotated
            .add_previous(&[2; 32], NOW + 1)
            .unwrap_or_else(|_| unreachable!());
        rotated
            .add_previous(&[3; 32], NOW)
            .unwrap_or_else(|_| unreachable!()); // retired
        (rotated, new(2), new(3))
    })
}

fuzz_target!(|value: &str| {
    let (rotated, previous, retired) = signers();
    if let Some(token) = rotated.verify(value, NOW) {
        assert!(value == rotated.sign(&token) || value == previous.sign(&token));
        assert!(value != retired.sign(&token));
    }
});
