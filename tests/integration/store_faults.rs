//! Faults under the run store (issue 12 item 4): a full disk (a small tmpfs this test
//! mounts) and a store locked by another process (the `sqlite3` shell).
//!
//! - The full-disk tests run the daemon in this process on a manual clock, on a
//!   `current_thread` runtime so that [`Logs`] sees its log lines.
//! - The lock tests run the `ferry` binary, as a user would, beside a `sqlite3` shell
//!   holding the lock.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ferry::store::{DeliveryStatus, RunRecord, Status};

use crate::support::{Daemon, LockHolder, Logs, Project, Tmpfs, describe, only_task};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A project whose store is `store` and whose one task, `every`, fires every 10 s, runs
/// `query` and notifies the outbox channel `box`.
fn every_10_s(store: &Path, query: &str) -> Project {
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        &format!(
            "timezone: UTC\nstore: {{ url: \"sqlite://{}\" }}\n\
             datasources:\n  db: {{ type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }}\n\
             channels:\n  box: {{ type: outbox, dir: outbox, recipients: [team@example.com] }}\n",
            store.display()
        ),
    );
    only_task(
        &p,
        "every",
        &format!(
            "schedule: \"*/10 * * * * *\"\nsource: db\nquery: {query}\noutput: {{ format: csv }}\nnotify: [box]\n"
        ),
    );
    p
}

/// Waits until the runs of `every` are exactly the fires `fires`, each succeeded with its
/// one outbox delivery sent.
async fn wait_delivered(d: &Daemon, fires: &[&str]) -> Vec<RunRecord> {
    let want: Vec<DateTime<Utc>> = fires.iter().map(|f| at(f)).collect();
    d.wait_runs("every", &format!("the fires {fires:?} delivered"), |runs| {
        runs.iter().map(|r| r.scheduled_at).collect::<Vec<_>>() == want
            && runs.iter().all(|r| {
                r.status == Status::Succeeded
                    && r.deliveries.len() == 1
                    && r.deliveries[0].status == DeliveryStatus::Sent
            })
    })
    .await
}

const FIRES: [&str; 3] = [
    "2026-12-07T00:00:10Z",
    "2026-12-07T00:00:20Z",
    "2026-12-07T00:00:30Z",
];

/// The daemon on [`every_10_s`] with its store on `disk`, its first fire (:10) run and
/// delivered.
async fn started_on(disk: &Tmpfs, query: &str) -> (Project, Daemon) {
    let p = every_10_s(&disk.path().join("ferry.db"), query);
    let mut d = Daemon::start(&p, at("2026-12-07T00:00:05Z")).await;
    d.advance_to(at(FIRES[0])).await;
    wait_delivered(&d, &FIRES[..1]).await;
    (p, d)
}

/// Once the store works again: the fire at :20 is recorded and delivered, the one at :30
/// follows, each ran and was delivered once (one outbox message each, one attempt), and
/// the failure and the recovery were each logged once (`failed` and `recovered` are parts
/// of those lines). Stops the daemon; returns the runs.
async fn recovered(
    p: &Project,
    mut d: Daemon,
    logs: &Logs,
    failed: &[&str],
    recovered: &str,
) -> Vec<RunRecord> {
    wait_delivered(&d, &FIRES[..2]).await;
    d.advance_to(at(FIRES[2])).await;
    let runs = wait_delivered(&d, &FIRES).await;
    for r in &runs {
        assert_eq!(r.deliveries[0].attempts, 1, "{r:#?}");
    }
    let messages = p.files("outbox");
    assert_eq!(messages.len(), runs.len(), "{messages:?}");
    assert_eq!(logs.count(failed), 1, "{}", logs.text());
    assert_eq!(logs.count(&[recovered]), 1, "{}", logs.text());
    d.stop().await;
    runs
}

/// Regression (issue 12): once the disk under the store had been full, no run was
/// recorded again and the scheduler logged "attempted to call begin_with at non-zero
/// transaction depth" without pause. Now a claim on the full disk fails with a plain
/// error (logged once, however often the scheduler tries), and when space returns the
/// scheduler claims the fire it could not claim and goes on: no fire lost, none twice.
#[tokio::test(flavor = "current_thread")]
async fn a_full_disk_under_the_store_stops_no_scheduler_once_space_returns() {
    let Some(disk) = Tmpfs::mount(2048) else {
        return;
    };
    let (logs, _guard) = Logs::capture();
    let (p, mut d) = started_on(&disk, "SELECT 1 AS one").await;

    disk.fill();
    // A one-off run on the full disk says what is wrong and what to do.
    let mut cmd = p.command(&["run", "every"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the disk is full, nothing was recorded: free space on that disk"),
        "{err}"
    );
    // The fire at :20 cannot be claimed; the scheduler tries again after 1 s, then 2 s.
    for t in [
        "2026-12-07T00:00:20Z",
        "2026-12-07T00:00:21Z",
        "2026-12-07T00:00:23Z",
    ] {
        d.advance_to(at(t)).await;
    }
    assert_eq!(
        d.runs("every").await.len(),
        1,
        "nothing recorded on a full disk"
    );
    let failed = ["scheduler: the run store failed", "the disk is full"];
    assert_eq!(logs.count(&failed), 1, "logged once:\n{}", logs.text());
    assert!(
        !logs.text().contains("transaction depth"),
        "{}",
        logs.text()
    );

    disk.free();
    // The next attempt (4 s later) claims the fire at :20, 7 s late, and runs it.
    d.advance_to(at("2026-12-07T00:00:27Z")).await;
    recovered(
        &p,
        d,
        &logs,
        &failed,
        "scheduler: the run store works again",
    )
    .await;
}

/// A run that finishes while the disk under the store is full keeps its outcome and
/// records it once there is room again (it is not left `running` while the daemon
/// lives); its notification then goes out once.
#[tokio::test(flavor = "current_thread")]
async fn a_run_that_ends_on_a_full_disk_is_recorded_once_space_returns() {
    let Some(disk) = Tmpfs::mount(2048) else {
        return;
    };
    if !LockHolder::available() {
        return;
    }
    let (logs, _guard) = Logs::capture();
    let (p, mut d) = started_on(&disk, "SELECT count(*) AS n FROM t").await;

    // The source is locked, so the next run waits in its query until the disk is full.
    let source = LockHolder::hold(&p.path().join("db/test.db"), "BEGIN EXCLUSIVE;");
    d.advance_to(at(FIRES[1])).await;
    d.wait_runs("every", "the fire at :20 running", |runs| {
        runs.len() == 2 && runs[1].status == Status::Running
    })
    .await;
    disk.fill();
    source.release();
    let failed = ["run outcome: the run store failed", "the disk is full"];
    let start = Instant::now();
    while logs.count(&failed) == 0 {
        assert!(
            start.elapsed() < crate::support::EVENT_WAIT,
            "the outcome was never refused:\n{}",
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(d.runs("every").await[1].status, Status::Running);

    disk.free();
    // The next attempt, 1 s later on the daemon's clock, records it.
    d.clock.set(at("2026-12-07T00:00:21Z"));
    let runs = recovered(
        &p,
        d,
        &logs,
        &failed,
        "run outcome: the run store works again",
    )
    .await;
    assert_eq!(runs[1].rows, 1, "{:#?}", runs[1]);
}

/// What another process does to lock readers out too: SQLite's exclusive locking mode.
const LOCK_EVERYONE_OUT: &str =
    "PRAGMA locking_mode = EXCLUSIVE;\nBEGIN EXCLUSIVE;\nSELECT count(*) FROM runs;";

const BUSY: &str = "ferry.db is locked by another process, waiting up to 10 s";

/// A project with its store made and one run of `types_csv` in it, and a `sqlite3`
/// shell that ran `sql` on the store and holds its locks; `None` without the shell
/// (outside CI).
fn locked_by_a_shell(sql: &str) -> Option<(Project, LockHolder)> {
    if !LockHolder::available() {
        return None;
    }
    let p = Project::fixture("project");
    p.run_json("types_csv", &[], 0);
    let shell = LockHolder::hold(&p.path().join("data/ferry.db"), sql);
    Some((p, shell))
}

/// `ferry ARGS`, spawned; returned once it said that the store is busy. Its stderr is
/// read to the end on a thread (a closed pipe would fail its later writes).
struct Waiting {
    child: Child,
    stderr: std::thread::JoinHandle<String>,
}

impl Waiting {
    fn spawn(p: &Project, args: &[&str]) -> Waiting {
        let mut child = p
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (busy_tx, busy) = std::sync::mpsc::channel();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for line in lines.map_while(Result::ok) {
                if line.contains(&format!("WARN store busy: data/{BUSY}")) {
                    let _ = busy_tx.send(());
                }
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let waiting = Waiting { child, stderr };
        if busy.recv().is_err() {
            let (out, err) = waiting.finish();
            panic!("`ferry {args:?}` ended without saying the store is busy: {out:?}\n{err}");
        }
        waiting
    }

    /// Waits for the command; its exit status and stdout, and its stderr.
    fn finish(self) -> (std::process::Output, String) {
        let out = self.child.wait_with_output().unwrap();
        (out, self.stderr.join().unwrap())
    }
}

/// Regression (issue 12): `ferry run` and even `ferry history` waited silently for
/// minutes (772 s) on a store another process had locked. Now each says so at once and
/// gives up after 10 s with an error that names the store and says what to do.
#[test]
fn a_store_locked_by_another_process_is_waited_for_10_s_then_refused() {
    let Some((p, lock)) = locked_by_a_shell(LOCK_EVERYONE_OUT) else {
        return;
    };
    let start = Instant::now();
    let spawn = |args: &[&str]| {
        let mut cmd: Command = p.command(args);
        std::thread::spawn(move || cmd.output().unwrap())
    };
    let (history, run) = (spawn(&["history"]), spawn(&["run", "types_csv"]));
    for out in [history.join().unwrap(), run.join().unwrap()] {
        let waited = start.elapsed();
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("WARN store busy: data/{BUSY}")),
            "{err}"
        );
        assert!(
            err.contains(
                "error: run store data/ferry.db is locked by another process (waited 10 s): end the program that holds it"
            ),
            "{err}"
        );
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_secs(25),
            "ended after {waited:?}"
        );
    }
    lock.release();
    // The refused run left nothing behind.
    assert_eq!(crate::support::history(&p, "types_csv").len(), 1);
}

/// A lock released while `ferry history` and `ferry run` wait for it lets both finish.
#[test]
fn commands_waiting_for_a_locked_store_go_on_once_it_is_released() {
    let Some((p, lock)) = locked_by_a_shell(LOCK_EVERYONE_OUT) else {
        return;
    };
    let start = Instant::now();
    let history = Waiting::spawn(&p, &["history", "--json"]);
    let run = Waiting::spawn(&p, &["run", "types_csv"]);
    lock.release();
    let (history, history_err) = history.finish();
    let (run, run_err) = run.finish();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(history.status.code(), Some(0), "{history_err}");
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(run.status.code(), Some(0), "{run_err}");
    assert_eq!(crate::support::history(&p, "types_csv").len(), 2);
}

/// Readers do not wait behind a writer: another process in the middle of a write
/// transaction (WAL mode) does not hold up `ferry history`, which shows the last committed
/// state; `ferry run`, which must write, waits (and says so) and goes on once the
/// transaction ends.
#[test]
fn a_reader_is_not_held_up_by_another_process_writing() {
    let Some((p, writer)) = locked_by_a_shell("BEGIN IMMEDIATE;\nDELETE FROM runs;") else {
        return;
    };
    let start = Instant::now();
    let out = p.ferry(&["history", "--json"]);
    let took = start.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("store busy"),
        "{}",
        describe(&out)
    );
    assert!(took < Duration::from_secs(3), "history took {took:?}");
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed.len(),
        1,
        "the uncommitted delete is not seen: {listed:?}"
    );

    let run = Waiting::spawn(&p, &["run", "types_csv"]);
    writer.release();
    let (run, run_err) = run.finish();
    assert_eq!(run.status.code(), Some(0), "{run_err}");
    // The shell's transaction ended without COMMIT: rolled back.
    assert_eq!(crate::support::history(&p, "types_csv").len(), 2);
}
