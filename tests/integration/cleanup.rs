//! Retention (issue 15 item 3): runs with result files back-dated through the store, then
//! `ferry cleanup --dry-run`, `ferry cleanup` and `ferry cleanup --days N` through the
//! binary: what each prints, which files go, the space freed, history keeping the record
//! (with its sha256) of a removed file, and old runs deleted whole.

use chrono::{Duration, Utc};
use ferry::store::{Claim, FileRecord, Outcome, Status, StoreUrl, Trigger};

use crate::support::{Project, describe, history, stdout};

/// Records a finished run of `task` that started `days_ago`, with one result file of
/// `bytes` bytes written under `exports/`; its path.
async fn back_dated_run(p: &Project, task: &str, days_ago: i64, bytes: usize) -> String {
    let store = ferry::store::open(&StoreUrl::Sqlite(p.path().join("data/ferry.db")))
        .await
        .unwrap();
    let at = Utc::now() - Duration::days(days_ago);
    let path = p
        .path()
        .join(format!("exports/{task}/{task}_{days_ago}d.csv"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "x".repeat(bytes)).unwrap();
    let run_id = uuid_like(task, days_ago);
    let claim = Claim {
        run_id: run_id.clone(),
        task: task.into(),
        scheduled_at: at,
        trigger: Trigger::Schedule,
        node: "n".into(),
        pid: 1,
        started_at: at,
        started_by: None,
    };
    assert!(store.claim(&claim).await.unwrap());
    store
        .finish(
            &run_id,
            &Outcome {
                status: Status::Succeeded,
                finished_at: at + Duration::seconds(5),
                rows: 1,
                files: vec![FileRecord {
                    path: path.display().to_string(),
                    bytes: bytes as u64,
                    sha256: format!("{:0>64}", format!("{days_ago}")),
                }],
                warnings: vec![],
                error: None,
            },
        )
        .await
        .unwrap();
    store.close().await;
    path.display().to_string()
}

fn uuid_like(task: &str, days_ago: i64) -> String {
    format!("run-{task}-{days_ago}d")
}

fn exists(path: &str) -> bool {
    std::path::Path::new(path).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_removes_what_retention_says_and_keeps_the_record() {
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        "timezone: UTC
store: { url: \"sqlite://data/ferry.db\" }
retention: { files_days: 30, history_days: 90 }
datasources:
  db: { type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }
",
    );
    let task =
        "schedule: \"0 6 * * *\"\nsource: db\nquery: SELECT 1 AS n\noutput: { format: csv }\n";
    crate::support::only_task(&p, "a", task);
    // b keeps the files of its last run whatever their age (and, from config.yaml, any
    // file younger than 30 days).
    p.write(
        "tasks/b.yaml",
        &format!("{task}retention: {{ files_runs: 1 }}\n"),
    );
    let out = p.ferry(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let a100 = back_dated_run(&p, "a", 100, 1000).await;
    let a40 = back_dated_run(&p, "a", 40, 2000).await;
    let a10 = back_dated_run(&p, "a", 10, 4000).await;
    let b50 = back_dated_run(&p, "b", 50, 300).await;
    let b45 = back_dated_run(&p, "b", 45, 500).await;

    let dry = p.ferry(&["cleanup", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", describe(&dry));
    let text = stdout(&dry);
    for f in [&a100, &a40, &b50] {
        assert!(text.contains(&format!("would remove {f} ")), "{text}");
    }
    for f in [&a10, &b45] {
        assert!(!text.contains(f.as_str()), "{text}");
    }
    assert!(
        text.contains("would delete 1 run(s) from history"),
        "{text}"
    );
    assert!(
        text.contains("would free: 3 file(s), 3.2 KB (3300 bytes) — dry run"),
        "{text}"
    );
    assert!([&a100, &a40, &a10, &b50, &b45].iter().all(|f| exists(f)));
    assert_eq!(history(&p, "a").len(), 3);

    let run = p.ferry(&["cleanup"]);
    assert_eq!(run.status.code(), Some(0), "{}", describe(&run));
    let text = stdout(&run);
    for f in [&a100, &a40, &b50] {
        assert!(text.contains(&format!("removed {f} ")), "{text}");
        assert!(!exists(f), "{f} is still there");
    }
    assert!(exists(&a10) && exists(&b45));
    assert!(text.contains("deleted 1 run(s) from history"), "{text}");
    assert!(
        text.contains("freed: 3 file(s), 3.2 KB (3300 bytes)"),
        "{text}"
    );

    // History: the 100-day run is gone; the 40-day one keeps its file's record.
    let a = history(&p, "a");
    let ids: Vec<&str> = a.iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [uuid_like("a", 10), uuid_like("a", 40)]);
    let kept = &a[1];
    assert!(kept["files_removed_at"].is_string(), "{kept}");
    assert_eq!(kept["files"][0]["path"], a40.as_str());
    assert_eq!(kept["files"][0]["sha256"], format!("{:0>64}", "40"));
    assert!(a[0].get("files_removed_at").is_none(), "{}", a[0]);

    // Again: nothing left to do.
    let again = p.ferry(&["cleanup"]);
    assert!(
        stdout(&again).contains("freed: 0 file(s)"),
        "{}",
        describe(&again)
    );

    // --days 5: every file older than 5 days goes, whatever files_runs says.
    let days = p.ferry(&["cleanup", "--days", "5"]);
    assert_eq!(days.status.code(), Some(0), "{}", describe(&days));
    assert!(!exists(&a10) && !exists(&b45), "{}", describe(&days));
    assert!(
        stdout(&days).contains("freed: 2 file(s), 4.4 KB (4500 bytes)"),
        "{}",
        describe(&days)
    );
    let bad = p.ferry(&["cleanup", "--days", "0"]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
}

/// `ferry serve` applies retention at start and again a day later (its clock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_applies_retention_at_start_and_daily() {
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        "timezone: UTC
store: { url: \"sqlite://data/ferry.db\" }
retention: { files_days: 30 }
datasources:
  db: { type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }
",
    );
    crate::support::only_task(
        &p,
        "a",
        "schedule: \"0 6 1 1 *\"\nsource: db\nquery: SELECT 1 AS n\noutput: { format: csv }\n",
    );
    let old = back_dated_run(&p, "a", 31, 100).await;
    let young = back_dated_run(&p, "a", 29, 200).await;
    let mut d = crate::support::Daemon::start(&p, Utc::now()).await;
    let first = d
        .wait_for("the retention pass at start", |e| {
            matches!(e, ferry::daemon::Event::RetentionPass { .. })
        })
        .await;
    assert_eq!(
        first,
        ferry::daemon::Event::RetentionPass {
            files: 1,
            freed: 100,
            runs: 0
        }
    );
    assert!(!exists(&old) && exists(&young));
    // Two days on (the daemon's clock): the next pass takes the other file.
    d.clock.set(Utc::now() + Duration::days(2));
    let next = d
        .wait_for("the next day's retention pass", |e| {
            matches!(e, ferry::daemon::Event::RetentionPass { files: 1, .. })
        })
        .await;
    assert_eq!(
        next,
        ferry::daemon::Event::RetentionPass {
            files: 1,
            freed: 200,
            runs: 0
        }
    );
    assert!(!exists(&young));
    d.stop().await;
}
