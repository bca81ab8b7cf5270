//! Data sources: the [`Source`] trait and its implementations.
//!
//! A source runs one read-only query and streams the result: the column metadata first
//! ([`QueryStream::columns`]), then rows in chunks through a bounded channel, so a slow
//! writer slows the database read down instead of growing memory. Dropping the stream
//! stops the query.
//!
//! Adding a backend: a variant of `DatasourceSpec` (config), a module implementing
//! [`Source`], an arm in [`build`], and the shared conformance tests.
//!
//! `oracle` is compiled only with the `oracle` cargo feature; without it, validation
//! refuses `type: oracle` datasources with a message that says how to build one.

pub mod mysql;
#[cfg(feature = "oracle")]
pub mod oracle;
pub mod postgres;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::config::DatasourceSpec;
use crate::params::RunParams;
use crate::value::{Column, Rows, Value};

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

/// An error and its causes on one line (`error: cause: cause`), each cause once.
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
    msg
}

/// How many chunks may wait between the source and the writer.
pub const CHANNEL_CHUNKS: usize = 2;

/// Chunk buffers handed back by the writer for the reader to fill again.
///
/// The reader takes a buffer, fills it and sends it; the writer writes it and gives it
/// back. The values of a returned buffer are dropped by the reader when it takes the buffer
/// again (the reader's task, which allocated them), so a streaming export reuses the same
/// few buffers (still warm in the CPU caches) instead of allocating a `Vec` per row and
/// freeing it on the writer's thread. Measured in docs/benchmarks.md ("Flat, reused
/// chunks").
#[derive(Debug, Clone, Default)]
pub struct RowsPool(Arc<Mutex<Vec<Rows>>>);

/// Buffers kept for reuse: enough for every chunk that can be in flight at once (in the
/// channel, being filled, being written).
const POOL_BUFFERS: usize = CHANNEL_CHUNKS + 2;

impl RowsPool {
    /// Gives a written chunk back for reuse; its values are dropped when it is taken again.
    pub fn give_back(&self, rows: Rows) {
        let mut pool = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_BUFFERS {
            pool.push(rows);
        }
    }

    /// An empty buffer for `width` columns with room for `rows` rows, at most 65,536 or as
    /// many as fit in [`CHUNK_BYTES`] (a chunk is cut there anyway; 1,000 columns × 65,536
    /// rows would otherwise reserve 2 GB per buffer).
    fn take(&self, width: usize, rows: usize) -> Rows {
        let cap_rows = rows
            .min(65_536)
            .min((CHUNK_BYTES / std::mem::size_of::<Value>()) / width.max(1) + 1);
        let reused = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match reused {
            Some(mut r) if r.capacity() >= width * cap_rows => {
                r.reset(width);
                r
            }
            _ => Rows::with_capacity(width, cap_rows),
        }
    }

    #[cfg(test)]
    fn buffers(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// A chunk is sent before it has `chunk_rows` rows once its values take this many bytes
/// (each value's slot plus the length of the text, bytes or decimal digits it holds), so
/// that rows with long text or large binary values keep memory flat too. A new buffer is
/// made only when none is given back, so at most [`CHANNEL_CHUNKS`] + 3 exist at once
/// (being filled, waiting to be sent, in the channel, being written), each holding at most
/// `CHUNK_BYTES` plus the row that crossed it: about 20 MB in flight plus five of the
/// largest row, whatever `chunk_rows` says.
pub const CHUNK_BYTES: usize = 4 << 20;

/// Collects a source's values into chunks of `chunk_rows` rows (or [`CHUNK_BYTES`]) for
/// the channel to the writer, reusing the buffers the writer gives back through
/// [`Chunker::pool`].
pub struct Chunker {
    rows: Rows,
    size: usize,
    bytes: usize,
    pool: RowsPool,
}

impl Chunker {
    pub fn new(chunk_rows: usize, width: usize) -> Chunker {
        Chunker::in_pool(chunk_rows, width, RowsPool::default())
    }

    /// A chunker that reuses the buffers given back to `pool`.
    pub fn in_pool(chunk_rows: usize, width: usize, pool: RowsPool) -> Chunker {
        let size = chunk_rows.max(1);
        Chunker {
            rows: pool.take(width, size),
            size,
            bytes: 0,
            pool,
        }
    }

    /// The pool the writer gives written chunks back to ([`QueryStream::pool`]).
    pub fn pool(&self) -> RowsPool {
        self.pool.clone()
    }

    /// Adds the next value of the row being filled.
    #[inline]
    pub fn push(&mut self, value: Value) {
        self.bytes += std::mem::size_of::<Value>() + value.heap_len();
        self.rows.push(value);
    }

    /// Ends the row being filled (after one `push` per column); returns the chunk to send
    /// when this row completes one.
    #[inline]
    pub fn end_row(&mut self) -> Option<Rows> {
        debug_assert!(self.rows.is_row_complete(), "a row with a value per column");
        (self.rows.len() >= self.size || self.bytes >= CHUNK_BYTES).then(|| {
            self.bytes = 0;
            let next = self.pool.take(self.rows.width(), self.size);
            std::mem::replace(&mut self.rows, next)
        })
    }

    /// The last, partial chunk, if any rows are left.
    pub fn rest(self) -> Option<Rows> {
        (!self.rows.is_empty()).then_some(self.rows)
    }
}

/// An error from a datasource; the message names the datasource.
#[derive(Debug, Clone, thiserror::Error)]
#[error("datasource `{datasource}`: {message}")]
pub struct SourceError {
    pub datasource: String,
    pub message: String,
}

impl SourceError {
    pub fn new(datasource: &str, message: impl Into<String>) -> SourceError {
        SourceError {
            datasource: datasource.to_string(),
            message: message.into(),
        }
    }
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
    /// When ferry's account (or, for a file, this process) could write: why, and what to
    /// do, as one sentence (`the account can write (INSERT on public.t); ...`).
    /// `None`: read-only as far as ferry can tell.
    pub write_warning: Option<String>,
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

/// The warning for a server account that can write, with the evidence.
pub fn account_can_write(evidence: &str) -> String {
    format!("the account can write ({evidence}); give ferry a read-only account")
}

/// A database that ferry can export from.
#[async_trait]
pub trait Source: Send + Sync {
    /// Starts `sql` (with `:name` placeholders) bound to `params`; rows arrive in chunks of
    /// at most `chunk_rows`. `timeout` (the task's) becomes the server-side statement
    /// timeout where the database has one. When `cancel` fires, the statement is stopped in
    /// the database (not just abandoned) and the stream ends with an error.
    async fn query(
        &self,
        sql: &str,
        params: &RunParams,
        chunk_rows: usize,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> Result<QueryStream, SourceError>;

    /// The planner's estimate for `sql` bound to `params`, from `EXPLAIN` in a read-only
    /// transaction under `timeout`, without running the query. `None`: this backend gives
    /// no estimate (validation refuses `max_cost` for it).
    async fn estimate_cost(
        &self,
        sql: &str,
        params: &RunParams,
        timeout: Duration,
    ) -> Result<Option<CostEstimate>, SourceError> {
        let _ = (sql, params, timeout);
        Ok(None)
    }

    /// Checks that the source can be reached and queried.
    async fn healthcheck(&self) -> Result<(), SourceError>;

    /// Connects (within the connect timeout), checks that the source answers, and reports
    /// its version and whether ferry's account could write. Only reads: on a server the
    /// checks run in a read-only transaction.
    async fn describe(&self) -> Result<SourceInfo, SourceError>;
}

/// Builds the source for a datasource spec.
pub async fn build(name: &str, spec: &DatasourceSpec) -> Result<Box<dyn Source>, SourceError> {
    match spec {
        DatasourceSpec::Sqlite { path, seed_sql } => Ok(Box::new(
            sqlite::SqliteSource::open(name, path, seed_sql.as_deref()).await?,
        )),
        DatasourceSpec::Postgres {
            url,
            shown_url,
            max_connections,
            connect_timeout,
            tls,
            ca_file,
        } => Ok(Box::new(postgres::PostgresSource::new(
            name,
            url,
            shown_url,
            *max_connections,
            *connect_timeout,
            *tls,
            ca_file.as_deref(),
        )?)),
        DatasourceSpec::Mysql {
            url,
            shown_url,
            max_connections,
            connect_timeout,
            tls,
            ca_file,
        } => Ok(Box::new(mysql::MysqlSource::new(
            name,
            url,
            shown_url,
            *max_connections,
            *connect_timeout,
            *tls,
            ca_file.as_deref(),
        )?)),
        #[cfg(feature = "oracle")]
        DatasourceSpec::Oracle { .. } => Ok(Box::new(oracle::OracleSource::new(name, spec)?)),
        #[cfg(not(feature = "oracle"))]
        DatasourceSpec::Oracle { .. } => Err(SourceError::new(
            name,
            crate::config::validate::ORACLE_NOT_BUILT,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(chunker: &mut Chunker, width: usize, value: impl Fn() -> Value) -> Option<Rows> {
        for _ in 0..width {
            chunker.push(value());
        }
        chunker.end_row()
    }

    #[test]
    fn chunks_are_cut_at_chunk_rows_and_the_rest_is_kept() {
        let mut c = Chunker::new(3, 2);
        let mut sent = Vec::new();
        for i in 0..7 {
            if let Some(full) = fill(&mut c, 2, || Value::Int(i)) {
                sent.push(full);
            }
        }
        assert_eq!(sent.iter().map(Rows::len).collect::<Vec<_>>(), [3, 3]);
        assert_eq!(
            sent[1].iter().next(),
            Some(&[Value::Int(3), Value::Int(3)][..])
        );
        let rest = c.rest().expect("one row left");
        assert_eq!(rest.len(), 1);
    }

    #[test]
    fn wide_rows_cut_a_chunk_at_chunk_bytes() {
        // 1,000 rows of two 1 MB texts would be 2 GB in one chunk; each chunk stops once it
        // holds CHUNK_BYTES.
        let big = "x".repeat(1 << 20);
        let mut c = Chunker::new(1000, 2);
        let mut rows_per_chunk = Vec::new();
        for _ in 0..10 {
            if let Some(full) = fill(&mut c, 2, || Value::Text(big.clone())) {
                rows_per_chunk.push(full.len());
            }
        }
        assert_eq!(rows_per_chunk, [2, 2, 2, 2, 2]);
        assert!(c.rest().is_none());
    }

    #[test]
    fn buffers_reserve_no_more_than_chunk_bytes() {
        let c = Chunker::new(1_000_000, 1000);
        let slots = c.rows.capacity();
        assert!(
            slots <= CHUNK_BYTES / std::mem::size_of::<Value>() + 1000,
            "{slots}"
        );
        let narrow = Chunker::new(1000, 12);
        assert!(narrow.rows.capacity() >= 12_000);
    }

    #[test]
    fn given_back_buffers_are_reused_after_being_emptied() {
        let mut c = Chunker::new(2, 1);
        let pool = c.pool();
        let next = |c: &mut Chunker, v: Value| {
            (0..)
                .find_map(|_| fill(c, 1, || v.clone()))
                .expect("a full chunk")
        };
        let first = next(&mut c, Value::Text("a".into()));
        let buffer = first.iter().next().unwrap().as_ptr();
        pool.give_back(first);
        assert_eq!(pool.buffers(), 1);
        // The buffer after `first` was taken before the give-back; the one after it is
        // `first`'s, emptied of its texts.
        let second = next(&mut c, Value::Int(1));
        assert_eq!(pool.buffers(), 0, "taken for the chunk after `second`");
        let third = next(&mut c, Value::Int(2));
        assert_eq!(third.iter().next().unwrap().as_ptr(), buffer);
        assert_eq!(third.len(), 2);
        assert!(third.iter().all(|r| r == [Value::Int(2)]));
        assert!(second.iter().all(|r| r == [Value::Int(1)]));
        // Never more than the chunks in flight are kept.
        for _ in 0..10 {
            pool.give_back(Rows::with_capacity(1, 2));
        }
        assert_eq!(pool.buffers(), POOL_BUFFERS);
    }
}
