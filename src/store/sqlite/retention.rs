//! SQLite: the retention concern.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::{Deleted, Retention, RunRecord, StoreError, fmt_instant};

#[async_trait]
impl Retention for SqliteStore {
    async fn runs_with_files(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.records(
            "SELECT * FROM runs WHERE files <> '[]' AND files_removed_at IS NULL
             AND status NOT IN ('running', 'deferred') ORDER BY started_at, run_id",
        )
        .await
    }

    async fn mark_files_removed(&self, run_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write_one(
            sqlx::query("UPDATE runs SET files_removed_at = ? WHERE run_id = ?")
                .bind(fmt_instant(at))
                .bind(run_id),
        )
        .await?;
        Ok(())
    }

    async fn finished_before(&self, cutoff: DateTime<Utc>) -> Result<Vec<RunRecord>, StoreError> {
        let mut tx = self.read_tx().await?;
        let rows = sqlx::query(
            "SELECT * FROM runs WHERE started_at < ? AND status NOT IN ('running', 'deferred')
             ORDER BY started_at, run_id",
        )
        .bind(fmt_instant(cutoff))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(super::row_to_record)
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    async fn delete_runs(&self, run_ids: &[String]) -> Result<Deleted, StoreError> {
        let mut out = Deleted::default();
        let mut tx = self.write_tx().await?;
        for id in run_ids {
            let run = sqlx::query(
                "DELETE FROM runs WHERE run_id = ? AND status NOT IN ('running', 'deferred')",
            )
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
            if run.rows_affected() == 0 {
                continue;
            }
            out.runs += 1;
            let mut recipients = 0;
            for (sql, slot) in [
                (
                    "DELETE FROM downloads WHERE link_id IN (SELECT id FROM links WHERE run_id = ?)",
                    &mut out.downloads,
                ),
                ("DELETE FROM links WHERE run_id = ?", &mut out.links),
                (
                    "DELETE FROM delivery_recipients WHERE run_id = ?",
                    &mut recipients,
                ),
                (
                    "DELETE FROM deliveries WHERE run_id = ?",
                    &mut out.deliveries,
                ),
            ] {
                let res = sqlx::query(sql)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
                *slot += res.rows_affected();
            }
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(out)
    }
}
