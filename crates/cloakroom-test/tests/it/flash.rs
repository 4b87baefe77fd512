//! Flash messages over every store: set in one request, shown once in the next, read and
//! removed by the step the request makes anyway (store calls counted).

use std::sync::Arc;

use anyhow::{Context, ensure};
use cloakroom_core::adapter;
use cloakroom_core::{SessionConfig, SessionManager};
use cloakroom_test::requests::{request, returned_cookie};
use cloakroom_test::{CallCounts, CountingStore, StoreFixture};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

cloakroom_test::test_over_each_store!(
    a_flash_is_shown_once_by_the_step_the_request_makes_anyway,
    a_flash_taken_after_a_load_is_removed_with_the_end_of_the_request,
);

async fn setup(f: &StoreFixture) -> anyhow::Result<(SessionManager, Arc<CallCounts>, String)> {
    let counting = CountingStore::new(f.store.clone());
    let counts = counting.counts();
    let m = SessionManager::new(Arc::new(counting), SessionConfig::new(SECRET)?)?;
    let s = adapter::session_from_cookie_headers(&m, []);
    s.start()?;
    s.insert("username", "ann")?;
    s.flash("Welcome, Ann.")?;
    let cookie = returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no cookie")?;
    Ok((m, counts, cookie))
}

async fn a_flash_is_shown_once_by_the_step_the_request_makes_anyway(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let (m, counts, cookie) = setup(&f).await?;
    for (visit, expected) in [(1, Some("Welcome, Ann.")), (2, None)] {
        let before = counts.total();
        let s = request(&m, &cookie);
        let flash = s.take_flash();
        ensure!(s.incr("visits", 1).await? == Some(visit));
        ensure!(s.get::<String>("username").await?.as_deref() == Some("ann"));
        let message = flash.message::<String>().await?;
        ensure!(message.as_deref() == expected, "visit {visit}: {message:?}");
        adapter::finish(&s).await?;
        ensure!(
            counts.total() - before == 1,
            "visit {visit} cost {} store calls",
            counts.total() - before
        );
    }
    // Taken with nothing else: one step reads and removes it.
    let s = adapter::session_from_cookie_headers(&m, []);
    s.start()?;
    s.flash("Saved.")?;
    let other = returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no cookie")?;
    let before = counts.total();
    let s = request(&m, &other);
    let message = s.take_flash().message::<String>().await?;
    ensure!(message.as_deref() == Some("Saved."), "{message:?}");
    adapter::finish(&s).await?;
    ensure!(counts.total() - before == 1, "{}", counts.total() - before);
    let s = request(&m, &other);
    ensure!(
        s.take_flash().message::<String>().await?.is_none(),
        "shown twice"
    );
    // No session: no message, no store access.
    let before = counts.total();
    let s = adapter::session_from_cookie_headers(&m, []);
    ensure!(s.take_flash().message::<String>().await?.is_none());
    adapter::finish(&s).await?;
    ensure!(counts.total() == before);
    Ok(())
}

async fn a_flash_taken_after_a_load_is_removed_with_the_end_of_the_request(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let (m, _, cookie) = setup(&f).await?;
    let s = request(&m, &cookie);
    ensure!(s.exists().await?);
    let message = s.take_flash().message::<String>().await?;
    ensure!(message.as_deref() == Some("Welcome, Ann."), "{message:?}");
    // Another request meanwhile may still see it; this one's end removes it.
    adapter::finish(&s).await?;
    let s = request(&m, &cookie);
    ensure!(
        s.take_flash().message::<String>().await?.is_none(),
        "shown twice"
    );
    ensure!(s.get::<String>("_flash").await?.is_none());
    // A new message set where the old one is taken survives for the next request.
    let s = request(&m, &cookie);
    let flash = s.take_flash();
    s.flash("Again.")?;
    ensure!(flash.message::<String>().await?.is_none());
    adapter::finish(&s).await?;
    let s = request(&m, &cookie);
    ensure!(s.take_flash().message::<String>().await?.as_deref() == Some("Again."));
    Ok(())
}
