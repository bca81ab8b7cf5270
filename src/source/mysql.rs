//! MySQL-protocol source (mysql_async): MySQL, MariaDB, TiDB, AnalyticDB. One fresh
//! session per query.
//!
//! Each query:
//! 1. waits for one of the datasource's `max_connections` slots (shared by every run in
//!    this process), then connects within the datasource's `connect_timeout`;
//! 2. sets up the session: `net_write_timeout = 3600` (so a slow writer, e.g. XLSX
//!    compression, is not cut off by the server), `time_zone = '+00:00'` (so TIMESTAMP
//!    values arrive in UTC), the server-side statement timeout from the task's timeout plus
//!    [`STATEMENT_TIMEOUT_MARGIN`] (MariaDB `max_statement_time` in seconds, MySQL
//!    `max_execution_time` in milliseconds: the server is told apart by its version
//!    string), `SET SESSION TRANSACTION READ ONLY` and `START TRANSACTION READ ONLY`, so the
//!    server refuses writes (error 1792);
//! 3. runs the statement through the prepared (binary) protocol (`exec_iter`), which
//!    refuses more than one statement, with the parameters bound typed (dates and
//!    date-times as MySQL dates, integers, floats, text; booleans as 0/1);
//! 4. streams the rows through the shared [`pump`] ([`MyReader`]): rows are read from the
//!    socket only as fast as the writer takes chunks;
//! 5. when the run is cancelled (timeout, shutdown, `replace`) or the stream stops early,
//!    sends `KILL QUERY <connection id>` from a second connection ([`KillQuery`]), so the
//!    statement stops on the server, not just in ferry.
//!
//! Errors are classified by the server's error number ([`my_kind`]): 1045 and the other
//! refused-account errors are `Auth`, 1969/3024 (statement time limits) `Timeout`, 1317
//! (killed) `Cancelled`; I/O failures and 1049 (unknown database) `Connect`.
//!
//! Values are decoded by column type and flags (see `docs/types.md`): exact DECIMAL text,
//! signed and UNSIGNED 64-bit integers, TIMESTAMP as an instant in UTC, text (any
//! character set but `binary`) vs bytes (charset 63). A type ferry does not know is read as
//! text when it is valid UTF-8 and otherwise as bytes, with a warning on the run.
//!
//! Encryption follows the datasource's `tls` (mysql_async over rustls with ring, trusting
//! the system's roots plus `ca_file`; see [`crate::tls`]): `disable` never asks for TLS;
//! `prefer` asks without checking the certificate and reconnects in plain text when the
//! server has no TLS; `require` fails then, still without checking the certificate;
//! `verify-full` checks the chain and the host name. `verify-ca` is refused by validation:
//! mysql_async 0.37.1 cannot skip only the name check with rustls 0.23 (its
//! `skip_domain_validation` never matches rustls's error; mysql_async#404, fixed after that
//! release). The `KILL QUERY` connection uses the options the session connected with.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{NaiveDateTime, NaiveTime};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, Opts, OptsBuilder, Params, SslOpts, Value as MyValue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::access::CHECK_TIMEOUT as ACCESS_CHECK_TIMEOUT;
use super::pump::{self, Pump, Reader, ServerCancel};
use super::{
    Access, Chunker, CostEstimate, ErrorKind, PlanRequest, QueryRequest, QueryStream, Source,
    SourceError, SourceInfo, error_chain,
};
use crate::config::{DbTls, ServerDatasource, format_duration};
use crate::params::{self, ParamValue, RunParams};

mod access;
mod decode;
use decode::{Decoder, decode_row, describe_columns};

/// How much longer than the task's timeout the server-side statement timeout is (the same
/// policy as PostgreSQL's).
pub const STATEMENT_TIMEOUT_MARGIN: Duration = pump::STATEMENT_TIMEOUT_MARGIN;

/// A MySQL-protocol datasource.
pub struct MysqlSource {
    name: String,
    /// The options of a session: with TLS unless `tls: disable`.
    opts: Opts,
    /// `tls: prefer`: the options without TLS, for a server that has none.
    plain: Option<Opts>,
    mode: DbTls,
    shown_url: String,
    connect_timeout: Duration,
    slots: Arc<Semaphore>,
}

impl MysqlSource {
    /// Prepares the source; nothing connects until a query runs.
    pub fn new(name: &str, server: &ServerDatasource) -> Result<MysqlSource, SourceError> {
        let opts = Opts::from_url(server.url.expose()).map_err(|e| {
            SourceError::new(
                name,
                ErrorKind::Config,
                format!("invalid url `{}`: {}", server.shown_url, error_chain(&e)),
            )
        })?;
        // Stay on the address the user gave (mysql_async would otherwise switch to the
        // server's unix socket, possibly as a different account).
        let plain: Opts = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .stmt_cache_size(0)
            .into();
        let opts = match ssl_opts(server.tls, server.ca_file.as_deref())
            .map_err(|e| SourceError::new(name, ErrorKind::Config, e))?
        {
            Some(ssl) => OptsBuilder::from_opts(plain.clone())
                .ssl_opts(Some(ssl))
                .into(),
            None => plain.clone(),
        };
        let slots = super::connection_slots(name, server.max_connections);
        Ok(MysqlSource {
            name: name.to_string(),
            opts,
            plain: (server.tls == DbTls::Prefer).then_some(plain),
            mode: server.tls,
            shown_url: server.shown_url.to_string(),
            connect_timeout: server.connect_timeout,
            slots,
        })
    }

    fn fail(&self, kind: ErrorKind, msg: impl Into<String>) -> SourceError {
        SourceError::new(&self.name, kind, msg)
    }

    /// A driver error, classified, with its message.
    fn my_error(&self, e: mysql_async::Error) -> SourceError {
        my_error(&self.name, e)
    }

    /// The statement with `?` placeholders and the values to bind, in order.
    fn bind(&self, sql: &str, params: &RunParams) -> Result<(String, Vec<MyValue>), SourceError> {
        let (text, names) = params::rewrite(sql, params::Style::Question);
        let mut values = Vec::with_capacity(names.len());
        for n in &names {
            let v = params.get(n).ok_or_else(|| {
                self.fail(ErrorKind::Query, format!("no value for parameter `:{n}`"))
            })?;
            values.push(param_value(v));
        }
        Ok((text, values))
    }

    /// Sets the session up for an export (UTC, long writes, the server's statement timeout
    /// `limit`) and opens a read-only transaction.
    async fn begin_read_only(&self, conn: &mut Conn, limit: Duration) -> Result<(), SourceError> {
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| self.my_error(e))?;
        let statement_timeout = if version.unwrap_or_default().contains("MariaDB") {
            format!(
                "max_statement_time = {}",
                limit.as_secs_f64().ceil().max(1.0)
            )
        } else {
            format!(
                "max_execution_time = {}",
                limit.as_millis().clamp(1, u128::from(u32::MAX))
            )
        };
        for setup in [
            format!(
                "SET SESSION net_write_timeout = 3600, time_zone = '+00:00', {statement_timeout}"
            ),
            "SET SESSION TRANSACTION READ ONLY".to_string(),
            "START TRANSACTION READ ONLY".to_string(),
        ] {
            conn.query_drop(setup).await.map_err(|e| self.my_error(e))?;
        }
        Ok(())
    }

    /// Opens a session (after taking a connection slot), with the options it connected
    /// with (for the `KILL QUERY` connection).
    async fn connect(&self) -> Result<(Conn, OwnedSemaphorePermit, Opts), SourceError> {
        let permit = super::take_slot(&self.name, &self.slots).await?;
        let mut opts = &self.opts;
        let mut attempt = connect_within(opts, self.connect_timeout).await;
        if let (Err(ConnectError::Driver(e)), Some(plain)) = (&attempt, &self.plain)
            && is_tls_refused(e)
        {
            opts = plain;
            attempt = connect_within(opts, self.connect_timeout).await;
        }
        let conn = attempt.map_err(|e| {
            let why = |why: String| format!("cannot connect to {}: {why}", self.shown_url);
            match e {
                ConnectError::Driver(e) => {
                    let msg = match crate::tls::rustls_error(&e) {
                        Some(tls) => format!("TLS handshake failed: {tls}{}", self.tls_hint(&e)),
                        None => format!("{}{}", my_message(&e), self.tls_hint(&e)),
                    };
                    // Only the server says "auth"; anything else before a session is a
                    // connection failure.
                    let kind = match my_kind(&e) {
                        ErrorKind::Auth => ErrorKind::Auth,
                        _ => ErrorKind::Connect,
                    };
                    self.fail(kind, why(msg)).caused_by(e)
                }
                ConnectError::Timeout(msg) => self.fail(ErrorKind::Connect, why(msg)),
            }
        })?;
        Ok((conn, permit, opts.clone()))
    }

    /// What to change when connecting failed over TLS: `" (hint)"` or nothing.
    fn tls_hint(&self, e: &mysql_async::Error) -> String {
        if let Some(h) = crate::tls::failure_hint(e, false) {
            return format!(" ({h})");
        }
        if is_tls_refused(e) {
            return format!(
                " (`tls: {}` needs TLS and the server does not offer it: give the server a \
                 certificate (`ssl-cert`, `ssl-key`), or, on a trusted network only, set \
                 `tls: prefer` or `disable`)",
                self.mode.name()
            );
        }
        String::new()
    }
}

/// mysql_async's TLS options for a `tls` mode; `None` for `disable`.
fn ssl_opts(mode: DbTls, ca_file: Option<&Path>) -> Result<Option<SslOpts>, String> {
    if mode == DbTls::Disable {
        return Ok(None);
    }
    // mysql_async builds its rustls configuration with the process's default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // mysql_async refuses a root store it cannot fill, even when it checks nothing; the
    // roots are given as DER, one per entry, without the ones webpki cannot read.
    let roots = crate::tls::trusted_roots(ca_file.filter(|_| mode == DbTls::VerifyFull))?
        .into_iter()
        .filter(|c| rustls::RootCertStore::empty().add(c.clone()).is_ok())
        .map(|c| c.to_vec().into())
        .collect();
    let unchecked = matches!(mode, DbTls::Prefer | DbTls::Require);
    Ok(Some(
        SslOpts::default()
            .with_disable_built_in_roots(true)
            .with_root_certs(roots)
            .with_danger_accept_invalid_certs(unchecked),
    ))
}

/// The server has no TLS while the session asked for it.
fn is_tls_refused(e: &mysql_async::Error) -> bool {
    matches!(
        e,
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)
    )
}

enum ConnectError {
    Driver(mysql_async::Error),
    Timeout(String),
}

async fn connect_within(opts: &Opts, timeout: Duration) -> Result<Conn, ConnectError> {
    match tokio::time::timeout(timeout, Conn::new(opts.clone())).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(ConnectError::Driver(e)),
        Err(_) => Err(ConnectError::Timeout(format!(
            "no answer within {} (connect_timeout)",
            format_duration(timeout)
        ))),
    }
}

/// Stops the running statement of connection `id` from a second connection.
async fn kill_query(opts: &Opts, id: u32) {
    if let Ok(Ok(mut conn)) =
        tokio::time::timeout(Duration::from_secs(10), Conn::new(opts.clone())).await
    {
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            conn.query_drop(format!("KILL QUERY {id}")),
        )
        .await;
        let _ = conn.disconnect().await;
    }
}

/// What kind of failure a driver error is, from the server's error number.
pub fn my_kind(e: &mysql_async::Error) -> ErrorKind {
    match e {
        mysql_async::Error::Server(s) => match s.code {
            // Access denied (password, database, plugin), host not allowed, expired
            // password, old authentication protocol.
            1044 | 1045 | 1130 | 1251 | 1698 | 1820 | 1862 => ErrorKind::Auth,
            1969 | 3024 => ErrorKind::Timeout,
            1317 => ErrorKind::Cancelled,
            // Unknown database, too many connections, server shutting down.
            1049 | 1040 | 1053 => ErrorKind::Connect,
            _ => ErrorKind::Query,
        },
        mysql_async::Error::Io(_) => ErrorKind::Connect,
        _ => ErrorKind::Query,
    }
}

/// A driver error as a [`SourceError`] of datasource `name`.
fn my_error(name: &str, e: mysql_async::Error) -> SourceError {
    SourceError::new(name, my_kind(&e), my_message(&e)).caused_by(e)
}

/// The server's message and error code, or the driver's error and its causes. Neither
/// ever contains the password.
fn my_message(e: &mysql_async::Error) -> String {
    if let mysql_async::Error::Server(s) = e {
        let mut msg = format!("{} (error {}, SQLSTATE {})", s.message, s.code, s.state);
        match s.code {
            1969 | 3024 => msg.push_str(" (the task's timeout, applied on the server)"),
            1317 => msg.push_str(" (the run was stopped; ferry killed the statement)"),
            _ => {}
        }
        return msg;
    }
    error_chain(e)
}

/// A parameter as a typed MySQL value. An instant is sent in UTC, the session's zone.
fn param_value(v: &ParamValue) -> MyValue {
    fn datetime(t: NaiveDateTime) -> MyValue {
        use chrono::{Datelike, Timelike};
        MyValue::Date(
            t.year().clamp(0, 9999) as u16,
            t.month() as u8,
            t.day() as u8,
            t.hour() as u8,
            t.minute() as u8,
            t.second() as u8,
            t.nanosecond().min(999_999_999) / 1000,
        )
    }
    match v {
        ParamValue::Bool(b) => MyValue::Int(i64::from(*b)),
        ParamValue::Int(i) => MyValue::Int(*i),
        ParamValue::Float(f) => MyValue::Double(*f),
        ParamValue::Text(s) => MyValue::Bytes(s.as_bytes().to_vec()),
        ParamValue::Date(d) => datetime(d.and_time(NaiveTime::MIN)),
        ParamValue::DateTime(t) => datetime(*t),
        ParamValue::Instant(t) => datetime(t.naive_utc()),
    }
}

/// The rows of a running statement, for the pump.
struct MyReader<'c> {
    name: String,
    result: mysql_async::QueryResult<'c, 'static, mysql_async::BinaryProtocol>,
    decoders: Vec<Decoder>,
}

impl Reader for MyReader<'_> {
    async fn read_row(&mut self, chunk: &mut Chunker) -> Result<bool, SourceError> {
        if self.decoders.is_empty() {
            // A statement without columns (`DO 1`) has no rows to read.
            return Ok(false);
        }
        let row = match self.result.next().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(false),
            Err(e) => return Err(my_error(&self.name, e)),
        };
        decode_row(&self.decoders, row, chunk).map_err(|(i, e)| {
            SourceError::new(
                &self.name,
                ErrorKind::Query,
                format!("cannot read a value of column {}: {e}", i + 1),
            )
        })?;
        Ok(true)
    }
}

/// `KILL QUERY` for the session's connection id, from a second connection.
struct KillQuery {
    opts: Opts,
    id: u32,
}

impl ServerCancel for KillQuery {
    async fn cancel(&self) {
        kill_query(&self.opts, self.id).await;
    }
}

#[async_trait]
impl Source for MysqlSource {
    async fn prepare(
        &self,
        plan: PlanRequest<'_>,
    ) -> Result<Option<Vec<crate::value::Column>>, SourceError> {
        let (text, _) = self.bind(plan.sql, plan.params)?;
        let (mut conn, _permit, _) = self.connect().await?;
        self.begin_read_only(&mut conn, plan.timeout).await?;
        let columns = match conn.prep(text).await {
            Ok(stmt) => {
                let columns = describe_columns(&stmt.columns()).0;
                let _ = conn.close(stmt).await;
                Ok(Some(columns))
            }
            Err(e) => Err(self.my_error(e)),
        };
        // Dropping the connection rolls the read-only transaction back.
        let _ = tokio::time::timeout(Duration::from_secs(10), conn.disconnect()).await;
        columns
    }

    async fn estimate_cost(
        &self,
        plan: PlanRequest<'_>,
    ) -> Result<Option<CostEstimate>, SourceError> {
        let (text, values) = self.bind(plan.sql, plan.params)?;
        let (mut conn, _permit, _) = self.connect().await?;
        self.begin_read_only(&mut conn, plan.timeout).await?;
        let rows: Vec<mysql_async::Row> = conn
            .exec(format!("EXPLAIN {text}"), Params::Positional(values))
            .await
            .map_err(|e| {
                let msg = format!(
                    "cannot estimate the query's cost (EXPLAIN): {}",
                    my_message(&e)
                );
                self.fail(my_kind(&e), msg).caused_by(e)
            })?;
        let steps: Vec<(Option<u64>, Option<f64>)> = rows
            .iter()
            .map(|r| {
                let number = |col: &str| match r.get_opt::<MyValue, _>(col) {
                    Some(Ok(MyValue::Int(n))) => Some(n as f64),
                    Some(Ok(MyValue::UInt(n))) => Some(n as f64),
                    Some(Ok(MyValue::Double(n))) => Some(n),
                    Some(Ok(MyValue::Bytes(b))) => std::str::from_utf8(&b).ok()?.parse().ok(),
                    _ => None,
                };
                (number("id").map(|n| n as u64), number("rows"))
            })
            .collect();
        Ok(Some(rows_examined(&steps)))
    }

    async fn query(&self, request: QueryRequest<'_>) -> Result<QueryStream, SourceError> {
        let (text, values) =
            self.bind(super::sql_text(&self.name, request.query)?, request.params)?;
        let (mut conn, permit, opts) = self.connect().await?;
        let server = KillQuery {
            opts,
            id: conn.id(),
        };
        let (pump, opened) = Pump::arm(&self.name, request.chunk_rows, request.cancel, server);
        self.begin_read_only(&mut conn, pump::server_timeout(request.timeout))
            .await?;

        let name = self.name.clone();
        tokio::spawn(async move {
            // The result borrows the connection, so the statement starts on this task.
            match conn.exec_iter(text, Params::Positional(values)).await {
                Err(e) => pump.fail(my_error(&name, e)),
                Ok(result) => {
                    let (columns, decoders, warnings) = describe_columns(result.columns_ref());
                    let mut reader = MyReader {
                        name,
                        result,
                        decoders,
                    };
                    pump.run(columns, warnings, &mut reader).await;
                }
            }
            // Dropping the connection rolls the read-only transaction back.
            let _ = tokio::time::timeout(Duration::from_secs(10), conn.disconnect()).await;
            drop(permit);
        });
        opened.wait().await
    }

    async fn healthcheck(&self) -> Result<(), SourceError> {
        let (mut conn, _permit, _) = self.connect().await?;
        let r = conn
            .query_drop("SELECT 1")
            .await
            .map_err(|e| self.my_error(e));
        let _ = conn.disconnect().await;
        r
    }

    async fn describe(&self) -> Result<SourceInfo, SourceError> {
        let start = std::time::Instant::now();
        let (mut conn, _permit, _) = self.connect().await?;
        let connect_time = start.elapsed();
        let read = async {
            let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
            let ssl: Option<(String, String)> = conn
                .query_first("SHOW SESSION STATUS LIKE 'Ssl_version'")
                .await?;
            Ok::<_, mysql_async::Error>((
                version.unwrap_or_default(),
                ssl.map(|(_, v)| v).unwrap_or_default(),
            ))
        }
        .await
        .map_err(|e| self.my_error(e));
        let access = match &read {
            Ok(_) => self.access_on(&mut conn).await,
            Err(e) => Err(e.clone()),
        };
        let _ = conn.disconnect().await;
        let (version, ssl_version) = read?;
        let encryption = if ssl_version.is_empty() {
            format!("not encrypted (tls: {})", self.mode.name())
        } else {
            format!(
                "{} (tls: {})",
                ssl_version.replace("TLSv", "TLS "),
                self.mode.name()
            )
        };
        let version = match version.split_once("-MariaDB") {
            Some((v, _)) => format!("MariaDB {v}"),
            None => format!("MySQL {version}"),
        };
        Ok(SourceInfo {
            version,
            connect_time,
            encryption: Some(encryption),
            access: access?,
        })
    }

    async fn access(&self) -> Result<Access, SourceError> {
        let (mut conn, _permit, _) = self.connect().await?;
        let access = self.access_on(&mut conn).await;
        let _ = conn.disconnect().await;
        access
    }
}

impl MysqlSource {
    /// What the session's account could change (its grants and its roles' grants).
    async fn access_on(&self, conn: &mut Conn) -> Result<Access, SourceError> {
        self.begin_read_only(conn, ACCESS_CHECK_TIMEOUT).await?;
        let found = async {
            let version: Option<String> = conn.query_first("SELECT VERSION()").await?;
            let mariadb = version.unwrap_or_default().contains("MariaDB");
            access::read_access(conn, mariadb).await
        }
        .await
        .map_err(|e| {
            let msg = format!("cannot read the account's grants: {}", my_message(&e));
            self.fail(my_kind(&e), msg).caused_by(e)
        });
        let _ = conn.query_drop("ROLLBACK").await;
        found
    }
}

/// The cost of a tabular `EXPLAIN` (the same on MySQL and MariaDB): per SELECT (`id`), the
/// product of its tables' estimated `rows` (what a nested-loop join examines), summed over
/// the SELECTs. Steps without an estimate (a UNION's result, `Impossible WHERE`) count 1.
fn rows_examined(steps: &[(Option<u64>, Option<f64>)]) -> CostEstimate {
    let mut per_select: std::collections::BTreeMap<Option<u64>, f64> = Default::default();
    for (id, rows) in steps {
        *per_select.entry(*id).or_insert(1.0) *= rows.unwrap_or(1.0).max(1.0);
    }
    CostEstimate {
        cost: per_select.values().sum(),
        unit: "estimated rows examined",
        rows: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_examined_multiplies_joins_and_adds_selects() {
        // A join of 1000 × 20 rows plus a subquery reading 50 rows.
        let steps = [
            (Some(1), Some(1000.0)),
            (Some(1), Some(20.0)),
            (Some(2), Some(50.0)),
            (None, None),
        ];
        let e = rows_examined(&steps);
        assert_eq!(e.cost, 20_000.0 + 50.0 + 1.0);
        assert_eq!(rows_examined(&[(Some(1), None)]).cost, 1.0);
    }
}
