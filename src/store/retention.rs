//! The retention concern ([`Retention`]): what `ferry cleanup` and the daily cleanup of
//! `ferry serve` read and delete ([`crate::retention`] decides what goes).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{RunRecord, StoreError};

/// What [`Retention::delete_runs`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub runs: u64,
    /// Delivery ledger rows (notifications and owner alerts) and their recipients.
    pub deliveries: u64,
    /// Download links and their download audit rows.
    pub links: u64,
    pub downloads: u64,
}

#[async_trait]
pub trait Retention: Send + Sync {
    /// Finished runs whose result files are still there (listed, not yet removed by
    /// retention), oldest first (without their deliveries).
    async fn runs_with_files(&self) -> Result<Vec<RunRecord>, StoreError>;

    /// Notes that retention removed a run's files at `at`; the run keeps their names,
    /// sizes and sha256.
    async fn mark_files_removed(&self, run_id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Finished runs (not running, not deferred) that started before `cutoff`, oldest
    /// first (without their deliveries).
    async fn finished_before(&self, cutoff: DateTime<Utc>) -> Result<Vec<RunRecord>, StoreError>;

    /// Deletes runs with their delivery ledger, recipients, links and download audit, in
    /// one transaction. A run that is running or deferred is kept.
    async fn delete_runs(&self, run_ids: &[String]) -> Result<Deleted, StoreError>;
}
