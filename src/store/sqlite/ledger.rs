//! SQLite: the delivery ledger concern.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::runs::duration_ms;
use super::{SqliteStore, row_to_delivery, row_to_recipient};
use crate::store::{
    AlertAdmission, AttemptEnd, DeliveryKey, DeliveryStatus, DueDelivery, Ledger, Outcome, Owner,
    QueuedDelivery, QueuedEntry, RecipientRecord, StoreError, fmt_instant, parse_instant,
};

#[async_trait]
impl Ledger for SqliteStore {
    async fn finish_with_deliveries(
        &self,
        run_id: &str,
        o: &Outcome,
        deliveries: &[QueuedDelivery],
        owner: &Owner,
    ) -> Result<(), StoreError> {
        let files = serde_json::to_string(&o.files).expect("file records serialize");
        let warnings = serde_json::to_string(&o.warnings).expect("strings serialize");
        let mut tx = self.write_tx().await?;
        let ms = duration_ms(&mut tx, run_id, o.finished_at)
            .await
            .map_err(|e| self.err(e))?;
        let res = sqlx::query(
            "UPDATE runs SET status = ?, finished_at = ?, duration_ms = ?,
                 rows = ?, files = ?, warnings = ?, error = ?
             WHERE run_id = ?",
        )
        .bind(o.status.as_str())
        .bind(fmt_instant(o.finished_at))
        .bind(ms)
        .bind(o.rows as i64)
        .bind(files)
        .bind(warnings)
        .bind(&o.error)
        .bind(run_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        if res.rows_affected() != 1 {
            return Err(StoreError::Other {
                path: self.path.display().to_string(),
                message: format!("run {run_id} is not in the store"),
            });
        }
        let at = fmt_instant(o.finished_at);
        let mut seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM deliveries")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        for d in deliveries {
            seq += 1;
            let (status, message, error, next, owned) = match &d.message {
                Ok(m) => (
                    DeliveryStatus::Pending,
                    Some(m.as_str()),
                    None,
                    Some(at.clone()),
                    true,
                ),
                Err(e) => (DeliveryStatus::Failed, None, Some(e.as_str()), None, false),
            };
            sqlx::query(
                "INSERT INTO deliveries (run_id, channel, occurrence, status, retryable, receipt,
                     error, at, attempts, next_attempt_at, message, owner_node, owner_pid, seq)
                 VALUES (?, ?, ?, ?, 0, NULL, ?, ?, 0, ?, ?, ?, ?, ?)",
            )
            .bind(run_id)
            .bind(&d.channel)
            .bind(i64::from(d.occurrence))
            .bind(status.as_str())
            .bind(error)
            .bind(&at)
            .bind(next)
            .bind(message)
            .bind(owned.then_some(owner.node.as_str()))
            .bind(owned.then_some(i64::from(owner.pid)))
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn enqueue_alert(
        &self,
        run_id: &str,
        channel: &str,
        occurrence: u32,
        message: &str,
        owner: &Owner,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let at = fmt_instant(now);
        let mut tx = self.write_tx().await?;
        let seq: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM deliveries")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        let res = sqlx::query(
            "INSERT INTO deliveries (run_id, channel, occurrence, status, retryable, receipt,
                 error, at, attempts, next_attempt_at, message, owner_node, owner_pid, seq,
                 purpose)
             VALUES (?, ?, ?, 'pending', 0, NULL, NULL, ?, 0, ?, ?, ?, ?, ?, 'alert')
             ON CONFLICT DO NOTHING",
        )
        .bind(run_id)
        .bind(channel)
        .bind(i64::from(occurrence))
        .bind(&at)
        .bind(&at)
        .bind(message)
        .bind(&owner.node)
        .bind(i64::from(owner.pid))
        .bind(seq)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(res.rows_affected() == 1)
    }

    async fn begin_attempt(
        &self,
        key: &DeliveryKey,
        from: DeliveryStatus,
        attempts: u32,
        owner: &Owner,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // The state and attempt count read by the caller are the fence: of two processes
        // that read the same row, only the first update matches. The list of attempt
        // times is extended here, not by a JSON function of the database.
        let mut tx = self.write_tx().await?;
        let tried: Option<String> = sqlx::query_scalar(
            "SELECT tried_at FROM deliveries
             WHERE run_id = ? AND channel = ? AND occurrence = ? AND status = ? AND attempts = ?",
        )
        .bind(&key.run_id)
        .bind(&key.channel)
        .bind(i64::from(key.occurrence))
        .bind(from.as_str())
        .bind(i64::from(attempts))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        let Some(tried) = tried else {
            return Ok(false);
        };
        let mut tried: Vec<String> = serde_json::from_str(&tried).unwrap_or_default();
        tried.push(fmt_instant(now));
        let res = sqlx::query(
            "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, at = ?,
                 owner_node = ?, owner_pid = ?, tried_at = ?,
                 takeovers = takeovers + CASE WHEN status = 'sending' THEN 1 ELSE 0 END
             WHERE run_id = ? AND channel = ? AND occurrence = ? AND status = ? AND attempts = ?",
        )
        .bind(fmt_instant(now))
        .bind(&owner.node)
        .bind(i64::from(owner.pid))
        .bind(serde_json::to_string(&tried).expect("strings serialize"))
        .bind(&key.run_id)
        .bind(&key.channel)
        .bind(i64::from(key.occurrence))
        .bind(from.as_str())
        .bind(i64::from(attempts))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(res.rows_affected() == 1)
    }

    async fn end_attempt(
        &self,
        key: &DeliveryKey,
        end: &AttemptEnd,
        owner: &Owner,
        attempts: u32,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let held = sqlx::query(
            "UPDATE deliveries SET status = ?, retryable = ?, receipt = ?, error = ?, at = ?,
                 next_attempt_at = ?,
                 owner_node = CASE WHEN ? THEN owner_node END,
                 owner_pid = CASE WHEN ? THEN owner_pid END
             WHERE run_id = ? AND channel = ? AND occurrence = ?
               AND attempts = ? AND owner_node = ? AND owner_pid = ?",
        )
        .bind(end.status.as_str())
        .bind(i64::from(end.retryable))
        .bind(&end.receipt)
        .bind(&end.error)
        .bind(fmt_instant(end.at))
        .bind(end.next_attempt_at.map(fmt_instant))
        .bind(end.keep_owner)
        .bind(end.keep_owner)
        .bind(&key.run_id)
        .bind(&key.channel)
        .bind(i64::from(key.occurrence))
        .bind(i64::from(attempts))
        .bind(&owner.node)
        .bind(i64::from(owner.pid))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        if held.rows_affected() != 1 {
            // Taken over by another process: its attempt decides; write nothing.
            tx.rollback().await.map_err(|e| self.err(e))?;
            return Ok(false);
        }
        let mut seq: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM delivery_recipients")
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        for r in &end.recipients {
            seq += 1;
            sqlx::query(
                "INSERT INTO delivery_recipients (run_id, channel, occurrence, part, recipient,
                     status, attempts, error, reply, sent_at, at, seq)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (run_id, channel, occurrence, part, recipient) DO UPDATE SET
                     status = excluded.status, attempts = excluded.attempts,
                     error = excluded.error, reply = excluded.reply,
                     sent_at = excluded.sent_at, at = excluded.at",
            )
            .bind(&key.run_id)
            .bind(&key.channel)
            .bind(i64::from(key.occurrence))
            .bind(i64::from(r.part))
            .bind(&r.recipient)
            .bind(r.status.as_str())
            .bind(i64::from(r.attempts))
            .bind(&r.error)
            .bind(&r.reply)
            .bind(r.sent_at.map(fmt_instant))
            .bind(fmt_instant(r.at))
            .bind(seq)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(true)
    }

    async fn recipients(&self, key: &DeliveryKey) -> Result<Vec<RecipientRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM delivery_recipients WHERE run_id = ? AND channel = ? AND occurrence = ?
             ORDER BY part, seq",
        )
        .bind(&key.run_id)
        .bind(&key.channel)
        .bind(i64::from(key.occurrence))
        .fetch_all(&mut *self.read_tx().await?)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(row_to_recipient)
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.run_id, d.channel, d.occurrence, d.status, d.attempts, d.message,
                    d.owner_node, d.owner_pid, d.at, d.purpose, d.takeovers,
                    coalesce(r.task, '') AS task
             FROM deliveries d LEFT JOIN runs r ON r.run_id = d.run_id
             WHERE d.message IS NOT NULL
               AND (d.status = 'sending' OR (d.status = 'pending' AND d.next_attempt_at <= ?))
             ORDER BY d.next_attempt_at, d.seq LIMIT ?",
        )
        .bind(fmt_instant(now))
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&mut *self.read_tx().await?)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|row| -> Result<DueDelivery, sqlx::Error> {
                let status: String = row.try_get("status")?;
                let occurrence: i64 = row.try_get("occurrence")?;
                let attempts: i64 = row.try_get("attempts")?;
                let node: Option<String> = row.try_get("owner_node")?;
                let pid: Option<i64> = row.try_get("owner_pid")?;
                let at: String = row.try_get("at")?;
                let purpose: String = row.try_get("purpose")?;
                let takeovers: i64 = row.try_get("takeovers")?;
                Ok(DueDelivery {
                    takeovers: takeovers.max(0) as u32,
                    alert: purpose == "alert",
                    key: DeliveryKey {
                        run_id: row.try_get("run_id")?,
                        channel: row.try_get("channel")?,
                        occurrence: occurrence.max(0) as u32,
                    },
                    task: row.try_get("task")?,
                    status: DeliveryStatus::parse(&status).ok_or_else(|| {
                        sqlx::Error::Decode(format!("unknown delivery status `{status}`").into())
                    })?,
                    attempts: attempts.max(0) as u32,
                    message: row.try_get("message")?,
                    owner: node.zip(pid).map(|(node, pid)| Owner {
                        node,
                        pid: pid as u32,
                    }),
                    held_since: parse_instant(&at),
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    async fn queued_deliveries(
        &self,
        failed: bool,
        limit: usize,
    ) -> Result<Vec<QueuedEntry>, StoreError> {
        let statuses = if failed {
            "('failed')"
        } else {
            "('pending', 'sending')"
        };
        let sql = format!(
            "SELECT d.*, coalesce(r.task, '') AS task
             FROM deliveries d LEFT JOIN runs r ON r.run_id = d.run_id
             WHERE d.status IN {statuses}
             ORDER BY d.at, d.seq LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_all(&mut *self.read_tx().await?)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|row| -> Result<QueuedEntry, sqlx::Error> {
                Ok(QueuedEntry {
                    run_id: row.try_get("run_id")?,
                    task: row.try_get("task")?,
                    delivery: row_to_delivery(row)?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    async fn retry_delivery(
        &self,
        key: &DeliveryKey,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let res = sqlx::query(
            // The owner is cleared before `status` is set: MySQL evaluates SET left to
            // right with the new values, the others with the old ones.
            "UPDATE deliveries SET
                 owner_node = CASE WHEN status = 'failed' THEN NULL ELSE owner_node END,
                 owner_pid = CASE WHEN status = 'failed' THEN NULL ELSE owner_pid END,
                 status = 'pending', next_attempt_at = ?, retryable = 1
             WHERE run_id = ? AND channel = ? AND occurrence = ?
               AND status IN ('pending', 'failed') AND message IS NOT NULL",
        )
        .bind(fmt_instant(now))
        .bind(&key.run_id)
        .bind(&key.channel)
        .bind(i64::from(key.occurrence))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        if res.rows_affected() == 1 {
            sqlx::query(
                "UPDATE delivery_recipients SET status = 'pending', at = ?
                 WHERE run_id = ? AND channel = ? AND occurrence = ? AND status = 'failed'",
            )
            .bind(fmt_instant(now))
            .bind(&key.run_id)
            .bind(&key.channel)
            .bind(i64::from(key.occurrence))
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(res.rows_affected() == 1)
    }

    async fn admit_alert(
        &self,
        task: &str,
        now: DateTime<Utc>,
        every: Duration,
    ) -> Result<Option<AlertAdmission>, StoreError> {
        let mut tx = self.write_tx().await?;
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT last_sent_at, held FROM owner_alerts WHERE task = ?")
                .bind(task)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        let last = row
            .as_ref()
            .and_then(|(t, held)| Some((parse_instant(t)?, *held as u64)));
        let admitted = match last {
            Some((sent, _)) if now < sent + every => {
                sqlx::query("UPDATE owner_alerts SET held = held + 1 WHERE task = ?")
                    .bind(task)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
                None
            }
            _ => {
                sqlx::query(
                    "INSERT INTO owner_alerts (task, last_sent_at, held) VALUES (?, ?, 0)
                     ON CONFLICT (task) DO UPDATE SET last_sent_at = excluded.last_sent_at, held = 0",
                )
                .bind(task)
                .bind(fmt_instant(now))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
                Some(AlertAdmission {
                    held: last.map(|(_, h)| h).unwrap_or(0),
                    last_sent_at: last.map(|(t, _)| t),
                })
            }
        };
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(admitted)
    }
}
