//! The run store: what ferry keeps between runs and shares between processes, behind one
//! [`Store`] trait made of concerns, opened by URL ([`open`]); `store.url` is checked in
//! [`config`].
//!
//! - [`Runs`] ([`runs`]): one row per `(task, scheduled_at)`, unique. Inserting that row is
//!   the *claim*: whoever inserts it runs the fire, everyone else sees the conflict and does
//!   nothing. `concurrency: forbid` is decided by the claim too ([`Op::ClaimExclusive`]).
//!   Rows are updated when the run finishes (status, row count, files, warnings, error).
//! - [`Ledger`] ([`ledger`]): one [`DeliveryRecord`] per notification of a run, and for
//!   email one [`RecipientRecord`] per envelope recipient of each message part; attempts
//!   are fenced by `(owner, attempts)`; owner-alert admission.
//! - [`Links`] ([`links`]): download links and their requests.
//! - [`Schedule`] ([`schedule`]): the scheduler's cursors, deferred runs, channel pauses,
//!   tasks paused by hand.
//! - [`Retention`] ([`retention`]): what retention reads and deletes (`ferry cleanup`).
//! - [`Instances`] ([`instances`]): the ferry processes on the store and their heartbeats
//!   (the cross-node liveness rule), what a daemon must hold, closing.
//! - [`Access`] ([`access`]): users, API tokens, console sessions, the audit trail.
//! - [`Revisions`] ([`revisions`]): every version of the task files written through ferry.
//!
//! Callers hold an `Arc<dyn Store>` and call any concern's methods on it; nothing outside
//! this module names a backend.
//!
//! ## Adding a backend (PostgreSQL, MySQL for the cluster)
//!
//! 1. A module beside [`sqlite`] with a type implementing the concern traits (one
//!    file per concern), and its append-only migrations like [`sqlite::MIGRATIONS`]
//!    (same tables and columns; types may differ). Opening migrates, and refuses a
//!    database whose schema version is newer than the binary's.
//! 2. A scheme in [`StoreUrl::parse`] and an arm in [`open`].
//! 3. The conformance suite (`tests/integration/store_conformance.rs`): a `Backend` for a
//!    fresh database and one `conformance!` line.
//!
//! What the backend must provide:
//!
//! - instants stored as [`fmt_instant`] text (UTC, milliseconds, `Z`), compared as text;
//!   every time comes from the caller (the [`crate::clock::Clock`]), durations are
//!   computed in Rust: no `now()`, `datetime()`, `julianday()` or JSON functions in SQL;
//! - `INSERT … ON CONFLICT … DO NOTHING / DO UPDATE` for claims, cursors, links, pauses
//!   and recipients; conditional `UPDATE … WHERE` (checking rows affected) as fences;
//! - [`Runs::batch`] in one transaction; [`Op::ClaimExclusive`] must read the task's
//!   `running` rows and insert atomically with respect to other claims of the task (the
//!   SQLite store holds the write lock; PostgreSQL would lock the task's row, e.g.
//!   `SELECT … FROM schedule_cursors WHERE task = $1 FOR UPDATE`, or use `SERIALIZABLE`);
//! - deliveries and recipients listed by their `seq` column (insertion order), not by a
//!   backend's row id;
//! - [`Instances::lock_for_daemon`]: whatever keeps daemons apart (a no-op for a shared
//!   store: daemons there coordinate by claims and heartbeats).
//! - its errors mapped onto [`StoreError`]: a full disk as `Full`, an I/O error as `Io`, a
//!   lock another client held past a bounded wait as `Busy` (these three are
//!   [`StoreError::is_transient`]: the daemon tries them again), and a connection that a
//!   failed operation left in an unknown state replaced, never reused.

pub mod access;
pub mod config;
pub mod instances;
pub mod ledger;
pub mod links;
pub mod mail;
pub mod outage;
pub mod retention;
pub mod revisions;
pub mod runs;
pub mod schedule;
pub mod sqlite;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::config::StoreUrl;
pub use access::{Access, AuditFilter, AuditRecord, Role, SessionRecord, TokenRecord, UserRecord};
pub use instances::{
    DaemonLock, HEARTBEAT_EVERY, INSTANCE_LEASE, InstanceRecord, Instances, reap_interrupted,
};
pub use ledger::Ledger;
pub use links::Links;
pub use mail::{Mail, MailClaim, MailRecord, ReplySlot};
pub use outage::Outage;
pub use retention::{Deleted, Retention};
pub use revisions::{RevisionRecord, Revisions};
pub use runs::{Applied, Op, RunQuery, Runs};
pub use schedule::{Schedule, TaskPause};

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    Skipped,
    Missed,
    Cancelled,
    /// Claimed, waiting to start (quiet hours, or a catch-up run behind an earlier one).
    Deferred,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Missed => "missed",
            Status::Cancelled => "cancelled",
            Status::Deferred => "deferred",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "running" => Status::Running,
            "succeeded" => Status::Succeeded,
            "failed" => Status::Failed,
            "skipped" => Status::Skipped,
            "missed" => Status::Missed,
            "cancelled" => Status::Cancelled,
            "deferred" => Status::Deferred,
            _ => return None,
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
    /// A request mailed to ingest (query by email).
    Mail,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Mail => "mail",
        }
    }

    pub fn parse(s: &str) -> Option<Trigger> {
        [Trigger::Schedule, Trigger::Manual, Trigger::Mail]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// A published result file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileRecord {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// A download link: an opaque id for one published file of a run (see
/// [`crate::links`]). The server finds the file through this row only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkRecord {
    /// The opaque random id in the URL.
    pub id: String,
    pub run_id: String,
    /// The file, resolved (absolute, symlinks followed) when the link was made.
    pub path: String,
    /// The name the download is saved under.
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

/// One request for a link, served or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownloadRecord {
    pub link_id: String,
    pub at: DateTime<Utc>,
    /// The client's IP address (the socket peer, or `X-Forwarded-For` with
    /// `links.trust_proxy`).
    pub client: String,
    /// The `Range` header as sent, if any.
    pub range: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// Body bytes handed to the connection (updated when the body ends or is dropped).
    pub bytes_sent: u64,
    /// Why the request was refused (`bad signature`, `expired`, `expiry beyond the
    /// maximum`, `file removed`, `outside output_dir`, `not a file`, `range not
    /// satisfiable`); none when served.
    pub reason: Option<String>,
}

/// A request to claim one fire.
#[derive(Debug, Clone)]
pub struct Claim {
    pub run_id: String,
    pub task: String,
    pub scheduled_at: DateTime<Utc>,
    pub trigger: Trigger,
    pub node: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    /// The person who started the run by hand (`user:alice`, `token:ci`, `cli:root@node`);
    /// `None` for scheduled fires.
    pub started_by: Option<String>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: Status,
    pub finished_at: DateTime<Utc>,
    pub rows: u64,
    pub files: Vec<FileRecord>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
}

/// One row of run history.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RunRecord {
    pub run_id: String,
    pub task: String,
    pub scheduled_at: DateTime<Utc>,
    pub trigger: String,
    pub status: Status,
    pub node: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub rows: u64,
    pub files: Vec<FileRecord>,
    pub warnings: Vec<String>,
    pub error: Option<String>,
    /// Why a run was skipped, missed, deferred or cancelled.
    pub reason: Option<String>,
    /// For deferred runs: when they may start.
    pub deferred_until: Option<DateTime<Utc>>,
    /// When retention removed the run's result files (`files` still lists them, with
    /// their sha256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_removed_at: Option<DateTime<Utc>>,
    /// What each notification of the run did, in the task's `notify` order.
    pub deliveries: Vec<DeliveryRecord>,
    /// What the deliveries come to (`delivered`, `partially_delivered`, …).
    pub delivery: DeliverySummary,
    /// Who started the run by hand (`user:alice`, `token:ci`, `cli:root@node`); absent
    /// for scheduled fires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_by: Option<String>,
    /// The owner alerts sent about this run (`alerts:` in config.yaml), each a delivery
    /// of its own; not part of `deliveries` or `delivery`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<DeliveryRecord>,
}

/// One notification of a run (one task `notify` entry on one channel) as the delivery
/// ledger keeps it: its state, how often it was tried, when it is tried next, and what the
/// channel answered last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeliveryRecord {
    pub channel: String,
    /// 1 for the task's first notify entry on this channel, 2 for its second, …
    pub occurrence: u32,
    /// The ledger state: `pending`, `sending`, `sent`, `failed` or `maybe_duplicate`.
    pub status: DeliveryStatus,
    /// For a failure: whether trying again can help (SMTP 4xx, connection lost, HTTP 5xx)
    /// or not (SMTP 5xx, bad credentials or certificate, attachments over the limit).
    pub retryable: bool,
    /// What the channel returned: the Message-ID for email, the file for the outbox.
    pub receipt: Option<String>,
    /// Why the last attempt failed (names the channel and server, never a password).
    pub error: Option<String>,
    /// When the state last changed.
    pub at: DateTime<Utc>,
    /// Attempts made so far.
    pub attempts: u32,
    /// For a `pending` delivery: when it is tried next.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When each attempt started, oldest first.
    #[serde(default)]
    pub tried_at: Vec<DateTime<Utc>>,
    /// Email only: each envelope recipient of each message part, with its own state. The
    /// delivery's `status` is derived from them (see [`RecipientRecord`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<RecipientRecord>,
}

/// One envelope recipient of one email message (part) in the delivery ledger: keyed
/// `(run, channel, occurrence, part, recipient)`. A recipient already `sent` (or `failed`
/// for good) is never in a later envelope; a retry goes only to the `pending` and
/// `unconfirmed` ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecipientRecord {
    /// 0 for a message sent whole; 1, 2, … for the parts of a split zip.
    pub part: u32,
    /// The envelope address (`RCPT TO`), without display name.
    pub recipient: String,
    pub status: RecipientStatus,
    /// Attempts that had this recipient in their envelope.
    pub attempts: u32,
    /// Why the last attempt did not deliver (names the channel and server).
    pub error: Option<String>,
    /// The server's last reply for this recipient (`250 2.0.0 Ok: queued as …`).
    pub reply: Option<String>,
    /// When the server accepted the message for this recipient.
    pub sent_at: Option<DateTime<Utc>>,
    /// When the state last changed.
    pub at: DateTime<Utc>,
}

/// The state of one recipient of an email delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecipientStatus {
    /// Not accepted yet (a 4xx reply, or the connection failed before the message).
    Pending,
    /// The connection was lost after the message's final `.` and before the reply: the
    /// server may have accepted it. Tried exactly once more: then `maybe_duplicate` or
    /// `failed`.
    Unconfirmed,
    Sent,
    /// A 5xx reply, or the retries ran out.
    Failed,
    /// Accepted by the retry of an unconfirmed send: the recipient may have it twice
    /// (same Message-ID).
    MaybeDuplicate,
}

impl RecipientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientStatus::Pending => "pending",
            RecipientStatus::Unconfirmed => "unconfirmed",
            RecipientStatus::Sent => "sent",
            RecipientStatus::Failed => "failed",
            RecipientStatus::MaybeDuplicate => "maybe_duplicate",
        }
    }

    pub fn parse(s: &str) -> Option<RecipientStatus> {
        Some(match s {
            "pending" => RecipientStatus::Pending,
            "unconfirmed" => RecipientStatus::Unconfirmed,
            "sent" => RecipientStatus::Sent,
            "failed" => RecipientStatus::Failed,
            "maybe_duplicate" => RecipientStatus::MaybeDuplicate,
            _ => return None,
        })
    }

    /// Still to be sent (in the next envelope).
    pub fn open(self) -> bool {
        matches!(
            self,
            RecipientStatus::Pending | RecipientStatus::Unconfirmed
        )
    }

    /// The server accepted the message for this recipient (perhaps twice).
    pub fn delivered(self) -> bool {
        matches!(
            self,
            RecipientStatus::Sent | RecipientStatus::MaybeDuplicate
        )
    }
}

impl DeliveryRecord {
    /// The email recipients that do not have the message (yet), e.g.
    /// `rejected@example.com failed, bob@example.com part 2 pending`.
    pub fn recipients_missing(&self) -> Option<String> {
        let missing: Vec<String> = self
            .recipients
            .iter()
            .filter(|r| !r.status.delivered())
            .map(|r| match r.part {
                0 => format!("{} {}", r.recipient, r.status.as_str()),
                n => format!("{} part {n} {}", r.recipient, r.status.as_str()),
            })
            .collect();
        (!missing.is_empty()).then(|| missing.join(", "))
    }
}

/// The state of one delivery in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Recorded with the run, not sent yet, or to be tried again at `next_attempt_at`.
    Pending,
    /// An attempt is under way (left in this state by a crash: the message may have gone).
    Sending,
    Sent,
    /// Given up: a permanent error, or the retries ran out.
    Failed,
    /// Sent by a retry after an attempt that was interrupted mid-send: the recipient may
    /// have it twice (email keeps the same Message-ID, so clients can tell).
    MaybeDuplicate,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::MaybeDuplicate => "maybe_duplicate",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        Some(match s {
            "pending" => DeliveryStatus::Pending,
            "sending" => DeliveryStatus::Sending,
            "sent" => DeliveryStatus::Sent,
            "failed" => DeliveryStatus::Failed,
            "maybe_duplicate" => DeliveryStatus::MaybeDuplicate,
            _ => return None,
        })
    }

    /// The message went out (perhaps twice).
    pub fn delivered(self) -> bool {
        matches!(self, DeliveryStatus::Sent | DeliveryStatus::MaybeDuplicate)
    }
}

/// What the notifications of a run came to, next to its export `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliverySummary {
    /// Nothing to deliver (no notify entry applied, `--no-notify`, `on_empty: skip`).
    None,
    /// Every notification went out.
    Delivered,
    /// Some went out, others failed or are still being retried.
    PartiallyDelivered,
    /// None went out yet; some are still being retried.
    Pending,
    /// None went out and none will be retried.
    Failed,
}

impl DeliverySummary {
    pub fn of(deliveries: &[DeliveryRecord]) -> DeliverySummary {
        if deliveries.is_empty() {
            return DeliverySummary::None;
        }
        let sent = deliveries.iter().filter(|d| d.status.delivered()).count();
        // An email delivery that reached some of its recipients counts as partly out.
        let some = deliveries
            .iter()
            .any(|d| d.recipients.iter().any(|r| r.status.delivered()));
        let open = deliveries
            .iter()
            .any(|d| matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Sending));
        if sent == deliveries.len() {
            DeliverySummary::Delivered
        } else if sent > 0 || some {
            DeliverySummary::PartiallyDelivered
        } else if open {
            DeliverySummary::Pending
        } else {
            DeliverySummary::Failed
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeliverySummary::None => "none",
            DeliverySummary::Delivered => "delivered",
            DeliverySummary::PartiallyDelivered => "partially_delivered",
            DeliverySummary::Pending => "pending",
            DeliverySummary::Failed => "failed",
        }
    }
}

/// Names one delivery: `(run, channel, occurrence)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    pub run_id: String,
    pub channel: String,
    pub occurrence: u32,
}

/// The process that holds a delivery (it is attempting it, or retrying it inside its run):
/// others leave the delivery alone while that process lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub node: String,
    pub pid: u32,
}

/// A delivery written with its run's outcome (see [`Ledger::finish_with_deliveries`]).
#[derive(Debug, Clone)]
pub struct QueuedDelivery {
    pub channel: String,
    pub occurrence: u32,
    /// The rendered message (JSON, see `crate::notify::Message::to_ledger`), recorded as
    /// `pending`; or why it could not be rendered, recorded as `failed`.
    pub message: Result<String, String>,
}

/// A delivery that is due (pending and due, or left `sending`), for the delivery worker.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub key: DeliveryKey,
    pub task: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// The rendered message (JSON).
    pub message: String,
    pub owner: Option<Owner>,
    /// An owner alert (its failure alerts nobody).
    pub alert: bool,
    /// When the row last changed (an attempt started or ended): how long the owner has
    /// held it.
    pub held_since: Option<DateTime<Utc>>,
    /// How often the delivery was taken over from a process that died while sending it.
    pub takeovers: u32,
}

/// How an attempt ended (see [`Ledger::end_attempt`]).
#[derive(Debug, Clone)]
pub struct AttemptEnd {
    pub status: DeliveryStatus,
    pub retryable: bool,
    pub receipt: Option<String>,
    pub error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
    /// Keep the delivery held by the attempting process (it retries it itself shortly).
    pub keep_owner: bool,
    /// Email: the recipients this attempt changed, written in the same transaction.
    pub recipients: Vec<RecipientRecord>,
}

/// A delivery still to go out or failed for good, with its run's task (the API's
/// delivery queue).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct QueuedEntry {
    pub run_id: String,
    pub task: String,
    #[serde(flatten)]
    pub delivery: DeliveryRecord,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub task: Option<String>,
    pub limit: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("run store {path}: {source}")]
    Db {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    /// The disk under the store is full (or its quota is reached): nothing of the write
    /// was kept. The store is usable again as soon as there is room.
    #[error(
        "run store {path}: the disk is full, nothing was recorded: free space on that disk (ferry serve records again by itself once there is room)"
    )]
    Full { path: String },
    /// Another process held a lock on the store for longer than the store waits
    /// ([`sqlite::BUSY_WAIT`]).
    #[error(
        "run store {path} is locked by another process (waited {} s): end the program that holds it (a `sqlite3` shell, a backup, another tool) or try again later",
        waited.as_secs()
    )]
    Busy {
        path: String,
        waited: std::time::Duration,
    },
    /// The disk failed a read or a write (an I/O error).
    #[error(
        "run store {path}: the disk failed ({source}): check the disk and its free space (ferry serve records again by itself once it works)"
    )]
    Io {
        path: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("run store {path}: {message}")]
    Other { path: String, message: String },
}

impl StoreError {
    /// The store cannot take the operation for now (a full disk, a lock another process
    /// holds, an I/O error): the same operation may succeed later. Errors in what was
    /// asked (a run not in the store) are not transient.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Full { .. } | StoreError::Busy { .. } | StoreError::Io { .. }
        )
    }
}

/// Everything the rest of ferry needs from a store: one trait per concern, so a caller
/// holds one `Arc<dyn Store>` and a backend implements the concerns one file at a time.
pub trait Store:
    Runs + Ledger + Links + Schedule + Instances + Mail + Retention + Access + Revisions
{
}

impl<T: Runs + Ledger + Links + Schedule + Instances + Mail + Retention + Access + Revisions> Store
    for T
{
}

/// Opens the store a `store:` URL names (see [`StoreUrl`]), creating and migrating it as
/// needed: the one place that knows the backends.
pub async fn open(url: &StoreUrl) -> Result<Arc<dyn Store>, StoreError> {
    match url {
        StoreUrl::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(path).await?)),
        StoreUrl::Unsupported { scheme, shown } => Err(StoreError::Other {
            path: shown.clone(),
            message: not_yet_supported(scheme),
        }),
    }
}

/// What a known, not yet built backend answers.
pub fn not_yet_supported(scheme: &str) -> String {
    format!(
        "`{scheme}://` stores are not yet supported: the cluster store comes with the cluster work; use `sqlite://PATH`"
    )
}

/// An owner alert that may go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertAdmission {
    /// Failures held back since the previous alert.
    pub held: u64,
    /// When the previous alert went out.
    pub last_sent_at: Option<DateTime<Utc>>,
}

/// Formats an instant the way the store keeps it: UTC, milliseconds, `Z` (sortable text).
pub fn fmt_instant(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parses [`fmt_instant`] output.
pub fn parse_instant(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// True if a process with this pid exists (Linux `/proc`; elsewhere assume alive).
pub fn process_alive(pid: u32) -> bool {
    let proc_root = std::path::Path::new("/proc");
    if !proc_root.join("self").exists() {
        return true;
    }
    match std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")) {
        // A zombie (state Z) has stopped running.
        Ok(stat) => !stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}
