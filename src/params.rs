//! Query parameters: values from the run (`:run_date`, `:period_start`, ...) and fixed
//! values from the task (`params:`), bound as real typed parameters.
//!
//! A query names a parameter as `:name`. [`scan`] finds the names while skipping string
//! literals, quoted identifiers, comments and PostgreSQL `::` casts; [`rewrite`] turns the
//! text into the driver's positional form (`?` or `$n`) and returns the names in binding
//! order. Values are never spliced into the SQL text.
//!
//! [`RunParams::compute`] derives the built-in values from the scheduled instant, the
//! task's time zone and its `period` (see `docs/configuration.md`, "Query parameters").

use std::collections::BTreeMap;

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

use crate::schedule::Schedule;

/// A typed parameter value.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Date(NaiveDate),
    /// A local date-time in the task's zone (no offset).
    DateTime(NaiveDateTime),
    /// An instant (bound as UTC).
    Instant(DateTime<Utc>),
}

impl ParamValue {
    /// The text form used by sources without native date types (SQLite) and in logs.
    pub fn to_text(&self) -> String {
        match self {
            ParamValue::Bool(b) => b.to_string(),
            ParamValue::Int(i) => i.to_string(),
            ParamValue::Float(f) => f.to_string(),
            ParamValue::Text(s) => s.clone(),
            ParamValue::Date(d) => d.format("%Y-%m-%d").to_string(),
            ParamValue::DateTime(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
            ParamValue::Instant(t) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        }
    }
}

/// The period that `:period_start` / `:period_end` cover: the last complete one before the
/// scheduled time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
    /// From the previous fire of the schedule to this one.
    Schedule,
}

impl Period {
    pub const NAMES: &'static [&'static str] = &[
        "hour", "day", "week", "month", "quarter", "year", "schedule",
    ];

    pub fn parse(s: &str) -> Option<Period> {
        Some(match s {
            "hour" => Period::Hour,
            "day" => Period::Day,
            "week" => Period::Week,
            "month" => Period::Month,
            "quarter" => Period::Quarter,
            "year" => Period::Year,
            "schedule" => Period::Schedule,
            _ => return None,
        })
    }
}

/// Names of the built-in parameters, in documentation order.
pub const BUILTIN: &[&str] = &[
    "run_date",
    "run_time",
    "scheduled_at",
    "yesterday",
    "period_start",
    "period_end",
    "period_start_date",
    "period_end_date",
    "period_last_date",
];

/// The values of one run: built-ins plus the task's fixed `params`.
#[derive(Debug, Clone, Default)]
pub struct RunParams {
    pub values: BTreeMap<String, ParamValue>,
    /// What the run's data covers, for file names and messages.
    pub coverage: Coverage,
}

/// What a run's data covers, in the words file names and messages use: the task's
/// `period` (the last complete one before the run), or the run date for a task that
/// names no period (see [`RunParams::as_of_run`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// `hour`, `day`, `week`, `month`, `quarter`, `year`, `schedule`, or `run` when the
    /// task names no period.
    pub kind: &'static str,
    /// `2026-12-06` (day), `2026-W49` (ISO week), `2026-11` (month), `2026-Q4`, `2025`,
    /// `2026-12-07 08:00–09:00` (hour), `2026-12-06 02:30 – 2026-12-07 02:30` (schedule);
    /// the run date (`2026-12-07`) for `run`.
    pub label: String,
    /// The first and the last day covered (`YYYY-MM-DD`, both included); date-times
    /// (`YYYY-MM-DD HH:MM`) for `hour` and `schedule`, the end excluded.
    pub first: String,
    pub last: String,
}

impl Coverage {
    fn of(period: Period, start: NaiveDateTime, end: NaiveDateTime) -> Coverage {
        let day = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
        let minute = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M").to_string();
        let last_day = if end.time() == NaiveTime::MIN {
            end.date() - Duration::days(1)
        } else {
            end.date()
        };
        let (kind, label) = match period {
            Period::Day => ("day", day(start.date())),
            Period::Week => ("week", start.date().format("%G-W%V").to_string()),
            Period::Month => ("month", start.date().format("%Y-%m").to_string()),
            Period::Quarter => (
                "quarter",
                format!("{}-Q{}", start.year(), start.month0() / 3 + 1),
            ),
            Period::Year => ("year", start.year().to_string()),
            Period::Hour => ("hour", format!("{}–{}", minute(start), end.format("%H:%M"))),
            Period::Schedule => ("schedule", format!("{} – {}", minute(start), minute(end))),
        };
        let (first, last) = match period {
            Period::Hour | Period::Schedule => (minute(start), minute(end)),
            _ => (day(start.date()), day(last_day)),
        };
        Coverage {
            kind,
            label,
            first,
            last,
        }
    }
}

impl RunParams {
    /// Computes the built-in values for a run scheduled at `at` in zone `tz`.
    pub fn compute(
        at: DateTime<Utc>,
        tz: Tz,
        period: Period,
        schedule: Option<&Schedule>,
        fixed: &BTreeMap<String, ParamValue>,
    ) -> RunParams {
        let local = at.with_timezone(&tz).naive_local();
        let today = local.date();
        let midnight = |d: NaiveDate| d.and_time(NaiveTime::MIN);
        let (start, end) = match period {
            Period::Hour => {
                let end = local
                    .date()
                    .and_hms_opt(local.hour(), 0, 0)
                    .unwrap_or(local);
                (end - Duration::hours(1), end)
            }
            Period::Day => (midnight(today - Duration::days(1)), midnight(today)),
            Period::Week => {
                let monday = today - Duration::days(today.weekday().num_days_from_monday() as i64);
                (midnight(monday - Duration::days(7)), midnight(monday))
            }
            Period::Month => {
                let first = first_of_month(today.year(), today.month());
                let prev = first_of_month_before(first);
                (midnight(prev), midnight(first))
            }
            Period::Quarter => {
                let q_month = (today.month() - 1) / 3 * 3 + 1;
                let first = first_of_month(today.year(), q_month);
                let mut prev = first;
                for _ in 0..3 {
                    prev = first_of_month_before(prev);
                }
                (midnight(prev), midnight(first))
            }
            Period::Year => {
                let first = first_of_month(today.year(), 1);
                (
                    midnight(first_of_month(today.year() - 1, 1)),
                    midnight(first),
                )
            }
            Period::Schedule => {
                let prev = schedule
                    .and_then(|s| s.prev_before(at))
                    .map(|p| p.with_timezone(&tz).naive_local())
                    .unwrap_or(local - Duration::days(1));
                (prev, local)
            }
        };
        let mut values = BTreeMap::new();
        let mut put = |k: &str, v: ParamValue| {
            values.insert(k.to_string(), v);
        };
        put("run_date", ParamValue::Date(today));
        put("run_time", ParamValue::DateTime(trim_subsec(local)));
        put("scheduled_at", ParamValue::Instant(at));
        put("yesterday", ParamValue::Date(today - Duration::days(1)));
        put("period_start", ParamValue::DateTime(trim_subsec(start)));
        put("period_end", ParamValue::DateTime(trim_subsec(end)));
        put("period_start_date", ParamValue::Date(start.date()));
        put("period_end_date", ParamValue::Date(end.date()));
        let last = if end.time() == NaiveTime::MIN {
            end.date() - Duration::days(1)
        } else {
            end.date()
        };
        put("period_last_date", ParamValue::Date(last));
        for (k, v) in fixed {
            values.insert(k.clone(), v.clone());
        }
        RunParams {
            values,
            coverage: Coverage::of(period, trim_subsec(start), trim_subsec(end)),
        }
    }

    /// The same values for a task whose data is not for a period: file names and
    /// messages name the run date.
    pub fn as_of_run(mut self) -> RunParams {
        let date = self
            .get("run_date")
            .map(ParamValue::to_text)
            .unwrap_or_default();
        self.coverage = Coverage {
            kind: "run",
            label: date.clone(),
            first: date.clone(),
            last: date,
        };
        self
    }

    pub fn get(&self, name: &str) -> Option<&ParamValue> {
        self.values.get(name)
    }

    /// Values for file-name and folder templates: every parameter (dates as
    /// `YYYY-MM-DD`, date-times as `YYYY-MM-DD HH:MM:SS`), plus `task`, `run_id` and
    /// `period` (the [`Coverage`] label).
    pub fn template_context(&self, task: &str, run_id: &str) -> minijinja::Value {
        let mut m: BTreeMap<String, minijinja::Value> = self
            .values
            .iter()
            .map(|(k, v)| {
                let tv = match v {
                    ParamValue::Bool(b) => minijinja::Value::from(*b),
                    ParamValue::Int(i) => minijinja::Value::from(*i),
                    ParamValue::Float(f) => minijinja::Value::from(*f),
                    other => minijinja::Value::from(other.to_text()),
                };
                (k.clone(), tv)
            })
            .collect();
        m.insert("task".into(), task.into());
        m.insert("run_id".into(), run_id.into());
        m.insert("period".into(), self.coverage.label.clone().into());
        minijinja::Value::from(m)
    }
}

fn trim_subsec(t: NaiveDateTime) -> NaiveDateTime {
    t.with_nanosecond(0).unwrap_or(t)
}

fn first_of_month(year: i32, month: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, 1).expect("month in 1..=12")
}

fn first_of_month_before(first: NaiveDate) -> NaiveDate {
    if first.month() == 1 {
        first_of_month(first.year() - 1, 12)
    } else {
        first_of_month(first.year(), first.month() - 1)
    }
}

/// One `:name` occurrence in a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub name: String,
    /// Byte offset of the `:`.
    pub start: usize,
    /// Byte offset just past the name.
    pub end: usize,
}

/// Finds `:name` placeholders outside strings, quoted identifiers and comments.
pub fn scan(sql: &str) -> Vec<Placeholder> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_quoted = |mut j: usize, q: u8| -> usize {
        // j is just past the opening quote; a doubled quote is an escaped quote.
        while j < b.len() {
            if b[j] == q {
                if j + 1 < b.len() && b[j + 1] == q {
                    j += 2;
                    continue;
                }
                return j + 1;
            }
            j += 1;
        }
        b.len()
    };
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"' | b'`') => i = skip_quoted(i + 1, q),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i = (i + 2).min(b.len());
            }
            b':' if b.get(i + 1) == Some(&b':') => i += 2,
            b':' => {
                let start = i;
                let mut j = i + 1;
                if j < b.len() && (b[j].is_ascii_alphabetic() || b[j] == b'_') {
                    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                        j += 1;
                    }
                    out.push(Placeholder {
                        name: sql[start + 1..j].to_string(),
                        start,
                        end: j,
                    });
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    out
}

/// How a driver writes positional parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `?` for each occurrence (SQLite, MySQL).
    Question,
    /// `$1`, `$2`... one number per distinct name (PostgreSQL).
    Dollar,
}

/// Rewrites `:name` placeholders into positional ones. Returns the new SQL and the names in
/// binding order.
pub fn rewrite(sql: &str, style: Style) -> (String, Vec<String>) {
    let mut out = String::with_capacity(sql.len());
    let mut names: Vec<String> = Vec::new();
    let mut last = 0;
    for p in scan(sql) {
        out.push_str(&sql[last..p.start]);
        match style {
            Style::Question => {
                out.push('?');
                names.push(p.name);
            }
            Style::Dollar => {
                let idx = match names.iter().position(|n| *n == p.name) {
                    Some(i) => i + 1,
                    None => {
                        names.push(p.name);
                        names.len()
                    }
                };
                out.push('$');
                out.push_str(&idx.to_string());
            }
        }
        last = p.end;
    }
    out.push_str(&sql[last..]);
    (out, names)
}

/// Builds the local midnight of `date` in `tz` as a UTC instant (first valid time on a DST
/// change day).
pub fn local_midnight_utc(date: NaiveDate, tz: Tz) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&date.and_time(NaiveTime::MIN))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn scan_skips_strings_comments_and_casts() {
        let sql = "SELECT ':no', \"a:b\", x::text, `c:d` -- :nope\n /* :nah */ FROM t WHERE d >= :period_start AND e = :run_date AND f = :run_date";
        let names: Vec<_> = scan(sql).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["period_start", "run_date", "run_date"]);
    }

    #[test]
    fn scan_handles_escaped_quotes_and_times() {
        let sql = "SELECT 'it''s :x', '10:30' WHERE a = :p1";
        let names: Vec<_> = scan(sql).into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["p1"]);
    }

    #[test]
    fn rewrite_question_and_dollar() {
        let sql = "SELECT * FROM t WHERE a >= :s AND a < :e OR b = :s";
        assert_eq!(
            rewrite(sql, Style::Question),
            (
                "SELECT * FROM t WHERE a >= ? AND a < ? OR b = ?".to_string(),
                vec!["s".into(), "e".into(), "s".into()]
            )
        );
        assert_eq!(
            rewrite(sql, Style::Dollar),
            (
                "SELECT * FROM t WHERE a >= $1 AND a < $2 OR b = $1".to_string(),
                vec!["s".into(), "e".into()]
            )
        );
    }

    #[test]
    fn daily_period_is_yesterday_in_the_task_zone() {
        // 2026-11-25 02:30 in Shanghai is 2026-11-24T18:30Z.
        let p = RunParams::compute(
            utc("2026-11-24T18:30:00Z"),
            chrono_tz::Asia::Shanghai,
            Period::Day,
            None,
            &BTreeMap::new(),
        );
        let d = |s: &str| ParamValue::Date(s.parse().unwrap());
        let dt = |s: &str| ParamValue::DateTime(s.parse().unwrap());
        assert_eq!(p.get("run_date"), Some(&d("2026-11-25")));
        assert_eq!(p.get("yesterday"), Some(&d("2026-11-24")));
        assert_eq!(p.get("period_start"), Some(&dt("2026-11-24T00:00:00")));
        assert_eq!(p.get("period_end"), Some(&dt("2026-11-25T00:00:00")));
        assert_eq!(p.get("period_last_date"), Some(&d("2026-11-24")));
        assert_eq!(p.get("run_time"), Some(&dt("2026-11-25T02:30:00")));
    }

    #[test]
    fn month_week_quarter_year_periods() {
        let at = utc("2026-01-07T12:00:00Z"); // a Wednesday
        let get = |period| {
            let p = RunParams::compute(at, Tz::UTC, period, None, &BTreeMap::new());
            (
                p.get("period_start_date").unwrap().to_text(),
                p.get("period_end_date").unwrap().to_text(),
            )
        };
        assert_eq!(
            get(Period::Month),
            ("2025-12-01".into(), "2026-01-01".into())
        );
        assert_eq!(
            get(Period::Week),
            ("2025-12-29".into(), "2026-01-05".into())
        );
        assert_eq!(
            get(Period::Quarter),
            ("2025-10-01".into(), "2026-01-01".into())
        );
        assert_eq!(
            get(Period::Year),
            ("2025-01-01".into(), "2026-01-01".into())
        );
    }

    #[test]
    fn hour_and_schedule_periods() {
        let at = utc("2026-03-10T10:15:00Z");
        let p = RunParams::compute(at, Tz::UTC, Period::Hour, None, &BTreeMap::new());
        assert_eq!(
            p.get("period_start").unwrap().to_text(),
            "2026-03-10 09:00:00"
        );
        assert_eq!(
            p.get("period_end").unwrap().to_text(),
            "2026-03-10 10:00:00"
        );
        let s = Schedule::parse("15 */6 * * *", Tz::UTC).unwrap();
        let p = RunParams::compute(at, Tz::UTC, Period::Schedule, Some(&s), &BTreeMap::new());
        assert_eq!(
            p.get("period_start").unwrap().to_text(),
            "2026-03-10 06:15:00"
        );
        assert_eq!(
            p.get("period_end").unwrap().to_text(),
            "2026-03-10 10:15:00"
        );
    }

    #[test]
    fn coverage_names_the_period_the_data_covers() {
        let at = utc("2026-12-06T18:30:00Z"); // 2026-12-07 02:30 in Shanghai, a Monday
        let tz: Tz = "Asia/Shanghai".parse().unwrap();
        let cover = |period| RunParams::compute(at, tz, period, None, &BTreeMap::new()).coverage;
        let day = cover(Period::Day);
        assert_eq!((day.kind, day.label.as_str()), ("day", "2026-12-06"));
        assert_eq!(
            (day.first.as_str(), day.last.as_str()),
            ("2026-12-06", "2026-12-06")
        );
        let week = cover(Period::Week);
        assert_eq!(week.label, "2026-W49");
        assert_eq!(
            (week.first.as_str(), week.last.as_str()),
            ("2026-11-30", "2026-12-06")
        );
        let month = cover(Period::Month);
        assert_eq!(month.label, "2026-11");
        assert_eq!(
            (month.first.as_str(), month.last.as_str()),
            ("2026-11-01", "2026-11-30")
        );
        assert_eq!(cover(Period::Quarter).label, "2026-Q3");
        assert_eq!(cover(Period::Year).label, "2025");
        assert_eq!(cover(Period::Hour).label, "2026-12-07 01:00–02:00");
        // The ISO week of a year's first days can belong to the year before.
        let jan = RunParams::compute(
            utc("2027-01-04T01:00:00Z"),
            Tz::UTC,
            Period::Week,
            None,
            &BTreeMap::new(),
        );
        assert_eq!(jan.coverage.label, "2026-W53");
        let run = RunParams::compute(at, tz, Period::Day, None, &BTreeMap::new()).as_of_run();
        assert_eq!(
            (run.coverage.kind, run.coverage.label.as_str()),
            ("run", "2026-12-07")
        );
    }
}
