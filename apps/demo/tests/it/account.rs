//! "Your sessions" (`GET /sessions`) and the per-user cap, on both apps and every store: the
//! user sees their sessions, this one marked, ends another or all others by a CSRF-protected
//! POST, and never another user's.

use std::sync::Arc;

use anyhow::{Context, ensure};
use axum::http::{StatusCode, header};
use cloakroom::{SessionConfig, Store};
use cloakroom_test::StoreFixture;
use cloakroom_test::requests::token_of;

use crate::support::{Demo, SECRET, app_over, app_with, get, login, post_form};

crate::support::over_each_app!(
    test_over_each_store;
    a_user_sees_their_sessions_and_ends_another,
    ending_all_other_sessions_keeps_this_one,
    the_sessions_forms_need_their_csrf_token_and_a_session_of_the_user,
    the_fourth_login_with_a_cap_of_three_ends_the_oldest,
);

fn store(f: &StoreFixture) -> Arc<dyn Store> {
    f.store.clone()
}

/// The sessions page as `cookie`'s browser gets it: the page, and the CSRF cookie and token its
/// forms carry.
async fn sessions_page(app: &Demo, cookie: &str) -> anyhow::Result<(String, String, String)> {
    let page = get(app, "/sessions", Some(cookie)).await?;
    ensure!(page.status == StatusCode::OK, "{page:?}");
    ensure!(page.header(header::CACHE_CONTROL) == Some("no-store"));
    let csrf = page
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next())
        .find(|pair| pair.starts_with("__Host-cloakroom-csrf="))
        .context("no CSRF cookie")?
        .to_owned();
    let token = page
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    Ok((page.body, csrf, token))
}

// The short ids the page lists, in order.
fn listed(page: &str) -> Vec<String> {
    page.split("<td><code>")
        .skip(1)
        .filter_map(|rest| rest.split('<').next())
        .map(str::to_owned)
        .collect()
}

fn short(cookie: &str) -> anyhow::Result<String> {
    Ok(token_of(cookie)?.key().short().to_owned())
}

async fn alive(app: &Demo, cookie: &str) -> anyhow::Result<bool> {
    let page = get(app, "/whoami", Some(cookie)).await?;
    Ok(page.body.contains("Logged in as"))
}

async fn a_user_sees_their_sessions_and_ends_another(f: StoreFixture) -> anyhow::Result<()> {
    let app = app_over(store(&f))?;
    let phone = login(&app, "ann").await?;
    let laptop = login(&app, "ann").await?;
    let bob = login(&app, "bob").await?;
    let (page, csrf, token) = sessions_page(&app, &laptop).await?;
    let ids = listed(&page);
    ensure!(ids.len() == 2, "{page}");
    ensure!(ids.contains(&short(&phone)?) && ids.contains(&short(&laptop)?));
    ensure!(
        !ids.contains(&short(&bob)?),
        "another user's session is listed"
    );
    ensure!(page.contains("This session") && page.contains("Your sessions, ann"));
    // The other session's form names it; this one has none.
    let phone_key = token_of(&phone)?.key();
    ensure!(page.contains(&format!("value=\"{}\"", phone_key.as_str())));
    ensure!(!page.contains(&format!("value=\"{}\"", token_of(&laptop)?.key().as_str())));
    let cookies = format!("{laptop}; {csrf}");
    let body = format!("csrf={token}&session={}", phone_key.as_str());
    let ended = post_form(&app, "/sessions/end", Some(&cookies), body).await?;
    ensure!(ended.status == StatusCode::SEE_OTHER, "{ended:?}");
    ensure!(ended.header(header::LOCATION) == Some("/sessions"));
    ensure!(!alive(&app, &phone).await? && alive(&app, &laptop).await?);
    // Bob's session, named in ann's form, is not ann's to end.
    let bob_key = token_of(&bob)?.key();
    let body = format!("csrf={token}&session={}", bob_key.as_str());
    let refused = post_form(&app, "/sessions/end", Some(&cookies), body).await?;
    ensure!(refused.status == StatusCode::SEE_OTHER, "{refused:?}");
    ensure!(alive(&app, &bob).await?, "ann ended bob's session");
    let (page, ..) = sessions_page(&app, &laptop).await?;
    ensure!(listed(&page) == [short(&laptop)?], "{page}");
    ensure!(!page.contains("End all other sessions"));
    Ok(())
}

async fn ending_all_other_sessions_keeps_this_one(f: StoreFixture) -> anyhow::Result<()> {
    let app = app_over(store(&f))?;
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(login(&app, "ann").await?);
    }
    let this = login(&app, "ann").await?;
    let (page, csrf, token) = sessions_page(&app, &this).await?;
    ensure!(listed(&page).len() == 4 && page.contains("End all other sessions"));
    let cookies = format!("{this}; {csrf}");
    let ended = post_form(
        &app,
        "/sessions/end-others",
        Some(&cookies),
        format!("csrf={token}"),
    )
    .await?;
    ensure!(ended.status == StatusCode::SEE_OTHER, "{ended:?}");
    for other in &others {
        ensure!(!alive(&app, other).await?, "another session survived");
    }
    ensure!(alive(&app, &this).await?);
    Ok(())
}

async fn the_sessions_forms_need_their_csrf_token_and_a_session_of_the_user(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let app = app_over(store(&f))?;
    let phone = login(&app, "ann").await?;
    let laptop = login(&app, "ann").await?;
    let (_, csrf, token) = sessions_page(&app, &laptop).await?;
    let phone_key = token_of(&phone)?.key();
    let with_csrf = format!("{laptop}; {csrf}");
    for (cookies, body, status) in [
        // No token, a wrong token, no CSRF cookie: refused, nothing ended.
        (
            with_csrf.as_str(),
            format!("session={}", phone_key.as_str()),
            403,
        ),
        (
            with_csrf.as_str(),
            format!("csrf=x&session={}", phone_key.as_str()),
            403,
        ),
        (
            laptop.as_str(),
            format!("csrf={token}&session={}", phone_key.as_str()),
            403,
        ),
        // Not a session's name.
        (with_csrf.as_str(), format!("csrf={token}&session=%00"), 400),
    ] {
        let reply = post_form(&app, "/sessions/end", Some(cookies), body).await?;
        ensure!(reply.status.as_u16() == status, "{reply:?}");
        ensure!(alive(&app, &phone).await?, "a refused form ended a session");
    }
    // Without a session: the page and the forms send to the login form.
    let anonymous = get(&app, "/sessions", None).await?;
    ensure!(anonymous.status == StatusCode::SEE_OTHER);
    ensure!(anonymous.header(header::LOCATION) == Some("/login"));
    let reply = post_form(
        &app,
        "/sessions/end-others",
        Some(&csrf),
        format!("csrf={token}"),
    )
    .await?;
    ensure!(
        reply.header(header::LOCATION) == Some("/login"),
        "{reply:?}"
    );
    ensure!(alive(&app, &phone).await? && alive(&app, &laptop).await?);
    Ok(())
}

async fn the_fourth_login_with_a_cap_of_three_ends_the_oldest(
    f: StoreFixture,
) -> anyhow::Result<()> {
    let config = SessionConfig::new(SECRET)?.with_max_sessions_per_user(3);
    let app = app_with(store(&f), config)?;
    let mut cookies = Vec::new();
    for _ in 0..4 {
        cookies.push(login(&app, "ann").await?);
        // Sessions are ordered by the millisecond of their login.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    ensure!(
        !alive(&app, &cookies[0]).await?,
        "the oldest session survived"
    );
    for cookie in &cookies[1..] {
        ensure!(alive(&app, cookie).await?);
    }
    let (page, ..) = sessions_page(&app, &cookies[3]).await?;
    ensure!(listed(&page).len() == 3, "{page}");
    Ok(())
}
