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

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use chrono::{NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::Client;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{Format, IsNull, Kind as PgKind, ToSql, Type};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

use super::pump::{self, Pump, Reader, ServerCancel};
use super::{
    Chunker, CostEstimate, ErrorKind, Query, QueryStream, Source, SourceError, SourceInfo,
    error_chain,
};
use crate::config::{DbTls, Secret, format_duration};
use crate::params::{self, ParamValue, RunParams};
use crate::value::{Column, Kind, Value};

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
    pub fn new(
        name: &str,
        url: &Secret,
        shown_url: &str,
        max_connections: usize,
        connect_timeout: Duration,
        mode: DbTls,
        ca_file: Option<&Path>,
    ) -> Result<PostgresSource, SourceError> {
        let mut config: tokio_postgres::Config = url.expose().parse().map_err(|e| {
            SourceError::new(
                name,
                ErrorKind::Config,
                format!("invalid url `{shown_url}`: {}", error_chain(&e)),
            )
        })?;
        config.connect_timeout(connect_timeout);
        config.application_name("ferry");
        config.ssl_mode(match mode {
            DbTls::Disable => SslMode::Disable,
            DbTls::Prefer => SslMode::Prefer,
            DbTls::Require | DbTls::VerifyCa | DbTls::VerifyFull => SslMode::Require,
        });
        // With `disable` no certificate is read: a `ca_file` is refused by validation.
        let ca_file = ca_file.filter(|_| mode != DbTls::Disable);
        let tls_config = crate::tls::client_config(mode.check(), ca_file)
            .map_err(|e| SourceError::new(name, ErrorKind::Config, e))?;
        let slots = super::connection_slots(name, max_connections);
        Ok(PostgresSource {
            name: name.to_string(),
            config,
            shown_url: shown_url.to_string(),
            connect_timeout,
            slots,
            mode,
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
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.fail(ErrorKind::Connect, "connection slots closed"))?;
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

fn pg_epoch() -> NaiveDateTime {
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

/// A column value as the raw bytes of its binary form (`None` for NULL), for any type.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> tokio_postgres::types::FromSql<'a> for Raw<'a> {
    fn from_sql(
        _ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// How one column's binary values become [`Value`]s.
#[derive(Debug, Clone, PartialEq)]
enum Decoder {
    Bool,
    Int2,
    Int4,
    Int8,
    /// `oid` and friends: unsigned 32-bit.
    Oid,
    Float4,
    Float8,
    Numeric,
    /// Any type whose binary form is its UTF-8 text (text, varchar, enums, json, xml...).
    Text,
    /// `"char"`: one byte.
    Char,
    Jsonb,
    Bytes,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Uuid,
    Interval,
    /// An array of a known element type, written in PostgreSQL's `{a,b}` syntax.
    Array(Box<Decoder>),
    /// A type ferry cannot read: the raw binary form as bytes (with a warning).
    Fallback,
}

impl Decoder {
    fn for_type(ty: &Type) -> Decoder {
        match *ty {
            Type::BOOL => Decoder::Bool,
            Type::INT2 => Decoder::Int2,
            Type::INT4 => Decoder::Int4,
            Type::INT8 => Decoder::Int8,
            Type::OID | Type::XID | Type::CID | Type::REGPROC | Type::REGTYPE | Type::REGCLASS => {
                Decoder::Oid
            }
            Type::FLOAT4 => Decoder::Float4,
            Type::FLOAT8 => Decoder::Float8,
            Type::NUMERIC => Decoder::Numeric,
            Type::TEXT
            | Type::VARCHAR
            | Type::BPCHAR
            | Type::NAME
            | Type::UNKNOWN
            | Type::JSON
            | Type::XML
            | Type::JSONPATH => Decoder::Text,
            Type::CHAR => Decoder::Char,
            Type::JSONB => Decoder::Jsonb,
            Type::BYTEA => Decoder::Bytes,
            Type::DATE => Decoder::Date,
            Type::TIME => Decoder::Time,
            Type::TIMETZ => Decoder::TimeTz,
            Type::TIMESTAMP => Decoder::Timestamp,
            Type::TIMESTAMPTZ => Decoder::TimestampTz,
            Type::UUID => Decoder::Uuid,
            Type::INTERVAL => Decoder::Interval,
            _ => match ty.kind() {
                // An enum's binary form is its label.
                PgKind::Enum(_) => Decoder::Text,
                PgKind::Domain(base) => Decoder::for_type(base),
                PgKind::Array(elem) => match Decoder::for_type(elem) {
                    Decoder::Fallback => Decoder::Fallback,
                    d => Decoder::Array(Box::new(d)),
                },
                // Extension types whose binary form is text (citext sends text as-is).
                _ if matches!(ty.name(), "citext") => Decoder::Text,
                _ => Decoder::Fallback,
            },
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Decoder::Bool => Kind::Bool,
            Decoder::Int2 | Decoder::Int4 | Decoder::Int8 | Decoder::Oid => Kind::Int,
            Decoder::Float4 | Decoder::Float8 => Kind::Float,
            Decoder::Numeric => Kind::Decimal,
            Decoder::Bytes | Decoder::Fallback => Kind::Bytes,
            Decoder::Date => Kind::Date,
            Decoder::Time => Kind::Time,
            Decoder::Timestamp => Kind::DateTime,
            Decoder::TimestampTz => Kind::DateTimeTz,
            Decoder::Text
            | Decoder::Char
            | Decoder::Jsonb
            | Decoder::TimeTz
            | Decoder::Uuid
            | Decoder::Interval
            | Decoder::Array(_) => Kind::Text,
        }
    }

    /// Decodes one non-NULL value.
    fn decode(&self, b: &[u8]) -> Result<Value, String> {
        Ok(match self {
            Decoder::Bool => Value::Bool(fixed::<1>(b)?[0] != 0),
            Decoder::Int2 => Value::Int(i16::from_be_bytes(fixed(b)?).into()),
            Decoder::Int4 => Value::Int(i32::from_be_bytes(fixed(b)?).into()),
            Decoder::Int8 => Value::Int(i64::from_be_bytes(fixed(b)?)),
            Decoder::Oid => Value::Int(u32::from_be_bytes(fixed(b)?).into()),
            Decoder::Float4 => Value::Float(f32_to_f64(f32::from_be_bytes(fixed(b)?))),
            Decoder::Float8 => Value::Float(f64::from_be_bytes(fixed(b)?)),
            Decoder::Numeric => numeric(b)?,
            Decoder::Text => Value::Text(utf8(b)),
            Decoder::Char => Value::Text(utf8(b)),
            Decoder::Jsonb => match b.split_first() {
                Some((1, rest)) => Value::Text(utf8(rest)),
                _ => return Err("unknown jsonb version".into()),
            },
            Decoder::Bytes | Decoder::Fallback => Value::Bytes(b.to_vec()),
            Decoder::Date => date(i32::from_be_bytes(fixed(b)?)),
            Decoder::Time => {
                let us = i64::from_be_bytes(fixed(b)?);
                match time_of_day(us) {
                    Some(t) => Value::Time(t),
                    None => Value::Text(time_text(us)), // 24:00:00
                }
            }
            Decoder::TimeTz => {
                let (us, rest) = b.split_at_checked(8).ok_or("short timetz")?;
                let us = i64::from_be_bytes(fixed(us)?);
                // The zone is stored in seconds *west* of UTC.
                let east = -i32::from_be_bytes(fixed(rest)?);
                Value::Text(format!("{}{}", time_text(us), offset_text(east)))
            }
            Decoder::Timestamp => match timestamp(i64::from_be_bytes(fixed(b)?)) {
                Ok(t) => Value::DateTime(t),
                Err(text) => Value::Text(text),
            },
            Decoder::TimestampTz => match timestamp(i64::from_be_bytes(fixed(b)?)) {
                Ok(t) => Value::DateTimeTz(Utc.from_utc_datetime(&t).fixed_offset()),
                Err(text) => Value::Text(text),
            },
            Decoder::Uuid => {
                Value::Text(uuid::Uuid::from_bytes(fixed(b)?).hyphenated().to_string())
            }
            Decoder::Interval => {
                let us = i64::from_be_bytes(fixed(&b[..8.min(b.len())])?);
                let days = i32::from_be_bytes(fixed(b.get(8..12).ok_or("short interval")?)?);
                let months = i32::from_be_bytes(fixed(b.get(12..).ok_or("short interval")?)?);
                Value::Text(interval_text(months, days, us))
            }
            Decoder::Array(elem) => Value::Text(array_text(elem, b)?),
        })
    }
}

fn fixed<const N: usize>(b: &[u8]) -> Result<[u8; N], String> {
    b.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", b.len()))
}

fn utf8(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `f64` whose shortest text equals the `f32`'s (`0.1`, not `0.10000000149011612`).
fn f32_to_f64(f: f32) -> f64 {
    if f.is_finite() {
        f.to_string().parse().unwrap_or(f64::from(f))
    } else {
        f64::from(f)
    }
}

/// `numeric`: sign, weight (base-10000 exponent of the first digit), display scale and
/// base-10000 digits, turned into the exact decimal text PostgreSQL itself prints.
fn numeric(b: &[u8]) -> Result<Value, String> {
    let header = b.get(..8).ok_or("short numeric")?;
    let ndigits = u16::from_be_bytes([header[0], header[1]]) as usize;
    let weight = i16::from_be_bytes([header[2], header[3]]) as i32;
    let sign = u16::from_be_bytes([header[4], header[5]]);
    let dscale = u16::from_be_bytes([header[6], header[7]]) as usize;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok(Value::Float(f64::NAN)),
        0xD000 => return Ok(Value::Float(f64::INFINITY)),
        0xF000 => return Ok(Value::Float(f64::NEG_INFINITY)),
        other => return Err(format!("unknown numeric sign {other:#x}")),
    }
    let body = b.get(8..8 + 2 * ndigits).ok_or("short numeric digits")?;
    // Digit i (base 10000) stands for digit(i) * 10000^(weight - i).
    let digit = |i: usize| u16::from_be_bytes([body[2 * i], body[2 * i + 1]]);
    if (0..ndigits).any(|i| digit(i) > 9999) {
        return Err("numeric digit out of range".into());
    }
    let group = |pos: i32| -> u16 {
        let i = weight - pos;
        if i < 0 || i as usize >= ndigits {
            0
        } else {
            digit(i as usize)
        }
    };
    let push4 = |out: &mut String, g: u16| {
        for d in [g / 1000, g / 100 % 10, g / 10 % 10, g % 10] {
            out.push((b'0' + d as u8) as char);
        }
    };
    let mut out = String::with_capacity(4 * (ndigits + 2) + dscale);
    if sign == 0x4000 && (0..ndigits).any(|i| digit(i) != 0) {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        out.push_str(itoa::Buffer::new().format(group(weight)));
        for pos in (0..weight).rev() {
            push4(&mut out, group(pos));
        }
    }
    if dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut pos = -1;
        while out.len() - start < dscale {
            push4(&mut out, group(pos));
            pos -= 1;
        }
        out.truncate(start + dscale);
    }
    Ok(Value::Decimal(out))
}

fn date(days: i32) -> Value {
    match days {
        i32::MAX => Value::Text("infinity".into()),
        i32::MIN => Value::Text("-infinity".into()),
        _ => match pg_epoch()
            .date()
            .checked_add_signed(chrono::Duration::days(days.into()))
        {
            Some(d) => Value::Date(d),
            None => Value::Text(format!("(date out of range: {days} days after 2000-01-01)")),
        },
    }
}

fn timestamp(us: i64) -> Result<NaiveDateTime, String> {
    match us {
        i64::MAX => Err("infinity".into()),
        i64::MIN => Err("-infinity".into()),
        _ => pg_epoch()
            .checked_add_signed(chrono::Duration::microseconds(us))
            .ok_or_else(|| format!("(timestamp out of range: {us} microseconds after 2000-01-01)")),
    }
}

fn time_of_day(us: i64) -> Option<NaiveTime> {
    let secs = u32::try_from(us.div_euclid(1_000_000)).ok()?;
    let nanos = (us.rem_euclid(1_000_000) * 1000) as u32;
    NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos)
}

/// `HH:MM:SS[.ffffff]` for a time of day (also `24:00:00`), trailing zeros trimmed.
fn time_text(us: i64) -> String {
    let (secs, frac) = (us / 1_000_000, us % 1_000_000);
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    push_fraction(&mut s, frac);
    s
}

fn push_fraction(s: &mut String, micros: i64) {
    if micros != 0 {
        let f = format!(".{:06}", micros.abs());
        s.push_str(f.trim_end_matches('0'));
    }
}

/// `+08`, `-03:30`, `+05:45:10` as PostgreSQL prints a zone offset.
fn offset_text(east: i32) -> String {
    let sign = if east < 0 { '-' } else { '+' };
    let a = east.unsigned_abs();
    let (h, m, s) = (a / 3600, a / 60 % 60, a % 60);
    match (m, s) {
        (0, 0) => format!("{sign}{h:02}"),
        (_, 0) => format!("{sign}{h:02}:{m:02}"),
        _ => format!("{sign}{h:02}:{m:02}:{s:02}"),
    }
}

/// An interval in PostgreSQL's default output style (`IntervalStyle = postgres`):
/// `1 year 2 mons 3 days 04:05:06.5`, `-1 days +02:00:00`, `00:00:00`.
fn interval_text(months: i32, days: i32, us: i64) -> String {
    let mut out = String::new();
    let mut is_zero = true;
    let mut is_before = false;
    let mut part = |value: i64, unit: &str, out: &mut String| {
        if value == 0 {
            return;
        }
        if !is_zero {
            out.push(' ');
        }
        if is_before && value > 0 {
            out.push('+');
        }
        out.push_str(&format!(
            "{value} {unit}{}",
            if value != 1 { "s" } else { "" }
        ));
        is_before = value < 0;
        is_zero = false;
    };
    part(i64::from(months / 12), "year", &mut out);
    part(i64::from(months % 12), "mon", &mut out);
    part(i64::from(days), "day", &mut out);
    if is_zero || us != 0 {
        if !is_zero {
            out.push(' ');
        }
        if us < 0 {
            out.push('-');
        } else if is_before {
            out.push('+');
        }
        let a = us.unsigned_abs();
        let secs = a / 1_000_000;
        out.push_str(&format!(
            "{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        ));
        push_fraction(&mut out, (a % 1_000_000) as i64);
    }
    out
}

/// An array in PostgreSQL's text syntax (`{1,2,NULL}`, `{{a,b},{c,d}}`, `[0:1]={x,y}`),
/// each element written as ferry writes that type (instants in UTC).
fn array_text(elem: &Decoder, b: &[u8]) -> Result<String, String> {
    let int = |at: usize| -> Result<i32, String> {
        Ok(i32::from_be_bytes(fixed(
            b.get(at..at + 4).ok_or("short array")?,
        )?))
    };
    let ndim = int(0)?;
    if ndim == 0 {
        return Ok("{}".into());
    }
    let ndim = usize::try_from(ndim).map_err(|_| "bad array dimensions")?;
    let mut dims = Vec::with_capacity(ndim);
    let mut prefix = String::new();
    for d in 0..ndim {
        let len = usize::try_from(int(12 + 8 * d)?).map_err(|_| "bad array length")?;
        let lower = int(16 + 8 * d)?;
        dims.push(len);
        prefix.push_str(&format!(
            "[{}:{}]",
            lower,
            i64::from(lower) + len as i64 - 1
        ));
    }
    let mut at = 12 + 8 * ndim;
    let total: usize = dims.iter().product();
    let mut items = Vec::with_capacity(total);
    for _ in 0..total {
        let len = int(at)?;
        at += 4;
        if len < 0 {
            items.push("NULL".to_string());
            continue;
        }
        let raw = b.get(at..at + len as usize).ok_or("short array element")?;
        at += len as usize;
        let mut text = String::new();
        crate::value::render_text(&elem.decode(raw)?, chrono_tz::UTC, &mut text);
        items.push(quote_array_item(text));
    }
    let mut out = String::new();
    if dims_need_prefix(b, ndim)? {
        out.push_str(&prefix);
        out.push('=');
    }
    let mut items = items.into_iter();
    nest(&dims, &mut items, &mut out);
    Ok(out)
}

fn dims_need_prefix(b: &[u8], ndim: usize) -> Result<bool, String> {
    for d in 0..ndim {
        let at = 16 + 8 * d;
        let lower = i32::from_be_bytes(fixed(b.get(at..at + 4).ok_or("short array")?)?);
        if lower != 1 {
            return Ok(true);
        }
    }
    Ok(false)
}

fn nest(dims: &[usize], items: &mut impl Iterator<Item = String>, out: &mut String) {
    out.push('{');
    for i in 0..dims[0] {
        if i > 0 {
            out.push(',');
        }
        if dims.len() > 1 {
            nest(&dims[1..], items, out);
        } else if let Some(item) = items.next() {
            out.push_str(&item);
        }
    }
    out.push('}');
}

fn quote_array_item(text: String) -> String {
    let needs = text.is_empty()
        || text.eq_ignore_ascii_case("NULL")
        || text
            .chars()
            .any(|c| matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_whitespace());
    if !needs {
        return text;
    }
    let mut q = String::with_capacity(text.len() + 2);
    q.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Decodes one row into the chunk; on failure, the column index and the reason.
///
/// A plain function, not part of the async reader, so that values are built in place
/// instead of being moved through the reader's future for every cell (see the MySQL
/// source's `decode_row`).
#[inline(never)]
fn decode_row(
    decoders: &[Decoder],
    row: &tokio_postgres::Row,
    chunk: &mut Chunker,
) -> Result<(), (usize, String)> {
    for (i, dec) in decoders.iter().enumerate() {
        let value = match row.try_get::<_, Raw<'_>>(i) {
            Ok(Raw(None)) => Ok(Value::Null),
            Ok(Raw(Some(b))) => dec.decode(b),
            Err(e) => Err(error_chain(&e)),
        };
        chunk.push(value.map_err(|e| (i, e))?);
    }
    Ok(())
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
    async fn query(
        &self,
        query: &Query,
        params: &RunParams,
        chunk_rows: usize,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> Result<QueryStream, SourceError> {
        let (text, values) = self.bind(super::sql_text(&self.name, query)?, params)?;
        let (client, permit) = self.connect().await?;
        let server = PgCancel {
            token: client.cancel_token(),
            tls: self.tls.clone(),
        };
        let (pump, opened) = Pump::arm(&self.name, chunk_rows, cancel, server);

        self.begin_read_only(&client, pump::server_timeout(timeout))
            .await?;
        let types: Vec<Type> = values.iter().map(param_type).collect();
        let stmt = client
            .prepare_typed(&text, &types)
            .await
            .map_err(|e| self.pg_error(e))?;

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

    async fn estimate_cost(
        &self,
        sql: &str,
        params: &RunParams,
        timeout: Duration,
    ) -> Result<Option<CostEstimate>, SourceError> {
        let (text, values) = self.bind(sql, params)?;
        let (client, _permit) = self.connect().await?;
        self.begin_read_only(&client, timeout).await?;
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
        let messages = client
            .simple_query(DESCRIBE_SQL)
            .await
            .map_err(|e| self.pg_error(e))?;
        let row = messages
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .ok_or_else(|| self.fail(ErrorKind::Query, "the privilege check returned no row"))?;
        let col = |i: usize| row.get(i).unwrap_or_default().to_string();
        let mut evidence = Vec::new();
        if col(2) == "t" {
            evidence.push(format!("role `{}` is a superuser", col(1)));
        }
        let tables: u64 = col(3).parse().unwrap_or(0);
        if tables > 0 {
            let noun = if tables == 1 { "table" } else { "tables" };
            evidence.push(format!("{} on {tables} {noun}, e.g. {}", col(4), col(5)));
        }
        if !col(6).is_empty() {
            evidence.push(format!("CREATE on schema {}", col(6)));
        }
        Ok(SourceInfo {
            version: format!("PostgreSQL {}", col(0)),
            connect_time,
            encryption: Some(encryption),
            write_warning: (!evidence.is_empty())
                .then(|| super::account_can_write(&evidence.join("; "))),
        })
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

/// `ferry sources test`: the server version, the role, whether it is a superuser, the
/// tables it may change (count, privileges, one example) and the schemas it may create in,
/// read in a read-only transaction. System schemas (`pg_*`, `information_schema`) are left
/// out; temporary tables are not counted as writes.
const DESCRIBE_SQL: &str = r"
BEGIN TRANSACTION READ ONLY;
WITH writable AS (
    SELECT n.nspname, c.relname, p.priv, p.ord
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'])
        WITH ORDINALITY AS p(priv, ord)
    WHERE c.relkind IN ('r', 'p', 'v', 'f')
      AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
      AND has_table_privilege(c.oid, p.priv)
)
SELECT current_setting('server_version'),
       current_user,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),
       (SELECT count(DISTINCT (nspname, relname)) FROM writable),
       (SELECT string_agg(priv, ', ' ORDER BY ord)
          FROM (SELECT DISTINCT priv, ord FROM writable) AS privs),
       (SELECT format('%I.%I', nspname, relname) FROM writable
          ORDER BY nspname, relname LIMIT 1),
       (SELECT string_agg(format('%I', nspname), ', ' ORDER BY nspname)
          FROM pg_namespace
         WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\_%'
           AND has_schema_privilege(oid, 'USAGE') AND has_schema_privilege(oid, 'CREATE'));
COMMIT;
";

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        b.extend_from_slice(&weight.to_be_bytes());
        b.extend_from_slice(&sign.to_be_bytes());
        b.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    fn dec(b: &[u8]) -> String {
        match numeric(b).unwrap() {
            Value::Decimal(s) => s,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn numerics_decode_exactly() {
        // 12345678901234567890.1234567890
        let b = numeric_bytes(4, 0, 10, &[1234, 5678, 9012, 3456, 7890, 1234, 5678, 9000]);
        assert_eq!(dec(&b), "12345678901234567890.1234567890");
        assert_eq!(dec(&numeric_bytes(0, 0, 0, &[])), "0");
        assert_eq!(dec(&numeric_bytes(0, 0, 2, &[])), "0.00");
        assert_eq!(dec(&numeric_bytes(-1, 0x4000, 3, &[500])), "-0.050");
        assert_eq!(dec(&numeric_bytes(1, 0, 0, &[1])), "10000");
        assert_eq!(dec(&numeric_bytes(-2, 0, 8, &[12])), "0.00000012");
        assert_eq!(dec(&numeric_bytes(0, 0x4000, 1, &[12, 5000])), "-12.5");
        assert!(
            matches!(numeric(&numeric_bytes(0, 0xC000, 0, &[])), Ok(Value::Float(f)) if f.is_nan())
        );
        assert_eq!(
            numeric(&numeric_bytes(0, 0xF000, 0, &[])),
            Ok(Value::Float(f64::NEG_INFINITY))
        );
    }

    #[test]
    fn intervals_print_like_postgres() {
        assert_eq!(interval_text(0, 0, 0), "00:00:00");
        assert_eq!(
            interval_text(14, 3, 4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000),
            "1 year 2 mons 3 days 04:05:06.5"
        );
        assert_eq!(interval_text(0, -1, 7_200_000_000), "-1 days +02:00:00");
        assert_eq!(interval_text(0, 1, -1), "1 day -00:00:00.000001");
        assert_eq!(interval_text(-13, 0, 0), "-1 years -1 mons");
        assert_eq!(interval_text(0, 0, 90_000_000_000), "25:00:00");
    }

    #[test]
    fn times_and_offsets() {
        assert_eq!(time_text(86_400_000_000), "24:00:00");
        assert_eq!(time_text(3_723_250_000), "01:02:03.25");
        assert_eq!(offset_text(8 * 3600), "+08");
        assert_eq!(offset_text(-(3 * 3600 + 1800)), "-03:30");
        assert_eq!(date(i32::MAX), Value::Text("infinity".into()));
        assert_eq!(
            date(-1),
            Value::Date(NaiveDate::from_ymd_opt(1999, 12, 31).unwrap())
        );
    }

    #[test]
    fn float4_keeps_its_short_text() {
        assert_eq!(f32_to_f64(0.1), 0.1);
        assert!(f32_to_f64(f32::NAN).is_nan());
    }

    #[test]
    fn array_items_are_quoted_when_needed() {
        assert_eq!(quote_array_item("abc".into()), "abc");
        assert_eq!(quote_array_item("".into()), "\"\"");
        assert_eq!(quote_array_item("null".into()), "\"null\"");
        assert_eq!(quote_array_item("a b,\"c\"".into()), "\"a b,\\\"c\\\"\"");
    }
}
