//! Which fires of a task to run, and which to record as missed, when the scheduler looks at
//! a task at time `now` and has handled every fire up to `cursor`.
//!
//! Pure code, so that every misfire rule is tested with plain values:
//! - a fire at most [`LATE_THRESHOLD`] late is on time and runs;
//! - `catch_up: latest` (default): of the fires missed since the cursor only the latest
//!   runs, and only if it is at most `misfire_grace` late; the others are recorded `missed`;
//! - `catch_up: all`: every missed fire runs, oldest first, if there are at most
//!   `limit` of them; beyond that only the latest runs, with a warning;
//! - every enumeration is bounded: a clock set 30 years ahead costs at most `limit + 1`
//!   steps forward and [`MISSED_RECORD_LIMIT`] steps back.

use chrono::{DateTime, Duration, Utc};

use crate::config::CatchUp;
use crate::schedule::Schedule;

/// A fire later than this is a misfire (Quartz uses the same 60 s).
pub const LATE_THRESHOLD: Duration = Duration::seconds(60);

/// When more than `catch_up_limit` fires were missed, at most this many of the latest are
/// recorded one by one; the rest are summarised in a warning. (Up to `catch_up_limit` are
/// recorded when there are not more than that.)
pub const MISSED_RECORD_LIMIT: usize = 100;

/// The decision for one task at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Fires to run, oldest first.
    pub run: Vec<DateTime<Utc>>,
    /// Fires to record as missed, oldest first.
    pub missed: Vec<DateTime<Utc>>,
    /// The reason recorded on each missed fire.
    pub missed_reason: String,
    /// Things worth a log line (misfires, clock jumps, caps).
    pub warnings: Vec<String>,
}

/// Plans the fires of `schedule` in `(cursor, now]`.
pub fn plan(
    schedule: &Schedule,
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: std::time::Duration,
    catch_up: CatchUp,
    limit: usize,
) -> Plan {
    let mut out = Plan::default();
    if now <= cursor {
        return out;
    }
    // Forward from the cursor, at most limit + 1 fires.
    let mut fires = Vec::new();
    let mut t = cursor;
    while fires.len() <= limit {
        match schedule.next_after(t) {
            Some(f) if f <= now => {
                fires.push(f);
                t = f;
            }
            _ => break,
        }
    }
    let Some(&first_latest) = fires.last() else {
        return out;
    };
    let overflow = fires.len() > limit;
    let latest = if overflow {
        latest_at_or_before(schedule, now).unwrap_or(first_latest)
    } else {
        first_latest
    };
    let grace = Duration::from_std(grace).unwrap_or(Duration::MAX);
    let late = now - latest;
    let zone = schedule.tz();
    let show = |t: DateTime<Utc>| {
        t.with_timezone(&zone)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    };

    // The fires before `latest`, oldest first (all of them, or the most recent ones).
    let earlier: Vec<DateTime<Utc>> = if overflow {
        let mut back = Vec::new();
        let mut t = latest;
        while back.len() < MISSED_RECORD_LIMIT {
            match schedule.prev_before(t) {
                Some(p) if p > cursor => {
                    back.push(p);
                    t = p;
                }
                _ => break,
            }
        }
        back.reverse();
        out.warnings.push(format!(
            "more than {limit} fires were missed since {} (downtime or a clock jump): the latest {} are recorded as missed, older ones are not listed",
            show(cursor),
            back.len()
        ));
        back
    } else {
        fires[..fires.len() - 1].to_vec()
    };

    match catch_up {
        CatchUp::All if !overflow => {
            if fires.len() > 1 {
                out.warnings.push(format!(
                    "catching up {} missed fires, oldest first (catch_up: all)",
                    fires.len()
                ));
            }
            out.run = fires;
        }
        CatchUp::All => {
            out.warnings.push(format!(
                "catch_up: all replays at most {limit} fires: running only the latest ({})",
                show(latest)
            ));
            out.missed = earlier;
            out.missed_reason = format!(
                "missed while ferry was not running; more than {limit} fires to replay, only the latest ran"
            );
            out.run = vec![latest];
        }
        CatchUp::Latest => {
            out.missed = earlier;
            out.missed_reason =
                "missed while ferry was not running; only the latest missed fire may run".into();
            if late <= LATE_THRESHOLD {
                out.run = vec![latest];
            } else if late <= grace {
                out.warnings.push(format!(
                    "the fire at {} is {}s late: running it once (within misfire_grace)",
                    show(latest),
                    late.num_seconds()
                ));
                out.run = vec![latest];
            } else {
                out.warnings.push(format!(
                    "the fire at {} is {}s late, beyond misfire_grace ({}s): recorded as missed",
                    show(latest),
                    late.num_seconds(),
                    grace.num_seconds()
                ));
                out.missed.push(latest);
                out.missed_reason = format!(
                    "missed while ferry was not running; older than misfire_grace ({}s)",
                    grace.num_seconds()
                );
            }
        }
    }
    out
}

/// The latest fire at or before `now`.
pub fn latest_at_or_before(schedule: &Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let mut p = schedule.prev_before(now + Duration::seconds(1))?;
    while p > now {
        p = schedule.prev_before(p)?;
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Tz;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn every_5() -> Schedule {
        Schedule::parse("*/5 * * * *", Tz::UTC).unwrap()
    }

    const MIN: u64 = 60;

    #[test]
    fn on_time_fire_runs() {
        let p = plan(
            &every_5(),
            utc("2026-01-01T10:00:00Z"),
            utc("2026-01-01T10:05:00.010Z"),
            std::time::Duration::from_secs(30 * MIN),
            CatchUp::Latest,
            100,
        );
        assert_eq!(p.run, [utc("2026-01-01T10:05:00Z")]);
        assert!(p.missed.is_empty() && p.warnings.is_empty());
    }

    #[test]
    fn nothing_due_nothing_planned() {
        let p = plan(
            &every_5(),
            utc("2026-01-01T10:00:00Z"),
            utc("2026-01-01T10:04:59Z"),
            std::time::Duration::from_secs(60),
            CatchUp::Latest,
            100,
        );
        assert_eq!(p, Plan::default());
        // A clock that went back plans nothing.
        let p = plan(
            &every_5(),
            utc("2026-01-01T10:00:00Z"),
            utc("2026-01-01T09:00:00Z"),
            std::time::Duration::from_secs(60),
            CatchUp::Latest,
            100,
        );
        assert_eq!(p, Plan::default());
    }

    /// reliability.md §8 case 1: down 10:01–10:16, grace 30m → one run for 10:15.
    #[test]
    fn single_catch_up_within_grace() {
        let p = plan(
            &every_5(),
            utc("2026-01-01T10:00:00Z"),
            utc("2026-01-01T10:16:00Z"),
            std::time::Duration::from_secs(30 * MIN),
            CatchUp::Latest,
            100,
        );
        assert_eq!(p.run, [utc("2026-01-01T10:15:00Z")]);
        // 60 s late is still on time; later than that is a misfire run within grace.
        let p = plan(
            &every_5(),
            utc("2026-01-01T10:00:00Z"),
            utc("2026-01-01T10:17:00Z"),
            std::time::Duration::from_secs(30 * MIN),
            CatchUp::Latest,
            100,
        );
        assert_eq!(p.run, [utc("2026-01-01T10:15:00Z")]);
        assert_eq!(
            p.missed,
            [utc("2026-01-01T10:05:00Z"), utc("2026-01-01T10:10:00Z")]
        );
        assert!(
            p.warnings[0].contains("running it once"),
            "{:?}",
            p.warnings
        );
    }

    /// Case 2: grace 2m, down until 10:18 → nothing runs, three missed.
    #[test]
    fn beyond_grace_nothing_runs() {
        let p = plan(
            &every_5(),
            utc("2026-01-01T10:00:00Z"),
            utc("2026-01-01T10:18:00Z"),
            std::time::Duration::from_secs(2 * MIN),
            CatchUp::Latest,
            100,
        );
        assert!(p.run.is_empty());
        assert_eq!(
            p.missed,
            [
                utc("2026-01-01T10:05:00Z"),
                utc("2026-01-01T10:10:00Z"),
                utc("2026-01-01T10:15:00Z")
            ]
        );
        assert!(p.missed_reason.contains("misfire_grace"));
    }

    /// Case 3: hourly, catch_up all, cap 100: 72 misses replay; 168 do not.
    #[test]
    fn bounded_catch_up_all() {
        let hourly = Schedule::parse("0 * * * *", Tz::UTC).unwrap();
        let grace = std::time::Duration::from_secs(30 * MIN);
        let p = plan(
            &hourly,
            utc("2026-01-01T00:00:00Z"),
            utc("2026-01-04T00:30:00Z"),
            grace,
            CatchUp::All,
            100,
        );
        assert_eq!(p.run.len(), 72);
        assert_eq!(p.run[0], utc("2026-01-01T01:00:00Z"));
        assert_eq!(p.run[71], utc("2026-01-04T00:00:00Z"));
        assert!(p.run.windows(2).all(|w| w[0] < w[1]));
        assert!(p.missed.is_empty());

        let p = plan(
            &hourly,
            utc("2026-01-01T00:00:00Z"),
            utc("2026-01-08T00:30:00Z"),
            grace,
            CatchUp::All,
            100,
        );
        assert_eq!(p.run, [utc("2026-01-08T00:00:00Z")]);
        assert_eq!(p.missed.len(), MISSED_RECORD_LIMIT);
        assert!(
            p.warnings.iter().any(|w| w.contains("at most 100")),
            "{:?}",
            p.warnings
        );
    }

    /// Case 3, last part: a clock 30 years ahead is decided quickly and with bounded memory.
    #[test]
    fn clock_thirty_years_ahead_is_bounded() {
        let every_minute = Schedule::parse("* * * * *", Tz::UTC).unwrap();
        let started = std::time::Instant::now();
        let p = plan(
            &every_minute,
            utc("2026-01-01T00:00:00Z"),
            utc("2056-01-01T00:00:30Z"),
            std::time::Duration::from_secs(30 * MIN),
            CatchUp::All,
            100,
        );
        assert!(
            started.elapsed() < std::time::Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(p.run, [utc("2056-01-01T00:00:00Z")]);
        assert_eq!(p.missed.len(), MISSED_RECORD_LIMIT);
        assert!(
            p.warnings.iter().any(|w| w.contains("clock jump")),
            "{:?}",
            p.warnings
        );
        let p = plan(
            &every_minute,
            utc("2026-01-01T00:00:00Z"),
            utc("2056-01-01T00:00:30Z"),
            std::time::Duration::from_secs(30 * MIN),
            CatchUp::Latest,
            100,
        );
        assert_eq!(p.run, [utc("2056-01-01T00:00:00Z")]);
        assert_eq!(p.missed.len(), MISSED_RECORD_LIMIT);
    }

    #[test]
    fn latest_at_or_before_is_inclusive() {
        let s = every_5();
        assert_eq!(
            latest_at_or_before(&s, utc("2026-01-01T10:05:00Z")),
            Some(utc("2026-01-01T10:05:00Z"))
        );
        assert_eq!(
            latest_at_or_before(&s, utc("2026-01-01T10:04:59Z")),
            Some(utc("2026-01-01T10:00:00Z"))
        );
    }
}
