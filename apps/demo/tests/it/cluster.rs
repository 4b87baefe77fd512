//! The demo binaries, started as a user would start them, with `REDIS_URL` naming one node of a
//! running three-primary cluster: each detects cluster mode, serves the tutorial flow over real
//! HTTP, and the sessions it creates spread over every primary.

use anyhow::{Context, ensure};
use cloakroom_test::RedisCluster;

use crate::process::{Binary, http, start};
use crate::support::visits;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_binary_works_on_one_cluster_node_url() -> anyhow::Result<()> {
    works_on_one_cluster_node_url(Binary::Axum).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actix_binary_works_on_one_cluster_node_url() -> anyhow::Result<()> {
    works_on_one_cluster_node_url(Binary::Actix).await
}

async fn works_on_one_cluster_node_url(binary: Binary) -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn()?;
    let url = cluster.url();
    let (_demo, address, banner) = start(
        binary,
        &[
            ("REDIS_URL", url.as_str()),
            // Behaviour, not speed, is tested here: a loaded machine must not fail the start-up.
            ("REDIS_TIMEOUT_MS", "10000"),
        ],
    )?;
    ensure!(
        banner.contains("Redis Cluster"),
        "cluster mode not detected: {banner}"
    );
    let users = 30;
    for user in 0..users {
        // As a browser: show the form, then post it with its CSRF token and cookie.
        let (_, csrf_cookie, form) = http(&address, "GET /login", None, "").await?;
        let csrf_cookie = csrf_cookie.context("the form set no CSRF cookie")?;
        let token = form
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .context("the form has no CSRF field")?;
        let (status, cookie, _) = http(
            &address,
            "POST /login",
            Some(&csrf_cookie),
            &format!("csrf={token}&username=user{user}"),
        )
        .await?;
        ensure!(status == 303, "login answered {status}");
        let cookie = cookie.context("login set no cookie")?;
        for expected in 1..=2 {
            let (status, _, body) = http(&address, "GET /", Some(&cookie), "").await?;
            ensure!(status == 200, "GET / answered {status}");
            ensure!(
                body.contains(&format!("Logged in as user{user}."))
                    && visits(&body) == Some(expected),
                "unexpected page: {body}"
            );
        }
    }
    let mut per_primary = Vec::new();
    for node in cluster.topology()?.iter().filter(|n| n.is_primary) {
        let index = cluster.index_of_port(node.port).context("unknown node")?;
        let keys: i64 = redis::cmd("DBSIZE").query(&mut cluster.nodes()[index].connection()?)?;
        per_primary.push(keys);
    }
    println!("demo sessions per primary: {per_primary:?}");
    ensure!(
        per_primary.len() == 3 && per_primary.iter().all(|&n| n > 0),
        "sessions did not spread over every primary: {per_primary:?}"
    );
    // A session and its user's index per user.
    ensure!(per_primary.iter().sum::<i64>() == 2 * users);
    Ok(())
}
