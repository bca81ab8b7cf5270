//! Least privilege, checked: what ferry's account on a datasource could change.
//!
//! Each backend's [`Source::access`] asks the database what the account may do and
//! returns an [`Access`]: the account's name and, when it is not read-only, one finding
//! per reason (`is a superuser`, `can INSERT on public.orders`, `has the FILE privilege`).
//! The checks per backend are in each backend's module and in docs/configuration.md
//! ("Read-only accounts"): PostgreSQL role attributes, table, sequence, schema and database
//! privileges, ownership, SECURITY DEFINER functions and predefined roles; MySQL/MariaDB
//! `SHOW GRANTS` with roles followed; Oracle session privileges, object grants and owned
//! objects; SQLite the connection's own read-only state.
//!
//! `ferry sources test` prints the verdict. A datasource with `require_read_only` runs a
//! task only after [`require_read_only`] found its account read-only: the verdict is kept
//! per datasource for [`RECHECK_AFTER`] (and forgotten when `ferry serve` reloads its
//! configuration, [`forget_verdicts`]), by its name, type and redacted URL, so a changed
//! account is checked at once; a refusal is not kept, so an account the DBA has
//! fixed is used by the next run.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{ErrorKind, Source, SourceError};
use crate::clock::Clock;
use crate::config::{Config, DatasourceSpec};

/// How long a read-only verdict is trusted before the next run checks again.
pub const RECHECK_AFTER: Duration = Duration::from_secs(10 * 60);

/// How long the privilege checks of one datasource may run on the server.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the docs show how to make a read-only account.
pub const HOWTO: &str = "docs/configuration.md#read-only-accounts";

/// What ferry's account on a datasource may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// Who the database says ferry is (`user ferry`, `user 'ferry'@'%'`).
    pub account: String,
    /// Why the account is not read-only, one reason each, to be read after the account
    /// (`is a superuser`, `can INSERT on public.orders`). Empty: read-only.
    pub findings: Vec<String>,
}

impl Access {
    /// An account that can only read.
    pub fn read_only(account: impl Into<String>) -> Access {
        Access {
            account: account.into(),
            findings: Vec::new(),
        }
    }

    pub fn is_read_only(&self) -> bool {
        self.findings.is_empty()
    }

    /// Each finding as a sentence (`user ferry can INSERT on public.orders`).
    pub fn sentences(&self) -> Vec<String> {
        self.findings
            .iter()
            .map(|f| format!("{} {f}", self.account))
            .collect()
    }
}

/// `n` and the noun, singular or plural (`1 table`, `3 tables`).
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `privileges on the example`, or `on N things, e.g. the example` when there are more.
pub fn on_objects(privileges: &str, n: u64, example: &str, one: &str, many: &str) -> String {
    if n <= 1 {
        format!("{privileges} on {example}")
    } else {
        format!("{privileges} on {}, e.g. {example}", count(n, one, many))
    }
}

/// Read-only verdicts by datasource, each with the time it was found.
#[derive(Debug, Default)]
struct Verdicts {
    found: HashMap<String, DateTime<Utc>>,
}

impl Verdicts {
    /// Whether a read-only verdict for `key` found at most [`RECHECK_AFTER`] before `now`
    /// is kept.
    fn fresh(&self, key: &str, now: DateTime<Utc>) -> bool {
        self.found.get(key).is_some_and(|at| {
            let age = (now - *at).to_std().unwrap_or(Duration::MAX);
            *at <= now && age < RECHECK_AFTER
        })
    }

    fn remember(&mut self, key: String, now: DateTime<Utc>) {
        self.found.insert(key, now);
    }

    fn forget(&mut self, key: &str) {
        self.found.remove(key);
    }
}

static VERDICTS: LazyLock<Mutex<Verdicts>> = LazyLock::new(Default::default);

/// The datasource as the cache knows it: its name, type and where it points (the URL
/// without its password), so that a changed account is checked again.
fn verdict_key(name: &str, spec: &DatasourceSpec) -> String {
    format!("{name}\n{}\n{}", spec.kind(), spec.location())
}

/// Forgets the kept verdicts of `config`'s datasources: their next runs check again
/// (`ferry serve` calls this when it reloads its configuration).
pub fn forget_verdicts(config: &Config) {
    let mut verdicts = VERDICTS.lock().expect("verdicts lock");
    for (name, spec) in &config.datasources {
        verdicts.forget(&verdict_key(name, spec));
    }
}

/// For a datasource with `require_read_only`: `Ok` when its account is read-only (as
/// found within [`RECHECK_AFTER`], or checked now); otherwise a [`ErrorKind::NotReadOnly`]
/// error with every reason, or the error that stopped the check.
pub async fn require_read_only(
    name: &str,
    spec: &DatasourceSpec,
    source: &dyn Source,
    clock: &dyn Clock,
) -> Result<(), SourceError> {
    let key = verdict_key(name, spec);
    if VERDICTS
        .lock()
        .expect("verdicts lock")
        .fresh(&key, clock.now())
    {
        return Ok(());
    }
    let access = source.access().await?;
    let mut verdicts = VERDICTS.lock().expect("verdicts lock");
    if access.is_read_only() {
        verdicts.remember(key, clock.now());
        Ok(())
    } else {
        verdicts.forget(&key);
        Err(not_read_only(name, &access))
    }
}

/// The error of a run refused because its account could write.
pub fn not_read_only(name: &str, access: &Access) -> SourceError {
    SourceError::new(
        name,
        ErrorKind::NotReadOnly,
        format!(
            "require_read_only is set, but {} is not read-only ({}): give ferry an account \
             that can only read (see {HOWTO}) or remove require_read_only from the datasource",
            access.account,
            access.findings.join("; ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_verdict_is_kept_for_ten_minutes() {
        let t0 = Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap();
        let mut v = Verdicts::default();
        assert!(!v.fresh("pg", t0));
        v.remember("pg".into(), t0);
        assert!(v.fresh("pg", t0));
        assert!(v.fresh("pg", t0 + chrono::Duration::seconds(599)));
        assert!(!v.fresh("pg", t0 + chrono::Duration::seconds(600)));
        assert!(!v.fresh("other", t0));
        // A clock that went back does not make an old verdict young.
        assert!(!v.fresh("pg", t0 - chrono::Duration::seconds(1)));
        v.forget("pg");
        assert!(!v.fresh("pg", t0));
    }

    #[test]
    fn findings_read_after_the_account() {
        let a = Access {
            account: "user ferry".into(),
            findings: vec![
                "is a superuser".into(),
                on_objects("can INSERT", 1, "public.orders", "table", "tables"),
                on_objects("can DELETE", 3, "public.a", "table", "tables"),
            ],
        };
        assert!(!a.is_read_only());
        assert_eq!(
            a.sentences(),
            [
                "user ferry is a superuser",
                "user ferry can INSERT on public.orders",
                "user ferry can DELETE on 3 tables, e.g. public.a"
            ]
        );
        assert_eq!(
            not_read_only("pg", &a).to_string(),
            "datasource `pg`: require_read_only is set, but user ferry is not read-only (is a \
             superuser; can INSERT on public.orders; can DELETE on 3 tables, e.g. public.a): \
             give ferry an account that can only read (see \
             docs/configuration.md#read-only-accounts) or remove require_read_only from the \
             datasource"
        );
        assert!(Access::read_only("user r").is_read_only());
    }
}
