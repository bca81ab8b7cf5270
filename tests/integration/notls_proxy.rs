//! Test support: a proxy on 127.0.0.1 in front of the real PostgreSQL or MariaDB server
//! that makes it look like a server without TLS, the way each protocol says such a server
//! answers, and relays everything else unchanged.
//!
//! - PostgreSQL: the client's `SSLRequest` (length 8, code 80877103) is answered with `N`,
//!   as a server with `ssl = off` answers, and not passed on; the client then sends its
//!   startup message in plain text, which is relayed.
//! - MySQL protocol: the `CLIENT_SSL` capability (0x0800) is cleared in the server's
//!   initial handshake packet, as a server without TLS sends it; a client that needs TLS
//!   must stop there, one that does not goes on in plain text.
//!
//! Every accepted connection is counted, so a test can tell that a client gave up without
//! trying again in plain text.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Which protocol the proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Postgres,
    Mysql,
}

pub struct NoTlsProxy {
    pub port: u16,
    connections: Arc<AtomicUsize>,
    /// TLS requests answered `N` (PostgreSQL) or handshakes whose `CLIENT_SSL` was cleared.
    refusals: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
const CLIENT_SSL: u16 = 0x0800;

impl NoTlsProxy {
    /// Listens on a free loopback port and relays to `127.0.0.1:upstream`.
    pub fn start(protocol: Protocol, upstream: u16) -> NoTlsProxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(TcpListener::bind(("127.0.0.1", 0)))
            .expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let refusals = Arc::new(AtomicUsize::new(0));
        let (c, r) = (connections.clone(), refusals.clone());
        rt.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let _ = relay(protocol, client, upstream, &r).await;
                });
            }
        });
        NoTlsProxy {
            port,
            connections,
            refusals,
            _rt: rt,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// TLS offers refused so far (one per connection that asked for, or was offered, TLS).
    pub fn refusals(&self) -> usize {
        self.refusals.load(Ordering::SeqCst)
    }
}

async fn relay(
    protocol: Protocol,
    mut client: TcpStream,
    upstream: u16,
    refusals: &AtomicUsize,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(("127.0.0.1", upstream)).await?;
    match protocol {
        Protocol::Postgres => {
            let mut first = [0u8; 8];
            client.read_exact(&mut first).await?;
            if first == SSL_REQUEST {
                refusals.fetch_add(1, Ordering::SeqCst);
                client.write_all(b"N").await?;
            } else {
                server.write_all(&first).await?;
            }
        }
        Protocol::Mysql => {
            // Packet header: 3-byte little-endian length, sequence id.
            let mut header = [0u8; 4];
            server.read_exact(&mut header).await?;
            let len =
                usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
            let mut packet = vec![0u8; len];
            server.read_exact(&mut packet).await?;
            // Handshake v10: protocol version (0x0a), server version (NUL-terminated),
            // connection id (4), auth data part 1 (8), filler (1), capabilities (low 2).
            if packet.first() == Some(&0x0a)
                && let Some(nul) = packet[1..].iter().position(|b| *b == 0)
            {
                let at = 1 + nul + 1 + 4 + 8 + 1;
                let caps = u16::from_le_bytes([packet[at], packet[at + 1]]);
                if caps & CLIENT_SSL != 0 {
                    refusals.fetch_add(1, Ordering::SeqCst);
                }
                packet[at..at + 2].copy_from_slice(&(caps & !CLIENT_SSL).to_le_bytes());
            }
            client.write_all(&header).await?;
            client.write_all(&packet).await?;
        }
    }
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}
