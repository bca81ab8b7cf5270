//! The `email` channel: one SMTP message per notification (or per part of a split zip),
//! sent with lettre's SMTP client over tokio, one command at a time.
//!
//! (Over 1,000 lines on purpose: the SMTP session, the per-recipient outcome of each
//! command, the TLS modes and the fitting of attachments into parts are one protocol
//! state machine; split apart, each piece would need the others' internals.)
//!
//! - **Message.** `From:` the channel's sender, `To:`/`Cc:` from the notify entry (or the
//!   channel's defaults); `Bcc:` recipients get the message through the envelope only and
//!   never appear in its headers. The subject and the plain-text body come from the
//!   template's `.subject.j2` and `.md.j2`, the HTML body (when the template has one) from
//!   `.html.j2`, as `multipart/alternative`. Result files are attached (base64, byte for
//!   byte) with their MIME type (xlsx, csv, zip).
//! - **Non-ASCII.** lettre encodes subjects and display names as RFC 2047 encoded words and
//!   file names in `Content-Disposition` per RFC 2231 (`filename*=utf-8''%E9%94%80…`, split
//!   into `filename*0*=` … for long names). Clients that predate RFC 2231 look at the
//!   `name` parameter of `Content-Type`, so ferry also sets that, as RFC 2047 encoded words
//!   (what Outlook and Gmail send).
//! - **Message-ID** is ferry's own, `<RUN_ID.CHANNEL@FROM_DOMAIN>` (`.N` after the channel
//!   for its N-th notify entry in the task), so a resend of the same notification carries
//!   the same id; it is the receipt recorded on the run. The parts of a split zip add
//!   `.pN` (`<RUN_ID.CHANNEL.p2@FROM_DOMAIN>`).
//! - **Per recipient.** [`Email::deliver`] sends `MAIL FROM`, then one `RCPT TO` per
//!   envelope recipient not yet delivered (the ledger's [`RecipientRecord`]s say which),
//!   keeping each reply: 2xx recipients get the message, a 5xx recipient is refused for
//!   good, a 4xx one waits for the next attempt. The result is one [`RcptOutcome`] per
//!   (part, recipient). If the connection is lost or times out after the message's final
//!   `.` was written and before the reply, the recipients are [`RcptOutcome::Unconfirmed`]:
//!   the server may have the message (RFC 1047); the [`Idle`] stream tells a failed write
//!   (the message did not go out whole) from a missing reply.
//! - **Size.** A message whose attachments exceed `max_attachment_bytes` is refused as a
//!   permanent failure that names the sizes and the limit (never sent without them).
//!   lettre needs the whole message in memory: each file is read in slices straight into
//!   its base64 body (sized up front), the builder is dropped once the message is
//!   formatted, and the message is dot-stuffed and written a slice at a time, so a 25 MB
//!   attachment peaks at about 140 MB for the whole `ferry run` (docs/benchmarks.md). With
//!   `delivery: auto`, files over the limit are zipped, and a zip still over it is split
//!   into up to `max_parts` parts sent one email each with a manifest ([`super::parts`]).
//! - **Errors.** SMTP 4xx replies, refused or lost connections and timeouts are
//!   [`NotifyError::Retryable`], and so is a server that stops answering for `timeout`
//!   (ferry connects and does implicit TLS itself, so that every read and write has that
//!   limit: lettre's async client bounds only connecting). 5xx replies (including failed
//!   authentication), TLS and certificate failures and a server without STARTTLS are
//!   [`NotifyError::Permanent`].
//!   Messages name the channel, the server and the user, never the password.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use lettre::Address;
use lettre::address::Envelope;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::{
    Attempted, Capabilities, Message, Notifier, NotifyError, RcptOutcome, RcptResult, SizeLimits,
    parts,
};
use crate::config::{EmailSpec, RobotDelivery, SmtpSecurity, format_duration};
use crate::store::{FileRecord, RecipientRecord};
use crate::template::human_bytes;

/// Why a `delivery: link` message carries no files: the task's notify entry or the channel
/// asks for links.
fn link_reason(message: &Message) -> &'static str {
    if message.delivery.is_some() {
        "this task sends links"
    } else {
        "this channel sends links"
    }
}

/// MIME type of `.xlsx` files.
const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// Parses one address, `name@example.com` or `Display Name <name@example.com>`.
pub fn parse_mailbox(text: &str) -> Result<Mailbox, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty address".into());
    }
    t.parse::<Mailbox>().map_err(|_| {
        let why = match t.matches('@').count() {
            0 => "no `@`",
            1 => "not a valid mailbox",
            _ => "more than one `@`",
        };
        format!(
            "invalid address `{t}` ({why}; expected `name@example.com` or \
             `Display Name <name@example.com>`)"
        )
    })
}

/// Whether `host` is the local machine (plain SMTP with a password is allowed there).
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_end_matches('.');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// An `email` channel.
pub struct Email {
    name: String,
    spec: EmailSpec,
}

impl Email {
    pub fn new(name: &str, spec: &EmailSpec) -> Email {
        Email {
            name: name.to_string(),
            spec: spec.clone(),
        }
    }

    /// `host:port`, as messages show the server.
    fn server(&self) -> String {
        if self.spec.host.contains(':') {
            format!("[{}]:{}", self.spec.host, self.spec.port)
        } else {
            format!("{}:{}", self.spec.host, self.spec.port)
        }
    }

    /// The start of every error message: channel, server and user.
    fn context(&self) -> String {
        let user = self
            .spec
            .username
            .as_deref()
            .map(|u| format!(" as `{u}`"))
            .unwrap_or_default();
        format!(
            "channel `{}`: SMTP server {} ({}{user})",
            self.name,
            self.server(),
            self.spec.security.as_str()
        )
    }

    fn permanent(&self, what: impl std::fmt::Display) -> NotifyError {
        NotifyError::Permanent(format!("{}: {what}", self.context()))
    }

    /// ferry's Message-ID for a message of this channel.
    fn message_id(&self, message: &Message, from: &Mailbox) -> String {
        let entry = if message.occurrence > 1 {
            format!(".{}", message.occurrence)
        } else {
            String::new()
        };
        format!(
            "<{}.{}{entry}@{}>",
            message.run_id,
            message.channel,
            from.email.domain()
        )
    }

    /// The certificates this channel trusts: the system's roots plus `ca_file`'s.
    fn roots(&self) -> Result<Vec<CertificateDer<'static>>, NotifyError> {
        crate::tls::trusted_roots(self.spec.ca_file.as_deref()).map_err(|e| self.permanent(e))
    }

    /// TLS for STARTTLS (lettre upgrades the connection), trusting exactly [`Self::roots`].
    fn starttls_parameters(&self) -> Result<TlsParameters, NotifyError> {
        let mut builder = TlsParameters::builder(self.spec.host.clone())
            .certificate_store(CertificateStore::None);
        for cert in self.roots()? {
            let cert = Certificate::from_der(cert.to_vec())
                .map_err(|e| self.permanent(format!("TLS setup failed: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        builder
            .build_rustls()
            .map_err(|e| self.permanent(format!("TLS setup failed: {}", lettre_message(&e))))
    }

    /// TLS for implicit TLS (done here, before SMTP starts), trusting exactly
    /// [`Self::roots`].
    fn tls_connector(&self) -> Result<tokio_rustls::TlsConnector, NotifyError> {
        let mut store = rustls::RootCertStore::empty();
        store.add_parsable_certificates(self.roots()?);
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.permanent(format!("TLS setup failed: {e}")))?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }

    /// Opens an SMTP session: connect, TLS (implicit or STARTTLS), AUTH. Every read and
    /// write gives up after `timeout` without progress.
    async fn open(&self) -> Result<Session, NotifyError> {
        let spec = &self.spec;
        let limit = spec.timeout;
        let write_failed = Arc::new(AtomicBool::new(false));
        let connect = TcpStream::connect((spec.host.as_str(), spec.port));
        let tcp = match tokio::time::timeout(limit, connect).await {
            Err(_) => return Err(self.timed_out("connecting")),
            Ok(Err(e)) => return Err(self.io_failure(&e)),
            Ok(Ok(tcp)) => tcp,
        };
        let peer = tcp.peer_addr().map_err(|e| self.io_failure(&e))?;
        let flag = write_failed.clone();
        let stream: Box<dyn AsyncTokioStream> = if spec.security == SmtpSecurity::Tls {
            let name = ServerName::try_from(spec.host.clone())
                .map_err(|e| self.permanent(format!("`{}`: {e}", spec.host)))?;
            let handshake = self.tls_connector()?.connect(name, tcp);
            match tokio::time::timeout(limit, handshake).await {
                Err(_) => return Err(self.timed_out("the TLS handshake")),
                Ok(Err(e)) => return Err(self.io_failure(&e)),
                Ok(Ok(tls)) => Box::new(Idle::new(tls, peer, limit, flag)),
            }
        } else {
            Box::new(Idle::new(tcp, peer, limit, flag))
        };
        let hello = ClientId::default();
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &hello)
            .await
            .map_err(|e| self.classify(&e))?;
        let starttls = match spec.security {
            SmtpSecurity::StartTls => Some(self.starttls_parameters()?),
            _ => None,
        };
        let ready = async {
            if let Some(tls) = starttls {
                conn.starttls(tls, &hello).await?;
            }
            if let (Some(user), Some(password)) = (&spec.username, &spec.password) {
                let credentials = Credentials::new(user.clone(), password.expose().to_string());
                conn.auth(&[Mechanism::Plain, Mechanism::Login], &credentials)
                    .await?;
            }
            Ok::<_, lettre::transport::smtp::Error>(())
        }
        .await;
        // On failure the connection is dropped, which closes it; after a failed TLS
        // upgrade lettre's own `abort` would write to a stream it no longer has.
        ready.map_err(|e| self.classify(&e))?;
        Ok(Session { conn, write_failed })
    }

    /// One SMTP transaction: `MAIL FROM`, one `RCPT TO` per recipient (each reply kept),
    /// then the message to the accepted ones. Returns each recipient's outcome (in the
    /// order given) and whether the session can carry another transaction.
    async fn transaction(
        &self,
        s: &mut Session,
        from: Option<&Address>,
        rcpts: &[Address],
        raw: &[u8],
    ) -> (Vec<RcptOutcome>, bool) {
        let all = |o: RcptOutcome| vec![o; rcpts.len()];
        let info = s.conn.server_info();
        let mut options = Vec::new();
        let non_ascii = from
            .into_iter()
            .chain(rcpts)
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                return (
                    all(self
                        .refused("an address is not ASCII and the server does not offer SMTPUTF8")),
                    true,
                );
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !raw.is_ascii() {
            if !info.supports_feature(Extension::EightBitMime) {
                return (
                    all(self.refused(
                        "the message is not ASCII and the server does not offer 8BITMIME",
                    )),
                    true,
                );
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        if let Err(e) = s.conn.command(Mail::new(from.cloned(), options)).await {
            let alive = e.status().is_some();
            return (all(self.refusal(&e)), alive);
        }
        let mut out: Vec<Option<RcptOutcome>> = vec![None; rcpts.len()];
        let mut accepted = Vec::new();
        for (i, rcpt) in rcpts.iter().enumerate() {
            match s.conn.command(Rcpt::new(rcpt.clone(), vec![])).await {
                Ok(_) => accepted.push(i),
                Err(e) if e.status().is_some() => out[i] = Some(self.refusal(&e)),
                Err(e) => {
                    // The connection failed: this recipient and the rest wait.
                    let o = self.refusal(&e);
                    return (
                        out.into_iter().map(|r| r.unwrap_or(o.clone())).collect(),
                        false,
                    );
                }
            }
        }
        let finish = |out: Vec<Option<RcptOutcome>>, o: RcptOutcome| -> Vec<RcptOutcome> {
            out.into_iter().map(|r| r.unwrap_or(o.clone())).collect()
        };
        if accepted.is_empty() {
            let alive = s.conn.command(Rset).await.is_ok();
            // Every slot is filled: each recipient was refused.
            return (finish(out, self.refused("no reply")), alive);
        }
        if let Err(e) = s.conn.command(Data).await {
            let alive = e.status().is_some();
            return (finish(out, self.refusal(&e)), alive);
        }
        s.write_failed.store(false, Ordering::SeqCst);
        // In slices, so that lettre's dot-stuffed copy is one slice, not the whole message.
        match s.conn.message_iter(raw.chunks(MESSAGE_SLICE)).await {
            Ok(reply) => (finish(out, RcptOutcome::Sent(reply_text(&reply))), true),
            Err(e) if e.status().is_some() => (finish(out, self.refusal(&e)), true),
            // A write failed: the message did not go out whole, so it was not accepted.
            Err(e) if s.write_failed.load(Ordering::SeqCst) => {
                (finish(out, self.refusal(&e)), false)
            }
            Err(e) => (
                finish(
                    out,
                    RcptOutcome::Unconfirmed(format!(
                        "{}: no reply after the end of the message ({}): the server may have accepted it",
                        self.context(),
                        lettre_message(&e)
                    )),
                ),
                false,
            ),
        }
    }

    /// Sends `message` to every envelope recipient (To, Cc, Bcc) of every part that
    /// `done` does not already record as delivered or refused for good: one SMTP session
    /// per message (part), one `RCPT TO` per recipient. `Err` only when nothing was tried
    /// (the message cannot be built or fitted); otherwise each (part, recipient) tried has
    /// its outcome.
    pub async fn deliver(
        &self,
        message: &Message,
        done: &[RecipientRecord],
    ) -> Result<Attempted, NotifyError> {
        let fitted = self.fit(message).await?;
        let from = parse_mailbox(&self.spec.from).map_err(|e| self.permanent(e))?;
        let everyone = envelope(&self.name, &fitted.message)?;
        let base_id = self.message_id(message, &from);
        let mut out = Attempted::default();
        // A failure to connect applies to the remaining parts too (no new connection).
        let mut unreachable: Option<RcptOutcome> = None;
        for (part, m) in fitted.sendable() {
            let id = part_id(&base_id, part);
            out.message_ids.push(id.clone());
            let open: Vec<Address> = everyone
                .iter()
                .filter(|a| {
                    !done
                        .iter()
                        .any(|d| d.part == part && d.recipient == a.to_string() && !d.status.open())
                })
                .cloned()
                .collect();
            let mut record = |outcomes: Vec<RcptOutcome>| {
                for (a, outcome) in open.iter().zip(outcomes) {
                    out.results.push(RcptResult {
                        part,
                        recipient: a.to_string(),
                        outcome,
                    });
                }
            };
            if open.is_empty() {
                continue;
            }
            if let Some(o) = &unreachable {
                record(vec![o.clone(); open.len()]);
                continue;
            }
            let built = {
                let (m, from, name, id) = (m.clone(), from.clone(), self.name.clone(), id);
                tokio::task::spawn_blocking(move || compose(&name, &m, from, id)).await
            };
            let (envelope, raw) = match built {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    record(vec![RcptOutcome::from_error(e); open.len()]);
                    continue;
                }
                Err(e) => {
                    let e = NotifyError::retryable(format!(
                        "channel `{}`: building the message stopped: {e}",
                        self.name
                    ));
                    record(vec![RcptOutcome::from_error(e); open.len()]);
                    continue;
                }
            };
            let mut session = match self.open().await {
                Ok(s) => s,
                Err(e) => {
                    let o = RcptOutcome::from_error(e);
                    unreachable = Some(o.clone());
                    record(vec![o; open.len()]);
                    continue;
                }
            };
            let (outcomes, alive) = self
                .transaction(&mut session, envelope.from(), &open, &raw)
                .await;
            drop(raw);
            record(outcomes);
            if alive {
                // The outcome is known; a failed QUIT changes nothing.
                let _ = session.conn.quit().await;
            }
        }
        Ok(out)
    }

    /// A refusal that is not a server reply (the server lacks an extension the message
    /// needs): permanent.
    fn refused(&self, why: &str) -> RcptOutcome {
        RcptOutcome::Refused {
            error: format!("{}: {why}", self.context()),
            reply: None,
        }
    }

    /// A failed command as a recipient's outcome: 5xx refused, 4xx and lost connections
    /// retried, with the server's reply when there is one.
    fn refusal(&self, e: &lettre::transport::smtp::Error) -> RcptOutcome {
        let reply = e.status().map(|_| lettre_message(e));
        match self.classify(e) {
            NotifyError::Permanent(error) => RcptOutcome::Refused { error, reply },
            NotifyError::Retryable { message: error, .. } => RcptOutcome::Retry { error, reply },
        }
    }

    fn timed_out(&self, what: &str) -> NotifyError {
        NotifyError::retryable(format!(
            "{}: no progress in {what} within {} (timeout)",
            self.context(),
            format_duration(self.spec.timeout)
        ))
    }

    /// A failure of ferry's own connect or TLS handshake.
    fn io_failure(&self, e: &std::io::Error) -> NotifyError {
        let msg = format!("{}: {}", self.context(), io_text(e));
        match tls_error(e) {
            Some(tls) => NotifyError::Permanent(format!("{msg}{}", tls_hint(tls))),
            None => NotifyError::retryable(msg),
        }
    }

    /// The size settings `message` is fitted with: those kept with it when it was rendered
    /// (so that every attempt makes the same parts), else the channel's.
    fn sizes(&self, message: &Message) -> SizeLimits {
        message.sizes.unwrap_or(SizeLimits {
            max_attachment_bytes: self.spec.max_attachment_bytes,
            max_parts: self.spec.max_parts,
        })
    }

    /// Size-aware delivery (`delivery`): the message as it will be sent. `auto` attaches
    /// the files when they fit `max_attachment_bytes`, else one zip of them when that fits,
    /// else sends the download link instead; each change is said in the message.
    async fn fit(&self, message: &Message) -> Result<Fitted, NotifyError> {
        let total: u64 = message.attachments.iter().map(|f| f.bytes).sum();
        let limit = self.sizes(message).max_attachment_bytes;
        let as_is = |m: &Message| Fitted {
            message: m.clone(),
            temp: None,
            parts: Vec::new(),
        };
        match message.delivery.unwrap_or(self.spec.delivery) {
            RobotDelivery::Attach => {
                self.check_size(message)?;
                Ok(as_is(message))
            }
            _ if message.attachments.is_empty() => Ok(as_is(message)),
            RobotDelivery::Link => self.link_instead(message, total, link_reason(message)),
            RobotDelivery::Auto if total <= limit => Ok(as_is(message)),
            RobotDelivery::Auto => {
                let all_zipped = message
                    .attachments
                    .iter()
                    .all(|f| f.path.to_ascii_lowercase().ends_with(".zip"));
                let mut no_split = String::new();
                if !all_zipped {
                    let fitted = self.zipped(message).await?;
                    let size: u64 = fitted.message.attachments.iter().map(|f| f.bytes).sum();
                    if size <= limit {
                        return Ok(fitted);
                    }
                    match self.split(fitted).await? {
                        Ok(parts) => return Ok(parts),
                        Err(why) => no_split = why,
                    }
                } else if message.attachments.len() == 1 {
                    let one = Fitted {
                        message: message.clone(),
                        temp: None,
                        parts: Vec::new(),
                    };
                    match self.split(one).await? {
                        Ok(parts) => return Ok(parts),
                        Err(why) => no_split = why,
                    }
                }
                self.link_instead(
                    message,
                    total,
                    &format!(
                        "over this channel's limit of {}{}{no_split}",
                        human_bytes(limit),
                        if all_zipped { "" } else { ", even zipped" }
                    ),
                )
            }
        }
    }

    /// The message without attachments, pointing to the download link; refused (with the
    /// sizes) when there is no link to send.
    fn link_instead(
        &self,
        message: &Message,
        total: u64,
        why: &str,
    ) -> Result<Fitted, NotifyError> {
        let Some(link) = &message.link else {
            self.check_size(message)?;
            return Err(NotifyError::Permanent(format!(
                "channel `{}`: not sent: the files cannot be attached ({why}) and no download links are configured (`links:` in config.yaml)",
                self.name
            )));
        };
        let note = format!(
            "The files ({}) are not attached ({why}): download them from {link}",
            human_bytes(total)
        );
        let mut m = message.clone();
        m.attachments.clear();
        append_note(&mut m, &note);
        Ok(Fitted {
            message: m,
            temp: None,
            parts: Vec::new(),
        })
    }

    /// The message with its files replaced by one zip, made in a temporary folder.
    async fn zipped(&self, message: &Message) -> Result<Fitted, NotifyError> {
        let first = Path::new(&message.attachments[0].path);
        let stem = first
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "result".into());
        let dir = std::env::temp_dir().join(format!("ferry-mail-{}", uuid::Uuid::now_v7()));
        let target = dir.join(format!("{stem}.zip"));
        let files: Vec<String> = message.attachments.iter().map(|f| f.path.clone()).collect();
        let (t, d) = (target.clone(), dir.clone());
        let made = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, String)> {
            std::fs::create_dir_all(&d)?;
            let names: Vec<String> = files.iter().map(|f| file_name(f)).collect();
            let members: Vec<(&Path, &str)> = files
                .iter()
                .zip(&names)
                .map(|(f, n)| (Path::new(f.as_str()), n.as_str()))
                .collect();
            let bytes = crate::format::zip::zip_files(&t, &members, None)?;
            use sha2::Digest;
            use std::io::Read;
            let mut hasher = sha2::Sha256::new();
            let mut file = std::fs::File::open(&t)?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok((bytes, hex::encode(hasher.finalize())))
        })
        .await
        .map_err(|e| {
            NotifyError::retryable(format!("channel `{}`: zipping stopped: {e}", self.name))
        })?;
        let (bytes, sha256) = made.map_err(|e| {
            let _ = std::fs::remove_dir_all(&dir);
            NotifyError::Permanent(format!(
                "channel `{}`: cannot zip the files to fit the size limit: {e}",
                self.name
            ))
        })?;
        let total: u64 = message.attachments.iter().map(|f| f.bytes).sum();
        let mut m = message.clone();
        m.attachments = vec![crate::store::FileRecord {
            path: target.display().to_string(),
            bytes,
            sha256,
        }];
        append_note(
            &mut m,
            &format!(
                "The files were zipped to fit this channel's size limit ({} → {}).",
                human_bytes(total),
                human_bytes(bytes)
            ),
        );
        Ok(Fitted {
            message: m,
            temp: Some(TempDir(dir)),
            parts: Vec::new(),
        })
    }

    /// A message with one zip attachment too big for the limit, as numbered parts
    /// (`NAME.zip.001`, …) of one email each, with the manifest in the body and attached,
    /// made in a temporary folder; or, when `max_parts` does not allow it, why not (added
    /// to the note of the link sent instead).
    async fn split(&self, zipped: Fitted) -> Result<Result<Fitted, String>, NotifyError> {
        let SizeLimits {
            max_attachment_bytes: limit,
            max_parts: max,
        } = self.sizes(&zipped.message);
        let [zip] = zipped.message.attachments.as_slice() else {
            return Ok(Err(String::new()));
        };
        let zip = zip.clone();
        let name = file_name(&zip.path);
        if max < 2 {
            return Ok(Err(String::new()));
        }
        let plan = match parts::plan(&name, zip.bytes, limit, max) {
            Ok(plan) => plan,
            Err(Some(n)) => {
                return Ok(Err(format!(
                    " or in {max} parts: it needs {n}, raise max_parts to send it in parts"
                )));
            }
            Err(None) => return Ok(Err(String::new())),
        };
        let Fitted { message, temp, .. } = zipped;
        let temp = match temp {
            Some(t) => t,
            None => {
                TempDir(std::env::temp_dir().join(format!("ferry-mail-{}", uuid::Uuid::now_v7())))
            }
        };
        let (source, dir) = (PathBuf::from(&zip.path), temp.0.clone());
        let made = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            parts::split(&source, &dir, plan)
        })
        .await
        .map_err(|e| {
            NotifyError::retryable(format!("channel `{}`: splitting stopped: {e}", self.name))
        })?;
        let (pieces, sha256) = made.map_err(|e| {
            NotifyError::Permanent(format!(
                "channel `{}`: cannot split {name} into parts: {e}",
                self.name
            ))
        })?;
        let whole = FileRecord {
            path: zip.path.clone(),
            bytes: zip.bytes,
            sha256,
        };
        let manifest = parts::manifest(&name, &whole, &pieces);
        let manifest_path = temp.0.join(parts::MANIFEST);
        std::fs::write(&manifest_path, &manifest).map_err(|e| {
            NotifyError::Permanent(format!(
                "channel `{}`: cannot write {}: {e}",
                self.name,
                manifest_path.display()
            ))
        })?;
        let manifest_file = FileRecord {
            path: manifest_path.display().to_string(),
            bytes: manifest.len() as u64,
            sha256: String::new(),
        };
        let n = pieces.len();
        let messages = pieces
            .into_iter()
            .enumerate()
            .map(|(i, piece)| {
                let mut m = message.clone();
                m.subject = format!("{} (part {} of {n})", m.subject, i + 1);
                append_note(
                    &mut m,
                    &format!(
                        "This is part {} of {n}: {name} ({}) is over this channel's limit of {}, \
                         so it was split into {n} parts, one email each. This email carries {}; \
                         MANIFEST.txt (below, and attached) lists every part and how to rejoin them.",
                        i + 1,
                        human_bytes(whole.bytes),
                        human_bytes(limit),
                        file_name(&piece.path),
                    ),
                );
                append_text(&mut m, &manifest);
                m.attachments = vec![piece, manifest_file.clone()];
                m
            })
            .collect();
        Ok(Ok(Fitted {
            message,
            temp: Some(temp),
            parts: messages,
        }))
    }

    /// Refuses attachments over the limit, with every size and the limit in the message.
    fn check_size(&self, message: &Message) -> Result<(), NotifyError> {
        let total: u64 = message.attachments.iter().map(|f| f.bytes).sum();
        let limit = self.sizes(message).max_attachment_bytes;
        if total <= limit {
            return Ok(());
        }
        let list = message
            .attachments
            .iter()
            .map(|f| format!("{} {}", file_name(&f.path), human_bytes(f.bytes)))
            .collect::<Vec<_>>()
            .join(", ");
        Err(NotifyError::Permanent(format!(
            "channel `{}`: not sent: the attachments total {} ({total} bytes: {list}), \
             over the channel's max_attachment_bytes of {} ({limit} bytes); raise \
             max_attachment_bytes if the server accepts larger mail, or configure download \
             links (`links:` in config.yaml) so that a link is sent instead",
            self.name,
            human_bytes(total),
            human_bytes(limit),
        )))
    }

    /// Sorts a failed SMTP exchange into retryable and permanent, with a message that
    /// names the channel and the server.
    fn classify(&self, e: &lettre::transport::smtp::Error) -> NotifyError {
        let msg = format!("{}: {}", self.context(), lettre_message(e));
        if e.is_permanent() {
            NotifyError::Permanent(msg)
        } else if e.is_transient() || e.is_timeout() {
            NotifyError::retryable(msg)
        } else if let Some(tls) = tls_error(e) {
            NotifyError::Permanent(format!("{msg}{}", tls_hint(tls)))
        } else if e.is_tls() || e.is_client() {
            // TLS set-up, or the server lacks something the channel needs (STARTTLS, an
            // AUTH mechanism, 8BITMIME): trying again does not help.
            NotifyError::Permanent(msg)
        } else {
            // Connection refused or lost, a garbled reply.
            NotifyError::retryable(msg)
        }
    }
}

/// How much of a formatted message is dot-stuffed and written at a time.
const MESSAGE_SLICE: usize = 256 * 1024;

/// Added to certificate failures.
const UNTRUSTED: &str =
    " (the server's certificate is not trusted: check `host` and, for a private CA, `ca_file`)";

/// An email channel's messages: HTML, to mailboxes, tracked per recipient, with the
/// channel's size settings kept with each message.
pub fn capabilities(spec: &EmailSpec) -> Capabilities {
    Capabilities {
        html: true,
        mailboxes: true,
        per_recipient: true,
        sizes: Some(SizeLimits {
            max_attachment_bytes: spec.max_attachment_bytes,
            max_parts: spec.max_parts,
        }),
    }
}

#[async_trait]
impl Notifier for Email {
    fn capabilities(&self) -> Capabilities {
        capabilities(&self.spec)
    }

    async fn send(
        &self,
        message: &Message,
        known: &[RecipientRecord],
    ) -> Result<Attempted, NotifyError> {
        self.deliver(message, known).await
    }
}

/// An open SMTP session, and whether a write to the server failed (the message then did
/// not go out whole).
struct Session {
    conn: AsyncSmtpConnection,
    write_failed: Arc<AtomicBool>,
}

/// The envelope recipients of a message (To, Cc, Bcc), each once.
fn envelope(channel: &str, message: &Message) -> Result<Vec<Address>, NotifyError> {
    let mut out: Vec<Address> = Vec::new();
    for text in message
        .recipients
        .iter()
        .chain(&message.cc)
        .chain(&message.bcc)
    {
        let address = parse_mailbox(text)
            .map_err(|e| NotifyError::Permanent(format!("channel `{channel}`: recipient: {e}")))?
            .email;
        if !out.contains(&address) {
            out.push(address);
        }
    }
    if out.is_empty() {
        return Err(NotifyError::Permanent(format!(
            "channel `{channel}`: the message has no recipient (`to`, `cc` or `bcc`)"
        )));
    }
    Ok(out)
}

/// The Message-ID of part `part` (0: the message sent whole keeps `id`).
fn part_id(id: &str, part: u32) -> String {
    match id.rsplit_once('@') {
        Some((left, domain)) if part > 0 => format!("{left}.p{part}@{domain}"),
        _ => id.to_string(),
    }
}

/// `250 2.0.0 Ok: queued as …`.
fn reply_text(reply: &lettre::transport::smtp::response::Response) -> String {
    let text: Vec<&str> = reply.message().collect();
    format!("{} {}", reply.code(), text.join(" "))
}

/// A message ready to send, and the temporary folder of a zip (and its parts) made for
/// it (removed when the message is dropped).
struct Fitted {
    message: Message,
    #[allow(dead_code)] // Held for its Drop.
    temp: Option<TempDir>,
    /// The parts of a split zip, each sent as its own message instead of `message`.
    parts: Vec<Message>,
}

impl Fitted {
    /// The messages to send: `(0, message)`, or each part with its number.
    fn sendable(&self) -> Vec<(u32, &Message)> {
        if self.parts.is_empty() {
            vec![(0, &self.message)]
        } else {
            (1..).zip(&self.parts).collect()
        }
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Adds a paragraph at the end of both bodies.
fn append_note(m: &mut Message, note: &str) {
    m.body.push_str("\n\n");
    m.body.push_str(note);
    m.body.push('\n');
    if let Some(html) = &mut m.html {
        html_append(html, &format!("<p>{}</p>", minijinja::HtmlEscape(note)));
    }
}

/// Inserts an HTML fragment before `</body>` (or at the end).
fn html_append(html: &mut String, fragment: &str) {
    match html.rfind("</body>") {
        Some(i) => html.insert_str(i, fragment),
        None => html.push_str(fragment),
    }
}

/// Adds preformatted text (a manifest) at the end of both bodies.
fn append_text(m: &mut Message, text: &str) {
    m.body.push('\n');
    m.body.push_str(text);
    if let Some(html) = &mut m.html {
        html_append(html, &format!("<pre>{}</pre>", minijinja::HtmlEscape(text)));
    }
}

/// A reply's headers: threaded on the request, and marked automatic (RFC 3834's
/// `Auto-Submitted: auto-replied` and ferry's loop header, which ingest ignores).
fn thread_headers(
    mut builder: lettre::message::MessageBuilder,
    thread: &crate::notify::MailThread,
) -> lettre::message::MessageBuilder {
    use lettre::message::header::{HeaderName, HeaderValue};
    let bracket = |id: &str| format!("<{}>", id.trim_matches(['<', '>']));
    if let Some(id) = &thread.message_id {
        builder = builder.in_reply_to(bracket(id));
        let refs: Vec<String> = thread
            .references
            .iter()
            .chain(std::iter::once(id))
            .map(|r| bracket(r))
            .collect();
        builder = builder.references(refs.join(" "));
    }
    builder
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-replied".into(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(crate::notify::LOOP_HEADER),
            "1".into(),
        ))
}

/// Builds the MIME message and returns its envelope and bytes (the builder's copy of the
/// attachments is dropped before the bytes are sent).
fn compose(
    channel: &str,
    message: &Message,
    from: Mailbox,
    message_id: String,
) -> Result<(Envelope, Vec<u8>), NotifyError> {
    let bad_address =
        |e: String| NotifyError::Permanent(format!("channel `{channel}`: recipient: {e}"));
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(message.subject.clone())
        .message_id(Some(message_id))
        .user_agent(format!("ferry {}", env!("CARGO_PKG_VERSION")));
    if let Some(thread) = &message.thread {
        builder = thread_headers(builder, thread);
    }
    for to in &message.recipients {
        builder = builder.to(parse_mailbox(to).map_err(bad_address)?);
    }
    for cc in &message.cc {
        builder = builder.cc(parse_mailbox(cc).map_err(bad_address)?);
    }
    for bcc in &message.bcc {
        builder = builder.bcc(parse_mailbox(bcc).map_err(bad_address)?);
    }

    let plain = SinglePart::plain(message.body.clone());
    let text = message.html.as_ref().map(|html| {
        MultiPart::alternative()
            .singlepart(plain.clone())
            .singlepart(SinglePart::html(html.clone()))
    });
    let built = if message.attachments.is_empty() {
        match text {
            Some(alternative) => builder.multipart(alternative),
            None => builder.singlepart(plain),
        }
    } else {
        let mut mixed = match text {
            Some(alternative) => MultiPart::mixed().multipart(alternative),
            None => MultiPart::mixed().singlepart(plain),
        };
        for f in &message.attachments {
            mixed = mixed.singlepart(attachment(channel, Path::new(&f.path))?);
        }
        builder.multipart(mixed)
    };
    let email = built.map_err(|e| {
        NotifyError::Permanent(format!(
            "channel `{channel}`: cannot build the message: {e}"
        ))
    })?;
    let envelope = email.envelope().clone();
    let raw = email.formatted();
    drop(email);
    Ok((envelope, raw))
}

/// One result file as an attachment: base64 (so every byte arrives unchanged), its MIME
/// type, and its name in both `Content-Disposition` (RFC 2231, by lettre) and the
/// `Content-Type` `name` parameter (RFC 2047, for older clients).
fn attachment(channel: &str, path: &Path) -> Result<SinglePart, NotifyError> {
    let name = file_name(&path.display().to_string());
    let encoded = base64_body(path).map_err(|e| {
        // The file was published by this run; it is gone only if someone removed it.
        NotifyError::Permanent(format!(
            "channel `{channel}`: cannot read the attachment {}: {e}",
            path.display()
        ))
    })?;
    let body = Body::dangerous_pre_encoded(encoded, ContentTransferEncoding::Base64);
    let content_type = ContentType::parse(&format!(
        "{}; name=\"{}\"",
        mime_type(&name),
        encoded_words(&name)
    ))
    .or_else(|_| ContentType::parse(mime_type(&name)))
    .expect("known MIME types parse");
    Ok(Attachment::new(name).body(body, content_type))
}

/// The MIME type of a result file, by extension.
pub fn mime_type(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "xlsx" => XLSX,
        "csv" => "text/csv",
        "zip" => "application/zip",
        "txt" => "text/plain",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

fn file_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| path.to_string())
}

/// `text` as RFC 2047 `B` encoded words of at most 75 characters each, separated by
/// spaces; ASCII text without special characters is returned as it is.
fn encoded_words(text: &str) -> String {
    if text
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' && b != b'=' && b != b'?')
    {
        return text.to_string();
    }
    // 75 - len("=?UTF-8?B??=") = 63 base64 characters: 45 bytes of UTF-8 per word, cut
    // at character boundaries.
    const MAX_BYTES: usize = 45;
    let mut words = Vec::new();
    let mut chunk = String::new();
    for ch in text.chars() {
        if chunk.len() + ch.len_utf8() > MAX_BYTES {
            words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(ch);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words.join(" ")
}

/// Standard base64 with padding (RFC 4648), for encoded words.
/// A file as a base64 MIME body, read in slices straight into one buffer of the final size
/// (never the whole file in memory next to its encoding): lines of 76 characters joined
/// by CRLF, the last one without, exactly as lettre's own encoder writes them.
fn base64_body(path: &Path) -> std::io::Result<Vec<u8>> {
    use base64::Engine as _;
    use std::io::Read;
    const LINE_BYTES: usize = 57; // 76 base64 characters
    const SLICE: usize = LINE_BYTES * 1024;
    let mut file = std::fs::File::open(path)?;
    let len = usize::try_from(file.metadata()?.len()).unwrap_or(usize::MAX);
    let lines = len.div_ceil(LINE_BYTES);
    let mut out = Vec::with_capacity(len.div_ceil(3) * 4 + lines.saturating_sub(1) * 2);
    let mut buf = vec![0u8; SLICE];
    let mut line = [0u8; 76];
    loop {
        // Fill the slice (a short read is not the end of the file).
        let mut filled = 0;
        while filled < SLICE {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        for chunk in buf[..filled].chunks(LINE_BYTES) {
            if !out.is_empty() {
                out.extend_from_slice(b"\r\n");
            }
            let n = base64::engine::general_purpose::STANDARD
                .encode_slice(chunk, &mut line)
                .map_err(std::io::Error::other)?;
            out.extend_from_slice(&line[..n]);
        }
        if filled < SLICE {
            return Ok(out);
        }
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// lettre's message (which already includes its causes) without repeated parts, e.g.
/// `Connection error: Connection error: invalid peer certificate: UnknownIssuer`.
fn lettre_message(e: &lettre::transport::smtp::Error) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let text = e.to_string();
    for part in text.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

/// An I/O error as a short message (the rustls error inside, if any, spelled out).
fn io_text(e: &std::io::Error) -> String {
    match e.get_ref() {
        Some(inner) => inner.to_string(),
        None => e.to_string(),
    }
}

/// The rustls error among the error's causes, if TLS failed. lettre reports a failed
/// handshake as a connection error wrapping an `io::Error` that holds the rustls error.
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        let tls = c.downcast_ref::<rustls::Error>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if tls.is_some() {
            return tls;
        }
        cur = c.source();
    }
    None
}

/// What to check after a TLS failure: the certificate's trust, or the `security` setting
/// (TLS spoken to a plain SMTP port, or the reverse, fails before any certificate).
fn tls_hint(e: &rustls::Error) -> &'static str {
    match e {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::UnsupportedNameType => UNTRUSTED,
        _ => " (TLS failed: check `security` for this port; 465 is usually `tls`, 587 `starttls`)",
    }
}

/// A stream whose reads and writes fail with `TimedOut` when they make no progress for
/// `limit`: lettre's async SMTP client bounds only connecting, and a server that accepts
/// the connection and then stays silent must not hold a run forever. It also notes when
/// a write fails (`write_failed`): lettre reports a failed write and a missing reply
/// alike, and only the second leaves a message that may have been accepted.
struct Idle<S> {
    inner: S,
    peer: SocketAddr,
    limit: Duration,
    write_failed: Arc<AtomicBool>,
    read: Option<Pin<Box<Sleep>>>,
    write: Option<Pin<Box<Sleep>>>,
}

impl<S> Idle<S> {
    fn new(inner: S, peer: SocketAddr, limit: Duration, write_failed: Arc<AtomicBool>) -> Idle<S> {
        Idle {
            inner,
            peer,
            limit,
            write_failed,
            read: None,
            write: None,
        }
    }
}

/// Polls an operation's inactivity timer (armed on first use): the error once it fires.
fn expired(
    timer: &mut Option<Pin<Box<Sleep>>>,
    limit: Duration,
    cx: &mut Context<'_>,
) -> Poll<std::io::Error> {
    let sleep = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
    match sleep.as_mut().poll(cx) {
        Poll::Ready(()) => {
            *timer = None;
            Poll::Ready(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the server made no progress for {}", format_duration(limit)),
            ))
        }
        Poll::Pending => Poll::Pending,
    }
}

/// The outcome of an inner poll, with the timer reset on progress and checked otherwise.
fn guard<T>(
    polled: Poll<std::io::Result<T>>,
    timer: &mut Option<Pin<Box<Sleep>>>,
    limit: Duration,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<T>> {
    match polled {
        Poll::Ready(r) => {
            *timer = None;
            Poll::Ready(r)
        }
        Poll::Pending => expired(timer, limit, cx).map(Err),
    }
}

/// A write's outcome, with a failure noted in `flag`.
fn noted<T>(polled: Poll<std::io::Result<T>>, flag: &AtomicBool) -> Poll<std::io::Result<T>> {
    if let Poll::Ready(Err(_)) = &polled {
        flag.store(true, Ordering::SeqCst);
    }
    polled
}

impl<S: AsyncRead + Unpin> AsyncRead for Idle<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        guard(polled, &mut this.read, this.limit, cx)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Idle<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        noted(
            guard(polled, &mut this.write, this.limit, cx),
            &this.write_failed,
        )
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        noted(
            guard(polled, &mut this.write, this.limit, cx),
            &this.write_failed,
        )
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        noted(
            guard(polled, &mut this.write, this.limit, cx),
            &this.write_failed,
        )
    }
}

impl<S> std::fmt::Debug for Idle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idle")
            .field("peer", &self.peer)
            .field("limit", &self.limit)
            .finish()
    }
}

impl<S> AsyncTokioStream for Idle<S>
where
    S: AsyncRead + AsyncWrite + Send + Sync + Unpin,
{
    fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.peer)
    }
}

/// Default timeout of an email channel.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default `max_attachment_bytes`: 25 MiB, what most relays accept (before encoding).
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 25 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::store::FileRecord;

    fn spec() -> EmailSpec {
        EmailSpec {
            host: "127.0.0.1".into(),
            port: 2525,
            security: SmtpSecurity::None,
            username: None,
            password: None,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
            from: "数据导出 <ferry@example.test>".into(),
            max_attachment_bytes: 100,
            delivery: RobotDelivery::Auto,
            max_parts: parts::DEFAULT_MAX_PARTS,
        }
    }

    fn message(dir: &Path, files: &[(&str, &[u8])]) -> Message {
        let attachments = files
            .iter()
            .map(|(name, bytes)| {
                let p = dir.join(name);
                std::fs::write(&p, bytes).unwrap();
                FileRecord {
                    path: p.display().to_string(),
                    bytes: bytes.len() as u64,
                    sha256: String::new(),
                }
            })
            .collect();
        Message {
            task: "t".into(),
            run_id: "0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000".into(),
            channel: "mail".into(),
            occurrence: 1,
            recipients: vec!["alice@example.test".into()],
            cc: vec!["Bob <bob@example.test>".into()],
            bcc: vec!["carol@example.test".into()],
            subject: "日报 daily".into(),
            body: "text".into(),
            html: Some("<p>html</p>".into()),
            attachments,
            ..Message::default()
        }
    }

    #[test]
    fn addresses_parse_with_and_without_a_name() {
        assert_eq!(
            parse_mailbox("数据导出 <ferry@example.com>")
                .unwrap()
                .email
                .to_string(),
            "ferry@example.com"
        );
        assert!(parse_mailbox("ferry@example.com").is_ok());
        let e = parse_mailbox("not an address").unwrap_err();
        assert!(e.starts_with("invalid address `not an address`"), "{e}");
        assert!(parse_mailbox("a@b@c").is_err());
        assert!(parse_mailbox(" ").is_err());
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "::1", "LOCALHOST."] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["smtp.example.com", "10.0.0.1", "localhost.example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn mime_types_follow_the_extension() {
        assert_eq!(mime_type("a.XLSX"), XLSX);
        assert_eq!(mime_type("a.csv"), "text/csv");
        assert_eq!(mime_type("a.zip"), "application/zip");
        assert_eq!(mime_type("noext"), "application/octet-stream");
    }

    #[test]
    fn base64_bodies_match_lettres_encoder() {
        let dir = tempfile::tempdir().unwrap();
        for len in [
            0usize,
            1,
            56,
            57,
            58,
            114,
            57 * 1024 - 1,
            57 * 1024,
            57 * 1024 + 1,
            200_003,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &data).unwrap();
            let ours = base64_body(&path).unwrap();
            let theirs = Body::new_with_encoding(data, ContentTransferEncoding::Base64).unwrap();
            assert_eq!(ours, theirs.into_vec(), "{len} bytes");
            assert_eq!(ours.capacity(), ours.len(), "{len} bytes: sized up front");
        }
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }

    #[test]
    fn encoded_words_stay_short_and_cut_at_characters() {
        assert_eq!(encoded_words("plain.csv"), "plain.csv");
        let name = "销售明细".repeat(10) + ".xlsx";
        let words = encoded_words(&name);
        for w in words.split(' ') {
            assert!(w.len() <= 75, "{w}");
            assert!(w.starts_with("=?UTF-8?B?") && w.ends_with("?="), "{w}");
        }
        assert!(words.split(' ').count() > 1);
    }

    #[test]
    fn message_ids_are_ferrys_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = message(dir.path(), &[]);
        let email = Email::new("mail", &spec());
        let from = parse_mailbox(&spec().from).unwrap();
        assert_eq!(
            email.message_id(&m, &from),
            "<0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000.mail@example.test>"
        );
        m.occurrence = 2;
        assert_eq!(
            email.message_id(&m, &from),
            "<0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000.mail.2@example.test>"
        );
    }

    #[test]
    fn the_composed_message_encodes_names_and_hides_bcc() {
        let dir = tempfile::tempdir().unwrap();
        let m = message(
            dir.path(),
            &[("销售明细_20261125.xlsx", b"PK\x03\x04 bytes")],
        );
        let from = parse_mailbox(&spec().from).unwrap();
        let (envelope, raw) = compose("mail", &m, from, "<id@example.test>".into()).unwrap();
        let text = String::from_utf8(raw).unwrap();
        assert!(text.is_ascii(), "{text}");
        let headers = &text[..text.find("\r\n\r\n").unwrap()];
        assert!(!headers.contains("Bcc"), "{headers}");
        assert!(!headers.contains("carol"), "{headers}");
        let rcpt: Vec<String> = envelope.to().iter().map(|a| a.to_string()).collect();
        assert_eq!(
            rcpt,
            [
                "alice@example.test",
                "bob@example.test",
                "carol@example.test"
            ]
        );
        assert!(
            headers.contains("Message-ID: <id@example.test>"),
            "{headers}"
        );
        assert!(headers.contains("Subject: =?utf-8?b?"), "{headers}");
        assert!(text.contains("filename*0*=utf-8''%E9%94%80"), "{text}");
        assert!(text.contains("name=\"=?UTF-8?B?"), "{text}");
        assert!(text.contains(XLSX), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
    }

    #[test]
    fn oversize_attachments_are_refused_with_sizes_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let m = message(
            dir.path(),
            &[("a.csv", &[b'x'; 80]), ("b.csv", &[b'y'; 40])],
        );
        let e = Email::new("mail", &spec()).check_size(&m).unwrap_err();
        let NotifyError::Permanent(text) = e else {
            panic!("not permanent: {e}")
        };
        assert!(text.contains("channel `mail`"), "{text}");
        assert!(text.contains("120 bytes"), "{text}");
        assert!(text.contains("a.csv 80 B, b.csv 40 B"), "{text}");
        assert!(
            text.contains("max_attachment_bytes of 100 B (100 bytes)"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn auto_delivery_zips_to_fit_then_falls_back_to_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = message(
            dir.path(),
            &[("a.csv", &[b'x'; 80]), ("b.csv", &[b'y'; 40])],
        );
        // A zip has ~100 bytes of headers per member: at 110 bytes the two files do not
        // fit even zipped.
        let mut s = spec();
        s.max_attachment_bytes = 110;
        let zip_limit = Email::new("mail", &s);
        let big = {
            let mut s = spec();
            s.max_attachment_bytes = 400;
            Email::new("mail", &s)
        };
        let f = big.fit(&m).await.unwrap();
        assert_eq!(f.message.attachments.len(), 2, "fits as is");
        // Over 110 bytes as is: zipped (about 250 bytes) still does not fit, and there is
        // no link: refused, naming the missing links.
        let e = zip_limit.fit(&m).await.err().unwrap();
        assert!(e.to_string().contains("not sent"), "{e}");
        // With a link, the message goes without attachments and says where they are.
        m.link = Some("https://files.example.test/d/abc/a.csv?exp=1&sig=x".into());
        let f = zip_limit.fit(&m).await.unwrap();
        assert!(f.message.attachments.is_empty());
        assert!(
            f.message.body.ends_with(
                "The files (120 B) are not attached (over this channel's limit of 110 B, even zipped): download them from https://files.example.test/d/abc/a.csv?exp=1&sig=x\n"
            ),
            "{}",
            f.message.body
        );
        assert!(
            f.message
                .html
                .as_deref()
                .unwrap()
                .contains("download them from")
        );
        // A limit the zip fits: one zip attachment, said in the body; the temporary
        // folder goes when the message does.
        let many = message(dir.path(), &[("big.csv", &[b'z'; 4000])]);
        let mut s2 = spec();
        s2.max_attachment_bytes = 1000;
        let f = Email::new("mail", &s2).fit(&many).await.unwrap();
        assert_eq!(f.message.attachments.len(), 1);
        let zip = std::path::PathBuf::from(&f.message.attachments[0].path);
        assert!(
            zip.ends_with("big.zip") && zip.is_file(),
            "{}",
            zip.display()
        );
        assert!(f.message.attachments[0].bytes < 1000);
        assert_eq!(f.message.attachments[0].sha256.len(), 64);
        assert!(
            f.message
                .body
                .contains("The files were zipped to fit this channel's size limit (3.9 KB → "),
            "{}",
            f.message.body
        );
        drop(f);
        assert!(!zip.exists());
    }

    /// 30,000 bytes that do not compress: a zip of them is about as big.
    fn noise(mut x: u64) -> Vec<u8> {
        (0..30_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    /// A retry fits the files with the sizes kept in the message, not the channel's
    /// current ones, so the parts are the same as in the first attempt.
    #[tokio::test]
    async fn the_sizes_kept_with_the_message_decide_the_parts() {
        let dir = tempfile::tempdir().unwrap();
        let noise = noise(0x9e37_79b9_7f4a_7c15);
        let mut m = message(dir.path(), &[("noise.bin", &noise)]);
        let mut s = spec();
        s.max_attachment_bytes = 8000;
        let first = Email::new("mail", &s).fit(&m).await.unwrap().parts.len();
        // The channel's limit changes; the message keeps the one it was rendered with.
        m.sizes = Some(SizeLimits {
            max_attachment_bytes: 8000,
            max_parts: s.max_parts,
        });
        s.max_attachment_bytes = 100_000;
        let again = Email::new("mail", &s).fit(&m).await.unwrap();
        assert_eq!(again.parts.len(), first);
        assert!(first >= 4, "{first}");
        // Without kept sizes (ledger rows from before), the channel's apply: it fits whole.
        m.sizes = None;
        assert!(
            Email::new("mail", &s)
                .fit(&m)
                .await
                .unwrap()
                .parts
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_zip_over_the_limit_is_split_into_parts_with_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let noise = noise(0x2545_f491_4f6c_dd1d);
        let m = message(dir.path(), &[("noise.bin", &noise)]);
        let mut s = spec();
        s.max_attachment_bytes = 8000;
        let f = Email::new("mail", &s).fit(&m).await.unwrap();
        let n = f.parts.len();
        assert!((4..=5).contains(&n), "{n}");
        let sendable = f.sendable();
        assert_eq!(sendable[1].0, 2);
        let mut joined = Vec::new();
        for (i, part) in f.parts.iter().enumerate() {
            assert_eq!(part.subject, format!("日报 daily (part {} of {n})", i + 1));
            let [piece, manifest] = part.attachments.as_slice() else {
                panic!("{:?}", part.attachments)
            };
            assert!(piece.path.ends_with(&format!("noise.zip.{:03}", i + 1)));
            assert!(
                piece.bytes + manifest.bytes <= 8000,
                "{piece:?} {manifest:?}"
            );
            assert!(
                part.body
                    .contains(&format!("This is part {} of {n}", i + 1))
            );
            assert!(part.body.contains(&piece.sha256), "{}", part.body);
            assert!(part.html.as_deref().unwrap().contains("<pre>"));
            joined.extend(std::fs::read(&piece.path).unwrap());
        }
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(joined)).unwrap();
        let mut member = Vec::new();
        std::io::Read::read_to_end(&mut zip.by_index(0).unwrap(), &mut member).unwrap();
        assert_eq!(member, noise);
        // The same message gives the same parts; the folder goes with the message.
        let again = Email::new("mail", &s).fit(&m).await.unwrap();
        let digests = |f: &Fitted| {
            f.parts
                .iter()
                .map(|p| p.attachments[0].sha256.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(digests(&again), digests(&f));
        let folder = Path::new(&f.parts[0].attachments[0].path)
            .parent()
            .unwrap()
            .to_path_buf();
        drop(f);
        assert!(!folder.exists());
        // Too many parts for max_parts: the link instead, saying why.
        s.max_parts = 3;
        let mut linked = m.clone();
        linked.link = Some("https://files.example.test/d/x".into());
        let f = Email::new("mail", &s).fit(&linked).await.unwrap();
        assert!(f.parts.is_empty() && f.message.attachments.is_empty());
        assert!(
            f.message
                .body
                .contains("even zipped or in 3 parts: it needs "),
            "{}",
            f.message.body
        );
        // Splitting off: the link too.
        s.max_parts = 1;
        let f = Email::new("mail", &s).fit(&linked).await.unwrap();
        assert!(f.parts.is_empty() && f.message.attachments.is_empty());
    }

    #[test]
    fn part_message_ids_add_the_part_number() {
        assert_eq!(part_id("<r.mail@example.test>", 0), "<r.mail@example.test>");
        assert_eq!(
            part_id("<r.mail.2@example.test>", 3),
            "<r.mail.2.p3@example.test>"
        );
    }

    #[tokio::test]
    async fn link_delivery_never_attaches() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = message(dir.path(), &[("a.csv", b"x")]);
        m.link = Some("https://files.example.test/d/abc/a.csv".into());
        let mut s = spec();
        s.delivery = RobotDelivery::Link;
        let f = Email::new("mail", &s).fit(&m).await.unwrap();
        assert!(f.message.attachments.is_empty());
        assert!(f.message.body.contains("(this channel sends links)"));
    }

    #[tokio::test]
    async fn the_task_entrys_delivery_overrides_the_channels() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = message(dir.path(), &[("a.csv", b"x")]);
        m.link = Some("https://files.example.test/d/abc/a.csv".into());
        // `link` for the task on an `attach` channel: the link, no files.
        let mut s = spec();
        s.delivery = RobotDelivery::Attach;
        m.delivery = Some(RobotDelivery::Link);
        let f = Email::new("mail", &s).fit(&m).await.unwrap();
        assert!(f.message.attachments.is_empty());
        assert!(
            f.message.body.contains(
                "are not attached (this task sends links): download them from https://files.example.test/d/abc/a.csv"
            ),
            "{}",
            f.message.body
        );
        // `attach` for the task on a `link` channel: the files.
        s.delivery = RobotDelivery::Link;
        m.delivery = Some(RobotDelivery::Attach);
        let f = Email::new("mail", &s).fit(&m).await.unwrap();
        assert_eq!(f.message.attachments.len(), 1);
        assert_eq!(f.message.body, "text");
        // And over the limit, `attach` refuses rather than sending the link.
        let big = message(dir.path(), &[("b.csv", &[b'x'; 200])]);
        let m = Message {
            delivery: Some(RobotDelivery::Attach),
            sizes: None,
            link: m.link.clone(),
            ..big
        };
        s.delivery = RobotDelivery::Auto;
        assert!(matches!(
            Email::new("mail", &s).fit(&m).await,
            Err(NotifyError::Permanent(e)) if e.contains("over the channel's max_attachment_bytes")
        ));
    }

    #[test]
    fn the_password_never_shows() {
        let mut s = spec();
        s.username = Some("ferry@example.test".into());
        s.password = Some(Secret::new("hunter2"));
        let email = Email::new("mail", &s);
        let text = format!("{} {:?}", email.context(), s);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("as `ferry@example.test`"), "{text}");
    }
}
