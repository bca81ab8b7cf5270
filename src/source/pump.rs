//! The streaming pump shared by every source: it owns the chunk buffers ([`RowsPool`],
//! [`Chunker`], cut at `chunk_rows` rows or [`CHUNK_BYTES`]), the bounded channel to the
//! writer, cancellation (the run's token stops the statement on the server) and the
//! end-of-stream protocol, so that a backend supplies only:
//!
//! - how to open a session and start its statement (before calling the pump);
//! - a reader ([`Reader`] for async drivers, [`BlockingReader`] for synchronous ones) that
//!   reads one row and decodes it into the chunk;
//! - how to stop its statement on the server ([`ServerCancel`]).
//!
//! The protocol: [`Pump::arm`] (right after connecting) starts watching the run's
//! cancellation token and gives an [`Opened`] for `Source::query` to return. The reader's
//! task then calls [`Pump::fail`] (the statement did not start: the error goes to
//! `Source::query`'s caller) or [`Pump::run`] / [`Pump::run_blocking`] with the columns:
//! `Source::query` returns the [`QueryStream`], and the rows follow in chunks. The stream
//! ends with every row sent, or with one error (a read or decode failure, classified by the
//! backend; `Cancelled` when the run's token had fired). When the stream stops before the
//! last row (an error, or the writer gone), the statement is stopped on the server too,
//! never left running until its server-side timeout.
//!
//! The per-row loop is generic over the reader, so each backend's loop is compiled for its
//! own reader (no dynamic call per row) and values are built in place in the chunk.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{ErrorKind, QueryStream, SourceError};
use crate::value::{Column, Rows, Value};

/// How much longer than the task's timeout the server-side statement timeout is: ferry's
/// own timer stops the run at the task's timeout and cancels the statement; the server's
/// timeout is the backstop for when ferry itself is gone (killed, crashed).
pub const STATEMENT_TIMEOUT_MARGIN: Duration = Duration::from_secs(10);

/// The server-side statement timeout for a task's `timeout`.
pub fn server_timeout(timeout: Duration) -> Duration {
    timeout + STATEMENT_TIMEOUT_MARGIN
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

/// An async driver's running statement: reads the next row into the chunk.
pub trait Reader: Send {
    /// Reads one row and pushes one value per column into `chunk` (without ending the
    /// row); `Ok(false)` when there are no more rows.
    fn read_row(
        &mut self,
        chunk: &mut Chunker,
    ) -> impl Future<Output = Result<bool, SourceError>> + Send;
}

/// A synchronous driver's running statement (read on tokio's blocking pool).
pub trait BlockingReader {
    /// As [`Reader::read_row`], blocking.
    fn read_row(&mut self, chunk: &mut Chunker) -> Result<bool, SourceError>;
}

/// Stops a backend's running statement on the server (PostgreSQL's cancel request,
/// MySQL's `KILL QUERY`, Oracle's break, SQLite's interrupt). Called at most once per
/// stop, from the runtime, while the reader may still be blocked on the statement.
pub trait ServerCancel: Send + Sync + 'static {
    fn cancel(&self) -> impl Future<Output = ()> + Send;
}

/// The writer side of one query: see the module doc for the protocol.
pub struct Pump<C: ServerCancel> {
    /// The datasource's name, for errors.
    name: String,
    chunk_rows: usize,
    opened: Option<oneshot::Sender<Result<QueryStream, SourceError>>>,
    /// The run's token: when it has fired, a failing stream is `Cancelled`.
    cancel: CancellationToken,
    server: Arc<C>,
    /// Ends the cancellation watcher when the pump is done.
    _watching: DropGuard,
    runtime: tokio::runtime::Handle,
}

/// What `Source::query` waits for: the stream once its columns are known, or why the
/// statement did not start.
pub struct Opened {
    name: String,
    rx: oneshot::Receiver<Result<QueryStream, SourceError>>,
}

impl Opened {
    pub async fn wait(self) -> Result<QueryStream, SourceError> {
        self.rx.await.unwrap_or_else(|_| {
            Err(SourceError::new(
                &self.name,
                ErrorKind::Query,
                "the query stopped before it returned its columns",
            ))
        })
    }
}

impl<C: ServerCancel> Pump<C> {
    /// Starts watching `cancel` (the run's token): from now on a cancelled run also stops
    /// the statement on the server through `server`. Must be called on the runtime.
    pub fn arm(
        name: &str,
        chunk_rows: usize,
        cancel: CancellationToken,
        server: C,
    ) -> (Pump<C>, Opened) {
        let server = Arc::new(server);
        let done = CancellationToken::new();
        {
            let (done, cancel, server) = (done.clone(), cancel.clone(), server.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = cancel.cancelled() => server.cancel().await,
                    _ = done.cancelled() => {}
                }
            });
        }
        let (tx, rx) = oneshot::channel();
        let pump = Pump {
            name: name.to_string(),
            chunk_rows: chunk_rows.max(1),
            opened: Some(tx),
            cancel,
            server,
            _watching: done.drop_guard(),
            runtime: tokio::runtime::Handle::current(),
        };
        let opened = Opened {
            name: name.to_string(),
            rx,
        };
        (pump, opened)
    }

    /// Whether the run's token has fired (for a backend whose cancel cannot reach a
    /// statement that has not started yet).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The statement did not start: `Source::query` returns `e`.
    pub fn fail(mut self, e: SourceError) {
        let e = self.classify(e);
        if let Some(opened) = self.opened.take() {
            let _ = opened.send(Err(e));
        }
    }

    /// An error seen after the run's token fired is a cancellation, whatever the driver
    /// calls it.
    fn classify(&self, mut e: SourceError) -> SourceError {
        if self.cancel.is_cancelled() {
            e.kind = ErrorKind::Cancelled;
        }
        e
    }

    /// A panic while reading or decoding a row (in the driver or its value conversion):
    /// the stream ends with this error, never as if all rows had been read.
    fn panicked(&self, p: crate::panics::Panicked) -> SourceError {
        SourceError::new(
            &self.name,
            ErrorKind::Query,
            format!(
                "the driver failed while reading a row: {}; the run was failed and no file was kept",
                p.reason()
            ),
        )
    }

    /// Hands the stream (`columns`, `warnings`) to `Source::query`'s caller, then sends
    /// every row `reader` reads in chunks, waiting while the writer is behind. Returns when
    /// the stream has ended (all rows, an error, or the writer gone); the statement is
    /// stopped on the server unless every row was read.
    pub async fn run<R: Reader>(
        mut self,
        columns: Vec<Column>,
        warnings: Vec<String>,
        reader: &mut R,
    ) {
        let Some((tx, mut chunk)) = self.open(columns, warnings) else {
            self.server.cancel().await;
            return;
        };
        if self.cancel.is_cancelled() {
            // The watcher's cancel may have reached the server before the statement began
            // (a cancel request stops only a running statement): send it again.
            self.server.cancel().await;
        }
        let read = async {
            loop {
                match reader.read_row(&mut chunk).await {
                    Ok(true) => {}
                    Ok(false) => return Ok(true),
                    Err(e) => return Err(e),
                }
                if let Some(full) = chunk.end_row()
                    && tx.send(Ok(full)).await.is_err()
                {
                    return Ok(false); // The writer stopped (failed or cancelled).
                }
            }
        };
        let complete = match crate::panics::catch_async(read).await {
            Ok(Ok(complete)) => complete,
            Ok(Err(e)) => {
                let _ = tx.send(Err(self.classify(e))).await;
                false
            }
            Err(p) => {
                let _ = tx.send(Err(self.panicked(p))).await;
                false
            }
        };
        if !complete {
            // Do not leave the statement running on the server until its timeout.
            self.server.cancel().await;
        } else if let Some(rest) = chunk.rest() {
            let _ = tx.send(Ok(rest)).await;
        }
    }

    /// [`Pump::run`] for a synchronous driver; call it on tokio's blocking pool.
    pub fn run_blocking<R: BlockingReader>(
        mut self,
        columns: Vec<Column>,
        warnings: Vec<String>,
        reader: &mut R,
    ) {
        let Some((tx, mut chunk)) = self.open(columns, warnings) else {
            self.runtime.block_on(self.server.cancel());
            return;
        };
        if self.cancel.is_cancelled() {
            self.runtime.block_on(self.server.cancel());
        }
        let read = || loop {
            match reader.read_row(&mut chunk) {
                Ok(true) => {}
                Ok(false) => return Ok(true),
                Err(e) => return Err(e),
            }
            if let Some(full) = chunk.end_row()
                && tx.blocking_send(Ok(full)).is_err()
            {
                return Ok(false); // The writer stopped (failed or cancelled).
            }
        };
        let complete = match crate::panics::catch(read) {
            Ok(Ok(complete)) => complete,
            Ok(Err(e)) => {
                let _ = tx.blocking_send(Err(self.classify(e)));
                false
            }
            Err(p) => {
                let _ = tx.blocking_send(Err(self.panicked(p)));
                false
            }
        };
        if !complete {
            self.runtime.block_on(self.server.cancel());
        } else if let Some(rest) = chunk.rest() {
            let _ = tx.blocking_send(Ok(rest));
        }
    }

    /// Sends the stream to `Source::query`'s caller; `None` when nobody waits for it.
    #[allow(clippy::type_complexity)]
    fn open(
        &mut self,
        columns: Vec<Column>,
        warnings: Vec<String>,
    ) -> Option<(mpsc::Sender<Result<Rows, SourceError>>, Chunker)> {
        let opened = self.opened.take()?;
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let chunk = Chunker::new(self.chunk_rows, columns.len());
        let stream = QueryStream {
            columns,
            chunks: rx,
            pool: chunk.pool(),
            warnings,
        };
        opened.send(Ok(stream)).ok()?;
        Some((tx, chunk))
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

    /// Rows `0..n` of one integer column, failing at row `fail_at` when set.
    struct Numbers {
        next: i64,
        n: i64,
        fail_at: Option<i64>,
    }

    impl Reader for Numbers {
        async fn read_row(&mut self, chunk: &mut Chunker) -> Result<bool, SourceError> {
            tokio::task::yield_now().await;
            self.read(chunk)
        }
    }

    impl BlockingReader for Numbers {
        fn read_row(&mut self, chunk: &mut Chunker) -> Result<bool, SourceError> {
            self.read(chunk)
        }
    }

    impl Numbers {
        fn new(n: i64, fail_at: Option<i64>) -> Numbers {
            Numbers {
                next: 0,
                n,
                fail_at,
            }
        }

        fn read(&mut self, chunk: &mut Chunker) -> Result<bool, SourceError> {
            if Some(self.next) == self.fail_at {
                return Err(SourceError::new("t", ErrorKind::Query, "row is bad"));
            }
            if self.next == self.n {
                return Ok(false);
            }
            chunk.push(Value::Int(self.next));
            self.next += 1;
            Ok(true)
        }
    }

    /// Counts the server-side cancels.
    #[derive(Clone, Default)]
    struct Counted(Arc<std::sync::atomic::AtomicUsize>);

    impl ServerCancel for Counted {
        async fn cancel(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Counted {
        fn count(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    fn columns() -> Vec<Column> {
        vec![Column {
            name: "n".into(),
            db_type: "int".into(),
            kind: crate::value::Kind::Int,
        }]
    }

    /// Every chunk's length, and the error the stream ended with.
    async fn drain(stream: QueryStream) -> (Vec<usize>, Option<SourceError>) {
        let mut chunks = stream.chunks;
        let mut lens = Vec::new();
        while let Some(c) = chunks.recv().await {
            match c {
                Ok(rows) => {
                    lens.push(rows.len());
                    stream.pool.give_back(rows);
                }
                Err(e) => return (lens, Some(e)),
            }
        }
        (lens, None)
    }

    #[tokio::test]
    async fn the_pump_cuts_chunks_and_sends_the_rest() {
        let server = Counted::default();
        let (pump, opened) = Pump::arm("t", 4, CancellationToken::new(), server.clone());
        tokio::spawn(async move {
            pump.run(columns(), vec!["w".into()], &mut Numbers::new(10, None))
                .await;
        });
        let stream = opened.wait().await.unwrap();
        assert_eq!(stream.columns.len(), 1);
        assert_eq!(stream.warnings, ["w"]);
        let (lens, e) = drain(stream).await;
        assert_eq!(lens, [4, 4, 2]);
        assert!(e.is_none(), "{e:?}");
        assert_eq!(server.count(), 0, "a complete stream cancels nothing");
    }

    #[tokio::test]
    async fn the_blocking_pump_behaves_the_same() {
        let server = Counted::default();
        let (pump, opened) = Pump::arm("t", 3, CancellationToken::new(), server.clone());
        tokio::task::spawn_blocking(move || {
            pump.run_blocking(columns(), Vec::new(), &mut Numbers::new(7, None));
        });
        let stream = opened.wait().await.unwrap();
        let (lens, e) = drain(stream).await;
        assert_eq!(lens, [3, 3, 1]);
        assert!(e.is_none(), "{e:?}");
        let server2 = Counted::default();
        let (pump, opened) = Pump::arm("t", 3, CancellationToken::new(), server2.clone());
        let done = tokio::task::spawn_blocking(move || {
            pump.run_blocking(columns(), Vec::new(), &mut Numbers::new(7, Some(4)));
        });
        let (lens, e) = drain(opened.wait().await.unwrap()).await;
        assert_eq!(lens, [3]);
        assert_eq!(e.unwrap().message, "row is bad");
        // The statement is stopped after the error is sent: wait for the pump to end.
        done.await.unwrap();
        assert_eq!(server2.count(), 1);
    }

    /// Rows `0..`, with a panic in the driver's conversion of row `at`.
    struct Panicking {
        rows: Numbers,
        at: i64,
    }

    impl Panicking {
        fn read(&mut self, chunk: &mut Chunker) -> Result<bool, SourceError> {
            if self.rows.next == self.at {
                panic!("attempt to convert a bad value");
            }
            self.rows.read(chunk)
        }
    }

    impl Reader for Panicking {
        async fn read_row(&mut self, chunk: &mut Chunker) -> Result<bool, SourceError> {
            tokio::task::yield_now().await;
            self.read(chunk)
        }
    }

    impl BlockingReader for Panicking {
        fn read_row(&mut self, chunk: &mut Chunker) -> Result<bool, SourceError> {
            self.read(chunk)
        }
    }

    /// A panic in a driver's row conversion ends the stream with an error (before, the
    /// reader's task died, the channel closed, and the writer took the rows so far for the
    /// whole result), and stops the statement on the server.
    #[tokio::test]
    async fn a_panic_while_reading_a_row_ends_the_stream_with_an_error() {
        let expected = "datasource `t`: the driver failed while reading a row: attempt to convert a bad value; the run was failed and no file was kept";
        let server = Counted::default();
        let (pump, opened) = Pump::arm("t", 4, CancellationToken::new(), server.clone());
        let reader = || Panicking {
            rows: Numbers::new(100, None),
            at: 6,
        };
        let done = tokio::spawn(async move {
            pump.run(columns(), Vec::new(), &mut reader()).await;
        });
        let (lens, e) = drain(opened.wait().await.unwrap()).await;
        assert_eq!(lens, [4]);
        let e = e.expect("an error, not the end of the rows");
        assert_eq!(
            (e.kind, e.to_string().as_str()),
            (ErrorKind::Query, expected)
        );
        done.await.unwrap();
        assert_eq!(server.count(), 1);

        let server = Counted::default();
        let (pump, opened) = Pump::arm("t", 4, CancellationToken::new(), server.clone());
        let done = tokio::task::spawn_blocking(move || {
            pump.run_blocking(columns(), Vec::new(), &mut reader());
        });
        let (lens, e) = drain(opened.wait().await.unwrap()).await;
        assert_eq!(lens, [4]);
        assert_eq!(e.expect("an error").to_string(), expected);
        done.await.unwrap();
        assert_eq!(server.count(), 1);
    }

    #[tokio::test]
    async fn an_error_after_rows_ends_the_stream_and_stops_the_statement() {
        let server = Counted::default();
        let (pump, opened) = Pump::arm("t", 4, CancellationToken::new(), server.clone());
        let done = tokio::spawn(async move {
            pump.run(columns(), Vec::new(), &mut Numbers::new(100, Some(6)))
                .await;
        });
        let (lens, e) = drain(opened.wait().await.unwrap()).await;
        // The full chunk before the error arrives; the 2 rows after it are not sent.
        assert_eq!(lens, [4]);
        let e = e.expect("an error");
        assert_eq!(e.kind, ErrorKind::Query);
        assert_eq!(e.to_string(), "datasource `t`: row is bad");
        done.await.unwrap();
        assert_eq!(server.count(), 1);
    }

    #[tokio::test]
    async fn a_cancelled_run_stops_the_statement_and_its_error_is_cancelled() {
        let server = Counted::default();
        let cancel = CancellationToken::new();
        let (pump, opened) = Pump::arm("t", 2, cancel.clone(), server.clone());
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            // The driver fails once the server has stopped the statement.
            let _ = go_rx.await;
            pump.run(columns(), Vec::new(), &mut Numbers::new(10, Some(0)))
                .await;
        });
        cancel.cancel();
        // The watcher sends the server-side cancel without any reader activity.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while server.count() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "no server cancel");
            tokio::task::yield_now().await;
        }
        go_tx.send(()).unwrap();
        let (lens, e) = drain(opened.wait().await.unwrap()).await;
        assert!(lens.is_empty());
        assert_eq!(e.unwrap().kind, ErrorKind::Cancelled);
    }

    #[tokio::test]
    async fn a_writer_that_goes_away_stops_the_statement() {
        let server = Counted::default();
        let (pump, opened) = Pump::arm("t", 1, CancellationToken::new(), server.clone());
        let reading = tokio::spawn(async move {
            pump.run(columns(), Vec::new(), &mut Numbers::new(1_000_000, None))
                .await;
        });
        let mut stream = opened.wait().await.unwrap();
        assert!(stream.chunks.recv().await.unwrap().is_ok());
        drop(stream);
        reading.await.unwrap();
        assert_eq!(server.count(), 1);
    }

    #[tokio::test]
    async fn a_statement_that_does_not_start_is_the_query_error() {
        let (pump, opened) = Pump::arm("t", 1, CancellationToken::new(), Counted::default());
        pump.fail(SourceError::new("t", ErrorKind::Auth, "denied"));
        let e = opened.wait().await.err().unwrap();
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Auth, "denied"));
        let (pump, opened) = Pump::arm("t", 1, CancellationToken::new(), Counted::default());
        drop(pump);
        let e = opened.wait().await.err().unwrap();
        assert_eq!(
            e.message,
            "the query stopped before it returned its columns"
        );
    }
}
