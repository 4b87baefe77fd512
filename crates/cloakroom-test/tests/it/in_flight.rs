//! Buffered writes are synchronous, so a handler can make one while another of its futures
//! waits for the store. Each test holds a store step in flight, makes a synchronous write, and
//! checks that neither the write nor the step's outcome is lost or misapplied, over the memory
//! store and Redis.

use std::sync::Arc;

use anyhow::{Context, ensure};
use cloakroom_core::adapter;
use cloakroom_core::store::Store;
use cloakroom_core::{SessionConfig, SessionManager};
use cloakroom_test::StoreFixture;
use cloakroom_test::requests::{login, request, returned_cookie, token_of};

use crate::held::{Held, Hold, joined};

const SECRET: &[u8] = b"in-flight-secret-0123456789abcdef0123456789";

cloakroom_test::test_over_memory_and_redis!(
    a_write_made_while_the_session_loads_is_kept,
    a_login_made_while_the_session_loads_is_not_overwritten,
    a_write_made_while_a_login_is_created_is_saved,
    a_logout_made_while_a_login_is_created_leaves_no_session,
    a_write_carried_by_a_load_and_then_changed_keeps_the_change,
    a_logout_made_while_the_session_loads_ends_it,
    a_second_login_made_while_the_first_is_created_is_the_one_kept,
    a_user_bound_while_the_login_is_created_is_in_the_index,
);

fn manager(held: &Arc<Held>) -> anyhow::Result<SessionManager> {
    Ok(SessionManager::new(
        held.clone(),
        SessionConfig::new(SECRET)?,
    )?)
}

async fn a_write_made_while_the_session_loads_is_kept(f: StoreFixture) -> anyhow::Result<()> {
    let held = Held::new(f.store.clone());
    let m = manager(&held)?;
    let cookie = login(&m, "ann").await?;
    let s = request(&m, &cookie);
    let reading = {
        let s = s.clone();
        held.in_flight(
            Hold::Apply,
            async move { s.get::<String>("username").await },
        )
    }
    .await;
    // The load is in flight; the write neither waits for it nor is lost by it.
    s.insert("theme", "dark")?;
    ensure!(s.get::<String>("theme").await? == Some("dark".into()));
    held.let_go();
    ensure!(
        joined(reading).await?? == Some("ann".into()),
        "the load lost its outcome"
    );
    ensure!(s.get::<String>("theme").await? == Some("dark".into()));
    adapter::finish(&s).await?;
    let later = request(&m, &cookie);
    ensure!(
        later.get::<String>("theme").await? == Some("dark".into()),
        "the write was lost"
    );
    ensure!(later.get::<String>("username").await? == Some("ann".into()));
    Ok(())
}

async fn a_login_made_while_the_session_loads_is_not_overwritten(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let held = Held::new(f.store.clone());
    let m = manager(&held)?;
    let old = login(&m, "ann").await?;
    let s = request(&m, &old);
    let checking = {
        let s = s.clone();
        held.in_flight(Hold::Apply, async move { s.exists().await })
    }
    .await;
    s.start()?;
    s.insert("username", "bob")?;
    held.let_go();
    ensure!(joined(checking).await??, "the started session is not seen");
    let fresh =
        returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no login cookie")?;
    ensure!(
        request(&m, &fresh).get::<String>("username").await? == Some("bob".into()),
        "the load overwrote the login"
    );
    ensure!(
        !request(&m, &old).exists().await?,
        "the old session survived the login"
    );
    Ok(())
}

async fn a_write_made_while_a_login_is_created_is_saved(f: StoreFixture) -> anyhow::Result<()> {
    let held = Held::new(f.store.clone());
    let m = manager(&held)?;
    let s = adapter::session_from_cookie_headers(&m, []);
    s.start()?;
    s.insert("a", 1)?;
    let finishing = {
        let s = s.clone();
        held.in_flight(Hold::Create, async move { adapter::finish(&s).await })
    }
    .await;
    s.insert("b", 2)?;
    s.remove("a")?;
    held.let_go();
    let cookie =
        returned_cookie(&joined(finishing).await??.set_cookie).context("no login cookie")?;
    let later = request(&m, &cookie);
    ensure!(
        later.get::<i64>("b").await? == Some(2),
        "the write made during the create was lost"
    );
    ensure!(
        later.get::<i64>("a").await?.is_none(),
        "the removal made during the create was lost"
    );
    Ok(())
}

async fn a_logout_made_while_a_login_is_created_leaves_no_session(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let held = Held::new(f.store.clone());
    let m = manager(&held)?;
    let s = adapter::session_from_cookie_headers(&m, []);
    s.start()?;
    s.insert("username", "ann")?;
    let finishing = {
        let s = s.clone();
        held.in_flight(Hold::Create, async move { adapter::finish(&s).await })
    }
    .await;
    s.destroy();
    held.let_go();
    let finished = joined(finishing).await??;
    ensure!(finished.set_cookie.is_none(), "{:?}", finished.set_cookie);
    let created = held.created();
    ensure!(created.len() == 1, "{} sessions created", created.len());
    let now = cloakroom_test::conformance::now_ms();
    ensure!(
        f.store.peek(&created[0], now).await?.is_none(),
        "the session created before the logout outlived it"
    );
    Ok(())
}

async fn a_write_carried_by_a_load_and_then_changed_keeps_the_change(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let held = Held::new(f.store.clone());
    let m = manager(&held)?;
    let cookie = login(&m, "ann").await?;
    let s = request(&m, &cookie);
    // The load carries theme=light; theme=dark is written while it is in flight.
    s.insert("theme", "light")?;
    let reading = {
        let s = s.clone();
        held.in_flight(
            Hold::Apply,
            async move { s.get::<String>("username").await },
        )
    }
    .await;
    s.insert("theme", "dark")?;
    held.let_go();
    ensure!(joined(reading).await?? == Some("ann".into()));
    ensure!(s.get::<String>("theme").await? == Some("dark".into()));
    adapter::finish(&s).await?;
    let stored = request(&m, &cookie).get::<String>("theme").await?;
    ensure!(
        stored == Some("dark".into()),
        "the later write was lost: {stored:?}"
    );
    Ok(())
}

async fn a_logout_made_while_the_session_loads_ends_it(f: StoreFixture) -> anyhow::Result<()> {
    let held = Held::new(f.store.clone());
    let m = manager(&held)?;
    let cookie = login(&m, "ann").await?;
    let s = request(&m, &cookie);
    let checking = {
        let s = s.clone();
        held.in_flight(Hold::Apply, async move { s.exists().await })
    }
    .await;
    s.destroy();
    held.let_go();
    ensure!(
        !joined(checking).await??,
        "the load brought the session back"
    );
    let finished = adapter::finish(&s).await?;
    ensure!(
        finished
            .set_cookie
            .as_ref()
            .is_some_and(|c| c.header_value().contains("Max-Age=0")),
        "the cookie was not cleared"
    );
    ensure!(
        !request(&m, &cookie).exists().await?,
        "the logout did not end the session"
    );
    Ok(())
}

async fn a_second_login_made_while_the_first_is_created_is_the_one_kept(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let held = Held::new(f.store.clone());
    let m = manager(&held)?;
    let s = adapter::session_from_cookie_headers(&m, []);
    s.start()?;
    s.insert("username", "ann")?;
    let finishing = {
        let s = s.clone();
        held.in_flight(Hold::Create, async move { adapter::finish(&s).await })
    }
    .await;
    s.start()?;
    s.insert("username", "bob")?;
    held.let_go();
    let cookie = returned_cookie(&joined(finishing).await??.set_cookie)
        .context("the second login set no cookie")?;
    ensure!(
        !adapter::has_unsaved_changes(&s),
        "the second login was left unsaved"
    );
    ensure!(request(&m, &cookie).get::<String>("username").await? == Some("bob".into()));
    let created = held.created();
    let now = cloakroom_test::conformance::now_ms();
    let mut live = 0;
    for key in &created {
        if f.store.peek(key, now).await?.is_some() {
            live += 1;
        }
    }
    ensure!(
        live == 1,
        "{live} of {} created sessions live",
        created.len()
    );
    Ok(())
}

async fn a_user_bound_while_the_login_is_created_is_in_the_index(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let held = Held::new(f.store.clone());
    let m = manager(&held)?;
    let s = adapter::session_from_cookie_headers(&m, []);
    s.start()?;
    let finishing = {
        let s = s.clone();
        held.in_flight(Hold::Create, async move { adapter::finish(&s).await })
    }
    .await;
    s.set_user("ann")?;
    held.let_go();
    let cookie = returned_cookie(&joined(finishing).await??.set_cookie).context("no cookie")?;
    let listed = m.sessions_of("ann").await?;
    ensure!(
        listed.len() == 1 && listed[0].key == token_of(&cookie)?.key(),
        "the session is not in its user's index: {listed:?}"
    );
    ensure!(m.end_sessions_of("ann").await? == 1);
    ensure!(!request(&m, &cookie).exists().await?, "the session escaped");
    Ok(())
}
