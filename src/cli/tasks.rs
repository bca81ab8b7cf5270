//! `ferry tasks`: every task with its schedule, zone, source, format and next fire (or
//! who paused it); `ferry tasks pause NAME --reason …` and `ferry tasks resume NAME`.

use std::collections::HashMap;

use clap::{Args, Subcommand};

use super::{Cli, EXIT_CONFIG, EXIT_FAILED, EXIT_OK, load_project, print_error};
use crate::config::Project;
use crate::store::{Store, TaskPause, fmt_instant};

#[derive(Debug, Args)]
pub struct TasksArgs {
    #[command(subcommand)]
    pub command: Option<TasksCommand>,
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Pause a task: `ferry serve` records its fires as skipped (with who and why) until
    /// `tasks resume`; `ferry run` still runs it by hand.
    Pause {
        /// The task.
        name: String,
        /// Why, recorded with the pause and on every fire it skips.
        #[arg(long)]
        reason: Option<String>,
    },
    /// End a task's pause: it runs again from its next fire (the fires skipped during the
    /// pause are not replayed).
    Resume {
        /// The task.
        name: String,
    },
}

pub async fn run(cli: &Cli, args: &TasksArgs) -> i32 {
    let project = match load_project(cli) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match &args.command {
        None => list(&project).await,
        Some(TasksCommand::Pause { name, reason }) => {
            pause(&project, name, reason.as_deref()).await
        }
        Some(TasksCommand::Resume { name }) => resume(&project, name).await,
    }
}

/// Who is pausing: the login name (the one behind `sudo` if any) at this node.
fn who(project: &Project) -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{}", project.config.node_name)
}

async fn pause(project: &Project, name: &str, reason: Option<&str>) -> i32 {
    if !project.all_names().contains(&name) {
        return super::find_task(project, name).map_or_else(|code| code, |_| EXIT_CONFIG);
    }
    let Ok(store) = super::open_store(&project.config).await else {
        return EXIT_FAILED;
    };
    let pause = TaskPause {
        task: name.to_string(),
        by: who(project),
        reason: reason
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from),
        at: crate::clock::wall_now(),
    };
    let done = store.pause_task(&pause).await;
    store.close().await;
    match done {
        Ok(()) => {
            println!(
                "task `{name}` paused by {}{}: `ferry serve` skips its fires until `ferry tasks resume {name}`",
                pause.by,
                pause
                    .reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
            EXIT_OK
        }
        Err(e) => {
            print_error(&e);
            EXIT_FAILED
        }
    }
}

async fn resume(project: &Project, name: &str) -> i32 {
    let Ok(store) = super::open_store(&project.config).await else {
        return EXIT_FAILED;
    };
    let done = store.resume_task(name).await;
    store.close().await;
    match done {
        Ok(Some(p)) => {
            println!(
                "task `{name}` resumed (paused by {} at {}): it runs from its next fire",
                p.by,
                fmt_instant(p.at)
            );
            EXIT_OK
        }
        Ok(None) => {
            eprintln!("error: task `{name}` is not paused");
            EXIT_CONFIG
        }
        Err(e) => {
            print_error(&e);
            EXIT_FAILED
        }
    }
}

/// The paused tasks by name; empty (with a note on stderr) when the store cannot be read,
/// so that the list still shows.
async fn paused(store: Option<&dyn Store>) -> HashMap<String, TaskPause> {
    let Some(store) = store else {
        return HashMap::new();
    };
    match store.paused_tasks().await {
        Ok(p) => p.into_iter().map(|p| (p.task.clone(), p)).collect(),
        Err(e) => {
            eprintln!("note: paused tasks not shown: {e}");
            HashMap::new()
        }
    }
}

/// How a pause is shown in a table.
pub fn pause_text(p: &TaskPause) -> String {
    let mut t = format!("paused by {} at {}", p.by, fmt_instant(p.at));
    if let Some(r) = &p.reason {
        t.push_str(": ");
        t.push_str(r);
    }
    t
}

async fn list(project: &Project) -> i32 {
    let store = match crate::store::open(&project.config.store).await {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("note: paused tasks not shown: {e}");
            None
        }
    };
    let paused = paused(store.as_deref()).await;
    if let Some(s) = &store {
        s.close().await;
    }
    let now = crate::clock::wall_now();
    let mut rows = vec![[
        "NAME".to_string(),
        "SCHEDULE".into(),
        "ZONE".into(),
        "SOURCE".into(),
        "FORMAT".into(),
        "NEXT FIRE".into(),
    ]];
    for t in project.tasks.values() {
        let next = if !t.enabled {
            "disabled".to_string()
        } else if let Some(p) = paused.get(&t.name) {
            pause_text(p)
        } else {
            t.schedule
                .next_after(now)
                .map(|n| {
                    n.with_timezone(&t.timezone)
                        .format("%Y-%m-%d %H:%M:%S %:z")
                        .to_string()
                })
                .unwrap_or_else(|| "never".into())
        };
        let mut format = t.output.format.extension().to_string();
        if t.output.zip {
            format.push_str("+zip");
        }
        rows.push([
            t.name.clone(),
            t.schedule.expr().to_string(),
            t.timezone.name().to_string(),
            t.source.clone(),
            format,
            next,
        ]);
    }
    for name in project.task_problems.keys().filter(|n| !n.is_empty()) {
        rows.push([
            name.clone(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "INVALID (see ferry validate)".into(),
        ]);
    }
    print_table(&rows);
    EXIT_OK
}

/// Prints rows as aligned columns (widths in characters).
pub fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == N {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        println!("{}", line.trim_end());
    }
}
