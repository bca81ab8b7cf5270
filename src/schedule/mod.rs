//! Schedules: cron expressions evaluated in a task's IANA time zone.
//!
//! Parsing uses croner 4 (5-field cron, optional seconds and year fields, `L`, `W`, `#`,
//! names, `@daily`-style nicknames, Quartz-style `0/5` steps). Fire times are computed in
//! the task's zone and returned as UTC instants; croner follows the cronie rules for
//! daylight-saving changes (a time in the spring gap fires at the first valid time after
//! it, a time in the autumn overlap fires once). See `docs/scheduling.md`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed cron expression bound to a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
    tz: Tz,
}

/// Upper bound for any enumeration of fire times, so that a bad clock or a huge `--count`
/// can never loop or allocate without bound.
pub const MAX_ENUMERATION: usize = 10_000;

impl Schedule {
    /// Parses `expr` for zone `tz`. The error text is meant for users.
    pub fn parse(expr: &str, tz: Tz) -> Result<Schedule, String> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err("the cron expression is empty".into());
        }
        let cron = parser().parse(trimmed).map_err(|e| {
            format!(
                "invalid cron expression `{trimmed}`: {}",
                cron_message(trimmed, &e)
            )
        })?;
        // A pattern that never matches (`0 0 30 2 *`) parses but has no fire time.
        let probe = crate::clock::wall_now().with_timezone(&tz);
        if cron.find_next_occurrence(&probe, false).is_err() {
            return Err(format!(
                "cron expression `{trimmed}` never fires (no matching date)"
            ));
        }
        Ok(Schedule {
            expr: trimmed.to_string(),
            cron,
            tz,
        })
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first fire strictly after `after`, or `None` if there is none.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.tz);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The latest fire strictly before `before`, or `None`.
    pub fn prev_before(&self, before: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = before.with_timezone(&self.tz);
        self.cron
            .find_previous_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Up to `count` fires after `after` (capped at [`MAX_ENUMERATION`]).
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count.min(MAX_ENUMERATION));
        let mut cursor = after;
        while out.len() < count.min(MAX_ENUMERATION) {
            match self.next_after(cursor) {
                Some(t) => {
                    out.push(t);
                    cursor = t;
                }
                None => break,
            }
        }
        out
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .sloppy_ranges(true)
        .build()
}

/// The fields of a 5-, 6- or 7-field expression, by name, with what each accepts.
const FIELDS_5: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];

fn field_names(count: usize) -> Option<Vec<&'static str>> {
    let mut names = FIELDS_5.to_vec();
    match count {
        5 => {}
        6 => names.insert(0, "second"),
        7 => {
            names.insert(0, "second");
            names.push("year");
        }
        _ => return None,
    }
    Some(names)
}

fn allowed(field: &str) -> &'static str {
    match field {
        "second" | "minute" => "0-59",
        "hour" => "0-23",
        "day-of-month" => "1-31, `L` (last day) or a day with `W` (nearest weekday, `15W`)",
        "month" => "1-12 or the names JAN-DEC",
        "day-of-week" => {
            "0-7 (0 and 7 are Sunday) or the names SUN, MON, TUE, WED, THU, FRI, SAT, \
             with `L` (last, `5L`) or `#` (nth, `MON#2`)"
        }
        _ => "1-5000",
    }
}

/// Says which field of `expr` is wrong, with its value and what it accepts, by parsing
/// each field alone (the others `*`); croner's own messages name neither.
fn cron_message(expr: &str, e: &croner::errors::CronError) -> String {
    const SHAPE: &str =
        "fields: [second] minute hour day-of-month month day-of-week [year], e.g. `30 2 * * *`";
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let Some(names) = field_names(fields.len()).filter(|_| !expr.starts_with('@')) else {
        if expr.starts_with('@') {
            return format!(
                "unknown nickname `{expr}` (use @yearly, @annually, @monthly, @weekly, @daily or @hourly)"
            );
        }
        return format!(
            "it has {} field{}, cron needs 5 to 7 ({SHAPE})",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" }
        );
    };
    let fails = |i: usize, value: &str| {
        let mut probe: Vec<&str> = vec!["*"; fields.len()];
        probe[i] = value;
        parser().parse(&probe.join(" ")).is_err()
    };
    for (i, field) in fields.iter().enumerate() {
        if !fails(i, field) {
            continue;
        }
        // The first item of a list that fails alone is the one to name.
        let value = field
            .split(',')
            .find(|item| !item.is_empty() && fails(i, item))
            .unwrap_or(field);
        let name = names[i];
        return format!(
            "the {name} field (field {} of {}) has `{value}`; allowed: {}; \
             every field also takes `*`, lists `1,5`, ranges `1-5` and steps `*/10`",
            i + 1,
            fields.len(),
            allowed(name)
        );
    }
    // No field fails alone: say what croner says, in lowercase.
    let text = e.to_string();
    let text = text
        .strip_prefix("Invalid pattern: ")
        .or_else(|| text.strip_prefix("Component error: "))
        .unwrap_or(&text)
        .trim_end_matches('.');
    let mut chars = text.chars();
    let msg: String = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    };
    format!("{msg} ({SHAPE})")
}

/// Parses an IANA zone name (`Asia/Shanghai`, `UTC`).
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    name.trim().parse::<Tz>().map_err(|_| {
        format!("unknown time zone `{name}` (use an IANA name such as `Asia/Shanghai` or `UTC`)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_in_shanghai_fires_at_local_time() {
        let s = Schedule::parse("30 2 * * *", chrono_tz::Asia::Shanghai).unwrap();
        let next = s.next_after(utc("2026-11-25T00:00:00Z")).unwrap();
        assert_eq!(next, utc("2026-11-25T18:30:00Z"));
    }

    #[test]
    fn spring_forward_gap_runs_once_after_the_gap() {
        let s = Schedule::parse("30 2 * * *", chrono_tz::America::New_York).unwrap();
        let fires = s.upcoming(utc("2025-03-08T12:00:00Z"), 3);
        assert_eq!(
            fires,
            vec![
                utc("2025-03-09T07:00:00Z"),
                utc("2025-03-10T06:30:00Z"),
                utc("2025-03-11T06:30:00Z")
            ]
        );
    }

    #[test]
    fn fall_back_overlap_runs_once() {
        let s = Schedule::parse("30 1 * * *", chrono_tz::America::New_York).unwrap();
        let fires = s.upcoming(utc("2025-11-01T12:00:00Z"), 3);
        assert_eq!(
            fires,
            vec![
                utc("2025-11-02T05:30:00Z"),
                utc("2025-11-03T06:30:00Z"),
                utc("2025-11-04T06:30:00Z")
            ]
        );
    }

    #[test]
    fn bad_expressions_are_explained() {
        let e = Schedule::parse("0 61 * * *", Tz::UTC).unwrap_err();
        assert!(e.contains("invalid cron expression `0 61 * * *`"), "{e}");
        let said = |expr: &str| Schedule::parse(expr, Tz::UTC).unwrap_err();
        let e = said("0 8 * * MONDAY");
        assert!(
            e.contains("the day-of-week field (field 5 of 5) has `MONDAY`; allowed: 0-7")
                && e.contains("SUN, MON"),
            "{e}"
        );
        let e = said("0 25 * * *");
        assert!(
            e.contains("the hour field (field 2 of 5) has `25`; allowed: 0-23; "),
            "{e}"
        );
        let e = said("0 8 * JANUARY,FEB *");
        assert!(
            e.contains(
                "the month field (field 4 of 5) has `JANUARY`; allowed: 1-12 or the names JAN-DEC"
            ),
            "{e}"
        );
        let e = said("60 0 8 * * *");
        assert!(
            e.contains("the second field (field 1 of 6) has `60`"),
            "{e}"
        );
        let e = said("0 0 0 * * * 1,x");
        assert!(e.contains("the year field (field 7 of 7) has `x`"), "{e}");
        let e = said("*/0 * 0 * *");
        assert!(
            e.contains("the minute field (field 1 of 5) has `*/0`"),
            "{e}"
        );
        let e = said("0 0 * *");
        assert!(e.contains("it has 4 fields, cron needs 5 to 7"), "{e}");
        let e = said("@fortnightly");
        assert!(e.contains("unknown nickname `@fortnightly`"), "{e}");
        assert!(Schedule::parse("", Tz::UTC).is_err());
        assert!(
            Schedule::parse("0 0 30 2 *", Tz::UTC)
                .unwrap_err()
                .contains("never fires")
        );
    }

    #[test]
    fn nicknames_and_quartz_steps_parse() {
        for e in [
            "@daily",
            "@hourly",
            "0/5 * * * *",
            "0 0 L * *",
            "0 0 * * 5#L",
            "0 0 15W * *",
        ] {
            Schedule::parse(e, Tz::UTC).unwrap_or_else(|err| panic!("{e}: {err}"));
        }
    }

    #[test]
    fn last_weekday_and_nth_weekday_fields() {
        let first = |expr: &str, after: &str| {
            Schedule::parse(expr, Tz::UTC)
                .unwrap()
                .next_after(utc(after))
                .unwrap()
        };
        // Last day of the month.
        assert_eq!(
            first("0 0 L * *", "2026-01-15T00:00:00Z"),
            utc("2026-01-31T00:00:00Z")
        );
        assert_eq!(
            first("0 0 L * *", "2026-02-01T00:00:00Z"),
            utc("2026-02-28T00:00:00Z")
        );
        assert_eq!(
            first("0 0 L * *", "2028-02-01T00:00:00Z"),
            utc("2028-02-29T00:00:00Z")
        );
        // Nearest weekday to the 15th: 2026-01-15 is a Thursday; 2026-02-15 a Sunday → Mon 16th.
        assert_eq!(
            first("0 0 15W * *", "2026-01-01T00:00:00Z"),
            utc("2026-01-15T00:00:00Z")
        );
        assert_eq!(
            first("0 0 15W * *", "2026-02-01T00:00:00Z"),
            utc("2026-02-16T00:00:00Z")
        );
        // Last Friday, and the second Monday.
        assert_eq!(
            first("0 0 * * 5#L", "2026-01-01T00:00:00Z"),
            utc("2026-01-30T00:00:00Z")
        );
        assert_eq!(
            first("0 0 * * MON#2", "2026-01-01T00:00:00Z"),
            utc("2026-01-12T00:00:00Z")
        );
        // Day-of-month OR day-of-week (Vixie cron), and `+` for AND.
        assert_eq!(
            first("0 8 1 * MON", "2026-06-01T09:00:00Z"),
            utc("2026-06-08T08:00:00Z")
        );
        assert_eq!(
            first("0 8 1 * +MON", "2026-01-01T00:00:00Z"),
            utc("2026-06-01T08:00:00Z")
        );
        // Seconds (6 fields) and year (7 fields).
        assert_eq!(
            first("*/15 * * * * *", "2026-01-01T00:00:01Z"),
            utc("2026-01-01T00:00:15Z")
        );
        assert_eq!(
            first("0 0 0 1 1 * 2030", "2026-01-01T00:00:00Z"),
            utc("2030-01-01T00:00:00Z")
        );
    }

    #[test]
    fn upcoming_is_bounded() {
        let s = Schedule::parse("* * * * * *", Tz::UTC).unwrap();
        assert_eq!(
            s.upcoming(Utc.timestamp_opt(0, 0).unwrap(), usize::MAX)
                .len(),
            MAX_ENUMERATION
        );
    }

    #[test]
    fn zones_are_checked() {
        assert!(parse_zone("Mars/Base").unwrap_err().contains("Mars/Base"));
        assert_eq!(
            parse_zone("Europe/Berlin").unwrap(),
            chrono_tz::Europe::Berlin
        );
    }
}
