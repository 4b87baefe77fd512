//! The per-user session cap over every store: a login past it ends the user's oldest session,
//! or is refused; logins of one user racing each other leave exactly the cap.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use cloakroom_core::{CapPolicy, ErrorKind, SessionConfig, SessionManager, Store, adapter};
use cloakroom_test::StoreFixture;
use cloakroom_test::requests::{request, returned_cookie};

const SECRET: &[u8] = b"session-cap-test-secret-0123456789abcdef0";

cloakroom_test::test_over_each_store!(
    a_login_past_the_cap_ends_the_oldest_session,
    a_login_past_the_cap_is_refused_when_the_policy_says_so,
    twenty_logins_at_once_with_a_cap_of_two_leave_two,
    logging_in_again_from_a_logged_in_browser_ends_no_other_device,
);

fn capped(store: Arc<dyn Store>, max: usize, policy: CapPolicy) -> anyhow::Result<SessionManager> {
    let config = SessionConfig::new(SECRET)?
        .with_max_sessions_per_user(max)
        .with_cap_policy(policy);
    Ok(SessionManager::new(store, config)?)
}

/// A login of `user`: its cookie, or the error its save gave.
async fn login_as(
    m: &SessionManager,
    user: &str,
) -> anyhow::Result<cloakroom_core::Result<String>> {
    let s = adapter::session_from_cookie_headers(m, []);
    s.start()?;
    s.set_user(user)?;
    s.insert("user", user)?;
    // The handler learns the outcome, as a login page would to show the refusal.
    if let Err(e) = s.save().await {
        // Refused, the login leaves nothing for the end of the request to write.
        let finished = adapter::finish(&s).await?;
        ensure!(
            finished.set_cookie.is_none(),
            "a refused login set a cookie"
        );
        return Ok(Err(e));
    }
    let finished = adapter::finish(&s).await?;
    Ok(Ok(
        returned_cookie(&finished.set_cookie).context("login set no cookie")?
    ))
}

async fn alive(m: &SessionManager, cookie: &str) -> anyhow::Result<bool> {
    Ok(request(m, cookie).exists().await?)
}

// Logins are ordered by the millisecond they were listed: sequential ones a few apart.
async fn pause() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

async fn a_login_past_the_cap_ends_the_oldest_session(f: StoreFixture) -> anyhow::Result<()> {
    let m = capped(f.store.clone(), 2, CapPolicy::EndOldest)?;
    let mut cookies = Vec::new();
    for _ in 0..4 {
        cookies.push(login_as(&m, "ann").await??);
        pause().await;
    }
    let bob = login_as(&m, "bob").await??;
    let live = [
        alive(&m, &cookies[0]).await?,
        alive(&m, &cookies[1]).await?,
        alive(&m, &cookies[2]).await?,
        alive(&m, &cookies[3]).await?,
    ];
    ensure!(live == [false, false, true, true], "{live:?}");
    ensure!(m.sessions_of("ann").await?.len() == 2);
    ensure!(alive(&m, &bob).await?, "another user's session was counted");
    // A logged-out session leaves its slot at once.
    let s = request(&m, &cookies[3]);
    s.destroy();
    adapter::finish(&s).await?;
    let again = login_as(&m, "ann").await??;
    ensure!(alive(&m, &cookies[2]).await? && alive(&m, &again).await?);
    Ok(())
}

async fn a_login_past_the_cap_is_refused_when_the_policy_says_so(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let m = capped(f.store.clone(), 2, CapPolicy::RefuseNew)?;
    let first = login_as(&m, "ann").await??;
    pause().await;
    let second = login_as(&m, "ann").await??;
    pause().await;
    let refused = login_as(&m, "ann")
        .await?
        .err()
        .context("a third login was let in")?;
    ensure!(refused.kind() == ErrorKind::TooManySessions, "{refused:?}");
    ensure!(alive(&m, &first).await? && alive(&m, &second).await?);
    ensure!(m.sessions_of("ann").await?.len() == 2);
    // Ending one (here a logout) makes room at once: nobody is locked out by a session gone.
    let s = request(&m, &first);
    s.destroy();
    adapter::finish(&s).await?;
    let third = login_as(&m, "ann").await??;
    ensure!(alive(&m, &second).await? && alive(&m, &third).await?);
    ensure!(m.sessions_of("ann").await?.len() == 2);
    Ok(())
}

async fn twenty_logins_at_once_with_a_cap_of_two_leave_two(f: StoreFixture) -> anyhow::Result<()> {
    for policy in [CapPolicy::EndOldest, CapPolicy::RefuseNew] {
        let m = capped(f.store.clone(), 2, policy)?;
        let user = format!("racer-{policy:?}");
        let started = Instant::now();
        let logins: Vec<_> = (0..20)
            .map(|_| {
                let (m, user) = (m.clone(), user.clone());
                tokio::spawn(async move { login_as(&m, &user).await })
            })
            .collect();
        let mut admitted = Vec::new();
        let mut refused = 0;
        for login in logins {
            match login.await?? {
                Ok(cookie) => admitted.push(cookie),
                Err(e) if e.kind() == ErrorKind::TooManySessions => refused += 1,
                Err(e) => return Err(e.into()),
            }
        }
        let took = started.elapsed();
        let mut live = 0;
        for cookie in &admitted {
            live += usize::from(alive(&m, cookie).await?);
        }
        let listed = m.sessions_of(&user).await?.len();
        eprintln!(
            "{policy:?}: 20 logins at once, cap 2: {} admitted, {refused} refused, {live} live \
             afterwards, {listed} listed, in {took:?}",
            admitted.len()
        );
        ensure!(
            live == 2 && listed == 2,
            "{policy:?}: {live} live, {listed} listed"
        );
        ensure!(admitted.len() + refused == 20);
        ensure!(refused >= 1, "{policy:?}: no login was refused or ended");
    }
    Ok(())
}

async fn logging_in_again_from_a_logged_in_browser_ends_no_other_device(
    f: StoreFixture,
) -> anyhow::Result<()> {
    for policy in [CapPolicy::EndOldest, CapPolicy::RefuseNew] {
        let m = capped(f.store.clone(), 2, policy)?;
        let user = format!("again-{policy:?}");
        let phone = login_as(&m, &user).await??;
        pause().await;
        let laptop = login_as(&m, &user).await??;
        pause().await;
        // The laptop's browser logs in again: its old session is replaced, not counted.
        let s = adapter::session_from_cookie_headers(&m, [laptop.as_bytes()]);
        s.start()?;
        s.set_user(&user)?;
        s.save().await?;
        let finished = adapter::finish(&s).await?;
        let again = returned_cookie(&finished.set_cookie).context("no new cookie")?;
        ensure!(
            alive(&m, &phone).await?,
            "{policy:?}: the phone was logged out"
        );
        ensure!(alive(&m, &again).await? && !alive(&m, &laptop).await?);
        ensure!(m.sessions_of(&user).await?.len() == 2);
    }
    Ok(())
}
