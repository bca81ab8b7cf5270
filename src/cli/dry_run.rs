//! `ferry run --dry-run TASK`: what a run would do, without doing it.
//!
//! The task is validated (with the project), the SQL gate applied, the datasource
//! connected (with the `require_read_only` check and the cost guard, as a run does), and
//! each query prepared by the database without being run (SQLite, PostgreSQL and
//! MySQL/MariaDB prepare; a backend that cannot, Oracle, says so). Then the parameters
//! with their values, the files the run would publish and the message each `notify`
//! entry would send are printed. Nothing is written: no run in the store (it is not
//! opened), no file, no outbox message, no delivery. A query that does not prepare is
//! exit code 1 with the database's message.

use chrono::{DateTime, Utc};

use super::{EXIT_FAILED, EXIT_OK};
use crate::clock::SystemClock;
use crate::config::{Config, Format, TaskSpec, format_duration};
use crate::exec::{self, RunResult};
use crate::notify::RunReport;
use crate::params::RunParams;
use crate::store::{DeliverySummary, FileRecord, Status, Trigger};

/// What the dry run stands in for the run id in file names and messages.
const RUN_ID: &str = "dry-run";

/// Checks and prints what a run of `task` at `scheduled_at` would do; returns the exit code.
pub async fn dry_run(
    config: &Config,
    task: &TaskSpec,
    scheduled_at: DateTime<Utc>,
    trigger: Trigger,
) -> i32 {
    let params = task.run_params(scheduled_at);
    let local = scheduled_at.with_timezone(&task.timezone);
    println!(
        "dry run of `{}`: nothing is written, nothing is sent",
        task.name
    );
    println!(
        "  as a {} run at {} ({}), data for {} ({})",
        trigger.as_str(),
        local.format("%Y-%m-%d %H:%M:%S"),
        task.timezone.name(),
        params.coverage.label,
        params.coverage.kind
    );
    print_params(task, &params);

    // The same checks as a run, up to the connection and the cost guard.
    let source = match exec::preflight(config, task, &params, &SystemClock).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: task `{}`: {e}", task.name);
            return EXIT_FAILED;
        }
    };
    println!(
        "\nqueries (prepared by datasource `{}`, not run):",
        task.source
    );
    for q in &task.queries {
        let which = q
            .sheet
            .as_deref()
            .map_or(String::new(), |s| format!(" \"{s}\""));
        let prepared = match crate::source::sql_text(&task.source, &q.query) {
            Ok(sql) => {
                source
                    .prepare(crate::source::PlanRequest {
                        sql,
                        params: &params,
                        timeout: task.timeout,
                    })
                    .await
            }
            Err(e) => Err(e),
        };
        match prepared {
            Ok(Some(columns)) => {
                let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
                println!(
                    "  query{which}: ok, {} column{}: {}",
                    columns.len(),
                    if columns.len() == 1 { "" } else { "s" },
                    names.join(", ")
                );
            }
            Ok(None) => println!(
                "  query{which}: not checked (this database cannot prepare a statement without running it)"
            ),
            Err(e) => {
                eprintln!(
                    "error: task `{}`: query{which} does not prepare: {e}",
                    task.name
                );
                return EXIT_FAILED;
            }
        }
    }

    let (dir, base) = match exec::output_names(config, task, &params, RUN_ID) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: task `{}`: {e}", task.name);
            return EXIT_FAILED;
        }
    };
    let files = file_names(task, &base);
    println!(
        "\nfiles (in {}; `NAME_2` if a file of that name is there already):",
        dir.display()
    );
    for f in &files {
        println!("  {f}");
    }
    print_messages(config, task, scheduled_at, trigger, &dir, &files);
    EXIT_OK
}

/// Every parameter with its value; `*` marks those the queries read.
fn print_params(task: &TaskSpec, params: &RunParams) {
    let used: Vec<String> = task
        .queries
        .iter()
        .filter_map(|q| q.query.sql())
        .flat_map(crate::params::scan)
        .map(|p| p.name)
        .collect();
    println!("\nparameters (* read by the query):");
    let builtin = crate::params::BUILTIN.iter().map(|n| n.to_string());
    let fixed = task.params.keys().cloned();
    for name in builtin.chain(fixed) {
        if let Some(v) = params.get(&name) {
            let mark = if used.contains(&name) { '*' } else { ' ' };
            let utc = if matches!(v, crate::params::ParamValue::Instant(_)) {
                " UTC"
            } else {
                ""
            };
            println!("  {mark} :{name} = {}{utc}", v.to_text());
        }
    }
}

/// The names of the files a run publishes: one per query for CSV with several queries,
/// one workbook for XLSX, one zip with `zip: true`.
fn file_names(task: &TaskSpec, base: &str) -> Vec<String> {
    let ext = task.output.format.extension();
    if task.output.zip {
        return vec![format!("{base}.zip")];
    }
    let named: Vec<&str> = task
        .queries
        .iter()
        .filter_map(|q| q.sheet.as_deref())
        .collect();
    if task.output.format == Format::Csv && !named.is_empty() {
        return named
            .iter()
            .map(|s| crate::format::sanitize_file_name(&format!("{base}_{s}")) + ".csv")
            .collect();
    }
    vec![format!("{base}.{ext}")]
}

/// The message each `notify` entry would send on success, rendered as a run renders it;
/// rows and sizes are not known without running the query and show as 0.
fn print_messages(
    config: &Config,
    task: &TaskSpec,
    scheduled_at: DateTime<Utc>,
    trigger: Trigger,
    dir: &std::path::Path,
    files: &[String],
) {
    if task.notify.is_empty() {
        println!("\nmessages: none (the task has no `notify` entries)");
        return;
    }
    println!("\nmessages (rows and sizes are not known without running the query: shown as 0):");
    let result = RunResult {
        run_id: RUN_ID.into(),
        task: task.name.clone(),
        status: Status::Succeeded,
        rows: 0,
        files: files
            .iter()
            .map(|f| FileRecord {
                path: dir.join(f).display().to_string(),
                bytes: 0,
                sha256: "(computed when the file is written)".into(),
            })
            .collect(),
        warnings: Vec::new(),
        error: None,
        deliveries: Vec::new(),
        delivery: DeliverySummary::None,
        duration: std::time::Duration::ZERO,
    };
    let mut report: RunReport = exec::run_report(task, &result, scheduled_at, trigger);
    if let Some(links) = &config.links {
        let expires_at = scheduled_at
            + chrono::Duration::from_std(links.expiry).unwrap_or(chrono::Duration::days(7));
        report.links = result
            .files
            .iter()
            .map(|f| crate::links::FileLink {
                path: f.path.clone(),
                name: crate::links::file_name_of(&f.path),
                bytes: 0,
                sha256: f.sha256.clone(),
                link_id: RUN_ID.into(),
                url: format!("{}/d/(link made when the task runs)", links.public_url),
                expires_at,
            })
            .collect();
    }
    let link = report.links.first().map(|l| l.url.clone());
    let ctx = report.context();
    for (i, n) in task.notify.iter().enumerate() {
        let occurrence = exec::occurrence(task, i);
        println!();
        if !n.on.matches(true) {
            println!("  `{}`: sent only when a run fails", n.channel);
            continue;
        }
        match exec::render_message(config, task, &result, n, occurrence, &ctx, link.clone()) {
            Ok(m) => {
                let to = if m.recipients.is_empty() {
                    String::new()
                } else {
                    format!(" to {}", m.recipients.join(", "))
                };
                println!("  `{}`{to} (template `{}`):", n.channel, n.template);
                println!("  subject: {}", m.subject);
                for line in m.body.lines() {
                    println!("  | {line}");
                }
            }
            Err(e) => println!("  `{}`: cannot be rendered: {e}", n.channel),
        }
    }
    println!(
        "\n(timeout {}; `ferry run {}` runs it for real)",
        format_duration(task.timeout),
        task.name
    );
}
