//! The embedded run store: one SQLite file, created and migrated on first use.
//!
//! WAL mode lets several `ferry` processes (a `ferry run` or `ferry history` beside
//! `ferry serve`) share the file, and lets readers read while a writer writes. A store
//! has one writer connection (SQLite runs one writer at a time anyway, and queueing
//! writers in the pool is faster than SQLite's sleeping busy handler) and a few reader
//! connections of its own, so a read never waits behind this process's writes either.
//! Every write is a `BEGIN IMMEDIATE` transaction (`write_tx`); every read
//! a snapshot (`read_tx`). Opening an up-to-date store only reads.
//!
//! Faults:
//!
//! - A lock another process holds (a `sqlite3` shell in a transaction, a backup tool) is
//!   waited for quietly for [`BUSY_QUIET`]; then the store logs "store busy: PATH is
//!   locked by another process, waiting up to 10 s" (a warning, shown by every command)
//!   and waits up to [`BUSY_WAIT`] more before it answers [`StoreError::Busy`].
//! - A write that fails (full disk, I/O error) can make SQLite roll the transaction back
//!   by itself; sqlx's own rollback then fails and, left alone, the connection would stay
//!   "inside a transaction" for sqlx, which refuses every later `BEGIN` ("attempted to
//!   call begin_with at non-zero transaction depth", for good). A connection whose
//!   transaction did not end cleanly is closed before it is used again, and the next
//!   operation opens a fresh one: the store works again as soon as the disk does.
//!   A full disk is [`StoreError::Full`].
//!
//! Migrations are append-only: a released migration is never edited, a change is a new
//! entry at the end of [`MIGRATIONS`].
//!
//! The implementation is split by concern like the traits: [`runs`], [`ledger`], [`links`],
//! [`schedule`], [`instances`]; the schema is in [`migrations`].

mod access;
mod instances;
mod ledger;
mod links;
mod mail;
pub mod migrations;
mod retention;
mod runs;
mod schedule;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous,
};
use sqlx::{Connection, Row, Sqlite, Transaction};
use tokio::time::Instant;
use tracing::{info, warn};

use super::{
    DeliveryRecord, DeliveryStatus, DeliverySummary, FileRecord, LinkRecord, RecipientRecord,
    RecipientStatus, RunRecord, Status, StoreError, fmt_instant, parse_instant,
};

pub use migrations::MIGRATIONS;

/// How long an operation waits, after the warning, for a lock another process holds
/// before it gives up with [`StoreError::Busy`].
pub const BUSY_WAIT: Duration = Duration::from_secs(10);

/// How long a lock is waited for before the "store busy" warning: the short waits
/// between ferry's own processes stay silent.
pub const BUSY_QUIET: Duration = Duration::from_millis(250);

/// The pause between two attempts while the store is busy (each attempt itself waits up
/// to [`BUSY_QUIET`] inside SQLite).
const BUSY_RETRY: Duration = Duration::from_millis(50);

/// Reader connections per store.
const READERS: u32 = 4;

/// The SQLite run store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one writer connection.
    writer: SqlitePool,
    /// Readers (`query_only`): WAL lets them read while the writer writes.
    reader: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating folders and file if needed) and migrates the store. A store whose
    /// schema is current is only read, so opening never waits for a writer; a lock that
    /// keeps readers out is waited for as [`BUSY_WAIT`] says.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
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
            .busy_timeout(BUSY_QUIET)
            .foreign_keys(true);
        // Connections are opened on first use, inside the busy wait of that use.
        let store = SqliteStore {
            writer: pool(1, opts.clone()),
            reader: pool(READERS, opts.pragma("query_only", "ON")),
            path: path.to_path_buf(),
        };
        store.migrate().await?;
        Ok(store)
    }

    fn err(&self, e: sqlx::Error) -> StoreError {
        db(&self.path.display().to_string(), e)
    }

    /// Runs `attempt` until SQLite stops answering "busy" (another process holds a lock):
    /// quietly for [`BUSY_QUIET`], then with the "store busy" warning for up to
    /// [`BUSY_WAIT`], then [`StoreError::Busy`]. Only attempts that did nothing are
    /// repeated: a transaction that could not begin, a read that could not start.
    async fn patiently<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let start = Instant::now();
        let mut warned: Option<Instant> = None;
        loop {
            match attempt().await {
                Ok(v) => {
                    if let Some(since) = warned {
                        info!(
                            "store free again: {} (waited {:.1} s)",
                            self.path.display(),
                            since.elapsed().as_secs_f64()
                        );
                    }
                    return Ok(v);
                }
                Err(e) if is_busy(&e) => {
                    let now = Instant::now();
                    match warned {
                        None if now - start >= BUSY_QUIET => {
                            warn!(
                                "store busy: {} is locked by another process, waiting up to {} s",
                                self.path.display(),
                                BUSY_WAIT.as_secs()
                            );
                            warned = Some(now);
                        }
                        Some(since) if now - since >= BUSY_WAIT => {
                            return Err(StoreError::Busy {
                                path: self.path.display().to_string(),
                                waited: now - since,
                            });
                        }
                        _ => {}
                    }
                    tokio::time::sleep(BUSY_RETRY).await;
                }
                Err(e) => return Err(self.err(e)),
            }
        }
    }

    /// A write transaction that takes the database's write lock at once (`BEGIN
    /// IMMEDIATE`), so that its reads and writes see one state. Once it has begun, nothing
    /// in it waits for another process.
    async fn write_tx(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.patiently(|| self.writer.begin_with("BEGIN IMMEDIATE"))
            .await
    }

    /// One statement as a write transaction of its own.
    async fn write_one(
        &self,
        q: sqlx::query::Query<'_, Sqlite, SqliteArguments>,
    ) -> Result<SqliteQueryResult, StoreError> {
        let mut tx = self.write_tx().await?;
        let res = q.execute(&mut *tx).await.map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(res)
    }

    /// A read transaction on a reader connection: one snapshot for all its reads, which
    /// never waits for a writer (WAL). A lock that keeps readers out (another process in
    /// exclusive locking mode) is met by its first read and waited for like a write's.
    async fn read_tx(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.patiently(|| async {
            let mut tx = self.reader.begin().await?;
            // A deferred BEGIN takes no lock; this read takes the snapshot.
            sqlx::query("SELECT 1 FROM sqlite_master LIMIT 1")
                .execute(&mut *tx)
                .await?;
            Ok(tx)
        })
        .await
    }

    /// The runs a query over `runs` selects (without their deliveries).
    async fn records(&self, sql: &'static str) -> Result<Vec<RunRecord>, StoreError> {
        let mut tx = self.read_tx().await?;
        let rows = sqlx::query(sql)
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        self.to_records(&rows)
    }

    /// Rows of `runs` as records (without their deliveries).
    fn to_records(&self, rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<RunRecord>, StoreError> {
        rows.iter()
            .map(row_to_record)
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    /// Fills in a run's deliveries (its own notifications, in notify order, with their
    /// recipients), what they come to, and the owner alerts about it: one read of each
    /// table.
    async fn add_deliveries(
        &self,
        conn: &mut sqlx::SqliteConnection,
        r: &mut RunRecord,
    ) -> Result<(), StoreError> {
        let rows = sqlx::query("SELECT * FROM deliveries WHERE run_id = ? ORDER BY seq")
            .bind(&r.run_id)
            .fetch_all(&mut *conn)
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
                .fetch_all(&mut *conn)
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

    /// The newest schema version applied (0 for a new file).
    async fn schema_version(&self) -> Result<i64, StoreError> {
        let mut tx = self.read_tx().await?;
        let table: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        if table.is_none() {
            return Ok(0);
        }
        let newest: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        Ok(newest.unwrap_or(0))
    }

    /// Applies the migrations a store lacks; reads only when it lacks none.
    async fn migrate(&self) -> Result<(), StoreError> {
        let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        let mut newest = self.schema_version().await?;
        if newest < known {
            self.apply_migrations().await?;
            newest = self.schema_version().await?;
        }
        if newest > known {
            return Err(StoreError::Other {
                path: self.path.display().to_string(),
                message: format!(
                    "the store has schema version {newest} but this ferry knows only up to {known}: upgrade ferry"
                ),
            });
        }
        Ok(())
    }

    async fn apply_migrations(&self) -> Result<(), StoreError> {
        self.write_one(sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY,
                applied_at TEXT NOT NULL
            )",
        ))
        .await?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.write_tx().await?;
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
        Ok(())
    }
}

/// A pool of `size` connections that closes a connection whose transaction did not end
/// cleanly before it is used again (see the module doc): the next use opens a fresh one.
fn pool(size: u32, opts: SqliteConnectOptions) -> SqlitePool {
    SqlitePoolOptions::new()
        .max_connections(size)
        // Checked when the connection is taken, not when it is given back: by then the
        // rollback a dropped transaction queued has run (the pool pings a connection it
        // takes back), so the state read is the final one, without a round trip of its own.
        .before_acquire(|conn, _| {
            Box::pin(async move {
                let stuck = conn.is_in_transaction();
                if stuck {
                    info!("run store: a transaction did not end cleanly (its write failed); its connection is closed and a new one opened");
                }
                Ok(!stuck)
            })
        })
        .connect_lazy_with(opts)
}

/// SQLite's primary result code of a database error (the extended code's low byte).
fn primary_code(e: &sqlx::Error) -> Option<i64> {
    match e {
        sqlx::Error::Database(d) => d.code()?.parse::<i64>().ok().map(|c| c & 0xff),
        _ => None,
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock.
fn is_busy(e: &sqlx::Error) -> bool {
    matches!(primary_code(e), Some(5 | 6))
}

fn db(path: &str, source: sqlx::Error) -> StoreError {
    let path = path.to_string();
    match primary_code(&source) {
        // SQLITE_FULL: the disk (or its quota) is full.
        Some(13) => StoreError::Full { path },
        // SQLITE_IOERR.
        Some(10) => StoreError::Io { path, source },
        _ => StoreError::Db { path, source },
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
        files_removed_at: row
            .try_get::<Option<String>, _>("files_removed_at")?
            .as_deref()
            .and_then(parse_instant),
        deliveries: Vec::new(),
        delivery: DeliverySummary::None,
        alerts: Vec::new(),
        started_by: row.try_get("started_by")?,
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
