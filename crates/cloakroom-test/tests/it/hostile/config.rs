//! Contradictory or unsafe configuration, refused when the manager (and so the layer and the
//! app) is built, not discovered later through cookies that browsers silently drop.
//!
//! Expected outcome: a `Config` error whose message names the problem.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::ensure;
use cloakroom_core::{
    CookieSigner, ErrorKind, MemoryStore, SameSite, SessionConfig, SessionLimits, SessionManager,
};

use super::SECRET;

/// Fails unless building a manager from `config` is refused with a `Config` error mentioning
/// `says`.
fn refused(config: cloakroom_core::Result<SessionConfig>, says: &str) -> anyhow::Result<()> {
    let built = config.and_then(|c| SessionManager::new(Arc::new(MemoryStore::new()), c));
    match built {
        Err(e) if e.kind() == ErrorKind::Config => {
            ensure!(e.to_string().contains(says), "{e} (expected {says:?})");
        }
        other => anyhow::bail!("expected a Config error, got {other:?}"),
    }
    Ok(())
}

fn base() -> cloakroom_core::Result<SessionConfig> {
    SessionConfig::new(SECRET)
}

#[test]
fn same_site_none_without_secure() -> anyhow::Result<()> {
    let config = base().map(|c| {
        c.with_secure(false)
            .with_cookie_name("sid")
            .with_same_site(SameSite::None)
    });
    refused(config, "SameSite=None requires a Secure cookie")
}

#[test]
fn host_prefix_with_a_domain() -> anyhow::Result<()> {
    let config = base().map(|c| c.with_cookie_name("__Host-sid").with_domain("example.com"));
    refused(config, "__Host-")
}

#[test]
fn host_prefix_with_a_path_below_the_root() -> anyhow::Result<()> {
    let config = base().map(|c| c.with_cookie_name("__Host-sid").with_path("/app"));
    refused(config, "__Host-")
}

#[test]
fn host_prefix_without_secure() -> anyhow::Result<()> {
    let config = base().map(|c| c.with_cookie_name("__Host-sid").with_secure(false));
    refused(config, "__Host-")
}

#[test]
fn secure_prefix_without_secure() -> anyhow::Result<()> {
    let config = base().map(|c| c.with_cookie_name("__Secure-sid").with_secure(false));
    refused(config, "__Secure-")
}

#[test]
fn a_cookie_name_with_separators() -> anyhow::Result<()> {
    for name in [
        "a;b",
        "a=b",
        "a b",
        "a,b",
        "a\"b",
        "sid\r\nSet-Cookie: x",
        "séance",
    ] {
        let config = base().map(|c| c.with_cookie_name(name));
        refused(config, "HTTP token")?;
    }
    Ok(())
}

#[test]
fn an_empty_cookie_name() -> anyhow::Result<()> {
    refused(base().map(|c| c.with_cookie_name("")), "HTTP token")
}

#[test]
fn a_domain_that_smuggles_attributes() -> anyhow::Result<()> {
    let config = base().map(|c| {
        c.with_cookie_name("sid")
            .with_domain("example.com; SameSite=None")
    });
    refused(config, "host name")
}

#[test]
fn a_path_that_smuggles_attributes() -> anyhow::Result<()> {
    let config = base().map(|c| {
        c.with_cookie_name("sid")
            .with_path("/; Domain=evil.example")
    });
    refused(config, "path")
}

#[test]
fn a_secret_shorter_than_32_bytes() -> anyhow::Result<()> {
    refused(SessionConfig::new(b"password123"), "at least 32")
}

#[test]
fn a_zero_idle_timeout() -> anyhow::Result<()> {
    refused(
        base().map(|c| c.with_idle_timeout(Duration::ZERO)),
        "at least one millisecond",
    )
}

#[test]
fn a_timeout_of_a_century() -> anyhow::Result<()> {
    let century = Duration::from_secs(100 * 365 * 86_400);
    refused(
        base().map(|c| c.with_absolute_timeout(century)),
        "at most ten years",
    )
}

#[test]
fn more_previous_keys_than_kept() -> anyhow::Result<()> {
    let retire = SystemTime::now() + Duration::from_secs(3600);
    let config = (0..=CookieSigner::MAX_PREVIOUS_KEYS).try_fold(base()?, |c, i| {
        c.with_previous_secret(
            format!("previous-secret-number-{i}-0123456789abcdef"),
            retire,
        )
    });
    refused(config, "previous secret keys")
}

#[test]
fn a_value_limit_above_the_session_limit() -> anyhow::Result<()> {
    let limits = SessionLimits::default()
        .with_max_value_bytes(2048)
        .with_max_session_bytes(1024);
    refused(base().map(|c| c.with_limits(limits)), "session limits")
}
