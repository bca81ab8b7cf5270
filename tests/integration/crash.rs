//! A process killed mid-export leaves no complete-looking file and no run recorded as
//! succeeded; the next start removes the leftovers and records the run as failed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{FERRY, Project, describe};

/// Polls `cond` every 5 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn dir_has(dir: &Path, pred: impl Fn(&str, u64) -> bool) -> bool {
    fn walk(dir: &Path, pred: &dyn Fn(&str, u64) -> bool) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p, pred)
            } else {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                pred(&e.file_name().to_string_lossy(), len)
            }
        })
    }
    walk(dir, &pred)
}

fn kill_mid_export(task: &str, ready: impl Fn(&Path, u32) -> bool, final_file: &str) {
    let p = Project::fixture("project");
    // Build the database first so the kill lands in the export, not the seeding.
    p.run_json("from_file", &["--no-notify"], 0);
    let mut child = Command::new(FERRY)
        .current_dir(p.path())
        .args([
            "--config",
            "config.yaml",
            "run",
            task,
            "--json",
            "--no-notify",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = wait_for(Duration::from_secs(60), || ready(p.path(), pid));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(started, "the export never started writing");
    assert!(
        !p.path().join(final_file).exists(),
        "a complete-looking file exists after the kill"
    );

    let runs: Vec<serde_json::Value> =
        serde_json::from_slice(&p.ferry(&["history", "--task", task, "--json"]).stdout).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0]["status"], "running",
        "nobody has looked yet: {runs:?}"
    );

    // The next ferry start reaps the dead run and sweeps its leftovers.
    let out = p.ferry(&["run", "from_file", "--no-notify"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let runs: Vec<serde_json::Value> =
        serde_json::from_slice(&p.ferry(&["history", "--task", task, "--json"]).stdout).unwrap();
    assert_eq!(runs[0]["status"], "failed");
    assert!(
        runs[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("interrupted:"),
        "{runs:?}"
    );
    assert_eq!(runs[0]["files"], serde_json::json!([]));
    assert!(
        !dir_has(&p.path().join("exports"), |name, _| name
            .ends_with(".partial")),
        "partial files were swept"
    );
    let tmp = p.path().join("exports/.tmp");
    assert!(
        std::fs::read_dir(&tmp)
            .map(|mut d| d.next().is_none())
            .unwrap_or(true),
        "worksheet temp files were swept"
    );
    assert!(!p.path().join(final_file).exists());
}

fn open_file_larger_than(pid: u32, path_part: &str, size: u64) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        let target = std::fs::read_link(fd.path())
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        target.contains(path_part)
            && std::fs::metadata(fd.path())
                .map(|m| m.len() > size)
                .unwrap_or(false)
    })
}

#[test]
fn killed_csv_export_leaves_no_file_and_is_recorded_failed() {
    kill_mid_export(
        "big_csv",
        |root, _| {
            dir_has(&root.join("exports/big_csv"), |name, len| {
                name.ends_with(".partial") && len > 256 * 1024
            })
        },
        "exports/big_csv/big.csv",
    );
}

#[test]
fn killed_xlsx_export_leaves_no_file_and_is_recorded_failed() {
    kill_mid_export(
        "big_xlsx",
        // rust_xlsxwriter's worksheet temp file is unlinked at creation: find it through
        // the process's open files.
        |_, pid| open_file_larger_than(pid, "exports/.tmp/", 256 * 1024),
        "exports/big_xlsx/big.xlsx",
    );
}
