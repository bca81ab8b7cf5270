//! The task revisions concern ([`Revisions`]): every version of a task file written
//! through ferry (the API, `ferry tasks restore`), with who wrote it and why, and the
//! version found on disk before a write when it differs from the last one recorded (an
//! edit by hand), so that no version that ferry replaced is lost.
//!
//! Kept in the store rather than in a folder beside the tasks: it is shared by every
//! node of a shared store, written in the same place as the audit trail, backed up with
//! the run history, and never seen by the reload watcher or `ferry validate`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreError;

/// One version of a task file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct RevisionRecord {
    pub task: String,
    /// 1, 2, … per task.
    pub rev: u32,
    pub at: DateTime<Utc>,
    /// Who wrote it (`user:alice`, `token:ci`, `root@node`; `file` for a version found on
    /// disk).
    pub author: String,
    /// `create`, `replace`, `delete`, `restore N`, or `found on disk`.
    pub action: String,
    /// The file's text; none for a deletion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// The revision history of task files.
#[async_trait]
pub trait Revisions: Send + Sync {
    /// Appends a version of `task` (numbered after the last one); its number. Two writers
    /// never get the same number: the SQLite store numbers inside its write lock; a
    /// shared backend must lock or retry on the `(task, rev)` key.
    async fn add_revision(
        &self,
        task: &str,
        at: DateTime<Utc>,
        author: &str,
        action: &str,
        content: Option<&str>,
    ) -> Result<u32, StoreError>;

    /// Every version of `task`, oldest first.
    async fn revisions(&self, task: &str) -> Result<Vec<RevisionRecord>, StoreError>;

    /// One version.
    async fn revision(&self, task: &str, rev: u32) -> Result<Option<RevisionRecord>, StoreError>;
}
