//! Baselines and floors for `benches/db_export.sh` (PostgreSQL and MariaDB exports).
//!
//! A bare rust_xlsxwriter program in constant-memory mode that reads the benchmark table
//! from a server and writes the same cells ferry writes: bold frozen header (an instant
//! column's header names the zone, `paid_at (UTC)`), integers and exact decimals as
//! numbers (up to 15 digits), dates as numbers with `yyyy-mm-dd`, date-times and instants
//! (in UTC) with `yyyy-mm-dd hh:mm:ss`, booleans as booleans, text as strings, NULL as an
//! empty cell, `use_zip_large_file(true)`, default deflate level, a new sheet after
//! 1,048,575 data rows. One thread (a current-thread tokio runtime), no ferry code: only
//! crates from ferry's `[dependencies]`.
//!
//! ```text
//! db_xlsx_baseline pg    URL QUERY OUT.xlsx   tokio-postgres `query_raw` (binary rows)
//! db_xlsx_baseline mysql URL QUERY OUT.xlsx   mysql_async `exec_iter` (binary protocol)
//! db_xlsx_baseline pg-fetch    URL QUERY      read and decode every value, write nothing
//! db_xlsx_baseline mysql-fetch URL QUERY      the same for MySQL/MariaDB
//! db_xlsx_baseline pg-copy URL QUERY OUT.csv  `COPY (QUERY) TO STDOUT (FORMAT csv, HEADER)`
//!                                             through tokio-postgres into a file: what a
//!                                             COPY pass-through would cost in-process
//! ```
//!
//! Prints one JSON object on stdout: rows, `rows_secs` (fetch + cells), `save_secs`
//! (deflate + zip), `total_secs`, output bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use futures_util::{StreamExt, pin_mut};
use mysql_async::consts::ColumnType;
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, Value as MyValue};
use rust_xlsxwriter::{Format, Workbook, XlsxError};
use tokio_postgres::NoTls;
use tokio_postgres::types::{FromSql, ToSql, Type};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Data rows per sheet (Excel's 1,048,576 rows less the header), as in ferry.
const MAX_DATA_ROWS: u32 = 1_048_575;
/// Largest integer magnitude written as a number (15 digits), as in ferry.
const MAX_EXACT_INT: u64 = 999_999_999_999_999;

/// One decoded value, borrowing text from the driver's row.
enum Cell<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Exact decimal text.
    Decimal(&'a str),
    Text(&'a str),
    Date(NaiveDate),
    DateTime(NaiveDateTime),
    /// An instant, already in UTC (the task zone of the benchmark).
    Instant(NaiveDateTime),
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    Text,
    Date,
    Timestamp,
    TimestampTz,
}

fn excel_days(d: NaiveDate) -> f64 {
    let epoch = NaiveDate::from_ymd_opt(1899, 12, 30).expect("valid date");
    (d - epoch).num_days() as f64
}

fn excel_datetime(t: NaiveDateTime) -> f64 {
    let tm = t.time();
    let secs = f64::from(tm.num_seconds_from_midnight()) + f64::from(tm.nanosecond()) / 1e9;
    excel_days(t.date()) + secs / 86_400.0
}

fn significant_digits(d: &str) -> usize {
    let digits: String = d.chars().filter(|c| c.is_ascii_digit()).collect();
    let t = digits.trim_start_matches('0');
    let t = if d.contains('.') {
        t.trim_end_matches('0')
    } else {
        t
    };
    t.len()
}

struct Sheet {
    workbook: Workbook,
    header_fmt: Format,
    date_fmt: Format,
    datetime_fmt: Format,
    header: Vec<String>,
    sheets: usize,
    row: u32,
    rows: u64,
    buf: String,
}

impl Sheet {
    fn new(out: &Path, header: Vec<String>) -> Result<Sheet, XlsxError> {
        let mut workbook = Workbook::new();
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        workbook.set_tempdir(dir)?;
        workbook.use_zip_large_file(true);
        Ok(Sheet {
            workbook,
            header_fmt: Format::new().set_bold(),
            date_fmt: Format::new().set_num_format("yyyy-mm-dd"),
            datetime_fmt: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
            header,
            sheets: 0,
            row: 0,
            rows: 0,
            buf: String::new(),
        })
    }

    fn new_sheet(&mut self) -> Result<(), XlsxError> {
        self.sheets += 1;
        let name = if self.sheets == 1 {
            "data".to_string()
        } else {
            format!("data_{}", self.sheets)
        };
        let ws = self.workbook.add_worksheet_with_constant_memory()?;
        ws.set_name(name)?;
        for (i, h) in self.header.iter().enumerate() {
            ws.write_string_with_format(0, i as u16, h, &self.header_fmt)?;
            ws.set_column_width(i as u16, (h.chars().count() as f64 + 2.0).clamp(6.0, 60.0))?;
        }
        ws.set_freeze_panes(1, 0)?;
        self.row = 1;
        Ok(())
    }

    fn write(&mut self, cells: &[Cell]) -> Result<(), BoxError> {
        if self.sheets == 0 || self.row > MAX_DATA_ROWS {
            self.new_sheet()?;
        }
        let r = self.row;
        let ws = self.workbook.worksheet_from_index(self.sheets - 1)?;
        for (i, c) in cells.iter().enumerate() {
            let col = i as u16;
            match c {
                Cell::Null => {}
                Cell::Bool(b) => {
                    ws.write_boolean(r, col, *b)?;
                }
                Cell::Int(n) if n.unsigned_abs() <= MAX_EXACT_INT => {
                    ws.write_number(r, col, *n as f64)?;
                }
                Cell::Int(n) => {
                    self.buf.clear();
                    use std::fmt::Write as _;
                    let _ = write!(self.buf, "{n}");
                    ws.write_string(r, col, &self.buf)?;
                }
                Cell::Float(f) => {
                    ws.write_number(r, col, *f)?;
                }
                Cell::Decimal(d) => match d.parse::<f64>() {
                    Ok(f) if significant_digits(d) <= 15 && f.is_finite() => {
                        ws.write_number(r, col, f)?;
                    }
                    _ => {
                        ws.write_string(r, col, *d)?;
                    }
                },
                Cell::Text(s) => {
                    ws.write_string(r, col, *s)?;
                }
                Cell::Date(d) => {
                    ws.write_number_with_format(r, col, excel_days(*d), &self.date_fmt)?;
                }
                Cell::DateTime(t) | Cell::Instant(t) => {
                    ws.write_number_with_format(r, col, excel_datetime(*t), &self.datetime_fmt)?;
                }
            }
        }
        self.row += 1;
        self.rows += 1;
        Ok(())
    }

    /// Saves like ferry does: `save_to_writer` through a 1 MiB buffer (no fsync).
    fn save(mut self, out: &Path) -> Result<u64, BoxError> {
        if self.sheets == 0 {
            self.new_sheet()?;
        }
        let file = File::create(out)?;
        let mut buf = BufWriter::with_capacity(1 << 20, file);
        self.workbook.save_to_writer(&mut buf)?;
        drop(buf.into_inner().map_err(|e| e.into_error())?);
        Ok(self.rows)
    }
}

/// The raw binary form of any PostgreSQL value (`None` for NULL).
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

fn pg_kind(t: &Type) -> Result<Kind, BoxError> {
    Ok(match *t {
        Type::BOOL => Kind::Bool,
        Type::INT2 => Kind::Int2,
        Type::INT4 => Kind::Int4,
        Type::INT8 => Kind::Int8,
        Type::FLOAT4 => Kind::Float4,
        Type::FLOAT8 => Kind::Float8,
        Type::NUMERIC => Kind::Numeric,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => Kind::Text,
        Type::DATE => Kind::Date,
        Type::TIMESTAMP => Kind::Timestamp,
        Type::TIMESTAMPTZ => Kind::TimestampTz,
        _ => return Err(format!("type {t} is not used by the benchmark").into()),
    })
}

fn pg_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .expect("valid date")
        .and_time(NaiveTime::MIN)
}

fn be<const N: usize>(b: &[u8]) -> Result<[u8; N], BoxError> {
    Ok(b.try_into().map_err(|_| "bad value length")?)
}

/// PostgreSQL's binary numeric as its exact decimal text (finite values only).
fn pg_numeric(b: &[u8], out: &mut String) -> Result<(), BoxError> {
    use std::fmt::Write as _;
    let h = b.get(..8).ok_or("short numeric")?;
    let ndigits = u16::from_be_bytes([h[0], h[1]]) as usize;
    let weight = i16::from_be_bytes([h[2], h[3]]) as i32;
    let sign = u16::from_be_bytes([h[4], h[5]]);
    let dscale = u16::from_be_bytes([h[6], h[7]]) as usize;
    if sign != 0 && sign != 0x4000 {
        return Err("numeric NaN/Infinity is not used by the benchmark".into());
    }
    let body = b.get(8..8 + 2 * ndigits).ok_or("short numeric")?;
    let digit = |pos: i32| -> u16 {
        let i = weight - pos;
        if i < 0 || i as usize >= ndigits {
            0
        } else {
            let i = i as usize;
            u16::from_be_bytes([body[2 * i], body[2 * i + 1]])
        }
    };
    out.clear();
    if sign == 0x4000 && body.iter().any(|&x| x != 0) {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        let _ = write!(out, "{}", digit(weight));
        for pos in (0..weight).rev() {
            let _ = write!(out, "{:04}", digit(pos));
        }
    }
    if dscale > 0 {
        out.push('.');
        let start = out.len();
        let mut pos = -1;
        while out.len() - start < dscale {
            let _ = write!(out, "{:04}", digit(pos));
            pos -= 1;
        }
        out.truncate(start + dscale);
    }
    Ok(())
}

async fn pg_connect(url: &str) -> Result<tokio_postgres::Client, BoxError> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Streams QUERY with `query_raw` and hands each decoded row to `f` (after `begin` got the
/// header).
async fn pg_rows(
    url: &str,
    sql: &str,
    mut begin: impl FnMut(Vec<String>),
    mut f: impl FnMut(&[Cell]) -> Result<(), BoxError>,
) -> Result<u64, BoxError> {
    let client = pg_connect(url).await?;
    client.batch_execute("BEGIN TRANSACTION READ ONLY").await?;
    let stmt = client.prepare(sql).await?;
    let kinds: Vec<Kind> = stmt
        .columns()
        .iter()
        .map(|c| pg_kind(c.type_()))
        .collect::<Result<_, _>>()?;
    begin(
        stmt.columns()
            .iter()
            .zip(&kinds)
            .map(|(c, k)| {
                if *k == Kind::TimestampTz {
                    format!("{} (UTC)", c.name())
                } else {
                    c.name().to_string()
                }
            })
            .collect(),
    );
    let params: [&(dyn ToSql + Sync); 0] = [];
    let stream = client.query_raw(&stmt, params).await?;
    pin_mut!(stream);
    let mut decimals: Vec<String> = vec![String::new(); kinds.len()];
    let mut n = 0u64;
    let epoch = pg_epoch();
    while let Some(row) = stream.next().await {
        let row = row?;
        for (i, k) in kinds.iter().enumerate() {
            if *k == Kind::Numeric
                && let Raw(Some(b)) = row.try_get::<_, Raw>(i)?
            {
                pg_numeric(b, &mut decimals[i])?;
            }
        }
        let mut cells: Vec<Cell> = Vec::with_capacity(kinds.len());
        for (i, k) in kinds.iter().enumerate() {
            let Raw(raw) = row.try_get::<_, Raw>(i)?;
            let Some(b) = raw else {
                cells.push(Cell::Null);
                continue;
            };
            cells.push(match k {
                Kind::Bool => Cell::Bool(b.first().copied().unwrap_or(0) != 0),
                Kind::Int2 => Cell::Int(i16::from_be_bytes(be(b)?).into()),
                Kind::Int4 => Cell::Int(i32::from_be_bytes(be(b)?).into()),
                Kind::Int8 => Cell::Int(i64::from_be_bytes(be(b)?)),
                Kind::Float4 => Cell::Float(f32::from_be_bytes(be(b)?).into()),
                Kind::Float8 => Cell::Float(f64::from_be_bytes(be(b)?)),
                Kind::Numeric => Cell::Decimal(&decimals[i]),
                Kind::Text => Cell::Text(std::str::from_utf8(b)?),
                Kind::Date => Cell::Date(
                    epoch.date() + chrono::Days::new(i32::from_be_bytes(be(b)?).max(0) as u64),
                ),
                Kind::Timestamp => Cell::DateTime(
                    epoch + chrono::Duration::microseconds(i64::from_be_bytes(be(b)?)),
                ),
                Kind::TimestampTz => Cell::Instant(
                    epoch + chrono::Duration::microseconds(i64::from_be_bytes(be(b)?)),
                ),
            });
        }
        f(&cells)?;
        n += 1;
    }
    client.batch_execute("COMMIT").await?;
    Ok(n)
}

/// Streams QUERY with mysql_async's binary protocol (`exec_iter`).
async fn mysql_rows(
    url: &str,
    sql: &str,
    mut begin: impl FnMut(Vec<String>),
    mut f: impl FnMut(&[Cell]) -> Result<(), BoxError>,
) -> Result<u64, BoxError> {
    let mut conn = mysql_async::Conn::new(Opts::from_url(url)?).await?;
    conn.query_drop("SET SESSION net_write_timeout = 3600, time_zone = '+00:00'")
        .await?;
    conn.query_drop("START TRANSACTION READ ONLY").await?;
    let mut n = 0u64;
    {
        let mut result = conn.exec_iter(sql, ()).await?;
        let columns = result.columns().ok_or("no result set")?;
        let mut kinds = Vec::with_capacity(columns.len());
        let mut header = Vec::with_capacity(columns.len());
        for c in columns.iter() {
            let k = match c.column_type() {
                ColumnType::MYSQL_TYPE_TINY
                | ColumnType::MYSQL_TYPE_SHORT
                | ColumnType::MYSQL_TYPE_INT24
                | ColumnType::MYSQL_TYPE_LONG
                | ColumnType::MYSQL_TYPE_LONGLONG => Kind::Int8,
                ColumnType::MYSQL_TYPE_FLOAT => Kind::Float4,
                ColumnType::MYSQL_TYPE_DOUBLE => Kind::Float8,
                ColumnType::MYSQL_TYPE_NEWDECIMAL | ColumnType::MYSQL_TYPE_DECIMAL => Kind::Numeric,
                ColumnType::MYSQL_TYPE_DATE => Kind::Date,
                ColumnType::MYSQL_TYPE_DATETIME => Kind::Timestamp,
                ColumnType::MYSQL_TYPE_TIMESTAMP => Kind::TimestampTz,
                _ => Kind::Text,
            };
            let name = c.name_str().to_string();
            header.push(if k == Kind::TimestampTz {
                format!("{name} (UTC)")
            } else {
                name
            });
            kinds.push(k);
        }
        begin(header);
        while let Some(row) = result.next().await? {
            let mut cells: Vec<Cell> = Vec::with_capacity(kinds.len());
            for (i, k) in kinds.iter().enumerate() {
                let v = row.as_ref(i).ok_or("missing value")?;
                cells.push(match (k, v) {
                    (_, MyValue::NULL) => Cell::Null,
                    (_, MyValue::Int(x)) => Cell::Int(*x),
                    (_, MyValue::UInt(x)) => Cell::Int(*x as i64),
                    (_, MyValue::Float(x)) => Cell::Float(f64::from(*x)),
                    (_, MyValue::Double(x)) => Cell::Float(*x),
                    (Kind::Numeric, MyValue::Bytes(b)) => Cell::Decimal(std::str::from_utf8(b)?),
                    (_, MyValue::Bytes(b)) => Cell::Text(std::str::from_utf8(b)?),
                    (k, MyValue::Date(y, mo, d, h, mi, s, us)) => {
                        let date =
                            NaiveDate::from_ymd_opt(i32::from(*y), u32::from(*mo), u32::from(*d))
                                .ok_or("bad date")?;
                        let t = date
                            .and_hms_micro_opt(u32::from(*h), u32::from(*mi), u32::from(*s), *us)
                            .ok_or("bad date-time")?;
                        match k {
                            Kind::Date => Cell::Date(date),
                            Kind::TimestampTz => Cell::Instant(t),
                            _ => Cell::DateTime(t),
                        }
                    }
                    _ => return Err("value type not used by the benchmark".into()),
                });
            }
            f(&cells)?;
            n += 1;
        }
    }
    conn.query_drop("COMMIT").await?;
    conn.disconnect().await?;
    Ok(n)
}

/// `COPY (sql) TO STDOUT (FORMAT csv, HEADER)` into a file through a 1 MiB buffer.
async fn pg_copy(url: &str, sql: &str, out: &Path) -> Result<u64, BoxError> {
    let client = pg_connect(url).await?;
    client.batch_execute("BEGIN TRANSACTION READ ONLY").await?;
    let copy = format!("COPY ({sql}) TO STDOUT (FORMAT csv, HEADER)");
    let stream = client.copy_out(copy.as_str()).await?;
    pin_mut!(stream);
    let mut w = BufWriter::with_capacity(1 << 20, File::create(out)?);
    let mut lines = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        w.write_all(&chunk)?;
    }
    w.flush()?;
    client.batch_execute("COMMIT").await?;
    Ok(lines.saturating_sub(1))
}

fn usage() -> ! {
    eprintln!(
        "usage: db_xlsx_baseline (pg|mysql) URL QUERY OUT.xlsx\n       db_xlsx_baseline (pg-fetch|mysql-fetch) URL QUERY\n       db_xlsx_baseline pg-copy URL QUERY OUT.csv"
    );
    std::process::exit(2);
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pos: Vec<&str> = args.iter().map(String::as_str).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    match pos.as_slice() {
        [mode @ ("pg-fetch" | "mysql-fetch"), url, sql] => {
            // Decode every value; keep a checksum so that nothing is optimised away.
            let mut sum = 0.0f64;
            let mut bytes = 0usize;
            let cb = |cells: &[Cell]| {
                for c in cells {
                    match c {
                        Cell::Null => {}
                        Cell::Bool(b) => sum += f64::from(u8::from(*b)),
                        Cell::Int(n) => sum += *n as f64,
                        Cell::Float(f) => sum += *f,
                        Cell::Decimal(d) => sum += d.parse::<f64>().unwrap_or(0.0),
                        Cell::Text(s) => bytes += s.len(),
                        Cell::Date(d) => sum += excel_days(*d),
                        Cell::DateTime(t) | Cell::Instant(t) => sum += excel_datetime(*t),
                    }
                }
                Ok(())
            };
            let rows = if *mode == "pg-fetch" {
                rt.block_on(pg_rows(url, sql, |_| {}, cb))?
            } else {
                rt.block_on(mysql_rows(url, sql, |_| {}, cb))?
            };
            let secs = start.elapsed().as_secs_f64();
            println!(
                r#"{{"mode":"{mode}","rows":{rows},"rows_secs":{secs:.3},"save_secs":0,"total_secs":{secs:.3},"checksum":{sum:.2},"text_bytes":{bytes}}}"#
            );
        }
        ["pg-copy", url, sql, out] => {
            let out = PathBuf::from(out);
            let rows = rt.block_on(pg_copy(url, sql, &out))?;
            let secs = start.elapsed().as_secs_f64();
            let bytes = std::fs::metadata(&out)?.len();
            println!(
                r#"{{"mode":"pg-copy","rows":{rows},"rows_secs":{secs:.3},"save_secs":0,"total_secs":{secs:.3},"bytes":{bytes}}}"#
            );
        }
        [mode @ ("pg" | "mysql"), url, sql, out] => {
            let out = PathBuf::from(out);
            // Created when the columns are known, before the first row.
            let sheet = std::cell::RefCell::new(None::<Sheet>);
            let mut begin_err: Option<XlsxError> = None;
            let on_begin = |h: Vec<String>| match Sheet::new(&out, h) {
                Ok(s) => *sheet.borrow_mut() = Some(s),
                Err(e) => begin_err = Some(e),
            };
            let on_row = |cells: &[Cell]| {
                sheet
                    .borrow_mut()
                    .as_mut()
                    .ok_or("the workbook could not be created")?
                    .write(cells)
            };
            let rows = if *mode == "pg" {
                rt.block_on(pg_rows(url, sql, on_begin, on_row))?
            } else {
                rt.block_on(mysql_rows(url, sql, on_begin, on_row))?
            };
            if let Some(e) = begin_err {
                return Err(e.into());
            }
            let sheet = sheet.into_inner().ok_or("no result")?;
            let rows_secs = start.elapsed().as_secs_f64();
            let written = sheet.save(&out)?;
            assert_eq!(written, rows);
            let total = start.elapsed().as_secs_f64();
            let bytes = std::fs::metadata(&out)?.len();
            println!(
                r#"{{"mode":"{mode}","rows":{rows},"rows_secs":{rows_secs:.3},"save_secs":{:.3},"total_secs":{total:.3},"bytes":{bytes}}}"#,
                total - rows_secs
            );
        }
        _ => usage(),
    }
    Ok(())
}
