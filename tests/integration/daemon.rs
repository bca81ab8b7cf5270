//! `ferry serve` assembled in this process ([`ferry::daemon`]) with a manual clock: the
//! scheduler, the delivery service and reloads, driven by moving time and waiting for
//! the daemon's events.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry::daemon::Event;
use ferry::store::{DeliveryStatus, Status};

use crate::support::{Daemon, Project, only_task};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// A loopback port that accepts connections and never answers (the webhook of the
/// reproduction), kept open for the life of the test.
fn silent_port() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Regression (issue 11): a run's notification held its worker slot. Four tasks notify a
/// webhook that accepts TCP and never answers, a fifth notifies nobody, with two worker
/// slots and `concurrency: forbid`: every fire of every task runs and is recorded on time,
/// none is skipped, while the webhook deliveries are still being attempted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_that_never_answers_holds_no_worker_slot_and_skips_no_fire() {
    let p = Project::fixture("project");
    let (_listener, port) = silent_port();
    p.write(
        "config.yaml",
        &format!(
            "timezone: UTC\nstore: {{ url: \"sqlite://data/ferry.db\" }}\n\
             scheduler: {{ max_workers: 2 }}\n\
             datasources:\n  db: {{ type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }}\n\
             channels:\n  hang: {{ type: webhook, url: \"http://127.0.0.1:{port}/hook\", timeout: 5s }}\n"
        ),
    );
    let body = |notify: &str| {
        format!(
            "schedule: \"*/10 * * * * *\"\nsource: db\nquery: SELECT 1 AS one\noutput: {{ format: csv }}\n{notify}"
        )
    };
    only_task(&p, "quiet", &body(""));
    for i in 1..=4 {
        p.write(&format!("tasks/hook{i}.yaml"), &body("notify: [hang]\n"));
    }
    let mut d = Daemon::start(&p, at("2026-12-07T00:00:05Z")).await;
    let tasks = ["hook1", "hook2", "hook3", "hook4", "quiet"];
    for (n, fire) in [
        "2026-12-07T00:00:10Z",
        "2026-12-07T00:00:20Z",
        "2026-12-07T00:00:30Z",
    ]
    .into_iter()
    .enumerate()
    {
        d.advance_to(at(fire)).await;
        for task in tasks {
            let runs = d
                .wait_runs(task, &format!("{task}'s fire at {fire}"), |runs| {
                    runs.len() == n + 1 && runs.iter().all(|r| r.status != Status::Running)
                })
                .await;
            let last = runs.last().unwrap();
            assert_eq!(last.scheduled_at, at(fire), "{task}: {runs:#?}");
            assert_eq!(last.status, Status::Succeeded, "{task}: {last:#?}");
        }
    }
    // The webhook is still being tried (it never answers): the runs did not wait for it.
    let runs = d.runs("hook1").await;
    let first = &runs[0];
    assert_eq!(first.deliveries.len(), 1, "{first:#?}");
    assert!(
        matches!(
            first.deliveries[0].status,
            DeliveryStatus::Pending | DeliveryStatus::Sending
        ),
        "{first:#?}"
    );
    d.stop().await;
}

/// The delivery worker's passes follow `scheduler.delivery_interval` on the daemon's
/// clock, and a reload asked for (SIGHUP) applies a changed task file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_passes_follow_the_interval_and_reloads_apply() {
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        "timezone: UTC\nstore: { url: \"sqlite://data/ferry.db\" }\n\
         scheduler: { delivery_interval: 1m }\n\
         datasources:\n  db: { type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }\n",
    );
    only_task(
        &p,
        "daily",
        "schedule: \"0 8 * * *\"\nsource: db\nquery: SELECT 1 AS one\noutput: { format: csv }\n",
    );
    let start = at("2026-12-07T00:00:00Z");
    let mut d = Daemon::start(&p, start).await;
    // The first pass runs at start.
    let first = d
        .wait_for("the first delivery pass", |e| {
            matches!(e, Event::DeliveryPass { .. })
        })
        .await;
    assert_eq!(
        first,
        Event::DeliveryPass {
            attempted: 0,
            at: start
        }
    );
    // No pass before the interval is up, one when it is: the next pass is the one at
    // 1 min (one at 59 s would be seen first).
    d.clock.advance(Duration::from_secs(59));
    d.advance_to(start + chrono::Duration::seconds(59)).await;
    d.clock.advance(Duration::from_secs(1));
    let next = d
        .wait_for("the pass one interval later", |e| {
            matches!(e, Event::DeliveryPass { .. })
        })
        .await;
    assert_eq!(
        next,
        Event::DeliveryPass {
            attempted: 0,
            at: start + chrono::Duration::minutes(1)
        }
    );
    // A task added on disk is scheduled once a reload is asked for.
    p.write(
        "tasks/hourly.yaml",
        "schedule: \"0 * * * *\"\nsource: db\nquery: SELECT 2 AS two\noutput: { format: csv }\n",
    );
    d.handle.reload();
    let summary = d
        .wait_for("the reload", |e| matches!(e, Event::Reloaded(_)))
        .await;
    let Event::Reloaded(summary) = summary else {
        unreachable!()
    };
    assert_eq!(summary.added, 1, "{summary:?}");
    d.advance_to(at("2026-12-07T01:00:00Z")).await;
    let runs = d
        .wait_runs("hourly", "the new task's first fire", |r| {
            r.first().is_some_and(|r| r.status == Status::Succeeded)
        })
        .await;
    assert_eq!(runs[0].scheduled_at, at("2026-12-07T01:00:00Z"));
    d.stop().await;
}

/// The daemon registers its instance in the store, beats on the daemon's clock, and marks
/// it stopped when it shuts down; another node's instance that stopped beating is dead
/// and its runs are recorded as failed by the next beat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_beats_and_reaps_the_runs_of_dead_instances() {
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        "timezone: UTC\nnode_name: here\nstore: { url: \"sqlite://data/ferry.db\" }\n\
         datasources:\n  db: { type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }\n",
    );
    only_task(
        &p,
        "quiet",
        "schedule: \"0 0 1 1 *\"\nsource: db\nquery: SELECT 1 AS one\noutput: { format: csv }\n",
    );
    let start = at("2026-12-07T00:00:00Z");
    // A run of a node that crashed long ago, with an instance row that stopped beating.
    let p_store = ferry::store::open(&ferry::store::StoreUrl::Sqlite(
        p.path().join("data/ferry.db"),
    ))
    .await
    .unwrap();
    let lease = chrono::Duration::from_std(ferry::store::INSTANCE_LEASE).unwrap();
    let old = start - lease * 2;
    p_store
        .register(&ferry::store::InstanceRecord {
            instance_id: "gone".into(),
            node: "elsewhere".into(),
            pid: 77,
            started_at: old,
            heartbeat_at: old,
            stopped_at: None,
        })
        .await
        .unwrap();
    let orphan = ferry::store::Claim {
        run_id: "orphan".into(),
        task: "quiet".into(),
        scheduled_at: old,
        trigger: ferry::store::Trigger::Schedule,
        node: "elsewhere".into(),
        pid: 77,
        started_at: old,
        started_by: None,
    };
    assert!(p_store.claim(&orphan).await.unwrap());
    p_store.close().await;

    let d = Daemon::start(&p, start).await;
    let mine = |list: &[ferry::store::InstanceRecord]| {
        list.iter()
            .find(|i| i.node == "here" && i.pid == std::process::id())
            .cloned()
            .expect("this daemon's instance row")
    };
    let me = mine(&d.store.instances().await.unwrap());
    assert!(me.alive(start));
    // The start-up reap already found the dead node's run.
    let run = d.store.get("orphan").await.unwrap().unwrap();
    assert_eq!(run.status, Status::Failed);
    assert!(run.error.unwrap().contains("pid 77 on elsewhere"));

    let beat = start + chrono::Duration::from_std(ferry::store::HEARTBEAT_EVERY).unwrap();
    d.clock.set(beat);
    let deadline = std::time::Instant::now() + crate::support::EVENT_WAIT;
    loop {
        let me = mine(&d.store.instances().await.unwrap());
        if me.heartbeat_at >= beat {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no heartbeat at {beat}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let store = d.store.clone();
    d.stop().await;
    let store2 = ferry::store::open(&ferry::store::StoreUrl::Sqlite(
        p.path().join("data/ferry.db"),
    ))
    .await
    .unwrap();
    drop(store);
    let me = mine(&store2.instances().await.unwrap());
    assert!(me.stopped_at.is_some(), "stopped at shutdown: {me:?}");
    store2.close().await;
}

/// Owner alerts are deliveries of their run (issue 11): recorded in the ledger, shown in
/// history (`alerts`), and retried by the delivery worker when the first attempt fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_alert_is_a_ledger_delivery_retried_by_the_worker() {
    let fake = crate::fake_robots::FakeRobots::start(crate::fake_robots::Settings::default());
    let p = Project::fixture("project");
    p.write(
        "config.yaml",
        &format!(
            "timezone: UTC\nstore: {{ url: \"sqlite://data/ferry.db\" }}\n\
             scheduler: {{ delivery_interval: 1s }}\n\
             datasources:\n  db: {{ type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }}\n\
             channels:\n  oncall: {{ type: webhook, url: \"{}\", secret: webhook-secret-0001 }}\n\
             alerts: {{ channel: oncall, every: 1m }}\n",
            fake.webhook_url()
        ),
    );
    only_task(
        &p,
        "failing",
        "owners: [owner@example.com]\nschedule: \"0 8 * * *\"\nsource: db\nquery: SELECT * FROM no_such_table\noutput: { format: csv }\n",
    );
    // The first attempt meets a server error; the retry gets through.
    fake.script(502, "bad gateway");
    let mut d = Daemon::start(&p, at("2026-12-07T07:59:00Z")).await;
    d.advance_to(at("2026-12-07T08:00:00Z")).await;
    let followup = d
        .wait_for("the failed run's followup", |e| {
            matches!(e, Event::FollowupDone { .. })
        })
        .await;
    let Event::FollowupDone { run_id } = followup else {
        unreachable!()
    };
    let runs = d.runs("failing").await;
    let run = &runs[0];
    assert_eq!(run.run_id, run_id);
    assert_eq!(run.status, Status::Failed);
    assert!(run.deliveries.is_empty(), "{run:#?}");
    assert_eq!(run.alerts.len(), 1, "{run:#?}");
    let alert = &run.alerts[0];
    assert_eq!(alert.channel, "oncall-alert");
    assert_eq!(alert.status, DeliveryStatus::Pending, "{alert:#?}");
    assert!(
        alert.error.as_deref().unwrap().contains("502"),
        "{alert:#?}"
    );
    assert!(
        run.warnings
            .iter()
            .any(|w| w.starts_with("owner alert through `oncall`")),
        "{run:#?}"
    );
    // The delivery worker retries it once it is due (the backoff is about a second).
    d.clock.advance(Duration::from_secs(5));
    d.wait_for(
        "a delivery pass that sends the alert",
        |e| matches!(e, Event::DeliveryPass { attempted, .. } if *attempted >= 1),
    )
    .await;
    let runs = d.runs("failing").await;
    let alert = &runs[0].alerts[0];
    assert_eq!(alert.status, DeliveryStatus::Sent, "{alert:#?}");
    assert_eq!(alert.attempts, 2, "{alert:#?}");
    let posts: Vec<_> = fake
        .received()
        .into_iter()
        .filter(|r| r.path == "/hooks/ferry")
        .collect();
    assert_eq!(posts.len(), 2, "one failed attempt, one retry");
    let body = posts[1].json();
    assert!(
        body.to_string().contains("failing"),
        "the alert names the task: {body}"
    );
    d.stop().await;
}
