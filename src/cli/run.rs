//! `ferry run <task>`: runs a task now and reports the result (JSON with `--json`);
//! `--dry-run` checks it without running it (`dry_run.rs`).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use clap::Args;

use super::{
    Cli, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_UNDELIVERED, find_task, load_project, print_error,
};
use crate::clock::{Clock, SystemClock};
use crate::config::format_duration;
use crate::exec::{Executor, Progress, RunRequest, Stop};
use crate::store::{DeliveryRecord, DeliveryStatus, DeliverySummary, Status, Trigger};
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
    /// Check the task without running it: validate, connect, have the database prepare
    /// the query, and print the parameters, the file names and the messages it would
    /// send. Writes nothing and sends nothing.
    #[arg(long, conflicts_with_all = ["json", "no_notify"])]
    pub dry_run: bool,
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
            let now = SystemClock.now();
            let ms = now.timestamp_millis();
            (
                DateTime::from_timestamp_millis(ms).unwrap_or(now),
                Trigger::Manual,
            )
        }
    };
    if args.dry_run {
        return super::dry_run::dry_run(&project.config, &task, scheduled_at, trigger).await;
    }
    let config = Arc::new(project.config.clone());
    let (store, one_off) = match super::OneOff::open(&config).await {
        Ok(o) => o,
        Err(code) => return code,
    };

    let progress =
        (!args.json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal())
            .then(terminal_progress);
    let executor = Executor {
        config,
        store: store.clone(),
        clock: Arc::new(SystemClock),
    };
    let stop = Stop::on_ctrl_c();
    let result = executor
        .run(RunRequest {
            task,
            scheduled_at,
            trigger,
            notify: !args.no_notify,
            stop,
            progress,
            retry_record: false,
            reply_to: None,
            started_by: Some(super::who(&project.config)),
        })
        .await;
    if let Ok(r) = &result {
        // A run started by a person is in the audit trail, as through the API.
        let _ = crate::access::audit(
            &*store,
            &super::who(&project.config),
            None,
            "run.start",
            &r.task,
            Some(r.run_id.clone()),
            SystemClock.now(),
        )
        .await;
    }
    one_off.end(&store).await;
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
    if !ok {
        return EXIT_FAILED;
    }
    match undelivered(&result.deliveries) {
        Some(summary) => {
            eprintln!(
                "error: task `{}` exported, not delivered: {summary} (run {})",
                result.task, result.run_id
            );
            EXIT_UNDELIVERED
        }
        None => EXIT_OK,
    }
}

/// One line naming each delivery that did not go out, with its state and reason; `None`
/// when every one went out (or there were none).
fn undelivered(deliveries: &[DeliveryRecord]) -> Option<String> {
    let parts: Vec<String> = deliveries
        .iter()
        .filter(|d| !d.status.delivered())
        .map(|d| {
            let channel = if d.occurrence > 1 {
                format!("`{}` (entry {})", d.channel, d.occurrence)
            } else {
                format!("`{}`", d.channel)
            };
            let state = match (d.status, d.next_attempt_at) {
                (DeliveryStatus::Pending, Some(at)) => format!(
                    "pending, `ferry serve` retries it from {}",
                    crate::store::fmt_instant(at)
                ),
                (DeliveryStatus::Pending | DeliveryStatus::Sending, _) => "pending".to_string(),
                _ => "failed".to_string(),
            };
            // The error usually names the channel again: once is enough.
            let prefix = format!("channel `{}`: ", d.channel);
            let reason = d.error.as_deref().unwrap_or("no reason recorded");
            let reason = reason.strip_prefix(&prefix).unwrap_or(reason);
            format!("{channel} {state}: {}", reason.replace('\n', " "))
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(
        channel: &str,
        occurrence: u32,
        status: DeliveryStatus,
        error: &str,
    ) -> DeliveryRecord {
        DeliveryRecord {
            channel: channel.into(),
            occurrence,
            status,
            retryable: status == DeliveryStatus::Pending,
            receipt: None,
            error: (!error.is_empty()).then(|| error.to_string()),
            at: crate::clock::wall_now(),
            attempts: 1,
            next_attempt_at: (status == DeliveryStatus::Pending)
                .then(|| "2026-11-25T02:31:06.822Z".parse().unwrap()),
            tried_at: Vec::new(),
            recipients: Vec::new(),
        }
    }

    #[test]
    fn every_undelivered_channel_is_named_on_one_line() {
        assert_eq!(undelivered(&[]), None);
        let sent = record("box", 1, DeliveryStatus::Sent, "");
        let dup = record("box", 2, DeliveryStatus::MaybeDuplicate, "");
        assert_eq!(undelivered(&[sent.clone(), dup]), None);
        let failed = record(
            "mail",
            2,
            DeliveryStatus::Failed,
            "channel `mail`: SMTP server 127.0.0.1:25 (none): 550 5.1.1\nrejected",
        );
        let pending = record(
            "ding",
            1,
            DeliveryStatus::Pending,
            "channel `ding`: HTTP 500",
        );
        assert_eq!(
            undelivered(&[sent, failed, pending]).unwrap(),
            "`mail` (entry 2) failed: SMTP server 127.0.0.1:25 (none): 550 5.1.1 rejected; \
             `ding` pending, `ferry serve` retries it from 2026-11-25T02:31:06.822Z: HTTP 500"
        );
    }
}
