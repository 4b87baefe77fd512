//! `cloakroom-admin` run as an operator runs it, against real servers (standalone, a cluster,
//! a least-privilege ACL user), on sessions a real manager made.

use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, ensure};
use cloakroom::redis::RedisStore;
use cloakroom::{SessionConfig, SessionManager, adapter};
use cloakroom_test::requests::{returned_cookie, token_of};
use cloakroom_test::{RedisCluster, RedisServer};

const SECRET: &str = "admin-cli-test-secret-0123456789abcdef0123";

/// What one run printed, and how it ended.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

fn admin(url: &str, args: &[&str]) -> anyhow::Result<Run> {
    admin_with(url, args, &[("SECRET_KEY", SECRET)])
}

fn admin_with(url: &str, args: &[&str], environment: &[(&str, &str)]) -> anyhow::Result<Run> {
    let output = Command::new(env!("CARGO_BIN_EXE_cloakroom-admin"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("REDIS_URL", url)
        // Generous: the suite's servers and clusters start beside each other on two cores.
        .env("REDIS_TIMEOUT_MS", "5000")
        .envs(environment.iter().copied())
        .output()
        .context("running cloakroom-admin")?;
    Ok(Run {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

async fn manager(url: &str) -> anyhow::Result<SessionManager> {
    let store = RedisStore::builder(url).connect().await?;
    Ok(SessionManager::new(
        Arc::new(store),
        SessionConfig::new(SECRET)?,
    )?)
}

/// A login of `user`, as the application makes it; the cookie.
async fn login(m: &SessionManager, user: &str) -> anyhow::Result<String> {
    let s = adapter::session_from_cookie_headers(m, []);
    s.start()?;
    s.set_user(user)?;
    s.insert("username", user)?;
    returned_cookie(&adapter::finish(&s).await?.set_cookie).context("no cookie")
}

async fn alive(m: &SessionManager, cookie: &str) -> anyhow::Result<bool> {
    let s = adapter::session_from_cookie_headers(m, [cookie.as_bytes()]);
    Ok(s.exists().await?)
}

fn listed_ids(url: &str, user: &str) -> anyhow::Result<Vec<String>> {
    let run = admin(url, &["sessions", "list", "--user", user, "--json"])?;
    ensure!(run.success, "{}", run.stderr);
    let listed: serde_json::Value = serde_json::from_str(&run.stdout)?;
    let mut ids: Vec<String> = listed
        .as_array()
        .context("not an array")?
        .iter()
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    Ok(ids)
}

async fn lists_and_ends_a_users_sessions(url: &str) -> anyhow::Result<()> {
    let m = manager(url).await?;
    let mut ann = Vec::new();
    for _ in 0..4 {
        ann.push(login(&m, "ann").await?);
    }
    let bob = login(&m, "bob").await?;
    let short = |cookie: &String| -> anyhow::Result<String> {
        Ok(token_of(cookie)?.key().short().to_owned())
    };
    let mut expected: Vec<String> = ann.iter().map(short).collect::<anyhow::Result<_>>()?;
    expected.sort();
    ensure!(listed_ids(url, "ann")? == expected);
    let table = admin(url, &["sessions", "list", "--user", "ann"])?;
    ensure!(
        table.success && table.stdout.contains(&expected[0]),
        "{}",
        table.stdout
    );

    // One by its safe id; an unknown id ends nothing and fails.
    let one = short(&ann[0])?;
    let run = admin(url, &["sessions", "end", "--user", "ann", "--id", &one])?;
    ensure!(run.success, "{}", run.stderr);
    ensure!(!alive(&m, &ann[0]).await? && alive(&m, &ann[1]).await?);
    let run = admin(
        url,
        &["sessions", "end", "--user", "ann", "--id", "nosuchid"],
    )?;
    ensure!(!run.success && run.stderr.contains("no live session"));
    // Bob's session, named with ann's id: refused.
    let bobs = short(&bob)?;
    let run = admin(url, &["sessions", "end", "--user", "ann", "--id", &bobs])?;
    ensure!(!run.success && alive(&m, &bob).await?);

    // All but one; then all.
    let kept = short(&ann[3])?;
    let run = admin(
        url,
        &["sessions", "end", "--user", "ann", "--except", &kept],
    )?;
    ensure!(
        run.success && run.stdout.contains("ended 2"),
        "{}{}",
        run.stdout,
        run.stderr
    );
    ensure!(listed_ids(url, "ann")? == std::slice::from_ref(&kept));
    let run = admin(
        url,
        &["sessions", "end", "--user", "ann", "--except", "nosuchid"],
    )?;
    ensure!(
        !run.success && alive(&m, &ann[3]).await?,
        "an unknown --except ended all"
    );
    let run = admin(url, &["sessions", "end", "--user", "ann"])?;
    ensure!(
        run.success && run.stdout.contains("ended 1"),
        "{}",
        run.stdout
    );
    ensure!(listed_ids(url, "ann")?.is_empty());
    ensure!(alive(&m, &bob).await?, "bob's session was ended");
    Ok(())
}

async fn shows_a_cookies_session(url: &str) -> anyhow::Result<()> {
    let m = manager(url).await?;
    let cookie = login(&m, "cy").await?;
    let run = admin(url, &["session", "show", "--cookie", &cookie])?;
    ensure!(run.success, "{}", run.stderr);
    let id = token_of(&cookie)?.key().short().to_owned();
    ensure!(
        run.stdout.contains(&format!("session {id}: live")),
        "{}",
        run.stdout
    );
    ensure!(run.stdout.contains("username = \"cy\""), "{}", run.stdout);
    // The bare value works too; a tampered one is refused; without the key nothing is read.
    let value = cookie.split_once('=').context("no value")?.1;
    ensure!(admin(url, &["session", "show", "--cookie", value])?.success);
    let tampered = format!(
        "{}{}",
        &value[..value.len() - 1],
        if value.ends_with('A') { 'B' } else { 'A' }
    );
    let run = admin(url, &["session", "show", "--cookie", &tampered])?;
    ensure!(
        !run.success && run.stdout.contains("not signed"),
        "{}",
        run.stdout
    );
    let run = admin_with(url, &["session", "show", "--cookie", value], &[])?;
    ensure!(
        !run.success && run.stderr.contains("SECRET_KEY"),
        "{}",
        run.stderr
    );
    // Showing does not extend it, and an ended session says so.
    let s = adapter::session_from_cookie_headers(&m, [cookie.as_bytes()]);
    s.destroy();
    adapter::finish(&s).await?;
    let run = admin(url, &["session", "show", "--cookie", &cookie])?;
    ensure!(
        !run.success && run.stdout.contains("has ended"),
        "{}",
        run.stdout
    );
    Ok(())
}

async fn counts_what_the_store_holds(url: &str, admin_url: &str) -> anyhow::Result<()> {
    let m = manager(url).await?;
    for user in ["dee", "dee", "dee", "eve", "fay"] {
        login(&m, user).await?;
    }
    let run = admin(admin_url, &["stats", "--json"])?;
    ensure!(run.success, "{}", run.stderr);
    let stats: serde_json::Value = serde_json::from_str(&run.stdout)?;
    ensure!(stats["sessions"] == 5, "{stats}");
    ensure!(stats["sessions_without_ttl"] == 0, "{stats}");
    ensure!(
        stats["indexes"] == 3 && stats["index_entries"] == 5,
        "{stats}"
    );
    ensure!(stats["largest_index"] == 3, "{stats}");
    ensure!(
        stats["bytes_per_session"]
            .as_f64()
            .is_some_and(|b| b > 50.0),
        "{stats}"
    );
    ensure!(
        stats["ttl_ms"]["max"]
            .as_u64()
            .is_some_and(|ms| ms <= 30 * 60 * 1000),
        "{stats}"
    );
    let text = admin(admin_url, &["stats"])?;
    ensure!(
        text.success && text.stdout.contains("live sessions          5"),
        "{}",
        text.stdout
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_a_user_are_listed_and_ended_on_a_server() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    lists_and_ends_a_users_sessions(&server.url()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_a_user_are_listed_and_ended_on_a_cluster() -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn()?;
    lists_and_ends_a_users_sessions(&cluster.url()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_a_user_are_listed_and_ended_by_a_least_privilege_user() -> anyhow::Result<()> {
    let server = RedisServer::spawn_acl()?;
    lists_and_ends_a_users_sessions(&server.url_as(cloakroom_test::SESSION_USER)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_is_verified_and_its_session_shown() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    shows_a_cookies_session(&server.url()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_sessions_and_indexes_on_a_server_and_a_cluster() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    counts_what_the_store_holds(&server.url(), &server.url()).await?;
    let cluster = RedisCluster::spawn()?;
    counts_what_the_store_holds(&cluster.url(), &cluster.url()).await?;
    // A key under the prefix without a TTL: reported.
    let mut connection = server.connection()?;
    let name = format!("cloakroom:{}", "A".repeat(43));
    redis::cmd("HSET")
        .arg(&name)
        .arg("__created")
        .arg(1)
        .query::<()>(&mut connection)?;
    let run = admin(&server.url(), &["stats", "--json"])?;
    let stats: serde_json::Value = serde_json::from_str(&run.stdout)?;
    ensure!(stats["sessions_without_ttl"] == 1, "{stats}");
    Ok(())
}

#[test]
fn check_passes_a_default_server_and_a_least_privilege_user() -> anyhow::Result<()> {
    let server = RedisServer::spawn()?;
    let run = admin(&server.url(), &["check"])?;
    ensure!(run.success, "{}{}", run.stdout, run.stderr);
    ensure!(run.stdout.contains("ok    permissions"), "{}", run.stdout);
    ensure!(run.stdout.contains("warn  maxmemory"), "{}", run.stdout);
    let acl = RedisServer::spawn_acl()?;
    let run = admin(&acl.url_as(cloakroom_test::SESSION_USER), &["check"])?;
    ensure!(run.success, "{}{}", run.stdout, run.stderr);
    ensure!(run.stdout.contains("ok    permissions"), "{}", run.stdout);
    let cluster = RedisCluster::spawn()?;
    let run = admin(&cluster.url(), &["check"])?;
    ensure!(run.success, "{}{}", run.stdout, run.stderr);
    ensure!(
        run.stdout.contains("ok    cluster      cluster_state:ok"),
        "{}",
        run.stdout
    );
    Ok(())
}

#[test]
fn check_fails_for_what_breaks_cloakroom() -> anyhow::Result<()> {
    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let run = admin(&format!("redis://127.0.0.1:{port}"), &["check"])?;
    ensure!(
        !run.success && run.stdout.contains("FAIL  connect"),
        "{}",
        run.stdout
    );
    // A wrong password.
    let acl = RedisServer::spawn_acl()?;
    let run = admin(&acl.url_as(("cloakroom", "wrong")), &["check"])?;
    ensure!(
        !run.success && run.stdout.contains("FAIL  connect"),
        "{}",
        run.stdout
    );
    // A user who may not write the per-user index.
    let server = RedisServer::spawn()?;
    redis::cmd("ACL")
        .arg("SETUSER")
        .arg("limited")
        .arg("on")
        .arg(">limited-password")
        .arg("~*")
        .arg("+@all")
        .arg("-zadd")
        .query::<()>(&mut server.connection()?)?;
    let run = admin(&server.url_as(("limited", "limited-password")), &["check"])?;
    ensure!(!run.success, "{}", run.stdout);
    ensure!(
        run.stdout.contains("FAIL  permissions") && run.stdout.contains("user's index"),
        "{}",
        run.stdout
    );
    // An eviction policy that can evict a user's index while its sessions live on.
    let evicting = RedisServer::spawn_with_args(&[
        "--maxmemory",
        "100mb",
        "--maxmemory-policy",
        "allkeys-lru",
    ])?;
    let run = admin(&evicting.url(), &["check"])?;
    ensure!(
        !run.success && run.stdout.contains("FAIL  eviction"),
        "{}",
        run.stdout
    );
    Ok(())
}

#[test]
fn ids_and_values_that_begin_with_a_dash_are_read_as_values() -> anyhow::Result<()> {
    use clap_check::parses;
    for args in [
        ["sessions", "end", "--user", "ann", "--id", "-Oabc123"],
        ["sessions", "end", "--user", "ann", "--except", "-Oabc123"],
        ["sessions", "end", "--user", "-ann", "--id", "x"],
        ["session", "show", "--cookie", "-abc.def", "", ""],
    ] {
        let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
        ensure!(parses(&args)?, "{args:?} was not accepted");
    }
    Ok(())
}

mod clap_check {
    // Whether the binary accepts `args` (with nothing to connect to, it fails later, on the
    // missing REDIS_URL, not on the arguments: clap's usage errors exit with 2).
    pub(super) fn parses(args: &[&str]) -> anyhow::Result<bool> {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_cloakroom-admin"))
            .args(args)
            .env_clear()
            .output()?;
        Ok(output.status.code() != Some(2))
    }
}

// The Redis user docs/OPERATIONS.md gives the admin tool, word for word.
const TOOL_RULES: &str = "~cloakroom:* resetchannels -@all \
   +evalsha +eval +script|load +del +exists +hget +hmget +hgetall +hset +hdel +hincrby +pexpire \
   +pttl +zadd +zrem +zrange +zremrangebyscore +persist +cluster|slots +cluster|nodes \
   +cluster|info +asking +readonly +ping +info +hello +scan +type +hlen +zcard +memory|usage";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_tool_user_may_run_stats_and_check() -> anyhow::Result<()> {
    let server = RedisServer::spawn_acl()?;
    let mut rules = vec!["SETUSER", "tool", "on", ">tool-password"];
    rules.extend(TOOL_RULES.split_whitespace());
    redis::cmd("ACL")
        .arg(&rules)
        .query::<()>(&mut server.connection()?)?;
    let m = manager(&server.url_as(cloakroom_test::SESSION_USER)).await?;
    for user in ["gus", "gus", "hal"] {
        login(&m, user).await?;
    }
    let tool = server.url_as(("tool", "tool-password"));
    let run = admin(&tool, &["stats", "--json"])?;
    ensure!(run.success, "{}{}", run.stdout, run.stderr);
    let stats: serde_json::Value = serde_json::from_str(&run.stdout)?;
    ensure!(stats["sessions"] == 3 && stats["indexes"] == 2, "{stats}");
    ensure!(stats["bytes_per_session"].as_f64().is_some(), "{stats}");
    let run = admin(&tool, &["check"])?;
    ensure!(run.success, "{}{}", run.stdout, run.stderr);
    ensure!(run.stdout.contains("ok    permissions"), "{}", run.stdout);
    Ok(())
}
