//! Quiet hours: daily local-time windows in which no run starts. A fire that falls in one
//! is deferred to the window's end; running work is never stopped.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use crate::config::QuietWindow;

/// If `now` is inside a window, the instant the (latest-ending) window ends.
pub fn quiet_until(windows: &[QuietWindow], now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    windows.iter().filter_map(|w| window_end(w, now)).max()
}

fn window_end(w: &QuietWindow, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = now.with_timezone(&w.tz);
    let t = local.time();
    let today = local.date_naive();
    let end_date: NaiveDate = if w.from < w.to {
        if t >= w.from && t < w.to {
            today
        } else {
            return None;
        }
    } else if t >= w.from {
        today + Duration::days(1)
    } else if t < w.to {
        today
    } else {
        return None;
    };
    let end = end_date.and_time(w.to);
    // On a DST change the end may not exist (spring gap) or exist twice: take the first
    // valid instant at or after it.
    w.tz.from_local_datetime(&end)
        .earliest()
        .or_else(|| {
            w.tz.from_local_datetime(&(end + Duration::hours(1)))
                .earliest()
        })
        .map(|e| e.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn window(from: &str, to: &str) -> QuietWindow {
        QuietWindow {
            from: NaiveTime::parse_from_str(from, "%H:%M").unwrap(),
            to: NaiveTime::parse_from_str(to, "%H:%M").unwrap(),
            tz: chrono_tz::Asia::Shanghai,
        }
    }

    #[test]
    fn same_day_window() {
        let w = [window("12:00", "13:30")];
        assert_eq!(
            quiet_until(&w, utc("2026-11-25T04:30:00Z")),
            Some(utc("2026-11-25T05:30:00Z"))
        );
        assert_eq!(quiet_until(&w, utc("2026-11-25T05:30:00Z")), None);
        assert_eq!(quiet_until(&w, utc("2026-11-25T03:59:59Z")), None);
    }

    #[test]
    fn window_across_midnight() {
        let w = [window("23:00", "06:00")];
        // 23:30 local → ends 06:00 the next day.
        assert_eq!(
            quiet_until(&w, utc("2026-11-25T15:30:00Z")),
            Some(utc("2026-11-25T22:00:00Z"))
        );
        // 02:00 local → ends 06:00 the same day.
        assert_eq!(
            quiet_until(&w, utc("2026-11-25T18:00:00Z")),
            Some(utc("2026-11-25T22:00:00Z"))
        );
        assert_eq!(quiet_until(&w, utc("2026-11-25T22:00:00Z")), None);
    }
}
