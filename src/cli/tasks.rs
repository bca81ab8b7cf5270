//! `ferry tasks`: every task with its schedule, zone, source, format and next fire (or
//! who paused it); `ferry tasks pause NAME --reason …` and `ferry tasks resume NAME`;
//! the revision history of a task file (`history`, `diff`, `restore`; [`crate::edit`]).

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
    /// List the revisions of a task file: when, who, what (`create`, `replace`,
    /// `delete`, `restore N`, `found on disk` for a version edited by hand).
    History {
        /// The task.
        name: String,
        /// Print one JSON array (with each revision's text).
        #[arg(long)]
        json: bool,
    },
    /// Show what revision REV of a task file changed (a unified diff against the
    /// revision before it).
    Diff {
        /// The task.
        name: String,
        /// The revision number (`tasks history` lists them).
        rev: u32,
    },
    /// Write revision REV of a task file back (validated first); `ferry serve` applies it
    /// at its next reload.
    Restore {
        /// The task.
        name: String,
        /// The revision number (`tasks history` lists them).
        rev: u32,
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
        Some(TasksCommand::History { name, json }) => history(&project, name, *json).await,
        Some(TasksCommand::Diff { name, rev }) => diff(&project, name, *rev).await,
        Some(TasksCommand::Restore { name, rev }) => restore(&project, name, *rev).await,
    }
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
        by: super::who(&project.config),
        reason: reason
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(String::from),
        at: crate::clock::wall_now(),
    };
    let done = store.pause_task(&pause).await;
    if done.is_ok() {
        let _ = crate::access::audit(
            &*store,
            &pause.by,
            None,
            "task.pause",
            name,
            pause.reason.clone(),
            pause.at,
        )
        .await;
    }
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
    if let Ok(Some(_)) = &done {
        let who = super::who(&project.config);
        let now = crate::clock::wall_now();
        let _ = crate::access::audit(&*store, &who, None, "task.resume", name, None, now).await;
    }
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

async fn history(project: &Project, name: &str, json: bool) -> i32 {
    let Ok(store) = super::open_store(&project.config).await else {
        return EXIT_FAILED;
    };
    let found = store.revisions(name).await;
    store.close().await;
    let list = match found {
        Ok(l) => l,
        Err(e) => {
            print_error(&e);
            return EXIT_FAILED;
        }
    };
    if json {
        println!("{}", serde_json::to_string(&list).unwrap_or_default());
        return EXIT_OK;
    }
    if list.is_empty() {
        println!(
            "task `{name}` has no recorded revisions (they start with the first change made through ferry)"
        );
        return EXIT_OK;
    }
    let mut rows = vec![[
        "REV".to_string(),
        "AT".into(),
        "BY".into(),
        "WHAT".into(),
        "LINES".into(),
    ]];
    rows.extend(list.iter().map(|r| {
        [
            r.rev.to_string(),
            fmt_instant(r.at),
            r.author.clone(),
            r.action.clone(),
            r.content
                .as_ref()
                .map_or("-".into(), |c| c.lines().count().to_string()),
        ]
    }));
    print_table(&rows);
    EXIT_OK
}

async fn diff(project: &Project, name: &str, rev: u32) -> i32 {
    let Ok(store) = super::open_store(&project.config).await else {
        return EXIT_FAILED;
    };
    let found = store.revisions(name).await;
    store.close().await;
    match found.map(|h| crate::edit::revision_diff(&h, rev)) {
        Ok(Some(d)) => {
            print!("{d}");
            EXIT_OK
        }
        Ok(None) => {
            eprintln!(
                "error: task `{name}` has no revision {rev} (`ferry tasks history {name}` lists them)"
            );
            EXIT_CONFIG
        }
        Err(e) => {
            print_error(&e);
            EXIT_FAILED
        }
    }
}

async fn restore(project: &Project, name: &str, rev: u32) -> i32 {
    let Ok(store) = super::open_store(&project.config).await else {
        return EXIT_FAILED;
    };
    let who = super::who(&project.config);
    let editor = crate::edit::Editor {
        config: &project.config,
        store: &*store,
        author: &who,
        now: crate::clock::wall_now(),
    };
    let done = editor.restore(name, rev).await;
    if let Ok(new) = &done {
        let _ = crate::access::audit(
            &*store,
            &who,
            None,
            "task.restore",
            name,
            Some(format!("revision {rev} as revision {new}")),
            crate::clock::wall_now(),
        )
        .await;
    }
    store.close().await;
    match done {
        Ok(new) => {
            println!(
                "task `{name}`: revision {rev} restored as revision {new}; `ferry serve` applies it at its next reload"
            );
            EXIT_OK
        }
        Err(crate::edit::EditError::Invalid(problems)) => {
            eprintln!(
                "error: revision {rev} of task `{name}` is not valid with today's config.yaml; nothing was written:"
            );
            super::print_problems(&problems);
            EXIT_CONFIG
        }
        Err(e @ (crate::edit::EditError::NotFound(_) | crate::edit::EditError::BadName(_))) => {
            eprintln!("error: {e}");
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
