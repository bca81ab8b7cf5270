//! The mail concern ([`Mail`]): the record of every mail ingest handled, so that each is
//! judged once, run once and answered at most once, also with several nodes on one store.
//!
//! A mail is claimed by [`Mail::claim_mail`] before anything else happens to it: the
//! unique keys `(mailbox, uidvalidity, uid)` and `message_key` (a hash of its Message-ID,
//! or of its header section when it has none) make the claim. The claim also counts the
//! sender's requests of the day, so a quota holds across nodes. Only after the claim is
//! the mail moved out of the request folder ([`Mail::mail_moved`]); a crash in between
//! leaves it in place, and the next poll finds the claim and just moves it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Claim, StoreError};

/// One handled mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRecord {
    pub mailbox: String,
    pub uidvalidity: u32,
    pub uid: u32,
    /// `sha256:` of the Message-ID (or of the header section when there is none).
    pub message_key: String,
    pub message_id: Option<String>,
    pub sender: Option<String>,
    pub subject: String,
    /// `accept`, `reject` or `ignore`.
    pub verdict: String,
    /// The reason code of a rejection or an ignored mail.
    pub reason: Option<String>,
    pub detail: String,
    /// Whether the sender is to be answered.
    pub reply: bool,
    pub database: Option<String>,
    /// The one-shot run of an accepted request.
    pub run_id: Option<String>,
    pub received_at: DateTime<Utc>,
    /// The sender's day (`YYYY-MM-DD` in the config's zone): quotas and reply caps count
    /// per day.
    pub day: String,
    /// The folder the mail goes to.
    pub folder: String,
    pub moved_at: Option<DateTime<Utc>>,
    pub replied_at: Option<DateTime<Utc>>,
}

/// What [`Mail::claim_mail`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailClaim {
    /// Recorded as given.
    New,
    /// The sender's quota for the day was used up: recorded as a `quota_exceeded`
    /// rejection instead (with a reply, and no run).
    OverQuota,
    /// The mail was already recorded (by this node or another, before a crash or a
    /// UIDVALIDITY change): nothing was written.
    Known(Box<MailRecord>),
}

/// What [`Mail::reserve_reply`] granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplySlot {
    /// Send it (marked replied now).
    Granted,
    /// Already answered.
    AlreadyReplied,
    /// The sender's replies for the day are used up; `first` is true for the first mail
    /// refused that day (the one that raises the owners' alert).
    CapReached { first: bool },
}

#[async_trait]
pub trait Mail: Send + Sync {
    /// The UIDVALIDITY last seen for `mailbox`.
    async fn mailbox_validity(&self, mailbox: &str) -> Result<Option<u32>, StoreError>;

    /// Remembers `mailbox`'s UIDVALIDITY.
    async fn set_mailbox_validity(
        &self,
        mailbox: &str,
        validity: u32,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The record of a mail by either key, if it has one.
    async fn find_mail(
        &self,
        mailbox: &str,
        uidvalidity: u32,
        uid: u32,
        message_key: &str,
    ) -> Result<Option<MailRecord>, StoreError>;

    /// Records `rec` unless the mail is known by either key. An accepted request is
    /// recorded only while the sender has fewer than `quota` accepted requests on
    /// `rec.day`; otherwise it becomes a `quota_exceeded` rejection ([`MailClaim::OverQuota`]).
    ///
    /// `run`, given for an accepted request, is its one-shot run: claimed (`running`) in
    /// the same transaction, so that a mail is never recorded as accepted without its run
    /// nor run without its record. Should `run`'s instant be taken for its task, the run
    /// takes the next free millisecond (read it back with [`super::RunStore::get`]).
    async fn claim_mail(
        &self,
        rec: &MailRecord,
        quota: u32,
        run: Option<&Claim>,
    ) -> Result<MailClaim, StoreError>;

    /// The mail has left the request folder.
    async fn mail_moved(&self, message_key: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Takes one of the sender's `cap` replies of the day for this mail, unless it was
    /// answered already.
    async fn reserve_reply(
        &self,
        message_key: &str,
        cap: u32,
        at: DateTime<Utc>,
    ) -> Result<ReplySlot, StoreError>;

    /// The latest `limit` records, newest first.
    async fn mail_records(&self, limit: u32) -> Result<Vec<MailRecord>, StoreError>;
}
