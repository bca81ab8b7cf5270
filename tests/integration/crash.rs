//! A process killed mid-export leaves no complete-looking file and no run recorded as
//! succeeded; the next start removes the leftovers and records the run as failed.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Project, describe};

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
    let mut child = p
        .command(&["run", task, "--json", "--no-notify"])
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

/// reliability.md case 23: SIGKILL at random moments of a run (start, mid-export, the
/// publish, the end). Whatever the moment, the final path is absent or holds a complete
/// file; a run recorded `succeeded` lists exactly that file; the next start sweeps every
/// partial and temp file. The moments are printed with their seed, to replay a failure.
#[test]
fn random_kills_leave_either_no_file_or_a_complete_one() {
    use sha2::{Digest, Sha256};

    let p = Project::fixture("project");
    p.run_json("from_file", &["--no-notify"], 0);
    let sha = |path: &Path| hex::encode(Sha256::digest(std::fs::read(path).unwrap()));
    let xlsx_rows = |path: &Path| {
        use calamine::{Reader, Xlsx, open_workbook};
        let mut book: Xlsx<_> = open_workbook(path).expect("a complete workbook opens");
        let sheet = book.sheet_names()[0].clone();
        book.worksheet_range(&sheet).unwrap().rows().count()
    };
    let mut seed: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}");
    let mut unit = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 10_000) as f64 / 10_000.0
    };

    for (task, file) in [("big_csv", "big.csv"), ("big_xlsx", "big.xlsx")] {
        let path = p.path().join("exports").join(task).join(file);
        // A reference run, uninterrupted: its duration spreads the kills, its file is
        // what a complete one looks like.
        let start = Instant::now();
        let reference = p.run_json(task, &["--no-notify"], 0);
        let took = start.elapsed();
        let reference_sha = sha(&path);
        let reference_rows = (file.ends_with(".xlsx")).then(|| xlsx_rows(&path));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(reference["status"], "succeeded");

        for trial in 0..6 {
            // Kill anywhere from the start to just past the usual end.
            let at = took.mul_f64(1.1 * unit());
            let before: Vec<serde_json::Value> =
                serde_json::from_slice(&p.ferry(&["history", "--task", task, "--json"]).stdout)
                    .unwrap();
            let mut child = p
                .command(&["run", task, "--no-notify"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(at);
            let _ = child.kill(); // SIGKILL (it may have finished already)
            child.wait().unwrap();
            let what = format!("{task} trial {trial}: killed at {at:?} of {took:?}");

            if path.exists() {
                match reference_rows {
                    Some(rows) => assert_eq!(xlsx_rows(&path), rows, "{what}"),
                    None => assert_eq!(sha(&path), reference_sha, "{what}"),
                }
            }
            // The next start reaps the killed run and sweeps its leftovers.
            let out = p.ferry(&["run", "from_file", "--no-notify"]);
            assert_eq!(out.status.code(), Some(0), "{what}: {}", describe(&out));
            assert!(
                !dir_has(&p.path().join("exports"), |name, _| name
                    .ends_with(".partial")),
                "{what}: a partial file is left"
            );
            assert!(
                std::fs::read_dir(p.path().join("exports/.tmp"))
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(true),
                "{what}: worksheet temp files are left"
            );
            let runs: Vec<serde_json::Value> =
                serde_json::from_slice(&p.ferry(&["history", "--task", task, "--json"]).stdout)
                    .unwrap();
            if runs.len() > before.len() {
                let run = &runs[0];
                match run["status"].as_str() {
                    Some("succeeded") => {
                        assert!(path.exists(), "{what}: succeeded without its file");
                        assert_eq!(run["files"][0]["sha256"], sha(&path), "{what}");
                    }
                    Some("failed") => {
                        let error = run["error"].as_str().unwrap_or_default();
                        assert!(error.starts_with("interrupted:"), "{what}: {run}");
                    }
                    other => panic!("{what}: run left {other:?}: {run}"),
                }
            } else {
                assert!(!path.exists(), "{what}: a file without a run");
            }
            let _ = std::fs::remove_file(&path);
        }
    }
}
