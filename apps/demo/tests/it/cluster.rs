//! The `cloakroom-demo` binary, started as a user would start it, with `REDIS_URL` naming one
//! node of a running three-primary cluster: it detects cluster mode, serves the tutorial flow
//! over real HTTP, and the sessions it creates spread over every primary.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, ensure};
use cloakroom_test::RedisCluster;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{SECRET, visits};

/// The demo process, killed when dropped.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary and waits for its "listening" line; returns it with its address.
fn start_demo(redis_url: &str) -> anyhow::Result<(Demo, String, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloakroom-demo"))
        .env("REDIS_URL", redis_url)
        // Behaviour, not speed, is tested here: a loaded machine must not fail the start-up.
        .env("REDIS_TIMEOUT_MS", "10000")
        .env("SECRET_KEY", std::str::from_utf8(SECRET)?)
        .env("BIND", &address)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting cloakroom-demo")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let demo = Demo(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = String::new();
    for line in lines.by_ref() {
        let line = line?;
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("listening on") {
            return Ok((demo, address, banner));
        }
    }
    anyhow::bail!("cloakroom-demo exited before listening: {banner}")
}

/// One HTTP/1.1 request over a fresh connection: the status, the `Set-Cookie` pair if any,
/// and the body.
async fn http(
    address: &str,
    request_line: &str,
    cookie: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, Option<String>, String)> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut request =
        format!("{request_line} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no end of headers")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    let cookie = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or(l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    Ok((status, cookie, body.to_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_binary_works_on_one_cluster_node_url() -> anyhow::Result<()> {
    let cluster = RedisCluster::spawn()?;
    let (_demo, address, banner) = start_demo(&cluster.url())?;
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
    ensure!(per_primary.iter().sum::<i64>() == users);
    Ok(())
}
