//! SQLite source (rusqlite), opened read-only with `query_only` on.
//!
//! SQLite is dynamically typed: a column's declared type (`DATE`, `BOOLEAN`, `DATETIME`)
//! says how to read the stored value, and the storage class of each value (INTEGER, REAL,
//! TEXT, BLOB, NULL) says what it is. Text in a `DATE`/`DATETIME`/`TIME` column that does
//! not parse as one stays text, so nothing is lost. See `docs/types.md`.
//!
//! The query runs on its own blocking thread and hands chunks over a bounded channel; a
//! cancelled run interrupts the statement inside SQLite (`sqlite3_interrupt`).
//! sqlx (used for the run store) was measured at 4× the `sqlite3` shell's CSV export
//! time on 1M rows, almost all of it in its per-row worker hand-off; rusqlite reads the
//! same rows on the calling thread (docs/benchmarks.md).
//!
//! A datasource may name a `seed_sql` file: when the database file does not exist yet,
//! ferry builds it from that file (into a temporary file, then published without
//! overwriting), which is how the demo database is made.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{CHANNEL_CHUNKS, Chunker, QueryStream, RowsPool, Source, SourceError, SourceInfo};
use crate::params::{self, ParamValue, RunParams};
use crate::value::{Column, Kind, Value, parse_date, parse_naive_datetime, parse_time};

/// A SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteSource {
    name: String,
    path: PathBuf,
}

impl SqliteSource {
    /// Opens the source, building the database from `seed_sql` first if the file is missing.
    pub async fn open(
        name: &str,
        path: &Path,
        seed_sql: Option<&Path>,
    ) -> Result<SqliteSource, SourceError> {
        if !path.exists() {
            match seed_sql {
                Some(seed) => {
                    let (n, p, sd) = (name.to_string(), path.to_path_buf(), seed.to_path_buf());
                    tokio::task::spawn_blocking(move || build_from_seed(&n, &p, &sd))
                        .await
                        .map_err(|e| {
                            SourceError::new(name, format!("seed builder stopped: {e}"))
                        })??;
                }
                None => {
                    return Err(SourceError::new(
                        name,
                        format!("database file not found: {}", path.display()),
                    ));
                }
            }
        }
        Ok(SqliteSource {
            name: name.to_string(),
            path: path.to_path_buf(),
        })
    }

    fn connect(&self) -> Result<Connection, SourceError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| {
            SourceError::new(
                &self.name,
                format!("cannot open {}: {}", self.path.display(), db_message(&e)),
            )
        })?;
        conn.execute_batch("PRAGMA query_only = ON")
            .map_err(|e| SourceError::new(&self.name, db_message(&e)))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| SourceError::new(&self.name, db_message(&e)))?;
        Ok(conn)
    }
}

/// Builds `path` from the SQL in `seed`, atomically: a concurrent builder loses cleanly.
fn build_from_seed(name: &str, path: &Path, seed: &Path) -> Result<(), SourceError> {
    let sql = std::fs::read_to_string(seed)
        .map_err(|e| SourceError::new(name, format!("cannot read seed {}: {e}", seed.display())))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| SourceError::new(name, format!("cannot create {}: {e}", dir.display())))?;
    }
    // One temporary file per builder, also between the runs of one process that build
    // the same database at once.
    static BUILDERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let builder = BUILDERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("building-{}-{builder}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = Connection::open(&tmp).and_then(|conn| conn.execute_batch(&sql));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(SourceError::new(
            name,
            format!(
                "building {} from {} failed: {}",
                path.display(),
                seed.display(),
                db_message(&e)
            ),
        ));
    }
    // Publish without overwriting: if another process built it meanwhile, keep theirs.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Err(e) if !path.exists() => Err(SourceError::new(
            name,
            format!("cannot publish {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}

/// The database's own message, without the driver's wrapping.
pub fn db_message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        other => other.to_string(),
    }
}

/// How values of one column are read, from its declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Plain,
    Bool,
    Date,
    Time,
    DateTime,
}

/// The reading rule and column kind for a declared type, following SQLite's affinity
/// rules (section 3.1 of its datatype documentation) plus the common date/bool names.
fn rule_and_kind(decl: &str) -> (Rule, Kind) {
    let d = decl.to_ascii_uppercase();
    let base = d.split('(').next().unwrap_or("").trim();
    match base {
        "BOOLEAN" | "BOOL" => return (Rule::Bool, Kind::Bool),
        "DATE" => return (Rule::Date, Kind::Date),
        "TIME" => return (Rule::Time, Kind::Time),
        "DATETIME" | "TIMESTAMP" => return (Rule::DateTime, Kind::DateTime),
        _ => {}
    }
    if d.is_empty() {
        (Rule::Plain, Kind::Unknown)
    } else if d.contains("INT") {
        (Rule::Plain, Kind::Int)
    } else if d.contains("CHAR") || d.contains("CLOB") || d.contains("TEXT") {
        (Rule::Plain, Kind::Text)
    } else if d.contains("BLOB") {
        (Rule::Plain, Kind::Bytes)
    } else if d.contains("REAL") || d.contains("FLOA") || d.contains("DOUB") {
        (Rule::Plain, Kind::Float)
    } else {
        // NUMERIC affinity (DECIMAL, NUMERIC...): SQLite stores integers or reals.
        (Rule::Plain, Kind::Decimal)
    }
}

fn read_value(v: ValueRef<'_>, rule: Rule) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => match rule {
            Rule::Bool if n == 0 || n == 1 => Value::Bool(n == 1),
            _ => Value::Int(n),
        },
        ValueRef::Real(f) => Value::Float(f),
        ValueRef::Text(t) => {
            // Dates and times parse straight from the bytes; only text is copied.
            if let Ok(text) = std::str::from_utf8(t) {
                let parsed = match rule {
                    Rule::Date => parse_date(text).map(Value::Date),
                    Rule::Time => parse_time(text).map(Value::Time),
                    Rule::DateTime => parse_naive_datetime(text).map(Value::DateTime),
                    _ => None,
                };
                if let Some(v) = parsed {
                    return v;
                }
            }
            text_value(String::from_utf8_lossy(t).into_owned(), rule)
        }
        ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
    }
}

fn bind(stmt: &mut rusqlite::Statement<'_>, index: usize, v: &ParamValue) -> rusqlite::Result<()> {
    match v {
        ParamValue::Bool(b) => stmt.raw_bind_parameter(index, *b),
        ParamValue::Int(i) => stmt.raw_bind_parameter(index, *i),
        ParamValue::Float(f) => stmt.raw_bind_parameter(index, *f),
        ParamValue::Text(s) => stmt.raw_bind_parameter(index, s.as_str()),
        other => stmt.raw_bind_parameter(index, other.to_text()),
    }
}

fn text_value(s: String, rule: Rule) -> Value {
    match rule {
        Rule::Date => match parse_date(&s) {
            Some(d) => Value::Date(d),
            None => Value::Text(s),
        },
        Rule::Time => match parse_time(&s) {
            Some(t) => Value::Time(t),
            None => Value::Text(s),
        },
        Rule::DateTime => parse_datetime(&s).unwrap_or(Value::Text(s)),
        Rule::Bool => match s.as_str() {
            "true" | "TRUE" | "1" => Value::Bool(true),
            "false" | "FALSE" | "0" => Value::Bool(false),
            _ => Value::Text(s),
        },
        Rule::Plain => Value::Text(s),
    }
}

fn parse_datetime(s: &str) -> Option<Value> {
    if let Some(t) = parse_naive_datetime(s) {
        return Some(Value::DateTime(t));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(Value::DateTimeTz(t));
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(Value::DateTimeTz(t));
        }
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(Value::DateTime(t));
        }
    }
    None
}

#[async_trait]
impl Source for SqliteSource {
    async fn query(
        &self,
        sql: &str,
        params: &RunParams,
        chunk_rows: usize,
        _timeout: std::time::Duration,
        cancel: CancellationToken,
    ) -> Result<QueryStream, SourceError> {
        // `$N` numbering binds each distinct name once. (An un-aliased parameter column is
        // then named `$1`; docs/configuration.md asks for aliases.)
        let (text, names) = params::rewrite(sql, params::Style::Dollar);
        let mut values = Vec::with_capacity(names.len());
        for n in &names {
            let v = params.get(n).ok_or_else(|| {
                SourceError::new(&self.name, format!("no value for parameter `:{n}`"))
            })?;
            values.push(v.clone());
        }
        let (cols_tx, cols_rx) = oneshot::channel::<Result<Vec<Column>, SourceError>>();
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let source = self.clone();
        let pool = RowsPool::default();
        let reader_pool = pool.clone();
        let (interrupt_tx, interrupt_rx) = oneshot::channel::<rusqlite::InterruptHandle>();
        tokio::task::spawn_blocking(move || {
            let name = source.name.clone();
            let fail = |msg: String| SourceError::new(&name, msg);
            let conn = match source.connect() {
                Ok(c) => c,
                Err(e) => {
                    let _ = cols_tx.send(Err(e));
                    return;
                }
            };
            let _ = interrupt_tx.send(conn.get_interrupt_handle());
            let mut stmt = match conn.prepare(&text) {
                Ok(s) => s,
                Err(e) => {
                    let _ = cols_tx.send(Err(fail(db_message(&e))));
                    return;
                }
            };
            let mut rules = Vec::new();
            let mut columns = Vec::new();
            for c in stmt.columns() {
                let decl = c.decl_type().unwrap_or("").to_string();
                let (rule, kind) = rule_and_kind(&decl);
                rules.push(rule);
                columns.push(Column {
                    name: c.name().to_string(),
                    db_type: decl,
                    kind,
                });
            }
            for (i, v) in values.iter().enumerate() {
                if let Err(e) = bind(&mut stmt, i + 1, v) {
                    let _ = cols_tx.send(Err(fail(db_message(&e))));
                    return;
                }
            }
            if cols_tx.send(Ok(columns)).is_err() {
                return;
            }
            let mut rows = stmt.raw_query();
            let mut chunk = Chunker::in_pool(chunk_rows, rules.len(), reader_pool);
            loop {
                match rows.next() {
                    Ok(Some(r)) => {
                        for (i, rule) in rules.iter().enumerate() {
                            match r.get_ref(i) {
                                Ok(v) => chunk.push(read_value(v, *rule)),
                                Err(e) => {
                                    let _ = tx.blocking_send(Err(fail(db_message(&e))));
                                    return;
                                }
                            }
                        }
                        if let Some(full) = chunk.end_row()
                            && tx.blocking_send(Ok(full)).is_err()
                        {
                            return; // The consumer stopped (cancelled or failed).
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let msg = if matches!(&e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::OperationInterrupted)
                        {
                            "the query was interrupted (run cancelled)".to_string()
                        } else {
                            db_message(&e)
                        };
                        let _ = tx.blocking_send(Err(fail(msg)));
                        return;
                    }
                }
            }
            if let Some(rest) = chunk.rest() {
                let _ = tx.blocking_send(Ok(rest));
            }
        });
        // Stop the statement inside SQLite when the run is cancelled.
        tokio::spawn(async move {
            if let Ok(handle) = interrupt_rx.await {
                cancel.cancelled().await;
                handle.interrupt();
            }
        });
        let columns = cols_rx
            .await
            .map_err(|_| SourceError::new(&self.name, "the query thread stopped unexpectedly"))??;
        Ok(QueryStream {
            columns,
            chunks: rx,
            pool,
            warnings: Vec::new(),
        })
    }

    async fn healthcheck(&self) -> Result<(), SourceError> {
        let source = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = source.connect()?;
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|e| SourceError::new(&source.name, db_message(&e)))
        })
        .await
        .map_err(|e| SourceError::new(&self.name, e.to_string()))?
    }

    async fn describe(&self) -> Result<SourceInfo, SourceError> {
        let source = self.clone();
        tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            let conn = source.connect()?;
            let connect_time = start.elapsed();
            let version: String = conn
                .query_row("SELECT sqlite_version()", [], |r| r.get(0))
                .map_err(|e| SourceError::new(&source.name, db_message(&e)))?;
            let write_warning = writable(&source.path).then(|| {
                format!(
                    "this process can write the file {} (ferry opens it read-only anyway; \
                     a read-only file or account is safer)",
                    source.path.display()
                )
            });
            Ok(SourceInfo {
                version: format!("SQLite {version}"),
                connect_time,
                encryption: None,
                write_warning,
            })
        })
        .await
        .map_err(|e| SourceError::new(&self.name, e.to_string()))?
    }
}

/// Whether this process may write `path`: the operating system is asked by opening the
/// file for writing (owner, groups, ACLs, read-only mounts all count). Nothing is written
/// and the file is not truncated; the handle is closed at once.
fn writable(path: &Path) -> bool {
    std::fs::OpenOptions::new().write(true).open(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_parse_with_and_without_offsets() {
        assert!(matches!(
            parse_datetime("2026-11-25 10:30:00"),
            Some(Value::DateTime(_))
        ));
        assert!(matches!(
            parse_datetime("2026-11-25T10:30:00.123"),
            Some(Value::DateTime(_))
        ));
        assert!(matches!(
            parse_datetime("2026-11-25T10:30:00+08:00"),
            Some(Value::DateTimeTz(_))
        ));
        assert!(matches!(
            parse_datetime("2026-11-25 10:30:00+0800"),
            Some(Value::DateTimeTz(_))
        ));
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn declared_types_pick_rules() {
        assert_eq!(rule_and_kind("DATE"), (Rule::Date, Kind::Date));
        assert_eq!(rule_and_kind("boolean").0, Rule::Bool);
        assert_eq!(rule_and_kind("VARCHAR(20)"), (Rule::Plain, Kind::Text));
        assert_eq!(rule_and_kind("BIGINT"), (Rule::Plain, Kind::Int));
        assert_eq!(rule_and_kind("DECIMAL(12,2)"), (Rule::Plain, Kind::Decimal));
        assert_eq!(rule_and_kind(""), (Rule::Plain, Kind::Unknown));
        assert_eq!(
            text_value("2026-13-01".into(), Rule::Date),
            Value::Text("2026-13-01".into())
        );
    }
}
