//! [`SourceError`]: what went wrong with a datasource, as a kind that code can act on
//! ([`ErrorKind`]: connect, auth, timeout, cancelled, query, config, not read-only) and a message for
//! people that names the datasource and says what to do.
//!
//! Each backend classifies its driver's errors where it makes them (SQLSTATE, MySQL error
//! numbers, ORA- codes) and keeps the driver's error as the cause
//! ([`std::error::Error::source`]); the message is rendered once, at the edge, from
//! `Display` (`datasource `pg`: cannot connect to …`).

use std::sync::Arc;

/// What kind of failure a [`SourceError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The datasource's settings cannot work (a URL that does not parse, a CA file that
    /// cannot be read): fix the configuration.
    Config,
    /// The server could not be reached or the session broke (refused, no answer within
    /// `connect_timeout`, TLS refused, connection lost, unknown database).
    Connect,
    /// The server refused the account (wrong password, unknown or locked user, expired
    /// password).
    Auth,
    /// The server stopped the statement at its statement timeout (the task's timeout plus
    /// a margin).
    Timeout,
    /// ferry stopped the statement (the run was cancelled: timeout, shutdown, `replace`).
    Cancelled,
    /// The server refused or failed the statement (syntax, permissions, a write in the
    /// read-only transaction), or a value could not be read.
    Query,
    /// The datasource has `require_read_only` and its account could write: the run is
    /// refused before its query (see [`super::access`]).
    NotReadOnly,
}

impl ErrorKind {
    /// A short name for logs and tests (`connect`, `auth`, …).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Connect => "connect",
            ErrorKind::Auth => "auth",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Query => "query",
            ErrorKind::NotReadOnly => "not-read-only",
        }
    }
}

/// The driver's error behind a [`SourceError`], shared so that the error stays `Clone`.
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// An error from a datasource; the message names the datasource.
#[derive(Debug, Clone, thiserror::Error)]
#[error("datasource `{datasource}`: {message}")]
pub struct SourceError {
    pub datasource: String,
    pub kind: ErrorKind,
    /// What happened and what to do, for people (without the datasource's name).
    pub message: String,
    /// The driver's error, when there is one.
    #[source]
    pub cause: Option<Cause>,
}

impl SourceError {
    /// An error with `message`, in which any URL is redacted: messages quote driver
    /// errors, and a driver may echo the URL it was given.
    pub fn new(datasource: &str, kind: ErrorKind, message: impl Into<String>) -> SourceError {
        SourceError {
            datasource: datasource.to_string(),
            kind,
            message: crate::config::redact_text(&message.into()),
            cause: None,
        }
    }

    /// The same error with the driver's error as its cause.
    pub fn caused_by(
        mut self,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> SourceError {
        self.cause = Some(Arc::new(cause));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_datasource_and_the_cause_is_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = SourceError::new("pg", ErrorKind::Connect, "cannot connect to x: refused")
            .caused_by(io);
        assert_eq!(
            e.to_string(),
            "datasource `pg`: cannot connect to x: refused"
        );
        assert_eq!(e.kind, ErrorKind::Connect);
        let cause = std::error::Error::source(&e).expect("a cause");
        assert_eq!(cause.to_string(), "refused");
        // The edge's one-line chain does not repeat what the message already says.
        assert_eq!(
            super::super::error_chain(&e),
            "datasource `pg`: cannot connect to x: refused"
        );
        assert_eq!(ErrorKind::Auth.name(), "auth");
    }

    #[test]
    fn a_url_echoed_by_a_driver_is_redacted() {
        let e = SourceError::new(
            "pg",
            ErrorKind::Config,
            "invalid url: postgres://u:hunter2@h/db?password=hunter3",
        );
        assert_eq!(
            e.to_string(),
            "datasource `pg`: invalid url: postgres://u:***@h/db?password=***"
        );
    }
}
