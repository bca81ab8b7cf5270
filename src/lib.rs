//! ferry: a cron-driven scheduled export engine.
//!
//! Operators describe recurring exports as YAML files (`tasks/*.yaml`): a cron schedule
//! with a time zone, a datasource, a query, an output format and where the result goes.
//! ferry runs each task on time, streams the result in chunks into CSV or XLSX files with
//! flat memory, publishes them atomically, records every run, and notifies people.
//!
//! Data flows one way through these modules (read them in this order):
//!
//! - [`config`]: `config.yaml` + `tasks/*.yaml` → raw serde types → validated specs, with
//!   every problem reported as `file:line:col: field: message`; secrets in URLs redacted
//!   wherever shown (`config::redact_url`); each plugin's checks live
//!   beside it (`source/config.rs`, `notify/config.rs`, ...), gathered in [`plugins`].
//! - [`fsread`]: reading the files config names (config, tasks, queries, templates, CA
//!   files, seed scripts): regular files only, of bounded size, never blocking.
//! - [`clock`]: the `Clock` seam (system and manual clocks): the only source of "now".
//! - [`schedule`]: cron expressions in a task's time zone (croner).
//! - [`scheduler`]: what is due when (misfires, quiet hours, deferrals) and the worker
//!   slots; `ferry serve` drives it.
//! - [`suggest`]: "did you mean ...?" for mistyped names.
//! - [`params`]: typed query parameters (`:run_date`, `:period_start`, ...).
//! - [`sqlgate`]: the SQL read-only gate (sqlparser): one read-only query, or refused;
//!   `sql_gate: strict` allows only pure functions.
//! - [`source`]: the `Source` trait (columns first, then rows in chunks), the shared
//!   streaming pump, typed `SourceError`s (connect, auth, timeout, cancelled, query, not
//!   read-only), what the account could change (`access`, for `require_read_only`), and
//!   SQLite, PostgreSQL, MySQL and (cargo feature `oracle`) Oracle.
//! - [`value`]: the exact value model every source produces and every writer consumes.
//! - [`format`]: the `FormatWriter` trait, CSV and XLSX writers, zip, atomic publishing.
//! - [`store`]: the `Store` traits by concern (claim per `(task, scheduled_at)`), opened by
//!   URL ([`store::open`]); embedded SQLite.
//! - [`notify`]: the `Notifier` trait, message reports, the `outbox` and `email` channels.
//! - [`template`]: minijinja templates for file names, folders and messages.
//! - [`exec`]: runs one task end to end.
//! - [`tls`]: TLS client settings (trusted roots, `ca_file`, certificate checks) for
//!   the email channel and the PostgreSQL and MySQL sources.
//! - [`links`]: signed download links (opaque ids, HMAC-SHA256 with an expiry).
//! - [`logging`]: the log (`logging:`): text or JSON lines, a file rotated daily at a
//!   chosen time and/or by size, gzipped, every line redacted.
//! - [`access`]: who may do what through the API: roles, argon2id passwords, API
//!   tokens, sessions with CSRF tokens, the login limits, the audit trail.
//! - [`edit`]: writing task files for the API and `ferry tasks restore`: validated
//!   with `ferry validate`'s checks, written atomically, every version kept.
//! - [`server`]: the HTTP server of `ferry serve` (axum): signed downloads and the
//!   JSON API (`/api/v1`, with its OpenAPI document).
//! - [`ingest`]: query by email: the verdict on a mailed request (machine mail,
//!   authentication, allowlist, keyword, query files through the strict SQL gate).
//! - [`daemon`]: `ferry serve` as a library: its services (scheduler, delivery, reload,
//!   download server) with one lifecycle.
//! - [`retention`]: which result files and runs `retention:` removes (`ferry cleanup`,
//!   the daily pass of `ferry serve`).
//! - [`panics`]: panic boundaries around library code (writers, drivers) and the
//!   process's panic hook: a panic becomes a failed run with a plain message, never a raw
//!   print.
//! - [`cli`]: the `ferry` command line.

/// The version `ferry --version` prints: the package's, then the git commit it was built
/// from and that commit's date (`no git commit` outside a git checkout; see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("FERRY_GIT_COMMIT"),
    ")"
);

pub mod access;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod edit;
pub mod exec;
pub mod faults;
pub mod format;
pub mod fsread;
pub mod ingest;
pub mod links;
pub mod logging;
pub mod notify;
pub mod panics;
pub mod params;
pub mod plugins;
pub mod retention;
pub mod schedule;
pub mod scheduler;
pub mod server;
pub mod source;
pub mod sqlgate;
pub mod store;
pub mod suggest;
pub mod template;
pub mod tls;
pub mod value;

#[cfg(test)]
mod layering_tests;
