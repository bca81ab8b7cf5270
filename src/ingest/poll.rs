//! One poll of the request folder: every mail in it is judged, recorded, run or answered,
//! and moved, in an order that survives a kill between any two steps
//! (reliability.md §3.3):
//!
//! 1. `SELECT` the request folder and compare its UIDVALIDITY with the store's: a change
//!    is told to the owners, and mail handled before is still recognised by its
//!    Message-ID, so it is never run again;
//! 2. size, flags and header section of every mail (`meta`); a mail the store knows (by
//!    mailbox, UIDVALIDITY and UID, or by Message-ID) is only finished: its reply made
//!    sure of, and moved;
//! 3. a new mail's body is read with `BODY.PEEK[]` (never for one over `max_mail_bytes`,
//!    judged from its headers and size) and classified ([`super::classify()`]);
//! 4. the verdict is claimed in the store ([`crate::store::Mail::claim_mail`]), together
//!    with the one-shot run of an accepted request: the claim is what makes each mail
//!    handled once, also with several nodes on one store;
//! 5. the run (trigger `mail`) goes through the executor like any task's; its reply is
//!    the run's one delivery, recorded in the ledger with the outcome. A rejection's
//!    reply is a ledger delivery of its own (`mail:<message key>`). Both are sent at most
//!    once per mail ([`crate::store::Mail::reserve_reply`]) and within the sender's
//!    daily reply cap;
//! 6. only then is the mail moved (`UID MOVE`, or copy + `\Deleted` + `UID EXPUNGE`).
//!
//! A kill before 4 leaves the mail unclaimed in the folder: the next poll starts over.
//! A kill after 4 finds the claim: a run that was interrupted is answered with "send it
//! again", a reply not yet sent is sent (the ledger's own takeover rules apply to one
//! that was being sent), and the mail is moved.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::classify::{Request, Verdict, classify};
use super::imap::{Imap, ImapError, Meta};
use super::reply::{self, ReplyText};
use crate::clock::SharedClock;
use crate::config::{
    CatchUp, Concurrency, Config, IngestSpec, NotifyOn, NotifySpec, OnEmpty, OutputSpec, Query,
    QuerySpec, ReplyLanguage, TaskSpec,
};
use crate::exec::deliver::{self, Item, Tried, attempt};
use crate::exec::{Executor, ReplyTo, RunRequest, Stop};
use crate::notify::{MailThread, Message, Registry};
use crate::params::Period;
use crate::schedule::Schedule;
use crate::store::{
    Claim, DeliveryKey, DeliveryStatus, MailClaim, MailRecord, Owner, ReplySlot, Status, Store,
    StoreError, Trigger,
};

/// Why a poll stopped.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Imap(#[from] ImapError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a poll needs.
pub struct Poller {
    config: Arc<Config>,
    store: Arc<dyn Store>,
    clock: SharedClock,
    /// The channels replies and owner notes go through, built once per poller.
    channels: Registry,
}

/// What a poll did with one mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub uid: u32,
    pub message_key: String,
    /// `accept`, `reject` or `ignore`.
    pub verdict: String,
    pub reason: Option<String>,
    pub run_id: Option<String>,
    /// The folder the mail was moved to.
    pub folder: String,
    /// The mail was recorded by an earlier poll (or another node): only finished now.
    pub known: bool,
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Mail in the request folder.
    pub seen: usize,
    pub handled: Vec<Handled>,
    /// Accepted requests left in the folder until the quiet hours end.
    pub waiting: usize,
}

/// The label of a rejection reply in the ledger: a "run" of its own, `mail:<key>`.
fn reply_run_id(message_key: &str) -> String {
    format!("mail:{message_key}")
}

/// The key a mail is known by besides its UID: the sha256 of its Message-ID, or of its
/// whole header section when it has none.
pub fn message_key(header: &[u8]) -> String {
    let id = mail_parser::MessageParser::default()
        .parse_headers(header)
        .and_then(|m| m.message_id().map(str::to_string));
    let digest = match &id {
        Some(id) => Sha256::digest(id.trim().as_bytes()),
        None => Sha256::digest(header),
    };
    format!("sha256:{}", hex::encode(digest))
}

impl Poller {
    pub fn new(config: Arc<Config>, store: Arc<dyn Store>, clock: SharedClock) -> Poller {
        let channels = Registry::with_store(&config, store.clone(), clock.clone());
        Poller {
            config,
            store,
            clock,
            channels,
        }
    }

    fn spec(&self) -> Option<&IngestSpec> {
        self.config.ingest.as_ref()
    }

    fn owner(&self) -> Owner {
        Owner {
            node: self.config.node_name.clone(),
            pid: std::process::id(),
        }
    }

    /// One pass over the request folder. `wind_down` ends it before the next mail; `stop`
    /// also stops a running request's query.
    pub async fn poll_once(
        &self,
        stop: &Stop,
        wind_down: &CancellationToken,
    ) -> Result<Pass, PollError> {
        let Some(spec) = self.spec() else {
            return Ok(Pass::default());
        };
        if spec.trust_unauthenticated {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                warn!(
                    "ingest.trust_unauthenticated is on: mail is NOT checked against our mail \
                     server's Authentication-Results, so anyone who can reach this mailbox can \
                     send requests in an allowed sender's name; use it only behind an internal \
                     relay that accepts no outside mail"
                )
            });
        }
        let mut imap = Imap::connect(&spec.imap).await?;
        let result = self.pass(&mut imap, spec, stop, wind_down).await;
        imap.logout().await;
        result
    }

    async fn pass(
        &self,
        imap: &mut Imap,
        spec: &IngestSpec,
        stop: &Stop,
        wind_down: &CancellationToken,
    ) -> Result<Pass, PollError> {
        let f = &spec.folders;
        let created = imap
            .ensure_folders(&[&f.processed, &f.rejected, &f.ignored])
            .await?;
        for c in created {
            info!(folder = %c, "created the IMAP folder");
        }
        let mailbox = f.requests.clone();
        let validity = imap.select(&mailbox).await?;
        let now = self.clock.now();
        match self.store.mailbox_validity(&mailbox).await? {
            Some(v) if v == validity => {}
            Some(v) => {
                warn!(mailbox, before = v, now = validity, "UIDVALIDITY changed");
                let body = format!(
                    "The IMAP server renumbered the request folder `{mailbox}` (UIDVALIDITY {v} → {validity}).\n\
                     Mail ferry handled before is recognised by its Message-ID and is not run or answered again; \
                     mail without a Message-ID that is still in the folder may be handled again.\n\
                     Nothing needs to be done unless this happens often (a restored or recreated mailbox)."
                );
                self.tell_owners(
                    &format!("uidvalidity:{mailbox}:{validity}"),
                    "[ferry] ingest: the request folder was renumbered",
                    &body,
                )
                .await?;
                self.store
                    .set_mailbox_validity(&mailbox, validity, now)
                    .await?;
            }
            None => {
                self.store
                    .set_mailbox_validity(&mailbox, validity, now)
                    .await?;
            }
        }
        let uids = imap.uids().await?;
        let metas = imap.meta(&uids).await?;
        let mut pass = Pass {
            seen: metas.len(),
            ..Pass::default()
        };
        for meta in metas.into_iter().filter(|m| !m.deleted) {
            if stop.is_stopped() || wind_down.is_cancelled() {
                break;
            }
            if let Some(h) = self
                .handle(imap, spec, &mailbox, validity, &meta, stop)
                .await?
            {
                pass.handled.push(h);
            } else {
                pass.waiting += 1;
            }
        }
        Ok(pass)
    }

    /// Judges, records, runs or answers, and moves one mail; `None` when an accepted
    /// request waits for the quiet hours to end (or the mail is gone).
    async fn handle(
        &self,
        imap: &mut Imap,
        spec: &IngestSpec,
        mailbox: &str,
        validity: u32,
        meta: &Meta,
        stop: &Stop,
    ) -> Result<Option<Handled>, PollError> {
        let key = message_key(&meta.header);
        if let Some(rec) = self
            .store
            .find_mail(mailbox, validity, meta.uid, &key)
            .await?
        {
            return self.finish(imap, spec, rec, meta.uid, true).await.map(Some);
        }
        let raw = if meta.size > spec.max_mail_bytes {
            meta.header.clone()
        } else {
            match imap.body(meta.uid).await? {
                Some(b) => b,
                None => return Ok(None),
            }
        };
        let c = classify(&raw, meta.size, spec, &self.config);
        let now = self.clock.now().trunc_subsecs(3);
        if matches!(c.verdict, Verdict::Accept(_))
            && crate::scheduler::quiet::quiet_until(&spec.quiet_hours, now).is_some()
        {
            return Ok(None);
        }
        let day = now
            .with_timezone(&self.config.timezone)
            .format("%Y-%m-%d")
            .to_string();
        let folders = &spec.folders;
        let (folder, reply) = match &c.verdict {
            Verdict::Accept(_) => (&folders.processed, true),
            Verdict::Reject { reply, .. } => (&folders.rejected, *reply),
            Verdict::Ignore { .. } => (&folders.ignored, false),
        };
        let sender = c.sender.clone();
        let run = match (&c.verdict, &sender) {
            (Verdict::Accept(_), Some(s)) => Some(Claim {
                run_id: uuid::Uuid::now_v7().to_string(),
                task: format!("mail:{s}"),
                scheduled_at: now,
                trigger: Trigger::Mail,
                node: self.config.node_name.clone(),
                pid: std::process::id(),
                started_at: now,
                started_by: None,
            }),
            _ => None,
        };
        let (reason, detail) = match &c.verdict {
            Verdict::Accept(r) => (None, describe_request(r)),
            Verdict::Reject { reason, detail, .. } | Verdict::Ignore { reason, detail } => {
                (Some(reason.code().to_string()), detail.clone())
            }
        };
        let rec = MailRecord {
            mailbox: mailbox.to_string(),
            uidvalidity: validity,
            uid: meta.uid,
            message_key: key.clone(),
            message_id: c.message_id.clone(),
            sender: sender.clone(),
            subject: c.subject.clone(),
            verdict: c.verdict.name().to_string(),
            reason,
            detail,
            reply,
            database: c.database.clone(),
            run_id: run.as_ref().map(|r| r.run_id.clone()),
            received_at: now,
            day,
            folder: folder.clone(),
            moved_at: None,
            replied_at: None,
        };
        let quota = sender
            .as_deref()
            .and_then(|s| spec.sender(s))
            .map_or(1, |s| s.daily_quota);
        crate::faults::kill_point("ingest:judged");
        let claim = self.store.claim_mail(&rec, quota, run.as_ref()).await?;
        crate::faults::kill_point("ingest:claimed");
        info!(
            uid = meta.uid,
            sender = sender.as_deref().unwrap_or(""),
            verdict = rec.verdict,
            reason = rec.reason.as_deref().unwrap_or(""),
            "mail judged"
        );
        match claim {
            MailClaim::Known(r) => self.finish(imap, spec, *r, meta.uid, true).await.map(Some),
            MailClaim::OverQuota => {
                let rec = self
                    .store
                    .find_mail(mailbox, validity, meta.uid, &key)
                    .await?
                    .unwrap_or(rec);
                self.finish(imap, spec, rec, meta.uid, false)
                    .await
                    .map(Some)
            }
            MailClaim::New => {
                if let (Verdict::Accept(req), Some(run)) = (&c.verdict, &run) {
                    self.run_request(spec, &rec, req, &raw, run, stop).await?;
                }
                self.finish(imap, spec, rec, meta.uid, false)
                    .await
                    .map(Some)
            }
        }
    }

    /// Runs an accepted request as a one-shot task; its reply is the run's delivery.
    async fn run_request(
        &self,
        spec: &IngestSpec,
        rec: &MailRecord,
        req: &Request,
        raw: &[u8],
        run: &Claim,
        stop: &Stop,
    ) -> Result<(), PollError> {
        let sender = rec.sender.clone().unwrap_or_default();
        let now = self.clock.now();
        let reply = match self
            .store
            .reserve_reply(&rec.message_key, spec.reply.daily_cap, now)
            .await?
        {
            ReplySlot::Granted => true,
            ReplySlot::AlreadyReplied => false,
            ReplySlot::CapReached { first } => {
                self.cap_reached(spec, &sender, first).await?;
                false
            }
        };
        // The run's instant as the store recorded it (a collision moves it by a ms).
        let scheduled_at = match self.store.get(&run.run_id).await? {
            Some(r) => r.scheduled_at,
            None => run.scheduled_at,
        };
        let task = request_task(spec, &self.config, rec, req, &sender, scheduled_at, reply);
        let zh = spec.reply.language == ReplyLanguage::Zh;
        // `ingest.defaults.max_cost` guards mailed queries besides the datasource's own.
        let config = match spec.defaults.max_cost {
            Some(limit) => {
                let mut c = (*self.config).clone();
                let guard = c.max_cost.entry(req.database.clone()).or_insert(limit);
                *guard = guard.min(limit);
                Arc::new(c)
            }
            None => self.config.clone(),
        };
        let executor = Executor {
            config,
            store: self.store.clone(),
            clock: self.clock.clone(),
        };
        let request = RunRequest {
            task,
            scheduled_at,
            trigger: Trigger::Mail,
            notify: true,
            stop: stop.clone(),
            progress: None,
            retry_record: true,
            reply_to: Some(ReplyTo {
                subject: reply::reply_subject(&rec.subject, zh),
                thread: thread_of(raw),
            }),
            started_by: None,
        };
        match executor
            .run_claimed(request, run.run_id.clone(), scheduled_at)
            .await
        {
            Ok(r) => {
                info!(run_id = %r.run_id, status = %r.status, rows = r.rows, "request answered")
            }
            Err(crate::exec::ExecError::Store(e)) => return Err(e.into()),
            Err(e) => warn!(error = %e, "request not run"),
        }
        Ok(())
    }

    /// Makes sure a recorded mail is answered as its record says, then moves it.
    async fn finish(
        &self,
        imap: &mut Imap,
        spec: &IngestSpec,
        rec: MailRecord,
        uid: u32,
        known: bool,
    ) -> Result<Handled, PollError> {
        if rec.verdict == "accept" {
            self.finish_accepted(spec, &rec).await?;
        } else if rec.reply {
            let reason = rec.reason.as_deref().and_then(super::Reason::parse);
            if let Some(reason) = reason {
                let text = reply::rejection(
                    reason,
                    &rec.detail,
                    &rec.subject,
                    rec.sender.as_deref().unwrap_or(""),
                    rec.database.as_deref(),
                    spec,
                );
                self.reply_once(spec, &rec, text).await?;
            }
        }
        crate::faults::kill_point("ingest:answered");
        match imap.move_to(uid, &rec.folder).await {
            Ok(()) => {
                crate::faults::kill_point("ingest:moved");
                self.store
                    .mail_moved(&rec.message_key, self.clock.now())
                    .await?
            }
            // Moved already (by another node, or just before a crash): nothing to do.
            Err(e) if known => warn!(uid, error = %e, "mail not moved"),
            Err(e) => return Err(e.into()),
        }
        Ok(Handled {
            uid,
            message_key: rec.message_key,
            verdict: rec.verdict,
            reason: rec.reason,
            run_id: rec.run_id,
            folder: rec.folder,
            known,
        })
    }

    /// An accepted request whose run was interrupted (a kill or a crash before its
    /// outcome and reply were recorded) is told so once, instead of being run again
    /// behind its sender's back.
    async fn finish_accepted(&self, spec: &IngestSpec, rec: &MailRecord) -> Result<(), PollError> {
        let Some(run_id) = &rec.run_id else {
            return Ok(());
        };
        let Some(run) = self.store.get(run_id).await? else {
            return Ok(());
        };
        if run.status == Status::Running || !run.deliveries.is_empty() {
            // Still running (elsewhere), or its reply is in the ledger already.
            return Ok(());
        }
        if rec.replied_at.is_none() || run.status != Status::Succeeded {
            let zh = spec.reply.language == ReplyLanguage::Zh;
            let body = if zh {
                "你的查询请求在执行时被中断（ferry 重启），没有得到结果。请重新发送这封邮件。\n\n-- \nferry（自动回复）\n"
            } else {
                "Your query request was interrupted while it ran (ferry restarted) and has no result. Please send it again.\n\n-- \nferry (automatic reply)\n"
            };
            let text = ReplyText {
                subject: reply::reply_subject(&rec.subject, zh),
                body: body.to_string(),
            };
            self.reply_once(spec, rec, text).await?;
        }
        Ok(())
    }

    /// Sends `text` to the mail's sender once: the reply is reserved in the store (at most
    /// one per mail, within the daily cap), recorded in the ledger, then attempted; a
    /// failed attempt stays `pending` for the delivery worker.
    async fn reply_once(
        &self,
        spec: &IngestSpec,
        rec: &MailRecord,
        text: ReplyText,
    ) -> Result<(), PollError> {
        let Some(sender) = rec.sender.clone() else {
            return Ok(());
        };
        match self
            .store
            .reserve_reply(&rec.message_key, spec.reply.daily_cap, self.clock.now())
            .await?
        {
            // A reply already reserved may not have reached the ledger (a kill between the
            // two): recording it is idempotent.
            ReplySlot::Granted | ReplySlot::AlreadyReplied => {}
            ReplySlot::CapReached { first } => {
                return self.cap_reached(spec, &sender, first).await;
            }
        }
        let thread = MailThread {
            message_id: rec.message_id.clone(),
            references: Vec::new(),
        };
        let message = Message {
            task: "ingest".into(),
            run_id: reply_run_id(&rec.message_key),
            channel: spec.reply.channel.clone(),
            occurrence: 1,
            recipients: vec![sender],
            subject: text.subject,
            body: text.body,
            thread: Some(thread),
            ..Message::default()
        };
        self.send_recorded(message).await
    }

    /// Records `message` in the ledger (unless it is there already) and attempts it.
    async fn send_recorded(&self, message: Message) -> Result<(), PollError> {
        let json = message.to_ledger();
        let owner = self.owner();
        let occurrence = u32::try_from(message.occurrence).unwrap_or(1);
        if !self
            .store
            .enqueue_alert(
                &message.run_id,
                &message.channel,
                occurrence,
                &json,
                &owner,
                self.clock.now(),
            )
            .await?
        {
            return Ok(());
        }
        let env = deliver::Env {
            store: &*self.store,
            config: &self.config,
            channels: &self.channels,
            clock: &*self.clock,
        };
        let item = Item {
            key: DeliveryKey {
                run_id: message.run_id.clone(),
                channel: message.channel.clone(),
                occurrence,
            },
            from: DeliveryStatus::Pending,
            attempts: 0,
            message: json,
            takeovers: 0,
        };
        if let Some(Tried {
            outcome: Err(e), ..
        }) = attempt(env, None, &item, &owner, None).await?
        {
            warn!(channel = %message.channel, error = %e, "reply not sent yet (retried by the delivery worker)");
        }
        Ok(())
    }

    /// Tells the owners (`ingest.owners`) once per `key`.
    async fn tell_owners(&self, key: &str, subject: &str, body: &str) -> Result<(), PollError> {
        let Some(spec) = self.spec() else {
            return Ok(());
        };
        if spec.owners.is_empty() {
            return Ok(());
        }
        let label = format!("{}-owners", spec.reply.channel);
        let message = Message {
            task: "ingest".into(),
            run_id: format!("ingest:{key}"),
            channel: label,
            via: Some(spec.reply.channel.clone()),
            occurrence: 1,
            recipients: spec.owners.clone(),
            subject: subject.to_string(),
            body: body.to_string(),
            thread: None,
            ..Message::default()
        };
        self.send_recorded(message).await
    }

    /// A sender over the daily reply cap: silence, and the owners hear of it once a day.
    async fn cap_reached(
        &self,
        spec: &IngestSpec,
        sender: &str,
        first: bool,
    ) -> Result<(), PollError> {
        warn!(
            sender,
            cap = spec.reply.daily_cap,
            "reply cap reached: not answered"
        );
        if !first {
            return Ok(());
        }
        let day = self
            .clock
            .now()
            .with_timezone(&self.config.timezone)
            .format("%Y-%m-%d");
        let body = format!(
            "{sender} reached today's reply cap ({} replies, `ingest.reply.daily_cap`).\n\
             Their further mail today is recorded and moved, but not answered. \
             A loop with an auto-responder, or a script sending requests, looks like this.\n",
            spec.reply.daily_cap
        );
        self.tell_owners(
            &format!("cap:{sender}:{day}"),
            &format!("[ferry] ingest: {sender} reached the daily reply cap"),
            &body,
        )
        .await
    }

    /// Once a day after `ingest.digest_at`: the owners get the previous day's rejected
    /// and ignored mail (unauthenticated mail is reported only here: it gets no reply).
    /// `done` is the day the caller last covered (nothing is read again for it); returns
    /// the day covered now, if the digest is due (sent, or with nothing to report).
    pub async fn digest(&self, done: Option<&str>) -> Result<Option<String>, PollError> {
        let Some(spec) = self.spec() else {
            return Ok(None);
        };
        if spec.owners.is_empty() {
            return Ok(None);
        }
        let local = self.clock.now().with_timezone(&self.config.timezone);
        if local.time() < spec.digest_at {
            return Ok(None);
        }
        let yesterday = (local.date_naive() - chrono::Days::new(1))
            .format("%Y-%m-%d")
            .to_string();
        if done == Some(yesterday.as_str()) {
            return Ok(None);
        }
        let records = self.store.mail_records(10_000).await?;
        let day: Vec<&MailRecord> = records.iter().filter(|r| r.day == yesterday).collect();
        if let Some(body) = digest_text(&yesterday, &day) {
            self.tell_owners(
                &format!("digest:{yesterday}"),
                &format!("[ferry] ingest: mail of {yesterday}"),
                &body,
            )
            .await?;
        }
        Ok(Some(yesterday))
    }
}

/// The digest of one day's records; `None` when nothing was rejected or ignored.
fn digest_text(day: &str, records: &[&MailRecord]) -> Option<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        *counts.entry(r.verdict.as_str()).or_default() += 1;
    }
    let odd: Vec<&&MailRecord> = records.iter().filter(|r| r.verdict != "accept").collect();
    if odd.is_empty() {
        return None;
    }
    let mut out = format!(
        "Mail to ferry's request folder on {day}: {} accepted, {} rejected, {} ignored.\n\n",
        counts.get("accept").copied().unwrap_or(0),
        counts.get("reject").copied().unwrap_or(0),
        counts.get("ignore").copied().unwrap_or(0),
    );
    for r in odd.iter().rev() {
        out.push_str(&format!(
            "- {} {} from {}: {} ({}){}\n  subject: {}\n",
            r.received_at.format("%H:%M:%S UTC"),
            r.verdict,
            r.sender.as_deref().unwrap_or("(no single From)"),
            r.reason.as_deref().unwrap_or(""),
            r.detail,
            if r.reply { "" } else { "; not answered" },
            r.subject,
        ));
    }
    Some(out)
}

/// What the record says of an accepted request.
fn describe_request(r: &Request) -> String {
    let files: Vec<&str> = r.queries.iter().map(|q| q.file_name.as_str()).collect();
    format!("database `{}`; queries: {}", r.database, files.join(", "))
}

/// The request's thread: its Message-ID and References.
fn thread_of(raw: &[u8]) -> MailThread {
    let parsed = mail_parser::MessageParser::default().parse_headers(raw);
    let (message_id, references) = match &parsed {
        Some(m) => (
            m.message_id().map(str::to_string),
            m.references()
                .as_text_list()
                .map(|l| l.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
        ),
        None => (None, Vec::new()),
    };
    MailThread {
        message_id,
        references,
    }
}

/// The one-shot task an accepted request runs as: its queries, one result file each
/// (named by `ingest.defaults.file_name`), and one notify entry, the reply to the sender
/// (none when the reply cap is reached).
pub fn request_task(
    spec: &IngestSpec,
    config: &Config,
    rec: &MailRecord,
    req: &Request,
    sender: &str,
    at: DateTime<Utc>,
    reply: bool,
) -> TaskSpec {
    let d = &spec.defaults;
    let mut taken: BTreeMap<String, usize> = BTreeMap::new();
    let queries = req
        .queries
        .iter()
        .map(|q| {
            let ctx = minijinja::context! {
                attachment => q.stem.clone(),
                database => req.database.clone(),
                sender => sender,
                run_time => at.with_timezone(&config.timezone).format("%Y-%m-%dT%H:%M:%S").to_string(),
            };
            let name = crate::template::render_str(&d.file_name, &ctx)
                .ok()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| q.stem.clone());
            // Names stay unique within the request (`orders`, `orders_2`).
            let n = taken.entry(name.clone()).or_default();
            *n += 1;
            let name = if *n == 1 { name } else { format!("{name}_{n}") };
            QuerySpec {
                sheet: Some(name),
                query: Query::Sql { text: q.sql.clone() },
            }
        })
        .collect();
    let zh = spec.reply.language == ReplyLanguage::Zh;
    let notify = match reply {
        true => vec![NotifySpec {
            channel: spec.reply.channel.clone(),
            template: if zh { "mail_result_zh" } else { "mail_result" }.into(),
            recipients: vec![sender.to_string()],
            cc: Vec::new(),
            bcc: Vec::new(),
            webhook: None,
            secret: None,
            delivery: None,
            on: NotifyOn::Always,
        }],
        false => Vec::new(),
    };
    let files: Vec<&str> = req.queries.iter().map(|q| q.file_name.as_str()).collect();
    TaskSpec {
        name: format!("mail:{sender}"),
        file: std::path::PathBuf::new(),
        description: Some(format!(
            "{}: {} ({})",
            req.database,
            files.join(", "),
            rec.subject
        )),
        owners: Vec::new(),
        enabled: true,
        schedule: Schedule::parse("0 0 1 1 *", config.timezone)
            .unwrap_or_else(|_| unreachable!("a constant schedule parses")),
        timezone: config.timezone,
        source: req.database.clone(),
        queries,
        params: BTreeMap::new(),
        period: Period::Day,
        reports_period: false,
        language: match spec.reply.language {
            ReplyLanguage::Zh => crate::config::Language::Zh,
            ReplyLanguage::En => crate::config::Language::En,
        },
        timeout: d.timeout,
        misfire_grace: std::time::Duration::ZERO,
        catch_up: CatchUp::Latest,
        concurrency: Concurrency::Allow,
        chunk_rows: config.export.chunk_rows,
        on_empty: OnEmpty::Send,
        output: OutputSpec {
            format: d.format,
            file_name: "result".into(),
            sheet_name: "result".into(),
            csv: Default::default(),
            zip: false,
            file_per_query: true,
        },
        notify,
        // config.yaml's `retention:` applies to requests' runs and files.
        retention: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_is_known_by_its_message_id_or_its_header() {
        let a = message_key(b"Message-ID: <a@x>\r\nSubject: one\r\n\r\n");
        let b = message_key(b"Subject: two\r\nMessage-ID: <a@x>\r\n\r\n");
        assert_eq!(a, b);
        let c = message_key(b"Subject: one\r\n\r\n");
        let d = message_key(b"Subject: two\r\n\r\n");
        assert_ne!(c, d);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64);
    }

    fn record(verdict: &str, reason: Option<&str>, reply: bool) -> MailRecord {
        MailRecord {
            mailbox: "INBOX".into(),
            uidvalidity: 1,
            uid: 1,
            message_key: "k".into(),
            message_id: None,
            sender: Some("mallory@corp.example".into()),
            subject: "hi".into(),
            verdict: verdict.into(),
            reason: reason.map(str::to_string),
            detail: "why".into(),
            reply,
            database: None,
            run_id: None,
            received_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            day: "2027-01-15".into(),
            folder: "Rejected".into(),
            moved_at: None,
            replied_at: None,
        }
    }

    #[test]
    fn the_digest_lists_what_was_not_accepted() {
        let ok = record("accept", None, true);
        assert_eq!(digest_text("2027-01-15", &[&ok]), None, "nothing to report");
        let forged = record("reject", Some("auth_failed"), false);
        let bulk = record("ignore", Some("auto_generated"), false);
        let text = digest_text("2027-01-15", &[&ok, &forged, &bulk]).unwrap();
        assert!(
            text.starts_with(
                "Mail to ferry's request folder on 2027-01-15: 1 accepted, 1 rejected, 1 ignored."
            ),
            "{text}"
        );
        assert!(
            text.contains("reject from mallory@corp.example: auth_failed (why); not answered"),
            "{text}"
        );
        assert!(text.contains("ignore from"), "{text}");
        assert!(!text.contains("accept from"), "{text}");
    }

    #[test]
    fn the_thread_keeps_the_references() {
        let t =
            thread_of(b"Message-ID: <c@x>\r\nReferences: <a@x> <b@x>\r\nSubject: s\r\n\r\nbody");
        assert_eq!(t.message_id.as_deref(), Some("c@x"));
        assert_eq!(t.references, vec!["a@x".to_string(), "b@x".to_string()]);
    }
}
