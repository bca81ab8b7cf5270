//! `ferry run <task>`: runs a task now and reports the result (JSON with `--json`).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use clap::Args;

use super::{Cli, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, find_task, load_project, print_error};
use crate::config::{StoreSpec, format_duration};
use crate::exec::{Executor, Progress, RunRequest, Stop};
use crate::format::{sweep_partials, sweep_temp};
use crate::store::sqlite::SqliteStore;
use crate::store::{DeliverySummary, RunStore, Status, Trigger, process_alive};
use crate::template::human_bytes;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Task name (the file stem of tasks/<name>.yaml).
    pub task: String,
    /// Do not send the task's notifications.
    #[arg(long)]
    pub no_notify: bool,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Run as if scheduled at this instant (RFC 3339), e.g. to re-create a past day's
    /// export; the date parameters follow it. A fire time runs at most once.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
}

pub async fn run(cli: &Cli, args: &RunArgs) -> i32 {
    let project = match load_project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let task = match find_task(&project, &args.task) {
        Ok(t) => t.clone(),
        Err(code) => return code,
    };
    let (scheduled_at, trigger) = match &args.at {
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => (t.with_timezone(&Utc), Trigger::Schedule),
            Err(e) => {
                eprintln!(
                    "error: --at `{s}` is not an RFC 3339 instant ({e}); example: 2026-11-25T02:30:00+08:00"
                );
                return EXIT_CONFIG;
            }
        },
        None => {
            let now = Utc::now();
            let ms = now.timestamp_millis();
            (
                DateTime::from_timestamp_millis(ms).unwrap_or(now),
                Trigger::Manual,
            )
        }
    };
    let config = Arc::new(project.config.clone());
    let StoreSpec::Sqlite { path } = &config.store;
    let store = match SqliteStore::open(path).await {
        Ok(s) => s,
        Err(e) => {
            print_error(&e);
            return EXIT_FAILED;
        }
    };
    // Leftovers of processes that died mid-run: their partial files and their runs.
    sweep_partials(&config.output_dir, &process_alive);
    sweep_temp(&config.export.temp_dir, &process_alive);
    if let Err(e) = store
        .reap_interrupted(&config.node_name, &process_alive, Utc::now())
        .await
    {
        print_error(&e);
        return EXIT_FAILED;
    }

    let progress =
        (!args.json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal())
            .then(terminal_progress);
    let executor = Executor {
        config,
        store: Arc::new(store.clone()),
    };
    let stop = Stop::new();
    let ctrl_c = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.stop("interrupted (Ctrl-C)");
        }
    });
    let result = executor
        .run(RunRequest {
            task,
            scheduled_at,
            trigger,
            notify: !args.no_notify,
            stop,
            progress,
        })
        .await;
    store.close().await;
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            print_error(&e);
            return EXIT_FAILED;
        }
    };
    if progress_was_shown(args) {
        eprint!("\r\x1b[2K");
    }
    let ok = result.status == Status::Succeeded;
    if args.json {
        let out = serde_json::json!({
            "run_id": result.run_id,
            "task": result.task,
            "status": if ok { "succeeded" } else { "failed" },
            "rows": result.rows,
            "files": result.files,
            "warnings": result.warnings,
            "error": result.error,
            "deliveries": result.deliveries,
            "delivery": result.delivery,
        });
        println!("{out}");
    } else if ok {
        println!(
            "succeeded: {} — {} rows in {} (run {})",
            result.task,
            result.rows,
            format_duration(result.duration),
            result.run_id
        );
        for f in &result.files {
            println!(
                "  {}  {}  sha256 {}",
                f.path,
                human_bytes(f.bytes),
                f.sha256
            );
        }
        if !matches!(
            result.delivery,
            DeliverySummary::None | DeliverySummary::Delivered
        ) {
            println!("  delivery: {}", result.delivery.as_str());
            for d in &result.deliveries {
                if let Some(missing) = d.recipients_missing() {
                    println!("    {}: {missing}", d.channel);
                }
            }
        }
        for w in &result.warnings {
            eprintln!("warning: {w}");
        }
    } else {
        eprintln!(
            "error: task `{}` {}: {} (run {})",
            result.task,
            result.status,
            result.error.as_deref().unwrap_or("unknown error"),
            result.run_id
        );
        for w in &result.warnings {
            eprintln!("warning: {w}");
        }
    }
    if ok { EXIT_OK } else { EXIT_FAILED }
}

fn progress_was_shown(args: &RunArgs) -> bool {
    !args.json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// Rows so far, rate and elapsed time on one stderr line, at most 4 times a second.
fn terminal_progress() -> Progress {
    let start = Instant::now();
    let last = Mutex::new(Instant::now());
    Arc::new(move |rows: u64| {
        let mut last = last.lock().expect("progress lock");
        if last.elapsed().as_millis() < 250 {
            return;
        }
        *last = Instant::now();
        let secs = start.elapsed().as_secs_f64().max(0.001);
        eprint!(
            "\r\x1b[2K{rows} rows  {:.0} rows/s  {:.1}s",
            rows as f64 / secs,
            secs
        );
        let _ = std::io::stderr().flush();
    })
}
