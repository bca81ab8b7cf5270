//! Data sources: the [`Source`] trait and its implementations.
//!
//! A source runs one read-only query and streams the result: the column metadata first
//! ([`QueryStream::columns`]), then rows in chunks through a bounded channel, so a slow
//! writer slows the database read down instead of growing memory. Dropping the stream
//! stops the query.
//!
//! The streaming itself (chunk buffers, the channel, cancellation, the end-of-stream
//! protocol) is the shared [`pump`]; a backend supplies its session, its reader and
//! decoder, and how to stop its statement on the server. Errors are [`SourceError`]s with
//! an [`ErrorKind`] (connect, auth, timeout, cancelled, query, config).
//!
//! A query is a [`Query`]: SQL today (`Query::Sql`); the SQL gate, `:param` binding and
//! the cost guard apply to SQL queries only, so a source that does not speak SQL is a new
//! variant and a backend that reads it.
//!
//! Adding a backend: a variant of `RawDatasource` and of `DatasourceSpec` (config), its
//! config checks in [`config`] (an arm of [`config::check`]), a module implementing
//! [`Source`] on top of [`pump::Pump`], an arm in [`build`], and the shared conformance
//! tests.
//!
//! `oracle` is compiled only with the `oracle` cargo feature; without it, validation
//! refuses `type: oracle` datasources with a message that says how to build one.

pub mod access;
pub mod config;
mod error;
pub mod mysql;
#[cfg(feature = "oracle")]
pub mod oracle;
pub mod postgres;
pub mod pump;
pub mod sqlite;

pub use access::Access;
pub use error::{Cause, ErrorKind, SourceError};
pub use pump::{CHANNEL_CHUNKS, CHUNK_BYTES, Chunker, RowsPool};

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::DatasourceSpec;
pub use crate::config::Query;
use crate::params::RunParams;
use crate::value::{Column, Rows};

/// Connection slots per datasource, shared by every run of this process (keyed by name
/// and size, so a reload that changes `max_connections` gets a fresh limit).
pub fn connection_slots(name: &str, max_connections: usize) -> Arc<Semaphore> {
    type SlotMap = HashMap<(String, usize), Arc<Semaphore>>;
    static SLOTS: LazyLock<Mutex<SlotMap>> = LazyLock::new(|| Mutex::new(HashMap::new()));
    let max = max_connections.max(1);
    SLOTS
        .lock()
        .expect("slots lock")
        .entry((name.to_string(), max))
        .or_insert_with(|| Arc::new(Semaphore::new(max)))
        .clone()
}

/// Takes one of a datasource's [`connection_slots`], waiting for one to come free; the
/// slot is held until the permit drops (with the connection).
pub async fn take_slot(
    name: &str,
    slots: &Arc<Semaphore>,
) -> Result<tokio::sync::OwnedSemaphorePermit, SourceError> {
    slots
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| SourceError::new(name, ErrorKind::Connect, "connection slots closed"))
}

/// An error and its causes on one line (`error: cause: cause`), each cause once, with the
/// secrets of any URL in it redacted (a driver or HTTP client may echo the URL).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        cause = c.source();
    }
    crate::config::redact_text(&msg)
}

/// The SQL of `query`, for a backend that reads SQL only.
pub fn sql_text<'q>(datasource: &str, query: &'q Query) -> Result<&'q str, SourceError> {
    query.sql().ok_or_else(|| {
        SourceError::new(
            datasource,
            ErrorKind::Config,
            "this datasource reads SQL queries only",
        )
    })
}

/// A running query: columns known up front, rows arriving in chunks.
pub struct QueryStream {
    pub columns: Vec<Column>,
    pub chunks: mpsc::Receiver<Result<Rows, SourceError>>,
    /// Where the consumer gives each chunk back once written, for the source to reuse.
    pub pool: RowsPool,
    /// Problems known once the columns are (a column type read as a fallback); the run
    /// records them.
    pub warnings: Vec<String>,
}

/// What `ferry sources test` learns about a datasource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInfo {
    /// The server (or library) and its version, e.g. `PostgreSQL 16.4`.
    pub version: String,
    /// How long opening the connection took.
    pub connect_time: Duration,
    /// How the connection is protected, as the server reports it (`TLS 1.3 (tls:
    /// verify-full)`, `not encrypted (tls: prefer)`); `None` when it does not apply
    /// or is not known (SQLite, Oracle).
    pub encryption: Option<String>,
    /// What ferry's account could change ([`Source::access`]).
    pub access: Access,
}

/// The planner's estimate for a query, read from `EXPLAIN` before it runs (the cost
/// guard, `max_cost` on a datasource).
#[derive(Debug, Clone, PartialEq)]
pub struct CostEstimate {
    /// The number compared with `max_cost`.
    pub cost: f64,
    /// What `cost` counts, for messages (`PostgreSQL planner cost units`).
    pub unit: &'static str,
    /// The rows the planner expects the query to return, when it says.
    pub rows: Option<f64>,
}

/// What [`Source::query`] is asked to run.
pub struct QueryRequest<'a> {
    /// The statement (SQL with `:name` placeholders bound to `params`).
    pub query: &'a Query,
    pub params: &'a RunParams,
    /// Rows arrive in chunks of at most this many.
    pub chunk_rows: usize,
    /// The task's timeout: the server-side statement timeout where the database has one.
    pub timeout: Duration,
    /// When it fires, the statement is stopped in the database (not just abandoned) and
    /// the stream ends with a `Cancelled` error.
    pub cancel: CancellationToken,
}

/// A statement to plan, not run ([`Source::estimate_cost`]).
#[derive(Clone, Copy)]
pub struct PlanRequest<'a> {
    /// SQL with `:name` placeholders bound to `params`.
    pub sql: &'a str,
    pub params: &'a RunParams,
    pub timeout: Duration,
}

/// A database that ferry can export from.
#[async_trait]
pub trait Source: Send + Sync {
    /// Starts the request's query; rows arrive in chunks (see [`QueryRequest`]).
    async fn query(&self, request: QueryRequest<'_>) -> Result<QueryStream, SourceError>;

    /// The planner's estimate for the statement, from `EXPLAIN` in a read-only
    /// transaction under the request's timeout, without running it. `None`: this backend
    /// gives no estimate (validation refuses `max_cost` for it).
    async fn estimate_cost(
        &self,
        plan: PlanRequest<'_>,
    ) -> Result<Option<CostEstimate>, SourceError> {
        let _ = plan;
        Ok(None)
    }

    /// Checks the statement with the database without running it (`ferry run --dry-run`):
    /// it is prepared (on a server, in a read-only transaction under the timeout)
    /// and its result columns returned. `None`: this backend cannot check a statement
    /// without running it.
    async fn prepare(&self, plan: PlanRequest<'_>) -> Result<Option<Vec<Column>>, SourceError> {
        let _ = plan;
        Ok(None)
    }

    /// Checks that the source can be reached and queried.
    async fn healthcheck(&self) -> Result<(), SourceError>;

    /// Connects (within the connect timeout), checks that the source answers, and reports
    /// its version and what ferry's account could change. Only reads: on a server the
    /// checks run in a read-only transaction.
    async fn describe(&self) -> Result<SourceInfo, SourceError>;

    /// What ferry's account could change, asked of the database (see [`access`]); the
    /// verdict `require_read_only` acts on. Only reads, in a read-only transaction.
    async fn access(&self) -> Result<Access, SourceError>;
}

/// Builds the source for a datasource spec.
pub async fn build(name: &str, spec: &DatasourceSpec) -> Result<Box<dyn Source>, SourceError> {
    match spec {
        DatasourceSpec::Sqlite { path, seed_sql } => Ok(Box::new(
            sqlite::SqliteSource::open(name, path, seed_sql.as_deref()).await?,
        )),
        DatasourceSpec::Postgres(server) => {
            Ok(Box::new(postgres::PostgresSource::new(name, server)?))
        }
        DatasourceSpec::Mysql(server) => Ok(Box::new(mysql::MysqlSource::new(name, server)?)),
        #[cfg(feature = "oracle")]
        DatasourceSpec::Oracle(spec) => Ok(Box::new(oracle::OracleSource::new(name, spec))),
        #[cfg(not(feature = "oracle"))]
        DatasourceSpec::Oracle(_) => Err(SourceError::new(
            name,
            ErrorKind::Config,
            crate::source::config::ORACLE_NOT_BUILT,
        )),
    }
}
