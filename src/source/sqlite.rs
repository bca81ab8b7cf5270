//! SQLite source (rusqlite), opened read-only with `query_only` on.
//!
//! SQLite is dynamically typed: a column's declared type (`DATE`, `BOOLEAN`, `DATETIME`)
//! says how to read the stored value, and the storage class of each value (INTEGER, REAL,
//! TEXT, BLOB, NULL) says what it is. Text in a `DATE`/`DATETIME`/`TIME` column that does
//! not parse as one stays text, so nothing is lost. See `docs/types.md`.
//!
//! The query runs on its own blocking thread and hands its rows to the shared [`pump`]
//! ([`SqliteReader`], [`Pump::run_blocking`]); a cancelled run interrupts the statement
//! inside SQLite (`sqlite3_interrupt`, [`Interrupt`]) and ends as `Cancelled`.
//! sqlx (used for the run store) was measured at 4× the `sqlite3` shell's CSV export
//! time on 1M rows, almost all of it in its per-row worker hand-off; rusqlite reads the
//! same rows on the calling thread (docs/benchmarks.md).
//!
//! A datasource may name a `seed_sql` file: when the database file does not exist yet,
//! ferry builds it from that file (into a temporary file, then published without
//! overwriting), which is how the demo database is made.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use super::pump::{BlockingReader, Pump, ServerCancel};
use super::{
    Access, Chunker, ErrorKind, PlanRequest, QueryRequest, QueryStream, Source, SourceError,
    SourceInfo,
};
use crate::params::{self, ParamValue};
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
                            SourceError::new(
                                name,
                                ErrorKind::Config,
                                format!("seed builder stopped: {e}"),
                            )
                        })??;
                }
                None => {
                    return Err(SourceError::new(
                        name,
                        ErrorKind::Config,
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
                ErrorKind::Connect,
                format!("cannot open {}: {}", self.path.display(), db_message(&e)),
            )
            .caused_by(e)
        })?;
        conn.execute_batch("PRAGMA query_only = ON")
            .map_err(|e| sqlite_error(&self.name, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(|e| sqlite_error(&self.name, e))?;
        Ok(conn)
    }
}

/// Builds `path` from the SQL in `seed`, atomically: a concurrent builder loses cleanly.
fn build_from_seed(name: &str, path: &Path, seed: &Path) -> Result<(), SourceError> {
    let sql = crate::fsread::read_text(seed, crate::fsread::Kind::SeedSql)
        .map_err(|e| SourceError::new(name, ErrorKind::Config, e.named("seed_sql")))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            SourceError::new(
                name,
                ErrorKind::Config,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
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
            ErrorKind::Config,
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
            ErrorKind::Config,
            format!("cannot publish {}: {e}", path.display()),
        )),
        _ => Ok(()),
    }
}

/// A driver error as a [`SourceError`] of datasource `name`: an interrupted statement is
/// `Cancelled` (ferry interrupts only a cancelled run), anything else `Query`.
fn sqlite_error(name: &str, e: rusqlite::Error) -> SourceError {
    let interrupted = matches!(&e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::OperationInterrupted);
    let (kind, msg) = if interrupted {
        (
            ErrorKind::Cancelled,
            "the query was interrupted (run cancelled)".to_string(),
        )
    } else {
        (ErrorKind::Query, db_message(&e))
    };
    SourceError::new(name, kind, msg).caused_by(e)
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

/// The result columns of a prepared statement, with how to read each.
fn columns_of(stmt: &rusqlite::Statement<'_>) -> (Vec<Column>, Vec<Rule>) {
    stmt.columns()
        .iter()
        .map(|c| {
            let decl = c.decl_type().unwrap_or("").to_string();
            let (rule, kind) = rule_and_kind(&decl);
            let column = Column {
                name: c.name().to_string(),
                db_type: decl,
                kind,
            };
            (column, rule)
        })
        .unzip()
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

/// Interrupts the statement of the query's connection, once it is open.
#[derive(Default)]
struct Interrupt(Arc<OnceLock<rusqlite::InterruptHandle>>);

impl ServerCancel for Interrupt {
    async fn cancel(&self) {
        if let Some(handle) = self.0.get() {
            handle.interrupt();
        }
    }
}

/// The rows of a running statement, for the pump.
struct SqliteReader<'s> {
    name: String,
    rows: rusqlite::Rows<'s>,
    rules: Vec<Rule>,
}

impl BlockingReader for SqliteReader<'_> {
    fn read_row(&mut self, chunk: &mut Chunker) -> Result<bool, SourceError> {
        let row = match self.rows.next() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(false),
            Err(e) => return Err(sqlite_error(&self.name, e)),
        };
        for (i, rule) in self.rules.iter().enumerate() {
            match row.get_ref(i) {
                Ok(v) => chunk.push(read_value(v, *rule)),
                Err(e) => return Err(sqlite_error(&self.name, e)),
            }
        }
        Ok(true)
    }
}

#[async_trait]
impl Source for SqliteSource {
    async fn query(&self, request: QueryRequest<'_>) -> Result<QueryStream, SourceError> {
        // `$N` numbering binds each distinct name once. (An un-aliased parameter column is
        // then named `$1`; docs/configuration.md asks for aliases.)
        let sql = super::sql_text(&self.name, request.query)?;
        let (text, names) = params::rewrite(sql, params::Style::Dollar);
        let mut values = Vec::with_capacity(names.len());
        for n in &names {
            let v = request.params.get(n).ok_or_else(|| {
                SourceError::new(
                    &self.name,
                    ErrorKind::Query,
                    format!("no value for parameter `:{n}`"),
                )
            })?;
            values.push(v.clone());
        }
        let interrupt = Interrupt::default();
        let handle = interrupt.0.clone();
        let (pump, opened) = Pump::arm(&self.name, request.chunk_rows, request.cancel, interrupt);
        let source = self.clone();
        tokio::task::spawn_blocking(move || {
            let name = source.name.clone();
            let conn = match source.connect() {
                Ok(c) => c,
                Err(e) => return pump.fail(e),
            };
            let _ = handle.set(conn.get_interrupt_handle());
            if pump.is_cancelled() {
                // Cancelled while opening: the interrupt had nothing to stop yet.
                return pump.fail(SourceError::new(
                    &name,
                    ErrorKind::Cancelled,
                    "the query was interrupted (run cancelled)",
                ));
            }
            let mut stmt = match conn.prepare(&text) {
                Ok(s) => s,
                Err(e) => return pump.fail(sqlite_error(&name, e)),
            };
            let (columns, rules) = columns_of(&stmt);
            for (i, v) in values.iter().enumerate() {
                if let Err(e) = bind(&mut stmt, i + 1, v) {
                    return pump.fail(sqlite_error(&name, e));
                }
            }
            let mut reader = SqliteReader {
                name,
                rows: stmt.raw_query(),
                rules,
            };
            pump.run_blocking(columns, Vec::new(), &mut reader);
        });
        opened.wait().await
    }

    async fn prepare(&self, plan: PlanRequest<'_>) -> Result<Option<Vec<Column>>, SourceError> {
        let params = plan.params;
        let (text, names) = params::rewrite(plan.sql, params::Style::Dollar);
        if let Some(n) = names.iter().find(|n| params.get(n).is_none()) {
            return Err(SourceError::new(
                &self.name,
                ErrorKind::Query,
                format!("no value for parameter `:{n}`"),
            ));
        }
        let source = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = source.connect()?;
            let stmt = conn
                .prepare(&text)
                .map_err(|e| sqlite_error(&source.name, e))?;
            Ok(Some(columns_of(&stmt).0))
        })
        .await
        .map_err(|e| SourceError::new(&self.name, ErrorKind::Query, e.to_string()))?
    }

    async fn healthcheck(&self) -> Result<(), SourceError> {
        let source = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = source.connect()?;
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|e| sqlite_error(&source.name, e))
        })
        .await
        .map_err(|e| SourceError::new(&self.name, ErrorKind::Query, e.to_string()))?
    }

    async fn describe(&self) -> Result<SourceInfo, SourceError> {
        let source = self.clone();
        tokio::task::spawn_blocking(move || {
            let start = std::time::Instant::now();
            let conn = source.connect()?;
            let connect_time = start.elapsed();
            let version: String = conn
                .query_row("SELECT sqlite_version()", [], |r| r.get(0))
                .map_err(|e| sqlite_error(&source.name, e))?;
            Ok(SourceInfo {
                version: format!("SQLite {version}"),
                connect_time,
                encryption: None,
                access: access_of(&conn, &source.path)
                    .map_err(|e| sqlite_error(&source.name, e))?,
            })
        })
        .await
        .map_err(|e| SourceError::new(&self.name, ErrorKind::Query, e.to_string()))?
    }

    async fn access(&self) -> Result<Access, SourceError> {
        let source = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = source.connect()?;
            access_of(&conn, &source.path).map_err(|e| sqlite_error(&source.name, e))
        })
        .await
        .map_err(|e| SourceError::new(&self.name, ErrorKind::Query, e.to_string()))?
    }
}

/// What a SQLite connection could change. SQLite has no accounts: read-only means that
/// the connection ferry queries through cannot write, which ferry makes so itself (the
/// file opened with `SQLITE_OPEN_READONLY`, then `PRAGMA query_only = ON`) and checks
/// here by asking SQLite (`sqlite3_db_readonly` of `main`, and the pragma). Whether this
/// process could write the file some other way does not matter to the queries it runs.
fn access_of(conn: &Connection, path: &Path) -> rusqlite::Result<Access> {
    let mut access = Access::read_only("ferry's connection");
    if !conn.is_readonly(rusqlite::MAIN_DB)? {
        access.findings.push(format!(
            "can write {} (not opened read-only)",
            path.display()
        ));
    }
    let query_only: bool = conn.query_row("PRAGMA query_only", [], |r| r.get(0))?;
    if !query_only {
        access.findings.push("has query_only off".into());
    }
    Ok(access)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ferrys_connection_is_read_only_and_a_writable_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let rw = Connection::open(&path).unwrap();
        rw.execute_batch("CREATE TABLE t (id INTEGER)").unwrap();
        let found = access_of(&rw, &path).unwrap();
        assert_eq!(
            found.findings,
            [
                format!("can write {} (not opened read-only)", path.display()),
                "has query_only off".to_string()
            ]
        );

        let source = SqliteSource {
            name: "db".into(),
            path: path.clone(),
        };
        let ro = source.connect().unwrap();
        let found = access_of(&ro, &path).unwrap();
        assert!(found.is_read_only(), "{found:?}");
        assert_eq!(found.account, "ferry's connection");
    }

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
