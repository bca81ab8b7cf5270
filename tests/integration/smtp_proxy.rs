//! Test support: a fault-injecting SMTP proxy on 127.0.0.1 in front of the real Postfix.
//!
//! Each accepted connection takes the next [`Fault`] of the script (then [`Fault::Relay`]):
//! relayed to Postfix line by line, except where the fault answers itself — a `421`
//! greeting, `451` to every `RCPT TO`, `451` to the end of the message (Postfix never gets
//! the final `.`, so it keeps nothing), or the final `.` relayed and Postfix's reply
//! swallowed before the connection is closed (the message is queued; the client cannot
//! know). [`SmtpProxy::refuse`] closes the listening port and [`SmtpProxy::listen`] opens
//! it again. Every connection is logged with its fault and the commands the client
//! sent (the message itself excluded), so tests can see who was in each envelope.
//!
//! ferry's SMTP client sends one command at a time (no PIPELINING), so the proxy reads a
//! command, answers or relays it, and relays Postfix's (possibly multi-line) reply.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Relay everything.
    Relay,
    /// Greet with `421 4.3.2 try later` and close, without contacting Postfix.
    Greet421,
    /// Answer every `RCPT TO` with `451 4.3.0` (Postfix never sees it).
    Rcpt451,
    /// Answer the end of the message with `451 4.3.0`; Postfix's connection is dropped
    /// before the final `.`, so it discards the message.
    Data451,
    /// Relay the final `.`, wait for Postfix's reply, swallow it and close the client's
    /// connection: Postfix has the message, the client gets no reply.
    DropAfterDot,
}

/// One connection the proxy accepted.
#[derive(Debug, Clone)]
pub struct Connection {
    pub fault: Fault,
    /// The client's command lines (`MAIL FROM:<…>`, `RCPT TO:<…>`, …), without CRLF.
    pub commands: Vec<String>,
}

#[derive(Default)]
struct State {
    script: VecDeque<Fault>,
    log: Vec<Arc<Mutex<Connection>>>,
}

pub struct SmtpProxy {
    pub port: u16,
    upstream: u16,
    state: Arc<Mutex<State>>,
    rt: tokio::runtime::Runtime,
    accept: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl SmtpProxy {
    /// A proxy to Postfix's plain SMTP port `upstream`, listening on a free port.
    pub fn start(upstream: u16) -> SmtpProxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let proxy = SmtpProxy {
            port,
            upstream,
            state: Arc::default(),
            rt,
            accept: Mutex::new(None),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let (state, upstream) = (self.state.clone(), self.upstream);
        let task = self.rt.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let conn = {
                    let mut s = state.lock().unwrap();
                    let fault = s.script.pop_front().unwrap_or(Fault::Relay);
                    let conn = Arc::new(Mutex::new(Connection {
                        fault,
                        commands: Vec::new(),
                    }));
                    s.log.push(conn.clone());
                    conn
                };
                tokio::spawn(async move {
                    let _ = handle(client, upstream, conn).await;
                });
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }

    /// The faults of the next connections, in order (then relay).
    pub fn script(&self, faults: &[Fault]) {
        self.state.lock().unwrap().script.extend(faults);
    }

    /// Every connection so far, oldest first.
    pub fn connections(&self) -> Vec<Connection> {
        let s = self.state.lock().unwrap();
        s.log.iter().map(|c| c.lock().unwrap().clone()).collect()
    }

    /// Closes the listening port: connections are refused until [`SmtpProxy::listen`].
    pub fn refuse(&self) {
        if let Some(task) = self.accept.lock().unwrap().take() {
            task.abort();
            // Aborting drops the listener once the task has stopped.
            let _ = self.rt.block_on(task);
        }
    }

    /// Listens again on the same port.
    pub fn listen(&self) {
        let listener = self
            .rt
            .block_on(TcpListener::bind(("127.0.0.1", self.port)))
            .expect("bind the proxy's port again");
        self.serve(listener);
    }
}

const TRY_LATER: &[u8] = b"451 4.3.0 try again later (test proxy)\r\n";

async fn handle(
    client: TcpStream,
    upstream: u16,
    conn: Arc<Mutex<Connection>>,
) -> std::io::Result<()> {
    let fault = conn.lock().unwrap().fault;
    let (cr, mut cw) = client.into_split();
    let mut cr = BufReader::new(cr);
    if fault == Fault::Greet421 {
        cw.write_all(b"421 4.3.2 try later\r\n").await?;
        return Ok(());
    }
    let (sr, mut sw) = TcpStream::connect(("127.0.0.1", upstream))
        .await?
        .into_split();
    let mut sr = BufReader::new(sr);
    let greeting = reply(&mut sr).await?;
    cw.write_all(&greeting).await?;
    let mut in_data = false;
    loop {
        let mut line = Vec::new();
        if cr.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if in_data {
            if line != b".\r\n" {
                sw.write_all(&line).await?;
                continue;
            }
            in_data = false;
            match fault {
                Fault::Data451 => {
                    cw.write_all(TRY_LATER).await?;
                    drop((sw, sr));
                    return answer_locally(cr, cw).await;
                }
                Fault::DropAfterDot => {
                    sw.write_all(&line).await?;
                    reply(&mut sr).await?;
                    return Ok(());
                }
                _ => {
                    sw.write_all(&line).await?;
                    cw.write_all(&reply(&mut sr).await?).await?;
                    continue;
                }
            }
        }
        let command = String::from_utf8_lossy(&line).trim_end().to_string();
        conn.lock().unwrap().commands.push(command.clone());
        let upper = command.to_ascii_uppercase();
        if fault == Fault::Rcpt451 && upper.starts_with("RCPT TO") {
            cw.write_all(TRY_LATER).await?;
            continue;
        }
        sw.write_all(&line).await?;
        let answer = reply(&mut sr).await?;
        cw.write_all(&answer).await?;
        if upper == "DATA" && answer.starts_with(b"354") {
            in_data = true;
        }
        if upper == "QUIT" {
            return Ok(());
        }
    }
}

/// After the proxy took the conversation over: `QUIT` and `RSET` answered, anything
/// else closes.
async fn answer_locally(
    mut cr: BufReader<OwnedReadHalf>,
    mut cw: OwnedWriteHalf,
) -> std::io::Result<()> {
    loop {
        let mut line = Vec::new();
        if cr.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let upper = String::from_utf8_lossy(&line)
            .trim_end()
            .to_ascii_uppercase();
        match upper.as_str() {
            "QUIT" => {
                cw.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            "RSET" => cw.write_all(b"250 2.0.0 Ok\r\n").await?,
            _ => {
                cw.write_all(b"421 4.3.0 closing (test proxy)\r\n").await?;
                return Ok(());
            }
        }
    }
}

/// One SMTP reply, all its lines (`250-…` continues, `250 …` ends).
async fn reply(sr: &mut BufReader<OwnedReadHalf>) -> std::io::Result<Vec<u8>> {
    let mut all = Vec::new();
    loop {
        let mut line = Vec::new();
        if sr.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "Postfix closed the connection",
            ));
        }
        all.extend_from_slice(&line);
        if line.len() < 4 || line[3] != b'-' {
            return Ok(all);
        }
    }
}
