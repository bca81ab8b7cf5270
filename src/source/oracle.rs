//! Oracle source (the `oracle` crate over ODPI-C), compiled only with the `oracle` cargo
//! feature. One fresh session per query.
//!
//! The crate builds without any Oracle software (ODPI-C is compiled in) and loads Oracle's
//! client library (`libclntsh.so`, from Oracle Instant Client) when the first connection
//! is made. Without it every connection fails with DPI-1047, which ferry turns into a
//! message that says what to install ([`CLIENT_MISSING`]).
//!
//! The driver is synchronous, so every call to it runs on tokio's blocking pool. Each
//! query:
//! 1. waits for one of the datasource's `max_connections` slots (shared by every run in
//!    this process), then connects within the datasource's `connect_timeout` (in the
//!    connect descriptor, [`connect_descriptor`], and bounded by ferry's own timer too);
//! 2. sets the connection's call timeout to the task's timeout plus
//!    [`STATEMENT_TIMEOUT_MARGIN`] (Oracle has no per-statement timeout setting; the call
//!    timeout bounds each round trip to the server) and runs `SET TRANSACTION READ ONLY`,
//!    so the server refuses writes (ORA-01456);
//! 3. prepares the SQL as it is — ferry's `:name` placeholders are Oracle's own bind
//!    syntax — and binds each placeholder Oracle found by name, typed ([`bind_type`]):
//!    dates and date-times as `DATE`, the scheduled instant as `TIMESTAMP WITH TIME ZONE`,
//!    numbers as `NUMBER`, text as `VARCHAR2`, booleans as 1/0;
//! 4. fetches rows in arrays and hands them to the shared [`pump`] ([`OracleReader`],
//!    [`Pump::run_blocking`]): the fetching thread waits while the writer is behind, so
//!    memory stays flat;
//! 5. when the run is cancelled (timeout, shutdown, `replace`) or the stream stops early,
//!    calls `Connection::break_execution` from another thread ([`OracleBreak`]), which stops
//!    the statement on the server; the stream then ends with ORA-01013.
//!
//! Errors are classified by their ORA-/DPI- code ([`oracle_kind`]): ORA-01017 and the
//! locked/expired account codes are `Auth`, the TNS codes `Connect`, ORA-01013 `Cancelled`,
//! DPI-1067/ORA-03156 (the call timeout) `Timeout`, a missing client library `Config`.
//!
//! The session is rolled back and closed after each query, so no session state carries
//! over. Values are decoded by column type ([`Decoder`], see `docs/types.md`): exact
//! NUMBER text, 64-bit integers, DATE and TIMESTAMP as date-times, TIMESTAMP WITH (LOCAL)
//! TIME ZONE as instants with their offset. A type ferry does not know is read as the
//! driver's text for it, with a warning on the run.
//!
//! Not tested against a live Oracle database here (none is available to the project's
//! CI): the type mapping, the binds, the URL and the error messages are unit-tested, and
//! the missing-client error is tested end to end.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{FixedOffset, NaiveDate, NaiveDateTime, TimeZone};
use oracle::sql_type::{IntervalDS, IntervalYM, OracleType, Timestamp, ToSql};
use oracle::{Connection, Connector, SqlValue};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::pump::{self, BlockingReader, Pump, ServerCancel};
use super::{
    Access, Chunker, CostEstimate, ErrorKind, PlanRequest, QueryRequest, QueryStream, Source,
    SourceError, SourceInfo, error_chain,
};
use crate::config::{OracleDatasource, format_duration};
use crate::params::{ParamValue, RunParams};
use crate::value::{Column, Kind, Value};

mod access;

/// How much longer than the task's timeout the call timeout is (the same policy as the
/// other servers' statement timeouts).
pub const STATEMENT_TIMEOUT_MARGIN: Duration = pump::STATEMENT_TIMEOUT_MARGIN;

/// Most rows fetched in one round trip.
const FETCH_ARRAY_SIZE: usize = 1000;

/// The call timeout of `ferry sources test` and of health checks.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// What to do when Oracle's client library cannot be loaded (DPI-1047, DPI-1072).
pub const CLIENT_MISSING: &str = "this ferry was built with Oracle support, which needs Oracle's client library at run time: install Oracle Instant Client Basic or Basic Light, 64-bit, version 19 or later (11.2 is the oldest that works), and the libaio package (libaio1 or libaio1t64 on Debian and Ubuntu); then let ferry find libclntsh.so: add the Instant Client folder (e.g. /opt/oracle/instantclient_23_7) to LD_LIBRARY_PATH for ferry, or write that folder into /etc/ld.so.conf.d/oracle-instantclient.conf and run ldconfig";

/// An Oracle datasource.
pub struct OracleSource {
    name: String,
    spec: OracleDatasource,
    slots: Arc<Semaphore>,
}

/// A connection and the slot it holds; dropping it closes the session.
struct Session {
    conn: Arc<Connection>,
    _permit: OwnedSemaphorePermit,
}

impl OracleSource {
    /// Prepares the source; nothing connects until a query runs.
    pub fn new(name: &str, spec: &OracleDatasource) -> OracleSource {
        OracleSource {
            name: name.to_string(),
            slots: super::connection_slots(name, spec.max_connections),
            spec: spec.clone(),
        }
    }

    fn fail(&self, kind: ErrorKind, msg: impl Into<String>) -> SourceError {
        SourceError::new(&self.name, kind, msg)
    }

    /// Opens a session after taking a connection slot. The slot stays taken until the
    /// session is closed, even when ferry stopped waiting for a slow connect.
    async fn connect(&self) -> Result<Session, SourceError> {
        let permit = super::take_slot(&self.name, &self.slots).await?;
        let descriptor = connect_descriptor(
            &self.spec.host,
            self.spec.port,
            &self.spec.service,
            self.spec.connect_timeout,
        );
        let mut connector = Connector::new(
            self.spec.user.as_str(),
            self.spec.password.expose(),
            descriptor.as_str(),
        );
        connector
            .driver_name(concat!("ferry : ", env!("CARGO_PKG_VERSION")))
            .stmt_cache_size(0);
        let job = tokio::task::spawn_blocking(move || {
            connector.connect().map(|conn| Session {
                conn: Arc::new(conn),
                _permit: permit,
            })
        });
        let limit = self.spec.connect_timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, job).await {
            Ok(Ok(Ok(session))) => Ok(session),
            Ok(Ok(Err(e))) => {
                let f = Failure::of(&e);
                let kind = match oracle_kind(&f) {
                    k @ (ErrorKind::Auth | ErrorKind::Config) => k,
                    _ => ErrorKind::Connect,
                };
                let msg = connect_message(
                    &f,
                    &self.spec.user,
                    &self.spec.host,
                    self.spec.port,
                    &self.spec.service,
                    &self.spec.shown_url,
                );
                Err(self.fail(kind, msg).caused_by(e))
            }
            Ok(Err(e)) => Err(self.fail(
                ErrorKind::Connect,
                format!(
                    "cannot connect to {}: the connecting thread failed: {e}",
                    self.spec.shown_url
                ),
            )),
            Err(_) => Err(self.fail(
                ErrorKind::Connect,
                format!(
                    "cannot connect to {}: no answer within {} (connect_timeout)",
                    self.spec.shown_url,
                    format_duration(self.spec.connect_timeout)
                ),
            )),
        }
    }

    /// Runs `work` with the session on the blocking pool; driver errors become messages.
    async fn blocking<T: Send + 'static>(
        &self,
        session: Session,
        work: impl FnOnce(&Connection) -> Result<T, oracle::Error> + Send + 'static,
    ) -> Result<T, SourceError> {
        let job = tokio::task::spawn_blocking(move || {
            let r = work(&session.conn);
            let _ = session.conn.rollback();
            drop(session);
            r
        });
        match job.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(oracle_error(&self.name, e)),
            Err(e) => Err(self.fail(ErrorKind::Query, format!("the Oracle call failed: {e}"))),
        }
    }
}

/// The SQL as Oracle takes it: without the trailing `;` that SQL*Plus users write (Oracle
/// refuses it with ORA-00911/ORA-00933).
fn statement_text(sql: &str) -> &str {
    let t = sql.trim_end();
    t.strip_suffix(';').unwrap_or(t).trim_end()
}

/// A connect descriptor for the listener at `host:port` and `service`, with the connect
/// timeout (whole seconds, at least 1) in it: what an Easy Connect string
/// `host:port/service` names, plus the timeouts, which Easy Connect only takes from
/// Oracle Client 19 on.
pub fn connect_descriptor(host: &str, port: u16, service: &str, timeout: Duration) -> String {
    let secs = timeout.as_secs_f64().ceil().max(1.0) as u64;
    format!(
        "(DESCRIPTION=(CONNECT_TIMEOUT={secs})(TRANSPORT_CONNECT_TIMEOUT={secs})(RETRY_COUNT=0)\
         (ADDRESS=(PROTOCOL=TCP)(HOST={host})(PORT={port}))(CONNECT_DATA=(SERVICE_NAME={service})))"
    )
}

/// An error from the driver: Oracle's (`ORA-`) or ODPI-C's (`DPI-`) code and the text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    ora: Option<i32>,
    dpi: Option<i32>,
    text: String,
}

impl Failure {
    fn of(e: &oracle::Error) -> Failure {
        let text = match e.db_error() {
            Some(db) => db.message().trim_end().to_string(),
            None => error_chain(e),
        };
        Failure {
            ora: e.oci_code(),
            dpi: e.dpi_code(),
            text: strip_help_link(&text),
        }
    }

    /// The client library is missing, too old, or cannot be loaded.
    fn client_missing(&self) -> bool {
        matches!(self.dpi, Some(1047 | 1072))
    }
}

/// ODPI-C's "… See URL for help" tail: ferry says what to do itself.
fn strip_help_link(text: &str) -> String {
    match text.rfind(". See ") {
        Some(i) if text.ends_with(" for help") => text[..i].to_string(),
        _ => text.to_string(),
    }
}

/// The message for a failed connect. Never contains the password (Oracle's messages do
/// not repeat it, and the URL is shown redacted).
fn connect_message(
    f: &Failure,
    user: &str,
    host: &str,
    port: u16,
    service: &str,
    shown_url: &str,
) -> String {
    let t = &f.text;
    if f.client_missing() {
        return format!("cannot load Oracle's client library ({t}): {CLIENT_MISSING}");
    }
    match f.ora {
        Some(1017) => format!(
            "authentication failed for user `{user}` at {shown_url} ({t}): check the user and password in the url"
        ),
        Some(28000) => format!(
            "the account `{user}` is locked ({t}): ask the DBA to unlock it (ALTER USER {user} ACCOUNT UNLOCK)"
        ),
        Some(28001) => format!(
            "the password of `{user}` has expired ({t}): set a new one and put it in the url"
        ),
        Some(12541) => format!(
            "no Oracle listener at {host}:{port} ({t}): check the host and port in the url, and that the listener runs (`lsnrctl status` on the server)"
        ),
        Some(12514) => format!(
            "the listener at {host}:{port} does not know the service `{service}` ({t}): check the service name in the url (`lsnrctl services` on the server lists them)"
        ),
        Some(12505) => format!(
            "the listener at {host}:{port} does not know `{service}` ({t}): the url needs a service name, not a SID (`lsnrctl services` lists them)"
        ),
        Some(12545 | 12154 | 12543 | 12560) => format!(
            "cannot reach {host}:{port} ({t}): check the host name or address in the url, and the network"
        ),
        Some(12170 | 12535) => format!(
            "no answer from {host}:{port} within the connect timeout ({t}): check the host, port and firewall, or raise connect_timeout"
        ),
        _ => format!("cannot connect to {shown_url}: {t}"),
    }
}

/// What kind of failure a driver error is, from its ORA-/DPI- code.
fn oracle_kind(f: &Failure) -> ErrorKind {
    if f.client_missing() {
        return ErrorKind::Config;
    }
    if f.dpi == Some(1067) || f.ora == Some(3156) {
        return ErrorKind::Timeout;
    }
    match f.ora {
        Some(1013) => ErrorKind::Cancelled,
        Some(1017 | 1045 | 28000 | 28001 | 28040) => ErrorKind::Auth,
        Some(
            12541 | 12514 | 12505 | 12545 | 12154 | 12543 | 12560 | 12170 | 12535 | 12537 | 3113
            | 3114 | 3135,
        ) => ErrorKind::Connect,
        _ => ErrorKind::Query,
    }
}

/// A driver error after connecting as a [`SourceError`] of datasource `name`.
fn oracle_error(name: &str, e: oracle::Error) -> SourceError {
    let f = Failure::of(&e);
    SourceError::new(name, oracle_kind(&f), run_message(&f)).caused_by(e)
}

/// The message for a failure after connecting, with what the code means for ferry.
fn run_message(f: &Failure) -> String {
    let t = &f.text;
    if f.client_missing() {
        return format!("cannot load Oracle's client library ({t}): {CLIENT_MISSING}");
    }
    if f.dpi == Some(1067) || f.ora == Some(3156) {
        return format!("{t} (the task's timeout, applied as the Oracle call timeout)");
    }
    match f.ora {
        Some(1013) => format!("{t} (the run was stopped; ferry cancelled the statement)"),
        Some(1456) => format!("{t} (ferry runs every query in a read-only transaction)"),
        _ if t.contains("unsupported Oracle type") || t.contains("unknown Oracle type") => {
            format!(
                "the query returns a column whose type ferry's Oracle driver cannot fetch ({t}); convert it in the query: JSON_SERIALIZE(col RETURNING CLOB) for JSON, FROM_VECTOR(col) for VECTOR, TO_CHAR(col) or CAST(col AS VARCHAR2(4000)) otherwise"
            )
        }
        _ => t.clone(),
    }
}

/// The Oracle type a parameter is bound as. Date-times go as `DATE` (whole seconds, as
/// ferry computes them) so that a `DATE` column compares without a conversion that would
/// keep Oracle from using its index; the instant goes as `TIMESTAMP WITH TIME ZONE`.
fn bind_type(v: &ParamValue) -> OracleType {
    use chrono::Timelike;
    match v {
        ParamValue::Bool(_) | ParamValue::Int(_) | ParamValue::Float(_) => OracleType::Number(0, 0),
        ParamValue::Text(s) => OracleType::Varchar2(s.len().max(1) as u32),
        ParamValue::Date(_) => OracleType::Date,
        ParamValue::DateTime(t) if t.nanosecond() == 0 => OracleType::Date,
        ParamValue::DateTime(_) => OracleType::Timestamp(9),
        ParamValue::Instant(_) => OracleType::TimestampTZ(9),
    }
}

/// A date-time as the driver's timestamp (with a zero UTC offset when `utc`).
fn timestamp_of(t: NaiveDateTime, utc: bool) -> Result<Timestamp, oracle::Error> {
    use chrono::{Datelike, Timelike};
    let ts = Timestamp::new(
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond().min(999_999_999),
    )?;
    if utc { ts.and_tz_offset(0) } else { Ok(ts) }
}

/// A parameter bound with the type [`bind_type`] chose.
struct Bind<'a>(&'a ParamValue);

impl ToSql for Bind<'_> {
    fn oratype(&self, _conn: &Connection) -> oracle::Result<OracleType> {
        Ok(bind_type(self.0))
    }

    fn to_sql(&self, val: &mut SqlValue) -> oracle::Result<()> {
        match self.0 {
            ParamValue::Bool(b) => val.set(&i64::from(*b)),
            ParamValue::Int(i) => val.set(i),
            ParamValue::Float(f) => val.set(f),
            ParamValue::Text(s) => val.set(&s.as_str()),
            ParamValue::Date(d) => {
                val.set(&timestamp_of(d.and_time(chrono::NaiveTime::MIN), false)?)
            }
            ParamValue::DateTime(t) => val.set(&timestamp_of(*t, false)?),
            ParamValue::Instant(t) => val.set(&timestamp_of(t.naive_utc(), true)?),
        }
    }
}

/// Binds every placeholder Oracle found in the statement by name (Oracle reports them in
/// upper case; ferry's names match case-insensitively).
fn bind_all(stmt: &mut oracle::Statement, params: &RunParams) -> Result<(), BindError> {
    let names: Vec<String> = stmt.bind_names().iter().map(|n| n.to_string()).collect();
    for name in names {
        let value = params
            .values
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&name))
            .map(|(_, v)| v)
            .ok_or_else(|| BindError::Missing(name.to_ascii_lowercase()))?;
        stmt.bind(name.as_str(), &Bind(value))
            .map_err(BindError::Driver)?;
    }
    Ok(())
}

enum BindError {
    Missing(String),
    Driver(oracle::Error),
}

impl BindError {
    fn message(&self) -> String {
        match self {
            BindError::Missing(n) => format!("no value for parameter `:{n}`"),
            BindError::Driver(e) => run_message(&Failure::of(e)),
        }
    }
}

/// How one column's values become [`Value`]s.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Decoder {
    /// NUMBER(p) with p ≤ 18 (and NUMBER(p,s) with s < 0 and p − s ≤ 18): fits an i64.
    Int,
    /// Any other NUMBER and FLOAT(p): the exact decimal text, its fraction padded to
    /// `scale` digits (`NUMBER(10,2)` 12.5 → `12.50`).
    Decimal {
        scale: u8,
    },
    BinaryFloat,
    BinaryDouble,
    /// DATE: a date and a time of day to the second.
    Date,
    Timestamp,
    /// TIMESTAMP WITH TIME ZONE and WITH LOCAL TIME ZONE: an instant with its offset.
    Instant,
    IntervalDs {
        lead: u8,
        frac: u8,
    },
    IntervalYm {
        lead: u8,
    },
    Text,
    Bytes,
    Bool,
    /// A type ferry does not know: the driver's text for it (with a warning).
    Fallback,
}

impl Decoder {
    fn for_type(t: &OracleType) -> Decoder {
        match *t {
            // Unconstrained NUMBER (and expressions) describe as precision 0, scale -127.
            OracleType::Number(p, s) if p > 0 && s <= 0 && i32::from(p) - i32::from(s) <= 18 => {
                Decoder::Int
            }
            OracleType::Number(_, s) => Decoder::Decimal {
                scale: u8::try_from(s).unwrap_or(0),
            },
            OracleType::Float(_) => Decoder::Decimal { scale: 0 },
            OracleType::Int64 | OracleType::UInt64 => Decoder::Int,
            OracleType::BinaryFloat => Decoder::BinaryFloat,
            OracleType::BinaryDouble => Decoder::BinaryDouble,
            OracleType::Date => Decoder::Date,
            OracleType::Timestamp(_) => Decoder::Timestamp,
            OracleType::TimestampTZ(_) | OracleType::TimestampLTZ(_) => Decoder::Instant,
            OracleType::IntervalDS(lead, frac) => Decoder::IntervalDs { lead, frac },
            OracleType::IntervalYM(lead) => Decoder::IntervalYm { lead },
            OracleType::Varchar2(_)
            | OracleType::NVarchar2(_)
            | OracleType::Char(_)
            | OracleType::NChar(_)
            | OracleType::Rowid
            | OracleType::CLOB
            | OracleType::NCLOB
            | OracleType::Long
            | OracleType::Xml
            | OracleType::Json => Decoder::Text,
            // A BFILE is read like a BLOB: the content of the file it points to.
            OracleType::Raw(_) | OracleType::LongRaw | OracleType::BLOB | OracleType::BFILE => {
                Decoder::Bytes
            }
            OracleType::Boolean => Decoder::Bool,
            // REF CURSOR, object and collection types.
            _ => Decoder::Fallback,
        }
    }

    fn kind(self) -> Kind {
        match self {
            Decoder::Int => Kind::Int,
            Decoder::Decimal { .. } => Kind::Decimal,
            Decoder::BinaryFloat | Decoder::BinaryDouble => Kind::Float,
            Decoder::Date | Decoder::Timestamp => Kind::DateTime,
            Decoder::Instant => Kind::DateTimeTz,
            Decoder::IntervalDs { .. } | Decoder::IntervalYm { .. } | Decoder::Text => Kind::Text,
            Decoder::Bytes => Kind::Bytes,
            Decoder::Bool => Kind::Bool,
            Decoder::Fallback => Kind::Unknown,
        }
    }

    /// Reads one value from the driver (`None` for NULL).
    fn fetch(self, v: &SqlValue) -> Result<Option<Fetched>, oracle::Error> {
        if v.is_null()? {
            return Ok(None);
        }
        Ok(Some(match self {
            Decoder::Int => match v.get::<i64>() {
                Ok(i) => Fetched::Int(i),
                Err(_) => Fetched::Text(v.get::<String>()?),
            },
            Decoder::BinaryFloat => Fetched::F32(v.get::<f32>()?),
            Decoder::BinaryDouble => Fetched::F64(v.get::<f64>()?),
            Decoder::Date | Decoder::Timestamp | Decoder::Instant => {
                Fetched::Timestamp(v.get::<Timestamp>()?)
            }
            Decoder::IntervalDs { .. } => Fetched::IntervalDs(v.get::<IntervalDS>()?),
            Decoder::IntervalYm { .. } => Fetched::IntervalYm(v.get::<IntervalYM>()?),
            Decoder::Bytes => Fetched::Bytes(v.get::<Vec<u8>>()?),
            Decoder::Bool => Fetched::Bool(v.get::<bool>()?),
            Decoder::Decimal { .. } | Decoder::Text | Decoder::Fallback => {
                Fetched::Text(v.get::<String>()?)
            }
        }))
    }

    /// Turns a fetched value into ferry's value.
    fn decode(self, f: Fetched) -> Result<Value, String> {
        Ok(match (self, f) {
            (_, Fetched::Int(i)) => Value::Int(i),
            (Decoder::Int, Fetched::Text(t)) => {
                if let Ok(i) = t.parse::<i64>() {
                    Value::Int(i)
                } else if let Ok(u) = t.parse::<u64>() {
                    Value::UInt(u)
                } else if crate::value::is_decimal_text(&t) {
                    Value::Decimal(t)
                } else {
                    return Err(format!("`{t}` is not a number"));
                }
            }
            (Decoder::Decimal { scale }, Fetched::Text(t)) => {
                if !crate::value::is_decimal_text(&t) {
                    return Err(format!("`{t}` is not a decimal number"));
                }
                Value::Decimal(pad_fraction(t, scale))
            }
            (_, Fetched::F32(f)) => Value::Float(f32_to_f64(f)),
            (_, Fetched::F64(f)) => Value::Float(f),
            (Decoder::Instant, Fetched::Timestamp(ts)) => {
                let local = naive(&ts)?;
                let offset = FixedOffset::east_opt(ts.tz_offset())
                    .ok_or_else(|| format!("bad UTC offset {} s", ts.tz_offset()))?;
                match offset.from_local_datetime(&local).single() {
                    Some(t) => Value::DateTimeTz(t),
                    None => return Err(format!("{ts} has no single instant")),
                }
            }
            (_, Fetched::Timestamp(ts)) => Value::DateTime(naive(&ts)?),
            (Decoder::IntervalDs { lead, frac }, Fetched::IntervalDs(i)) => {
                Value::Text(i.and_prec(lead, frac).unwrap_or(i).to_string())
            }
            (_, Fetched::IntervalDs(i)) => Value::Text(i.to_string()),
            (Decoder::IntervalYm { lead }, Fetched::IntervalYm(i)) => {
                Value::Text(i.and_prec(lead).unwrap_or(i).to_string())
            }
            (_, Fetched::IntervalYm(i)) => Value::Text(i.to_string()),
            (_, Fetched::Bytes(b)) => Value::Bytes(b),
            (_, Fetched::Bool(b)) => Value::Bool(b),
            (_, Fetched::Text(t)) => Value::Text(t),
        })
    }
}

/// One non-NULL value as the driver gave it, before it becomes a [`Value`].
#[derive(Debug, Clone, PartialEq)]
enum Fetched {
    Int(i64),
    Text(String),
    F32(f32),
    F64(f64),
    Bytes(Vec<u8>),
    Bool(bool),
    Timestamp(Timestamp),
    IntervalDs(IntervalDS),
    IntervalYm(IntervalYM),
}

/// The wall-clock date and time of a driver timestamp (its offset left aside).
fn naive(ts: &Timestamp) -> Result<NaiveDateTime, String> {
    NaiveDate::from_ymd_opt(ts.year(), ts.month(), ts.day())
        .and_then(|d| d.and_hms_nano_opt(ts.hour(), ts.minute(), ts.second(), ts.nanosecond()))
        .ok_or_else(|| format!("{ts} is not a valid date and time"))
}

/// Pads the fraction of a decimal text with zeros to `scale` digits (Oracle sends
/// `12.5` for 12.50 in a `NUMBER(10,2)` column); never cuts digits.
fn pad_fraction(mut t: String, scale: u8) -> String {
    let scale = usize::from(scale);
    if scale == 0 {
        return t;
    }
    let have = t.split_once('.').map_or(0, |(_, f)| f.len());
    if have == 0 && !t.contains('.') {
        t.push('.');
    }
    for _ in have..scale {
        t.push('0');
    }
    t
}

/// A BINARY_FLOAT as the f64 whose shortest text is the f32's (`0.1`, not
/// `0.10000000149011612`).
fn f32_to_f64(f: f32) -> f64 {
    if f.is_finite() {
        f.to_string().parse().unwrap_or(f64::from(f))
    } else {
        f64::from(f)
    }
}

/// The warning for a column ferry reads as the driver's text.
fn fallback_warning(column: &str, db_type: &str) -> String {
    format!(
        "column `{column}` has Oracle type `{db_type}`, which ferry cannot read: its values are written as the driver's text for them; convert it in the query (TO_CHAR(...), JSON_SERIALIZE(...)) to choose"
    )
}

/// Columns, decoders and warnings of a result set.
fn describe_columns(info: &[oracle::ColumnInfo]) -> (Vec<Column>, Vec<Decoder>, Vec<String>) {
    let mut columns = Vec::with_capacity(info.len());
    let mut decoders = Vec::with_capacity(info.len());
    let mut warnings = Vec::new();
    for c in info {
        let dec = Decoder::for_type(c.oracle_type());
        let db_type = c.oracle_type().to_string();
        if dec == Decoder::Fallback {
            warnings.push(fallback_warning(c.name(), &db_type));
        }
        columns.push(Column {
            name: c.name().to_string(),
            db_type,
            kind: dec.kind(),
        });
        decoders.push(dec);
    }
    (columns, decoders, warnings)
}

/// The call timeout for a run: the task's timeout plus the margin, within what the driver
/// accepts (1 ms to 49 days).
fn call_timeout(timeout: Duration) -> Duration {
    pump::server_timeout(timeout).clamp(
        Duration::from_millis(1),
        Duration::from_secs(49 * 24 * 3600),
    )
}

/// Stops the connection's running call, if it is still open, from another thread.
struct OracleBreak(Weak<Connection>);

impl ServerCancel for OracleBreak {
    async fn cancel(&self) {
        if let Some(conn) = self.0.upgrade() {
            let _ = tokio::task::spawn_blocking(move || conn.break_execution()).await;
        }
    }
}

/// The rows of a running statement, for the pump.
struct OracleReader<'a> {
    name: String,
    rows: oracle::ResultSet<'a, oracle::Row>,
    decoders: Vec<Decoder>,
}

impl BlockingReader for OracleReader<'_> {
    fn read_row(&mut self, chunk: &mut Chunker) -> Result<bool, SourceError> {
        let row = match self.rows.next() {
            Some(Ok(r)) => r,
            Some(Err(e)) => return Err(oracle_error(&self.name, e)),
            None => return Ok(false),
        };
        for (i, (dec, v)) in self.decoders.iter().zip(row.sql_values()).enumerate() {
            let value = match dec.fetch(v) {
                Ok(None) => Ok(Value::Null),
                Ok(Some(f)) => dec.decode(f),
                Err(e) => Err(run_message(&Failure::of(&e))),
            };
            match value {
                Ok(v) => chunk.push(v),
                Err(e) => {
                    return Err(SourceError::new(
                        &self.name,
                        ErrorKind::Query,
                        format!("cannot read a value of column {}: {e}", i + 1),
                    ));
                }
            }
        }
        Ok(true)
    }
}

#[async_trait]
impl Source for OracleSource {
    async fn estimate_cost(
        &self,
        plan: PlanRequest<'_>,
    ) -> Result<Option<CostEstimate>, SourceError> {
        let session = self.connect().await?;
        let id = statement_id();
        let explain = format!(
            "EXPLAIN PLAN SET STATEMENT_ID = '{id}' FOR {}",
            statement_text(plan.sql)
        );
        let params = plan.params.clone();
        let limit = call_timeout(plan.timeout);
        let (cost, rows) = self
            .blocking(session, move |conn| {
                conn.set_call_timeout(Some(limit))?;
                // EXPLAIN PLAN writes the plan into PLAN_TABLE (so it cannot run in a
                // read-only transaction) without running the query; the plan rows are
                // rolled back after reading.
                let mut stmt = conn.statement(&explain).build()?;
                match bind_all(&mut stmt, &params) {
                    Ok(()) => {}
                    Err(BindError::Driver(e)) => return Err(e),
                    Err(BindError::Missing(n)) => {
                        return Err(oracle::Error::new(
                            oracle::ErrorKind::InvalidBindName,
                            format!("no value for parameter `:{n}`"),
                        ));
                    }
                }
                stmt.execute(&[])?;
                conn.query_row_as::<(Option<f64>, Option<f64>)>(
                    "SELECT cost, cardinality FROM plan_table WHERE statement_id = :1 AND id = 0",
                    &[&id],
                )
            })
            .await
            .map_err(|e| SourceError {
                message: format!(
                    "cannot estimate the query's cost (EXPLAIN PLAN): {}",
                    e.message
                ),
                ..e
            })?;
        let cost = cost.ok_or_else(|| {
            self.fail(
                ErrorKind::Query,
                "EXPLAIN PLAN gave no cost (is the optimizer in RULE mode?)",
            )
        })?;
        Ok(Some(CostEstimate {
            cost,
            unit: "Oracle optimizer cost units",
            rows,
        }))
    }

    async fn query(&self, request: QueryRequest<'_>) -> Result<QueryStream, SourceError> {
        let sql = statement_text(super::sql_text(&self.name, request.query)?).to_string();
        let session = self.connect().await?;
        let server = OracleBreak(Arc::downgrade(&session.conn));
        let (pump, opened) = Pump::arm(&self.name, request.chunk_rows, request.cancel, server);

        let name = self.name.clone();
        let params = request.params.clone();
        let timeout = request.timeout;
        let chunk_rows = request.chunk_rows.max(1);
        tokio::task::spawn_blocking(move || {
            let conn = &session.conn;
            let started = conn
                .set_call_timeout(Some(call_timeout(timeout)))
                .and_then(|_| conn.execute("SET TRANSACTION READ ONLY", &[]).map(|_| ()))
                .map_err(|e| oracle_error(&name, e))
                .and_then(|_| {
                    conn.statement(&sql)
                        .fetch_array_size(chunk_rows.min(FETCH_ARRAY_SIZE) as u32)
                        .build()
                        .map_err(|e| oracle_error(&name, e))
                })
                .and_then(|mut stmt| {
                    bind_all(&mut stmt, &params)
                        .map_err(|e| SourceError::new(&name, ErrorKind::Query, e.message()))?;
                    stmt.into_result_set::<oracle::Row>(&[])
                        .map_err(|e| oracle_error(&name, e))
                });
            match started {
                Err(e) => pump.fail(e),
                Ok(rows) => {
                    let (columns, decoders, warnings) = describe_columns(rows.column_info());
                    let mut reader = OracleReader {
                        name,
                        rows,
                        decoders,
                    };
                    pump.run_blocking(columns, warnings, &mut reader);
                    // Closing the cursor stops the statement.
                    drop(reader);
                }
            }
            // The session ends read-only and rolled back, and is closed with the last
            // reference.
            let _ = session.conn.rollback();
            drop(session);
        });
        opened.wait().await
    }

    async fn healthcheck(&self) -> Result<(), SourceError> {
        let session = self.connect().await?;
        self.blocking(session, |conn| {
            conn.set_call_timeout(Some(CHECK_TIMEOUT))?;
            conn.query_row_as::<i64>("SELECT 1 FROM dual", &[])
                .map(|_| ())
        })
        .await
    }

    async fn describe(&self) -> Result<SourceInfo, SourceError> {
        let start = Instant::now();
        let session = self.connect().await?;
        let connect_time = start.elapsed();
        let (server, client, access) = self
            .blocking(session, |conn| {
                conn.set_call_timeout(Some(CHECK_TIMEOUT))?;
                conn.execute("SET TRANSACTION READ ONLY", &[])?;
                let (server, _banner) = conn.server_version()?;
                let client = oracle::Version::client()?;
                Ok((server, client, access::read_access(conn)?))
            })
            .await?;
        Ok(SourceInfo {
            version: format!("Oracle Database {server} (client {client})"),
            connect_time,
            // Not reported: Oracle's native network encryption is the server's choice.
            encryption: None,
            access,
        })
    }

    async fn access(&self) -> Result<Access, SourceError> {
        let session = self.connect().await?;
        self.blocking(session, |conn| {
            conn.set_call_timeout(Some(CHECK_TIMEOUT))?;
            conn.execute("SET TRANSACTION READ ONLY", &[])?;
            access::read_access(conn)
        })
        .await
    }
}

/// A fresh `STATEMENT_ID` for EXPLAIN PLAN (at most 30 characters, no quotes).
fn statement_id() -> String {
    let hex = uuid::Uuid::now_v7().simple().to_string();
    format!("ferry_{}", &hex[hex.len() - 24..])
}

#[cfg(test)]
mod tests;
