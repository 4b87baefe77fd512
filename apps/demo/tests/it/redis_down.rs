//! Redis killed: requests fail fast with a generic 503; Redis back: the app recovers by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use axum::http::{StatusCode, header};
use cloakroom::redis::RedisStore;
use cloakroom_test::RedisServer;

use crate::support::{app_over, get, login, post_login};

crate::support::over_each_app!(plain; redis_down_gives_a_fast_503_and_the_app_recovers, a_frozen_redis_gives_a_503_within_about_a_second);

async fn redis_down_gives_a_fast_503_and_the_app_recovers() -> anyhow::Result<()> {
    let mut server = RedisServer::spawn()?;
    let store = RedisStore::connect(server.url()).await?;
    let app = app_over(Arc::new(store))?;
    let cookie = login(&app, "ann").await?;
    ensure!(get(&app, "/", Some(&cookie)).await?.status == StatusCode::OK);

    server.kill();
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let started = Instant::now();
        let reply = get(&app, "/", Some(&cookie)).await?;
        let took = started.elapsed();
        slowest = slowest.max(took);
        ensure!(reply.status == StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        let body = reply.body.to_lowercase();
        for leak in ["redis", "refused", "connection", "error:", "os error"] {
            ensure!(
                !body.contains(leak),
                "backend text in the body: {}",
                reply.body
            );
        }
        ensure!(reply.header(header::RETRY_AFTER).is_some());
        let login_reply = post_login(&app, None, "username=bob").await?;
        ensure!(
            login_reply.status == StatusCode::SERVICE_UNAVAILABLE,
            "{login_reply:?}"
        );
        ensure!(
            login_reply.headers.get(header::SET_COOKIE).is_none(),
            "cookie for an unsaved session"
        );
    }
    println!("slowest request while Redis was down: {slowest:?}");
    ensure!(
        slowest < Duration::from_millis(1_500),
        "a request took {slowest:?} to fail"
    );
    // Requests that never touch the session still work.
    ensure!(get(&app, "/login", None).await?.status == StatusCode::OK);

    server.restart()?;
    let started = Instant::now();
    let cookie = loop {
        match login(&app, "ann").await {
            Ok(cookie) => break cookie,
            Err(_) if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    };
    println!("recovered {:?} after the restart", started.elapsed());
    let page = get(&app, "/", Some(&cookie)).await?;
    ensure!(page.status == StatusCode::OK && page.body.contains("Logged in as ann."));
    Ok(())
}

async fn a_frozen_redis_gives_a_503_within_about_a_second() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let store = RedisStore::connect(server.url()).await?;
    let app = app_over(Arc::new(store))?;
    let cookie = login(&app, "ann").await?;
    server.pause()?;
    let mut slowest = Duration::ZERO;
    for _ in 0..3 {
        let started = Instant::now();
        let reply = get(&app, "/", Some(&cookie)).await?;
        slowest = slowest.max(started.elapsed());
        ensure!(reply.status == StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    }
    server.resume()?;
    println!("slowest request while Redis was frozen: {slowest:?}");
    ensure!(
        slowest < Duration::from_millis(1_500),
        "a request took {slowest:?} to fail"
    );
    let started = Instant::now();
    loop {
        let reply = get(&app, "/", Some(&cookie)).await?;
        if reply.status == StatusCode::OK {
            ensure!(reply.body.contains("Logged in as ann."), "{}", reply.body);
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(10),
            "no recovery after thaw"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("recovered {:?} after the thaw", started.elapsed());
    Ok(())
}
