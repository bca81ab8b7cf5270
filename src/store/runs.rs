//! The runs concern: claims, outcomes, history and reaping ([`Runs`]).
//!
//! A fire is claimed by inserting its `(task, scheduled_at)` row; the insert that wins
//! runs it. [`Op::ClaimExclusive`] is the claim of a `concurrency: forbid` task: in the
//! same transaction it refuses the fire (recorded `skipped`, naming the running fire)
//! while another run of the task is `running`, so two schedulers sharing one store can
//! never overlap a task.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{Claim, HistoryFilter, Outcome, RunRecord, Status, StoreError};

/// One write of a batch (see [`Runs::batch`]).
#[derive(Debug, Clone)]
pub enum Op {
    /// Claim a fire as `running` (like [`Runs::claim`]).
    Claim(Claim),
    /// Claim a fire as `running` unless another run of the task is `running`; then record
    /// the fire `skipped` with a reason naming the running fire(s) (`concurrency: forbid`).
    ClaimExclusive(Claim),
    /// Record a fire that does not run (like [`Runs::record`]).
    Record(Claim, Status, String),
    /// Claim a fire as `deferred` until an instant (like [`super::Schedule::defer`]).
    Defer(Claim, DateTime<Utc>, String),
    /// Move a task's cursor (like [`super::Schedule::set_cursor`]).
    Cursor(String, DateTime<Utc>),
}

/// What one [`Op`] of a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// It took effect (the fire is this caller's; the cursor was written or was ahead).
    Done,
    /// The fire already had a row (claimed by anyone, at any time): nothing was written.
    Taken,
    /// [`Op::ClaimExclusive`] found the task running: the fire was recorded `skipped`
    /// with this reason.
    Skipped(String),
}

impl Applied {
    /// The op took effect as asked.
    pub fn done(&self) -> bool {
        *self == Applied::Done
    }
}

/// The reason recorded on a fire skipped under `concurrency: forbid`; `running` lists the
/// fires (UTC instants, see [`super::fmt_instant`]) of the runs still `running`.
pub fn forbid_reason(running: &[String]) -> String {
    format!(
        "skipped: the previous run (fire at {}) is still active (concurrency: forbid)",
        running.join(", ")
    )
}

/// A page of run history ([`Runs::page`]): newest fire first, filtered, after a keyset
/// position.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    pub task: Option<String>,
    pub status: Option<super::Status>,
    /// `schedule`, `manual` or `mail`.
    pub trigger: Option<String>,
    /// Fires at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Fires before this instant.
    pub until: Option<DateTime<Utc>>,
    /// The last `(scheduled_at, run_id)` of the previous page: only runs after it in the
    /// order (older fire, or same fire and smaller id).
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: usize,
}

/// Run history: claims, outcomes, listing, reaping.
#[async_trait]
pub trait Runs: Send + Sync {
    /// Applies several writes in one transaction (the scheduler's fires of one instant).
    /// Returns, per op, what it did.
    async fn batch(&self, ops: &[Op]) -> Result<Vec<Applied>, StoreError>;

    /// Inserts the `(task, scheduled_at)` row in state `running`. Returns false if that
    /// fire was already claimed (by anyone, at any time).
    async fn claim(&self, claim: &Claim) -> Result<bool, StoreError> {
        Ok(self.batch(&[Op::Claim(claim.clone())]).await?[0].done())
    }

    /// Records a fire that does not run (status `missed` or `skipped`) with its reason. Like a
    /// claim, it takes the fire: false if the fire already has a row.
    async fn record(
        &self,
        claim: &Claim,
        status: Status,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let op = Op::Record(claim.clone(), status, reason.to_string());
        Ok(self.batch(&[op]).await?[0].done())
    }

    /// Records how a claimed run ended.
    async fn finish(&self, run_id: &str, outcome: &Outcome) -> Result<(), StoreError>;

    /// Adds warnings to a finished run (notification failures found after recording).
    async fn append_warnings(&self, run_id: &str, warnings: &[String]) -> Result<(), StoreError>;

    /// The newest runs first.
    async fn list(&self, filter: &HistoryFilter) -> Result<Vec<RunRecord>, StoreError>;

    /// A page of runs ordered by `(scheduled_at, run_id)` descending, without their
    /// deliveries. A run inserted while a client pages never shifts the pages after the
    /// client's position (keyset, not offset).
    async fn page(&self, q: &RunQuery) -> Result<Vec<RunRecord>, StoreError>;

    /// The run of the latest fire that is not deferred of each of these tasks (those
    /// that have one), without deliveries: one index seek per task.
    async fn last_runs(&self, tasks: &[&str]) -> Result<Vec<RunRecord>, StoreError>;

    /// One run by id.
    async fn get(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError>;

    /// Runs left `running`, oldest first (for reaping, see [`super::reap_interrupted`]).
    async fn running(&self) -> Result<Vec<RunRecord>, StoreError>;

    /// Marks a run that is still `running` as failed with `error` at `now` (its process is
    /// gone). False if it is no longer running.
    async fn fail_interrupted(
        &self,
        run_id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}
