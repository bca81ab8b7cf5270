//! The spec of `ingest:` (query by email), checked by [`crate::ingest::config`].

use std::path::PathBuf;
use std::time::Duration;

use super::{Format, QuietWindow, Secret, SmtpSecurity};

/// `ingest:`: where requests arrive, who may send them and how they are answered.
#[derive(Debug, Clone)]
pub struct IngestSpec {
    pub imap: ImapSpec,
    pub folders: IngestFolders,
    /// Wait with IMAP IDLE when the server offers it.
    pub idle: bool,
    /// Look for new mail at least this often.
    pub poll_every: Duration,
    /// The authserv-id of our own mail server; `None` only with `trust_unauthenticated`.
    pub authserv_id: Option<String>,
    /// Accept mail without our `Authentication-Results` (internal relays that add none).
    pub trust_unauthenticated: bool,
    /// The allowed senders, in config order (addresses are unique, lower case).
    pub senders: Vec<SenderSpec>,
    pub reply: ReplySpec,
    pub defaults: IngestDefaults,
    /// Mail larger than this (as the server reports its size) is refused unread.
    pub max_mail_bytes: u64,
    /// Windows in which accepted requests wait.
    pub quiet_hours: Vec<QuietWindow>,
    /// Addresses told about ingest itself, and sent the daily digest.
    pub owners: Vec<String>,
    /// Local time (the config's zone) of the daily digest.
    pub digest_at: chrono::NaiveTime,
}

impl IngestSpec {
    /// The allowed sender with this address (compared case-insensitively), if any.
    pub fn sender(&self, address: &str) -> Option<&SenderSpec> {
        self.senders
            .iter()
            .find(|s| s.address.eq_ignore_ascii_case(address.trim()))
    }
}

/// The IMAP account.
#[derive(Debug, Clone)]
pub struct ImapSpec {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: String,
    pub password: Secret,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// The folders of the IMAP account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestFolders {
    pub requests: String,
    pub processed: String,
    pub rejected: String,
    pub ignored: String,
}

/// One allowed sender.
#[derive(Debug, Clone)]
pub struct SenderSpec {
    /// The whole address, lower case.
    pub address: String,
    /// The datasources this sender may query.
    pub databases: Vec<String>,
    /// Requests per day.
    pub daily_quota: u32,
    /// The secret a request must carry (`local+TOKEN@domain` or the subject).
    pub token: Option<Secret>,
}

/// How requests are answered.
#[derive(Debug, Clone)]
pub struct ReplySpec {
    /// The email channel replies go through.
    pub channel: String,
    pub language: ReplyLanguage,
    /// Replies per sender per day; then silence and one owner alert.
    pub daily_cap: u32,
}

/// The language of the stock replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyLanguage {
    En,
    Zh,
}

/// The one-shot task a request becomes.
#[derive(Debug, Clone)]
pub struct IngestDefaults {
    pub format: Format,
    pub timeout: Duration,
    pub max_cost: Option<f64>,
    /// File name template without extension; `{{ attachment }}` is the query file's name
    /// without `.sql`/`.txt`.
    pub file_name: String,
}
