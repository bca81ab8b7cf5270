//! Writing task files on behalf of a person (the API, `ferry tasks restore`): the files
//! stay the source of truth, and the reload watcher of `ferry serve` applies them.
//!
//! Every write:
//!
//! 1. checks the task name (letters, digits, `_`, `-`: no path can be smuggled in);
//! 2. validates the new text with exactly the checks `ferry validate` runs on a task
//!    file at that path ([`crate::config::check_task_text`]); a problem answers
//!    [`EditError::Invalid`] and nothing is written;
//! 3. records the file as found on disk as a revision when it differs from the last
//!    recorded one (an edit by hand), so the version being replaced is never lost;
//! 4. writes the file atomically: a hidden `.NAME.yaml.PID.partial` in the tasks folder
//!    (ignored by the loader and the watcher), fsync, rename over the task file, fsync
//!    of the folder — a reader sees the old file or the new one, never half of one;
//! 5. records the new version (or the deletion) as a revision with its author.
//!
//! Writes in one process are serialised (one at a time), so revisions follow the order
//! of the files. [`diff`] shows what a revision changed; [`redact`] keeps a task's own
//! robot secrets out of what the API shows, and a mask sent back out of the files.

pub mod redact;
pub mod yaml;

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::config::{Config, Problem, TaskSpec};
use crate::store::{RevisionRecord, Store, StoreError};
use crate::template::is_plain_name;

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(
        "`{0}` is not a task name: use letters, digits, `_` and `-` only (the name is the file stem)"
    )]
    BadName(String),
    #[error("the task is invalid; nothing was written")]
    Invalid(Vec<Problem>),
    #[error("{0}")]
    NotFound(String),
    /// The file is not the one the writer read (`If-Match`), or exists when it should
    /// not (`If-None-Match: *`).
    #[error("{0}")]
    Changed(String),
    #[error("cannot write the task file {path}: {message}")]
    Io { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who writes, and when.
pub struct Editor<'a> {
    pub config: &'a Config,
    pub store: &'a dyn Store,
    /// `user:alice`, `token:ci`, `root@db1`.
    pub author: &'a str,
    pub now: DateTime<Utc>,
}

/// What the writer expects the file to be before the write (HTTP `If-Match` /
/// `If-None-Match: *`), so that two people editing one task do not overwrite each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is there.
    Any,
    /// No file yet (create only).
    Absent,
    /// The file with this SHA-256 (hex), as read before.
    Sha256(String),
}

/// SHA-256 of a task file's text, hex (its version tag).
pub fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn check_expect(expect: &Expect, current: Option<&str>) -> Result<(), EditError> {
    match (expect, current) {
        (Expect::Any, _) | (Expect::Absent, None) => Ok(()),
        (Expect::Absent, Some(_)) => Err(EditError::Changed(
            "the task exists already (If-None-Match: *)".into(),
        )),
        (Expect::Sha256(want), Some(text)) if sha256(text) == *want => Ok(()),
        (Expect::Sha256(_), Some(text)) => Err(EditError::Changed(format!(
            "the task file changed since it was read (now sha256 {}): read it again",
            sha256(text)
        ))),
        (Expect::Sha256(_), None) => Err(EditError::Changed(
            "the task file was deleted since it was read".into(),
        )),
    }
}

/// One write at a time in this process.
static WRITING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The file of task `name`: the existing `NAME.yaml` or `NAME.yml`, else `NAME.yaml`.
pub fn task_path(config: &Config, name: &str) -> PathBuf {
    let yml = config.tasks_dir.join(format!("{name}.yml"));
    if yml.is_file() {
        return yml;
    }
    config.tasks_dir.join(format!("{name}.yaml"))
}

fn check_name(name: &str) -> Result<(), EditError> {
    if is_plain_name(name) && name.len() <= 128 {
        Ok(())
    } else {
        Err(EditError::BadName(name.chars().take(128).collect()))
    }
}

/// Validates `text` as the task file of `name`, as `ferry validate` would.
pub fn validate(config: &Config, name: &str, text: &str) -> Result<TaskSpec, EditError> {
    check_name(name)?;
    let path = task_path(config, name);
    // A mask the API showed instead of a secret, sent back: never written over the value.
    let masked: Vec<Problem> = redact::masked_values(text)
        .into_iter()
        .map(|(line, col, key)| Problem {
            file: path.clone(),
            pos: Some((line, col)),
            field: format!("notify.{key}"),
            message: format!(
                "`***` is the mask the API shows instead of this {key}: write the real value, or better a reference such as ${{DING_SECRET}}"
            ),
        })
        .collect();
    if !masked.is_empty() {
        return Err(EditError::Invalid(masked));
    }
    crate::config::check_task_text(config, name, &path, text, &crate::plugins::CHECKS)
        .map_err(EditError::Invalid)
}

fn read_current(path: &Path) -> Result<Option<String>, EditError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, &e)),
    }
}

fn io_err(path: &Path, e: &std::io::Error) -> EditError {
    EditError::Io {
        path: path.display().to_string(),
        message: crate::config::io_message(e),
    }
}

impl Editor<'_> {
    /// Records the file as it is on disk when the history does not end with it.
    async fn keep_found(&self, name: &str, current: Option<&str>) -> Result<(), EditError> {
        let last = self.store.revisions(name).await?.pop();
        let recorded = last.as_ref().and_then(|r| r.content.as_deref());
        if current.is_some() && current != recorded {
            self.store
                .add_revision(name, self.now, "file", "found on disk", current)
                .await?;
        }
        Ok(())
    }

    /// Creates or replaces task `name` with `text`; the new revision's number.
    pub async fn write(
        &self,
        name: &str,
        text: &str,
        expect: &Expect,
    ) -> Result<(u32, bool), EditError> {
        validate(self.config, name, text)?;
        let _one = WRITING.lock().await;
        let path = task_path(self.config, name);
        let current = read_current(&path)?;
        check_expect(expect, current.as_deref())?;
        self.keep_found(name, current.as_deref()).await?;
        write_atomic(&path, text)?;
        let action = if current.is_some() {
            "replace"
        } else {
            "create"
        };
        let rev = self
            .store
            .add_revision(name, self.now, self.author, action, Some(text))
            .await?;
        Ok((rev, current.is_none()))
    }

    /// Deletes task `name`'s file (its history stays); the deletion's revision number.
    pub async fn delete(&self, name: &str, expect: &Expect) -> Result<u32, EditError> {
        check_name(name)?;
        let _one = WRITING.lock().await;
        let path = task_path(self.config, name);
        let Some(current) = read_current(&path)? else {
            return Err(EditError::NotFound(format!(
                "no task file {}",
                path.display()
            )));
        };
        check_expect(expect, Some(&current))?;
        self.keep_found(name, Some(&current)).await?;
        std::fs::remove_file(&path).map_err(|e| io_err(&path, &e))?;
        let _ = crate::format::sync_dir(&self.config.tasks_dir);
        Ok(self
            .store
            .add_revision(name, self.now, self.author, "delete", None)
            .await?)
    }

    /// Writes revision `rev` of task `name` back (validated again: the config may have
    /// changed since); the new revision's number. Restoring a deletion deletes.
    pub async fn restore(&self, name: &str, rev: u32) -> Result<u32, EditError> {
        check_name(name)?;
        let Some(old) = self.store.revision(name, rev).await? else {
            return Err(EditError::NotFound(format!(
                "task `{name}` has no revision {rev} (`ferry tasks history {name}` lists them)"
            )));
        };
        let action = format!("restore {rev}");
        match old.content {
            Some(text) => {
                validate(self.config, name, &text)?;
                let _one = WRITING.lock().await;
                let path = task_path(self.config, name);
                let current = read_current(&path)?;
                self.keep_found(name, current.as_deref()).await?;
                write_atomic(&path, &text)?;
                Ok(self
                    .store
                    .add_revision(name, self.now, self.author, &action, Some(&text))
                    .await?)
            }
            None => {
                let _one = WRITING.lock().await;
                let path = task_path(self.config, name);
                if let Some(current) = read_current(&path)? {
                    self.keep_found(name, Some(&current)).await?;
                    std::fs::remove_file(&path).map_err(|e| io_err(&path, &e))?;
                    let _ = crate::format::sync_dir(&self.config.tasks_dir);
                }
                Ok(self
                    .store
                    .add_revision(name, self.now, self.author, &action, None)
                    .await?)
            }
        }
    }
}

/// Writes `text` to `path` through a hidden partial file in the same folder.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), EditError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string());
    let partial = dir.join(format!(
        ".{}.{}.partial",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&partial)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&partial, path)?;
        crate::format::sync_dir(dir)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        io_err(path, &e)
    })
}

/// What revision `rev` changed: a unified diff against the revision before it (or
/// against nothing for the first).
pub fn revision_diff(history: &[RevisionRecord], rev: u32) -> Option<String> {
    let i = history.iter().position(|r| r.rev == rev)?;
    let before = i
        .checked_sub(1)
        .and_then(|p| history[p].content.as_deref())
        .unwrap_or("");
    let after = history[i].content.as_deref().unwrap_or("");
    let label = |r: Option<&RevisionRecord>| {
        r.map_or("/dev/null".to_string(), |r| {
            format!("{}.yaml@{}", r.task, r.rev)
        })
    };
    let from = label(i.checked_sub(1).map(|p| &history[p]));
    Some(diff(&from, &label(Some(&history[i])), before, after))
}

/// A unified diff of two texts (lines, 3 lines of context), from a longest common
/// subsequence: task files are small (the loader caps them), so the quadratic table is
/// cheap.
pub fn diff(from: &str, to: &str, a: &str, b: &str) -> String {
    let a: Vec<&str> = a.lines().collect();
    let b: Vec<&str> = b.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    // The edit script: (' ' | '-' | '+', line, index in a, index in b).
    let mut ops: Vec<(char, &str, usize, usize)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i], i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i], i, j));
            i += 1;
        } else {
            ops.push(('+', b[j], i, j));
            j += 1;
        }
    }
    let mut out = format!("--- {from}\n+++ {to}\n");
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let a_len = hunk.iter().filter(|o| o.0 != '+').count();
        let b_len = hunk.iter().filter(|o| o.0 != '-').count();
        let a_start = hunk[0].2 + usize::from(a_len > 0);
        let b_start = hunk[0].3 + usize::from(b_len > 0);
        out.push_str(&format!("@@ -{a_start},{a_len} +{b_start},{b_len} @@\n"));
        for (op, line, _, _) in hunk {
            out.push(*op);
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_are_unified_with_context() {
        let a = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        let b = "a\nb\nc\nd\nE\nf\ng\nh\ni\nj\nk\n";
        let d = diff("x@1", "x@2", a, b);
        assert_eq!(
            d,
            "--- x@1\n+++ x@2\n@@ -2,9 +2,10 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n i\n j\n+k\n"
        );
        assert_eq!(
            diff("/dev/null", "x@1", "", "one\n"),
            "--- /dev/null\n+++ x@1\n@@ -0,0 +1,1 @@\n+one\n"
        );
        assert_eq!(diff("a", "b", "same\n", "same\n"), "--- a\n+++ b\n");
    }
}
