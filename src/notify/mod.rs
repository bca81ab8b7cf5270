//! Notifications: the [`Notifier`] trait, the report a message is rendered from, and the
//! channels: [`outbox`] (JSON files), [`email`] (SMTP, per recipient; [`parts`] splits a
//! zip too big for one email) and the chat robots ([`chat`], [`robot`]).
//!
//! A task's `notify` entries name channels declared in `config.yaml`. For each entry that
//! applies to the run's outcome, the executor renders the entry's template
//! ([`crate::template::MessageTemplate`]) with [`RunReport::context`] and hands the
//! [`Message`] to the channel. Errors say whether a retry can help ([`NotifyError`]); the
//! executor records each message in the delivery ledger before sending it and each outcome
//! after (`crate::store::DeliveryRecord`, retries in `crate::exec::deliver`), with the
//! channel's receipt (the email Message-ID).
//!
//! Every message goes through [`Notifier::send`], built once per config into a
//! [`Registry`]; what a channel's messages are like (HTML, mailboxes, per-recipient
//! tracking, size limits) is its [`Capabilities`], so nothing outside this module asks
//! which kind a channel is.
//!
//! Adding a channel: a `RawChannel`/`ChannelKind` variant (config), its config checks in
//! [`config`] (an arm of [`config::check`], and of [`config::check_entry`] when a task's
//! `notify` entry may set something for it), a module implementing [`Notifier`], an arm in
//! `build` and in [`capabilities`], and a call of the notifier conformance suite
//! (`tests/integration/notifier_conformance.rs`).

pub mod attempt;
pub mod chat;
pub mod config;
pub mod dingtalk;
pub mod email;
pub mod feishu;
pub mod outbox;
pub mod parts;
pub mod probe;
pub mod robot;
pub mod webhook;
pub mod wecom;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

pub use attempt::{Attempted, RcptOutcome, RcptResult};

use crate::config::{ChannelKind, ChannelSpec, Config, RobotDelivery, TaskSpec, format_duration};
use crate::store::{FileRecord, RecipientRecord, Status};
use crate::template::human_bytes;

/// Everything a message can say about a run.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub task: String,
    pub description: Option<String>,
    pub run_id: String,
    pub status: Status,
    pub scheduled_at: DateTime<Utc>,
    pub tz: Tz,
    pub duration: std::time::Duration,
    pub rows: u64,
    pub files: Vec<FileRecord>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
    /// Download links of the files (empty without `links:` in config.yaml).
    pub links: Vec<crate::links::FileLink>,
    /// What the data covers (the task's period, or the run date).
    pub coverage: crate::params::Coverage,
    /// What started the run: a manual run (`ferry run`) is said to be one.
    pub trigger: crate::store::Trigger,
}

#[derive(Serialize)]
struct FileView {
    name: String,
    path: String,
    bytes: u64,
    size: String,
    sha256: String,
    /// Rows in this file, when known: the run's rows when it wrote one file.
    rows: Option<u64>,
    /// The signed download link, when links are configured.
    link: Option<String>,
    /// When the link stops working, in the task's zone.
    link_expires: Option<String>,
}

impl RunReport {
    fn link_of(&self, path: &str) -> Option<&crate::links::FileLink> {
        self.links.iter().find(|l| l.path == path)
    }

    /// `2026-12-02 06:00 Asia/Shanghai`.
    fn local_time(&self, t: DateTime<Utc>) -> String {
        format!(
            "{} {}",
            t.with_timezone(&self.tz).format("%Y-%m-%d %H:%M"),
            self.tz.name()
        )
    }

    /// The names of the variables [`RunReport::context`] defines (what `ferry validate`
    /// accepts in a message template).
    pub fn variables() -> Vec<String> {
        let sample = RunReport {
            task: String::new(),
            description: None,
            run_id: String::new(),
            status: Status::Succeeded,
            scheduled_at: DateTime::<Utc>::UNIX_EPOCH,
            tz: chrono_tz::UTC,
            duration: std::time::Duration::ZERO,
            rows: 0,
            files: Vec::new(),
            warnings: Vec::new(),
            error: None,
            links: Vec::new(),
            coverage: Default::default(),
            trigger: crate::store::Trigger::Schedule,
        };
        crate::template::context_keys(&sample.context())
    }

    /// Template variables (documented in `docs/configuration.md`, "Message templates").
    pub fn context(&self) -> minijinja::Value {
        let files: Vec<FileView> = self
            .files
            .iter()
            .map(|f| FileView {
                name: std::path::Path::new(&f.path)
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_else(|| f.path.clone()),
                path: f.path.clone(),
                bytes: f.bytes,
                size: human_bytes(f.bytes),
                sha256: f.sha256.clone(),
                rows: (self.files.len() == 1).then_some(self.rows),
                link: self.link_of(&f.path).map(|l| l.url.clone()),
                link_expires: self.link_of(&f.path).map(|l| self.local_time(l.expires_at)),
            })
            .collect();
        let total: u64 = self.files.iter().map(|f| f.bytes).sum();
        let filename = files
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let local = self.scheduled_at.with_timezone(&self.tz);
        minijinja::context! {
            task_name => self.task.clone(),
            description => self.description.clone(),
            run_id => self.run_id.clone(),
            status => self.status.as_str(),
            succeeded => self.status == Status::Succeeded,
            execution_time => local.format("%Y-%m-%d %H:%M:%S").to_string(),
            timezone => self.tz.name(),
            scheduled_at_utc => self.scheduled_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            rows_count => self.rows,
            file_size => human_bytes(total),
            file_bytes => total,
            duration => format_duration(self.duration),
            filename => filename,
            files => minijinja::Value::from(minijinja::value::Serde(&files)),
            warnings => self.warnings.clone(),
            error => self.error.clone(),
            link => self.links.first().map(|l| l.url.clone()),
            link_expires => self.links.first().map(|l| self.local_time(l.expires_at)),
            period => self.coverage.label.clone(),
            period_kind => self.coverage.kind,
            period_first => self.coverage.first.clone(),
            period_last => self.coverage.last.clone(),
            trigger => self.trigger.as_str(),
            manual => self.trigger == crate::store::Trigger::Manual,
            // How this channel's readers get the files; each message sets its own
            // (`files_via`).
            files_via => FilesVia::Attachment.as_str(),
        }
    }
}

/// How a message's readers get the run's files (the `files_via` template variable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilesVia {
    /// Attached to the message (email, WeCom, the outbox's file list).
    Attachment,
    /// Download links in the message.
    Link,
    /// Neither: the channel carries text only and no links are configured; the files
    /// stay in the export folder.
    Server,
}

impl FilesVia {
    pub fn as_str(self) -> &'static str {
        match self {
            FilesVia::Attachment => "attachment",
            FilesVia::Link => "link",
            FilesVia::Server => "server",
        }
    }

    /// What a channel of `kind` does with the files, under the notify entry's
    /// `delivery` (over the channel's), when `linked` (links are configured).
    pub fn of(kind: &ChannelKind, entry: Option<RobotDelivery>, linked: bool) -> FilesVia {
        let (carries_files, delivery) = match kind {
            ChannelKind::Outbox { .. } => (true, RobotDelivery::Auto),
            ChannelKind::Email(e) => (true, entry.unwrap_or(e.delivery)),
            ChannelKind::Robot(r) => (
                r.service == crate::config::RobotService::WeCom,
                entry.unwrap_or(r.delivery),
            ),
        };
        match (carries_files, delivery, linked) {
            (_, RobotDelivery::Link, true) | (false, _, true) => FilesVia::Link,
            (_, RobotDelivery::Link, false) | (false, _, false) => FilesVia::Server,
            (true, _, _) => FilesVia::Attachment,
        }
    }
}

/// A rendered message for one channel.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Message {
    pub task: String,
    pub run_id: String,
    pub channel: String,
    /// 1 for the task's first notify entry on this channel, 2 for its second, …: with
    /// `run_id` and `channel` it names the delivery (outbox file name, email Message-ID).
    #[serde(skip)]
    pub occurrence: usize,
    /// `To:` for email; free text for the outbox.
    pub recipients: Vec<String>,
    /// Email only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<String>,
    pub subject: String,
    /// Plain text (the template's `.md.j2`).
    pub body: String,
    /// HTML body (the template's `.html.j2`), for channels that send one.
    #[serde(skip)]
    pub html: Option<String>,
    pub attachments: Vec<FileRecord>,
    /// The download link of the run's (first) file, when links are configured: a button
    /// on chat robots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// The notify entry's `delivery` (files or link), over the channel's setting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<RobotDelivery>,
    /// Email: the channel's size settings when the message was rendered. Every attempt
    /// fits the files with these, so a retry makes the same parts (a changed
    /// `max_attachment_bytes` or `max_parts` applies to later runs only).
    #[serde(skip)]
    pub sizes: Option<SizeLimits>,
    /// The channel the message goes through when it differs from `channel`, its label:
    /// an owner alert is labelled `<channel>-alert` (its own outbox file and Message-ID)
    /// and sent through `alerts.channel`.
    #[serde(skip)]
    pub via: Option<String>,
    /// Email: the mail this message answers (a reply to a request mailed to ingest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<MailThread>,
}

/// The header ferry puts on every reply to a mailed request; ingest ignores mail carrying
/// it (our own reply coming back).
pub const LOOP_HEADER: &str = "X-Ferry-Loop";

/// The request a reply answers: the reply threads on it (`In-Reply-To`, `References`,
/// RFC 5322 §3.6.4) and says it is automatic (`Auto-Submitted: auto-replied`, RFC 3834,
/// and ferry's loop header), so that no well-behaved responder answers it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MailThread {
    /// The request's Message-ID, without angle brackets.
    pub message_id: Option<String>,
    /// The request's `References` (without angle brackets), oldest first.
    #[serde(default)]
    pub references: Vec<String>,
}

/// An email channel's `max_attachment_bytes` and `max_parts`, kept with each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SizeLimits {
    pub max_attachment_bytes: u64,
    pub max_parts: u32,
}

/// A [`Message`] as the delivery ledger keeps it: every field, so that a retry (or a
/// restart) sends exactly the message rendered with the run — the ones the outbox JSON
/// leaves out included. Never holds a secret: the channel's credentials are looked up
/// again when the message is sent.
#[derive(Serialize, serde::Deserialize)]
struct LedgerMessage {
    #[serde(flatten)]
    message: Message,
    occurrence: usize,
    html: Option<String>,
    /// Absent in rows recorded before the sizes were kept (the channel's current ones
    /// apply).
    #[serde(default)]
    sizes: Option<SizeLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    via: Option<String>,
}

impl Message {
    /// The JSON kept in the delivery ledger.
    pub fn to_ledger(&self) -> String {
        serde_json::to_string(&LedgerMessage {
            occurrence: self.occurrence,
            html: self.html.clone(),
            sizes: self.sizes,
            via: self.via.clone(),
            message: self.clone(),
        })
        .expect("messages serialize")
    }

    /// Reads [`Message::to_ledger`] output back (rows recorded before the per-task
    /// `delivery` existed have none: the channel's applies).
    pub fn from_ledger(json: &str) -> Result<Message, String> {
        let m: LedgerMessage = serde_json::from_str(json)
            .map_err(|e| format!("the recorded message cannot be read: {e}"))?;
        Ok(Message {
            occurrence: m.occurrence,
            html: m.html,
            sizes: m.sizes,
            via: m.via,
            ..m.message
        })
    }
}

/// Why a notification failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotifyError {
    /// Trying again can help; `retry_after` is the earliest the service wants to hear
    /// from us again (a robot paused for sending too fast, an HTTP `Retry-After`), which
    /// the retries honour when it is later than their own backoff.
    #[error("{message} (retryable)")]
    Retryable {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// Trying again cannot help (refused, bad credentials, not found).
    #[error("{0}")]
    Permanent(String),
}

impl NotifyError {
    pub fn retryable(message: impl Into<String>) -> NotifyError {
        NotifyError::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// Retryable, but not before `after`.
    pub fn retry_after(message: impl Into<String>, after: std::time::Duration) -> NotifyError {
        NotifyError::Retryable {
            message: message.into(),
            retry_after: Some(after),
        }
    }

    pub fn permanent(message: impl Into<String>) -> NotifyError {
        NotifyError::Permanent(message.into())
    }

    /// What went wrong, without the `(retryable)` mark.
    pub fn message(&self) -> &str {
        match self {
            NotifyError::Retryable { message, .. } | NotifyError::Permanent(message) => message,
        }
    }

    /// The earliest moment the service wants another attempt, when it said.
    pub fn wait_at_least(&self) -> Option<std::time::Duration> {
        match self {
            NotifyError::Retryable { retry_after, .. } => *retry_after,
            NotifyError::Permanent(_) => None,
        }
    }
}

/// What a channel's messages are like, for the code that renders and records them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Messages carry an HTML body (from `<template>.html.j2`).
    pub html: bool,
    /// Recipients are people's mailboxes: owner alerts go to the task's `owners`, and a
    /// message without any recipient cannot be sent.
    pub mailboxes: bool,
    /// The ledger records each recipient of each message part on its own, and a retry
    /// goes only to those not done ([`Notifier::send`]'s `known`).
    pub per_recipient: bool,
    /// Size settings kept with each rendered message, so that every attempt makes the
    /// same parts.
    pub sizes: Option<SizeLimits>,
}

/// What a channel of this kind can do.
pub fn capabilities(kind: &ChannelKind) -> Capabilities {
    match kind {
        ChannelKind::Email(e) => email::capabilities(e),
        ChannelKind::Outbox { .. } | ChannelKind::Robot(_) => Capabilities::default(),
    }
}

/// A delivery channel: the one seam every message goes through (run reports, retries,
/// owner alerts, `ferry channels test`).
#[async_trait]
pub trait Notifier: Send + Sync {
    fn capabilities(&self) -> Capabilities;

    /// One attempt: sends `message` to the recipients that `known` (what the ledger
    /// recorded of earlier attempts, for [`Capabilities::per_recipient`] channels) does
    /// not record as done. A channel that posts one message to one place answers with
    /// [`Attempted::whole`].
    async fn send(
        &self,
        message: &Message,
        known: &[RecipientRecord],
    ) -> Result<Attempted, NotifyError>;

    /// The whole message once, outside the ledger: the receipt (file written, message
    /// ids), or what failed.
    async fn notify(&self, message: &Message) -> Result<String, NotifyError> {
        self.send(message, &[]).await?.into_result()
    }
}

/// A channel that sends each message whole to one place (a robot, a webhook, the
/// outbox): plain text, no per-recipient state. Its [`Notifier`] follows.
#[async_trait]
pub trait WholeMessage: Send + Sync {
    /// Sends the message; returns a short receipt.
    async fn post(&self, message: &Message) -> Result<String, NotifyError>;
}

#[async_trait]
impl<T: WholeMessage> Notifier for T {
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }

    async fn send(
        &self,
        message: &Message,
        _known: &[RecipientRecord],
    ) -> Result<Attempted, NotifyError> {
        Ok(Attempted::whole(self.post(message).await))
    }
}

/// The channels of a configuration, built once, with what they share for the life of the
/// process (each chat robot's send queue and rate count, the HTTP clients): a registry
/// rebuilt from a reloaded config ([`Registry::reloaded`]) keeps that shared state.
pub struct Registry {
    shared: Arc<robot::Robots>,
    channels: BTreeMap<String, Arc<dyn Notifier>>,
}

impl Registry {
    /// Channels whose robot pauses live in this process only (`ferry channels test`).
    pub fn new(config: &Config) -> Registry {
        Registry::with(config, Arc::new(robot::Robots::default()))
    }

    /// Channels whose robot pauses are also kept in the run store, so that they hold
    /// across restarts and between `ferry run` processes.
    pub fn with_store(
        config: &Config,
        store: Arc<dyn crate::store::Store>,
        clock: crate::clock::SharedClock,
    ) -> Registry {
        let book = robot::PauseBook { store, clock };
        Registry::with(config, Arc::new(robot::Robots::with_book(book)))
    }

    /// The registry of a reloaded config, sharing this one's robot queues.
    pub fn reloaded(&self, config: &Config) -> Registry {
        Registry::with(config, self.shared.clone())
    }

    fn with(config: &Config, shared: Arc<robot::Robots>) -> Registry {
        let channels = config
            .channels
            .values()
            .map(|spec| (spec.name.clone(), build(spec, &shared)))
            .collect();
        Registry { shared, channels }
    }

    /// The notifier of a channel as config.yaml declares it.
    pub fn get(&self, channel: &str) -> Option<Arc<dyn Notifier>> {
        self.channels.get(channel).cloned()
    }

    /// The notifier for a task's `notify` entry: the channel's, or one with the entry's
    /// own robot `webhook`/`secret` (sharing the robot queues).
    pub fn for_entry(
        &self,
        config: &Config,
        task: Option<&TaskSpec>,
        channel: &str,
        occurrence: u32,
    ) -> Result<Arc<dyn Notifier>, NotifyError> {
        let spec = entry_spec(config, task, channel, occurrence)?;
        Ok(match spec {
            Cow::Borrowed(_) => self
                .get(channel)
                .ok_or_else(|| NotifyError::permanent("channel is not defined"))?,
            Cow::Owned(spec) => build(&spec, &self.shared),
        })
    }
}

/// Builds the notifier for a channel spec.
fn build(spec: &ChannelSpec, shared: &Arc<robot::Robots>) -> Arc<dyn Notifier> {
    match &spec.kind {
        ChannelKind::Outbox { dir } => Arc::new(outbox::Outbox::new(dir.clone())),
        ChannelKind::Email(email) => Arc::new(email::Email::new(&spec.name, email)),
        ChannelKind::Robot(r) => Arc::new(chat::ChatChannel::new(&spec.name, r, shared.clone())),
    }
}

/// The channel spec a delivery is sent with: the channel as config.yaml declares it now,
/// with the task's own robot webhook/secret for that `notify` entry.
fn entry_spec<'a>(
    config: &'a Config,
    task: Option<&TaskSpec>,
    channel: &str,
    occurrence: u32,
) -> Result<Cow<'a, ChannelSpec>, NotifyError> {
    let Some(spec) = config.channels.get(channel) else {
        return Err(NotifyError::permanent("channel is not defined"));
    };
    let entry = task.and_then(|t| {
        t.notify
            .iter()
            .filter(|n| n.channel == channel)
            .nth(occurrence.saturating_sub(1) as usize)
    });
    let (webhook, secret) = match entry {
        Some(n) => (&n.webhook, &n.secret),
        None => return Ok(Cow::Borrowed(spec)),
    };
    Ok(match &spec.kind {
        ChannelKind::Robot(robot) if webhook.is_some() || secret.is_some() => {
            let mut robot = (**robot).clone();
            if let Some(w) = webhook {
                robot.webhook = w.clone();
            }
            if let Some(s) = secret {
                robot.secret = Some(s.clone());
            }
            let mut spec = spec.clone();
            spec.kind = ChannelKind::Robot(Box::new(robot));
            Cow::Owned(spec)
        }
        _ => Cow::Borrowed(spec),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Message {
        Message {
            task: "t".into(),
            run_id: "r".into(),
            channel: "mail".into(),
            occurrence: 2,
            recipients: vec!["a@example.test".into()],
            subject: "s".into(),
            body: "b".into(),
            link: Some("https://files.example.test/d/x".into()),
            delivery: Some(RobotDelivery::Link),
            ..Message::default()
        }
    }

    #[test]
    fn the_ledger_keeps_the_entrys_delivery_and_sizes() {
        let mut m = message();
        m.sizes = Some(SizeLimits {
            max_attachment_bytes: 1000,
            max_parts: 3,
        });
        let back = Message::from_ledger(&m.to_ledger()).unwrap();
        assert_eq!(back.sizes, m.sizes);
        let json = message().to_ledger();
        assert!(json.contains(r#""delivery":"link""#), "{json}");
        let back = Message::from_ledger(&json).unwrap();
        assert_eq!(back.delivery, Some(RobotDelivery::Link));
        assert_eq!(back.occurrence, 2);
    }

    #[test]
    fn ledger_rows_from_before_the_per_task_delivery_still_load() {
        let mut v: serde_json::Value = serde_json::from_str(&message().to_ledger()).unwrap();
        v.as_object_mut().unwrap().remove("delivery");
        let back = Message::from_ledger(&v.to_string()).unwrap();
        assert_eq!(back.delivery, None);
        assert_eq!(back.link.as_deref(), Some("https://files.example.test/d/x"));
    }
}

/// The repository's default templates (`templates/report.*`) rendered for fixed runs,
/// compared with `tests/golden/report_*`. After an intended change,
/// `FERRY_BLESS=1 cargo test --lib golden` rewrites the golden files; review the diff.
#[cfg(test)]
mod golden {
    use super::*;
    use crate::template::MessageTemplate;

    fn report(files: &[(&str, u64)], with_links: bool) -> RunReport {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let files: Vec<FileRecord> = files
            .iter()
            .enumerate()
            .map(|(i, (name, bytes))| FileRecord {
                path: format!("exports/daily_sales/{name}"),
                bytes: *bytes,
                sha256: format!("{i}").repeat(64),
            })
            .collect();
        let links = if with_links {
            files
                .iter()
                .map(|f| crate::links::FileLink {
                    path: f.path.clone(),
                    name: crate::links::file_name_of(&f.path),
                    bytes: f.bytes,
                    sha256: f.sha256.clone(),
                    link_id: "l1".into(),
                    url: format!(
                        "https://files.example.com/ferry/d/l1/{}?exp=1764626400&sig=abc",
                        crate::links::file_name_of(&f.path)
                    ),
                    expires_at: at("2026-12-01T22:00:00Z"),
                })
                .collect()
        } else {
            Vec::new()
        };
        RunReport {
            task: "daily_sales".into(),
            description: Some("每日销售明细 <all regions>".into()),
            run_id: "01938f2e-7a00-7000-8000-000000000001".into(),
            status: Status::Succeeded,
            scheduled_at: at("2026-11-24T22:00:00Z"),
            tz: chrono_tz::Asia::Shanghai,
            duration: std::time::Duration::from_millis(4_200),
            rows: 1_048_576,
            files,
            warnings: vec![
                "1048576 rows did not fit one sheet (1048575 rows at most): written over 2 sheets"
                    .into(),
                "column `note`: 3 value(s) longer than 32767 characters were cut to 32767 characters (Excel's cell limit)".into(),
            ],
            error: None,
            links,
            coverage: crate::params::RunParams::compute(
                at("2026-11-24T22:00:00Z"),
                chrono_tz::Asia::Shanghai,
                crate::params::Period::Day,
                None,
                &BTreeMap::new(),
            )
            .coverage,
            trigger: crate::store::Trigger::Schedule,
        }
    }

    /// A run of a task with `period` scheduled at `at` (UTC), with one file and no notes.
    fn periodic(period: crate::params::Period, at: &str, file: &str, rows: u64) -> RunReport {
        let at: DateTime<Utc> = at.parse().unwrap();
        let mut r = report(&[(file, 58_880)], false);
        r.task = file.split("_20").next().unwrap().to_string();
        r.scheduled_at = at;
        r.rows = rows;
        r.warnings.clear();
        r.description = Some("Paid orders with customer and product".into());
        r.coverage = crate::params::RunParams::compute(
            at,
            chrono_tz::Asia::Shanghai,
            period,
            None,
            &BTreeMap::new(),
        )
        .coverage;
        r
    }

    /// Renders `report` in both languages, through the channel's view (`files_via`), and
    /// compares with `tests/golden/report_{name}.txt` and `report_{name}_zh.txt`.
    fn check_in(name: &str, report: &RunReport, via: FilesVia) {
        for language in [crate::config::Language::En, crate::config::Language::Zh] {
            let file = match language {
                crate::config::Language::En => name.to_string(),
                crate::config::Language::Zh => format!("{name}_zh"),
            };
            render_and_compare(&file, report, via, language);
        }
    }

    fn check(name: &str, report: &RunReport) {
        render_and_compare(
            name,
            report,
            FilesVia::Attachment,
            crate::config::Language::En,
        );
    }

    fn render_and_compare(
        name: &str,
        report: &RunReport,
        via: FilesVia,
        language: crate::config::Language,
    ) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        // The built-in templates (the folder does not exist).
        let tpl = MessageTemplate::in_language(&dir.join("no-such-folder"), "report", language);
        let via = if report.links.is_empty() {
            via
        } else {
            FilesVia::Link
        };
        let ctx = minijinja::context! { files_via => via.as_str(), ..report.context() };
        let (subject, body) = tpl.render(&ctx).unwrap();
        let html = tpl.render_html(&ctx).unwrap().unwrap();
        let rendered = format!("Subject: {subject}\n\n{body}\n----- html\n{html}");
        let golden = dir.join("tests/golden").join(format!("report_{name}.txt"));
        if std::env::var_os("FERRY_BLESS").is_some() {
            std::fs::write(&golden, &rendered).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e}", golden.display()));
        assert_eq!(rendered, expected, "{}", golden.display());
    }

    #[test]
    fn a_daily_report_names_the_day_before_the_run() {
        // 2026-12-07 02:30 in Shanghai: the data is for 2026-12-06.
        let r = periodic(
            crate::params::Period::Day,
            "2026-12-06T18:30:00Z",
            "daily_sales_2026-12-06.xlsx",
            1_234,
        );
        check_in("daily", &r, FilesVia::Attachment);
    }

    #[test]
    fn a_weekly_report_names_the_iso_week_and_its_days() {
        let r = periodic(
            crate::params::Period::Week,
            "2026-12-06T23:00:00Z",
            "weekly_sales_2026-W49.csv",
            56,
        );
        check_in("weekly", &r, FilesVia::Server);
    }

    #[test]
    fn a_monthly_report_names_the_month() {
        let r = periodic(
            crate::params::Period::Month,
            "2026-11-30T22:00:00Z",
            "monthly_2026-11.csv",
            0,
        );
        check_in("monthly", &r, FilesVia::Attachment);
    }

    #[test]
    fn a_manual_run_says_so() {
        let mut r = periodic(
            crate::params::Period::Day,
            "2026-12-07T02:15:00Z",
            "daily_sales_2026-12-06.xlsx",
            1,
        );
        r.trigger = crate::store::Trigger::Manual;
        check_in("manual", &r, FilesVia::Attachment);
        let mut failed = r.clone();
        failed.status = Status::Failed;
        failed.files.clear();
        failed.rows = 0;
        failed.error = Some("query failed: no such table: orders".into());
        check_in("manual_failed", &failed, FilesVia::Attachment);
    }

    #[test]
    fn a_report_says_rows_sizes_sha256_links_with_their_expiry_and_cuts() {
        let r = report(&[("daily_sales_20261125.xlsx", 52_428_800)], true);
        check("link", &r);
        let ctx = r.context().to_string();
        // The link's expiry in the task's zone (22:00 UTC is 06:00 the next day in Shanghai).
        assert!(ctx.contains("2026-12-02 06:00 Asia/Shanghai"), "{ctx}");
    }

    #[test]
    fn a_report_of_several_files_lists_each_part() {
        check(
            "parts",
            &report(
                &[
                    ("daily_sales_north.csv", 1_536),
                    ("daily_sales_south.csv", 2_048),
                ],
                false,
            ),
        );
    }

    #[test]
    fn a_failed_run_says_why() {
        let mut r = report(&[], false);
        r.status = Status::Failed;
        r.rows = 0;
        r.warnings.clear();
        r.error = Some("timeout: the run took longer than 30m (task `timeout`)".into());
        check("failed", &r);
    }

    #[test]
    fn files_come_attached_linked_or_stay_on_the_server_by_channel() {
        use crate::config::{RobotService, RobotSpec, Secret};
        let robot = |service, delivery| {
            ChannelKind::Robot(Box::new(RobotSpec {
                service,
                webhook: Secret::new("https://robot.example.test/send"),
                secret: None,
                keyword: None,
                mention_all: false,
                timeout: std::time::Duration::from_secs(5),
                delivery,
            }))
        };
        let outbox = ChannelKind::Outbox {
            dir: "outbox".into(),
        };
        let ding = robot(RobotService::DingTalk, RobotDelivery::Auto);
        let wecom = robot(RobotService::WeCom, RobotDelivery::Auto);
        assert_eq!(FilesVia::of(&outbox, None, false), FilesVia::Attachment);
        assert_eq!(FilesVia::of(&ding, None, false), FilesVia::Server);
        assert_eq!(FilesVia::of(&ding, None, true), FilesVia::Link);
        assert_eq!(FilesVia::of(&wecom, None, true), FilesVia::Attachment);
        assert_eq!(
            FilesVia::of(&wecom, Some(RobotDelivery::Link), true),
            FilesVia::Link
        );
        // `delivery: link` without links configured: the files stay on the server.
        assert_eq!(
            FilesVia::of(&wecom, Some(RobotDelivery::Link), false),
            FilesVia::Server
        );
    }

    #[test]
    fn a_task_without_a_period_names_the_run_date() {
        let mut r = periodic(
            crate::params::Period::Day,
            "2026-12-07T01:00:00Z",
            "hourly_pending_20261207_090000.xlsx",
            3,
        );
        r.coverage = crate::params::RunParams::compute(
            r.scheduled_at,
            chrono_tz::Asia::Shanghai,
            crate::params::Period::Day,
            None,
            &BTreeMap::new(),
        )
        .as_of_run()
        .coverage;
        check_in("run_date", &r, FilesVia::Attachment);
    }
}
