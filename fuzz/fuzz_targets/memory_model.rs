//! The memory store under arbitrary operation sequences, checked against the reference model in
//! `cloakroom_test::model`: counters count exactly, and an expired or deleted session never
//! answers again.
#![no_main]

use cloakroom_core::MemoryStore;
use cloakroom_test::model::{check_against_model, steps_from_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let steps = steps_from_bytes(bytes);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|_| unreachable!());
    let store = MemoryStore::builder().with_sweep_interval(None).build();
    if let Err(disagreement) = runtime.block_on(check_against_model(&store, &steps)) {
        panic!("{disagreement}");
    }
});
