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
//!   every problem reported as `file:line:col: field: message`.
//! - [`schedule`]: cron expressions in a task's time zone (croner), and the `Clock` seam.
//! - [`params`]: typed query parameters (`:run_date`, `:period_start`, ...).
//! - [`sqlgate`]: the SQL read-only gate (sqlparser): one read-only query, or refused.
//! - [`source`]: the `Source` trait (columns first, then rows in chunks) and SQLite.
//! - [`value`]: the exact value model every source produces and every writer consumes.
//! - [`format`]: the `FormatWriter` trait, CSV and XLSX writers, zip, atomic publishing.
//! - [`store`]: the `RunStore` trait (claim per `(task, scheduled_at)`) and embedded SQLite.
//! - [`notify`]: the `Notifier` trait, message reports, the `outbox` channel.
//! - [`template`]: minijinja templates for file names, folders and messages.
//! - [`exec`]: runs one task end to end.
//! - [`cli`]: the `ferry` command line.

pub mod cli;
pub mod config;
pub mod exec;
pub mod format;
pub mod notify;
pub mod params;
pub mod schedule;
pub mod source;
pub mod sqlgate;
pub mod store;
pub mod template;
pub mod value;
