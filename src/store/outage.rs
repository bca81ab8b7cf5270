//! How a loop of the daemon reports a run store that keeps failing ([`Outage`]): the
//! first failure (and a different one later) at ERROR, the repeats at DEBUG instead of a
//! line per wake-up, the recovery at INFO with how long it lasted; and how long to wait
//! before trying again, so that a store that fails at once (a full disk) does not turn a
//! loop into a spin.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{debug, error, info};

use super::StoreError;

/// The first wait after a failure; it doubles with each failure in a row, up to the
/// loop's own longest sleep.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);

/// One loop's view of the store's health.
#[derive(Debug)]
pub struct Outage {
    /// What the loop does ("scheduler", "delivery worker"), first in its lines.
    what: &'static str,
    /// When the failures in a row started.
    since: Option<DateTime<Utc>>,
    failures: u32,
    /// The error last logged at ERROR.
    logged: String,
}

impl Outage {
    pub fn new(what: &'static str) -> Outage {
        Outage {
            what,
            since: None,
            failures: 0,
            logged: String::new(),
        }
    }

    /// True while the store is failing.
    pub fn failing(&self) -> bool {
        self.since.is_some()
    }

    /// Records a failure at `now`; returns how long to wait before the next attempt (at
    /// most `max`).
    pub fn failed(&mut self, e: &StoreError, now: DateTime<Utc>, max: Duration) -> Duration {
        self.since.get_or_insert(now);
        self.failures = self.failures.saturating_add(1);
        let message = e.to_string();
        if message != self.logged {
            error!(error = %message, "{}: the run store failed; trying again (the recovery is logged)", self.what);
            self.logged = message;
        } else {
            debug!(error = %message, failures = self.failures, "{}: the run store still fails", self.what);
        }
        let doublings = self.failures.saturating_sub(1).min(16);
        RETRY_FIRST.saturating_mul(1 << doublings).min(max)
    }

    /// Records a success at `now`: logs the recovery if the store was failing.
    pub fn ok(&mut self, now: DateTime<Utc>) {
        if let Some(since) = self.since.take() {
            let secs = (now - since).num_milliseconds().max(0) as f64 / 1000.0;
            info!(
                failures = self.failures,
                "{}: the run store works again after {secs:.1} s", self.what
            );
            self.failures = 0;
            self.logged.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_limit_and_reset_on_success() {
        let e = StoreError::Full { path: "x".into() };
        let now = crate::clock::wall_now();
        let max = Duration::from_secs(30);
        let mut o = Outage::new("test");
        let waits: Vec<u64> = (0..7).map(|_| o.failed(&e, now, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
        assert!(o.failing());
        o.ok(now);
        assert!(!o.failing());
        assert_eq!(o.failed(&e, now, max), RETRY_FIRST);
    }
}
