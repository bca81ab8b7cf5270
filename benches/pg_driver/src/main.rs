//! PostgreSQL driver comparison (issue 4: "sqlx or tokio-postgres: measure and choose").
//!
//! ```text
//! pg_driver tokio-postgres URL QUERY    prepare + `query_raw` (binary rows), as ferry does
//! pg_driver sqlx           URL QUERY    `sqlx::query(QUERY).fetch(&mut conn)` (binary rows)
//! ```
//!
//! Both contenders do the same work around the driver: one connection, `BEGIN TRANSACTION
//! READ ONLY`, the query streamed row by row, each value taken as its raw binary form and
//! decoded by the same function into the same owned value types ferry's `Value` holds
//! (`i64`, `f64`, `bool`, exact decimal text, `String`, chrono dates, date-times and
//! instants), rows collected into chunks of `CHUNK_ROWS` and dropped (ferry hands them to a
//! writer). Nothing is written. The decoding covers the types of the benchmark table
//! (`benches/db_export_gen_pg.sql`); any other type fails the run.
//!
//! Prints one JSON object: the contender, rows, a checksum over every decoded value (the
//! script checks that both contenders saw the same data), wall seconds, user and system
//! CPU seconds (getrusage of the whole process: every thread) and the peak RSS (`VmHWM`).

use std::time::Instant;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use futures_util::{StreamExt, TryStreamExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Rows per chunk, as ferry's default `chunk_rows` in the benchmark project.
const CHUNK_ROWS: usize = 10_000;

/// The owned value kinds ferry's sources produce (the subset the benchmark table needs).
#[derive(Debug)]
enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Decimal(String),
    Text(String),
    Date(NaiveDate),
    DateTime(NaiveDateTime),
    DateTimeTz(DateTime<FixedOffset>),
}

/// How a column's binary values are read, chosen once per column from its type OID.
#[derive(Debug, Clone, Copy)]
enum Col {
    Bool,
    Int2,
    Int4,
    Int8,
    Float8,
    Numeric,
    Text,
    Date,
    Timestamp,
    TimestampTz,
}

impl Col {
    /// The built-in type OIDs (stable across servers: `pg_type.dat`).
    fn for_oid(oid: u32) -> Result<Col, BoxError> {
        Ok(match oid {
            16 => Col::Bool,
            21 => Col::Int2,
            23 => Col::Int4,
            20 => Col::Int8,
            701 => Col::Float8,
            1700 => Col::Numeric,
            25 | 1043 | 1042 => Col::Text,
            1082 => Col::Date,
            1114 => Col::Timestamp,
            1184 => Col::TimestampTz,
            other => return Err(format!("type OID {other} is not in the benchmark table").into()),
        })
    }
}

/// Microseconds (or days) in PostgreSQL's binary date-times count from 2000-01-01.
fn y2k() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .expect("2000-01-01")
}

fn be8(b: &[u8]) -> Result<[u8; 8], BoxError> {
    Ok(b.try_into()?)
}

fn be4(b: &[u8]) -> Result<[u8; 4], BoxError> {
    Ok(b.try_into()?)
}

/// Binary `numeric` (base-10000 groups) as its exact decimal text with the value's scale.
/// All groups from the first integer group down to the last fraction group are expanded
/// into decimal digits, then the point is placed.
fn numeric_text(b: &[u8]) -> Result<String, BoxError> {
    let word = |i: usize| -> Result<u16, BoxError> {
        let w = b.get(2 * i..2 * i + 2).ok_or("numeric too short")?;
        Ok(u16::from_be_bytes([w[0], w[1]]))
    };
    let (count, weight, sign, scale) =
        (word(0)? as i64, word(1)? as i16 as i64, word(2)?, word(3)?);
    if sign == 0xC000 || sign >= 0xD000 {
        return Err("numeric NaN/Infinity is not in the benchmark table".into());
    }
    // Group k (0-based in the message) is worth 10000^(weight - k). Expand the groups for
    // exponents max(weight, 0) down to -ceil(scale / 4).
    let top = weight.max(0);
    let bottom = -((i64::from(scale) + 3) / 4);
    let mut digits = String::with_capacity(4 * (top - bottom + 1) as usize);
    for exp in (bottom..=top).rev() {
        let k = weight - exp;
        let g = if (0..count).contains(&k) {
            word(4 + k as usize)?
        } else {
            0
        };
        digits.push_str(&format!("{g:04}"));
    }
    // The integer part is the first 4 * (top + 1) digits, without leading zeros.
    let (int, frac) = digits.split_at(4 * (top as usize + 1));
    let int = match int.trim_start_matches('0') {
        "" => "0",
        s => s,
    };
    let frac = &frac[..usize::from(scale)];
    let negative = sign == 0x4000 && digits.bytes().any(|d| d != b'0');
    let mut out = String::with_capacity(int.len() + frac.len() + 2);
    if negative {
        out.push('-');
    }
    out.push_str(int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Ok(out)
}

/// Decodes one binary value (`None`: SQL NULL).
fn decode(col: Col, raw: Option<&[u8]>) -> Result<Value, BoxError> {
    let Some(b) = raw else {
        return Ok(Value::Null);
    };
    Ok(match col {
        Col::Bool => Value::Bool(b.first().ok_or("empty bool")? != &0),
        Col::Int2 => Value::Int(i16::from_be_bytes(b.try_into()?).into()),
        Col::Int4 => Value::Int(i32::from_be_bytes(be4(b)?).into()),
        Col::Int8 => Value::Int(i64::from_be_bytes(be8(b)?)),
        Col::Float8 => Value::Float(f64::from_be_bytes(be8(b)?)),
        Col::Numeric => Value::Decimal(numeric_text(b)?),
        Col::Text => Value::Text(String::from_utf8(b.to_vec())?),
        Col::Date => {
            let days = i32::from_be_bytes(be4(b)?);
            Value::Date(y2k().date() + TimeDelta::days(days.into()))
        }
        Col::Timestamp => {
            Value::DateTime(y2k() + TimeDelta::microseconds(i64::from_be_bytes(be8(b)?)))
        }
        Col::TimestampTz => {
            let t = y2k() + TimeDelta::microseconds(i64::from_be_bytes(be8(b)?));
            Value::DateTimeTz(t.and_utc().fixed_offset())
        }
    })
}

/// Row count and a checksum over every decoded value; chunks are built and dropped.
#[derive(Default)]
struct Sink {
    rows: u64,
    checksum: u64,
    chunk: Vec<Vec<Value>>,
}

impl Sink {
    fn push(&mut self, row: Vec<Value>) {
        for v in &row {
            let x = match v {
                Value::Null => 1,
                Value::Bool(b) => u64::from(*b) + 2,
                Value::Int(i) => *i as u64,
                Value::Float(f) => f.to_bits(),
                Value::Decimal(s) | Value::Text(s) => {
                    s.len() as u64 ^ s.bytes().map(u64::from).sum::<u64>() << 20
                }
                Value::Date(d) => d.to_epoch_days() as u64,
                Value::DateTime(t) => t.and_utc().timestamp_micros() as u64,
                Value::DateTimeTz(t) => t.with_timezone(&Utc).timestamp_micros() as u64,
            };
            self.checksum = self.checksum.rotate_left(5) ^ x;
        }
        self.rows += 1;
        self.chunk.push(row);
        if self.chunk.len() == CHUNK_ROWS {
            self.chunk = Vec::with_capacity(CHUNK_ROWS);
        }
    }
}

async fn with_tokio_postgres(url: &str, sql: &str) -> Result<Sink, BoxError> {
    use tokio_postgres::types::{FromSql, ToSql, Type};

    /// A value's raw binary form, whatever its type (what ferry's source reads).
    struct Raw<'a>(Option<&'a [u8]>);
    impl<'a> FromSql<'a> for Raw<'a> {
        fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
            Ok(Raw(Some(raw)))
        }
        fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
            Ok(Raw(None))
        }
        fn accepts(_: &Type) -> bool {
            true
        }
    }

    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute("BEGIN TRANSACTION READ ONLY").await?;
    let stmt = client.prepare(sql).await?;
    let cols: Vec<Col> = stmt
        .columns()
        .iter()
        .map(|c| Col::for_oid(c.type_().oid()))
        .collect::<Result<_, _>>()?;
    let no_params: [&(dyn ToSql + Sync); 0] = [];
    let rows = client.query_raw(&stmt, no_params).await?;
    futures_util::pin_mut!(rows);
    let mut sink = Sink::default();
    while let Some(row) = rows.try_next().await? {
        let mut values = Vec::with_capacity(cols.len());
        for (i, col) in cols.iter().enumerate() {
            values.push(decode(*col, row.try_get::<_, Raw>(i)?.0)?);
        }
        sink.push(values);
    }
    client.batch_execute("COMMIT").await?;
    Ok(sink)
}

async fn with_sqlx(url: &str, sql: &str) -> Result<Sink, BoxError> {
    use sqlx::{Column, Connection, Row, TypeInfo, ValueRef};

    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql("BEGIN TRANSACTION READ ONLY")
        .execute(&mut conn)
        .await?;
    let mut sink = Sink::default();
    {
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch(&mut conn);
        let mut cols: Option<Vec<Col>> = None;
        while let Some(row) = rows.next().await {
            let row = row?;
            let cols = match &cols {
                Some(c) => c,
                None => cols.insert(
                    row.columns()
                        .iter()
                        .map(|c| {
                            let t = c.type_info();
                            let oid = t.oid().ok_or_else(|| format!("no OID for {}", t.name()))?;
                            Col::for_oid(oid.0)
                        })
                        .collect::<Result<_, BoxError>>()?,
                ),
            };
            let mut values = Vec::with_capacity(cols.len());
            for (i, col) in cols.iter().enumerate() {
                let v = row.try_get_raw(i)?;
                let raw = if v.is_null() {
                    None
                } else {
                    Some(v.as_bytes()?)
                };
                values.push(decode(*col, raw)?);
            }
            sink.push(values);
        }
    }
    sqlx::raw_sql("COMMIT").execute(&mut conn).await?;
    conn.close().await?;
    Ok(sink)
}

/// User and system CPU seconds of this process (all threads).
fn cpu_secs() -> (f64, f64) {
    // SAFETY: a zeroed `rusage` is valid; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

/// Peak resident set size in KiB (`VmHWM` in /proc/self/status).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let [_, contender, url, sql] = args.as_slice() else {
        eprintln!("usage: pg_driver tokio-postgres|sqlx URL QUERY");
        std::process::exit(2);
    };
    // ferry runs its sources on tokio's multi-thread runtime (one worker per core).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let sink = rt.block_on(async {
        match contender.as_str() {
            "tokio-postgres" => with_tokio_postgres(url, sql).await,
            "sqlx" => with_sqlx(url, sql).await,
            other => Err(format!("unknown contender `{other}`").into()),
        }
    })?;
    let wall = started.elapsed().as_secs_f64();
    let (user, sys) = cpu_secs();
    println!(
        "{{\"contender\":\"{contender}\",\"rows\":{},\"checksum\":\"{:016x}\",\"wall\":{wall:.3},\"user\":{user:.3},\"sys\":{sys:.3},\"peak_rss_kib\":{}}}",
        sink.rows,
        sink.checksum,
        peak_rss_kib()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::numeric_text;

    /// A binary numeric: header words (ndigits, weight, sign, dscale), then the groups.
    fn num(weight: i16, sign: u16, scale: u16, groups: &[u16]) -> Vec<u8> {
        let words = [groups.len() as u16, weight as u16, sign, scale];
        words
            .iter()
            .chain(groups)
            .flat_map(|w| w.to_be_bytes())
            .collect()
    }

    #[test]
    fn numerics_read_as_postgres_prints_them() {
        let cases: [(Vec<u8>, &str); 6] = [
            (num(0, 0, 2, &[1234, 5000]), "1234.50"),
            (num(-1, 0x4000, 4, &[1]), "-0.0001"),
            (num(0, 0, 2, &[]), "0.00"),
            (num(1, 0, 0, &[1]), "10000"),
            (num(0, 0x4000, 0, &[]), "0"),
            (
                num(4, 0, 10, &[1234, 5678, 9012, 3456, 7890, 1234, 5678, 9000]),
                "12345678901234567890.1234567890",
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(numeric_text(&bytes).unwrap(), want);
        }
    }
}
