//! Spawning real `redis-server` processes on free ports.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::certificates::TestCertificates;

/// The ACL user the harness itself uses on servers spawned with [`ServerOptions::acl`]: it may do
/// anything (create the cluster, replicate, inspect keys). The default user is turned off.
pub const ADMIN_USER: (&str, &str) = ("admin", "admin-password");

/// The ACL user a session store uses on servers spawned with [`ServerOptions::acl`]: only the
/// commands cloakroom sends (and the ones its scripts call), only on `cloakroom:` keys. This is
/// the least-privilege user the operator guide recommends.
pub const SESSION_USER: (&str, &str) = ("cloakroom", "session-password");

/// The ACL rules of [`SESSION_USER`].
pub const SESSION_USER_RULES: &str = "~cloakroom:* resetchannels -@all +evalsha +eval \
     +script|load +del +wait +exists +hget +hmget +hgetall +hset +hdel +hincrby +pexpire +pttl \
     +zadd +zrem +zrange +zremrangebyscore +persist +cluster|slots +asking +readonly +ping +info";

/// What kind of server to spawn.
#[derive(Clone, Default)]
pub struct ServerOptions {
    /// Speak TLS only, with a certificate from these (shared by every node of a cluster).
    pub tls: Option<Arc<TestCertificates>>,
    /// Turn the default user off and create [`ADMIN_USER`] and [`SESSION_USER`].
    pub acl: bool,
    /// More command-line arguments.
    pub args: Vec<String>,
}

/// A `redis-server` process owned by a test; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    options: ServerOptions,
}

pub(crate) fn server_binary() -> String {
    std::env::var("CLOAKROOM_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

pub(crate) fn free_port() -> anyhow::Result<u16> {
    // Other processes may hold 6379 and more: ask the OS for a port nobody holds right now.
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a probe socket")?;
    Ok(listener.local_addr()?.port())
}

impl RedisServer {
    /// Spawns a server with persistence off on a free port and waits until it answers.
    pub fn spawn() -> anyhow::Result<Self> {
        Self::spawn_with_args(&[])
    }

    /// Spawns a server with extra command-line arguments (for example `--requirepass x`).
    pub fn spawn_with_args(extra: &[&str]) -> anyhow::Result<Self> {
        Self::spawn_with(ServerOptions {
            args: extra.iter().map(|s| (*s).to_owned()).collect(),
            ..ServerOptions::default()
        })
    }

    /// Spawns a server that speaks only TLS, with a certificate for 127.0.0.1 signed by a CA
    /// made for this server alone (see [`RedisServer::ca_certificate_pem`]).
    pub fn spawn_tls() -> anyhow::Result<Self> {
        Self::spawn_with(ServerOptions {
            tls: Some(TestCertificates::generate()?),
            ..ServerOptions::default()
        })
    }

    /// Spawns a server whose default user is off: a store must log in as [`SESSION_USER`]
    /// (see [`RedisServer::url_as`]).
    pub fn spawn_acl() -> anyhow::Result<Self> {
        Self::spawn_with(ServerOptions {
            acl: true,
            ..ServerOptions::default()
        })
    }

    /// Spawns a server of the given kind.
    pub fn spawn_with(options: ServerOptions) -> anyhow::Result<Self> {
        Self::spawn_on_free_port(options, |_| Ok(Vec::new()))
    }

    // A port found free can be taken before the server binds it: try a few. `more_args` adds
    // arguments that depend on the chosen port or directory.
    pub(crate) fn spawn_on_free_port(
        options: ServerOptions,
        more_args: impl Fn(&Self) -> anyhow::Result<Vec<String>>,
    ) -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..5 {
            let mut server = Self {
                child: None,
                port: free_port()?,
                dir: tempfile::tempdir().context("creating a directory for redis-server")?,
                extra_args: Vec::new(),
                options: options.clone(),
            };
            let mut args = server.option_args();
            args.extend(options.args.iter().cloned());
            args.extend(more_args(&server)?);
            server.extra_args = args;
            match server.start() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    fn option_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(certificates) = &self.options.tls {
            args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                self.port.to_string(),
                "--tls-cert-file".into(),
                certificates.file("server.crt"),
                "--tls-key-file".into(),
                certificates.file("server.key"),
                "--tls-ca-cert-file".into(),
                certificates.file("ca.crt"),
                "--tls-auth-clients".into(),
                "no".into(),
            ]);
        } else {
            args.extend(["--port".into(), self.port.to_string()]);
        }
        if self.options.acl {
            let (admin, admin_password) = ADMIN_USER;
            let (user, password) = SESSION_USER;
            // redis-server joins the words after `--user` into one config line: each word must
            // be its own argument (a space inside one would become part of the user name).
            for rules in [
                "default off".to_owned(),
                format!("{admin} on >{admin_password} ~* &* +@all"),
                format!("{user} on >{password} {SESSION_USER_RULES}"),
            ] {
                args.push("--user".into());
                args.extend(rules.split_whitespace().map(str::to_owned));
            }
        }
        args
    }

    /// The PEM certificate of the CA that signed a TLS server's certificate.
    pub fn ca_certificate_pem(&self) -> anyhow::Result<Vec<u8>> {
        self.options
            .tls
            .as_ref()
            .context("this server does not speak TLS")?
            .ca_pem()
    }

    // The harness's own client: as the admin user on an ACL server.
    fn client(&self) -> anyhow::Result<redis::Client> {
        let url = if self.options.acl {
            self.url_as(ADMIN_USER)
        } else {
            self.url()
        };
        match &self.options.tls {
            Some(certificates) => {
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(certificates.ca_pem()?),
                };
                Ok(redis::Client::build_with_tls(url, certificates)?)
            }
            None => Ok(redis::Client::open(url)?),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let binary = server_binary();
        let child = Command::new(&binary)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "`{binary}` was not found: install it (Debian: apt-get install redis-server) \
                 or point CLOAKROOM_REDIS_SERVER at a server binary"
            ),
            Err(e) => return Err(e).with_context(|| format!("spawning {binary}")),
        };
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                bail!("{binary} exited with {status}: {log}");
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                match self.answering_pid() {
                    Some(pid) if Some(pid) == self.child.as_ref().map(Child::id) => return Ok(()),
                    Some(pid) => {
                        // Another process won the race for this port: never adopt its server.
                        self.kill();
                        bail!("port {} is held by another server (pid {pid})", self.port);
                    }
                    None => {}
                }
            }
            if started.elapsed() > Duration::from_secs(10) {
                self.kill();
                bail!("{binary} did not answer on port {} within 10 s", self.port);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    // The process id of the server answering on our port, once it answers.
    fn answering_pid(&self) -> Option<u32> {
        let client = self.client().ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        let info: String = redis::cmd("INFO").arg("server").query(&mut conn).ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://` for a TLS server.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.port)
    }

    /// The URL with a user and password in it, such as [`SESSION_USER`].
    pub fn url_as(&self, (user, password): (&str, &str)) -> String {
        format!(
            "{}://{user}:{password}@127.0.0.1:{}",
            self.scheme(),
            self.port
        )
    }

    fn scheme(&self) -> &'static str {
        if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        }
    }

    /// The directory holding the server's files (log, cluster configuration).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Whether the process is running (not killed; it may be paused).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// A blocking client for inspecting the server from tests. A frozen server makes its calls
    /// fail after two seconds instead of hanging.
    pub fn connection(&self) -> anyhow::Result<redis::Connection> {
        let connection = self
            .client()?
            .get_connection_with_timeout(Duration::from_secs(2))?;
        connection.set_read_timeout(Some(Duration::from_secs(2)))?;
        connection.set_write_timeout(Some(Duration::from_secs(2)))?;
        Ok(connection)
    }

    /// Kills the server with SIGKILL and waits for it to die.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server with SIGSTOP: connections stay open but nothing answers, as when a
    /// network path black-holes packets.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// Thaws a server frozen by [`RedisServer::pause`].
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .child
            .as_ref()
            .map(Child::id)
            .context("the server is not running")?;
        // The shell's built-in `kill`: no dependency on a separate kill program.
        let status = Command::new("sh")
            .args(["-c", "kill \"$1\" \"$2\"", "sh", signal])
            .arg(pid.to_string())
            .status()
            .context("running kill")?;
        anyhow::ensure!(status.success(), "kill {signal} {pid} failed");
        Ok(())
    }

    /// Starts the server again on the same port (empty: persistence is off).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.start()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
