//! `ferry tasks pause|resume NAME` (issue 15 item 5) against a real `ferry serve`: the
//! pause is recorded with who and why, shown by `ferry tasks` and `ferry status`, and
//! the running daemon records the paused task's fires as skipped (the other task keeps
//! running); after `resume` the task runs again.

use std::time::Duration;

use crate::support::{Project, describe, history, serve, stdout, terminate, wait_logged};

fn statuses(p: &Project, task: &str) -> Vec<(String, String)> {
    history(p, task)
        .iter()
        .map(|r| {
            (
                r["status"].as_str().unwrap_or_default().to_string(),
                r["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn paused_tasks_are_skipped_by_serve_and_shown_until_resumed() {
    let p = Project::fixture("project");
    let every_second = |name: &str| {
        format!(
            "schedule: \"* * * * * *\"\ntimezone: UTC\nsource: db\nquery: SELECT 1 AS n\noutput: {{ format: csv, file_name: {name} }}\n"
        )
    };
    crate::support::only_task(&p, "ticker", &every_second("ticker"));
    p.write("tasks/other.yaml", &every_second("other"));

    let out = p
        .command(&[
            "tasks",
            "pause",
            "ticker",
            "--reason",
            "warehouse migration",
        ])
        .env("USER", "alice")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stdout(&out).contains("task `ticker` paused by alice@"),
        "{}",
        describe(&out)
    );
    let unknown = p.ferry(&["tasks", "pause", "tickr"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", describe(&unknown));

    let tasks = stdout(&p.ferry(&["tasks"]));
    let line = tasks.lines().find(|l| l.starts_with("ticker")).unwrap();
    assert!(
        line.contains("paused by alice@") && line.ends_with(": warehouse migration"),
        "{tasks}"
    );
    let status = p.ferry(&["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", describe(&status));
    assert!(
        stdout(&status).contains("paused tasks:\n  ticker")
            && stdout(&status).contains("warehouse migration"),
        "{}",
        describe(&status)
    );

    let mut child = serve(&p, "serve.log");
    wait_logged(
        &p,
        "serve.log",
        Duration::from_secs(30),
        "a skipped fire and a run of the other task",
        || {
            statuses(&p, "ticker").iter().any(|(s, _)| s == "skipped")
                && statuses(&p, "other").iter().any(|(s, _)| s == "succeeded")
        },
    );
    let during = statuses(&p, "ticker");
    assert!(during.iter().all(|(s, _)| s == "skipped"), "{during:?}");
    assert!(
        during[0].1.contains("paused (by alice@") && during[0].1.contains(": warehouse migration)"),
        "{during:?}"
    );
    let live = stdout(&p.ferry(&["status"]));
    assert!(live.contains("processes:\n  "), "{live}");

    let out = p.ferry(&["tasks", "resume", "ticker"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    wait_logged(
        &p,
        "serve.log",
        Duration::from_secs(30),
        "a run after the resume",
        || statuses(&p, "ticker").iter().any(|(s, _)| s == "succeeded"),
    );
    assert_eq!(terminate(&mut child), Some(0));
    let again = p.ferry(&["tasks", "resume", "ticker"]);
    assert_eq!(again.status.code(), Some(2), "{}", describe(&again));
    assert!(!stdout(&p.ferry(&["tasks"])).contains("paused"));
}
