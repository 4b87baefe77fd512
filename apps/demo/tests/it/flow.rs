//! The tutorial's flow, headers and concurrency, over both stores.

use std::sync::Arc;

use anyhow::ensure;
use axum::http::{StatusCode, header};
use cloakroom::Store;
use cloakroom_test::StoreFixture;

use crate::support::{app_over, get, login, post_form, post_login, visits};

crate::support::over_each_app!(
    test_over_each_store;
    the_tutorial_flow_end_to_end,
    session_responses_are_not_cacheable,
    login_rotates_the_token,
    two_thousand_concurrent_visits_lose_none,
    whoami_reads_without_counting,
    remember_me_chooses_the_cookie_and_the_lifetime,
    a_welcome_is_shown_once_after_login,
);

fn store(f: &StoreFixture) -> Arc<dyn Store> {
    f.store.clone()
}

async fn the_tutorial_flow_end_to_end(f: StoreFixture) -> anyhow::Result<()> {
    let app = app_over(store(&f))?;
    let anon = get(&app, "/", None).await?;
    ensure!(anon.status == StatusCode::OK && anon.body.contains("You are not logged in"));
    ensure!(
        anon.headers.get(header::SET_COOKIE).is_none(),
        "anonymous visit set a cookie"
    );

    let form = get(&app, "/login", None).await?;
    ensure!(form.status == StatusCode::OK && form.body.contains("name=\"username\""));

    let reply = post_login(&app, None, "username=%3Cb%3E%26Ann").await?;
    ensure!(reply.status == StatusCode::SEE_OTHER);
    ensure!(reply.header(header::LOCATION) == Some("/"));
    let set_cookie = reply.set_cookie_header().unwrap_or_default().to_owned();
    for attribute in [
        "__Host-cloakroom=",
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Path=/",
    ] {
        ensure!(
            set_cookie.contains(attribute),
            "{attribute} missing from {set_cookie}"
        );
    }
    ensure!(!set_cookie.contains("Domain"), "{set_cookie}");
    let cookie = reply.cookie().unwrap_or_default();

    for expected in 1..=2 {
        let page = get(&app, "/", Some(&cookie)).await?;
        ensure!(page.status == StatusCode::OK);
        ensure!(
            page.body.contains("Logged in as &lt;b&gt;&amp;Ann.<br>"),
            "name not escaped: {}",
            page.body
        );
        ensure!(visits(&page.body) == Some(expected), "{}", page.body);
        ensure!(
            page.headers.get(header::SET_COOKIE).is_none(),
            "ordinary visit re-set the cookie"
        );
    }

    let out = get(&app, "/logout", Some(&cookie)).await?;
    ensure!(out.status == StatusCode::SEE_OTHER && out.header(header::LOCATION) == Some("/"));
    ensure!(
        out.cookie().as_deref() == Some(""),
        "logout did not clear the cookie"
    );
    let after = get(&app, "/", Some(&cookie)).await?;
    ensure!(
        after.body.contains("You are not logged in"),
        "old cookie still logged in"
    );

    // The page's own logout button posts; that works the same way.
    let cookie = login(&app, "bob").await?;
    let page = get(&app, "/", Some(&cookie)).await?;
    ensure!(
        page.body
            .contains("<form method=\"post\" action=\"/logout\">"),
        "{}",
        page.body
    );
    let out = post_form(&app, "/logout", Some(&cookie), "").await?;
    ensure!(out.status == StatusCode::SEE_OTHER);
    ensure!(
        out.cookie().as_deref() == Some(""),
        "POST logout kept the cookie"
    );
    ensure!(
        get(&app, "/", Some(&cookie))
            .await?
            .body
            .contains("You are not logged in")
    );
    Ok(())
}

async fn session_responses_are_not_cacheable(f: StoreFixture) -> anyhow::Result<()> {
    let app = app_over(store(&f))?;
    let cookie = login(&app, "ann").await?;
    for reply in [
        get(&app, "/", Some(&cookie)).await?,
        get(&app, "/", None).await?,
        post_login(&app, None, "username=bob").await?,
    ] {
        ensure!(
            reply.header(header::CACHE_CONTROL) == Some("no-store"),
            "{reply:?}"
        );
        // The pages depend on the cookie, and on the header API clients carry their session in.
        ensure!(
            reply.header(header::VARY) == Some("Cookie, authorization"),
            "{reply:?}"
        );
    }
    Ok(())
}

async fn login_rotates_the_token(f: StoreFixture) -> anyhow::Result<()> {
    let app = app_over(store(&f))?;
    let first = login(&app, "guest").await?;
    let reply = post_login(&app, Some(&first), "username=ann").await?;
    let second = reply.cookie().unwrap_or_default();
    ensure!(
        !second.is_empty() && second != first,
        "the token did not rotate"
    );
    ensure!(
        get(&app, "/", Some(&first))
            .await?
            .body
            .contains("You are not logged in")
    );
    let page = get(&app, "/", Some(&second)).await?;
    ensure!(page.body.contains("Logged in as ann."), "{}", page.body);
    ensure!(
        visits(&page.body) == Some(1),
        "visits carried over from the old session"
    );
    Ok(())
}

async fn two_thousand_concurrent_visits_lose_none(f: StoreFixture) -> anyhow::Result<()> {
    let app = app_over(store(&f))?;
    let cookie = login(&app, "racer").await?;
    let tasks: Vec<_> = (0..2000)
        .map(|_| {
            let app = app.clone();
            let cookie = cookie.clone();
            tokio::spawn(async move { get(&app, "/", Some(&cookie)).await })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        let reply = task.await??;
        ensure!(reply.status == StatusCode::OK, "{reply:?}");
        seen.push(visits(&reply.body).unwrap_or(-1));
    }
    seen.sort_unstable();
    ensure!(
        seen == (1..=2000).collect::<Vec<_>>(),
        "increments lost or duplicated"
    );
    let last = get(&app, "/", Some(&cookie)).await?;
    let lost = 2000 - (visits(&last.body).unwrap_or(0) - 1);
    println!("lost increments under 2000 concurrent requests: {lost}");
    ensure!(lost == 0, "{lost} increments lost");
    Ok(())
}

// `GET /whoami`: who is logged in, escaped, without counting a visit; and not after logout.
async fn whoami_reads_without_counting(f: StoreFixture) -> anyhow::Result<()> {
    let app = app_over(store(&f))?;
    let anon = get(&app, "/whoami", None).await?;
    ensure!(anon.status == StatusCode::OK && anon.body.contains("You are not logged in"));
    ensure!(anon.headers.get(header::SET_COOKIE).is_none());
    let cookie = login(&app, "%3Cb%3E%26Ann").await?;
    ensure!(visits(&get(&app, "/", Some(&cookie)).await?.body) == Some(1));
    for _ in 0..3 {
        let me = get(&app, "/whoami", Some(&cookie)).await?;
        ensure!(me.status == StatusCode::OK);
        ensure!(
            me.body.contains("Logged in as &lt;b&gt;&amp;Ann."),
            "{}",
            me.body
        );
        ensure!(!me.body.contains("Visits"), "{}", me.body);
        ensure!(me.headers.get(header::SET_COOKIE).is_none());
        ensure!(
            me.header(header::CACHE_CONTROL)
                .is_some_and(|v| v.contains("no-store")),
            "a per-user page must not be cached"
        );
    }
    ensure!(
        visits(&get(&app, "/", Some(&cookie)).await?.body) == Some(2),
        "whoami counted a visit"
    );
    ensure!(post_form(&app, "/logout", Some(&cookie), "").await?.status == StatusCode::SEE_OTHER);
    let after = get(&app, "/whoami", Some(&cookie)).await?;
    ensure!(
        after.body.contains("You are not logged in"),
        "{}",
        after.body
    );
    Ok(())
}

// The login form's "Remember me": checked, a cookie kept 30 days; unchecked, a cookie that ends
// with the browser (as Flask's default session). Either way the session works the same.
async fn remember_me_chooses_the_cookie_and_the_lifetime(f: StoreFixture) -> anyhow::Result<()> {
    let app = app_over(store(&f))?;
    let form = get(&app, "/login", None).await?;
    ensure!(
        form.body.contains("type=\"checkbox\" name=\"remember\""),
        "{}",
        form.body
    );
    let session_cookie = |reply: &crate::support::Reply| {
        reply
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("__Host-cloakroom="))
            .map(str::to_owned)
    };
    let remembered = post_login(&app, None, "username=ann&remember=1").await?;
    let header = session_cookie(&remembered).unwrap_or_default();
    ensure!(header.contains("Max-Age=2592000"), "{header}");
    let until_closed = post_login(&app, None, "username=bob").await?;
    let header = session_cookie(&until_closed).unwrap_or_default();
    ensure!(
        header.starts_with("__Host-cloakroom=")
            && !header.contains("Max-Age")
            && !header.contains("Expires"),
        "{header}"
    );
    for reply in [remembered, until_closed] {
        let cookie = reply.cookie().unwrap_or_default();
        let page = get(&app, "/", Some(&cookie)).await?;
        ensure!(visits(&page.body) == Some(1), "{}", page.body);
    }
    Ok(())
}

// The first page after login says `Welcome, NAME.` (escaped), once; the visit is counted in the
// same round trip (see `round_trips`).
async fn a_welcome_is_shown_once_after_login(f: StoreFixture) -> anyhow::Result<()> {
    let app = app_over(store(&f))?;
    let cookie = login(&app, "%3Cb%3EAnn").await?;
    let first = get(&app, "/", Some(&cookie)).await?;
    ensure!(
        first
            .body
            .contains("<p role=\"status\">Welcome, &lt;b&gt;Ann.</p>"),
        "{}",
        first.body
    );
    ensure!(visits(&first.body) == Some(1));
    for _ in 0..2 {
        let next = get(&app, "/", Some(&cookie)).await?;
        ensure!(!next.body.contains("Welcome"), "shown twice: {}", next.body);
    }
    Ok(())
}
