//! Connections of their own to each primary, with the store's address, TLS and credentials:
//! what the near-cache's invalidation channel needs.

use cloakroom_core::{Error, ErrorKind, Result};
use redis::{ConnectionAddr, ConnectionInfo, Value};

use crate::connection::{Connection, Settings, client, connection_info, tls_certificates};
use crate::errors::{corrupt, map_error};

/// Opens RESP3 connections to the primaries of the store's server or cluster.
#[derive(Clone)]
pub(crate) struct NodeClients {
    info: ConnectionInfo,
    certificates: Option<redis::TlsCertificates>,
    cluster: bool,
}

impl NodeClients {
    pub(crate) fn new(settings: &Settings<'_>, cluster: bool) -> Result<Self> {
        let info = connection_info(settings)?;
        let certificates = tls_certificates(settings, &info)?;
        Ok(Self {
            info,
            certificates,
            cluster,
        })
    }

    /// The primaries' addresses, sorted: the URL's own for a standalone server, the owners of
    /// the slots (`CLUSTER SLOTS`) for a cluster.
    pub(crate) async fn primaries(&self, data: &Connection) -> Result<Vec<(String, u16)>> {
        let (host, port) = match self.info.addr() {
            ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                (host.clone(), *port)
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "the near-cache needs a TCP address",
                ));
            }
        };
        if !self.cluster {
            return Ok(vec![(host, port)]);
        }
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let reply: Value = data.query(&slots).await.map_err(map_error)?;
        let mut primaries = Vec::new();
        let Value::Array(ranges) = reply else {
            return Err(corrupt("CLUSTER SLOTS answered an unexpected shape"));
        };
        for range in ranges {
            let primary = match range {
                Value::Array(parts) => parts.into_iter().nth(2),
                _ => None,
            };
            let Some(Value::Array(node)) = primary else {
                return Err(corrupt("CLUSTER SLOTS answered an unexpected shape"));
            };
            let mut node = node.into_iter();
            let (node_host, node_port) = match (node.next(), node.next()) {
                (Some(Value::BulkString(h)), Some(Value::Int(p))) => (h, p),
                _ => return Err(corrupt("CLUSTER SLOTS answered an unexpected shape")),
            };
            let node_host = match String::from_utf8(node_host) {
                // A node that does not know its address is reached where the URL pointed.
                Ok(h) if h.is_empty() || h == "?" => host.clone(),
                Ok(h) => h,
                Err(_) => return Err(corrupt("CLUSTER SLOTS answered an unexpected shape")),
            };
            let node_port = u16::try_from(node_port)
                .map_err(|_| corrupt("CLUSTER SLOTS answered an unexpected shape"))?;
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
