//! Where time comes from: the [`Clock`] seam.
//!
//! Scheduling, execution, delivery and alerts read "now" only from a [`Clock`] and wait
//! only through it, so tests drive time with a [`ManualClock`] and the daemon runs on the
//! [`SystemClock`]. A test here keeps `Utc::now()` out of every other file under `src/`.
//!
//! Durations that bound I/O (a statement timeout, an SMTP read, an HTTP request) are not
//! clock time: they stay on tokio's timer, because a test that stops the clock must not
//! stop a socket from timing out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A future the clock resolves.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where "now" comes from, and how to wait for a later instant.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;

    /// Resolves once [`Clock::now`] has reached `deadline` (at once when it has).
    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep;

    /// Resolves after `d` of this clock's time.
    fn sleep(&self, d: Duration) -> Sleep {
        let deadline = self.now() + chrono::Duration::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
        self.sleep_until(deadline)
    }
}

/// The machine's wall clock, for what must agree with the outside world rather than with
/// the daemon's [`Clock`]: signature timestamps that a remote service compares with its own
/// clock (DingTalk, Feishu, webhooks), bookkeeping columns (`applied_at`, `updated_at`),
/// and the command line's "now" (`ferry next`, `ferry tasks`). Everything that decides
/// what runs, when, and how long to wait takes a [`Clock`] instead.
pub fn wall_now() -> DateTime<Utc> {
    Utc::now()
}

/// A clock shared by the parts of a daemon.
pub type SharedClock = Arc<dyn Clock>;

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        wall_now()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep {
        let d = (deadline - wall_now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock that moves only when told to ([`ManualClock::advance`], [`ManualClock::set`]);
/// whatever sleeps on it wakes when its instant is reached.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let step = chrono::Duration::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
        self.now.send_modify(|t| *t += step);
    }

    /// Sets the clock (backwards too: a stepped wall clock).
    pub fn set(&self, t: DateTime<Utc>) {
        self.now.send_replace(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline: DateTime<Utc>) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock; if it is gone, nothing moves time
            // any more and the sleep never ends, as a real sleep past the end of time.
            if rx.wait_for(|t| *t >= deadline).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_when_their_instant_comes() {
        let start: DateTime<Utc> = "2026-12-07T00:00:00Z".parse().unwrap();
        let clock = ManualClock::new(start);
        use futures_util::FutureExt;
        let mut sleep = clock.sleep(Duration::from_secs(10));
        assert!((&mut sleep).now_or_never().is_none());
        clock.advance(Duration::from_secs(9));
        tokio::task::yield_now().await;
        assert!((&mut sleep).now_or_never().is_none());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(5), sleep)
            .await
            .expect("woken at its instant");
        assert_eq!(clock.now(), start + chrono::Duration::seconds(10));
        // A deadline already passed resolves at once.
        tokio::time::timeout(Duration::from_secs(5), clock.sleep_until(start))
            .await
            .expect("already due");
    }

    /// Time comes from a `Clock` (or, at the edges, [`wall_now`]): no other file reads the
    /// system clock directly.
    #[test]
    fn nothing_else_reads_the_system_clock() {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("src/clock.rs") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    for (i, line) in text.lines().enumerate() {
                        if line.contains(concat!("Utc::", "now()"))
                            || line.contains(concat!("SystemTime::", "now()"))
                        {
                            out.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(
            found.is_empty(),
            "read the time from a Clock:\n{}",
            found.join("\n")
        );
    }
}
