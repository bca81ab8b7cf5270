//! Retention: which result files and which runs go ([`plan`]) and removing them
//! ([`apply`]), for `ferry cleanup` and the daily pass of `ferry serve`.
//!
//! Rules (`retention:` in config.yaml, each field overridable in a task file):
//! - `files_days: N` — a run's files go N days after the run started; `files_runs: K` —
//!   only the files of the task's last K runs with files stay; with both, a file stays
//!   while either rule keeps it; with neither, files stay;
//! - `history_days: M` — a run is deleted from history M days after it started, with its
//!   delivery ledger, recipients, links and download audit (and its files, if any are
//!   left: a file never outlives its record).
//!
//! A removed file's run stays in history with the file's name, size and sha256 and the
//! time it was removed (`files_removed_at`); its links answer 410. Only files inside
//! `output_dir` are removed. Running and deferred runs are never touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};

use crate::config::{Project, RetentionSpec};
use crate::store::{Deleted, RunRecord, Store, StoreError};

/// What retention would remove.
#[derive(Debug, Default)]
pub struct Plan {
    /// Runs whose files go (the runs stay).
    pub files: Vec<RunRecord>,
    /// Runs deleted from history (their files go too).
    pub runs: Vec<RunRecord>,
}

/// One file handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOutcome {
    pub path: PathBuf,
    pub run_id: String,
    pub task: String,
    /// Bytes freed (0 when it was already gone or is kept).
    pub bytes: u64,
    pub state: FileState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    Removed,
    /// Not there any more (removed by hand, or never published).
    AlreadyGone,
    /// Outside `output_dir`: left alone.
    Outside,
    /// Could not be removed (the reason); the run is not marked.
    Failed(String),
}

/// What [`apply`] did (or, dry, would do).
#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<FileOutcome>,
    pub freed: u64,
    pub deleted: Deleted,
    /// Runs (of `plan.runs`) deleted or, dry, to delete.
    pub runs: usize,
}

/// The retention of `task`: its own fields over config.yaml's; `files_days` replaced by
/// `days` when given (`ferry cleanup --days N`).
fn rule(project: &Project, task: &str, days: Option<u32>) -> RetentionSpec {
    let global = project.config.retention;
    let mut r = project
        .tasks
        .get(task)
        .map_or(global, |t| t.retention.over(global));
    if days.is_some() {
        r.files_days = days;
    }
    r
}

fn older_than(r: &RunRecord, days: u32, now: DateTime<Utc>) -> bool {
    r.started_at < now - Duration::days(i64::from(days))
}

/// Decides what goes at `now`.
pub async fn plan(
    store: &dyn Store,
    project: &Project,
    now: DateTime<Utc>,
    days: Option<u32>,
) -> Result<Plan, StoreError> {
    let mut out = Plan::default();

    // History first: a run deleted is not also listed for its files.
    let mut rules: Vec<RetentionSpec> = project
        .tasks
        .keys()
        .map(|t| rule(project, t, days))
        .collect();
    rules.push(rule(project, "", days));
    if let Some(min) = rules.iter().filter_map(|r| r.history_days).min() {
        for r in store
            .finished_before(now - Duration::days(i64::from(min)))
            .await?
        {
            if rule(project, &r.task, days)
                .history_days
                .is_some_and(|d| older_than(&r, d, now))
            {
                out.runs.push(r);
            }
        }
    }

    let mut by_task: BTreeMap<String, Vec<RunRecord>> = BTreeMap::new();
    for r in store.runs_with_files().await? {
        if out.runs.iter().any(|d| d.run_id == r.run_id) {
            continue;
        }
        by_task.entry(r.task.clone()).or_default().push(r);
    }
    for (task, mut runs) in by_task {
        let rl = rule(project, &task, days);
        // Newest first: index i is "the i+1-th last run".
        runs.sort_by_key(|r| std::cmp::Reverse((r.started_at, r.run_id.clone())));
        for (i, r) in runs.into_iter().enumerate() {
            let by_days = rl.files_days.map(|d| !older_than(&r, d, now));
            let by_runs = rl.files_runs.map(|k| i < k as usize);
            let keep = match (by_days, by_runs) {
                (None, None) => true,
                (Some(a), None) | (None, Some(a)) => a,
                (Some(a), Some(b)) => a || b,
            };
            if !keep {
                out.files.push(r);
            }
        }
    }
    Ok(out)
}

/// Whether `path` lies inside `dir` (both resolved).
fn inside(path: &Path, dir: &Path) -> bool {
    match (path.canonicalize(), dir.canonicalize()) {
        (Ok(p), Ok(d)) => p.starts_with(d),
        _ => false,
    }
}

fn remove_files(r: &RunRecord, output_dir: &Path, dry_run: bool) -> Vec<FileOutcome> {
    let mut out = Vec::new();
    for f in &r.files {
        let path = PathBuf::from(&f.path);
        let outcome = |bytes, state| FileOutcome {
            path: path.clone(),
            run_id: r.run_id.clone(),
            task: r.task.clone(),
            bytes,
            state,
        };
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => {
                out.push(outcome(0, FileState::AlreadyGone));
                continue;
            }
        };
        if !meta.is_file() || !inside(&path, output_dir) {
            out.push(outcome(0, FileState::Outside));
            continue;
        }
        if dry_run {
            out.push(outcome(meta.len(), FileState::Removed));
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => out.push(outcome(meta.len(), FileState::Removed)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                out.push(outcome(0, FileState::AlreadyGone))
            }
            Err(e) => out.push(outcome(0, FileState::Failed(crate::config::io_message(&e)))),
        }
    }
    // Folders left empty inside output_dir (a run's sub-folder) go too.
    if !dry_run {
        for f in &r.files {
            let mut dir = Path::new(&f.path).parent();
            while let Some(d) = dir {
                if !inside(d, output_dir)
                    || d.canonicalize().ok() == output_dir.canonicalize().ok()
                    || std::fs::remove_dir(d).is_err()
                {
                    break;
                }
                dir = d.parent();
            }
        }
    }
    out
}

/// Removes what `plan` lists (nothing when `dry_run`, which reports what would go).
pub async fn apply(
    store: &dyn Store,
    plan: &Plan,
    output_dir: &Path,
    now: DateTime<Utc>,
    dry_run: bool,
) -> Result<Report, StoreError> {
    let mut report = Report::default();
    let mut deletable = Vec::new();
    for r in plan.files.iter().chain(&plan.runs) {
        let is_run = plan.runs.iter().any(|d| d.run_id == r.run_id);
        let outcomes = if r.files_removed_at.is_some() {
            Vec::new()
        } else {
            remove_files(r, output_dir, dry_run)
        };
        let failed = outcomes
            .iter()
            .any(|o| matches!(o.state, FileState::Failed(_)));
        report.freed += outcomes.iter().map(|o| o.bytes).sum::<u64>();
        report.files.extend(outcomes);
        if failed || dry_run {
            if dry_run && is_run {
                report.runs += 1;
            }
            continue;
        }
        if is_run {
            deletable.push(r.run_id.clone());
        } else {
            store.mark_files_removed(&r.run_id, now).await?;
        }
    }
    if !deletable.is_empty() {
        report.deleted = store.delete_runs(&deletable).await?;
        report.runs = report.deleted.runs as usize;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_inside_the_output_folder_count() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("exports");
        std::fs::create_dir_all(out.join("t")).unwrap();
        std::fs::write(out.join("t/a.csv"), "x").unwrap();
        std::fs::write(dir.path().join("b.csv"), "x").unwrap();
        assert!(inside(&out.join("t/a.csv"), &out));
        assert!(!inside(&dir.path().join("b.csv"), &out));
        assert!(!inside(&out.join("t/../../b.csv"), &out));
        assert!(!inside(&out.join("missing.csv"), &out));
    }
}
