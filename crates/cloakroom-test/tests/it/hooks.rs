//! Lifecycle hooks over every store: each session created and each ending this process causes
//! reaches the application's callbacks once, with its reason and, when known, its user; a dead
//! cookie brought back is reported as `Expired` (each time it comes).

use std::sync::{Arc, Mutex};

use anyhow::{Context, ensure};
use cloakroom_core::store::Origin;
use cloakroom_core::{
    EndReason, SessionConfig, SessionEvent, SessionHooks, SessionManager, UserKey, adapter,
};
use cloakroom_test::StoreFixture;
use cloakroom_test::requests::{request, returned_cookie, token_of};

const SECRET: &[u8] = b"lifecycle-hooks-test-secret-0123456789abcd";

cloakroom_test::test_over_each_store!(
    each_creation_and_ending_reaches_the_hooks_once,
    a_session_ended_past_the_cap_reaches_the_hooks,
);

/// What the hooks heard, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    Created(String, Option<UserKey>, Option<Origin>),
    Ended(String, Option<UserKey>, EndReason),
}

fn listening(config: SessionConfig) -> (SessionConfig, Arc<Mutex<Vec<Heard>>>) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let (created, ended) = (heard.clone(), heard.clone());
    let hooks = SessionHooks::new()
        .on_created(move |e: &SessionEvent| {
            if let Ok(mut heard) = created.lock() {
                heard.push(Heard::Created(
                    e.key.short().to_owned(),
                    e.user.clone(),
                    e.origin,
                ));
            }
        })
        .on_ended(move |e: &SessionEvent, reason| {
            if let Ok(mut heard) = ended.lock() {
                heard.push(Heard::Ended(
                    e.key.short().to_owned(),
                    e.user.clone(),
                    reason,
                ));
            }
        });
    (config.with_hooks(hooks), heard)
}

fn taken(heard: &Mutex<Vec<Heard>>) -> Vec<Heard> {
    heard
        .lock()
        .map(|mut h| std::mem::take(&mut *h))
        .unwrap_or_default()
}

async fn login_as(m: &SessionManager, user: &str) -> anyhow::Result<String> {
    let s = adapter::session_from_cookie_headers(m, []);
    s.start()?;
    s.set_user(user)?;
    returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no cookie")
}

fn short(cookie: &str) -> anyhow::Result<String> {
    Ok(token_of(cookie)?.key().short().to_owned())
}

async fn each_creation_and_ending_reaches_the_hooks_once(f: StoreFixture) -> anyhow::Result<()> {
    let (config, heard) = listening(SessionConfig::new(SECRET)?);
    let m = SessionManager::new(f.store.clone(), config)?;
    let ann = Some(UserKey::of("ann"));

    let first = login_as(&m, "ann").await?;
    ensure!(
        taken(&heard)
            == [Heard::Created(
                short(&first)?,
                ann.clone(),
                Some(Origin::Login)
            )],
        "login"
    );

    // A new id: the new one created, the old one ended by rotation.
    let s = request(&m, &first);
    ensure!(s.cycle_id().await?);
    let second = returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no cookie")?;
    ensure!(
        taken(&heard)
            == [
                Heard::Created(short(&second)?, ann.clone(), Some(Origin::Rotation)),
                Heard::Ended(short(&first)?, ann.clone(), EndReason::Rotation),
            ],
        "rotation"
    );

    // A logout of a loaded session names its user; the old cookie replayed is seen as ended.
    let s = request(&m, &second);
    s.exists().await?;
    s.destroy();
    adapter::finish(&s).await?;
    ensure!(
        taken(&heard)
            == [Heard::Ended(
                short(&second)?,
                ann.clone(),
                EndReason::Logout
            )],
        "logout"
    );
    let s = request(&m, &second);
    ensure!(!s.exists().await?);
    adapter::finish(&s).await?;
    ensure!(
        taken(&heard) == [Heard::Ended(short(&second)?, None, EndReason::Expired)],
        "a replayed cookie"
    );

    // Log out everywhere: each session ended through the index, once.
    let third = login_as(&m, "ann").await?;
    let fourth = login_as(&m, "ann").await?;
    taken(&heard);
    ensure!(m.end_sessions_of("ann").await? == 2);
    let mut ended = taken(&heard);
    ended.sort_by_key(|h| format!("{h:?}"));
    let mut expected = vec![
        Heard::Ended(short(&third)?, ann.clone(), EndReason::Revoked),
        Heard::Ended(short(&fourth)?, ann.clone(), EndReason::Revoked),
    ];
    expected.sort_by_key(|h| format!("{h:?}"));
    ensure!(ended == expected, "{ended:?}");
    // Nothing is heard twice: ending them again ends nothing.
    ensure!(m.end_sessions_of("ann").await? == 0 && taken(&heard).is_empty());
    Ok(())
}

async fn a_session_ended_past_the_cap_reaches_the_hooks(f: StoreFixture) -> anyhow::Result<()> {
    let (config, heard) = listening(SessionConfig::new(SECRET)?.with_max_sessions_per_user(1));
    let m = SessionManager::new(f.store.clone(), config)?;
    let first = login_as(&m, "bo").await?;
    tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    let second = login_as(&m, "bo").await?;
    let bo = Some(UserKey::of("bo"));
    ensure!(
        taken(&heard)
            == [
                Heard::Created(short(&first)?, bo.clone(), Some(Origin::Login)),
                Heard::Created(short(&second)?, bo.clone(), Some(Origin::Login)),
                Heard::Ended(short(&first)?, bo.clone(), EndReason::Capped),
            ]
    );
    Ok(())
}
