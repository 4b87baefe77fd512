//! The per-user index through the handle, over every store: log out everywhere, end my other
//! sessions, see my sessions and end one of them (ASVS 4.0.3 3.3.3 and 3.3.4; 5.0 7.4.2, 7.4.3
//! and 7.5.2).

use std::sync::Arc;

use anyhow::{Context, ensure};
use cloakroom_core::adapter;
use cloakroom_core::store::META_USER;
use cloakroom_core::{ErrorKind, SessionConfig, SessionManager, SessionToken, Store, UserKey};
use cloakroom_test::StoreFixture;
use cloakroom_test::conformance::{new_session, now_ms};
use cloakroom_test::requests::{login, request, returned_cookie, token_of};

const SECRET: &[u8] = b"per-user-index-secret-0123456789abcdef012";

cloakroom_test::test_over_each_store!(
    logging_out_everywhere_ends_every_session_of_the_user,
    ending_other_sessions_keeps_the_current_one,
    a_user_sees_their_sessions_and_ends_one,
    the_index_follows_rotation_and_logout,
    a_user_is_bound_only_to_a_session_started_in_the_request,
    a_login_racing_log_out_everywhere_stays_listed,
    a_broken_record_does_not_hide_the_other_sessions,
    the_handle_names_its_session_and_user_for_a_sessions_page,
);

async fn the_handle_names_its_session_and_user_for_a_sessions_page(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let phone = login_as(&m, "ann", "phone").await?;
    let laptop = login_as(&m, "ann", "laptop").await?;
    let s = request(&m, &phone);
    let key = s.key().await?.context("no key")?;
    ensure!(key == token_of(&phone)?.key());
    ensure!(s.user().await? == Some(UserKey::of("ann")));
    // The page lists both sessions and marks this one.
    let listed = s.manager().sessions_of("ann").await?;
    ensure!(listed.len() == 2);
    ensure!(listed.iter().filter(|l| l.key == key).count() == 1);
    // Ending the other one from here.
    let other = token_of(&laptop)?.key();
    ensure!(s.manager().end_session_of("ann", &other).await?);
    ensure!(!alive(&m, &laptop).await?);
    // No session, no key; a session without a user, no user.
    let anonymous = adapter::session_from_cookie_headers(&m, []);
    ensure!(anonymous.key().await?.is_none() && anonymous.user().await?.is_none());
    let plain = login(&m, "bob").await?;
    ensure!(request(&m, &plain).user().await?.is_none());
    // A session started in this request has its key and user before it is saved.
    let s = adapter::session_from_cookie_headers(&m, []);
    s.start()?;
    s.set_user("cy")?;
    let started = s.key().await?.context("a started session has no key")?;
    ensure!(s.user().await? == Some(UserKey::of("cy")));
    let cookie = returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no cookie")?;
    ensure!(
        token_of(&cookie)?.key() == started,
        "the key changed at the save"
    );
    Ok(())
}

fn manager(store: Arc<dyn Store>) -> anyhow::Result<SessionManager> {
    Ok(SessionManager::new(store, SessionConfig::new(SECRET)?)?)
}

/// Logs `user` in from `device` (stored in the session, as an app would for a sessions page).
async fn login_as(m: &SessionManager, user: &str, device: &str) -> anyhow::Result<String> {
    let s = adapter::session_from_cookie_headers(m, []);
    s.start()?;
    s.set_user(user)?;
    s.insert("device", device)?;
    returned_cookie(&adapter::finish(&s).await?.set_cookie).context("login set no cookie")
}

async fn alive(m: &SessionManager, cookie: &str) -> anyhow::Result<bool> {
    Ok(request(m, cookie).exists().await?)
}

async fn logging_out_everywhere_ends_every_session_of_the_user(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let mut ann = Vec::new();
    for device in ["phone", "laptop", "tablet"] {
        ann.push(login_as(&m, "ann", device).await?);
    }
    let bob = login_as(&m, "bob", "phone").await?;
    ensure!(m.end_sessions_of("ann").await? == 3);
    for cookie in &ann {
        ensure!(!alive(&m, cookie).await?, "a session of ann survived");
    }
    ensure!(alive(&m, &bob).await?, "bob was logged out too");
    ensure!(m.sessions_of("ann").await?.is_empty());
    ensure!(m.end_sessions_of("ann").await? == 0);
    Ok(())
}

async fn ending_other_sessions_keeps_the_current_one(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let phone = login_as(&m, "ann", "phone").await?;
    let laptop = login_as(&m, "ann", "laptop").await?;
    let tablet = login_as(&m, "ann", "tablet").await?;
    let bob = login_as(&m, "bob", "phone").await?;
    // Ann changes her password on the laptop.
    let s = request(&m, &laptop);
    ensure!(s.end_other_sessions().await? == 2);
    adapter::finish(&s).await?;
    ensure!(alive(&m, &laptop).await?, "the current session was ended");
    ensure!(!alive(&m, &phone).await? && !alive(&m, &tablet).await?);
    ensure!(alive(&m, &bob).await?);
    // A session without a user has no others to end; a new login ends the others at once.
    let carol = login(&m, "carol").await?;
    ensure!(request(&m, &carol).end_other_sessions().await? == 0);
    let s = adapter::session_from_cookie_headers(&m, []);
    s.start()?;
    s.set_user("ann")?;
    ensure!(
        s.end_other_sessions().await? == 1,
        "the laptop was not ended"
    );
    let fresh = returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no cookie")?;
    ensure!(alive(&m, &fresh).await? && !alive(&m, &laptop).await?);
    Ok(())
}

async fn a_user_sees_their_sessions_and_ends_one(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let phone = login_as(&m, "ann", "phone").await?;
    let laptop = login_as(&m, "ann", "laptop").await?;
    let bob = login_as(&m, "bob", "phone").await?;
    let sessions = m.sessions_of("ann").await?;
    ensure!(sessions.len() == 2, "{sessions:?}");
    let on = |device: &str| {
        sessions
            .iter()
            .find(|s| s.fields.get("device").map(String::as_str) == Some(device))
            .context("a device is missing from the list")
    };
    let (on_phone, on_laptop) = (on("\"phone\"")?, on("\"laptop\"")?);
    ensure!(on_phone.key == token_of(&phone)?.key() && on_laptop.key == token_of(&laptop)?.key());
    ensure!(
        sessions
            .iter()
            .all(|s| s.created_ms < s.deadline_ms && !s.fields.contains_key("__user")),
        "{sessions:?}"
    );
    // Ann cannot end Bob's session by naming its key.
    let bobs = m.sessions_of("bob").await?;
    let bob_key = &bobs.first().context("bob has no session")?.key;
    ensure!(!m.end_session_of("ann", bob_key).await?);
    ensure!(alive(&m, &bob).await?);
    ensure!(m.end_session_of("ann", &on_phone.key).await?);
    ensure!(!alive(&m, &phone).await? && alive(&m, &laptop).await?);
    ensure!(m.sessions_of("ann").await?.len() == 1);
    Ok(())
}

async fn the_index_follows_rotation_and_logout(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let old = login_as(&m, "ann", "phone").await?;
    let s = request(&m, &old);
    ensure!(s.cycle_id().await?);
    let new = returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no cookie")?;
    let sessions = m.sessions_of("ann").await?;
    ensure!(sessions.len() == 1, "{sessions:?}");
    ensure!(
        sessions[0].key == token_of(&new)?.key(),
        "the index lost the rotated session"
    );
    // Log out everywhere reaches the rotated session.
    ensure!(m.end_sessions_of("ann").await? == 1);
    ensure!(!alive(&m, &new).await?);
    // A plain logout leaves nothing listed.
    let again = login_as(&m, "ann", "phone").await?;
    let s = request(&m, &again);
    s.destroy();
    adapter::finish(&s).await?;
    ensure!(m.sessions_of("ann").await?.is_empty());
    Ok(())
}

async fn a_user_is_bound_only_to_a_session_started_in_the_request(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let cookie = login(&m, "ann").await?;
    for s in [
        request(&m, &cookie),
        adapter::session_from_cookie_headers(&m, []),
    ] {
        match s.set_user("ann") {
            Err(e) if e.kind() == ErrorKind::NoSession => {}
            other => anyhow::bail!("expected NoSession, got {other:?}"),
        }
    }
    ensure!(m.sessions_of("ann").await?.is_empty());
    Ok(())
}

const DAY_MS: u64 = 24 * 3600 * 1000;

async fn a_login_racing_log_out_everywhere_stays_listed(f: StoreFixture) -> anyhow::Result<()> {
    // A login has written its index entry but not yet created its session when "log out
    // everywhere" and a listing run: the entry must survive both, so the session, once
    // created, can still be found and ended.
    let m = manager(f.store.clone())?;
    let ann = UserKey::of("ann");
    let key = SessionToken::generate()?.key();
    let now = now_ms();
    f.store.index_add(&ann, &key, now + DAY_MS, now).await?;
    ensure!(m.sessions_of("ann").await?.is_empty());
    ensure!(m.end_sessions_of("ann").await? == 0);
    let session = new_session(&[(META_USER, ann.as_str())], 600_000, DAY_MS);
    f.store.create(&key, &session).await?;
    let listed = m.sessions_of("ann").await?;
    ensure!(
        listed.len() == 1 && listed[0].key == key,
        "the late session is not listed"
    );
    ensure!(
        m.end_sessions_of("ann").await? == 1,
        "the late session escaped"
    );
    ensure!(f.store.peek(&key, now_ms()).await?.is_none());
    Ok(())
}

async fn a_broken_record_does_not_hide_the_other_sessions(f: StoreFixture) -> anyhow::Result<()> {
    let m = manager(f.store.clone())?;
    let good = login_as(&m, "ann", "phone").await?;
    // An indexed session without its creation time: skipped by the listing, still ended.
    let ann = UserKey::of("ann");
    let key = SessionToken::generate()?.key();
    let mut broken = new_session(&[(META_USER, ann.as_str())], 600_000, DAY_MS);
    broken.fields.remove("__created");
    let now = now_ms();
    f.store.index_add(&ann, &key, now + DAY_MS, now).await?;
    f.store.create(&key, &broken).await?;
    let listed = m.sessions_of("ann").await?;
    ensure!(
        listed.len() == 1 && listed[0].key == token_of(&good)?.key(),
        "{listed:?}"
    );
    ensure!(m.end_sessions_of("ann").await? == 2);
    Ok(())
}
