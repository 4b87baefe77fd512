//! Spawning a real Redis Cluster: `redis-server` nodes in cluster mode joined with
//! `redis-cli --cluster create`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::server::{ADMIN_USER, RedisServer, ServerOptions, free_port};

/// How long a node may be unreachable before the others call it failed and its replica takes
/// over. Short, so that failover tests finish quickly.
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

fn cli_binary() -> String {
    std::env::var("CLOAKROOM_REDIS_CLI").unwrap_or_else(|_| "redis-cli".to_owned())
}

/// A Redis Cluster owned by a test: three primaries, each with one replica unless asked
/// otherwise. Every node is killed when this is dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    options: ServerOptions,
}

/// One line of `CLUSTER NODES`, as far as tests need it.
#[derive(Clone, Debug)]
pub struct ClusterNode {
    /// The node's id.
    pub id: String,
    /// Its client port.
    pub port: u16,
    /// Whether it is a primary.
    pub is_primary: bool,
    /// The id of its primary, for a replica.
    pub primary_id: Option<String>,
    /// Whether the others consider it failed.
    pub failed: bool,
    /// How many slots it serves.
    pub slot_count: u32,
}

impl RedisCluster {
    /// Three primaries and three replicas, plain TCP, no ACL.
    pub fn spawn() -> anyhow::Result<Self> {
        Self::spawn_with(ServerOptions::default(), 1)
    }

    /// Three primaries with `replicas` replicas each; every node spawned with `options` (TLS
    /// for client, cluster-bus and replication links; ACL users).
    pub fn spawn_with(options: ServerOptions, replicas: usize) -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        for _ in 0..3 * (1 + replicas) {
            nodes.push(RedisServer::spawn_on_free_port(options.clone(), |_| {
                node_args(&options)
            })?);
        }
        let cluster = Self { nodes, options };
        let mut args = vec!["--cluster".to_owned(), "create".to_owned()];
        args.extend(
            cluster
                .nodes
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port())),
        );
        args.extend([
            "--cluster-replicas".to_owned(),
            replicas.to_string(),
            "--cluster-yes".to_owned(),
        ]);
        cluster.redis_cli(&args)?;
        cluster.wait_until_healthy(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Runs `redis-cli` with the TLS and login flags this cluster needs, followed by `args`.
    pub fn redis_cli(&self, args: &[String]) -> anyhow::Result<String> {
        let mut command = Command::new(cli_binary());
        if let Some(certificates) = &self.options.tls {
            command
                .args(["--tls", "--cacert"])
                .arg(certificates.file("ca.crt"));
        }
        if self.options.acl {
            let (user, password) = ADMIN_USER;
            command.args(["--user", user, "--pass", password, "--no-auth-warning"]);
        }
        let output = match command.args(args).stdin(Stdio::null()).output() {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "`{}` was not found: install it (Debian: apt-get install redis-tools) or point \
                 CLOAKROOM_REDIS_CLI at it",
                cli_binary()
            ),
            Err(e) => return Err(e).context("running redis-cli"),
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        anyhow::ensure!(
            output.status.success() && !stdout.contains("[ERR]"),
            "redis-cli {} failed: {stdout}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(stdout)
    }

    /// A URL naming the first node, as an application would be given (any node works).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// The first node's URL with a user and password in it.
    pub fn url_as(&self, user: (&str, &str)) -> String {
        self.nodes[0].url_as(user)
    }

    /// The CA certificate, for a TLS cluster.
    pub fn ca_certificate_pem(&self) -> anyhow::Result<Vec<u8>> {
        self.nodes[0].ca_certificate_pem()
    }

    /// Every node, in the order they were spawned.
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// One node, to kill, pause or restart.
    pub fn node_mut(&mut self, index: usize) -> Option<&mut RedisServer> {
        self.nodes.get_mut(index)
    }

    /// The index of the node listening on `port`.
    pub fn index_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|n| n.port() == port)
    }

    /// `CLUSTER NODES` as seen by the node at `index`.
    pub fn topology_seen_by(&self, index: usize) -> anyhow::Result<Vec<ClusterNode>> {
        let node = self.nodes.get(index).context("no such node")?;
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut node.connection()?)?;
        parse_nodes(&text)
    }

    /// `CLUSTER NODES` as seen by the first running node that answers.
    pub fn topology(&self) -> anyhow::Result<Vec<ClusterNode>> {
        let mut last_error = None;
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let text = node.connection().and_then(|mut connection| {
                Ok(redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query::<String>(&mut connection)?)
            });
            match text {
                Ok(text) => return parse_nodes(&text),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no node is running")))
    }

    /// The index of the primary serving `key`'s slot, per the cluster's own view.
    pub fn primary_of_key(&self, key: &str) -> anyhow::Result<usize> {
        let node = self
            .nodes
            .iter()
            .find(|n| n.is_running())
            .context("no node is running")?;
        let mut connection = node.connection()?;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut connection)?;
        // Each entry: start, end, [host, port, id, ...] of the primary, then its replicas.
        let slots: Vec<Vec<redis::Value>> =
            redis::cmd("CLUSTER").arg("SLOTS").query(&mut connection)?;
        for entry in slots {
            let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) =
                (entry.first(), entry.get(1))
            else {
                bail!("CLUSTER SLOTS entry without a range");
            };
            if (*start..=*end).contains(&i64::from(slot)) {
                let port = match entry.get(2) {
                    Some(redis::Value::Array(primary)) => match primary.get(1) {
                        Some(redis::Value::Int(port)) => u16::try_from(*port)?,
                        _ => bail!("CLUSTER SLOTS has no port"),
                    },
                    _ => bail!("CLUSTER SLOTS has no primary"),
                };
                return self
                    .index_of_port(port)
                    .context("the slot's primary is not one of ours");
            }
        }
        bail!("slot {slot} is not served")
    }

    /// Waits until every running node says `cluster_state:ok`, sees the same primaries, and every
    /// replica's link to its primary is up.
    pub fn wait_until_healthy(&self, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            match self.health() {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() > limit => {
                    return Err(e.context(format!("the cluster was not healthy within {limit:?}")));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn health(&self) -> anyhow::Result<()> {
        let expected_primaries = 3;
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            let mut connection = node.connection()?;
            let info: String = redis::cmd("CLUSTER").arg("INFO").query(&mut connection)?;
            anyhow::ensure!(
                info.contains("cluster_state:ok"),
                "node {} is not ok",
                node.port()
            );
            let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut connection)?;
            let view = parse_nodes(&nodes)?;
            let serving = view
                .iter()
                .filter(|n| n.is_primary && !n.failed && n.slot_count > 0)
                .count();
            anyhow::ensure!(
                serving == expected_primaries,
                "node {} sees {serving} serving primaries",
                node.port()
            );
            // Just after `--cluster create`, a node can still see a new replica as a primary
            // without slots: not settled yet.
            let unsettled = view
                .iter()
                .filter(|n| n.is_primary && !n.failed && n.slot_count == 0)
                .count();
            anyhow::ensure!(
                unsettled == 0,
                "node {} sees {unsettled} primaries without slots",
                node.port()
            );
            let me = view
                .iter()
                .find(|n| n.port == node.port())
                .context("a node does not list itself")?;
            if !me.is_primary {
                let replication: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut connection)?;
                anyhow::ensure!(
                    replication.contains("master_link_status:up"),
                    "replica {} is not in sync",
                    node.port()
                );
            }
        }
        Ok(())
    }
}

fn node_args(options: &ServerOptions) -> anyhow::Result<Vec<String>> {
    let mut args: Vec<String> = [
        "--cluster-enabled",
        "yes",
        // Relative to the node's own directory.
        "--cluster-config-file",
        "nodes.conf",
        // Replicas copy over the socket at once instead of waiting 5 s for more replicas.
        "--repl-diskless-sync-delay",
        "0",
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend([
        "--cluster-node-timeout".to_owned(),
        NODE_TIMEOUT.as_millis().to_string(),
        // The bus port defaults to port + 10000, which may be taken or out of range.
        "--cluster-port".to_owned(),
        free_port()?.to_string(),
    ]);
    if options.tls.is_some() {
        args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"].map(str::to_owned));
    }
    if options.acl {
        let (user, password) = ADMIN_USER;
        args.extend([
            "--masteruser".to_owned(),
            user.to_owned(),
            "--masterauth".to_owned(),
            password.to_owned(),
        ]);
    }
    Ok(args)
}

fn parse_nodes(text: &str) -> anyhow::Result<Vec<ClusterNode>> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            anyhow::ensure!(parts.len() >= 8, "short CLUSTER NODES line: {line}");
            let address = parts[1].split('@').next().unwrap_or_default();
            let port = address
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .parse()
                .with_context(|| format!("no port in {line}"))?;
            let flags = parts[2];
            let slot_count = parts[8..]
                .iter()
                .filter(|range| !range.starts_with('['))
                .map(|range| match range.split_once('-') {
                    Some((a, b)) => {
                        b.parse::<u32>()
                            .unwrap_or(0)
                            .saturating_sub(a.parse().unwrap_or(0))
                            + 1
                    }
                    None => 1,
                })
                .sum();
            Ok(ClusterNode {
                id: parts[0].to_owned(),
                port,
                is_primary: flags.contains("master"),
                primary_id: (parts[3] != "-").then(|| parts[3].to_owned()),
                failed: flags.contains("fail") && !flags.contains("fail?"),
                slot_count,
            })
        })
        .collect()
}
