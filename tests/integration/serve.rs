//! The real `ferry serve`: fires on time, survives SIGKILL without running a fire twice or
//! losing one silently, refuses a second instance, reloads on file changes, and drains
//! on SIGTERM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::support::Project;

pub(crate) fn only_task(p: &Project, name: &str, body: &str) {
    for f in std::fs::read_dir(p.path().join("tasks")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "yaml") {
            std::fs::remove_file(f).unwrap();
        }
    }
    p.write(&format!("tasks/{name}.yaml"), body);
}

pub(crate) fn serve(p: &Project, log: &str) -> Child {
    let log = std::fs::File::create(p.path().join(log)).unwrap();
    p.command(&["serve"])
        .env("FERRY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

pub(crate) fn history(p: &Project, task: &str) -> Vec<serde_json::Value> {
    let out = p.ferry(&["history", "--task", task, "--limit", "1000", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Like `wait_until`, but shows the serve log when it times out.
pub(crate) fn wait_logged(
    p: &Project,
    log: &str,
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            let text = std::fs::read_to_string(p.path().join(log)).unwrap_or_default();
            let hist = p.ferry(&["history", "--limit", "50"]);
            panic!(
                "timed out waiting for {what}\n--- {log}\n{text}\n--- history\n{}{}",
                String::from_utf8_lossy(&hist.stdout),
                String::from_utf8_lossy(&hist.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn terminate(child: &mut Child) -> Option<i32> {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn instant(v: &serde_json::Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn survives_sigkill_without_running_a_fire_twice_or_losing_one() {
    let p = Project::fixture("project");
    only_task(
        &p,
        "tick",
        "schedule: \"*/2 * * * * *\"\nsource: db\nmisfire_grace: 10m\nquery: SELECT id FROM t\noutput: { format: csv, file_name: tick }\n",
    );
    let mut a = serve(&p, "serve1.log");
    let ok = |p: &Project| {
        history(p, "tick")
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .count()
    };
    wait_logged(
        &p,
        "serve1.log",
        Duration::from_secs(60),
        "two runs",
        || ok(&p) >= 2,
    );
    a.kill().unwrap(); // SIGKILL
    a.wait().unwrap();
    let killed_at = Utc::now();
    // Downtime long enough to miss at least two fires.
    std::thread::sleep(Duration::from_secs(5));
    let mut b = serve(&p, "serve2.log");
    wait_logged(
        &p,
        "serve2.log",
        Duration::from_secs(60),
        "a run after the restart",
        || {
            history(&p, "tick").iter().any(|r| {
                r["status"] == "succeeded"
                    && instant(&r["started_at"]) > killed_at + chrono::Duration::seconds(5)
            })
        },
    );
    assert_eq!(terminate(&mut b), Some(0));

    let mut runs = history(&p, "tick");
    runs.sort_by_key(|r| instant(&r["scheduled_at"]));
    let fires: Vec<DateTime<Utc>> = runs.iter().map(|r| instant(&r["scheduled_at"])).collect();
    // Every fire from the first to the last has exactly one row: none twice, none lost.
    for w in fires.windows(2) {
        assert_eq!(
            (w[1] - w[0]).num_seconds(),
            2,
            "gap or duplicate between {} and {}: {runs:#?}",
            w[0],
            w[1]
        );
    }
    let missed: Vec<_> = runs.iter().filter(|r| r["status"] == "missed").collect();
    assert!(
        !missed.is_empty(),
        "the downtime fires are recorded as missed: {runs:#?}"
    );
    for m in &missed {
        assert!(
            m["reason"]
                .as_str()
                .unwrap()
                .contains("missed while ferry was not running")
        );
        assert!(instant(&m["scheduled_at"]) > killed_at - chrono::Duration::seconds(3));
    }
    // The latest fire of the downtime ran (catch-up within grace), right after the missed.
    let last_missed = missed
        .iter()
        .map(|m| instant(&m["scheduled_at"]))
        .max()
        .unwrap();
    let after = runs
        .iter()
        .find(|r| instant(&r["scheduled_at"]) > last_missed)
        .unwrap();
    assert_eq!(after["status"], "succeeded", "{runs:#?}");
    assert!(
        runs.iter()
            .all(|r| ["succeeded", "missed", "failed"].contains(&r["status"].as_str().unwrap())),
        "{runs:#?}"
    );
    let log = std::fs::read_to_string(p.path().join("serve2.log")).unwrap();
    assert!(
        log.contains("missed: missed while ferry was not running"),
        "{log}"
    );
    assert!(
        log.contains("lateness_ms"),
        "each fire is logged with its lateness: {log}"
    );
}

#[test]
fn a_second_serve_on_the_same_store_refuses_to_start() {
    let p = Project::fixture("project");
    only_task(
        &p,
        "daily",
        "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT 1 AS one\noutput: { format: csv }\n",
    );
    let mut a = serve(&p, "a.log");
    wait_until(Duration::from_secs(30), "the first serve to start", || {
        std::fs::read_to_string(p.path().join("a.log"))
            .unwrap_or_default()
            .contains("ferry serve started")
    });
    let b = p.ferry(&["serve"]);
    assert_eq!(b.status.code(), Some(1));
    let err = String::from_utf8_lossy(&b.stderr);
    assert!(
        err.contains("another `ferry serve` is already running on the run store data/ferry.db"),
        "{err}"
    );
    assert_eq!(terminate(&mut a), Some(0));
}

#[test]
fn file_changes_are_picked_up_without_a_restart() {
    let p = Project::fixture("project");
    only_task(
        &p,
        "daily",
        "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT 1 AS one\noutput: { format: csv }\n",
    );
    let mut a = serve(&p, "serve.log");
    let log = || std::fs::read_to_string(p.path().join("serve.log")).unwrap_or_default();
    wait_until(Duration::from_secs(30), "start", || {
        log().contains("ferry serve started")
    });
    p.write("tasks/fast.yaml", "schedule: \"* * * * * *\"\nsource: db\nquery: SELECT 1 AS one\noutput: { format: csv, file_name: fast }\n");
    wait_until(Duration::from_secs(30), "the new task to run", || {
        history(&p, "fast")
            .iter()
            .any(|r| r["status"] == "succeeded")
    });
    assert!(log().contains("task added"), "{}", log());
    // Break it: the last good version keeps running and the error is logged.
    p.write(
        "tasks/fast.yaml",
        "schedule: \"* * * * * *\"\nsource: [broken\n",
    );
    wait_until(
        Duration::from_secs(30),
        "the invalid file to be reported",
        || log().contains("invalid task file"),
    );
    let before = history(&p, "fast").len();
    wait_until(
        Duration::from_secs(30),
        "the last good version to keep running",
        || history(&p, "fast").len() > before + 1,
    );
    // Remove it: no more runs.
    std::fs::remove_file(p.path().join("tasks/fast.yaml")).unwrap();
    wait_until(Duration::from_secs(30), "the removal", || {
        log().contains("task removed")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let settled = history(&p, "fast").len();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        history(&p, "fast").len(),
        settled,
        "a removed task must not run"
    );
    assert_eq!(terminate(&mut a), Some(0));
}

#[test]
fn sigterm_drains_then_cancels_the_run_in_flight() {
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        &format!(
            "{}scheduler: {{ drain_timeout: 1s }}\n",
            std::fs::read_to_string(p.path().join("config.yaml")).unwrap()
        ),
    );
    only_task(
        &p,
        "slow",
        "schedule: \"* * * * * *\"\nsource: db\nquery: |\n  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000)\n  SELECT max(x) AS m FROM c\noutput: { format: csv, file_name: slow }\n",
    );
    let mut a = serve(&p, "serve.log");
    wait_logged(
        &p,
        "serve.log",
        Duration::from_secs(60),
        "the slow run to start",
        || history(&p, "slow").iter().any(|r| r["status"] == "running"),
    );
    let started = Instant::now();
    assert_eq!(terminate(&mut a), Some(0));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let runs = history(&p, "slow");
    let cancelled: Vec<_> = runs.iter().filter(|r| r["status"] == "cancelled").collect();
    assert!(!cancelled.is_empty(), "{runs:#?}");
    assert!(
        cancelled[0]["error"]
            .as_str()
            .unwrap()
            .contains("ferry is shutting down"),
        "{runs:#?}"
    );
    assert!(
        runs.iter().all(|r| r["status"] != "running"),
        "nothing left running: {runs:#?}"
    );
    assert!(!p.path().join("exports/slow/slow.csv").exists());
}
