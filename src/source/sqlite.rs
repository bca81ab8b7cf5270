//! SQLite source (sqlx), opened read-only with `query_only` on.
//!
//! SQLite is dynamically typed: a column's declared type (`DATE`, `BOOLEAN`, `DATETIME`)
//! says how to read the stored value, and the storage class of each value (INTEGER, REAL,
//! TEXT, BLOB, NULL) says what it is. Text in a `DATE`/`DATETIME`/`TIME` column that does
//! not parse as one stays text, so nothing is lost. See `docs/types.md`.
//!
//! A datasource may name a `seed_sql` file: when the database file does not exist yet,
//! ferry builds it from that file (into a temporary file, then published without
//! overwriting), which is how the demo database is made.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use futures_util::StreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow, SqliteValueRef};
use sqlx::{
    AssertSqlSafe, Column as _, Connection, Decode, Executor, Row as _, SqlSafeStr, Statement,
    TypeInfo, ValueRef,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{CHANNEL_CHUNKS, QueryStream, Source, SourceError};
use crate::params::{self, ParamValue, RunParams};
use crate::value::{Column, Kind, Row, Value};

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
                Some(seed) => build_from_seed(name, path, seed).await?,
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

    async fn connect(&self) -> Result<SqliteConnection, SourceError> {
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| SourceError::new(&self.name, e.to_string()))?
            .filename(&self.path)
            .read_only(true)
            .pragma("query_only", "ON");
        SqliteConnection::connect_with(&opts).await.map_err(|e| {
            SourceError::new(
                &self.name,
                format!("cannot open {}: {}", self.path.display(), db_message(&e)),
            )
        })
    }
}

/// Builds `path` from the SQL in `seed`, atomically: a concurrent builder loses cleanly.
async fn build_from_seed(name: &str, path: &Path, seed: &Path) -> Result<(), SourceError> {
    let sql = std::fs::read_to_string(seed)
        .map_err(|e| SourceError::new(name, format!("cannot read seed {}: {e}", seed.display())))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| SourceError::new(name, format!("cannot create {}: {e}", dir.display())))?;
    }
    let tmp = path.with_extension(format!("building-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let opts = SqliteConnectOptions::from_str("sqlite://")
        .map_err(|e| SourceError::new(name, e.to_string()))?
        .filename(&tmp)
        .create_if_missing(true);
    let result = async {
        let mut conn = SqliteConnection::connect_with(&opts).await?;
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
        conn.close().await
    }
    .await;
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

/// The database's own message, without sqlx's wrapping.
pub fn db_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_string(),
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

fn rule_and_kind(decl: &str) -> (Rule, Kind) {
    match decl {
        "BOOLEAN" => (Rule::Bool, Kind::Bool),
        "DATE" => (Rule::Date, Kind::Date),
        "TIME" => (Rule::Time, Kind::Time),
        "DATETIME" => (Rule::DateTime, Kind::DateTime),
        "INTEGER" => (Rule::Plain, Kind::Int),
        "REAL" => (Rule::Plain, Kind::Float),
        "TEXT" => (Rule::Plain, Kind::Text),
        "BLOB" => (Rule::Plain, Kind::Bytes),
        _ => (Rule::Plain, Kind::Unknown),
    }
}

fn bind_value<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    v: &ParamValue,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    match v {
        ParamValue::Bool(b) => q.bind(*b),
        ParamValue::Int(i) => q.bind(*i),
        ParamValue::Float(f) => q.bind(*f),
        ParamValue::Text(s) => q.bind(s.clone()),
        other => q.bind(other.to_text()),
    }
}

fn decode_value(row: &SqliteRow, i: usize, rule: Rule) -> Result<Value, sqlx::Error> {
    let raw: SqliteValueRef = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let storage = raw.type_info().name().to_string();
    let v = match storage.as_str() {
        "INTEGER" => {
            let n = <i64 as Decode<sqlx::Sqlite>>::decode(raw).map_err(sqlx::Error::Decode)?;
            match rule {
                Rule::Bool if n == 0 || n == 1 => Value::Bool(n == 1),
                _ => Value::Int(n),
            }
        }
        "REAL" => {
            Value::Float(<f64 as Decode<sqlx::Sqlite>>::decode(raw).map_err(sqlx::Error::Decode)?)
        }
        "BLOB" => Value::Bytes(
            <Vec<u8> as Decode<sqlx::Sqlite>>::decode(raw).map_err(sqlx::Error::Decode)?,
        ),
        _ => {
            let s = <String as Decode<sqlx::Sqlite>>::decode(raw).map_err(sqlx::Error::Decode)?;
            text_value(s, rule)
        }
    };
    Ok(v)
}

fn text_value(s: String, rule: Rule) -> Value {
    match rule {
        Rule::Date => match NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
            Ok(d) => Value::Date(d),
            Err(_) => Value::Text(s),
        },
        Rule::Time => match NaiveTime::parse_from_str(&s, "%H:%M:%S%.f") {
            Ok(t) => Value::Time(t),
            Err(_) => Value::Text(s),
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
        let mut conn = self.connect().await?;
        // SQLite runs the statement on sqlx's worker thread; a progress handler is the way
        // to stop it there (it returns false → SQLITE_INTERRUPT).
        {
            let mut handle = conn
                .lock_handle()
                .await
                .map_err(|e| SourceError::new(&self.name, db_message(&e)))?;
            let token = cancel.clone();
            handle.set_progress_handler(10_000, move || !token.is_cancelled());
        }
        let (cols_tx, cols_rx) =
            oneshot::channel::<Result<(Vec<Column>, Vec<Rule>), SourceError>>();
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let name = self.name.clone();
        let chunk_rows = chunk_rows.max(1);
        tokio::spawn(async move {
            let stmt = match conn.prepare(AssertSqlSafe(text).into_sql_str()).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = cols_tx.send(Err(SourceError::new(&name, db_message(&e))));
                    return;
                }
            };
            let mut columns = Vec::new();
            let mut rules = Vec::new();
            for c in stmt.columns() {
                let decl = c.type_info().name().to_string();
                let (rule, kind) = rule_and_kind(&decl);
                rules.push(rule);
                columns.push(Column {
                    name: c.name().to_string(),
                    db_type: if decl == "NULL" { String::new() } else { decl },
                    kind,
                });
            }
            if cols_tx.send(Ok((columns, rules.clone()))).is_err() {
                return;
            }
            let mut q = stmt.query();
            for v in &values {
                q = bind_value(q, v);
            }
            let mut rows = q.fetch(&mut conn);
            let mut chunk: Vec<Row> = Vec::with_capacity(chunk_rows.min(65_536));
            while let Some(item) = rows.next().await {
                let decoded = item.and_then(|r| {
                    (0..rules.len())
                        .map(|i| decode_value(&r, i, rules[i]))
                        .collect::<Result<Row, _>>()
                });
                match decoded {
                    Ok(row) => chunk.push(row),
                    Err(e) => {
                        let msg = if cancel.is_cancelled() {
                            "the query was interrupted (run cancelled)".to_string()
                        } else {
                            db_message(&e)
                        };
                        let _ = tx.send(Err(SourceError::new(&name, msg))).await;
                        return;
                    }
                }
                if chunk.len() >= chunk_rows {
                    let full =
                        std::mem::replace(&mut chunk, Vec::with_capacity(chunk_rows.min(65_536)));
                    if tx.send(Ok(full)).await.is_err() {
                        return; // The consumer stopped (cancelled or failed).
                    }
                }
            }
            if !chunk.is_empty() {
                let _ = tx.send(Ok(chunk)).await;
            }
        });
        let (columns, _) = cols_rx
            .await
            .map_err(|_| SourceError::new(&self.name, "the query task stopped unexpectedly"))??;
        Ok(QueryStream {
            columns,
            chunks: rx,
        })
    }

    async fn healthcheck(&self) -> Result<(), SourceError> {
        let mut conn = self.connect().await?;
        conn.execute("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| SourceError::new(&self.name, db_message(&e)))
    }
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
        assert_eq!(rule_and_kind("BOOLEAN").0, Rule::Bool);
        assert_eq!(
            text_value("2026-13-01".into(), Rule::Date),
            Value::Text("2026-13-01".into())
        );
    }
}
