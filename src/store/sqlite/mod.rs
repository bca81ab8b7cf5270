//! The embedded run store: one SQLite file, created and migrated on first use.
//!
//! WAL mode and a busy timeout let several `ferry` processes (a `ferry run` beside
//! `ferry serve`) share the file safely. Migrations are append-only: a released migration is
//! never edited, a change is a new entry at the end of [`MIGRATIONS`].
//!
//! The implementation is split by concern like the traits: [`runs`], [`ledger`], [`links`],
//! [`schedule`], [`instances`]; the schema is in [`migrations`].

mod instances;
mod ledger;
mod links;
pub mod migrations;
mod runs;
mod schedule;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    DeliveryRecord, DeliveryStatus, DeliverySummary, FileRecord, LinkRecord, RecipientRecord,
    RecipientStatus, RunRecord, Status, StoreError, fmt_instant, parse_instant,
};

pub use migrations::MIGRATIONS;

/// The SQLite run store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating folders and file if needed) and migrates the store. Another process
    /// opening the same store at the same moment (a `ferry history` beside `ferry serve`)
    /// can make the first connection's set-up report "database is locked": that is
    /// retried for a few seconds.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let mut attempt = 0;
        loop {
            match Self::open_once(path).await {
                Err(StoreError::Db { source, .. }) if is_busy(&source) && attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    async fn open_once(path: &Path) -> Result<SqliteStore, StoreError> {
        let display = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Other {
                path: display.clone(),
                message: format!("cannot create folder {}: {e}", dir.display()),
            })?;
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| db(&display, e))?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(15))
            .foreign_keys(true);
        // One connection: SQLite runs one writer at a time anyway, and a single connection
        // queues writers in the pool instead of in SQLite's sleeping busy handler (which
        // added seconds of latency with hundreds of claims a second).
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(|e| db(&display, e))?;
        let store = SqliteStore {
            pool,
            path: path.to_path_buf(),
        };
        store.migrate().await?;
        Ok(store)
    }

    fn err(&self, e: sqlx::Error) -> StoreError {
        db(&self.path.display().to_string(), e)
    }

    /// A write transaction that takes the database's write lock at once (`BEGIN
    /// IMMEDIATE`), so that its reads and writes see one state.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))
    }

    /// The runs a query over `runs` selects (without their deliveries).
    async fn records(&self, sql: &'static str) -> Result<Vec<RunRecord>, StoreError> {
        let rows = sqlx::query(sql)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(row_to_record)
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Fills in a run's deliveries (its own notifications, in notify order, with their
    /// recipients), what they come to, and the owner alerts about it: one read of each
    /// table.
    async fn add_deliveries(&self, r: &mut RunRecord) -> Result<(), StoreError> {
        let rows = sqlx::query("SELECT * FROM deliveries WHERE run_id = ? ORDER BY seq")
            .bind(&r.run_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let mut out: Vec<(DeliveryRecord, bool)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let purpose: String = row.try_get("purpose").map_err(|e| self.err(e))?;
            let d = row_to_delivery(row).map_err(|e| self.err(e))?;
            out.push((d, purpose == "alert"));
        }
        let rows =
            sqlx::query("SELECT * FROM delivery_recipients WHERE run_id = ? ORDER BY part, seq")
                .bind(&r.run_id)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        for row in &rows {
            let channel: String = row.try_get("channel").map_err(|e| self.err(e))?;
            let occurrence: i64 = row.try_get("occurrence").map_err(|e| self.err(e))?;
            let rcpt = row_to_recipient(row).map_err(|e| self.err(e))?;
            if let Some((d, _)) = out
                .iter_mut()
                .find(|(d, _)| d.channel == channel && i64::from(d.occurrence) == occurrence)
            {
                d.recipients.push(rcpt);
            }
        }
        let (alerts, own): (Vec<_>, Vec<_>) = out.into_iter().partition(|(_, alert)| *alert);
        r.deliveries = own.into_iter().map(|(d, _)| d).collect();
        r.delivery = DeliverySummary::of(&r.deliveries);
        r.alerts = alerts.into_iter().map(|(d, _)| d).collect();
        Ok(())
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY,
                applied_at TEXT NOT NULL
            )",
        )
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(|e| self.err(e))?;
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(*sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
                .bind(version)
                .bind(fmt_instant(crate::clock::wall_now()))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
            tx.commit().await.map_err(|e| self.err(e))?;
        }
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        if newest.unwrap_or(0) > known {
            return Err(StoreError::Other {
                path: self.path.display().to_string(),
                message: format!(
                    "the store has schema version {} but this ferry knows only up to {known}: upgrade ferry",
                    newest.unwrap_or(0)
                ),
            });
        }
        Ok(())
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED.
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            matches!(d.code().as_deref(), Some("5") | Some("6"))
                || d.message().contains("database is locked")
        }
        _ => false,
    }
}

fn db(path: &str, source: sqlx::Error) -> StoreError {
    StoreError::Db {
        path: path.to_string(),
        source,
    }
}

fn row_to_record(row: &sqlx::sqlite::SqliteRow) -> Result<RunRecord, sqlx::Error> {
    let instant = |col: &str| -> Result<DateTime<Utc>, sqlx::Error> {
        let s: String = row.try_get(col)?;
        parse_instant(&s)
            .ok_or_else(|| sqlx::Error::Decode(format!("bad instant `{s}` in {col}").into()))
    };
    let status: String = row.try_get("status")?;
    let files: String = row.try_get("files")?;
    let warnings: String = row.try_get("warnings")?;
    let finished: Option<String> = row.try_get("finished_at")?;
    let rows: i64 = row.try_get("rows")?;
    let pid: i64 = row.try_get("pid")?;
    Ok(RunRecord {
        run_id: row.try_get("run_id")?,
        task: row.try_get("task")?,
        scheduled_at: instant("scheduled_at")?,
        trigger: row.try_get("trigger")?,
        status: Status::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown status `{status}`").into()))?,
        node: row.try_get("node")?,
        pid: pid as u32,
        started_at: instant("started_at")?,
        finished_at: finished.as_deref().and_then(parse_instant),
        duration_ms: row.try_get("duration_ms")?,
        rows: rows.max(0) as u64,
        files: serde_json::from_str::<Vec<FileRecord>>(&files).unwrap_or_default(),
        warnings: serde_json::from_str::<Vec<String>>(&warnings).unwrap_or_default(),
        error: row.try_get("error")?,
        reason: row.try_get("reason")?,
        deferred_until: row
            .try_get::<Option<String>, _>("deferred_until")?
            .as_deref()
            .and_then(parse_instant),
        deliveries: Vec::new(),
        delivery: DeliverySummary::None,
        alerts: Vec::new(),
    })
}

fn row_to_delivery(row: &sqlx::sqlite::SqliteRow) -> Result<DeliveryRecord, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let at: String = row.try_get("at")?;
    let occurrence: i64 = row.try_get("occurrence")?;
    let retryable: i64 = row.try_get("retryable")?;
    let attempts: i64 = row.try_get("attempts")?;
    let next: Option<String> = row.try_get("next_attempt_at")?;
    let tried: String = row.try_get("tried_at")?;
    Ok(DeliveryRecord {
        channel: row.try_get("channel")?,
        occurrence: occurrence.max(0) as u32,
        status: DeliveryStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown delivery status `{status}`").into())
        })?,
        retryable: retryable != 0,
        receipt: row.try_get("receipt")?,
        error: row.try_get("error")?,
        at: parse_instant(&at)
            .ok_or_else(|| sqlx::Error::Decode(format!("bad instant `{at}` in at").into()))?,
        attempts: attempts.max(0) as u32,
        next_attempt_at: next.as_deref().and_then(parse_instant),
        tried_at: serde_json::from_str::<Vec<String>>(&tried)
            .unwrap_or_default()
            .iter()
            .filter_map(|t| parse_instant(t))
            .collect(),
        recipients: Vec::new(),
    })
}

fn row_to_recipient(row: &sqlx::sqlite::SqliteRow) -> Result<RecipientRecord, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let part: i64 = row.try_get("part")?;
    let attempts: i64 = row.try_get("attempts")?;
    let at: String = row.try_get("at")?;
    let sent_at: Option<String> = row.try_get("sent_at")?;
    Ok(RecipientRecord {
        part: part.max(0) as u32,
        recipient: row.try_get("recipient")?,
        status: RecipientStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown recipient status `{status}`").into())
        })?,
        attempts: attempts.max(0) as u32,
        error: row.try_get("error")?,
        reply: row.try_get("reply")?,
        sent_at: sent_at.as_deref().and_then(parse_instant),
        at: parse_instant(&at)
            .ok_or_else(|| sqlx::Error::Decode(format!("bad instant `{at}` in at").into()))?,
    })
}

fn row_to_link(row: &sqlx::sqlite::SqliteRow) -> Result<LinkRecord, sqlx::Error> {
    let created: String = row.try_get("created_at")?;
    let bytes: i64 = row.try_get("bytes")?;
    Ok(LinkRecord {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        path: row.try_get("path")?,
        name: row.try_get("name")?,
        bytes: bytes.max(0) as u64,
        sha256: row.try_get("sha256")?,
        created_at: parse_instant(&created).ok_or_else(|| {
            sqlx::Error::Decode(format!("bad instant `{created}` in created_at").into())
        })?,
    })
}
