//! The embedded run store: one SQLite file, created and migrated on first use.
//!
//! WAL mode and a busy timeout let several `ferry` processes (a `ferry run` beside
//! `ferry serve`) share the file safely. Migrations are append-only: a released migration is
//! never edited, a change is a new entry at the end of [`MIGRATIONS`].

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{
    AttemptEnd, Claim, DeliveryKey, DeliveryRecord, DeliveryStatus, DeliverySummary,
    DownloadRecord, DueDelivery, FileRecord, HistoryFilter, LinkRecord, Op, Outcome, Owner,
    QueuedDelivery, RecipientRecord, RecipientStatus, RunRecord, RunStore, Status, StoreError,
    fmt_instant, parse_instant,
};

/// Append-only schema migrations: `(version, SQL)`.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE runs (
        run_id       TEXT PRIMARY KEY,
        task         TEXT NOT NULL,
        scheduled_at TEXT NOT NULL,
        trigger      TEXT NOT NULL,
        status       TEXT NOT NULL,
        node         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        started_at   TEXT NOT NULL,
        finished_at  TEXT,
        duration_ms  INTEGER,
        rows         INTEGER NOT NULL DEFAULT 0,
        files        TEXT NOT NULL DEFAULT '[]',
        warnings     TEXT NOT NULL DEFAULT '[]',
        error        TEXT,
        UNIQUE (task, scheduled_at)
    );
    CREATE INDEX runs_task_started ON runs (task, started_at);
    CREATE INDEX runs_status ON runs (status);",
    ),
    (
        2,
        "ALTER TABLE runs ADD COLUMN reason TEXT;
    ALTER TABLE runs ADD COLUMN deferred_until TEXT;
    CREATE TABLE schedule_cursors (
        task       TEXT PRIMARY KEY,
        cursor     TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );",
    ),
    // Download links and their requests. No foreign keys: retention may remove runs and
    // links in any order, and a download row outlives nothing it needs.
    (
        3,
        "CREATE TABLE links (
        id         TEXT PRIMARY KEY,
        run_id     TEXT NOT NULL,
        path       TEXT NOT NULL,
        name       TEXT NOT NULL,
        bytes      INTEGER NOT NULL,
        sha256     TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (run_id, path)
    );
    CREATE TABLE downloads (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        link_id      TEXT NOT NULL,
        at           TEXT NOT NULL,
        client       TEXT NOT NULL,
        range_header TEXT,
        status       INTEGER NOT NULL,
        bytes_sent   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX downloads_link_at ON downloads (link_id, at);",
    ),
    // One row per notification of a run (task notify entry × channel): sent with its
    // receipt (the email Message-ID), or failed with the reason and whether a retry helps.
    (
        4,
        "CREATE TABLE deliveries (
        run_id     TEXT NOT NULL,
        channel    TEXT NOT NULL,
        occurrence INTEGER NOT NULL,
        status     TEXT NOT NULL,
        retryable  INTEGER NOT NULL DEFAULT 0,
        receipt    TEXT,
        error      TEXT,
        at         TEXT NOT NULL,
        PRIMARY KEY (run_id, channel, occurrence)
    );",
    ),
    // The delivery ledger: `status` becomes the delivery's state (pending, sending, sent,
    // failed, maybe_duplicate) and `error` its last error; each row keeps its attempts,
    // when it is tried next, the rendered message (JSON) so that a retry or a restart sends
    // exactly the same message, and the process holding it while an attempt is under way.
    (
        5,
        "ALTER TABLE deliveries ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE deliveries ADD COLUMN next_attempt_at TEXT;
    ALTER TABLE deliveries ADD COLUMN message TEXT;
    ALTER TABLE deliveries ADD COLUMN owner_node TEXT;
    ALTER TABLE deliveries ADD COLUMN owner_pid INTEGER;
    CREATE INDEX deliveries_open ON deliveries (status, next_attempt_at);",
    ),
    // Owner alerts: when each task's owners were last alerted, and how many failures were
    // held back since (they are summarised in the next alert).
    (
        6,
        "CREATE TABLE owner_alerts (
        task TEXT PRIMARY KEY,
        last_sent_at TEXT NOT NULL,
        held INTEGER NOT NULL DEFAULT 0
    );",
    ),
    // The delivery ledger per recipient (email): one row per envelope recipient of each
    // message part (`part` 0 for a message sent whole), so that a retry goes only to the
    // recipients not yet delivered and a part never goes twice to one recipient. Each
    // delivery also keeps when each of its attempts started (`tried_at`, a JSON array).
    (
        7,
        "CREATE TABLE delivery_recipients (
        run_id     TEXT NOT NULL,
        channel    TEXT NOT NULL,
        occurrence INTEGER NOT NULL,
        part       INTEGER NOT NULL,
        recipient  TEXT NOT NULL,
        status     TEXT NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        error      TEXT,
        reply      TEXT,
        sent_at    TEXT,
        at         TEXT NOT NULL,
        PRIMARY KEY (run_id, channel, occurrence, part, recipient)
    );
    ALTER TABLE deliveries ADD COLUMN tried_at TEXT NOT NULL DEFAULT '[]';",
    ),
    // Why a download request was refused (`bad signature`, `expired`, …; none when
    // served), so that the audit tells refusals with the same status apart.
    (8, "ALTER TABLE downloads ADD COLUMN reason TEXT;"),
];

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

    /// A run's deliveries, in notify order (first notification first), each with its
    /// recipients.
    async fn deliveries(&self, run_id: &str) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM deliveries WHERE run_id = ? ORDER BY rowid")
            .bind(run_id)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let mut out: Vec<DeliveryRecord> = rows
            .iter()
            .map(row_to_delivery)
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        let rows =
            sqlx::query("SELECT * FROM delivery_recipients WHERE run_id = ? ORDER BY part, rowid")
                .bind(run_id)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        for row in &rows {
            let channel: String = row.try_get("channel").map_err(|e| self.err(e))?;
            let occurrence: i64 = row.try_get("occurrence").map_err(|e| self.err(e))?;
            let r = row_to_recipient(row).map_err(|e| self.err(e))?;
            if let Some(d) = out
                .iter_mut()
                .find(|d| d.channel == channel && i64::from(d.occurrence) == occurrence)
            {
                d.recipients.push(r);
            }
        }
        Ok(out)
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

    /// One write, in its own transaction.
    async fn one(&self, op: Op) -> Result<bool, StoreError> {
        Ok(self.batch(std::slice::from_ref(&op)).await?[0])
    }

    pub async fn close(&self) {
        self.pool.close().await;
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

/// Runs one [`Op`] on a connection or transaction.
async fn apply_op(conn: &mut sqlx::SqliteConnection, op: &Op) -> Result<bool, sqlx::Error> {
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
            return Ok(true);
        }
        Op::Claim(c) => (c, Status::Running, None, None),
        Op::Record(c, status, reason) => (c, *status, Some(reason.as_str()), None),
        Op::Defer(c, until, reason) => (c, Status::Deferred, Some(reason.as_str()), Some(*until)),
    };
    let finished =
        matches!(status, Status::Missed | Status::Skipped).then(|| fmt_instant(c.started_at));
    let res = sqlx::query(
        "INSERT INTO runs (run_id, task, scheduled_at, trigger, status, node, pid, started_at,
                           finished_at, duration_ms, reason, deferred_until)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
    .execute(&mut *conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn batch(&self, ops: &[Op]) -> Result<Vec<bool>, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(apply_op(&mut tx, op).await.map_err(|e| self.err(e))?);
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(out)
    }

    async fn claim(&self, c: &Claim) -> Result<bool, StoreError> {
        self.one(Op::Claim(c.clone())).await
    }

    async fn finish(&self, run_id: &str, o: &Outcome) -> Result<(), StoreError> {
        let owner = Owner {
            node: String::new(),
            pid: 0,
        };
        self.finish_with_deliveries(run_id, o, &[], &owner).await
    }

    async fn finish_with_deliveries(
        &self,
        run_id: &str,
        o: &Outcome,
        deliveries: &[QueuedDelivery],
        owner: &Owner,
    ) -> Result<(), StoreError> {
        let files = serde_json::to_string(&o.files).expect("file records serialize");
        let warnings = serde_json::to_string(&o.warnings).expect("strings serialize");
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))?;
        let res = sqlx::query(
            "UPDATE runs SET status = ?, finished_at = ?,
                 duration_ms = CAST(ROUND((julianday(?) - julianday(started_at)) * 86400000) AS INTEGER),
                 rows = ?, files = ?, warnings = ?, error = ?
             WHERE run_id = ?",
        )
        .bind(o.status.as_str())
        .bind(fmt_instant(o.finished_at))
        .bind(fmt_instant(o.finished_at))
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
        for d in deliveries {
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
                     error, at, attempts, next_attempt_at, message, owner_node, owner_pid)
                 VALUES (?, ?, ?, ?, 0, NULL, ?, ?, 0, ?, ?, ?, ?)",
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
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
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
        // that read the same row, only the first update matches.
        let res = sqlx::query(
            "UPDATE deliveries SET status = 'sending', attempts = attempts + 1, at = ?,
                 owner_node = ?, owner_pid = ?, tried_at = json_insert(tried_at, '$[#]', ?)
             WHERE run_id = ? AND channel = ? AND occurrence = ? AND status = ? AND attempts = ?",
        )
        .bind(fmt_instant(now))
        .bind(&owner.node)
        .bind(i64::from(owner.pid))
        .bind(fmt_instant(now))
        .bind(&key.run_id)
        .bind(&key.channel)
        .bind(i64::from(key.occurrence))
        .bind(from.as_str())
        .bind(i64::from(attempts))
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(res.rows_affected() == 1)
    }

    async fn end_attempt(
        &self,
        key: &DeliveryKey,
        end: &AttemptEnd,
        owner: &Owner,
        attempts: u32,
    ) -> Result<bool, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))?;
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
        for r in &end.recipients {
            sqlx::query(
                "INSERT INTO delivery_recipients (run_id, channel, occurrence, part, recipient,
                     status, attempts, error, reply, sent_at, at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
             ORDER BY part, rowid",
        )
        .bind(&key.run_id)
        .bind(&key.channel)
        .bind(i64::from(key.occurrence))
        .fetch_all(&self.pool)
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
                    d.owner_node, d.owner_pid, d.at, r.task
             FROM deliveries d JOIN runs r ON r.run_id = d.run_id
             WHERE d.message IS NOT NULL
               AND (d.status = 'sending' OR (d.status = 'pending' AND d.next_attempt_at <= ?))
             ORDER BY d.next_attempt_at, d.rowid LIMIT ?",
        )
        .bind(fmt_instant(now))
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
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
                Ok(DueDelivery {
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

    async fn admit_alert(
        &self,
        task: &str,
        now: DateTime<Utc>,
        every: Duration,
    ) -> Result<Option<super::AlertAdmission>, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))?;
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT last_sent_at, held FROM owner_alerts WHERE task = ?")
                .bind(task)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        let last = row
            .as_ref()
            .and_then(|(t, held)| Some((super::parse_instant(t)?, *held as u64)));
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
                .bind(super::fmt_instant(now))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
                Some(super::AlertAdmission {
                    held: last.map(|(_, h)| h).unwrap_or(0),
                    last_sent_at: last.map(|(t, _)| t),
                })
            }
        };
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(admitted)
    }

    async fn append_warnings(&self, run_id: &str, warnings: &[String]) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))?;
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
        let rows = match &f.task {
            Some(t) => sqlx::query(
                "SELECT * FROM runs WHERE task = ? ORDER BY started_at DESC, run_id DESC LIMIT ?",
            )
            .bind(t)
            .bind(limit)
            .fetch_all(&self.pool)
            .await,
            None => {
                sqlx::query("SELECT * FROM runs ORDER BY started_at DESC, run_id DESC LIMIT ?")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(|e| self.err(e))?;
        let mut records: Vec<RunRecord> = rows
            .iter()
            .map(row_to_record)
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))?;
        for r in &mut records {
            r.deliveries = self.deliveries(&r.run_id).await?;
            r.delivery = DeliverySummary::of(&r.deliveries);
        }
        Ok(records)
    }

    async fn get(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM runs WHERE run_id = ?")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        let mut record = row
            .as_ref()
            .map(row_to_record)
            .transpose()
            .map_err(|e| self.err(e))?;
        if let Some(r) = &mut record {
            r.deliveries = self.deliveries(&r.run_id).await?;
            r.delivery = DeliverySummary::of(&r.deliveries);
        }
        Ok(record)
    }

    async fn record(&self, c: &Claim, status: Status, reason: &str) -> Result<bool, StoreError> {
        self.one(Op::Record(c.clone(), status, reason.to_string()))
            .await
    }

    async fn defer(
        &self,
        c: &Claim,
        until: DateTime<Utc>,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.one(Op::Defer(c.clone(), until, reason.to_string()))
            .await
    }

    async fn start_deferred(
        &self,
        run_id: &str,
        node: &str,
        pid: u32,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let res = sqlx::query(
            "UPDATE runs SET status = 'running', node = ?, pid = ?, started_at = ?
             WHERE run_id = ? AND status = 'deferred'",
        )
        .bind(node)
        .bind(i64::from(pid))
        .bind(fmt_instant(now))
        .bind(run_id)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(res.rows_affected() == 1)
    }

    async fn deferred(&self) -> Result<Vec<RunRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM runs WHERE status = 'deferred' ORDER BY scheduled_at, task")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        rows.iter()
            .map(row_to_record)
            .collect::<Result<_, _>>()
            .map_err(|e| self.err(e))
    }

    async fn cursor(&self, task: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        let c: Option<String> =
            sqlx::query_scalar("SELECT cursor FROM schedule_cursors WHERE task = ?")
                .bind(task)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        Ok(c.as_deref().and_then(parse_instant))
    }

    async fn cursors(
        &self,
    ) -> Result<std::collections::HashMap<String, DateTime<Utc>>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT task, cursor FROM schedule_cursors")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .filter_map(|(t, c)| parse_instant(&c).map(|c| (t, c)))
            .collect())
    }

    async fn set_cursor(&self, task: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.one(Op::Cursor(task.to_string(), at)).await.map(|_| ())
    }

    async fn reap_interrupted(
        &self,
        node: &str,
        alive: &(dyn Fn(u32) -> bool + Sync),
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let rows =
            sqlx::query("SELECT run_id, pid FROM runs WHERE status = 'running' AND node = ?")
                .bind(node)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
        let mut reaped = Vec::new();
        for row in rows {
            let run_id: String = row.try_get("run_id").map_err(|e| self.err(e))?;
            let pid: i64 = row.try_get("pid").map_err(|e| self.err(e))?;
            if alive(pid as u32) {
                continue;
            }
            let msg = format!(
                "interrupted: the ferry process (pid {pid} on {node}) stopped before the run finished; no file was published for it"
            );
            sqlx::query(
                "UPDATE runs SET status = 'failed', finished_at = ?, error = ?,
                     duration_ms = CAST(ROUND((julianday(?) - julianday(started_at)) * 86400000) AS INTEGER)
                 WHERE run_id = ? AND status = 'running'",
            )
            .bind(fmt_instant(now))
            .bind(msg)
            .bind(fmt_instant(now))
            .bind(&run_id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
            reaped.push(run_id);
        }
        Ok(reaped)
    }

    async fn ensure_link(&self, link: &LinkRecord) -> Result<LinkRecord, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.err(e))?;
        sqlx::query(
            "INSERT INTO links (id, run_id, path, name, bytes, sha256, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (run_id, path) DO NOTHING",
        )
        .bind(&link.id)
        .bind(&link.run_id)
        .bind(&link.path)
        .bind(&link.name)
        .bind(link.bytes as i64)
        .bind(&link.sha256)
        .bind(fmt_instant(link.created_at))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        let row = sqlx::query("SELECT * FROM links WHERE run_id = ? AND path = ?")
            .bind(&link.run_id)
            .bind(&link.path)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        row_to_link(&row).map_err(|e| self.err(e))
    }

    async fn link(&self, id: &str) -> Result<Option<LinkRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM links WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        row.as_ref()
            .map(row_to_link)
            .transpose()
            .map_err(|e| self.err(e))
    }

    async fn record_download(&self, d: &DownloadRecord) -> Result<i64, StoreError> {
        let res = sqlx::query(
            "INSERT INTO downloads (link_id, at, client, range_header, status, bytes_sent, reason)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&d.link_id)
        .bind(fmt_instant(d.at))
        .bind(&d.client)
        .bind(&d.range)
        .bind(i64::from(d.status))
        .bind(d.bytes_sent as i64)
        .bind(&d.reason)
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(res.last_insert_rowid())
    }

    async fn set_download_bytes(&self, download: i64, bytes_sent: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE downloads SET bytes_sent = ? WHERE id = ?")
            .bind(bytes_sent as i64)
            .bind(download)
            .execute(&self.pool)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn downloads(
        &self,
        link_id: &str,
        limit: usize,
    ) -> Result<Vec<DownloadRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM downloads WHERE link_id = ? ORDER BY at DESC, id DESC LIMIT ?",
        )
        .bind(link_id)
        .bind(limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|row| {
                let at: String = row.try_get("at")?;
                let status: i64 = row.try_get("status")?;
                let bytes: i64 = row.try_get("bytes_sent")?;
                Ok(DownloadRecord {
                    link_id: row.try_get("link_id")?,
                    at: parse_instant(&at).ok_or_else(|| {
                        sqlx::Error::Decode(format!("bad instant `{at}` in downloads").into())
                    })?,
                    client: row.try_get("client")?,
                    range: row.try_get("range_header")?,
                    status: u16::try_from(status).unwrap_or(0),
                    bytes_sent: bytes.max(0) as u64,
                    reason: row.try_get("reason")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Trigger;

    fn claim(task: &str, at: &str, run_id: &str) -> Claim {
        Claim {
            run_id: run_id.into(),
            task: task.into(),
            scheduled_at: parse_instant(at).unwrap(),
            trigger: Trigger::Schedule,
            node: "n1".into(),
            pid: 999_999_999,
            started_at: parse_instant(at).unwrap(),
        }
    }

    #[tokio::test]
    async fn claim_is_unique_per_task_and_fire() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s/ferry.db"))
            .await
            .unwrap();
        assert!(
            store
                .claim(&claim("a", "2026-01-01T00:00:00Z", "r1"))
                .await
                .unwrap()
        );
        assert!(
            !store
                .claim(&claim("a", "2026-01-01T00:00:00Z", "r2"))
                .await
                .unwrap()
        );
        assert!(
            store
                .claim(&claim("b", "2026-01-01T00:00:00Z", "r3"))
                .await
                .unwrap()
        );
        // Reopening keeps data and does not re-run migrations.
        store.close().await;
        let store = SqliteStore::open(&dir.path().join("s/ferry.db"))
            .await
            .unwrap();
        assert!(
            !store
                .claim(&claim("a", "2026-01-01T00:00:00Z", "r4"))
                .await
                .unwrap()
        );
        assert_eq!(
            store.list(&HistoryFilter::default()).await.unwrap().len(),
            2
        );
    }

    #[tokio::test]
    async fn links_are_made_once_per_file_and_downloads_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ferry.db"))
            .await
            .unwrap();
        let at = parse_instant("2026-01-01T00:00:00Z").unwrap();
        let link = |id: &str, path: &str| LinkRecord {
            id: id.into(),
            run_id: "r1".into(),
            path: path.into(),
            name: "a.csv".into(),
            bytes: 3,
            sha256: "ab".into(),
            created_at: at,
        };
        let first = store.ensure_link(&link("id1", "/x/a.csv")).await.unwrap();
        assert_eq!(first.id, "id1");
        // The same file again keeps its id; another file gets its own.
        let again = store.ensure_link(&link("id2", "/x/a.csv")).await.unwrap();
        assert_eq!(again, first);
        let other = store.ensure_link(&link("id3", "/x/b.csv")).await.unwrap();
        assert_eq!(other.id, "id3");
        assert_eq!(store.link("id1").await.unwrap(), Some(first));
        assert_eq!(store.link("id2").await.unwrap(), None);

        let d = DownloadRecord {
            link_id: "id1".into(),
            at,
            client: "127.0.0.1".into(),
            range: Some("bytes=0-1".into()),
            status: 206,
            bytes_sent: 0,
            reason: None,
        };
        let row = store.record_download(&d).await.unwrap();
        store.set_download_bytes(row, 2).await.unwrap();
        let refused = DownloadRecord {
            status: 403,
            reason: Some("expired".into()),
            at: at + chrono::Duration::seconds(1),
            ..d.clone()
        };
        store.record_download(&refused).await.unwrap();
        let got = store.downloads("id1", 10).await.unwrap();
        assert_eq!(got, [refused, DownloadRecord { bytes_sent: 2, ..d }]);
        assert!(store.downloads("id3", 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn concurrent_first_opens_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.db");
        let opens = (0..8).map(|_| SqliteStore::open(&path));
        for store in futures_util::future::join_all(opens).await {
            let store = store.unwrap();
            store
                .set_cursor("t", crate::clock::wall_now())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn deliveries_are_recorded_with_the_run_and_attempts_are_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ferry.db"))
            .await
            .unwrap();
        store
            .claim(&claim("a", "2026-01-01T00:00:00Z", "r1"))
            .await
            .unwrap();
        let at = parse_instant("2026-01-01T00:00:01Z").unwrap();
        let me = Owner {
            node: "n1".into(),
            pid: 1,
        };
        let queued = [
            QueuedDelivery {
                channel: "ding".into(),
                occurrence: 1,
                message: Ok("{}".into()),
            },
            QueuedDelivery {
                channel: "box".into(),
                occurrence: 1,
                message: Err("template error".into()),
            },
        ];
        let outcome = Outcome {
            status: Status::Succeeded,
            finished_at: at,
            rows: 1,
            files: vec![],
            warnings: vec![],
            error: None,
        };
        store
            .finish_with_deliveries("r1", &outcome, &queued, &me)
            .await
            .unwrap();
        let r = store.get("r1").await.unwrap().unwrap();
        assert_eq!(r.status, Status::Succeeded);
        assert_eq!(r.deliveries[0].status, DeliveryStatus::Pending);
        assert_eq!(r.deliveries[0].attempts, 0);
        assert_eq!(r.deliveries[0].next_attempt_at, Some(at));
        assert_eq!(r.deliveries[1].status, DeliveryStatus::Failed);
        assert_eq!(r.deliveries[1].error.as_deref(), Some("template error"));
        assert_eq!(r.delivery, DeliverySummary::Pending);
        // Due now, held by its process; a failed one is never due.
        let due = store.due_deliveries(at, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].task, "a");
        assert_eq!(due[0].owner, Some(me.clone()));
        // Of two processes that read the same row, only the first gets the attempt.
        let other = Owner {
            node: "n1".into(),
            pid: 2,
        };
        let key = due[0].key.clone();
        assert!(
            store
                .begin_attempt(&key, DeliveryStatus::Pending, 0, &me, at)
                .await
                .unwrap()
        );
        assert!(
            !store
                .begin_attempt(&key, DeliveryStatus::Pending, 0, &other, at)
                .await
                .unwrap()
        );
        let sent = AttemptEnd {
            status: DeliveryStatus::Sent,
            retryable: false,
            receipt: Some("ok".into()),
            error: None,
            next_attempt_at: None,
            at,
            keep_owner: false,
            recipients: vec![],
        };
        // Only the holder at this attempt may record its end.
        assert!(!store.end_attempt(&key, &sent, &other, 1).await.unwrap());
        assert!(!store.end_attempt(&key, &sent, &me, 2).await.unwrap());
        assert!(store.end_attempt(&key, &sent, &me, 1).await.unwrap());
        let r = store.get("r1").await.unwrap().unwrap();
        assert_eq!(r.deliveries[0].status, DeliveryStatus::Sent);
        assert_eq!(r.deliveries[0].attempts, 1);
        assert_eq!(r.delivery, DeliverySummary::PartiallyDelivered);
        assert!(store.due_deliveries(at, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn finish_records_outcome_and_reap_marks_dead_runs() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ferry.db"))
            .await
            .unwrap();
        store
            .claim(&claim("a", "2026-01-01T00:00:00Z", "r1"))
            .await
            .unwrap();
        store
            .claim(&claim("a", "2026-01-02T00:00:00Z", "r2"))
            .await
            .unwrap();
        let finished = parse_instant("2026-01-01T00:00:01.500Z").unwrap();
        store
            .finish(
                "r1",
                &Outcome {
                    status: Status::Succeeded,
                    finished_at: finished,
                    rows: 42,
                    files: vec![FileRecord {
                        path: "x.csv".into(),
                        bytes: 10,
                        sha256: "ab".into(),
                    }],
                    warnings: vec!["w".into()],
                    error: None,
                },
            )
            .await
            .unwrap();
        let r1 = store.get("r1").await.unwrap().unwrap();
        assert_eq!(r1.status, Status::Succeeded);
        assert_eq!(r1.rows, 42);
        assert_eq!(r1.duration_ms, Some(1500));
        assert_eq!(r1.files[0].sha256, "ab");
        assert_eq!(r1.warnings, ["w"]);

        let reaped = store
            .reap_interrupted("n1", &|_| false, finished)
            .await
            .unwrap();
        assert_eq!(reaped, ["r2"]);
        let r2 = store.get("r2").await.unwrap().unwrap();
        assert_eq!(r2.status, Status::Failed);
        assert!(r2.error.unwrap().contains("interrupted"));
        assert!(
            store
                .finish(
                    "nope",
                    &Outcome {
                        status: Status::Failed,
                        finished_at: finished,
                        rows: 0,
                        files: vec![],
                        warnings: vec![],
                        error: None,
                    }
                )
                .await
                .is_err()
        );
    }
}
