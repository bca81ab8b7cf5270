//! `ferry cleanup [--dry-run] [--days N]`: applies `retention:` now ([`crate::retention`]),
//! printing every file it removes, the runs it deletes from history and the space freed.

use clap::Args;

use super::{Cli, EXIT_FAILED, EXIT_OK, print_error};
use crate::retention::{FileState, Report};
use crate::template::human_bytes;

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Print what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Remove the result files of runs older than N days, whatever `files_days` and
    /// `files_runs` say (history follows `history_days` as configured).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub days: Option<u32>,
}

pub async fn run(cli: &Cli, args: &CleanupArgs) -> i32 {
    let (project, store) = match super::load_with_store(cli).await {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let now = crate::clock::wall_now();
    let mut project = project;
    if args.days.is_some() {
        // `--days` replaces the file rules of every task.
        project.config.retention.files_runs = None;
        for t in project.tasks.values_mut() {
            t.retention.files_runs = None;
        }
    }
    let done = async {
        let plan = crate::retention::plan(store.as_ref(), &project, now, args.days).await?;
        crate::retention::apply(
            store.as_ref(),
            &plan,
            &project.config.output_dir,
            now,
            args.dry_run,
        )
        .await
    }
    .await;
    store.close().await;
    match done {
        Ok(report) => {
            print_report(&report, args.dry_run);
            if report
                .files
                .iter()
                .any(|f| matches!(f.state, FileState::Failed(_)))
            {
                EXIT_FAILED
            } else {
                EXIT_OK
            }
        }
        Err(e) => {
            print_error(&e);
            EXIT_FAILED
        }
    }
}

fn print_report(r: &Report, dry: bool) {
    let verb = if dry { "would remove" } else { "removed" };
    for f in &r.files {
        let what = format!("{} (task {}, run {})", f.path.display(), f.task, f.run_id);
        match &f.state {
            FileState::Removed => println!("{verb} {what}: {}", human_bytes(f.bytes)),
            FileState::AlreadyGone => println!("already gone: {what}"),
            FileState::Outside => println!("kept {what}: outside output_dir"),
            FileState::Failed(e) => eprintln!("error: cannot remove {what}: {e}"),
        }
    }
    let runs_verb = if dry { "would delete" } else { "deleted" };
    if dry {
        println!("{runs_verb} {} run(s) from history", r.runs);
    } else {
        println!(
            "{runs_verb} {} run(s) from history (with {} delivery record(s), {} link(s), {} download record(s))",
            r.deleted.runs, r.deleted.deliveries, r.deleted.links, r.deleted.downloads
        );
    }
    let removed = r
        .files
        .iter()
        .filter(|f| f.state == FileState::Removed)
        .count();
    println!(
        "{}: {removed} file(s), {} ({} bytes){}",
        if dry { "would free" } else { "freed" },
        human_bytes(r.freed),
        r.freed,
        if dry {
            " — dry run, nothing removed"
        } else {
            ""
        }
    );
}
