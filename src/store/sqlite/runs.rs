//! SQLite: the runs concern (claims, outcomes, history).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{SqliteStore, row_to_record};
use crate::store::runs::{Applied, Op, RunQuery, Runs, forbid_reason};
use crate::store::{
    Claim, HistoryFilter, Ledger, Outcome, Owner, RunRecord, Status, StoreError, fmt_instant,
    parse_instant,
};

/// Runs one [`Op`] on a transaction.
async fn apply_op(conn: &mut sqlx::SqliteConnection, op: &Op) -> Result<Applied, sqlx::Error> {
    let (c, status, reason, until) = match op {
        Op::Cursor(task, at) => {
            // Text timestamps in one fixed format compare in time order.
            sqlx::query(
                "INSERT INTO schedule_cursors (task, cursor, updated_at) VALUES (?, ?, ?)
                 ON CONFLICT (task) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at
                 WHERE excluded.cursor > schedule_cursors.cursor",
            )
            .bind(task)
            .bind(fmt_instant(*at))
            .bind(fmt_instant(crate::clock::wall_now()))
            .execute(&mut *conn)
            .await?;
            return Ok(Applied::Done);
        }
        Op::Claim(c) => (c, Status::Running, None, None),
        Op::ClaimExclusive(c) => {
            // The transaction holds the write lock (BEGIN IMMEDIATE): no other claim of
            // this task can start between this read and the insert.
            let running: Vec<String> = sqlx::query_scalar(
                "SELECT scheduled_at FROM runs WHERE task = ? AND status = 'running'
                 ORDER BY scheduled_at",
            )
            .bind(&c.task)
            .fetch_all(&mut *conn)
            .await?;
            if running.is_empty() {
                (c, Status::Running, None, None)
            } else {
                let reason = forbid_reason(&running);
                let took = insert_run(conn, c, Status::Skipped, Some(&reason), None).await?;
                return Ok(if took {
                    Applied::Skipped(reason)
                } else {
                    Applied::Taken
                });
            }
        }
        Op::Record(c, status, reason) => (c, *status, Some(reason.as_str()), None),
        Op::Defer(c, until, reason) => (c, Status::Deferred, Some(reason.as_str()), Some(*until)),
    };
    Ok(if insert_run(conn, c, status, reason, until).await? {
        Applied::Done
    } else {
        Applied::Taken
    })
}

/// Inserts a fire's row; false if the fire already has one.
pub(super) async fn insert_run(
    conn: &mut sqlx::SqliteConnection,
    c: &Claim,
    status: Status,
    reason: Option<&str>,
    until: Option<DateTime<Utc>>,
) -> Result<bool, sqlx::Error> {
    let finished =
        matches!(status, Status::Missed | Status::Skipped).then(|| fmt_instant(c.started_at));
    let res = sqlx::query(
        "INSERT INTO runs (run_id, task, scheduled_at, trigger, status, node, pid, started_at,
                           finished_at, duration_ms, reason, deferred_until, started_by)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (task, scheduled_at) DO NOTHING",
    )
    .bind(&c.run_id)
    .bind(&c.task)
    .bind(fmt_instant(c.scheduled_at))
    .bind(c.trigger.as_str())
    .bind(status.as_str())
    .bind(&c.node)
    .bind(i64::from(c.pid))
    .bind(fmt_instant(c.started_at))
    .bind(finished.clone())
    .bind(finished.map(|_| 0i64))
    .bind(reason)
    .bind(until.map(fmt_instant))
    .bind(&c.started_by)
    .execute(&mut *conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Milliseconds from a run's recorded start to `end` (computed here, not in SQL, so that
/// every backend agrees): `None` when the run is not in the store.
pub(super) async fn duration_ms(
    conn: &mut sqlx::SqliteConnection,
    run_id: &str,
    end: DateTime<Utc>,
) -> Result<Option<i64>, sqlx::Error> {
    let started: Option<String> =
        sqlx::query_scalar("SELECT started_at FROM runs WHERE run_id = ?")
            .bind(run_id)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(started
        .map(|s| parse_instant(&s).map_or(0, |s| end.signed_duration_since(s).num_milliseconds())))
}

#[async_trait]
impl Runs for SqliteStore {
    async fn batch(&self, ops: &[Op]) -> Result<Vec<Applied>, StoreError> {
        let mut tx = self.write_tx().await?;
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(apply_op(&mut tx, op).await.map_err(|e| self.err(e))?);
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(out)
    }

    async fn finish(&self, run_id: &str, o: &Outcome) -> Result<(), StoreError> {
        let owner = Owner {
            node: String::new(),
            pid: 0,
        };
        self.finish_with_deliveries(run_id, o, &[], &owner).await
    }

    async fn append_warnings(&self, run_id: &str, warnings: &[String]) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT warnings FROM runs WHERE run_id = ?")
                .bind(run_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        let mut all: Vec<String> = current
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        all.extend(warnings.iter().cloned());
        sqlx::query("UPDATE runs SET warnings = ? WHERE run_id = ?")
            .bind(serde_json::to_string(&all).expect("strings serialize"))
            .bind(run_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn list(&self, f: &HistoryFilter) -> Result<Vec<RunRecord>, StoreError> {
        let limit = if f.limit == 0 { 20 } else { f.limit } as i64;
        let mut tx = self.read_tx().await?;
        let rows = match &f.task {
            Some(t) => sqlx::query(
                "SELECT * FROM runs WHERE task = ? ORDER BY started_at DESC, run_id DESC LIMIT ?",
            )
            .bind(t)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await,
            None => {
                sqlx::query("SELECT * FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?")
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await
            }
        }
        .map_err(|e| self.err(e))?;
        let mut records = self.to_records(&rows)?;
        for r in &mut records {
            self.add_deliveries(&mut tx, r).await?;
        }
        Ok(records)
    }

    async fn page(&self, q: &RunQuery) -> Result<Vec<RunRecord>, StoreError> {
        let mut sql = String::from("SELECT * FROM runs WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        if let Some(t) = &q.task {
            sql.push_str(" AND task = ?");
            binds.push(t.clone());
        }
        if let Some(s) = q.status {
            sql.push_str(" AND status = ?");
            binds.push(s.as_str().to_string());
        }
        if let Some(t) = &q.trigger {
            sql.push_str(" AND trigger = ?");
            binds.push(t.clone());
        }
        if let Some(t) = q.since {
            sql.push_str(" AND scheduled_at >= ?");
            binds.push(fmt_instant(t));
        }
        if let Some(t) = q.until {
            sql.push_str(" AND scheduled_at < ?");
            binds.push(fmt_instant(t));
        }
        if let Some((at, id)) = &q.after {
            sql.push_str(" AND (scheduled_at < ? OR (scheduled_at = ? AND run_id < ?))");
            binds.push(fmt_instant(*at));
            binds.push(fmt_instant(*at));
            binds.push(id.clone());
        }
        sql.push_str(" ORDER BY scheduled_at DESC, run_id DESC LIMIT ?");
        // Only fixed fragments are formatted in; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            query = query.bind(b);
        }
        let rows = query
            .bind(q.limit.clamp(1, 10_000) as i64)
            .fetch_all(&mut *self.read_tx().await?)
            .await
            .map_err(|e| self.err(e))?;
        self.to_records(&rows)
    }

    async fn last_runs(&self, tasks: &[&str]) -> Result<Vec<RunRecord>, StoreError> {
        let mut tx = self.read_tx().await?;
        let mut out = Vec::new();
        for task in tasks {
            // The unique (task, scheduled_at) index answers each from its end.
            let row = sqlx::query(
                "SELECT * FROM runs WHERE task = ? AND status <> 'deferred'
                 ORDER BY scheduled_at DESC LIMIT 1",
            )
            .bind(task)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
            if let Some(row) = row {
                out.push(row_to_record(&row).map_err(|e| self.err(e))?);
            }
        }
        Ok(out)
    }

    async fn get(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let mut tx = self.read_tx().await?;
        let row = sqlx::query("SELECT * FROM runs WHERE run_id = ?")
            .bind(run_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let mut record = row
            .as_ref()
            .map(row_to_record)
            .transpose()
            .map_err(|e| self.err(e))?;
        if let Some(r) = &mut record {
            self.add_deliveries(&mut tx, r).await?;
        }
        Ok(record)
    }

    async fn running(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.records("SELECT * FROM runs WHERE status = 'running' ORDER BY started_at")
            .await
    }

    async fn fail_interrupted(
        &self,
        run_id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let ms = duration_ms(&mut tx, run_id, now)
            .await
            .map_err(|e| self.err(e))?;
        let res = sqlx::query(
            "UPDATE runs SET status = 'failed', finished_at = ?, error = ?, duration_ms = ?
             WHERE run_id = ? AND status = 'running'",
        )
        .bind(fmt_instant(now))
        .bind(error)
        .bind(ms)
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(res.rows_affected() == 1)
    }
}
