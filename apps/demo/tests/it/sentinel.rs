//! The demo binaries with `REDIS_URL` naming three sentinels (`redis+sentinel://`): each finds
//! the primary through them and serves sessions over real HTTP.

use anyhow::{Context, ensure};
use cloakroom_test::SentinelGroup;

use crate::process::{Binary, exchange, exchange_with, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_binaries_find_the_primary_through_sentinel() -> anyhow::Result<()> {
    let group = tokio::task::block_in_place(SentinelGroup::spawn)?;
    let url = group.url(None);
    for binary in Binary::BOTH {
        let (_demo, address, banner) = start(
            binary,
            &[("REDIS_URL", url.as_str()), ("REDIS_TIMEOUT_MS", "10000")],
        )?;
        ensure!(banner.contains("Redis via Sentinel"), "{banner}");
        let login = exchange(&address, "POST /api/login", None, "username=ann").await?;
        ensure!(login.status == 200, "{login:?}");
        let body: serde_json::Value = serde_json::from_str(&login.body)?;
        let bearer = format!("Bearer {}", body["token"].as_str().context("no token")?);
        for visits in 1..=2 {
            let me =
                exchange_with(&address, "GET /api/me", &[("Authorization", &bearer)], "").await?;
            ensure!(me.status == 200, "{me:?}");
            let me: serde_json::Value = serde_json::from_str(&me.body)?;
            ensure!(me["visits"] == visits, "{me}");
        }
    }
    Ok(())
}
