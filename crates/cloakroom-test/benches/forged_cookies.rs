//! What a forged cookie costs: the time to reject one, and proof that it never reaches the
//! store. Run with `cargo bench -p cloakroom-test --bench forged_cookies`.
//!
//! Each case turns a `Cookie` header into a session handle, as the layer does for every
//! request, and asks what the cookie said. Rejection happens there, before any store access; the
//! counting store below shows that none happened.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cloakroom_core::adapter;
use cloakroom_core::{
    CookieState, MemoryStore, SessionConfig, SessionManager, SessionToken, Store,
};
use cloakroom_test::CountingStore;

const ROUNDS: u32 = 200_000;

fn per_call(manager: &SessionManager, header: &str, expected: CookieState) -> anyhow::Result<f64> {
    // Warm up, then time.
    for _ in 0..ROUNDS / 10 {
        black_box(adapter::session_from_cookie_headers(
            manager,
            [black_box(header.as_bytes())],
        ));
    }
    let started = Instant::now();
    for _ in 0..ROUNDS {
        black_box(adapter::session_from_cookie_headers(
            manager,
            [black_box(header.as_bytes())],
        ));
    }
    let nanos = started.elapsed().as_nanos() as f64 / f64::from(ROUNDS);
    let state = adapter::session_from_cookie_headers(manager, [header.as_bytes()]).cookie_state();
    anyhow::ensure!(state == expected, "{header:.40}: {state:?}");
    Ok(nanos)
}

fn main() -> anyhow::Result<()> {
    let counting = CountingStore::new(Arc::new(MemoryStore::new()));
    let counts = counting.counts();
    let store: Arc<dyn Store> = Arc::new(counting);
    let secret = b"bench-secret-0123456789abcdef0123456789abcdef";
    let later = SystemTime::now() + Duration::from_secs(3600);
    let config = SessionConfig::new(secret)?;
    let rotated = SessionConfig::new(b"bench-next-secret-0123456789abcdef0123456789")?
        .with_previous_secret(b"bench-old-secret-1-0123456789abcdef0123456789", later)?
        .with_previous_secret(b"bench-old-secret-2-0123456789abcdef0123456789", later)?;
    let manager = SessionManager::new(store.clone(), config)?;
    let rotated = SessionManager::new(store, rotated)?;

    let name = manager.config().cookie_name().to_owned();
    let signer = cloakroom_core::CookieSigner::new(secret)?;
    let valid = signer.sign(&SessionToken::generate()?);
    let wrong_signature = format!("{}{}", &valid[..44], "A".repeat(43));
    let cases = [
        (
            "garbage (wrong length)",
            format!("{name}=garbage"),
            CookieState::Invalid,
            &manager,
        ),
        (
            "10 KB value",
            format!("{name}={}", "A".repeat(10_000)),
            CookieState::Invalid,
            &manager,
        ),
        (
            "well-formed, wrong signature (1 key)",
            format!("{name}={wrong_signature}"),
            CookieState::Invalid,
            &manager,
        ),
        (
            "well-formed, wrong signature (3 keys)",
            format!("{name}={wrong_signature}"),
            CookieState::Invalid,
            &rotated,
        ),
        (
            "valid cookie, for comparison",
            format!("{name}={valid}"),
            CookieState::Valid,
            &manager,
        ),
    ];
    println!(
        "machine: {} cores; {ROUNDS} rejections per case",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| cookie | ns per request |");
    println!("|---|---:|");
    for (what, header, expected, manager) in cases {
        let nanos = per_call(manager, &header, expected)?;
        println!("| {what} | {nanos:.0} |");
    }
    anyhow::ensure!(counts.total() == 0, "a cookie reached the store");
    println!("store calls during the run: {}", counts.total());
    Ok(())
}
