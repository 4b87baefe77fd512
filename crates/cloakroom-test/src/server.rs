//! Spawning real `redis-server` processes on free ports.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A `redis-server` process owned by a test; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    tls: bool,
}

fn server_binary() -> String {
    std::env::var("CLOAKROOM_REDIS_SERVER").unwrap_or_else(|_| "redis-server".to_owned())
}

fn free_port() -> anyhow::Result<u16> {
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
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        Self::spawn_on_free_port(false, |_| Ok(extra.clone()))
    }

    /// Spawns a server that speaks only TLS, with a certificate for 127.0.0.1 signed by a CA
    /// made for this server alone (see [`RedisServer::ca_certificate_pem`]).
    pub fn spawn_tls() -> anyhow::Result<Self> {
        Self::spawn_on_free_port(true, |server| {
            server.make_certificates()?;
            let dir = server.dir.path();
            let file = |name: &str| dir.join(name).display().to_string();
            Ok(vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                server.port.to_string(),
                "--tls-cert-file".into(),
                file("server.crt"),
                "--tls-key-file".into(),
                file("server.key"),
                "--tls-ca-cert-file".into(),
                file("ca.crt"),
                "--tls-auth-clients".into(),
                "no".into(),
            ])
        })
    }

    // A port found free can be taken before the server binds it: try a few.
    fn spawn_on_free_port(
        tls: bool,
        args: impl Fn(&Self) -> anyhow::Result<Vec<String>>,
    ) -> anyhow::Result<Self> {
        let mut last_error = None;
        for _ in 0..5 {
            let mut server = Self {
                child: None,
                port: free_port()?,
                dir: tempfile::tempdir().context("creating a directory for redis-server")?,
                extra_args: Vec::new(),
                tls,
            };
            server.extra_args = args(&server)?;
            match server.start() {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("redis-server did not start")))
    }

    // A throwaway CA and a server certificate for 127.0.0.1 and localhost, with openssl.
    fn make_certificates(&self) -> anyhow::Result<()> {
        let dir = self.dir.path();
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let steps: [Vec<&str>; 3] = [
            [
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=cloakroom test CA",
                ],
            ]
            .concat(),
            [
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
            vec![
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        ];
        for args in steps {
            let output = Command::new("openssl")
                .args(&args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .output();
            let output = match output {
                Ok(output) => output,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    bail!("`openssl` was not found: install it (Debian: apt-get install openssl)")
                }
                Err(e) => return Err(e).context("running openssl"),
            };
            anyhow::ensure!(
                output.status.success(),
                "openssl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// The PEM certificate of the CA that signed a TLS server's certificate.
    pub fn ca_certificate_pem(&self) -> anyhow::Result<Vec<u8>> {
        anyhow::ensure!(self.tls, "this server does not speak TLS");
        Ok(std::fs::read(self.dir.path().join("ca.crt"))?)
    }

    fn client(&self) -> anyhow::Result<redis::Client> {
        if self.tls {
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(self.ca_certificate_pem()?),
            };
            Ok(redis::Client::build_with_tls(self.url(), certificates)?)
        } else {
            Ok(redis::Client::open(self.url())?)
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn start(&mut self) -> anyhow::Result<()> {
        let binary = server_binary();
        let child = Command::new(&binary)
            .arg("--port")
            .arg(self.port.to_string())
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
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A blocking client for inspecting the server from tests.
    pub fn connection(&self) -> anyhow::Result<redis::Connection> {
        Ok(self
            .client()?
            .get_connection_with_timeout(Duration::from_secs(2))?)
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
