//! The IMAP side of query by email: one session with the request mailbox. Every command
//! gives up after the account's `timeout`. Bodies are fetched only with `BODY.PEEK[]`
//! (which never sets `\Seen`), after the size, flags and headers (RFC 9051 §6.4.5); a
//! handled mail is moved with `UID MOVE` (RFC 6851), or, on a server without MOVE, copied,
//! flagged `\Deleted` and expunged by UID (`UID EXPUNGE`, RFC 4315) so that no other
//! client's deletions are swept along.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_imap::{Client, Session};
use futures_util::TryStreamExt;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::{ImapSpec, SmtpSecurity};

/// What went wrong talking to the IMAP server, in words for the operator (never the
/// password).
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to {server}: {message}")]
    Connect { server: String, message: String },
    #[error("{server} refused the login of `{user}`: {message}")]
    Login {
        server: String,
        user: String,
        message: String,
    },
    #[error("{server}: {what} took longer than {secs} s")]
    Timeout {
        server: String,
        what: String,
        secs: u64,
    },
    #[error("{server}: {what} failed: {message}")]
    Command {
        server: String,
        what: String,
        message: String,
    },
}

/// A stream the IMAP client reads and writes: TCP or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Stream for T {}
type Boxed = Box<dyn Stream>;

/// One message's size, flags and header section, before its body is read.
#[derive(Debug, Clone)]
pub struct Meta {
    pub uid: u32,
    pub size: u64,
    pub deleted: bool,
    pub header: Vec<u8>,
}

/// An open, logged-in session.
pub struct Imap {
    session: Session<Boxed>,
    server: String,
    timeout: std::time::Duration,
    /// The server offers `MOVE` (RFC 6851).
    pub can_move: bool,
    /// The server offers `UIDPLUS` (RFC 4315: `UID EXPUNGE`).
    pub uidplus: bool,
    /// The server offers `IDLE` (RFC 2177).
    pub idle: bool,
    /// The number of messages in the folder last selected.
    pub exists: u32,
}

impl Imap {
    /// Connects (TLS as `security` says, checking the certificate against the system's
    /// roots plus `ca_file`) and logs in.
    pub async fn connect(spec: &ImapSpec) -> Result<Imap, ImapError> {
        let server = format!("IMAP server {}:{}", spec.host, spec.port);
        let limit = spec.timeout;
        let timeout = |what: &str| ImapError::Timeout {
            server: server.clone(),
            what: what.to_string(),
            secs: limit.as_secs(),
        };
        let connect_err = |message: String| ImapError::Connect {
            server: server.clone(),
            message,
        };
        let tcp = tokio::time::timeout(limit, TcpStream::connect((spec.host.as_str(), spec.port)))
            .await
            .map_err(|_| timeout("connecting"))?
            .map_err(|e| connect_err(e.to_string()))?;
        let stream: Boxed = match spec.security {
            SmtpSecurity::Tls => {
                let tls = tokio::time::timeout(limit, tls_connect(spec, tcp))
                    .await
                    .map_err(|_| timeout("the TLS handshake"))??;
                Box::new(tls)
            }
            SmtpSecurity::StartTls => {
                let mut client = Client::new(Box::new(tcp) as Boxed);
                greeting(&mut client, limit, &server).await?;
                tokio::time::timeout(limit, client.run_command_and_check_ok("STARTTLS", None))
                    .await
                    .map_err(|_| timeout("STARTTLS"))?
                    .map_err(|e| {
                        connect_err(format!(
                            "STARTTLS failed ({e}); the server must offer it (or use `security: tls`)"
                        ))
                    })?;
                let inner = client.into_inner();
                let tls = tokio::time::timeout(limit, tls_connect(spec, inner))
                    .await
                    .map_err(|_| timeout("the TLS handshake"))??;
                Box::new(tls)
            }
            SmtpSecurity::None => Box::new(tcp),
        };
        let mut client = Client::new(stream);
        if spec.security != SmtpSecurity::StartTls {
            greeting(&mut client, limit, &server).await?;
        }
        let session =
            tokio::time::timeout(limit, client.login(&spec.username, spec.password.expose()))
                .await
                .map_err(|_| timeout("logging in"))?
                .map_err(|(e, _)| ImapError::Login {
                    server: server.clone(),
                    user: spec.username.clone(),
                    message: e.to_string(),
                })?;
        let mut imap = Imap {
            session,
            server,
            timeout: limit,
            can_move: false,
            uidplus: false,
            idle: false,
            exists: 0,
        };
        let caps = imap
            .step("CAPABILITY", |s| Box::pin(s.capabilities()))
            .await?;
        imap.can_move = caps.has_str("MOVE");
        imap.uidplus = caps.has_str("UIDPLUS");
        imap.idle = caps.has_str("IDLE");
        Ok(imap)
    }

    /// Runs one command within the timeout.
    async fn step<'s, T>(
        &'s mut self,
        what: &str,
        f: impl FnOnce(
            &'s mut Session<Boxed>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = async_imap::error::Result<T>> + Send + 's>,
        >,
    ) -> Result<T, ImapError> {
        let server = self.server.clone();
        let secs = self.timeout.as_secs();
        match tokio::time::timeout(self.timeout, f(&mut self.session)).await {
            Err(_) => Err(ImapError::Timeout {
                server,
                what: what.to_string(),
                secs,
            }),
            Ok(Err(e)) => Err(ImapError::Command {
                server,
                what: what.to_string(),
                message: e.to_string(),
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Every folder of the account.
    pub async fn folders(&mut self) -> Result<Vec<String>, ImapError> {
        let names = self
            .step("LIST", |s| {
                Box::pin(async move {
                    let list = s.list(Some(""), Some("*")).await?;
                    list.try_collect::<Vec<_>>().await
                })
            })
            .await?;
        Ok(names.iter().map(|n| n.name().to_string()).collect())
    }

    /// Creates the folders of `wanted` that do not exist yet; returns those it created.
    pub async fn ensure_folders(&mut self, wanted: &[&str]) -> Result<Vec<String>, ImapError> {
        let have = self.folders().await?;
        let mut created = Vec::new();
        for w in wanted {
            if !have.iter().any(|h| h == w) {
                let name = w.to_string();
                self.step(&format!("CREATE {w}"), |s| Box::pin(s.create(name)))
                    .await?;
                created.push(w.to_string());
            }
        }
        Ok(created)
    }

    /// The number of messages in each of `folders` (`None` for a folder that does not
    /// exist), without selecting them.
    pub async fn counts(
        &mut self,
        folders: &[&str],
    ) -> Result<BTreeMap<String, Option<u32>>, ImapError> {
        let have = self.folders().await?;
        let mut out = BTreeMap::new();
        for f in folders {
            let n = if have.iter().any(|h| h == f) {
                let name = f.to_string();
                let mb = self
                    .step(&format!("STATUS {f}"), |s| {
                        Box::pin(s.status(name, "(MESSAGES)"))
                    })
                    .await?;
                Some(mb.exists)
            } else {
                None
            };
            out.insert(f.to_string(), n);
        }
        Ok(out)
    }

    /// Selects `folder`; returns its UIDVALIDITY.
    pub async fn select(&mut self, folder: &str) -> Result<u32, ImapError> {
        let name = folder.to_string();
        let mb = self
            .step(&format!("SELECT {folder}"), |s| Box::pin(s.select(name)))
            .await?;
        self.exists = mb.exists;
        mb.uid_validity.ok_or_else(|| ImapError::Command {
            server: self.server.clone(),
            what: format!("SELECT {folder}"),
            message: "the server gives no UIDVALIDITY, so mail cannot be tracked safely".into(),
        })
    }

    /// The UIDs of the selected folder, lowest first.
    pub async fn uids(&mut self) -> Result<Vec<u32>, ImapError> {
        let set = self
            .step("UID SEARCH", |s| Box::pin(s.uid_search("ALL")))
            .await?;
        let mut v: Vec<u32> = set.into_iter().collect();
        v.sort_unstable();
        Ok(v)
    }

    /// Size, flags and header section of `uids` (bodies are not read).
    pub async fn meta(&mut self, uids: &[u32]) -> Result<Vec<Meta>, ImapError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uid_set(uids);
        let fetched = self
            .step("UID FETCH (headers)", |s| {
                Box::pin(async move {
                    let stream = s
                        .uid_fetch(set, "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER])")
                        .await?;
                    stream.try_collect::<Vec<_>>().await
                })
            })
            .await?;
        let mut out: Vec<Meta> = fetched
            .iter()
            .filter_map(|f| {
                Some(Meta {
                    uid: f.uid?,
                    size: u64::from(f.size.unwrap_or(0)),
                    deleted: f
                        .flags()
                        .any(|fl| matches!(fl, async_imap::types::Flag::Deleted)),
                    header: f.header().unwrap_or_default().to_vec(),
                })
            })
            .collect();
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    /// The whole message `uid`, read with `BODY.PEEK[]` (its `\Seen` flag is left alone);
    /// `None` when it is gone.
    pub async fn body(&mut self, uid: u32) -> Result<Option<Vec<u8>>, ImapError> {
        let fetched = self
            .step("UID FETCH (body)", |s| {
                Box::pin(async move {
                    let stream = s.uid_fetch(uid.to_string(), "(UID BODY.PEEK[])").await?;
                    stream.try_collect::<Vec<_>>().await
                })
            })
            .await?;
        Ok(fetched
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body().map(<[u8]>::to_vec)))
    }

    /// Moves `uid` of the selected folder to `folder`.
    pub async fn move_to(&mut self, uid: u32, folder: &str) -> Result<(), ImapError> {
        let (set, dest) = (uid.to_string(), folder.to_string());
        if self.can_move {
            return self
                .step(&format!("UID MOVE to {folder}"), |s| {
                    Box::pin(s.uid_mv(set, dest))
                })
                .await;
        }
        let (set2, set3) = (set.clone(), set.clone());
        self.step(&format!("UID COPY to {folder}"), |s| {
            Box::pin(s.uid_copy(set, dest))
        })
        .await?;
        self.step("UID STORE \\Deleted", |s| {
            Box::pin(async move {
                let stream = s.uid_store(set2, "+FLAGS.SILENT (\\Deleted)").await?;
                stream.try_collect::<Vec<_>>().await
            })
        })
        .await?;
        if self.uidplus {
            self.step("UID EXPUNGE", |s| {
                Box::pin(async move {
                    let stream = s.uid_expunge(set3).await?;
                    stream.try_collect::<Vec<_>>().await
                })
            })
            .await?;
        }
        // Without UIDPLUS the copy stays flagged \Deleted for the server's own expunge:
        // a plain EXPUNGE would also remove what other clients marked.
        Ok(())
    }

    /// Waits with IDLE (RFC 2177) on the selected folder until the server reports a
    /// change or `limit` passes, then ends the session.
    pub async fn idle_wait(self, limit: std::time::Duration) -> Result<(), ImapError> {
        let (server, timeout) = (self.server.clone(), self.timeout);
        let failed = |e: async_imap::error::Error| ImapError::Command {
            server: server.clone(),
            what: "IDLE".into(),
            message: e.to_string(),
        };
        let mut handle = self.session.idle();
        tokio::time::timeout(timeout, handle.init())
            .await
            .map_err(|_| ImapError::Timeout {
                server: server.clone(),
                what: "IDLE".into(),
                secs: timeout.as_secs(),
            })?
            .map_err(failed)?;
        let (wait, _stop) = handle.wait_with_timeout(limit);
        let woke = wait.await.map(|_| ()).map_err(failed);
        if let Ok(Ok(mut session)) = tokio::time::timeout(timeout, handle.done()).await {
            let _ = tokio::time::timeout(timeout, session.logout()).await;
        }
        woke
    }

    /// Logs out (errors are of no interest: the session ends either way).
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(self.timeout, self.session.logout()).await;
    }
}

/// Reads the server's greeting.
async fn greeting(
    client: &mut Client<Boxed>,
    limit: std::time::Duration,
    server: &str,
) -> Result<(), ImapError> {
    match tokio::time::timeout(limit, client.read_response()).await {
        Err(_) => Err(ImapError::Timeout {
            server: server.to_string(),
            what: "the greeting".into(),
            secs: limit.as_secs(),
        }),
        Ok(Ok(Some(_))) => Ok(()),
        Ok(Ok(None)) => Err(ImapError::Connect {
            server: server.to_string(),
            message: "the server closed the connection before its greeting".into(),
        }),
        Ok(Err(e)) => Err(ImapError::Connect {
            server: server.to_string(),
            message: e.to_string(),
        }),
    }
}

/// The TLS handshake, checking the certificate against the system's roots plus
/// `ca_file` and the host name.
async fn tls_connect<S>(
    spec: &ImapSpec,
    stream: S,
) -> Result<tokio_rustls::client::TlsStream<S>, ImapError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let server = format!("IMAP server {}:{}", spec.host, spec.port);
    let err = |message: String| ImapError::Connect {
        server: server.clone(),
        message,
    };
    let config =
        crate::tls::client_config(crate::tls::Check::Full, spec.ca_file.as_deref()).map_err(err)?;
    let name = ServerName::try_from(spec.host.clone()).map_err(|e| err(e.to_string()))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| {
            let hint = crate::tls::failure_hint(&e, false)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            err(format!("TLS handshake failed: {e}{hint}"))
        })
}

/// `1,5,7` for a UID list.
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
