//! A primary, its replica and three sentinels watching them, spawned on free ports: what a
//! self-hosted Redis behind Sentinel looks like, small enough for a test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::server::{ADMIN_USER, RedisServer, ServerOptions, free_port, server_binary};

/// The name the sentinels know the primary by.
pub const SERVICE: &str = "sessions";

/// How long the sentinels wait for a silent primary before they agree it is down.
pub const DOWN_AFTER: Duration = Duration::from_millis(1000);

/// A primary, one replica and three sentinels (quorum 2).
pub struct SentinelGroup {
    servers: Vec<RedisServer>,
    sentinels: Vec<SentinelProcess>,
    acl: bool,
}

impl SentinelGroup {
    /// Spawns the group and waits until the sentinels know the primary, the replica and each
    /// other, so that a failover can happen.
    pub fn spawn() -> anyhow::Result<Self> {
        Self::spawn_with(ServerOptions::default())
    }

    /// As [`SentinelGroup::spawn`], the servers of the given kind (an ACL server's replica and
    /// the sentinels log in as [`ADMIN_USER`]). TLS is not supported by this harness.
    pub fn spawn_with(options: ServerOptions) -> anyhow::Result<Self> {
        anyhow::ensure!(
            options.tls.is_none(),
            "the Sentinel harness speaks plain TCP"
        );
        let acl = options.acl;
        // Replicas sync at once (the default waits 5 s for more replicas to share a transfer).
        let mut options = options;
        options
            .args
            .extend(["--repl-diskless-sync-delay".to_owned(), "0".to_owned()]);
        let primary = RedisServer::spawn_with(options.clone())?;
        let mut replica_args = options.args.clone();
        replica_args.extend([
            "--replicaof".to_owned(),
            "127.0.0.1".to_owned(),
            primary.port().to_string(),
        ]);
        if acl {
            let (user, password) = ADMIN_USER;
            replica_args.extend([
                "--masteruser".into(),
                user.into(),
                "--masterauth".into(),
                password.into(),
            ]);
        }
        let replica = RedisServer::spawn_with(ServerOptions {
            args: replica_args,
            ..options
        })?;
        let mut group = Self {
            servers: vec![primary, replica],
            sentinels: Vec::new(),
            acl,
        };
        let primary_port = group.servers[0].port();
        for _ in 0..3 {
            group
                .sentinels
                .push(SentinelProcess::spawn(primary_port, acl)?);
        }
        group.wait_until_ready(Duration::from_secs(30))?;
        Ok(group)
    }

    /// `redis+sentinel://h:p,h:p,h:p/SERVICE`, with the session user's credentials on an ACL
    /// group when `user` is given.
    pub fn url(&self, user: Option<(&str, &str)>) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        let credentials = user.map_or_else(String::new, |(u, p)| format!("{u}:{p}@"));
        format!(
            "redis+sentinel://{credentials}{}/{SERVICE}",
            hosts.join(",")
        )
    }

    /// The servers: the first started as the primary, the second as its replica.
    pub fn servers_mut(&mut self) -> &mut [RedisServer] {
        &mut self.servers
    }

    /// The port of the server the sentinels call the primary now.
    pub fn primary_port(&self) -> anyhow::Result<u16> {
        let reply = self.ask_sentinel(&["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE])?;
        let port = reply
            .lines()
            .nth(1)
            .context("the sentinel named no primary")?
            .trim()
            .parse()?;
        Ok(port)
    }

    /// Waits until the sentinels name a primary other than `old_port` and it takes writes.
    pub fn wait_for_failover(&self, old_port: u16, limit: Duration) -> anyhow::Result<u16> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(port) = self.primary_port()
                && port != old_port
                && let Some(server) = self.servers.iter().find(|s| s.port() == port)
                && role_of(server).is_ok_and(|role| role == "master")
            {
                return Ok(port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("no failover within {limit:?}")
    }

    fn wait_until_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < limit {
            let ready = self.sentinels.iter().all(|sentinel| {
                let master = sentinel.ask(&["SENTINEL", "MASTER", SERVICE]);
                let replicas = sentinel.ask(&["SENTINEL", "REPLICAS", SERVICE]);
                match (master, replicas) {
                    (Ok(master), Ok(replicas)) => {
                        last = master.clone();
                        field(&master, "num-other-sentinels").as_deref() == Some("2")
                            && replicas.contains("slave")
                            && !replicas.contains("s_down")
                    }
                    _ => false,
                }
            });
            // And the replica holds the primary's data.
            let synced = self.servers.get(1).is_some_and(|replica| {
                redis::cmd("INFO")
                    .arg("replication")
                    .query::<String>(&mut match replica.connection() {
                        Ok(c) => c,
                        Err(_) => return false,
                    })
                    .is_ok_and(|info| info.contains("master_link_status:up"))
            });
            if ready && synced {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the sentinels did not come together within {limit:?}: {last}")
    }

    fn ask_sentinel(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut last_error = None;
        for sentinel in &self.sentinels {
            match sentinel.ask(args) {
                Ok(reply) => return Ok(reply),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no sentinel")))
    }

    /// Whether the group's servers run with ACL users.
    pub fn is_acl(&self) -> bool {
        self.acl
    }
}

// `ROLE`'s first word on `server`.
fn role_of(server: &RedisServer) -> anyhow::Result<String> {
    let reply: Vec<redis::Value> = redis::cmd("ROLE").query(&mut server.connection()?)?;
    match reply.first() {
        Some(redis::Value::BulkString(role)) => Ok(String::from_utf8_lossy(role).into_owned()),
        Some(redis::Value::SimpleString(role)) => Ok(role.clone()),
        _ => bail!("ROLE answered {reply:?}"),
    }
}

// The value after `name` in a flat `name value name value` reply printed a line each.
fn field(reply: &str, name: &str) -> Option<String> {
    let mut lines = reply.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name {
            return lines.next().map(|v| v.trim().to_owned());
        }
    }
    None
}

/// One `redis-server --sentinel` process, killed when dropped.
struct SentinelProcess {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl SentinelProcess {
    fn spawn(primary_port: u16, acl: bool) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir().context("creating a directory for a sentinel")?;
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            // A sentinel rewrites its configuration file as it learns: it must be its own.
            let config: PathBuf = dir.path().join(format!("sentinel-{port}.conf"));
            let mut text = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile {dir}/sentinel-{port}.log\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {SERVICE} {down}\n\
                 sentinel failover-timeout {SERVICE} 5000\n\
                 sentinel parallel-syncs {SERVICE} 1\n",
                dir = dir.path().display(),
                down = DOWN_AFTER.as_millis(),
            );
            if acl {
                let (user, password) = ADMIN_USER;
                text.push_str(&format!(
                    "sentinel auth-user {SERVICE} {user}\nsentinel auth-pass {SERVICE} {password}\n"
                ));
            }
            std::fs::write(&config, text).context("writing a sentinel's configuration")?;
            let mut child = Command::new(server_binary())
                .arg(&config)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("spawning a sentinel")?;
            let started = Instant::now();
            let mut up = false;
            while started.elapsed() < Duration::from_secs(5) {
                if ping(port) {
                    up = true;
                    break;
                }
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = Some(anyhow::anyhow!("a sentinel exited with {status}"));
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if up {
                return Ok(Self {
                    child,
                    port,
                    _dir: dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("a sentinel did not start")))
    }

    // One command, its reply printed a value a line (nested replies flattened).
    fn ask(&self, args: &[&str]) -> anyhow::Result<String> {
        ask(self.port, args)
    }
}

fn ping(port: u16) -> bool {
    ask(port, &["PING"]).is_ok()
}

fn ask(port: u16, args: &[&str]) -> anyhow::Result<String> {
    {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        let mut connection = client.get_connection_with_timeout(Duration::from_secs(1))?;
        connection.set_read_timeout(Some(Duration::from_secs(1)))?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let reply: redis::Value = cmd.query(&mut connection)?;
        let mut text = String::new();
        flatten(&reply, &mut text);
        Ok(text)
    }
}

fn flatten(value: &redis::Value, out: &mut String) {
    match value {
        redis::Value::Array(items) | redis::Value::Set(items) => {
            for item in items {
                flatten(item, out);
            }
        }
        redis::Value::Map(entries) => {
            for (k, v) in entries {
                flatten(k, out);
                flatten(v, out);
            }
        }
        redis::Value::BulkString(bytes) => {
            out.push_str(&String::from_utf8_lossy(bytes));
            out.push('\n');
        }
        redis::Value::SimpleString(text) => {
            out.push_str(text);
            out.push('\n');
        }
        redis::Value::Int(n) => {
            out.push_str(&n.to_string());
            out.push('\n');
        }
        _ => {}
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
