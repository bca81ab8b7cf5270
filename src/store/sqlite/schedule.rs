//! SQLite: the schedule concern (deferred runs, cursors, channel pauses, task pauses).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::{RunRecord, Schedule, StoreError, TaskPause, fmt_instant, parse_instant};

#[async_trait]
impl Schedule for SqliteStore {
    async fn start_deferred(
        &self,
        run_id: &str,
        node: &str,
        pid: u32,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let res = self
            .write_one(
                sqlx::query(
                    "UPDATE runs SET status = 'running', node = ?, pid = ?, started_at = ?
             WHERE run_id = ? AND status = 'deferred'",
                )
                .bind(node)
                .bind(i64::from(pid))
                .bind(fmt_instant(now))
                .bind(run_id),
            )
            .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn deferred(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.records("SELECT * FROM runs WHERE status = 'deferred' ORDER BY scheduled_at, task")
            .await
    }

    async fn cursor(&self, task: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let c: Option<String> =
            sqlx::query_scalar("SELECT cursor FROM schedule_cursors WHERE task = ?")
                .bind(task)
                .fetch_optional(&mut *self.read_tx().await?)
                .await
                .map_err(|e| self.err(e))?;
        Ok(c.as_deref().and_then(parse_instant))
    }

    async fn cursors(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT task, cursor FROM schedule_cursors")
                .fetch_all(&mut *self.read_tx().await?)
                .await
                .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(t, c)| parse_instant(&c).map(|c| (t, c)))
            .collect())
    }

    async fn redefer(
        &self,
        run_id: &str,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let res = self
            .write_one(
                sqlx::query(
                    "UPDATE runs SET deferred_until = ?, reason = ?
             WHERE run_id = ? AND status = 'deferred'",
                )
                .bind(fmt_instant(until))
                .bind(reason)
                .bind(run_id),
            )
            .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn set_pause(
        &self,
        key: &str,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.write_one(
            sqlx::query(
                "INSERT INTO channel_pauses (pause_key, until_at, reason) VALUES (?, ?, ?)
             ON CONFLICT (pause_key) DO UPDATE SET until_at = excluded.until_at,
                 reason = excluded.reason",
            )
            .bind(key)
            .bind(fmt_instant(until))
            .bind(reason),
        )
        .await?;
        Ok(())
    }

    async fn pause(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(DateTime<Utc>, String)>, StoreError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT until_at, reason FROM channel_pauses WHERE pause_key = ?")
                .bind(key)
                .fetch_optional(&mut *self.read_tx().await?)
                .await
                .map_err(|e| self.err(e))?;
        Ok(row
            .and_then(|(until, reason)| Some((parse_instant(&until)?, reason)))
            .filter(|(until, _)| *until > now))
    }

    async fn pause_task(&self, pause: &TaskPause) -> Result<(), StoreError> {
        self.write_one(
            sqlx::query(
                "INSERT INTO task_pauses (task, paused_by, reason, paused_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (task) DO UPDATE SET paused_by = excluded.paused_by,
                 reason = excluded.reason, paused_at = excluded.paused_at",
            )
            .bind(&pause.task)
            .bind(&pause.by)
            .bind(&pause.reason)
            .bind(fmt_instant(pause.at)),
        )
        .await?;
        Ok(())
    }

    async fn resume_task(&self, task: &str) -> Result<Option<TaskPause>, StoreError> {
        let mut tx = self.write_tx().await?;
        let row: Option<PauseRow> = sqlx::query_as(
            "DELETE FROM task_pauses WHERE task = ?
             RETURNING task, paused_by, reason, paused_at",
        )
        .bind(task)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(row.and_then(pause_of))
    }

    async fn paused_tasks(&self) -> Result<Vec<TaskPause>, StoreError> {
        let rows: Vec<PauseRow> = sqlx::query_as(
            "SELECT task, paused_by, reason, paused_at FROM task_pauses ORDER BY task",
        )
        .fetch_all(&mut *self.read_tx().await?)
        .await
        .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().filter_map(pause_of).collect())
    }
}

type PauseRow = (String, String, Option<String>, String);

fn pause_of((task, by, reason, at): PauseRow) -> Option<TaskPause> {
    Some(TaskPause {
        task,
        by,
        reason,
        at: parse_instant(&at)?,
    })
}
