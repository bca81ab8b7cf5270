//! The real `ferry serve`: fires on time, survives SIGKILL without running a fire twice or
//! losing one silently, refuses a second instance, reloads on file changes, and drains
//! on SIGTERM.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::support::{Project, history, only_task, serve, terminate, wait_logged, wait_until};

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
    // Fires every second throughout: its runs show which fires the scheduler has passed.
    only_task(
        &p,
        "witness",
        "schedule: \"* * * * * *\"\nsource: db\nquery: SELECT 1 AS one\noutput: { format: csv, file_name: witness }\n",
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
    // Remove it: no more runs. Once the removal is applied, the scheduler passes two
    // more fires of the witness; `fast` had the same fires and must have none of them.
    std::fs::remove_file(p.path().join("tasks/fast.yaml")).unwrap();
    wait_until(Duration::from_secs(30), "the removal", || {
        log().contains("task removed")
    });
    let removed_at = Utc::now();
    wait_logged(
        &p,
        "serve.log",
        Duration::from_secs(30),
        "two fires of the witness after the removal",
        || {
            history(&p, "witness")
                .iter()
                .filter(|r| instant(&r["scheduled_at"]) > removed_at)
                .count()
                >= 2
        },
    );
    let after: Vec<_> = history(&p, "fast")
        .into_iter()
        .filter(|r| instant(&r["scheduled_at"]) > removed_at)
        .collect();
    assert!(after.is_empty(), "a removed task must not run: {after:#?}");
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
