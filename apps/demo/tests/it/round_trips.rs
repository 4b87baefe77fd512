//! Round trips per request, counted by a proxy between the app and a real redis-server.

use std::sync::Arc;

use anyhow::ensure;
use cloakroom::redis::RedisStore;
use cloakroom_test::{CountingProxy, RedisServer};

use crate::support::{app_over, get, login, visits};

crate::support::over_each_app!(plain; a_logged_in_index_costs_exactly_one_round_trip);

async fn a_logged_in_index_costs_exactly_one_round_trip() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let proxy = CountingProxy::start(server.port()).await?;
    let store = RedisStore::connect(proxy.url()).await?;
    let app = app_over(Arc::new(store))?;
    let cookie = login(&app, "ann").await?;

    proxy.reset();
    let n = 20;
    for i in 1..=n {
        let page = get(&app, "/", Some(&cookie)).await?;
        ensure!(visits(&page.body) == Some(i), "{}", page.body);
    }
    let commands = proxy.commands();
    println!(
        "Redis commands for {n} logged-in GET /: {} ({:?})",
        commands.len(),
        commands.first()
    );
    ensure!(
        commands.len() == n as usize,
        "{} commands for {n} requests: {commands:?}",
        commands.len()
    );
    ensure!(commands.iter().all(|c| c == "EVALSHA"), "{commands:?}");

    // A read with no touch due is one HGETALL, no script.
    proxy.reset();
    for _ in 0..n {
        let page = get(&app, "/whoami", Some(&cookie)).await?;
        ensure!(page.body.contains("Logged in as ann."), "{}", page.body);
    }
    let commands = proxy.commands();
    ensure!(
        commands.len() == n as usize && commands.iter().all(|c| c == "HGETALL"),
        "{n} logged-in GET /whoami: {commands:?}"
    );

    // Anonymous and forged requests cost nothing; login costs two (the entry in the user's
    // index, then the create), logout one (DEL).
    proxy.reset();
    get(&app, "/", None).await?;
    get(&app, "/", Some("__Host-cloakroom=forged")).await?;
    get(&app, "/login", None).await?;
    ensure!(proxy.commands().is_empty(), "{:?}", proxy.commands());
    let second = login(&app, "bob").await?;
    ensure!(
        proxy.commands() == ["EVALSHA", "EVALSHA"],
        "login: {:?}",
        proxy.commands()
    );
    proxy.reset();
    get(&app, "/logout", Some(&second)).await?;
    ensure!(
        proxy.commands() == ["DEL"],
        "logout: {:?}",
        proxy.commands()
    );
    Ok(())
}
