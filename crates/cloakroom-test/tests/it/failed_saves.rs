//! A save whose create fails: what the request retired still ends.

use anyhow::ensure;
use cloakroom_core::adapter;
use cloakroom_core::{SessionConfig, SessionManager};
use cloakroom_test::StoreFixture;
use cloakroom_test::conformance::now_ms;
use cloakroom_test::requests::{login, request, token_of};

use crate::held::Held;

const SECRET: &[u8] = b"failed-saves-secret-0123456789abcdef0123456";

cloakroom_test::test_over_memory_and_redis!(a_failed_login_still_ends_the_session_it_replaces);

async fn a_failed_login_still_ends_the_session_it_replaces(f: StoreFixture) -> anyhow::Result<()> {
    let held = Held::new(f.store.clone());
    let m = SessionManager::new(held.clone(), SessionConfig::new(SECRET)?)?;
    let cookie = login(&m, "ann").await?;
    let old = token_of(&cookie)?.key();
    // A switch of account: ann is logged out and bob's session started; its create fails.
    let s = request(&m, &cookie);
    s.destroy();
    s.start()?;
    s.insert("username", "bob")?;
    held.refuse_next_create();
    let finished = adapter::finish(&s).await;
    ensure!(finished.is_err(), "the refused create was not reported");
    ensure!(
        f.store.peek(&old, now_ms()).await?.is_none(),
        "the logged-out session outlived the failed login"
    );
    ensure!(!request(&m, &cookie).exists().await?);
    Ok(())
}
