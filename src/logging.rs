//! The log: [`init`] sets up `tracing` for a command, from config.yaml's `logging:`
//! ([`LoggingSpec`]) for `ferry serve`; [`RotatingFile`] is the log file, rotated daily at
//! a chosen local time and/or past a size, keeping a count of rotated files, gzipped.
//!
//! The file mechanics (renaming `ferry.log` → `ferry.log.1` …, deleting past the kept
//! count, gzip) are the `file-rotate` crate's; the crate's own time rotation only knows
//! calendar boundaries in the machine's zone and reads the wall clock, so the daily
//! rotation at `rotate_at` in the config's zone is decided here, with the [`Clock`] seam
//! (tests move time), and asks the crate to rotate.
//!
//! Every line goes through [`crate::config::redact_text`] before it is written, on
//! standard error and in the file alike. In the run span (`task`, `run_id`,
//! `scheduled_at`, see [`crate::exec`]) every line carries those fields: as the span prefix
//! in `text`, in the `spans` list in `json`.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use file_rotate::compression::Compression;
use file_rotate::suffix::AppendCount;
use file_rotate::{ContentLimit, FileRotate};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::clock::SharedClock;
use crate::config::{LogFileSpec, LogFormat, LoggingSpec, redact_text};

/// The log file: appends, rotates at `rotate_at` (local time) and past `max_bytes`.
pub struct RotatingFile {
    inner: FileRotate<AppendCount>,
    clock: SharedClock,
    rotate_at: Option<NaiveTime>,
    tz: chrono_tz::Tz,
    /// The next daily rotation instant.
    next: Option<DateTime<Utc>>,
    /// Bytes written since the last rotation (a rotation of an empty file is skipped).
    written: u64,
}

/// The first instant after `after` at which the local clock in `tz` shows `at` (in a
/// spring-forward gap: the first valid time after it).
fn next_daily(at: NaiveTime, tz: chrono_tz::Tz, after: DateTime<Utc>) -> DateTime<Utc> {
    let mut day = after.with_timezone(&tz).date_naive();
    loop {
        let mut local = day.and_time(at);
        // A time in a DST gap does not exist that day: move on by minutes until it does.
        for _ in 0..180 {
            if let Some(t) = tz.from_local_datetime(&local).earliest() {
                let t = t.with_timezone(&Utc);
                if t > after {
                    return t;
                }
                break;
            }
            local += chrono::Duration::minutes(1);
        }
        day = day.succ_opt().unwrap_or(day);
    }
}

impl RotatingFile {
    /// Opens (creates) the log file of `spec`; a file left from before the last daily
    /// rotation time (ferry was down at it) is rotated first.
    pub fn open(spec: &LogFileSpec, clock: SharedClock) -> io::Result<RotatingFile> {
        let dir = spec
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        // Fail here with an error rather than in the crate with a panic.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.path)?;
        let limit = match spec.max_bytes {
            Some(n) => ContentLimit::BytesSurpassed(usize::try_from(n).unwrap_or(usize::MAX)),
            None => ContentLimit::None,
        };
        let compression = if spec.compress {
            Compression::OnRotate(0)
        } else {
            Compression::None
        };
        let inner = FileRotate::new(
            &spec.path,
            AppendCount::new(spec.keep),
            limit,
            compression,
            None,
        );
        let now = clock.now();
        let meta = std::fs::metadata(&spec.path)?;
        let mut file = RotatingFile {
            inner,
            clock,
            rotate_at: spec.rotate_at,
            tz: spec.tz,
            next: None,
            written: meta.len(),
        };
        if let Some(at) = spec.rotate_at {
            // The last rotation instant: the next one after a day ago.
            let last = next_daily(at, spec.tz, now - chrono::Duration::days(1));
            let last = if last > now {
                next_daily(at, spec.tz, now - chrono::Duration::days(2))
            } else {
                last
            };
            let modified: Option<DateTime<Utc>> = meta.modified().ok().map(DateTime::from);
            if meta.len() > 0 && modified.is_some_and(|m| m < last) {
                file.inner.rotate()?;
                file.written = 0;
            }
            file.next = Some(next_daily(at, spec.tz, now));
        }
        Ok(file)
    }

    fn rotate_if_due(&mut self) -> io::Result<()> {
        let (Some(next), Some(at)) = (self.next, self.rotate_at) else {
            return Ok(());
        };
        let now = self.clock.now();
        if now < next {
            return Ok(());
        }
        if self.written > 0 {
            self.inner.rotate()?;
            self.written = 0;
        }
        self.next = Some(next_daily(at, self.tz, now));
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.rotate_if_due()?;
        let text = String::from_utf8_lossy(buf);
        let line = redact_text(&text);
        self.inner.write_all(line.as_bytes())?;
        self.written += line.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Standard error for log lines, with the secrets of any URL in a line redacted: a field
/// or a library's error may hold a URL. The formatter writes each event in one call, so
/// every line is redacted whole.
struct RedactedStderr;

impl Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        io::stderr().write_all(redact_text(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Sets up the log. `filter` is used unless `FERRY_LOG` is set; `spec` gives the format
/// and the file (standard error without one). A log file that cannot be opened is an
/// error (the caller says so and stops).
pub fn init(filter: &str, spec: &LoggingSpec, clock: SharedClock) -> io::Result<()> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let (writer, ansi) = match &spec.file {
        Some(f) => (
            BoxMakeWriter::new(Mutex::new(RotatingFile::open(f, clock)?)),
            false,
        ),
        None => (
            BoxMakeWriter::new(|| RedactedStderr),
            io::stderr().is_terminal(),
        ),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(ansi);
    let layer = match spec.format {
        LogFormat::Text => fmt.with_writer(writer).boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(writer)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn spec(dir: &Path, rotate_at: Option<&str>, max_bytes: Option<u64>) -> LogFileSpec {
        LogFileSpec {
            path: dir.join("logs/ferry.log"),
            rotate_at: rotate_at.map(|t| NaiveTime::parse_from_str(t, "%H:%M").unwrap()),
            tz: chrono_tz::Asia::Shanghai,
            max_bytes,
            keep: 2,
            compress: true,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.join("logs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn gunzip(path: &Path) -> String {
        let mut out = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()),
            &mut out,
        )
        .unwrap();
        out
    }

    #[test]
    fn daily_rotation_at_the_chosen_local_time() {
        let dir = tempfile::tempdir().unwrap();
        // 02:30 in Shanghai is 18:30 UTC the day before.
        let clock = Arc::new(ManualClock::new(utc("2026-03-01T18:00:00Z")));
        let mut f =
            RotatingFile::open(&spec(dir.path(), Some("02:30"), None), clock.clone()).unwrap();
        f.write_all(b"day one\n").unwrap();
        clock.set(utc("2026-03-01T18:29:59Z"));
        f.write_all(b"still day one\n").unwrap();
        assert_eq!(names(dir.path()), ["ferry.log"]);
        clock.set(utc("2026-03-01T18:30:00Z"));
        f.write_all(b"day two\n").unwrap();
        assert_eq!(names(dir.path()), ["ferry.log", "ferry.log.1.gz"]);
        assert_eq!(
            gunzip(&dir.path().join("logs/ferry.log.1.gz")),
            "day one\nstill day one\n"
        );
        // Nothing written over a whole day: no empty rotated file.
        clock.set(utc("2026-03-03T18:31:00Z"));
        f.write_all(b"day four\n").unwrap();
        assert_eq!(
            names(dir.path()),
            ["ferry.log", "ferry.log.1.gz", "ferry.log.2.gz"]
        );
        clock.set(utc("2026-03-04T18:31:00Z"));
        f.write_all(b"day five\n").unwrap();
        // keep: 2 — the oldest is gone.
        assert_eq!(
            names(dir.path()),
            ["ferry.log", "ferry.log.1.gz", "ferry.log.2.gz"]
        );
        assert_eq!(
            gunzip(&dir.path().join("logs/ferry.log.1.gz")),
            "day four\n"
        );
        assert_eq!(gunzip(&dir.path().join("logs/ferry.log.2.gz")), "day two\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("logs/ferry.log")).unwrap(),
            "day five\n"
        );
    }

    #[test]
    fn size_rotation_and_redaction() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(utc("2026-03-01T00:00:00Z")));
        let mut f = RotatingFile::open(&spec(dir.path(), None, Some(1024)), clock.clone()).unwrap();
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..11 {
            f.write_all(line.as_bytes()).unwrap();
        }
        // The file is rotated by the first write after it grew past max_bytes.
        assert_eq!(names(dir.path()), ["ferry.log"]);
        f.write_all(b"cannot connect to postgres://app:hunter2@db/x\n")
            .unwrap();
        assert_eq!(names(dir.path()), ["ferry.log", "ferry.log.1.gz"]);
        assert_eq!(gunzip(&dir.path().join("logs/ferry.log.1.gz")).len(), 1100);
        let text = std::fs::read_to_string(dir.path().join("logs/ferry.log")).unwrap();
        assert!(text.contains("postgres://app:***@db/x"), "{text}");
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn a_file_from_before_the_last_rotation_time_is_rotated_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let s = spec(dir.path(), Some("00:00"), None);
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        std::fs::write(&s.path, "old\n").unwrap();
        // The clock is a day past the file's modification time.
        let clock = Arc::new(ManualClock::new(
            crate::clock::wall_now() + chrono::Duration::days(1),
        ));
        let _f = RotatingFile::open(&s, clock).unwrap();
        assert_eq!(names(dir.path()), ["ferry.log", "ferry.log.1.gz"]);
    }

    #[test]
    fn next_daily_steps_over_a_dst_gap() {
        let ny = chrono_tz::America::New_York;
        let at = NaiveTime::from_hms_opt(2, 30, 0).unwrap();
        // 2026-03-08 02:30 does not exist in New York: 03:00 EDT (07:00 UTC) instead.
        let got = next_daily(at, ny, utc("2026-03-08T05:00:00Z"));
        assert_eq!(got, utc("2026-03-08T07:00:00Z"));
        let got = next_daily(at, ny, got);
        assert_eq!(got, utc("2026-03-09T06:30:00Z"));
    }
}
