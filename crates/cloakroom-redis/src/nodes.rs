//! Connections of their own to each primary, with the store's address, TLS and credentials:
//! what the near-cache's invalidation channel and the inventory's scans need.

use cloakroom_core::{Error, ErrorKind, Result};
use redis::{ConnectionAddr, ConnectionInfo, Value};

use crate::connection::{Connection, Settings, client, connection_info, tls_certificates};
use crate::credentials::Credentials;
use crate::errors::{corrupt, map_error};

/// Opens RESP3 connections to the primaries of the store's server or cluster.
#[derive(Clone)]
pub(crate) struct NodeClients {
    info: ConnectionInfo,
    certificates: Option<redis::TlsCertificates>,
    cluster: bool,
    credentials: Option<Credentials>,
}

impl NodeClients {
    pub(crate) fn new(settings: &Settings<'_>, data: &Connection) -> Result<Self> {
        // Through Sentinel, the URL names the sentinels: the nodes are reached as the primary is.
        let info = match data.sentinel_primary() {
            Some(primary) => primary,
            None => connection_info(settings)?,
        };
        let certificates = tls_certificates(settings, &info)?;
        Ok(Self {
            info,
            certificates,
            cluster: data.is_cluster(),
            credentials: settings.credentials.cloned(),
        })
    }

    /// `config` logging in with the store's changing credentials, when it has any.
    pub(crate) fn with_credentials(
        &self,
        config: redis::AsyncConnectionConfig,
    ) -> redis::AsyncConnectionConfig {
        crate::credentials::logging_in_with(self.credentials.as_ref(), config)
    }

    /// The primaries' addresses, sorted: the URL's own for a standalone server (the current
    /// primary through Sentinel), every primary
    /// the cluster knows and does not consider failed (`CLUSTER NODES`) for a cluster.
    pub(crate) async fn primaries(&self, data: &Connection) -> Result<Vec<(String, u16)>> {
        // Through Sentinel: wherever the primary is now.
        let primary = data.sentinel_primary();
        let info = primary.as_ref().unwrap_or(&self.info);
        let (host, port) = match info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (host.clone(), *port)
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "connections to each node need a TCP address",
                ));
            }
        };
        if !self.cluster {
            return Ok(vec![(host, port)]);
        }
        // `CLUSTER NODES`, not `CLUSTER SLOTS`: a primary that owns no slot yet (the target of
        // a first migration) takes writes for the keys moving to it, and must be tracked too.
        let mut nodes = redis::cmd("CLUSTER");
        nodes.arg("NODES");
        let reply: Value = data.query(&nodes).await.map_err(|e| {
            if e.code() == Some("NOPERM") {
                Error::with_source(
                    ErrorKind::Config,
                    "the Redis user may not list the cluster's nodes (for the near-cache or a \
                     scan); grant +cluster|nodes",
                    e,
                )
            } else {
                map_error(e)
            }
        })?;
        let text = match reply {
            Value::BulkString(bytes) => String::from_utf8(bytes)
                .map_err(|_| corrupt("CLUSTER NODES answered an unexpected shape"))?,
            Value::VerbatimString { text, .. } => text,
            _ => return Err(corrupt("CLUSTER NODES answered an unexpected shape")),
        };
        let mut primaries = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut parts = line.split(' ');
            let (Some(_id), Some(address), Some(flags)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(corrupt("CLUSTER NODES answered an unexpected shape"));
            };
            let usable = flags.split(',').any(|f| f == "master")
                && !flags
                    .split(',')
                    .any(|f| matches!(f, "fail" | "fail?" | "handshake" | "noaddr"));
            if !usable {
                continue;
            }
            // `ip:port@cport`, or `ip:port@cport,hostname`.
            let endpoint = address.split('@').next().unwrap_or_default();
            let Some((node_host, node_port)) = endpoint.rsplit_once(':') else {
                return Err(corrupt("CLUSTER NODES answered an unexpected shape"));
            };
            let node_port: u16 = node_port
                .parse()
                .map_err(|_| corrupt("CLUSTER NODES answered an unexpected shape"))?;
            // A node that does not know its address is reached where the URL pointed.
            let node_host = if node_host.is_empty() {
                host.clone()
            } else {
                node_host.to_owned()
            };
            primaries.push((node_host, node_port));
        }
        primaries.sort();
        primaries.dedup();
        Ok(primaries)
    }

    /// A RESP3 client for the node at `address` (pushes need RESP3).
    pub(crate) fn resp3_client(&self, address: &(String, u16)) -> Result<redis::Client> {
        let (host, port) = address.clone();
        let addr = match self.info.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let redis_settings = self
            .info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let info = self
            .info
            .clone()
            .set_addr(addr)
            .set_redis_settings(redis_settings);
        client(info, self.certificates.clone())
    }
}
