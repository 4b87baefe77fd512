//! What an operator sees of the running binaries: metrics in Prometheus's text format on a
//! listener of their own (`METRICS_BIND`), and logs as plain text or JSON lines
//! (`LOG_FORMAT`) whose request span names the session.

use std::time::Duration;

use anyhow::{Context, ensure};
use cloakroom_test::requests::token_of;

use crate::process::{Binary, exchange, exchange_with, start, start_reading};

fn free_address() -> anyhow::Result<String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    Ok(format!("127.0.0.1:{port}"))
}

// An API login (no CSRF token to fetch); the bearer token it was given.
async fn api_login(address: &str) -> anyhow::Result<String> {
    let login = exchange(address, "POST /api/login", None, "username=ann").await?;
    ensure!(login.status == 200, "{login:?}");
    let body: serde_json::Value = serde_json::from_str(&login.body)?;
    Ok(body["token"].as_str().context("no token")?.to_owned())
}

// The value of the sample `series` (name and labels as Prometheus prints them).
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_their_own_listener_by_both_binaries() -> anyhow::Result<()> {
    for binary in Binary::BOTH {
        let metrics = free_address()?;
        let (_demo, address, banner) = start(binary, &[("METRICS_BIND", &metrics)])?;
        ensure!(
            banner.contains(&format!("metrics on http://{metrics}/metrics")),
            "{banner}"
        );
        let token = api_login(&address).await?;
        let bearer = format!("Bearer {token}");
        let headers = [("Authorization", bearer.as_str())];
        for _ in 0..3 {
            let me = exchange_with(&address, "GET /api/me", &headers, "").await?;
            ensure!(me.status == 200, "{me:?}");
        }
        let logout = exchange_with(&address, "POST /api/logout", &headers, "").await?;
        ensure!(logout.status == 204, "{logout:?}");
        let forged = format!("Bearer {}x", &token[..token.len() - 1]);
        exchange_with(&address, "GET /api/me", &[("Authorization", &forged)], "").await?;

        let page = exchange(&metrics, "GET /metrics", None, "").await?;
        ensure!(page.status == 200, "{page:?}");
        ensure!(
            page.all("content-type")
                .first()
                .is_some_and(|v| v.starts_with("text/plain")),
            "{page:?}"
        );
        let body = &page.body;
        let expect = |series: &str, value: f64| -> anyhow::Result<()> {
            ensure!(
                sample(body, series) == Some(value),
                "{}: {series} is {:?}:\n{body}",
                binary.name(),
                sample(body, series)
            );
            Ok(())
        };
        expect(r#"cloakroom_sessions_created_total{origin="login"}"#, 1.0)?;
        expect(r#"cloakroom_sessions_ended_total{reason="logout"}"#, 1.0)?;
        expect(r#"cloakroom_cookies_rejected_total{reason="forged"}"#, 1.0)?;
        expect(r#"cloakroom_store_calls_total{operation="create"}"#, 1.0)?;
        // Three visits counted, one step each; the logout's delete.
        expect(r#"cloakroom_store_calls_total{operation="apply"}"#, 3.0)?;
        expect(r#"cloakroom_store_calls_total{operation="delete"}"#, 1.0)?;
        expect(
            r#"cloakroom_store_call_duration_seconds_count{operation="apply"}"#,
            3.0,
        )?;
        expect(
            r#"cloakroom_store_call_duration_seconds_bucket{operation="apply",le="+Inf"}"#,
            3.0,
        )?;
        expect("cloakroom_memory_store_sessions", 0.0)?;
        // Not served to the site's visitors.
        let visitor = exchange(&address, "GET /metrics", None, "").await?;
        ensure!(visitor.status == 404, "{visitor:?}");
    }
    Ok(())
}

#[test]
fn a_bad_log_format_or_metrics_address_is_refused() -> anyhow::Result<()> {
    for binary in Binary::BOTH {
        for (variable, value) in [("LOG_FORMAT", "yaml"), ("METRICS_BIND", "nowhere")] {
            let (status, stderr) = crate::process::run_to_exit(binary, &[(variable, value)])?;
            ensure!(!status.success(), "{}: {variable}={value}", binary.name());
            ensure!(stderr.contains(variable), "{}: {stderr}", binary.name());
        }
    }
    Ok(())
}

// Lines the process writes within `wait` until one satisfies `found`.
fn lines_until(
    lines: &std::sync::mpsc::Receiver<String>,
    wait: Duration,
    found: impl Fn(&str) -> bool,
) -> anyhow::Result<Vec<String>> {
    let deadline = std::time::Instant::now() + wait;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        let done = found(&line);
        seen.push(line);
        if done {
            return Ok(seen);
        }
    }
    anyhow::bail!("not found in {seen:#?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_name_the_request_and_its_session_and_text_logs_have_no_colour()
-> anyhow::Result<()> {
    for binary in Binary::BOTH {
        let environment = [("LOG_FORMAT", "json"), ("RUST_LOG", "info")];
        let (_demo, address, _, lines) = start_reading(binary, &environment)?;
        let token = api_login(&address).await?;
        let short = token_of(&format!("x={token}"))?.key().short().to_owned();
        let bearer = format!("Bearer {token}");
        exchange_with(
            &address,
            "POST /api/logout",
            &[("Authorization", &bearer)],
            "",
        )
        .await?;
        let seen = lines_until(&lines, Duration::from_secs(10), |line| {
            line.contains("logged out")
        })?;
        let last = seen.last().context("no line")?;
        let event: serde_json::Value = serde_json::from_str(last)
            .with_context(|| format!("{}: not JSON: {last}", binary.name()))?;
        ensure!(event["message"] == "logged out", "{event}");
        ensure!(event["level"] == "INFO", "{event}");
        let span = &event["span"];
        ensure!(span["name"] == "request", "{event}");
        ensure!(
            span["method"] == "POST" && span["path"] == "/api/logout",
            "{event}"
        );
        ensure!(span["session"] == short.as_str(), "{event}");
        ensure!(!last.contains(&token[..20]), "the token was logged: {last}");

        // Text, to a pipe: no colour codes.
        let (_demo, address, _, lines) = start_reading(binary, &[("RUST_LOG", "info")])?;
        let token = api_login(&address).await?;
        let short = token_of(&format!("x={token}"))?.key().short().to_owned();
        let bearer = format!("Bearer {token}");
        exchange_with(
            &address,
            "POST /api/logout",
            &[("Authorization", &bearer)],
            "",
        )
        .await?;
        let seen = lines_until(&lines, Duration::from_secs(10), |line| {
            line.contains("logged out")
        })?;
        let last = seen.last().context("no line")?;
        ensure!(!last.contains('\u{1b}'), "colour codes in {last:?}");
        ensure!(last.contains(&format!("session={short}")), "{last}");
    }
    Ok(())
}
