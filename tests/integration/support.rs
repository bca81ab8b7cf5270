//! Test helpers: a throwaway copy of a fixture project and a way to run `ferry` in it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of `tests/fixtures/<name>` in a temporary folder.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn fixture(name: &str) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        copy_dir(&repo().join("tests/fixtures").join(name), dir.path());
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `ferry --config config.yaml ARGS` in the project folder, to spawn or run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(FERRY);
        cmd.current_dir(self.path())
            .args(["--config", "config.yaml"])
            .args(args)
            .env_remove("FERRY_LOG");
        cmd
    }

    /// Runs `ferry --config config.yaml ARGS` in the project folder.
    pub fn ferry(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run ferry")
    }

    /// Runs a task with `--json`, asserts the exit code, returns the JSON.
    pub fn run_json(&self, task: &str, extra: &[&str], code: i32) -> serde_json::Value {
        let mut args = vec!["run", task, "--json"];
        args.extend_from_slice(extra);
        let out = self.ferry(&args);
        assert_eq!(out.status.code(), Some(code), "{}", describe(&out));
        let stdout = String::from_utf8(out.stdout.clone()).expect("utf-8 stdout");
        assert_eq!(stdout.lines().count(), 1, "exactly one JSON line: {stdout}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    /// Files (relative paths) under `rel`, sorted; hidden files included.
    pub fn files(&self, rel: &str) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.path().join(rel), &self.path().join(rel), &mut out);
        out.sort();
        out
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}
