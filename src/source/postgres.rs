//! PostgreSQL source (tokio-postgres), one fresh session per query.
//!
//! Each query:
//! 1. waits for one of the datasource's `max_connections` slots (shared by every run in
//!    this process), then connects with the datasource's `connect_timeout`;
//! 2. runs `BEGIN TRANSACTION READ ONLY` and `SET LOCAL statement_timeout` (the task's
//!    timeout plus [`STATEMENT_TIMEOUT_MARGIN`]), so the server refuses writes (SQLSTATE
//!    25006) and stops a statement that runs too long even if ferry is gone;
//! 3. prepares the `$n` form of the SQL (extended protocol: one statement only) with
//!    explicit parameter types — `date`, `timestamp`, `timestamptz`, `int8`, `float8`,
//!    `bool` — so that `day >= :period_start_date` compares dates; a text parameter is left
//!    for the server to type and sent in text form, exactly like a quoted literal;
//! 4. streams the rows (`query_raw`, binary results) through the shared [`pump`]
//!    ([`PgReader`]): tokio-postgres stops reading the socket while the writer is behind, so
//!    memory stays flat;
//! 5. when the run is cancelled (timeout, shutdown, `replace`) or the stream stops early,
//!    sends PostgreSQL's cancel request ([`PgCancel`]) so that the statement stops on the
//!    server, not just in ferry.
//!
//! Errors are classified by SQLSTATE ([`pg_kind`]): class 28 is `Auth`, 57014 is `Timeout`
//! (statement_timeout) or `Cancelled`, class 08, 57P and 3D000 are `Connect`.
//!
//! Values are decoded from the binary wire format by [`Decoder`] (see `docs/types.md`):
//! exact `numeric` digits, 64-bit integers, dates and instants with full precision. A type
//! ferry does not know is read as text when its binary form is text (enums, `citext`,
//! domains over text) and otherwise as bytes, with a warning on the run.
//!
//! Encryption follows the datasource's `tls` (rustls through `tokio-postgres-rustls`, see
//! [`crate::tls`]): `disable` never asks for TLS; `prefer` asks and continues in plain text
//! when the server says no; `require`, `verify-ca` and `verify-full` fail when it says no.
//! Only `verify-ca` (trusted chain) and `verify-full` (trusted chain and host name) check
//! the certificate. The cancel request goes out with the same settings. With TLS, SCRAM
//! authentication binds to the TLS channel (`SCRAM-SHA-256-PLUS`) when the server offers it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::Client;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{Format, IsNull, Kind as PgKind, ToSql, Type};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::access::CHECK_TIMEOUT as ACCESS_CHECK_TIMEOUT;
use super::pump::{self, Pump, Reader, ServerCancel};
use super::{
    Access, Chunker, CostEstimate, ErrorKind, PlanRequest, QueryRequest, QueryStream, Source,
    SourceError, SourceInfo, error_chain,
};
use crate::config::{DbTls, ServerDatasource, format_duration};
use crate::params::{self, ParamValue, RunParams};
use crate::value::Column;

mod access;
mod decode;
use decode::{Decoder, Raw, decode_row};

/// How much longer than the task's timeout the server-side `statement_timeout` is.
pub const STATEMENT_TIMEOUT_MARGIN: Duration = pump::STATEMENT_TIMEOUT_MARGIN;

/// A PostgreSQL datasource.
pub struct PostgresSource {
    name: String,
    config: tokio_postgres::Config,
    shown_url: String,
    connect_timeout: Duration,
    slots: Arc<Semaphore>,
    /// The datasource's `tls`.
    mode: DbTls,
    /// TLS for the session and the cancel request (unused with `tls: disable`).
    tls: MakeRustlsConnect,
}

impl PostgresSource {
    /// Prepares the source; nothing connects until a query runs.
    pub fn new(name: &str, server: &ServerDatasource) -> Result<PostgresSource, SourceError> {
        let mut config: tokio_postgres::Config = server.url.expose().parse().map_err(|e| {
            SourceError::new(
                name,
                ErrorKind::Config,
                format!("invalid url `{}`: {}", server.shown_url, error_chain(&e)),
            )
        })?;
        config.connect_timeout(server.connect_timeout);
        config.application_name("ferry");
        config.ssl_mode(match server.tls {
            DbTls::Disable => SslMode::Disable,
            DbTls::Prefer => SslMode::Prefer,
            DbTls::Require | DbTls::VerifyCa | DbTls::VerifyFull => SslMode::Require,
        });
        // With `disable` no certificate is read: a `ca_file` is refused by validation.
        let ca_file = server
            .ca_file
            .as_deref()
            .filter(|_| server.tls != DbTls::Disable);
        let tls_config = crate::tls::client_config(server.tls.check(), ca_file)
            .map_err(|e| SourceError::new(name, ErrorKind::Config, e))?;
        let slots = super::connection_slots(name, server.max_connections);
        Ok(PostgresSource {
            name: name.to_string(),
            config,
            shown_url: server.shown_url.to_string(),
            connect_timeout: server.connect_timeout,
            slots,
            mode: server.tls,
            tls: MakeRustlsConnect::new(tls_config),
        })
    }

    fn fail(&self, kind: ErrorKind, msg: impl Into<String>) -> SourceError {
        SourceError::new(&self.name, kind, msg)
    }

    /// A driver error, classified, with its message.
    fn pg_error(&self, e: tokio_postgres::Error) -> SourceError {
        pg_error(&self.name, e)
    }

    /// Opens a session (after taking a connection slot); the connection runs on its own task.
    /// The statement with `$n` placeholders and the values to bind, in order.
    fn bind(
        &self,
        sql: &str,
        params: &RunParams,
    ) -> Result<(String, Vec<ParamValue>), SourceError> {
        let (text, names) = params::rewrite(sql, params::Style::Dollar);
        let mut values = Vec::with_capacity(names.len());
        for n in &names {
            let v = params.get(n).ok_or_else(|| {
                self.fail(ErrorKind::Query, format!("no value for parameter `:{n}`"))
            })?;
            values.push(v.clone());
        }
        Ok((text, values))
    }

    /// Opens a read-only transaction whose statements the server stops after `limit`.
    async fn begin_read_only(&self, client: &Client, limit: Duration) -> Result<(), SourceError> {
        let ms = limit.as_millis().clamp(1, i32::MAX as u128);
        client
            .batch_execute(&format!(
                "BEGIN TRANSACTION READ ONLY; SET LOCAL statement_timeout = {ms}"
            ))
            .await
            .map_err(|e| self.pg_error(e))
    }

    async fn connect(&self) -> Result<(Client, OwnedSemaphorePermit), SourceError> {
        let permit = super::take_slot(&self.name, &self.slots).await?;
        // tokio-postgres applies the timeout per address; this bounds the whole attempt.
        let attempt = tokio::time::timeout(
            self.connect_timeout + Duration::from_secs(1),
            self.config.connect(self.tls.clone()),
        )
        .await;
        let (client, connection) = match attempt {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                // Only the server says "auth"; anything else before a session is a
                // connection failure (refused, TLS, unknown database, too many clients).
                let kind = match pg_kind(&e) {
                    ErrorKind::Auth => ErrorKind::Auth,
                    _ => ErrorKind::Connect,
                };
                let msg = format!(
                    "cannot connect to {}: {}{}",
                    self.shown_url,
                    pg_message(&e),
                    self.tls_hint(&e)
                );
                return Err(self.fail(kind, msg).caused_by(e));
            }
            Err(_) => {
                return Err(self.fail(
                    ErrorKind::Connect,
                    format!(
                        "cannot connect to {}: no answer within {} (connect_timeout)",
                        self.shown_url,
                        format_duration(self.connect_timeout)
                    ),
                ));
            }
        };
        tokio::spawn(async move {
            // Ends when the client is dropped or the server closes the session.
            let _ = connection.await;
        });
        Ok((client, permit))
    }
}

impl PostgresSource {
    /// What to change when connecting failed over TLS: `"; hint"` or nothing.
    fn tls_hint(&self, e: &tokio_postgres::Error) -> String {
        if let Some(h) = crate::tls::failure_hint(e, true) {
            return format!(" ({h})");
        }
        if self.mode != DbTls::Disable && error_chain(e).contains("server does not support TLS") {
            return format!(
                " (`tls: {}` needs TLS and the server does not offer it: turn `ssl` on in the \
                 server, or, on a trusted network only, set `tls: prefer` or `disable`)",
                self.mode.name()
            );
        }
        String::new()
    }

    /// How the session is protected, as the server reports it (`TLS 1.3` or `not
    /// encrypted`).
    async fn encryption(&self, client: &Client) -> Result<String, SourceError> {
        let messages = client
            .simple_query(
                "SELECT ssl, coalesce(version, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            )
            .await
            .map_err(|e| self.pg_error(e))?;
        let row = messages.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        });
        Ok(match row {
            Some(r) if r.get(0) == Some("t") => {
                let version = r.get(1).unwrap_or_default().replace("TLSv", "TLS ");
                format!("{version} (tls: {})", self.mode.name())
            }
            _ => format!("not encrypted (tls: {})", self.mode.name()),
        })
    }
}

/// What kind of failure a driver error is, from its SQLSTATE.
/// The result columns of a prepared statement, their decoders, and a warning for each
/// column ferry cannot read.
fn describe_statement(
    stmt: &tokio_postgres::Statement,
) -> (Vec<Column>, Vec<Decoder>, Vec<String>) {
    let mut columns = Vec::with_capacity(stmt.columns().len());
    let mut decoders = Vec::with_capacity(stmt.columns().len());
    let mut warnings = Vec::new();
    for c in stmt.columns() {
        let dec = Decoder::for_type(c.type_());
        if dec == Decoder::Fallback {
            warnings.push(format!(
                "column `{}` has PostgreSQL type `{}`, which ferry cannot read: its values are written as the hex bytes of its binary form; cast it in the query (`{}::text`) to get text",
                c.name(),
                c.type_().name(),
                c.name()
            ));
        }
        columns.push(Column {
            name: c.name().to_string(),
            db_type: c.type_().name().to_string(),
            kind: dec.kind(),
        });
        decoders.push(dec);
    }
    (columns, decoders, warnings)
}

pub fn pg_kind(e: &tokio_postgres::Error) -> ErrorKind {
    let Some(db) = e.as_db_error() else {
        // No answer from the server: the session is gone, or the driver failed.
        return if e.is_closed() || error_chain(e).contains("error connecting") {
            ErrorKind::Connect
        } else {
            ErrorKind::Query
        };
    };
    let code = db.code().code();
    match code {
        "57014" if db.message().contains("statement timeout") => ErrorKind::Timeout,
        "57014" => ErrorKind::Cancelled,
        "3D000" => ErrorKind::Connect,
        _ if code.starts_with("28") => ErrorKind::Auth,
        _ if code.starts_with("08") || code.starts_with("57P") || code == "53300" => {
            ErrorKind::Connect
        }
        _ => ErrorKind::Query,
    }
}

/// A driver error as a [`SourceError`] of datasource `name`.
fn pg_error(name: &str, e: tokio_postgres::Error) -> SourceError {
    SourceError::new(name, pg_kind(&e), pg_message(&e)).caused_by(e)
}

/// The server's message (with detail and hint), or the driver's error and its causes.
/// Neither ever contains the password.
fn pg_message(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut msg = db.message().to_string();
        if db.code() == &tokio_postgres::error::SqlState::QUERY_CANCELED {
            if msg.contains("statement timeout") {
                msg.push_str(" (the task's timeout, applied as statement_timeout)");
            } else {
                msg.push_str(" (the run was stopped; ferry cancelled the statement)");
            }
        }
        if let Some(d) = db.detail() {
            msg.push_str("; detail: ");
            msg.push_str(d);
        }
        if let Some(h) = db.hint() {
            msg.push_str("; hint: ");
            msg.push_str(h);
        }
        return msg;
    }
    error_chain(e)
}

/// The parameter type declared for a value; `None` lets the server infer it (text).
fn param_type(v: &ParamValue) -> Type {
    match v {
        ParamValue::Bool(_) => Type::BOOL,
        ParamValue::Int(_) => Type::INT8,
        ParamValue::Float(_) => Type::FLOAT8,
        ParamValue::Date(_) => Type::DATE,
        ParamValue::DateTime(_) => Type::TIMESTAMP,
        ParamValue::Instant(_) => Type::TIMESTAMPTZ,
        // OID 0: "unspecified", typed by the server from the context, like a literal.
        ParamValue::Text(_) => Type::new("unknown".into(), 0, PgKind::Pseudo, "pg_catalog".into()),
    }
}

pub(super) fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .expect("valid date")
        .and_time(NaiveTime::MIN)
}

fn micros_since_epoch(t: NaiveDateTime) -> i64 {
    (t - pg_epoch()).num_microseconds().unwrap_or(i64::MAX)
}

/// A parameter in PostgreSQL's binary form (text in text form), for the type
/// [`param_type`] declared.
#[derive(Debug)]
struct PgParam<'a>(&'a ParamValue);

impl ToSql for PgParam<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            ParamValue::Bool(b) => out.extend_from_slice(&[u8::from(*b)]),
            ParamValue::Int(i) => out.extend_from_slice(&i.to_be_bytes()),
            ParamValue::Float(f) => out.extend_from_slice(&f.to_be_bytes()),
            ParamValue::Text(s) => out.extend_from_slice(s.as_bytes()),
            ParamValue::Date(d) => {
                let days = (*d - pg_epoch().date()).num_days();
                out.extend_from_slice(&(days as i32).to_be_bytes());
            }
            ParamValue::DateTime(t) => {
                out.extend_from_slice(&micros_since_epoch(*t).to_be_bytes());
            }
            ParamValue::Instant(t) => {
                out.extend_from_slice(&micros_since_epoch(t.naive_utc()).to_be_bytes());
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        match self.0 {
            ParamValue::Text(_) => Format::Text,
            _ => Format::Binary,
        }
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The rows of a running statement, for the pump.
struct PgReader {
    name: String,
    rows: std::pin::Pin<Box<tokio_postgres::RowStream>>,
    decoders: Vec<Decoder>,
}

impl Reader for PgReader {
    async fn read_row(&mut self, chunk: &mut Chunker) -> Result<bool, SourceError> {
        let row = match self.rows.next().await {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(pg_error(&self.name, e)),
            None => return Ok(false),
        };
        decode_row(&self.decoders, &row, chunk).map_err(|(i, e)| {
            let c = row.columns()[i].type_().name();
            SourceError::new(
                &self.name,
                ErrorKind::Query,
                format!("cannot read a value of column {} (type `{c}`): {e}", i + 1),
            )
        })?;
        Ok(true)
    }
}

/// PostgreSQL's cancel request for the session, sent with the session's TLS settings.
struct PgCancel {
    token: tokio_postgres::CancelToken,
    tls: MakeRustlsConnect,
}

impl ServerCancel for PgCancel {
    async fn cancel(&self) {
        let _ = self.token.cancel_query(self.tls.clone()).await;
    }
}

#[async_trait]
impl Source for PostgresSource {
    async fn estimate_cost(
        &self,
        plan: PlanRequest<'_>,
    ) -> Result<Option<CostEstimate>, SourceError> {
        let (text, values) = self.bind(plan.sql, plan.params)?;
        let (client, _permit) = self.connect().await?;
        self.begin_read_only(&client, plan.timeout).await?;
        let types: Vec<Type> = values.iter().map(param_type).collect();
        let explain = async {
            let stmt = client
                .prepare_typed(&format!("EXPLAIN (FORMAT JSON) {text}"), &types)
                .await?;
            let pg_params: Vec<PgParam<'_>> = values.iter().map(PgParam).collect();
            let rows: Vec<tokio_postgres::Row> = client
                .query_raw(&stmt, pg_params.iter())
                .await?
                .try_collect()
                .await?;
            Ok::<_, tokio_postgres::Error>(rows)
        };
        let rows = explain.await.map_err(|e| {
            let msg = format!(
                "cannot estimate the query's cost (EXPLAIN): {}",
                pg_message(&e)
            );
            self.fail(pg_kind(&e), msg).caused_by(e)
        })?;
        let plan = rows
            .first()
            .and_then(|r| r.try_get::<_, Raw<'_>>(0).ok())
            .and_then(|Raw(b)| b)
            .ok_or_else(|| self.fail(ErrorKind::Query, "EXPLAIN returned no plan"))?;
        plan_estimate(plan).map(Some).map_err(|e| {
            self.fail(
                ErrorKind::Query,
                format!("cannot read the EXPLAIN plan: {e}"),
            )
        })
    }

    async fn query(&self, request: QueryRequest<'_>) -> Result<QueryStream, SourceError> {
        let (text, values) =
            self.bind(super::sql_text(&self.name, request.query)?, request.params)?;
        let (client, permit) = self.connect().await?;
        let server = PgCancel {
            token: client.cancel_token(),
            tls: self.tls.clone(),
        };
        let (pump, opened) = Pump::arm(&self.name, request.chunk_rows, request.cancel, server);

        self.begin_read_only(&client, pump::server_timeout(request.timeout))
            .await?;
        let types: Vec<Type> = values.iter().map(param_type).collect();
        let stmt = client
            .prepare_typed(&text, &types)
            .await
            .map_err(|e| self.pg_error(e))?;

        let (columns, decoders, warnings) = describe_statement(&stmt);
        let pg_params: Vec<PgParam<'_>> = values.iter().map(PgParam).collect();
        let rows = client
            .query_raw(&stmt, pg_params.iter())
            .await
            .map_err(|e| self.pg_error(e))?;
        let mut reader = PgReader {
            name: self.name.clone(),
            rows: Box::pin(rows),
            decoders,
        };
        tokio::spawn(async move {
            pump.run(columns, warnings, &mut reader).await;
            drop(reader);
            drop(client);
            drop(permit);
        });
        opened.wait().await
    }

    async fn prepare(&self, plan: PlanRequest<'_>) -> Result<Option<Vec<Column>>, SourceError> {
        let (text, values) = self.bind(plan.sql, plan.params)?;
        let (client, _permit) = self.connect().await?;
        self.begin_read_only(&client, plan.timeout).await?;
        let types: Vec<Type> = values.iter().map(param_type).collect();
        let stmt = client
            .prepare_typed(&text, &types)
            .await
            .map_err(|e| self.pg_error(e))?;
        Ok(Some(describe_statement(&stmt).0))
    }

    async fn healthcheck(&self) -> Result<(), SourceError> {
        let (client, _permit) = self.connect().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|e| self.pg_error(e))
    }

    async fn describe(&self) -> Result<SourceInfo, SourceError> {
        let start = std::time::Instant::now();
        let (client, _permit) = self.connect().await?;
        let connect_time = start.elapsed();
        let encryption = self.encryption(&client).await?;
        let version = client
            .query_one("SELECT current_setting('server_version')", &[])
            .await
            .map_err(|e| self.pg_error(e))?
            .get::<_, String>(0);
        Ok(SourceInfo {
            version: format!("PostgreSQL {version}"),
            connect_time,
            encryption: Some(encryption),
            access: self.access_on(&client).await?,
        })
    }

    async fn access(&self) -> Result<Access, SourceError> {
        let (client, _permit) = self.connect().await?;
        self.access_on(&client).await
    }
}

impl PostgresSource {
    /// What the session's account could change, read in a read-only transaction.
    async fn access_on(&self, client: &Client) -> Result<Access, SourceError> {
        self.begin_read_only(client, ACCESS_CHECK_TIMEOUT).await?;
        let found = access::read_access(client).await.map_err(|e| {
            let msg = format!("cannot read the account's privileges: {}", pg_message(&e));
            self.fail(pg_kind(&e), msg).caused_by(e)
        });
        let _ = client.batch_execute("ROLLBACK").await;
        found
    }
}

/// The top node's `Total Cost` and `Plan Rows` of `EXPLAIN (FORMAT JSON)` output.
fn plan_estimate(json: &[u8]) -> Result<CostEstimate, String> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| e.to_string())?;
    let plan = &v[0]["Plan"];
    let cost = plan["Total Cost"]
        .as_f64()
        .ok_or("no `Total Cost` in the plan")?;
    Ok(CostEstimate {
        cost,
        unit: "PostgreSQL planner cost units",
        rows: plan["Plan Rows"].as_f64(),
    })
}
