//! Assembly of the plugins' config checks: [`CHECKS`] names the check of each plugin
//! family (datasources in [`crate::source::config`], channels and notify entries in
//! [`crate::notify::config`], `links:` in [`crate::links::config`], `store.url` in
//! [`crate::store::config`], `ingest:` in [`crate::ingest::config`]), and
//! [`Project::load`] loads a project with them.
//!
//! This is the one module that knows both the config loader and every plugin, so that
//! [`crate::config`] itself imports none of them.

use std::path::Path;

use crate::config::{Checks, Problem, Project};

/// Every plugin's config checks.
pub const CHECKS: Checks = Checks {
    store: crate::store::config::check,
    links: crate::links::config::check,
    datasource: crate::source::config::check,
    channel: crate::notify::config::check,
    notify_entry: crate::notify::config::check_entry,
    sql_gate: crate::sqlgate::check_task_query,
    ingest: crate::ingest::config::check,
    report_variables: crate::notify::RunReport::variables,
    alert_variables: crate::exec::alert::alert_variables,
    task_thread: (
        crate::sqlgate::GATE_STACK_BYTES,
        crate::sqlgate::on_this_thread,
    ),
};

impl Project {
    /// Loads `config_path` and every task. A broken `config.yaml` is fatal (all of its
    /// problems are returned); a broken task only removes that task.
    /// Runs on a thread with the SQL gate's stack, so that each query is checked in place
    /// ([`crate::sqlgate::on_gate_stack`]).
    pub fn load(config_path: &Path) -> Result<Project, Vec<Problem>> {
        crate::sqlgate::on_gate_stack(|| Project::load_with(config_path, &CHECKS))
    }
}
