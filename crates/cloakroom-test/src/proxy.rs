//! A TCP proxy in front of Redis that counts the commands clients send: the honest way to count
//! round trips, since `INFO commandstats` also counts commands run inside scripts.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Forwards `127.0.0.1:port()` to an upstream Redis and records each command's name.
pub struct CountingProxy {
    port: u16,
    commands: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Starts a proxy to `127.0.0.1:upstream_port` on a free port.
    pub async fn start(upstream_port: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let recorded = commands.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    if let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)).await {
                        let _ = relay(client, upstream, recorded).await;
                    }
                });
            }
        });
        Ok(Self {
            port,
            commands,
            task,
        })
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Names (upper case) of the commands sent so far, in order.
    pub fn commands(&self) -> Vec<String> {
        self.commands.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Forgets the commands recorded so far.
    pub fn reset(&self) {
        if let Ok(mut c) = self.commands.lock() {
            c.clear();
        }
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    upstream: TcpStream,
    recorded: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let replies = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
    });
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = client_read.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&chunk[..n]);
        // Record before forwarding, so a test that saw the reply also sees the command.
        while let Some((name, used)) = parse_command(&pending) {
            if let Ok(mut r) = recorded.lock() {
                r.push(name);
            }
            pending.drain(..used);
        }
        upstream_write.write_all(&chunk[..n]).await?;
    }
    replies.abort();
    Ok(())
}

fn read_line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let rest = buf.get(at..)?;
    let end = rest.windows(2).position(|w| w == b"\r\n")?;
    Some((&rest[..end], at + end + 2))
}

fn read_number(line: &[u8]) -> Option<usize> {
    std::str::from_utf8(line).ok()?.parse().ok()
}

/// One complete RESP array command at the start of `buf`: its name and its length in bytes.
fn parse_command(buf: &[u8]) -> Option<(String, usize)> {
    let (header, mut at) = read_line(buf, 0)?;
    let count = read_number(header.strip_prefix(b"*")?)?;
    let mut name = String::new();
    for i in 0..count {
        let (len_line, next) = read_line(buf, at)?;
        let len = read_number(len_line.strip_prefix(b"$")?)?;
        let end = next.checked_add(len)?;
        let data = buf.get(next..end)?;
        if buf.get(end..end.checked_add(2)?)? != b"\r\n" {
            return None;
        }
        if i == 0 {
            name = String::from_utf8_lossy(data).to_uppercase();
        }
        at = end + 2;
    }
    Some((name, at))
}

#[cfg(test)]
mod tests {
    use super::parse_command;

    #[test]
    fn parses_whole_commands_only() {
        let cmd = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        assert_eq!(parse_command(cmd), Some(("GET".to_owned(), cmd.len())));
        assert_eq!(parse_command(&cmd[..cmd.len() - 1]), None);
    }
}
