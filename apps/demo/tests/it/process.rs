//! The demo binaries, started as a user would start them, and spoken to over real HTTP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::SECRET;

/// One of the demo's binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binary {
    Axum,
    Actix,
}

impl Binary {
    pub(crate) const BOTH: [Binary; 2] = [Binary::Axum, Binary::Actix];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Binary::Axum => "cloakroom-demo",
            Binary::Actix => "cloakroom-demo-actix",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Binary::Axum => env!("CARGO_BIN_EXE_cloakroom-demo"),
            Binary::Actix => env!("CARGO_BIN_EXE_cloakroom-demo-actix"),
        }
    }
}

/// Runs `binary` with `environment` until it exits (it is expected to refuse its settings);
/// returns its exit status and what it wrote to stderr.
pub(crate) fn run_to_exit(
    binary: Binary,
    environment: &[(&str, &str)],
) -> anyhow::Result<(std::process::ExitStatus, String)> {
    let mut child = Command::new(binary.path())
        .env_remove("REDIS_URL")
        .env("BIND", "127.0.0.1:0")
        .env("RUST_LOG", "off")
        .envs(environment.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.name()))?;
    // A binary that accepted the settings would serve forever: give up after a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{} accepted {environment:?} and kept running",
                binary.name()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr)?;
    }
    Ok((status, stderr))
}

/// The demo process, killed when dropped.
pub(crate) struct DemoProcess(Child);

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `binary` with `environment` (besides the test secret and a free port; `RUST_LOG=warn`
/// unless `environment` says otherwise)
/// and waits for its "listening" line; returns it with its address and its banner.
pub(crate) fn start(
    binary: Binary,
    environment: &[(&str, &str)],
) -> anyhow::Result<(DemoProcess, String, String)> {
    let (demo, address, banner, _) = start_reading(binary, environment)?;
    Ok((demo, address, banner))
}

/// [`start`], also returning what the process writes to stdout after its banner, a line at a
/// time (read on a thread of its own, so that the process never blocks on a full pipe).
pub(crate) fn start_reading(
    binary: Binary,
    environment: &[(&str, &str)],
) -> anyhow::Result<(
    DemoProcess,
    String,
    String,
    std::sync::mpsc::Receiver<String>,
)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let address = format!("127.0.0.1:{port}");
    let mut child = Command::new(binary.path())
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .envs(environment.iter().copied())
        .env("SECRET_KEY", std::str::from_utf8(SECRET)?)
        .env("BIND", &address)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", binary.name()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let demo = DemoProcess(child);
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = String::new();
    for line in lines.by_ref() {
        let line = line?;
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("listening on") {
            let (sender, receiver) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
            return Ok((demo, address, banner, receiver));
        }
    }
    anyhow::bail!("{} exited before listening: {banner}", binary.name())
}

/// A response as it came over the wire.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) status: u16,
    /// The headers, names in lower case, in order.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Exchange {
    /// The values of the header `name` (lower case).
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One HTTP/1.1 request over a fresh connection.
pub(crate) async fn exchange(
    address: &str,
    request_line: &str,
    cookie: Option<&str>,
    body: &str,
) -> anyhow::Result<Exchange> {
    match cookie {
        Some(cookie) => exchange_with(address, request_line, &[("Cookie", cookie)], body).await,
        None => exchange_with(address, request_line, &[], body).await,
    }
}

/// One HTTP/1.1 request with these extra headers over a fresh connection.
pub(crate) async fn exchange_with(
    address: &str,
    request_line: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> anyhow::Result<Exchange> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut request =
        format!("{request_line} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
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
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .context("no status")?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Exchange {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// One HTTP/1.1 request over a fresh connection: the status, the first `Set-Cookie` pair if
/// any, and the body.
pub(crate) async fn http(
    address: &str,
    request_line: &str,
    cookie: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, Option<String>, String)> {
    let reply = exchange(address, request_line, cookie, body).await?;
    let cookie = reply
        .all("set-cookie")
        .first()
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    Ok((reply.status, cookie, reply.body))
}
