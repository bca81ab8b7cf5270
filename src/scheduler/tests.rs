//! Clock-driven scheduler tests: time is a value passed to `tick`, runs go to a fake
//! runner that records them and finishes them when told; nothing sleeps to wait.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use super::*;
use crate::store::sqlite::SqliteStore;
use crate::store::{HistoryFilter, RunRecord, Runs, Schedule};

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Records each job; holds it until released (if `hold`) or stopped.
struct FakeRunner {
    store: Arc<dyn Store>,
    log: Mutex<Vec<(String, DateTime<Utc>)>>,
    hold: bool,
    gate: Semaphore,
}

impl FakeRunner {
    fn new(store: Arc<dyn Store>, hold: bool) -> Arc<FakeRunner> {
        Arc::new(FakeRunner {
            store,
            log: Mutex::new(Vec::new()),
            hold,
            gate: Semaphore::new(0),
        })
    }

    fn fires(&self) -> Vec<(String, DateTime<Utc>)> {
        self.log.lock().unwrap().clone()
    }

    fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }
}

#[async_trait]
impl Runner for FakeRunner {
    async fn run(&self, job: Job) {
        self.log
            .lock()
            .unwrap()
            .push((job.task.name.clone(), job.scheduled_at));
        let (status, error) = if self.hold {
            tokio::select! {
                p = self.gate.acquire() => { p.unwrap().forget(); (Status::Succeeded, None) }
                _ = job.stop.stopped() => (Status::Cancelled, Some(format!("cancelled: {}", job.stop.reason()))),
            }
        } else {
            (Status::Succeeded, None)
        };
        let outcome = Outcome {
            status,
            finished_at: crate::clock::wall_now(),
            rows: 1,
            files: vec![],
            warnings: vec![],
            error,
        };
        self.store.finish(&job.run_id, &outcome).await.unwrap();
    }
}

struct Env {
    dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
}

impl Env {
    async fn new(config_extra: &str, tasks: &[(&str, &str)]) -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tasks")).unwrap();
        std::fs::create_dir_all(dir.path().join("templates")).unwrap();
        std::fs::write(dir.path().join("templates/report.md.j2"), "{{ task_name }}").unwrap();
        std::fs::write(
            dir.path().join("config.yaml"),
            format!("timezone: UTC\ndatasources:\n  db: {{ type: sqlite, url: \"sqlite://db.sqlite\" }}\n{config_extra}"),
        )
        .unwrap();
        let env = Env {
            store: Arc::new(
                SqliteStore::open(&dir.path().join("data/ferry.db"))
                    .await
                    .unwrap(),
            ),
            dir,
        };
        for (name, body) in tasks {
            env.write_task(name, body);
        }
        env
    }

    /// Rewrites config.yaml with `config_extra` after the common part.
    fn write_config(&self, config_extra: &str) {
        std::fs::write(
            self.dir.path().join("config.yaml"),
            format!("timezone: UTC\ndatasources:\n  db: {{ type: sqlite, url: \"sqlite://db.sqlite\" }}\n{config_extra}"),
        )
        .unwrap();
    }

    fn write_task(&self, name: &str, body: &str) {
        std::fs::write(
            self.dir.path().join("tasks").join(format!("{name}.yaml")),
            body,
        )
        .unwrap();
    }

    fn remove_task(&self, name: &str) {
        std::fs::remove_file(self.dir.path().join("tasks").join(format!("{name}.yaml"))).unwrap();
    }

    fn project(&self) -> Project {
        Project::load(&self.dir.path().join("config.yaml")).unwrap()
    }

    async fn scheduler(&self, runner: &Arc<FakeRunner>, now: &str) -> Scheduler {
        let mut s = Scheduler::new(
            self.project(),
            self.store.clone(),
            runner.clone(),
            Arc::new(crate::clock::SystemClock),
        );
        s.start(utc(now)).await.unwrap();
        s
    }

    async fn history(&self, task: &str) -> Vec<RunRecord> {
        let mut runs = self
            .store
            .list(&HistoryFilter {
                task: Some(task.into()),
                limit: 10_000,
            })
            .await
            .unwrap();
        runs.sort_by_key(|r| r.scheduled_at);
        runs
    }
}

fn task(schedule: &str, extra: &str) -> String {
    format!(
        "schedule: \"{schedule}\"\nsource: db\nquery: SELECT 1 AS one\noutput: {{ format: csv }}\n{extra}"
    )
}

/// Ticks at every wake-up instant up to `until`, letting runs finish in between.
async fn drive(s: &mut Scheduler, until: DateTime<Utc>) {
    let mut guard = 0;
    while let Some(w) = s.next_wake() {
        if w > until {
            break;
        }
        s.tick(w).await.unwrap();
        s.wait_idle().await;
        guard += 1;
        assert!(guard < 100_000, "runaway schedule");
    }
}

fn times(fires: &[(String, DateTime<Utc>)]) -> Vec<String> {
    fires.iter().map(|(_, t)| fmt_instant(*t)).collect()
}

/// reliability.md §8 case 4: a clock stepping back never runs a fire twice, and a second
/// scheduler on the same store loses the claim.
#[tokio::test]
async fn clock_stepping_back_never_reruns_a_fire() {
    let env = Env::new("", &[("hourly", &task("0 * * * *", ""))]).await;
    let runner = FakeRunner::new(env.store.clone(), false);
    let mut s = env.scheduler(&runner, "2026-01-01T09:30:00Z").await;
    s.tick(utc("2026-01-01T10:00:00Z")).await.unwrap();
    s.wait_idle().await;
    s.tick(utc("2026-01-01T09:59:00Z")).await.unwrap();
    s.tick(utc("2026-01-01T10:00:30Z")).await.unwrap();
    s.wait_idle().await;
    // Another scheduler (same store, cursor reset by hand) sees 10:00 due: claim lost.
    env.store
        .set_cursor("hourly", utc("2026-01-01T09:30:00Z"))
        .await
        .unwrap();
    let mut other = Scheduler::new(
        env.project(),
        env.store.clone(),
        runner.clone(),
        Arc::new(crate::clock::SystemClock),
    );
    other
        .cursors
        .insert("hourly".into(), utc("2026-01-01T09:30:00Z"));
    other.reschedule("hourly");
    other.tick(utc("2026-01-01T10:00:00Z")).await.unwrap();
    other.wait_idle().await;
    s.tick(utc("2026-01-01T11:00:00Z")).await.unwrap();
    s.wait_idle().await;
    assert_eq!(
        times(&runner.fires()),
        ["2026-01-01T10:00:00.000Z", "2026-01-01T11:00:00.000Z"]
    );
    let h = env.history("hourly").await;
    assert_eq!(h.len(), 2);
    assert!(h.iter().all(|r| r.status == Status::Succeeded));
}

/// Case 1: down 10:01–10:16 with grace 30m: one run for 10:15, 10:05 and 10:10 missed.
#[tokio::test]
async fn downtime_within_grace_runs_the_latest_fire_once() {
    let env = Env::new("", &[("five", &task("*/5 * * * *", "misfire_grace: 30m"))]).await;
    let runner = FakeRunner::new(env.store.clone(), false);
    let mut s = env.scheduler(&runner, "2026-01-01T09:58:00Z").await;
    s.tick(utc("2026-01-01T10:00:00Z")).await.unwrap();
    s.wait_idle().await;
    drop(s); // ferry stops at 10:01
    let mut s = env.scheduler(&runner, "2026-01-01T10:16:00Z").await;
    s.tick(utc("2026-01-01T10:16:00Z")).await.unwrap();
    s.wait_idle().await;
    drive(&mut s, utc("2026-01-01T10:20:00Z")).await;
    assert_eq!(
        times(&runner.fires()),
        [
            "2026-01-01T10:00:00.000Z",
            "2026-01-01T10:15:00.000Z",
            "2026-01-01T10:20:00.000Z"
        ]
    );
    let h = env.history("five").await;
    let statuses: Vec<(String, Status)> = h
        .iter()
        .map(|r| (fmt_instant(r.scheduled_at), r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("2026-01-01T10:00:00.000Z".into(), Status::Succeeded),
            ("2026-01-01T10:05:00.000Z".into(), Status::Missed),
            ("2026-01-01T10:10:00.000Z".into(), Status::Missed),
            ("2026-01-01T10:15:00.000Z".into(), Status::Succeeded),
            ("2026-01-01T10:20:00.000Z".into(), Status::Succeeded),
        ]
    );
    assert!(
        h[1].reason
            .as_deref()
            .unwrap()
            .contains("missed while ferry was not running")
    );
}

/// Case 2: grace 2m, down until 10:18: nothing runs, three fires missed, 10:20 runs.
#[tokio::test]
async fn downtime_beyond_grace_runs_nothing() {
    let env = Env::new("", &[("five", &task("*/5 * * * *", "misfire_grace: 2m"))]).await;
    let runner = FakeRunner::new(env.store.clone(), false);
    let s = env.scheduler(&runner, "2026-01-01T10:01:00Z").await;
    drop(s);
    let mut s = env.scheduler(&runner, "2026-01-01T10:18:00Z").await;
    s.tick(utc("2026-01-01T10:18:00Z")).await.unwrap();
    s.wait_idle().await;
    assert!(runner.fires().is_empty());
    drive(&mut s, utc("2026-01-01T10:20:00Z")).await;
    assert_eq!(times(&runner.fires()), ["2026-01-01T10:20:00.000Z"]);
    let missed: Vec<_> = env
        .history("five")
        .await
        .into_iter()
        .filter(|r| r.status == Status::Missed)
        .collect();
    assert_eq!(missed.len(), 3);
}

/// Case 3: catch_up all, hourly, down 3 days: 72 runs, one after another, oldest first.
#[tokio::test]
async fn catch_up_all_replays_sequentially_oldest_first() {
    let env = Env::new("", &[("hourly", &task("0 * * * *", "catch_up: all"))]).await;
    let runner = FakeRunner::new(env.store.clone(), true);
    let s = env.scheduler(&runner, "2026-01-01T00:30:00Z").await;
    drop(s);
    let now = utc("2026-01-04T00:30:00Z");
    let mut s = env.scheduler(&runner, "2026-01-04T00:30:00Z").await;
    s.tick(now).await.unwrap();
    for _ in 0..72 {
        // Exactly one run is in flight at any time.
        assert_eq!(s.active_runs(), 1);
        runner.release(1);
        s.completed().await;
        s.tick(now).await.unwrap();
    }
    s.wait_idle().await;
    let fires = runner.fires();
    assert_eq!(fires.len(), 72);
    assert_eq!(fires[0].1, utc("2026-01-01T01:00:00Z"));
    assert_eq!(fires[71].1, utc("2026-01-04T00:00:00Z"));
    assert!(fires.windows(2).all(|w| w[0].1 < w[1].1));
    let h = env.history("hourly").await;
    assert_eq!(h.len(), 72);
    assert!(h.iter().all(|r| r.status == Status::Succeeded));
}

/// Case 9: forbid overlap; the fires during a long run are skipped with the reason.
#[tokio::test]
async fn forbid_skips_fires_while_the_previous_run_is_active() {
    let env = Env::new("", &[("minutely", &task("* * * * *", ""))]).await;
    let runner = FakeRunner::new(env.store.clone(), true);
    let mut s = env.scheduler(&runner, "2026-01-01T09:59:30Z").await;
    s.tick(utc("2026-01-01T10:00:00Z")).await.unwrap();
    s.tick(utc("2026-01-01T10:01:00Z")).await.unwrap();
    s.tick(utc("2026-01-01T10:02:00Z")).await.unwrap();
    runner.release(1);
    s.completed().await;
    s.tick(utc("2026-01-01T10:03:00Z")).await.unwrap();
    runner.release(1);
    s.wait_idle().await;
    assert_eq!(
        times(&runner.fires()),
        ["2026-01-01T10:00:00.000Z", "2026-01-01T10:03:00.000Z"]
    );
    let h = env.history("minutely").await;
    let st: Vec<Status> = h.iter().map(|r| r.status).collect();
    assert_eq!(
        st,
        [
            Status::Succeeded,
            Status::Skipped,
            Status::Skipped,
            Status::Succeeded
        ]
    );
    assert!(
        h[1].reason
            .as_deref()
            .unwrap()
            .contains("previous run (fire at 2026-01-01T10:00:00.000Z) is still active")
    );
}

#[tokio::test]
async fn replace_cancels_the_running_run_with_the_reason() {
    let env = Env::new(
        "",
        &[("minutely", &task("* * * * *", "concurrency: replace"))],
    )
    .await;
    let runner = FakeRunner::new(env.store.clone(), true);
    let mut s = env.scheduler(&runner, "2026-01-01T09:59:30Z").await;
    s.tick(utc("2026-01-01T10:00:00Z")).await.unwrap();
    s.tick(utc("2026-01-01T10:01:00Z")).await.unwrap();
    s.completed().await; // the 10:00 run ends, cancelled
    runner.release(1);
    s.wait_idle().await;
    let h = env.history("minutely").await;
    assert_eq!(h[0].status, Status::Cancelled);
    assert!(
        h[0].error
            .as_deref()
            .unwrap()
            .contains("replaced by the run for the fire at 2026-01-01T10:01:00.000Z")
    );
    assert_eq!(h[1].status, Status::Succeeded);
}

#[tokio::test]
async fn allow_runs_side_by_side() {
    let env = Env::new(
        "",
        &[("minutely", &task("* * * * *", "concurrency: allow"))],
    )
    .await;
    let runner = FakeRunner::new(env.store.clone(), true);
    let mut s = env.scheduler(&runner, "2026-01-01T09:59:30Z").await;
    s.tick(utc("2026-01-01T10:00:00Z")).await.unwrap();
    s.tick(utc("2026-01-01T10:01:00Z")).await.unwrap();
    assert_eq!(s.active_runs(), 2);
    runner.release(2);
    s.wait_idle().await;
    assert_eq!(runner.fires().len(), 2);
}

#[tokio::test]
async fn max_workers_queues_runs_beyond_the_limit() {
    let env = Env::new(
        "scheduler: { max_workers: 1 }\n",
        &[
            ("a", &task("0 10 * * *", "")),
            ("b", &task("0 10 * * *", "")),
        ],
    )
    .await;
    let runner = FakeRunner::new(env.store.clone(), true);
    let mut s = env.scheduler(&runner, "2026-01-01T09:00:00Z").await;
    s.tick(utc("2026-01-01T10:00:00Z")).await.unwrap();
    assert_eq!(s.active_runs(), 2);
    // Let the runner tasks reach the worker semaphore.
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(runner.fires().len(), 1, "only one run may execute");
    runner.release(1);
    s.completed().await;
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    assert_eq!(runner.fires().len(), 2);
    runner.release(1);
    s.wait_idle().await;
}

#[tokio::test]
async fn quiet_hours_defer_to_the_end_of_the_window() {
    let env = Env::new(
        "scheduler:\n  quiet_hours:\n    - { from: \"01:00\", to: \"05:00\" }\n",
        &[("nightly", &task("0 2 * * *", ""))],
    )
    .await;
    let runner = FakeRunner::new(env.store.clone(), false);
    let mut s = env.scheduler(&runner, "2026-01-01T00:00:00Z").await;
    s.tick(utc("2026-01-01T02:00:00Z")).await.unwrap();
    s.wait_idle().await;
    assert!(runner.fires().is_empty());
    let h = env.history("nightly").await;
    assert_eq!(h[0].status, Status::Deferred);
    assert_eq!(h[0].deferred_until, Some(utc("2026-01-01T05:00:00Z")));
    assert!(
        h[0].reason
            .as_deref()
            .unwrap()
            .starts_with("quiet hours: starts at 2026-01-01 05:00")
    );
    assert_eq!(s.next_wake(), Some(utc("2026-01-01T05:00:00Z")));
    s.tick(utc("2026-01-01T04:59:59Z")).await.unwrap();
    assert!(runner.fires().is_empty());
    s.tick(utc("2026-01-01T05:00:00Z")).await.unwrap();
    s.wait_idle().await;
    assert_eq!(times(&runner.fires()), ["2026-01-01T02:00:00.000Z"]);
    assert_eq!(env.history("nightly").await[0].status, Status::Succeeded);
}

#[tokio::test]
async fn deferred_runs_survive_a_restart() {
    let env = Env::new(
        "scheduler:\n  quiet_hours:\n    - { from: \"01:00\", to: \"05:00\" }\n",
        &[("nightly", &task("0 2 * * *", ""))],
    )
    .await;
    let runner = FakeRunner::new(env.store.clone(), false);
    let mut s = env.scheduler(&runner, "2026-01-01T00:00:00Z").await;
    s.tick(utc("2026-01-01T02:00:00Z")).await.unwrap();
    drop(s);
    let mut s = env.scheduler(&runner, "2026-01-01T06:00:00Z").await;
    s.tick(utc("2026-01-01T06:00:00Z")).await.unwrap();
    s.wait_idle().await;
    assert_eq!(times(&runner.fires()), ["2026-01-01T02:00:00.000Z"]);
}

/// Regression: a run deferred by quiet hours kept the window's old end after the window
/// was shortened or removed from config.yaml; it follows the reloaded config.
#[tokio::test]
async fn deferred_runs_follow_quiet_hours_changed_on_reload() {
    let env = Env::new(
        "scheduler:\n  quiet_hours:\n    - { from: \"01:00\", to: \"05:00\" }\n",
        &[("nightly", &task("0 2 * * *", ""))],
    )
    .await;
    let runner = FakeRunner::new(env.store.clone(), false);
    let mut s = env.scheduler(&runner, "2026-01-01T00:00:00Z").await;
    s.tick(utc("2026-01-01T02:00:00Z")).await.unwrap();
    assert_eq!(s.next_wake(), Some(utc("2026-01-01T05:00:00Z")));
    // Shortened: the run waits for the new end only.
    env.write_config("scheduler:\n  quiet_hours:\n    - { from: \"01:00\", to: \"03:00\" }\n");
    s.reload(env.project(), utc("2026-01-01T02:10:00Z"))
        .await
        .unwrap();
    assert_eq!(s.next_wake(), Some(utc("2026-01-01T03:00:00Z")));
    let h = env.history("nightly").await;
    assert_eq!(h[0].deferred_until, Some(utc("2026-01-01T03:00:00Z")));
    // Removed: due now.
    env.write_config("");
    s.reload(env.project(), utc("2026-01-01T02:30:00Z"))
        .await
        .unwrap();
    assert_eq!(s.next_wake(), Some(utc("2026-01-01T02:30:00Z")));
    s.tick(utc("2026-01-01T02:30:00Z")).await.unwrap();
    s.wait_idle().await;
    assert_eq!(times(&runner.fires()), ["2026-01-01T02:00:00.000Z"]);
    let h = env.history("nightly").await;
    assert_eq!(h[0].status, Status::Succeeded);
}

/// Regression: the same after a restart with the window removed.
#[tokio::test]
async fn deferred_runs_follow_quiet_hours_removed_before_a_restart() {
    let env = Env::new(
        "scheduler:\n  quiet_hours:\n    - { from: \"01:00\", to: \"05:00\" }\n",
        &[("nightly", &task("0 2 * * *", ""))],
    )
    .await;
    let runner = FakeRunner::new(env.store.clone(), false);
    let mut s = env.scheduler(&runner, "2026-01-01T00:00:00Z").await;
    s.tick(utc("2026-01-01T02:00:00Z")).await.unwrap();
    drop(s);
    env.write_config("");
    let mut s = env.scheduler(&runner, "2026-01-01T02:30:00Z").await;
    assert_eq!(s.next_wake(), Some(utc("2026-01-01T02:30:00Z")));
    s.tick(utc("2026-01-01T02:30:00Z")).await.unwrap();
    s.wait_idle().await;
    assert_eq!(times(&runner.fires()), ["2026-01-01T02:00:00.000Z"]);
}

/// Case 8: an invalid task does not stop the others.
#[tokio::test]
async fn an_invalid_task_is_isolated() {
    let env = Env::new(
        "",
        &[
            ("good", &task("0 * * * *", "")),
            ("bad", &task("0 61 * * *", "")),
            ("zone", &task("0 * * * *", "timezone: Mars/Base")),
        ],
    )
    .await;
    let runner = FakeRunner::new(env.store.clone(), false);
    let mut s = env.scheduler(&runner, "2026-01-01T09:30:00Z").await;
    assert_eq!(s.task_names(), ["good"]);
    assert_eq!(
        s.invalid.keys().cloned().collect::<Vec<_>>(),
        ["bad", "zone"]
    );
    drive(&mut s, utc("2026-01-01T11:00:00Z")).await;
    assert_eq!(runner.fires().len(), 2);
}

#[tokio::test]
async fn hot_reload_add_change_break_fix_remove() {
    let env = Env::new("", &[("a", &task("0 * * * *", ""))]).await;
    let runner = FakeRunner::new(env.store.clone(), false);
    let mut s = env.scheduler(&runner, "2026-01-01T09:30:00Z").await;

    env.write_task("b", &task("30 * * * *", ""));
    let sum = s
        .reload(env.project(), utc("2026-01-01T09:40:00Z"))
        .await
        .unwrap();
    assert_eq!(
        sum,
        ReloadSummary {
            added: 1,
            ..Default::default()
        }
    );
    drive(&mut s, utc("2026-01-01T10:30:00Z")).await;
    assert_eq!(
        runner.fires(),
        [
            ("a".to_string(), utc("2026-01-01T10:00:00Z")),
            ("b".to_string(), utc("2026-01-01T10:30:00Z"))
        ]
    );

    // Change a: now at minute 15.
    env.write_task("a", &task("15 * * * *", ""));
    let sum = s
        .reload(env.project(), utc("2026-01-01T10:40:00Z"))
        .await
        .unwrap();
    assert_eq!(
        sum,
        ReloadSummary {
            changed: 1,
            ..Default::default()
        }
    );
    // Break a: the last good version (minute 15) keeps running.
    env.write_task("a", "schedule: [oops\n");
    let sum = s
        .reload(env.project(), utc("2026-01-01T10:41:00Z"))
        .await
        .unwrap();
    assert_eq!(
        sum,
        ReloadSummary {
            invalid: 1,
            ..Default::default()
        }
    );
    assert!(s.invalid.contains_key("a"));
    drive(&mut s, utc("2026-01-01T11:15:00Z")).await;
    assert_eq!(
        runner.fires()[2],
        ("a".to_string(), utc("2026-01-01T11:15:00Z"))
    );
    // Fix a (minute 45) and remove b.
    env.write_task("a", &task("45 * * * *", ""));
    env.remove_task("b");
    let sum = s
        .reload(env.project(), utc("2026-01-01T11:20:00Z"))
        .await
        .unwrap();
    assert_eq!(
        sum,
        ReloadSummary {
            changed: 1,
            removed: 1,
            ..Default::default()
        }
    );
    assert!(s.invalid.is_empty());
    let before = runner.fires().len();
    drive(&mut s, utc("2026-01-01T12:00:00Z")).await;
    assert_eq!(
        &runner.fires()[before..],
        [("a".to_string(), utc("2026-01-01T11:45:00Z"))]
    );
}

#[tokio::test]
async fn shutdown_cancels_runs_after_the_drain_timeout() {
    let env = Env::new("", &[("a", &task("0 10 * * *", ""))]).await;
    let runner = FakeRunner::new(env.store.clone(), true);
    let mut s = env.scheduler(&runner, "2026-01-01T09:00:00Z").await;
    s.tick(utc("2026-01-01T10:00:00Z")).await.unwrap();
    s.shutdown(Duration::from_millis(50)).await;
    let h = env.history("a").await;
    assert_eq!(h[0].status, Status::Cancelled);
    assert_eq!(
        h[0].error.as_deref(),
        Some("cancelled: ferry is shutting down (drain timeout passed)")
    );
    // No new fires are claimed after shutdown.
    s.tick(utc("2026-01-02T10:00:00Z")).await.unwrap();
    assert_eq!(env.history("a").await.len(), 1);
}

#[tokio::test]
async fn shutdown_lets_runs_finish_within_the_drain_timeout() {
    let env = Env::new("", &[("a", &task("0 10 * * *", ""))]).await;
    let runner = FakeRunner::new(env.store.clone(), true);
    let mut s = env.scheduler(&runner, "2026-01-01T09:00:00Z").await;
    s.tick(utc("2026-01-01T10:00:00Z")).await.unwrap();
    runner.release(1);
    s.shutdown(Duration::from_secs(30)).await;
    assert_eq!(env.history("a").await[0].status, Status::Succeeded);
}

/// Fires per local day for a zone, driven through the scheduler.
async fn fires_on(schedule: &str, zone: &str, from: &str, to: &str) -> Vec<DateTime<Utc>> {
    let env = Env::new("", &[("t", &task(schedule, &format!("timezone: {zone}")))]).await;
    let runner = FakeRunner::new(env.store.clone(), false);
    let mut s = env.scheduler(&runner, from).await;
    drive(&mut s, utc(to)).await;
    runner.fires().into_iter().map(|(_, t)| t).collect()
}

#[tokio::test]
async fn dst_new_york_hourly_has_23_and_25_fires() {
    let spring = fires_on(
        "0 * * * *",
        "America/New_York",
        "2025-03-09T04:59:59Z",
        "2025-03-10T03:59:59Z",
    )
    .await;
    assert_eq!(spring.len(), 23);
    let autumn = fires_on(
        "0 * * * *",
        "America/New_York",
        "2025-11-02T03:59:59Z",
        "2025-11-03T04:59:59Z",
    )
    .await;
    assert_eq!(autumn.len(), 25);
    // Both 01:00 EDT (05:00Z) and 01:00 EST (06:00Z) fire.
    assert!(
        autumn.contains(&utc("2025-11-02T05:00:00Z"))
            && autumn.contains(&utc("2025-11-02T06:00:00Z"))
    );
}

#[tokio::test]
async fn dst_fixed_time_runs_once_per_local_day() {
    // (schedule, zone, from, to, expected fires)
    let cases: &[(&str, &str, &str, &str, &[&str])] = &[
        // New York spring gap: 02:30 runs at 03:00 EDT.
        (
            "30 2 * * *",
            "America/New_York",
            "2025-03-08T12:00:00Z",
            "2025-03-10T12:00:00Z",
            &["2025-03-09T07:00:00Z", "2025-03-10T06:30:00Z"],
        ),
        // New York overlap: 01:30 runs once, at the first occurrence (EDT).
        (
            "30 1 * * *",
            "America/New_York",
            "2025-11-01T12:00:00Z",
            "2025-11-03T12:00:00Z",
            &["2025-11-02T05:30:00Z", "2025-11-03T06:30:00Z"],
        ),
        // Berlin 2026: gap on 03-29, overlap on 10-25.
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-28T12:00:00Z",
            "2026-03-30T12:00:00Z",
            &["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
        ),
        (
            "30 2 * * *",
            "Europe/Berlin",
            "2026-10-24T12:00:00Z",
            "2026-10-26T12:00:00Z",
            &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
        ),
        // Sydney (southern hemisphere): forward 2025-10-05 02:00 → 03:00, back
        // 2026-04-05 03:00 → 02:00.
        (
            "30 2 * * *",
            "Australia/Sydney",
            "2025-10-04T00:00:00Z",
            "2025-10-06T00:00:00Z",
            &["2025-10-04T16:00:00Z", "2025-10-05T15:30:00Z"],
        ),
        (
            "30 2 * * *",
            "Australia/Sydney",
            "2026-04-04T00:00:00Z",
            "2026-04-06T00:00:00Z",
            &["2026-04-04T15:30:00Z", "2026-04-05T16:30:00Z"],
        ),
    ];
    for (expr, zone, from, to, expected) in cases {
        let got = fires_on(expr, zone, from, to).await;
        let want: Vec<DateTime<Utc>> = expected.iter().map(|t| utc(t)).collect();
        assert_eq!(got, want, "{expr} in {zone} from {from}");
    }
    // Shanghai has no DST: 24 hourly fires every day.
    let sh = fires_on(
        "0 * * * *",
        "Asia/Shanghai",
        "2026-03-08T15:59:59Z",
        "2026-03-09T15:59:59Z",
    )
    .await;
    assert_eq!(sh.len(), 24);
}

#[tokio::test]
async fn a_task_that_comes_back_starts_at_now() {
    let env = Env::new("", &[("a", &task("0 * * * *", "catch_up: all"))]).await;
    let runner = FakeRunner::new(env.store.clone(), false);
    let mut s = env.scheduler(&runner, "2026-01-01T09:30:00Z").await;
    env.remove_task("a");
    s.reload(env.project(), utc("2026-01-01T09:40:00Z"))
        .await
        .unwrap();
    env.write_task("a", &task("0 * * * *", "catch_up: all"));
    let sum = s
        .reload(env.project(), utc("2026-01-01T15:40:00Z"))
        .await
        .unwrap();
    assert_eq!(sum.added, 1);
    s.tick(utc("2026-01-01T15:40:00Z")).await.unwrap();
    s.wait_idle().await;
    assert!(
        runner.fires().is_empty(),
        "no replay of the hours it was gone"
    );
    assert!(env.history("a").await.is_empty());
}

#[tokio::test]
async fn deferred_runs_do_not_spin_the_loop() {
    let env = Env::new(
        "scheduler:\n  quiet_hours:\n    - { from: \"01:00\", to: \"05:00\" }\n",
        &[("nightly", &task("0 2 * * *", ""))],
    )
    .await;
    let runner = FakeRunner::new(env.store.clone(), false);
    let mut s = env.scheduler(&runner, "2026-01-01T00:00:00Z").await;
    s.tick(utc("2026-01-01T02:00:00Z")).await.unwrap();
    // Inside the window the loop sleeps until it ends (capped), not zero.
    let nap = s.sleep_for(utc("2026-01-01T04:00:00Z"), Duration::from_secs(30));
    assert_eq!(nap, Duration::from_secs(30));
    let nap = s.sleep_for(utc("2026-01-01T04:59:50Z"), Duration::from_secs(30));
    assert_eq!(nap, Duration::from_secs(10));
    // A deferred run whose task is gone does not wake the loop.
    env.remove_task("nightly");
    s.reload(env.project(), utc("2026-01-01T04:00:00Z"))
        .await
        .unwrap();
    assert_eq!(
        s.sleep_for(utc("2026-01-01T06:00:00Z"), Duration::from_secs(30)),
        Duration::from_secs(30)
    );
}

/// Issue 15 item 5: a task paused in the store (by another process) has its fires recorded
/// as `skipped` with who and why, others still run; after the resume it runs again from the
/// next fire, and nothing of the pause is replayed.
#[tokio::test]
async fn paused_tasks_skip_their_fires_and_resume_without_replay() {
    let env = Env::new(
        "",
        &[
            ("hourly", &task("0 * * * *", "")),
            ("other", &task("0 * * * *", "")),
        ],
    )
    .await;
    let runner = FakeRunner::new(env.store.clone(), false);
    let mut s = env.scheduler(&runner, "2026-01-01T09:30:00Z").await;
    drive(&mut s, utc("2026-01-01T10:30:00Z")).await;
    env.store
        .pause_task(&crate::store::TaskPause {
            task: "hourly".into(),
            by: "alice@node-a".into(),
            reason: Some("warehouse migration".into()),
            at: utc("2026-01-01T10:30:00Z"),
        })
        .await
        .unwrap();
    drive(&mut s, utc("2026-01-01T12:30:00Z")).await;
    let resumed = env.store.resume_task("hourly").await.unwrap();
    assert_eq!(resumed.unwrap().by, "alice@node-a");
    drive(&mut s, utc("2026-01-01T13:30:00Z")).await;

    let ran: Vec<String> = runner
        .fires()
        .iter()
        .filter(|(t, _)| t == "hourly")
        .map(|(_, at)| fmt_instant(*at))
        .collect();
    assert_eq!(
        ran,
        ["2026-01-01T10:00:00.000Z", "2026-01-01T13:00:00.000Z"]
    );
    let other = runner.fires().iter().filter(|(t, _)| t == "other").count();
    assert_eq!(other, 4, "the other task is not paused");
    let h = env.history("hourly").await;
    let shown: Vec<(String, Status)> = h
        .iter()
        .map(|r| (fmt_instant(r.scheduled_at), r.status))
        .collect();
    assert_eq!(
        shown,
        [
            ("2026-01-01T10:00:00.000Z".to_string(), Status::Succeeded),
            ("2026-01-01T11:00:00.000Z".to_string(), Status::Skipped),
            ("2026-01-01T12:00:00.000Z".to_string(), Status::Skipped),
            ("2026-01-01T13:00:00.000Z".to_string(), Status::Succeeded),
        ]
    );
    let reason = h[1].reason.clone().unwrap_or_default();
    assert!(
        reason
            .contains("paused (by alice@node-a at 2026-01-01T10:30:00.000Z: warehouse migration)"),
        "{reason}"
    );
}
