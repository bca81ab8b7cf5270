//! A task's `output:` section: format, file and sheet names, CSV options.

use std::collections::BTreeMap;

use super::check::Checker;
use super::raw::{RawCsv, RawOutput};
use super::{CsvEncoding, CsvOptions, Format, OutputSpec};
use crate::params::{ParamValue, Period, RunParams};
use crate::template;

/// Default file name template (without extension) of a task whose data is not for a
/// calendar period (no period, `hour`, `schedule`): the run's local time.
pub(crate) const DEFAULT_FILE_NAME: &str = "{{ task }}_{{ run_time | strftime('%Y%m%d_%H%M%S') }}";

/// Default file name template of a task whose data is for a day, week, month, quarter or
/// year: the period (`daily_sales_2026-12-06`, `weekly_2026-W49`, `monthly_2026-11`). A
/// second run for the same period publishes `NAME_2`.
pub(crate) const PERIOD_FILE_NAME: &str = "{{ task }}_{{ period }}";

/// Checks a file-name or folder template: syntax, and a trial render with sample values
/// (which catches unknown variables and bad `strftime` formats).
pub fn check_name_template(source: &str) -> Result<(), String> {
    let sample = RunParams::compute(
        crate::clock::wall_now(),
        chrono_tz::UTC,
        Period::Day,
        None,
        &BTreeMap::new(),
    );
    let ctx = sample.template_context("task", "run-id");
    let out = template::check_name(source, &ctx)?;
    if out.trim().is_empty() {
        return Err("renders to an empty name".into());
    }
    Ok(())
}

pub(crate) fn validate_output(
    c: &mut Checker,
    raw: &RawOutput,
    task: &str,
    fixed: &BTreeMap<String, ParamValue>,
    tz: chrono_tz::Tz,
    default_name: &str,
) -> OutputSpec {
    let format = Format::parse(&raw.format.value)
        .map_err(|e| c.at(&raw.format, "output.format", e))
        .ok();
    let file_name = match &raw.file_name {
        Some(f) => {
            let sample = RunParams::compute(crate::clock::wall_now(), tz, Period::Day, None, fixed);
            let ctx = sample.template_context(task, "run-id");
            match template::check_name(&f.value, &ctx) {
                Ok(out) if out.trim().is_empty() => {
                    c.at(f, "output.file_name", "renders to an empty name");
                }
                Ok(_) => {}
                Err(e) => c.at(f, "output.file_name", e),
            }
            f.value.clone()
        }
        None => default_name.to_string(),
    };
    let sheet_name = match &raw.sheet_name {
        Some(s) => {
            if format == Some(Format::Csv) {
                c.at(s, "output.sheet_name", "applies to xlsx output only");
            }
            if let Err(e) = check_sheet_name(&s.value) {
                c.at(s, "output.sheet_name", e);
            }
            s.value.clone()
        }
        None => "data".to_string(),
    };
    let csv = match &raw.csv {
        Some(opts) => {
            if format == Some(Format::Xlsx) {
                c.at(opts, "output.csv", "CSV options apply to csv output only");
            }
            csv_options(c, &opts.value)
        }
        None => CsvOptions::default(),
    };
    OutputSpec {
        format: format.unwrap_or(Format::Csv),
        file_name,
        sheet_name,
        csv,
        zip: raw.zip.unwrap_or(false),
        file_per_query: false,
    }
}

/// Excel's sheet-name rules: 1–31 characters, none of `[]:*?/\`, no leading/trailing `'`.
pub fn check_sheet_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > 31 {
        return Err(format!(
            "sheet names must have 1 to 31 characters, `{name}` has {n}"
        ));
    }
    if let Some(bad) = name.chars().find(|c| "[]:*?/\\".contains(*c)) {
        return Err(format!("sheet names cannot contain `{bad}`"));
    }
    if name.starts_with('\'') || name.ends_with('\'') {
        return Err("sheet names cannot begin or end with `'`".into());
    }
    Ok(())
}

pub(crate) fn csv_options(c: &mut Checker, raw: &RawCsv) -> CsvOptions {
    let mut o = CsvOptions::default();
    if let Some(d) = &raw.delimiter {
        let v = if d.value == "\\t" {
            "\t"
        } else {
            d.value.as_str()
        };
        match v.as_bytes() {
            [b] if b.is_ascii() && !matches!(*b, b'"' | b'\n' | b'\r') => o.delimiter = *b,
            _ => c.at(
                d,
                "output.csv.delimiter",
                format!(
                    "must be one ASCII character other than a quote or a line break (got `{}`)",
                    d.value
                ),
            ),
        }
    }
    if let Some(e) = &raw.encoding {
        match e.value.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => o.encoding = CsvEncoding::Utf8,
            "gb18030" => o.encoding = CsvEncoding::Gb18030,
            other => c.at(
                e,
                "output.csv.encoding",
                format!("unsupported encoding `{other}` (one of: utf-8, gb18030)"),
            ),
        }
    }
    o.bom = raw.bom.unwrap_or(false);
    if o.bom && o.encoding == CsvEncoding::Gb18030 {
        c.plain(
            "output.csv.bom",
            "a byte order mark applies to utf-8 only; remove `bom` or use utf-8",
        );
    }
    o.escape_formulas = raw.escape_formulas.unwrap_or(true);
    o.header = raw.header.unwrap_or(true);
    if let Some(l) = &raw.line_ending {
        match l.value.as_str() {
            "\n" | "lf" | "LF" => o.crlf = false,
            "\r\n" | "crlf" | "CRLF" => o.crlf = true,
            other => c.at(
                l,
                "output.csv.line_ending",
                format!(
                    "unknown line ending `{}` (one of: lf, crlf)",
                    other.escape_debug()
                ),
            ),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheet_names() {
        assert!(check_sheet_name("Sales 2026").is_ok());
        assert!(check_sheet_name("a/b").is_err());
        assert!(check_sheet_name(&"x".repeat(32)).is_err());
    }
}
