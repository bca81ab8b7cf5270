//! XLSX baseline for `benches/sqlite_export.sh`: a bare rust_xlsxwriter program in
//! constant-memory mode writing the benchmark table's 12 columns with the same cell
//! formats ferry uses (bold frozen header, dates `yyyy-mm-dd`, date-times
//! `yyyy-mm-dd hh:mm:ss`, numbers as numbers, booleans as booleans, text as strings,
//! `use_zip_large_file(true)`, default compression level unless `--level` is given).
//!
//! No ferry code is used: only crates already in ferry's `[dependencies]`.
//!
//! Modes (one JSON object on stdout, timings split into "rows" and "save"):
//!
//! ```text
//! xlsx_baseline sqlite DB OUT.xlsx [--level N]   rows from sqlx `fetch` (as ferry reads them)
//! xlsx_baseline mem ROWS OUT.xlsx [--level N]    the same values generated in memory (no DB)
//! xlsx_baseline fetch DB                         read and decode every row, write nothing
//! ```
//!
//! `mem` uses the formulas of `benches/sqlite_export_gen.sql`, so it writes the same values
//! as `sqlite` does for a database of ROWS rows, without the cost of reading them.
//! The worksheet's temporary file goes next to OUT (as ferry's goes under its output dir).

use std::fmt::Write as _;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Timelike};
use futures_util::StreamExt;
use rust_xlsxwriter::{Format, Workbook, XlsxError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row as _};

/// The query ferry's benchmark tasks run.
const SQL: &str = "SELECT id, qty, amount, customer, label, day, ts, flag, delta, sku, note, score \
                   FROM bench ORDER BY id";
const HEADER: [&str; 12] = [
    "id", "qty", "amount", "customer", "label", "day", "ts", "flag", "delta", "sku", "note",
    "score",
];
/// Data rows per sheet (Excel's 1,048,576 rows less the header), as in ferry.
const MAX_DATA_ROWS: u32 = 1_048_575;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One row, borrowed from the database row or from the generator's buffers.
struct Cells<'a> {
    id: i64,
    qty: i64,
    amount: f64,
    customer: &'a str,
    label: &'a str,
    day: NaiveDate,
    ts: NaiveDateTime,
    flag: bool,
    delta: i64,
    sku: &'a str,
    note: &'a str,
    score: f64,
}

struct Sheet {
    workbook: Workbook,
    header: Format,
    date: Format,
    datetime: Format,
    sheets: usize,
    row: u32,
    rows: u64,
}

fn excel_days(d: NaiveDate) -> f64 {
    let epoch = NaiveDate::from_ymd_opt(1899, 12, 30).expect("valid date");
    (d - epoch).num_days() as f64
}

fn excel_datetime(t: NaiveDateTime) -> f64 {
    excel_days(t.date()) + f64::from(t.time().num_seconds_from_midnight()) / 86_400.0
}

impl Sheet {
    fn new(out: &Path, level: Option<u8>) -> Result<Sheet, XlsxError> {
        let mut workbook = Workbook::new();
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        workbook.set_tempdir(dir)?;
        workbook.use_zip_large_file(true);
        if let Some(l) = level {
            workbook.set_zip_compression_level(l);
        }
        Ok(Sheet {
            workbook,
            header: Format::new().set_bold(),
            date: Format::new().set_num_format("yyyy-mm-dd"),
            datetime: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
            sheets: 0,
            row: 0,
            rows: 0,
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
        for (i, h) in HEADER.iter().enumerate() {
            ws.write_string_with_format(0, i as u16, *h, &self.header)?;
        }
        ws.set_freeze_panes(1, 0)?;
        for (i, w) in [
            9.0, 6.0, 9.0, 17.0, 11.0, 11.0, 20.0, 6.0, 7.0, 11.0, 34.0, 19.0,
        ]
        .iter()
        .enumerate()
        {
            ws.set_column_width(i as u16, *w)?;
        }
        self.row = 1;
        Ok(())
    }

    fn write(&mut self, c: &Cells) -> Result<(), XlsxError> {
        if self.sheets == 0 || self.row > MAX_DATA_ROWS {
            self.new_sheet()?;
        }
        let r = self.row;
        let ws = self.workbook.worksheet_from_index(self.sheets - 1)?;
        ws.write_number(r, 0, c.id as f64)?;
        ws.write_number(r, 1, c.qty as f64)?;
        ws.write_number(r, 2, c.amount)?;
        ws.write_string(r, 3, c.customer)?;
        ws.write_string(r, 4, c.label)?;
        ws.write_number_with_format(r, 5, excel_days(c.day), &self.date)?;
        ws.write_number_with_format(r, 6, excel_datetime(c.ts), &self.datetime)?;
        ws.write_boolean(r, 7, c.flag)?;
        ws.write_number(r, 8, c.delta as f64)?;
        ws.write_string(r, 9, c.sku)?;
        ws.write_string(r, 10, c.note)?;
        ws.write_number(r, 11, c.score)?;
        self.row += 1;
        self.rows += 1;
        Ok(())
    }

    /// Saves like ferry does: `save_to_writer` through a 1 MiB buffer (no fsync here).
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

async fn connect(db: &Path) -> Result<SqliteConnection, BoxError> {
    let opts = SqliteConnectOptions::from_str("sqlite://")?
        .filename(db)
        .read_only(true)
        .pragma("query_only", "ON");
    Ok(SqliteConnection::connect_with(&opts).await?)
}

/// Streams the query with sqlx `fetch` and hands each decoded row to `f`.
async fn for_each_db_row(
    db: &Path,
    mut f: impl FnMut(&Cells) -> Result<(), BoxError>,
) -> Result<u64, BoxError> {
    let mut conn = connect(db).await?;
    let mut n = 0u64;
    {
        let mut rows = sqlx::query(SQL).fetch(&mut conn);
        while let Some(row) = rows.next().await {
            let row = row?;
            let day: &str = row.try_get(5)?;
            let ts: &str = row.try_get(6)?;
            let cells = Cells {
                id: row.try_get(0)?,
                qty: row.try_get(1)?,
                amount: row.try_get(2)?,
                customer: row.try_get(3)?,
                label: row.try_get(4)?,
                day: NaiveDate::parse_from_str(day, "%Y-%m-%d")?,
                ts: NaiveDateTime::parse_from_str(ts, "%Y-%m-%d %H:%M:%S")?,
                flag: row.try_get::<i64, _>(7)? != 0,
                delta: row.try_get(8)?,
                sku: row.try_get(9)?,
                note: row.try_get(10)?,
                score: row.try_get(11)?,
            };
            f(&cells)?;
            n += 1;
        }
    }
    conn.close().await?;
    Ok(n)
}

/// Generates rows 1..=rows with the formulas of `benches/sqlite_export_gen.sql`.
fn for_each_mem_row(
    rows: u64,
    mut f: impl FnMut(&Cells) -> Result<(), BoxError>,
) -> Result<u64, BoxError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let day0 = NaiveDate::from_ymd_opt(2020, 1, 1).expect("valid date");
    let (mut customer, mut label, mut sku, mut note) =
        (String::new(), String::new(), String::new(), String::new());
    for n in 1..=rows {
        let a = (n * 2_654_435_761 + 97) % 4_294_967_296;
        let b = (a * 1_597_334_677 + 11) % 4_294_967_296;
        let c = (b * 1_103_515_245 + 12_345) % 4_294_967_296;
        customer.clear();
        let _ = write!(customer, "Customer {:06}", c % 250_000);
        label.clear();
        label.push_str("segment-");
        label.push(ALPHABET[((a / 7) % 36) as usize] as char);
        sku.clear();
        let _ = write!(sku, "SKU-{:05}", (c >> 3) % 50_000);
        note.clear();
        let _ = write!(note, "order {n} lane {} ref {:08x}", a % 97, c);
        let ts = DateTime::from_timestamp((1_577_836_800 + c % 189_216_000) as i64, 0)
            .expect("valid timestamp")
            .naive_utc();
        let cells = Cells {
            id: n as i64,
            qty: (1 + a % 500) as i64,
            amount: (b % 10_000_000) as f64 / 100.0,
            customer: &customer,
            label: &label,
            day: day0 + chrono::Days::new(b % 2192),
            ts,
            flag: (a >> 3) & 1 == 1,
            delta: -1 - ((b >> 5) % 99_999) as i64,
            sku: &sku,
            note: &note,
            score: (c % 1_000_003) as f64 / 7.0,
        };
        f(&cells)?;
    }
    Ok(rows)
}

fn usage() -> ! {
    eprintln!(
        "usage: xlsx_baseline sqlite DB OUT.xlsx [--level N]\n       xlsx_baseline mem ROWS OUT.xlsx [--level N]\n       xlsx_baseline fetch DB"
    );
    std::process::exit(2);
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut level: Option<u8> = None;
    let mut pos: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--level" {
            level = Some(
                it.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage()),
            );
        } else {
            pos.push(a);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let start = Instant::now();
    match pos.as_slice() {
        ["fetch", db] => {
            // Reader floor: decode every column, keep a checksum so nothing is optimised away.
            let mut sum = 0.0f64;
            let mut bytes = 0usize;
            let rows = rt.block_on(for_each_db_row(Path::new(db), |c| {
                sum += c.id as f64
                    + c.qty as f64
                    + c.amount
                    + c.delta as f64
                    + c.score
                    + f64::from(u8::from(c.flag))
                    + excel_days(c.day)
                    + excel_datetime(c.ts);
                bytes += c.customer.len() + c.label.len() + c.sku.len() + c.note.len();
                Ok(())
            }))?;
            let secs = start.elapsed().as_secs_f64();
            println!(
                r#"{{"mode":"fetch","rows":{rows},"rows_secs":{secs:.3},"save_secs":0,"total_secs":{secs:.3},"checksum":{sum:.2},"text_bytes":{bytes}}}"#
            );
        }
        [mode @ ("sqlite" | "mem"), input, out] => {
            let out = PathBuf::from(out);
            let mut sheet = Sheet::new(&out, level)?;
            let rows = if *mode == "sqlite" {
                rt.block_on(for_each_db_row(Path::new(input), |c| Ok(sheet.write(c)?)))?
            } else {
                let n: u64 = input.parse().unwrap_or_else(|_| usage());
                for_each_mem_row(n, |c| Ok(sheet.write(c)?))?
            };
            let rows_secs = start.elapsed().as_secs_f64();
            let written = sheet.save(&out)?;
            assert_eq!(written, rows);
            let total = start.elapsed().as_secs_f64();
            let bytes = std::fs::metadata(&out)?.len();
            let level = level.map_or("null".to_string(), |l| l.to_string());
            println!(
                r#"{{"mode":"{mode}","rows":{rows},"rows_secs":{rows_secs:.3},"save_secs":{:.3},"total_secs":{total:.3},"bytes":{bytes},"level":{level}}}"#,
                total - rows_secs
            );
        }
        _ => usage(),
    }
    Ok(())
}
