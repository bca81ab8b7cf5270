//! XLSX writer on rust_xlsxwriter in constant-memory mode (rows go to a temporary file as
//! they are written; memory stays flat whatever the row count).
//!
//! - Row 1 is a bold, frozen header. Instants (with a zone) are converted to the task's
//!   zone and the header names it, because Excel cells have no zone.
//! - Numbers are numeric cells, unless Excel cannot hold them exactly (integers of 16 or
//!   more digits, decimals with more than 15 significant digits): those are written as
//!   exact text, never rounded.
//! - Dates, date-times and times are date cells with a readable format; dates before
//!   1900-03-01 (outside Excel's calendar) are written as ISO text.
//! - NULL is an empty cell; booleans are boolean cells; bytes are `0x…` hex text.
//! - At most 1,048,575 data rows a sheet; then a new sheet (`data_2`, ...) with the same
//!   header, in the same workbook.
//! - Text longer than 32,767 characters (Excel's cell limit) is cut, and the run gets a
//!   warning that says how many cells of which column were cut.
//! - Column widths are estimated from the header and the first rows while streaming.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use chrono_tz::Tz;
use rust_xlsxwriter::{Format, Workbook, Worksheet, XlsxError};

use super::{
    Finished, FormatError, FormatWriter, HashingWriter, Staged, WriterOptions, partial_path,
};
use crate::format::csv::header_text;
use crate::value::{Column, Rows, Value, render_text, significant_digits};

/// Data rows per sheet (Excel's 1,048,576 rows less the header).
pub const MAX_DATA_ROWS: u32 = 1_048_575;
/// Excel's cell text limit, in characters.
pub const MAX_CELL_CHARS: usize = 32_767;
/// Largest integer magnitude written as a number (15 digits: Excel's precision).
const MAX_EXACT_INT: i64 = 999_999_999_999_999;
/// Rows sampled for column widths.
const WIDTH_SAMPLE_ROWS: u32 = 1000;

pub struct XlsxWriter {
    workbook: Workbook,
    partial: PathBuf,
    final_name: String,
    sheet_base: String,
    tz: Tz,
    columns: Vec<Column>,
    header_fmt: Format,
    date_fmt: Format,
    datetime_fmt: Format,
    time_fmt: Format,
    /// Data rows per sheet ([`MAX_DATA_ROWS`]; smaller in tests).
    rows_per_sheet: u32,
    /// Index of the current worksheet in the workbook.
    sheet_index: usize,
    /// Worksheets in the workbook.
    sheets: usize,
    /// Worksheets of the current part (a query; more than one after a rollover).
    part_sheets: usize,
    /// Set by [`FormatWriter::begin_part`]: warnings name the part's sheet.
    multi: bool,
    /// Next row to write in the current sheet (0 is the header).
    row: u32,
    /// Rows of the current part.
    part_rows: u64,
    warnings: Vec<String>,
    widths: Vec<f64>,
    cut_cells: Vec<u64>,
    text_numbers: Vec<u64>,
    buf: String,
    finished: bool,
    /// The worksheet temp folder; last, so that it is let go after the workbook.
    _temp: super::TempDirUse,
}

fn xerr(e: XlsxError) -> FormatError {
    FormatError::Xlsx(e.to_string())
}

impl XlsxWriter {
    pub fn new(o: WriterOptions) -> Result<XlsxWriter, FormatError> {
        let final_name = format!("{}.xlsx", o.base_name);
        let partial = partial_path(&o.dir, &final_name);
        // One folder per process, so that a sweep can tell whose leftovers they are.
        let temp = super::TempDirUse::acquire(&o.temp_dir)
            .map_err(|e| FormatError::io(&super::process_temp_dir(&o.temp_dir), e))?;
        let mut workbook = Workbook::new();
        workbook.set_tempdir(temp.path()).map_err(xerr)?;
        // Large exports can pass 4 GB of uncompressed sheet XML.
        workbook.use_zip_large_file(true);
        Ok(XlsxWriter {
            workbook,
            partial,
            final_name,
            sheet_base: o.output.sheet_name.clone(),
            tz: o.tz,
            columns: Vec::new(),
            header_fmt: Format::new().set_bold(),
            date_fmt: Format::new().set_num_format("yyyy-mm-dd"),
            datetime_fmt: Format::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
            time_fmt: Format::new().set_num_format("hh:mm:ss"),
            rows_per_sheet: MAX_DATA_ROWS,
            sheet_index: 0,
            sheets: 0,
            part_sheets: 0,
            multi: false,
            row: 0,
            part_rows: 0,
            warnings: Vec::new(),
            widths: Vec::new(),
            cut_cells: Vec::new(),
            text_numbers: Vec::new(),
            buf: String::new(),
            finished: false,
            _temp: temp,
        })
    }

    /// Name of sheet number `n` (1-based) of the current part: `data`, `data_2`, ... within
    /// 31 characters.
    fn sheet_name(&self, n: usize) -> String {
        if n == 1 {
            return self.sheet_base.clone();
        }
        let suffix = format!("_{n}");
        let keep = 31 - suffix.len();
        let base: String = self.sheet_base.chars().take(keep).collect();
        format!("{base}{suffix}")
    }

    fn new_sheet(&mut self) -> Result<(), FormatError> {
        self.apply_widths()?;
        self.sheets += 1;
        self.part_sheets += 1;
        let name = self.sheet_name(self.part_sheets);
        let header: Vec<String> = self
            .columns
            .iter()
            .map(|c| header_text(c, self.tz))
            .collect();
        let ws = self
            .workbook
            .add_worksheet_with_constant_memory()
            .map_err(xerr)?;
        ws.set_name(name).map_err(xerr)?;
        for (i, h) in header.iter().enumerate() {
            ws.write_string_with_format(0, i as u16, h, &self.header_fmt)
                .map_err(xerr)?;
        }
        if !header.is_empty() {
            ws.set_freeze_panes(1, 0).map_err(xerr)?;
        }
        self.sheet_index = self.sheets - 1;
        self.row = 1;
        if self.widths.is_empty() {
            self.widths = header.iter().map(|h| display_width(h) + 2.0).collect();
        }
        Ok(())
    }

    /// Adds the warnings of the current part (rollover, cut cells).
    fn end_part(&mut self) {
        if self.part_sheets == 0 {
            return;
        }
        let prefix = if self.multi {
            format!("sheet {}: ", self.sheet_base)
        } else {
            String::new()
        };
        if self.part_sheets > 1 {
            self.warnings.push(format!(
                "{prefix}{} rows did not fit one sheet ({} rows at most): written over {} sheets",
                self.part_rows, self.rows_per_sheet, self.part_sheets
            ));
        }
        for (i, n) in self.cut_cells.iter().enumerate() {
            if *n > 0 {
                self.warnings.push(format!(
                    "{prefix}column `{}`: {n} value(s) longer than {MAX_CELL_CHARS} characters were cut to {MAX_CELL_CHARS} (Excel's cell limit)",
                    self.columns[i].name
                ));
            }
        }
        for (i, n) in self.text_numbers.iter().enumerate() {
            if *n > 0 {
                tracing::debug!(column = %self.columns[i].name, count = n, "numbers written as exact text");
            }
        }
        self.part_sheets = 0;
    }

    fn apply_widths(&mut self) -> Result<(), FormatError> {
        if self.sheets == 0 {
            return Ok(());
        }
        let widths = self.widths.clone();
        let ws = self
            .workbook
            .worksheet_from_index(self.sheet_index)
            .map_err(xerr)?;
        for (i, w) in widths.iter().enumerate() {
            ws.set_column_width(i as u16, w.clamp(6.0, 60.0))
                .map_err(xerr)?;
        }
        Ok(())
    }
}

/// Approximate display width: CJK and other wide characters count double.
fn display_width(s: &str) -> f64 {
    s.chars()
        .map(|c| if (c as u32) >= 0x1100 { 2.0 } else { 1.0 })
        .sum()
}

/// Excel serial day number for a date (1900 system), or `None` before 1900-03-01, where
/// Excel's calendar disagrees with the real one.
fn excel_days(d: NaiveDate) -> Option<f64> {
    let epoch = NaiveDate::from_ymd_opt(1899, 12, 30).expect("valid");
    let limit = NaiveDate::from_ymd_opt(1900, 3, 1).expect("valid");
    if d < limit || d.year() > 9999 {
        return None;
    }
    Some((d - epoch).num_days() as f64)
}

fn day_fraction(t: NaiveTime) -> f64 {
    let secs = t.num_seconds_from_midnight() as f64 + f64::from(t.nanosecond()) / 1e9;
    secs / 86_400.0
}

fn excel_datetime(t: NaiveDateTime) -> Option<f64> {
    excel_days(t.date()).map(|d| d + day_fraction(t.time()))
}

enum Cell<'a> {
    Empty,
    Number(f64),
    NumberFmt(f64, &'a Format),
    Bool(bool),
    Text(&'a str),
}

impl FormatWriter for XlsxWriter {
    fn begin(&mut self, columns: &[Column]) -> Result<(), FormatError> {
        self.columns = columns.to_vec();
        self.cut_cells = vec![0; columns.len()];
        self.text_numbers = vec![0; columns.len()];
        self.new_sheet()
    }

    fn begin_part(&mut self, name: &str, columns: &[Column]) -> Result<(), FormatError> {
        self.end_part();
        self.apply_widths()?;
        self.multi = true;
        self.sheet_base = name.to_string();
        self.part_sheets = 0;
        self.part_rows = 0;
        self.widths.clear();
        self.begin(columns)
    }

    fn write_rows(&mut self, rows: &Rows) -> Result<(), FormatError> {
        for row in rows {
            if self.row > self.rows_per_sheet {
                self.new_sheet()?;
            }
            let r = self.row;
            let sample = r <= WIDTH_SAMPLE_ROWS && self.part_sheets == 1;
            let ws: &mut Worksheet = self
                .workbook
                .worksheet_from_index(self.sheet_index)
                .map_err(xerr)?;
            for (i, v) in row.iter().enumerate() {
                let col = i as u16;
                self.buf.clear();
                let cell = match v {
                    Value::Null => Cell::Empty,
                    Value::Bool(b) => Cell::Bool(*b),
                    Value::Int(n) if n.unsigned_abs() <= MAX_EXACT_INT as u64 => {
                        Cell::Number(*n as f64)
                    }
                    Value::UInt(n) if *n <= MAX_EXACT_INT as u64 => Cell::Number(*n as f64),
                    Value::Float(f) if f.is_finite() => Cell::Number(*f),
                    Value::Decimal(d) if significant_digits(d) <= 15 => match d.parse::<f64>() {
                        Ok(f) if f.is_finite() => Cell::Number(f),
                        _ => Cell::Text(d),
                    },
                    Value::Date(d) => match excel_days(*d) {
                        Some(n) => Cell::NumberFmt(n, &self.date_fmt),
                        None => {
                            render_text(v, self.tz, &mut self.buf);
                            Cell::Text(&self.buf)
                        }
                    },
                    Value::DateTime(t) => match excel_datetime(*t) {
                        Some(n) => Cell::NumberFmt(n, &self.datetime_fmt),
                        None => {
                            render_text(v, self.tz, &mut self.buf);
                            Cell::Text(&self.buf)
                        }
                    },
                    Value::DateTimeTz(t) => {
                        match excel_datetime(t.with_timezone(&self.tz).naive_local()) {
                            Some(n) => Cell::NumberFmt(n, &self.datetime_fmt),
                            None => {
                                render_text(v, self.tz, &mut self.buf);
                                Cell::Text(&self.buf)
                            }
                        }
                    }
                    Value::Time(t) => Cell::NumberFmt(day_fraction(*t), &self.time_fmt),
                    Value::Text(s) => Cell::Text(s),
                    other => {
                        // Integers and decimals Excel cannot hold exactly, NaN/Infinity, bytes.
                        if other.is_numeric() {
                            self.text_numbers[i] += 1;
                        }
                        render_text(other, self.tz, &mut self.buf);
                        Cell::Text(&self.buf)
                    }
                };
                let res = match cell {
                    Cell::Empty => Ok(()),
                    Cell::Number(n) => ws.write_number(r, col, n).map(|_| ()),
                    Cell::NumberFmt(n, f) => ws.write_number_with_format(r, col, n, f).map(|_| ()),
                    Cell::Bool(b) => ws.write_boolean(r, col, b).map(|_| ()),
                    Cell::Text(s) => {
                        if sample && let Some(w) = self.widths.get_mut(i) {
                            *w = w.max(display_width(s) + 1.0);
                        }
                        if s.len() > MAX_CELL_CHARS && s.chars().count() > MAX_CELL_CHARS {
                            self.cut_cells[i] += 1;
                            let cut: String = s.chars().take(MAX_CELL_CHARS).collect();
                            ws.write_string(r, col, cut).map(|_| ())
                        } else {
                            ws.write_string(r, col, s).map(|_| ())
                        }
                    }
                };
                res.map_err(xerr)?;
                if sample
                    && matches!(
                        v,
                        Value::Date(_) | Value::DateTime(_) | Value::DateTimeTz(_)
                    )
                    && let Some(w) = self.widths.get_mut(i)
                {
                    *w = w.max(if matches!(v, Value::Date(_)) {
                        11.0
                    } else {
                        20.0
                    });
                } else if sample
                    && v.is_numeric()
                    && let Some(w) = self.widths.get_mut(i)
                {
                    let mut t = String::new();
                    render_text(v, self.tz, &mut t);
                    *w = w.max(t.len() as f64 + 1.0);
                }
            }
            self.row += 1;
            self.part_rows += 1;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Finished, FormatError> {
        if self.sheets == 0 {
            self.new_sheet()?;
        }
        self.apply_widths()?;
        let file = File::create(&self.partial).map_err(|e| FormatError::io(&self.partial, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, HashingWriter::new(file));
        self.workbook.save_to_writer(&mut out).map_err(xerr)?;
        let hashing = out
            .into_inner()
            .map_err(|e| FormatError::io(&self.partial, e.into_error()))?;
        let (file, bytes, sha256) = hashing.finish();
        file.sync_all()
            .map_err(|e| FormatError::io(&self.partial, e))?;
        self.finished = true;
        self.end_part();
        let warnings = std::mem::take(&mut self.warnings);
        Ok(Finished {
            staged: vec![Staged {
                partial: self.partial.clone(),
                final_name: self.final_name.clone(),
                digest: Some((bytes, sha256)),
            }],
            warnings,
        })
    }
}

impl Drop for XlsxWriter {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excel_serials() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert_eq!(excel_days(d("1900-03-01")), Some(61.0));
        assert_eq!(excel_days(d("2026-11-25")), Some(46351.0));
        assert_eq!(excel_days(d("1899-12-31")), None);
        let t: NaiveDateTime = "2026-11-25T12:00:00".parse().unwrap();
        assert_eq!(excel_datetime(t), Some(46351.5));
    }

    fn opts(dir: &std::path::Path) -> WriterOptions {
        WriterOptions {
            dir: dir.to_path_buf(),
            base_name: "t".into(),
            temp_dir: dir.join("tmp"),
            tz: chrono_tz::Asia::Shanghai,
            output: crate::config::OutputSpec {
                format: crate::config::Format::Xlsx,
                file_name: "t".into(),
                sheet_name: "data".into(),
                csv: Default::default(),
                zip: false,
                file_per_query: false,
            },
        }
    }

    fn col(name: &str, kind: crate::value::Kind) -> Column {
        Column {
            name: name.into(),
            db_type: String::new(),
            kind,
        }
    }

    #[test]
    fn rolls_over_to_new_sheets_with_the_same_header() {
        use calamine::{Data, Reader, Xlsx, open_workbook};
        let dir = tempfile::tempdir().unwrap();
        let mut w = XlsxWriter::new(opts(dir.path())).unwrap();
        w.rows_per_sheet = 10;
        let mut w: Box<dyn FormatWriter> = Box::new(w);
        w.begin(&[col("n", crate::value::Kind::Int)]).unwrap();
        let chunk = |r: std::ops::RangeInclusive<i64>| {
            crate::value::Rows::from_rows(1, r.map(|i| vec![Value::Int(i)]))
        };
        w.write_rows(&chunk(1..=7)).unwrap();
        w.write_rows(&chunk(8..=25)).unwrap();
        let fin = w.finish().unwrap();
        assert!(
            fin.warnings[0].contains("written over 3 sheets"),
            "{:?}",
            fin.warnings
        );
        let path = &fin.staged[0].partial;
        let mut wb: Xlsx<_> = open_workbook(path).unwrap();
        assert_eq!(wb.sheet_names(), ["data", "data_2", "data_3"]);
        let mut seen = Vec::new();
        for name in ["data", "data_2", "data_3"] {
            let range = wb.worksheet_range(name).unwrap();
            let mut it = range.rows();
            assert_eq!(it.next().unwrap()[0], Data::String("n".into()));
            for r in it {
                match &r[0] {
                    Data::Float(f) => seen.push(*f as i64),
                    Data::Int(i) => seen.push(*i),
                    other => panic!("not a number: {other:?}"),
                }
            }
        }
        assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    }

    #[test]
    fn long_text_is_cut_with_a_warning() {
        use calamine::{Data, Reader, Xlsx, open_workbook};
        let dir = tempfile::tempdir().unwrap();
        let mut w: Box<dyn FormatWriter> = Box::new(XlsxWriter::new(opts(dir.path())).unwrap());
        w.begin(&[col("note", crate::value::Kind::Text)]).unwrap();
        let long = "长".repeat(40_000);
        w.write_rows(&crate::value::Rows::from_rows(
            1,
            [vec![Value::Text(long)], vec![Value::Text("short".into())]],
        ))
        .unwrap();
        let fin = w.finish().unwrap();
        assert_eq!(
            fin.warnings,
            [
                "column `note`: 1 value(s) longer than 32767 characters were cut to 32767 (Excel's cell limit)"
            ]
        );
        let mut wb: Xlsx<_> = open_workbook(&fin.staged[0].partial).unwrap();
        let range = wb.worksheet_range("data").unwrap();
        match &range.get((1, 0)).unwrap() {
            Data::String(s) => assert_eq!(s.chars().count(), MAX_CELL_CHARS),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dropped_writer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = XlsxWriter::new(opts(dir.path())).unwrap();
        w.begin(&[col("n", crate::value::Kind::Int)]).unwrap();
        let partial = w.partial.clone();
        drop(w);
        assert!(!partial.exists());
        assert!(
            std::fs::read_dir(dir.path())
                .unwrap()
                .all(|e| e.unwrap().file_name() == "tmp")
        );
        let own = super::super::process_temp_dir(&dir.path().join("tmp"));
        assert!(
            !own.exists(),
            "the process's temp folder is removed with its files"
        );
    }

    #[test]
    fn wide_characters_count_double() {
        assert_eq!(display_width("ab"), 2.0);
        assert_eq!(display_width("销售"), 4.0);
    }
}
