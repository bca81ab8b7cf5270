//! The schedule concern: the scheduler's cursors, deferred runs, channel pauses and
//! tasks paused by hand ([`Schedule`], [`TaskPause`]).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::runs::{Op, Runs};
use super::{Claim, RunRecord, StoreError};

/// A task paused by hand (`ferry tasks pause NAME --reason …`): while it holds, the
/// scheduler records the task's fires as `skipped` instead of running them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct TaskPause {
    pub task: String,
    /// Who paused it (`user@node`).
    pub by: String,
    /// Why, as given with `--reason`.
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

impl TaskPause {
    /// The reason recorded on a fire skipped by this pause.
    pub fn skip_reason(&self) -> String {
        let mut r = format!(
            "skipped: the task is paused (by {} at {}",
            self.by,
            super::fmt_instant(self.at)
        );
        if let Some(why) = &self.reason {
            r.push_str(": ");
            r.push_str(why);
        }
        r.push_str("); `ferry tasks resume` ends the pause");
        r
    }
}

/// Cursors, deferrals and pauses.
#[async_trait]
pub trait Schedule: Runs {
    /// Claims a fire that starts later (status `deferred`, not before `until`).
    async fn defer(
        &self,
        claim: &Claim,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let op = Op::Defer(claim.clone(), until, reason.to_string());
        Ok(self.batch(&[op]).await?[0].done())
    }

    /// Moves a deferred run to `running` (by this node and process). False if it is no
    /// longer deferred.
    async fn start_deferred(
        &self,
        run_id: &str,
        node: &str,
        pid: u32,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Moves the start of a run that is still deferred (the quiet window it waited for
    /// changed). False if it is no longer deferred.
    async fn redefer(
        &self,
        run_id: &str,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool, StoreError>;

    /// Every deferred run, oldest fire first.
    async fn deferred(&self) -> Result<Vec<RunRecord>, StoreError>;

    /// The scheduler's cursor of a task: every fire up to it has been handled.
    async fn cursor(&self, task: &str) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Every task's cursor.
    async fn cursors(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError>;

    /// Moves a task's cursor (never backwards).
    async fn set_cursor(&self, task: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.batch(&[Op::Cursor(task.to_string(), at)])
            .await
            .map(|_| ())
    }

    /// Pauses a channel (or any key, e.g. `dingtalk:ops`) until `until`, with why (DingTalk's
    /// 130101 "send too fast" asks for 10 minutes). Replaces an earlier pause of the key.
    async fn set_pause(
        &self,
        key: &str,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError>;

    /// The pause of `key` in force at `now` (until when, and why), if any.
    async fn pause(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(DateTime<Utc>, String)>, StoreError>;

    /// Pauses a task by hand; replaces an earlier pause of the task (its who, why and when).
    async fn pause_task(&self, pause: &TaskPause) -> Result<(), StoreError>;

    /// Ends a task's pause; the pause it ended, `None` if the task was not paused.
    async fn resume_task(&self, task: &str) -> Result<Option<TaskPause>, StoreError>;

    /// Every paused task, by name.
    async fn paused_tasks(&self) -> Result<Vec<TaskPause>, StoreError>;
}
