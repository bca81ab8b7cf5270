//! The delivery ledger and its retries, through the real `ferry run` and `ferry serve`
//! against the loopback DingTalk fake: retryable failures are retried with backoff inside
//! the run and then by `ferry serve` (without running the query again), permanent ones are
//! tried once, channels are independent, and a delivery interrupted mid-send is sent once
//! more and recorded `maybe_duplicate` (reliability cases 17, 18, 20, 22).

use std::time::{Duration, Instant};

use crate::fake_robots::{FakeRobots, Settings};
use crate::support::{
    Project, describe, history, only_task, serve, stdout, terminate, wait_log_lines, wait_logged,
};

const TASK: &str = "schedule: '0 6 * * *'\nsource: db\nquery: SELECT 1 AS n\noutput: { format: csv, file_name: ledger }\n";

/// A project whose only task `t` notifies `notify` (YAML flow text), with a DingTalk
/// channel `ding` on the fake beside the fixture's outbox channel `box`.
fn project(fake: &FakeRobots, notify: &str) -> Project {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    let ding = format!(
        "  ding: {{ type: dingtalk, webhook: \"{}\", secret: SECdingtalk-secret-0001 }}\n",
        fake.dingtalk_webhook()
    );
    // Passes every 200 ms, not 5 s: tests wait for the pass after the one that mattered.
    p.write(
        "config.yaml",
        &format!(
            "{}scheduler: {{ delivery_interval: 200ms }}\n",
            config.replacen("channels:\n", &format!("channels:\n{ding}"), 1)
        ),
    );
    only_task(&p, "t", &format!("{TASK}notify: {notify}\n"));
    p
}

fn ding_delivery(json: &serde_json::Value) -> serde_json::Value {
    json["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["channel"] == "ding")
        .unwrap_or_else(|| panic!("no ding delivery: {json}"))
        .clone()
}

/// Runs SQL on the project's run store (what a crash or the passing of time leaves there).
fn store_exec(p: &Project, sql: &str) {
    let db = rusqlite::Connection::open(p.path().join("data/ferry.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch(sql).unwrap();
}

/// Every delivery pass in the serve log `log` attempted nothing (and there was one).
fn assert_passes_attempted_nothing(p: &Project, log: &str) {
    let text = crate::support::read_log(p, log);
    let passes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("delivery pass"))
        .collect();
    assert!(!passes.is_empty(), "{text}");
    assert!(
        passes
            .iter()
            .all(|l| l.ends_with("delivery pass attempted=0")),
        "{text}"
    );
}

fn exports(p: &Project) -> Vec<String> {
    p.files("exports")
}

#[test]
fn server_errors_are_retried_with_growing_delays_and_delivered_once() {
    let fake = FakeRobots::start(Settings::default());
    let p = project(&fake, "[ding]");
    fake.script(500, "internal error");
    fake.script(500, "internal error");
    let started = Instant::now();
    let json = p.run_json("t", &[], 0);
    let took = started.elapsed();
    let d = ding_delivery(&json);
    assert_eq!(d["status"], "sent", "{json}");
    assert_eq!(d["attempts"], 3, "{json}");
    assert_eq!(d["next_attempt_at"], serde_json::Value::Null, "{json}");
    assert_eq!(json["delivery"], "delivered", "{json}");
    let got = fake.received();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(got[0].answer.0, 500);
    assert_eq!(got[1].answer.0, 500);
    assert!(
        got[2].answer.1.contains("\"errcode\":0"),
        "{:?}",
        got[2].answer
    );
    // The same message each time.
    assert_eq!(got[0].json()["markdown"], got[2].json()["markdown"]);
    // Two delays of about 1 s and 2 s (±10 %), well under the 30 s budget.
    assert!(took >= Duration::from_millis(2700), "took {took:?}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    // A retried-then-sent delivery is not a warning.
    assert!(!json["warnings"].to_string().contains("notify"), "{json}");
}

#[test]
fn a_permanent_refusal_is_attempted_exactly_once() {
    let fake = FakeRobots::start(Settings::default());
    let p = project(&fake, "[ding]");
    fake.script(
        200,
        r#"{"errcode":310000,"errmsg":"keywords not in content"}"#,
    );
    let json = p.run_json("t", &[], 3);
    let d = ding_delivery(&json);
    assert_eq!(d["status"], "failed", "{json}");
    assert_eq!(d["retryable"], false, "{json}");
    assert_eq!(d["attempts"], 1, "{json}");
    assert_eq!(json["delivery"], "failed", "{json}");
    assert_eq!(json["status"], "succeeded", "{json}");
    assert_eq!(fake.received().len(), 1);
    // `ferry serve` does not touch it either: its passes (the one at start and the next)
    // attempt nothing.
    let mut child = serve(&p, "serve.log");
    wait_log_lines(&p, "serve.log", "delivery pass", 2);
    assert_eq!(terminate(&mut child), Some(0));
    assert_passes_attempted_nothing(&p, "serve.log");
    assert_eq!(fake.received().len(), 1);
}

#[test]
fn channels_are_independent_and_the_run_says_partially_delivered() {
    let fake = FakeRobots::start(Settings::default());
    let p = project(&fake, "[ding, box]");
    for _ in 0..3 {
        fake.script(500, "internal error");
    }
    let json = p.run_json("t", &[], 3);
    assert_eq!(json["status"], "succeeded", "{json}");
    assert_eq!(json["delivery"], "partially_delivered", "{json}");
    let deliveries = json["deliveries"].as_array().unwrap();
    assert_eq!(deliveries[0]["channel"], "ding");
    assert_eq!(deliveries[0]["status"], "pending", "{json}");
    assert_eq!(deliveries[1]["channel"], "box");
    assert_eq!(deliveries[1]["status"], "sent", "{json}");
    assert_eq!(deliveries[1]["attempts"], 1, "{json}");
    // The outbox message was written although the robot kept failing.
    assert_eq!(p.files("outbox").len(), 1);
    // The robot's failure is reported once.
    let warnings = json["warnings"].as_array().unwrap();
    assert_eq!(
        warnings
            .iter()
            .filter(|w| w.as_str().unwrap().starts_with("notify `ding`"))
            .count(),
        1,
        "{json}"
    );
    // History says the same, in JSON and in the table.
    let runs = history(&p, "t");
    assert_eq!(runs[0]["delivery"], "partially_delivered");
    assert_eq!(runs[0]["deliveries"], json["deliveries"]);
    let out = p.ferry(&["history"]);
    assert!(
        stdout(&out).contains("DELIVERY") && stdout(&out).contains("partially_delivered"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_pending_delivery_is_sent_by_serve_without_running_the_query_again() {
    let fake = FakeRobots::start(Settings::default());
    let p = project(&fake, "[ding]");
    for _ in 0..3 {
        fake.script(500, "internal error");
    }
    let json = p.run_json("t", &[], 3);
    let d = ding_delivery(&json);
    assert_eq!(d["status"], "pending", "{json}");
    assert_eq!(d["attempts"], 3, "{json}");
    assert_eq!(d["retryable"], true, "{json}");
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .starts_with("channel `ding`: DingTalk answered HTTP 500"),
        "{d}"
    );
    assert_eq!(json["delivery"], "pending", "{json}");
    // The next attempt is about a minute later (1 min ± 10 %).
    let next = chrono::DateTime::parse_from_rfc3339(d["next_attempt_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let at = chrono::DateTime::parse_from_rfc3339(d["at"].as_str().unwrap()).unwrap();
    let gap = (next - at.with_timezone(&chrono::Utc)).num_milliseconds();
    assert!((53_000..=67_000).contains(&gap), "{gap} ms: {d}");
    assert!(
        json["warnings"]
            .to_string()
            .contains("still pending after 3 attempts"),
        "{json}"
    );
    assert_eq!(fake.received().len(), 3);
    let files_before = exports(&p);
    assert_eq!(files_before.len(), 1, "{files_before:?}");

    // Not due yet: `ferry serve` leaves it alone, pass after pass.
    let mut child = serve(&p, "serve1.log");
    wait_log_lines(&p, "serve1.log", "delivery pass", 2);
    assert_eq!(terminate(&mut child), Some(0));
    assert_passes_attempted_nothing(&p, "serve1.log");
    assert_eq!(fake.received().len(), 3);

    // The minute passes; `ferry serve` sends the recorded message.
    store_exec(
        &p,
        "UPDATE deliveries SET next_attempt_at = '2000-01-01T00:00:00.000Z' WHERE status = 'pending'",
    );
    let mut child = serve(&p, "serve2.log");
    wait_logged(
        &p,
        "serve2.log",
        Duration::from_secs(30),
        "the retry",
        || {
            history(&p, "t")
                .first()
                .is_some_and(|r| r["delivery"] == "delivered")
        },
    );
    assert_eq!(terminate(&mut child), Some(0));
    let runs = history(&p, "t");
    assert_eq!(runs.len(), 1, "one run, not a second one: {runs:?}");
    let d = ding_delivery(&runs[0]);
    assert_eq!(d["status"], "sent", "{d}");
    assert_eq!(d["attempts"], 4, "{d}");
    assert_eq!(d["error"], serde_json::Value::Null, "{d}");
    assert_eq!(exports(&p), files_before, "no new export");
    let got = fake.received();
    assert_eq!(got.len(), 4);
    assert!(
        got[3].answer.1.contains("\"errcode\":0"),
        "{:?}",
        got[3].answer
    );
    assert_eq!(got[0].json()["markdown"], got[3].json()["markdown"]);
}

#[test]
fn a_delivery_interrupted_mid_send_is_sent_once_more_as_maybe_duplicate_and_never_a_third_time() {
    let fake = FakeRobots::start(Settings::default());
    let p = project(&fake, "[ding]");
    for _ in 0..3 {
        fake.script(500, "internal error");
    }
    let json = p.run_json("t", &[], 3);
    assert_eq!(ding_delivery(&json)["status"], "pending", "{json}");
    let node = history(&p, "t")[0]["node"].as_str().unwrap().to_string();
    // What a process killed during its fourth attempt leaves: `sending`, held by a pid
    // that no longer exists (above Linux's pid_max).
    store_exec(
        &p,
        &format!(
            "UPDATE deliveries SET status = 'sending', attempts = 4, owner_node = '{node}', owner_pid = 999999999"
        ),
    );
    let mut child = serve(&p, "serve.log");
    wait_logged(
        &p,
        "serve.log",
        Duration::from_secs(30),
        "the resend",
        || {
            history(&p, "t")
                .first()
                .is_some_and(|r| r["delivery"] == "delivered")
        },
    );
    // One more attempt only, even though serve keeps running: the pass at start resent
    // it, the next one found nothing to do.
    wait_log_lines(&p, "serve.log", "delivery pass", 2);
    assert_eq!(terminate(&mut child), Some(0));
    let log = crate::support::read_log(&p, "serve.log");
    let passes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("delivery pass"))
        .collect();
    assert!(passes[0].ends_with("delivery pass attempted=1"), "{log}");
    assert!(
        passes[1..]
            .iter()
            .all(|l| l.ends_with("delivery pass attempted=0")),
        "{log}"
    );
    let runs = history(&p, "t");
    let d = ding_delivery(&runs[0]);
    assert_eq!(d["status"], "maybe_duplicate", "{d}");
    assert_eq!(d["attempts"], 5, "{d}");
    assert_eq!(fake.received().len(), 4);
    assert_eq!(runs.len(), 1);

    // Had that resend been interrupted too (the process killed before it recorded its
    // end), the delivery would be `sending` again, taken over once already: it is not
    // sent a third time, and is failed with the reason (the owners are alerted).
    store_exec(
        &p,
        &format!(
            "UPDATE deliveries SET status = 'sending', owner_node = '{node}', owner_pid = 999999999"
        ),
    );
    let mut child = serve(&p, "serve2.log");
    wait_logged(
        &p,
        "serve2.log",
        Duration::from_secs(30),
        "the interrupted resend's end",
        || {
            history(&p, "t")
                .first()
                .is_some_and(|r| ding_delivery(r)["status"] == "failed")
        },
    );
    assert_eq!(terminate(&mut child), Some(0));
    let d = ding_delivery(&history(&p, "t")[0]);
    assert!(
        d["error"]
            .as_str()
            .unwrap()
            .contains("not sent a third time"),
        "{d}"
    );
    assert_eq!(fake.received().len(), 4, "a third copy was sent");
}
