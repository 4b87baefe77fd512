//! The conformance suite over `rediss://` (a TLS-only redis-server with a private CA), and what
//! happens when TLS is misconfigured: a clear error, never a fallback.

use anyhow::{Context, ensure};
use cloakroom_core::ErrorKind;
use cloakroom_redis::RedisStore;
use cloakroom_test::{RedisServer, redis_tls_fixture};

cloakroom_test::store_conformance!(redis_tls_fixture());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_an_unknown_ca_is_refused() -> anyhow::Result<()> {
    let server = RedisServer::spawn_tls()?;
    let other = RedisServer::spawn_tls()?;
    // Trusting another CA, and trusting only the system's roots: both must fail.
    let wrong_ca = RedisStore::builder(server.url())
        .with_root_certificate_pem(other.ca_certificate_pem()?)
        .with_connect_timeout(std::time::Duration::from_secs(10))
        .connect()
        .await;
    let err = wrong_ca.err().context("connected with the wrong CA")?;
    let text = format!("{err:?}").to_lowercase();
    ensure!(
        text.contains("certificate"),
        "the error does not name the cause: {text}"
    );
    let not_a_certificate = RedisStore::builder(server.url())
        .with_root_certificate_pem(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec(),
        )
        .connect()
        .await;
    let kind = not_a_certificate.err().map(|e| e.kind());
    ensure!(
        kind == Some(ErrorKind::Config),
        "a CA file without a certificate: {kind:?}"
    );
    let system_roots = RedisStore::connect(server.url()).await;
    ensure!(
        system_roots.is_err(),
        "a private CA was trusted without being configured"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_to_a_tls_port_fails_instead_of_falling_back() -> anyhow::Result<()> {
    let server = RedisServer::spawn_tls()?;
    let plain = format!("redis://127.0.0.1:{}", server.port());
    let result = RedisStore::connect(plain).await;
    ensure!(
        result.is_err(),
        "a plain-text connection to a TLS port succeeded"
    );
    let with_ca_on_plain_url = RedisStore::builder(format!("redis://127.0.0.1:{}", server.port()))
        .with_root_certificate_pem(server.ca_certificate_pem()?)
        .connect()
        .await;
    let kind = with_ca_on_plain_url.err().map(|e| e.kind());
    ensure!(kind == Some(ErrorKind::Config), "{kind:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_checks_are_off_only_when_the_code_says_so() -> anyhow::Result<()> {
    let server = RedisServer::spawn_tls()?;
    // A URL that asks to skip checks is configuration travelling through environments: refused.
    let insecure_url = format!("{}/#insecure", server.url());
    let err = RedisStore::connect(insecure_url.as_str())
        .await
        .err()
        .context("an #insecure URL was accepted")?;
    ensure!(err.kind() == ErrorKind::Config, "#insecure URL: {err:?}");
    ensure!(err.to_string().contains("#insecure"), "{err}");
    // The explicit opt-out connects to a server no configured CA vouches for.
    let store = RedisStore::builder(server.url())
        .danger_accept_invalid_certificates()
        .connect()
        .await?;
    let key = cloakroom_core::SessionToken::generate()?.key();
    cloakroom_core::store::Store::create(
        &store,
        &key,
        &cloakroom_test::conformance::new_session(&[], 60_000, 3_600_000),
    )
    .await?;
    // ...and contradicts a CA certificate...
    let both = RedisStore::builder(server.url())
        .with_root_certificate_pem(server.ca_certificate_pem()?)
        .danger_accept_invalid_certificates()
        .connect()
        .await;
    ensure!(both.err().map(|e| e.kind()) == Some(ErrorKind::Config));
    // ...and makes no sense on a plain URL.
    let plain = RedisStore::builder(format!("redis://127.0.0.1:{}", server.port()))
        .danger_accept_invalid_certificates()
        .connect()
        .await;
    ensure!(plain.err().map(|e| e.kind()) == Some(ErrorKind::Config));
    Ok(())
}
