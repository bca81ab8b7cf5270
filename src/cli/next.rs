//! `ferry next`: the next fire times of a task, in UTC and in the task's zone. Needs no
//! database.

use chrono::{DateTime, Utc};
use clap::Args;

use super::{Cli, EXIT_CONFIG, EXIT_OK, find_task, load_project};

#[derive(Debug, Args)]
pub struct NextArgs {
    /// Task name (the file stem of tasks/<name>.yaml).
    pub task: String,
    /// Start after this instant (RFC 3339, e.g. 2026-03-08T00:00:00Z); default now.
    #[arg(long, value_name = "RFC3339")]
    pub after: Option<String>,
    /// How many fire times to print (at most 10000).
    #[arg(long, default_value_t = 5)]
    pub count: usize,
}

pub async fn run(cli: &Cli, args: &NextArgs) -> i32 {
    let project = match load_project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let task = match find_task(&project, &args.task) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let after = match &args.after {
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => t.with_timezone(&Utc),
            Err(e) => {
                eprintln!(
                    "error: --after `{s}` is not an RFC 3339 instant ({e}); example: 2026-03-08T00:00:00Z"
                );
                return EXIT_CONFIG;
            }
        },
        None => crate::clock::wall_now(),
    };
    if !task.enabled {
        eprintln!(
            "note: task `{}` is disabled (enabled: false); these are the times it would fire",
            task.name
        );
    }
    let tz = task.timezone;
    for t in task.schedule.upcoming(after, args.count) {
        let local = t.with_timezone(&tz);
        println!(
            "{}  {}  {}",
            t.format("%Y-%m-%dT%H:%M:%SZ"),
            local.format("%Y-%m-%dT%H:%M:%S%:z"),
            tz.name()
        );
    }
    EXIT_OK
}
