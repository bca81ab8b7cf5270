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

/// Reproducible random moments (xorshift64). The seed is printed; `FERRY_CRASH_SEED`
/// replays a failure.
struct Moments(u64);

impl Moments {
    fn seeded(default: u64) -> Moments {
        let seed = std::env::var("FERRY_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("seed {seed} (FERRY_CRASH_SEED={seed} replays it)");
        Moments(seed | 1)
    }

    /// A number in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 10_000) as f64 / 10_000.0
    }
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
    let mut rng = Moments::seeded(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );

    for (task, file) in [("big_csv", "big.csv"), ("big_xlsx", "big.xlsx")] {
        let path = p.path().join("exports").join(task).join(file);
        // A reference run, uninterrupted: its duration spreads the kills, its file is
        // what a complete one looks like.
        let start = Instant::now();
        let reference = p.run_json(task, &["--no-notify"], 0);
        let took = start.elapsed();
        let reference_sha = sha(&path);
        let reference_rows = (file.ends_with(".xlsx")).then(|| data_rows(&path));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(reference["status"], "succeeded");

        for trial in 0..6 {
            // Kill anywhere from the start to just past the usual end.
            let at = took.mul_f64(1.1 * rng.unit());
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
                    Some(rows) => assert_eq!(data_rows(&path), rows, "{what}"),
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

/// The run id in a webhook post of the built-in report (`- Run: <id>, took …`).
fn posted_run_id(post: &crate::fake_robots::Received) -> String {
    let text = post.json()["text"].as_str().unwrap_or_default().to_string();
    let rest = text.split_once("Run: ").map(|(_, r)| r).unwrap_or_default();
    rest.split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Issue 12's fault suite (reliability.md cases 20 and 23 under `ferry serve`): SIGKILL
/// `ferry serve` ten times at seeded random moments — while a file is being written, and
/// right after the webhook received a report (before or after ferry recorded it) — and
/// restart it each time. Then: every fire of every task has exactly one row, none left
/// `running` (no lost run); the webhook got each run's report once, more often only for a
/// delivery recorded `maybe_duplicate` (the documented ambiguity window), never for a run
/// that is not in history, and every delivery recorded `sent` arrived; no partial or
/// worksheet temp file is left, and every published file belongs to a succeeded run and
/// has its recorded sha256.
///
/// A kill during the one resend of an interrupted delivery leaves it `sending` again: it
/// is then never sent a third time but recorded `failed` (at most two copies arrived).
#[test]
fn sigkill_of_serve_during_exports_and_deliveries_loses_no_run_and_sends_nothing_twice() {
    use sha2::{Digest, Sha256};

    use crate::fake_robots::{FakeRobots, Settings};
    use crate::support::{history, serve, terminate, wait_logged};

    let fake = FakeRobots::start(Settings::default());
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        &format!(
            "timezone: UTC\nstore: {{ url: \"sqlite://data/ferry.db\" }}\n\
             scheduler: {{ delivery_interval: 200ms }}\n\
             datasources:\n  db: {{ type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }}\n\
             channels:\n  hook: {{ type: webhook, url: \"{}\", secret: {} }}\n",
            fake.webhook_url(),
            Settings::default().webhook_secret
        ),
    );
    // Build the database first (a task that never fires), so that kills land in exports.
    crate::support::only_task(
        &p,
        "seed",
        "schedule: \"0 0 1 1 *\"\nsource: db\nquery: SELECT 1 AS one\noutput: { format: csv }\n",
    );
    p.run_json("seed", &["--no-notify"], 0);
    std::fs::remove_file(p.path().join("tasks/seed.yaml")).unwrap();
    let task = |every: u32, rows: u32, format: &str| {
        format!(
            "schedule: \"*/{every} * * * * *\"\nsource: db\nmisfire_grace: 10m\n\
             query: SELECT id, label, v FROM big WHERE id <= {rows}\n\
             output: {{ format: {format}, file_name: rows }}\nnotify: [hook]\n"
        )
    };
    let tasks = [("rows_csv", 2), ("rows_xlsx", 3)];
    p.write("tasks/rows_csv.yaml", &task(2, 30_000, "csv"));
    p.write("tasks/rows_xlsx.yaml", &task(3, 10_000, "xlsx"));
    let exports = p.path().join("exports");

    let mut rng = Moments::seeded(0x0012_5eed);
    for trial in 0..10 {
        let mut child = serve(&p, &format!("serve{trial}.log"));
        let posts = fake.received().len();
        // Odd trials: right after a report reached the webhook; even: while a file is
        // written. (If it does not come within 8 s, whenever that is.)
        // Within 20 ms of a post the kill may land before ferry records it as sent.
        let (what, hit, spread_ms) = if trial % 2 == 1 {
            let hit = wait_for(Duration::from_secs(8), || fake.received().len() > posts);
            ("after a webhook post", hit, 20.0)
        } else {
            let hit = wait_for(Duration::from_secs(8), || {
                dir_has(&exports, |name, _| name.ends_with(".partial"))
            });
            ("while a file was written", hit, 150.0)
        };
        let delay = Duration::from_millis((rng.unit() * spread_ms) as u64);
        std::thread::sleep(delay);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        eprintln!("trial {trial}: killed {delay:?} {what} (seen: {hit})");
    }

    // One clean run of serve: it reaps the killed runs, sweeps their files, retries what
    // was left to deliver; it stops once every earlier run's deliveries are settled and
    // each task ran again.
    let restarted = chrono::Utc::now();
    let mut last = serve(&p, "final.log");
    let started = |r: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(r["started_at"].as_str().unwrap_or_default())
            .map(|t| t.to_utc())
            .unwrap_or(restarted)
    };
    let settled = |p: &Project| {
        tasks.iter().all(|(t, _)| {
            let runs = history(p, t);
            let ran_again = runs.iter().any(|r| {
                r["status"] == "succeeded"
                    && started(r) > restarted
                    && r["deliveries"][0]["status"] == "sent"
            });
            let before_settled = runs
                .iter()
                .filter(|r| started(r) < restarted)
                .flat_map(|r| r["deliveries"].as_array().cloned().unwrap_or_default())
                .all(|d| {
                    ["sent", "maybe_duplicate", "failed"]
                        .contains(&d["status"].as_str().unwrap_or_default())
                });
            ran_again && before_settled
        })
    };
    wait_logged(
        &p,
        "final.log",
        Duration::from_secs(60),
        "settled deliveries",
        || settled(&p),
    );
    assert_eq!(
        terminate(&mut last),
        Some(0),
        "{}",
        crate::support::read_log(&p, "final.log")
    );

    // Reports per run id, as the webhook received them.
    let mut received: std::collections::BTreeMap<String, usize> = Default::default();
    for post in fake.received() {
        assert_eq!(post.answer.0, 200, "{post:?}");
        *received.entry(posted_run_id(&post)).or_default() += 1;
    }
    let mut all_runs = std::collections::BTreeMap::new();
    let mut published = std::collections::BTreeSet::new();
    for (t, every) in tasks {
        let mut runs = history(&p, t);
        runs.sort_by_key(|r| r["scheduled_at"].as_str().unwrap().to_string());
        assert!(runs.len() >= 5, "{t}: {runs:#?}");
        // No lost run: one row per fire, consecutive fires `every` seconds apart, none
        // left running; a failed run was interrupted by a kill.
        for w in runs.windows(2) {
            let at = |r: &serde_json::Value| {
                chrono::DateTime::parse_from_rfc3339(r["scheduled_at"].as_str().unwrap()).unwrap()
            };
            assert_eq!(
                (at(&w[1]) - at(&w[0])).num_seconds(),
                every,
                "{t}: gap or duplicate between {} and {}",
                w[0]["scheduled_at"],
                w[1]["scheduled_at"]
            );
        }
        for r in &runs {
            let status = r["status"].as_str().unwrap();
            assert!(
                ["succeeded", "failed", "missed", "skipped", "cancelled"].contains(&status),
                "{t}: {r}"
            );
            if status == "failed" {
                let error = r["error"].as_str().unwrap_or_default();
                assert!(error.starts_with("interrupted:"), "{t}: {r}");
            }
            if status == "succeeded" {
                // Every succeeded run's report is in the ledger, and what it says was sent
                // arrived: once, or twice for an ambiguous send recorded as such.
                let d = &r["deliveries"][0];
                let got = received
                    .get(r["run_id"].as_str().unwrap())
                    .copied()
                    .unwrap_or(0);
                match d["status"].as_str().unwrap() {
                    "sent" => assert_eq!(got, 1, "{t}: {r}"),
                    // The copy beyond the first comes from an attempt cut by a kill
                    // after the post left: one resend, never more.
                    "maybe_duplicate" => assert!((1..=2).contains(&got), "{t}: {got} copies: {r}"),
                    // The resend was cut by a kill too: not sent a third time.
                    "failed" => {
                        assert!(
                            d["error"]
                                .as_str()
                                .unwrap_or("")
                                .contains("not sent a third time"),
                            "{t}: {r}"
                        );
                        assert!(got <= 2, "{t}: {got} copies: {r}");
                    }
                    "pending" => assert!(got <= 1, "{t}: {r}"),
                    other => panic!("{t}: delivery {other}: {r}"),
                }
                for f in r["files"].as_array().unwrap() {
                    let path = std::path::PathBuf::from(f["path"].as_str().unwrap());
                    let path = if path.is_absolute() {
                        path
                    } else {
                        p.path().join(path)
                    };
                    let sha = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
                    assert_eq!(f["sha256"], sha, "{t}: {}", path.display());
                    published.insert(path.canonicalize().unwrap());
                }
            }
            let delivery = r["deliveries"][0]["status"].as_str().unwrap_or("none");
            all_runs.insert(
                r["run_id"].as_str().unwrap().to_string(),
                format!("{status}, delivery {delivery}"),
            );
        }
    }
    for (run_id, n) in &received {
        assert!(
            all_runs.contains_key(run_id),
            "a report of an unknown run {run_id} ({n}x)"
        );
    }
    // No partial or worksheet temp file; every file is a succeeded run's.
    assert!(!dir_has(&exports, |name, _| name.ends_with(".partial")));
    assert!(
        !dir_has(&exports.join(".tmp"), |_, _| true),
        "worksheet temp files left"
    );
    // A kill after a file was published and before its run was recorded leaves the file
    // (complete: it was published atomically) and a run recorded `interrupted`.
    let mut orphans = 0;
    for (t, rows) in [("rows_csv", 30_000), ("rows_xlsx", 10_000)] {
        for e in std::fs::read_dir(exports.join(t)).unwrap().flatten() {
            let path = e.path().canonicalize().unwrap();
            if !published.contains(&path) {
                orphans += 1;
                assert_eq!(
                    data_rows(&path),
                    rows,
                    "an incomplete file: {}",
                    path.display()
                );
            }
        }
    }
    let mut outcomes: std::collections::BTreeMap<&str, usize> = Default::default();
    for o in all_runs.values() {
        *outcomes.entry(o.as_str()).or_default() += 1;
    }
    eprintln!(
        "runs by outcome: {outcomes:?}; reports received: {}; complete files of interrupted runs: {orphans}",
        received.values().sum::<usize>()
    );
}

/// Data rows in an exported CSV (lines after the header) or XLSX file (rows of its first
/// sheet after the header); a workbook that does not open fails the test.
fn data_rows(path: &Path) -> usize {
    if path.extension().is_some_and(|e| e == "xlsx") {
        use calamine::{Reader, Xlsx, open_workbook};
        let mut book: Xlsx<_> = open_workbook(path).expect("a complete workbook opens");
        let sheet = book.sheet_names()[0].clone();
        book.worksheet_range(&sheet).unwrap().rows().count() - 1
    } else {
        std::fs::read_to_string(path).unwrap().lines().count() - 1
    }
}
