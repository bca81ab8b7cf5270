//! SQLite: the instances concern (heartbeats, the daemon's lock file, closing).

use std::fs::OpenOptions;
use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::{DaemonLock, InstanceRecord, Instances, StoreError, fmt_instant, parse_instant};

#[async_trait]
impl Instances for SqliteStore {
    async fn register(&self, i: &InstanceRecord) -> Result<(), StoreError> {
        self.write_one(sqlx::query(
            "INSERT INTO instances (instance_id, node, pid, started_at, heartbeat_at, stopped_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (instance_id) DO UPDATE SET node = excluded.node, pid = excluded.pid,
                 started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
                 stopped_at = excluded.stopped_at",
        )
        .bind(&i.instance_id)
        .bind(&i.node)
        .bind(i64::from(i.pid))
        .bind(fmt_instant(i.started_at))
        .bind(fmt_instant(i.heartbeat_at))
        .bind(i.stopped_at.map(fmt_instant)))
        .await?;
        Ok(())
    }

    async fn beat(&self, instance_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let res = self
            .write_one(
                sqlx::query("UPDATE instances SET heartbeat_at = ? WHERE instance_id = ?")
                    .bind(fmt_instant(now))
                    .bind(instance_id),
            )
            .await?;
        Ok(res.rows_affected() == 1)
    }

    async fn unregister(&self, instance_id: &str, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.write_one(
            sqlx::query("UPDATE instances SET stopped_at = ? WHERE instance_id = ?")
                .bind(fmt_instant(now))
                .bind(instance_id),
        )
        .await?;
        Ok(())
    }

    async fn instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        type Row = (String, String, i64, String, String, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT instance_id, node, pid, started_at, heartbeat_at, stopped_at
             FROM instances ORDER BY started_at, instance_id",
        )
        .fetch_all(&mut *self.read_tx().await?)
        .await
        .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, node, pid, started, beat, stopped)| {
                Some(InstanceRecord {
                    instance_id: id,
                    node,
                    pid: pid as u32,
                    started_at: parse_instant(&started)?,
                    heartbeat_at: parse_instant(&beat)?,
                    stopped_at: stopped.as_deref().and_then(parse_instant),
                })
            })
            .collect())
    }

    /// One `ferry serve` per SQLite file: an exclusive lock on `<store>.lock`, held as
    /// long as the returned guard lives.
    async fn lock_for_daemon(&self) -> Result<DaemonLock, StoreError> {
        let store = &self.path;
        let lock_path: PathBuf = {
            let mut p = store.as_os_str().to_owned();
            p.push(".lock");
            p.into()
        };
        let other = |message: String| StoreError::Other {
            path: store.display().to_string(),
            message,
        };
        if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| other(format!("cannot create {}: {e}", dir.display())))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                other(format!(
                    "cannot open the lock file {}: {e}",
                    lock_path.display()
                ))
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(other(format!(
                "another `ferry serve` is already running on the run store {} (its lock {} is held); stop it first, or give this one its own store",
                store.display(),
                lock_path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(other(format!("cannot lock {}: {e}", lock_path.display())))
            }
        }
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}
