//! Owner alerts: a failing task tells its owners through `alerts.channel` at most once per
//! `alerts.every`; the next alert counts the failures held back meanwhile.

use std::time::Duration;

use crate::support::{Project, describe};

fn project(every: &str) -> Project {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &format!(
            "{}alerts: {{ channel: oncall, every: {every} }}\n",
            config.replacen(
                "channels:\n",
                "channels:\n  oncall: { type: outbox, dir: alerts, recipients: [oncall@example.com] }\n",
                1
            )
        ),
    );
    // No alert templates in the project's folder: the built-in ones are used.
    p.write(
        "tasks/failing.yaml",
        "description: Daily orders\nowners: [owner@example.com]\nschedule: '0 6 * * *'\nsource: db\nquery: SELECT * FROM no_such_table\noutput: { format: csv }\nnotify: [box]\n",
    );
    p
}

fn alerts(p: &Project) -> Vec<serde_json::Value> {
    let mut files = p.files("alerts");
    files.sort();
    files
        .iter()
        .map(|f| {
            serde_json::from_str(&std::fs::read_to_string(p.path().join("alerts").join(f)).unwrap())
                .unwrap()
        })
        .collect()
}

#[test]
fn a_failing_task_alerts_its_owners_at_most_once_per_period() {
    let p = project("1h");
    for _ in 0..3 {
        let json = p.run_json("failing", &[], 1);
        assert_eq!(json["status"], "failed", "{json}");
    }
    let sent = alerts(&p);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let first = &sent[0];
    assert_eq!(first["subject"], "[ferry] ALERT failing: run failed");
    assert_eq!(first["recipients"][0], "oncall@example.com");
    let body = first["body"].as_str().unwrap();
    assert!(
        body.starts_with("### ferry: failing needs attention\n\nDaily orders\n"),
        "{body}"
    );
    assert!(body.contains("no such table: no_such_table"), "{body}");
    assert!(!body.contains("more failure"), "{body}");
    // The run's own report still went to its notify channel.
    assert_eq!(p.files("outbox").len(), 3);

    // The hour passes in the store (the last alert is moved back, as the clock moving
    // forward would): 59 minutes on, a failure is still held back; 61 minutes on, the
    // next failure alerts again and counts the three held back.
    let last_sent = |p: &Project| -> chrono::DateTime<chrono::Utc> {
        let db = rusqlite::Connection::open(p.path().join("data/ferry.db")).unwrap();
        let t: String = db
            .query_row(
                "SELECT last_sent_at FROM owner_alerts WHERE task = 'failing'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        ferry::store::parse_instant(&t).unwrap()
    };
    let set_last_sent = |p: &Project, t: chrono::DateTime<chrono::Utc>| {
        let db = rusqlite::Connection::open(p.path().join("data/ferry.db")).unwrap();
        db.busy_timeout(Duration::from_secs(10)).unwrap();
        db.execute(
            "UPDATE owner_alerts SET last_sent_at = ?1 WHERE task = 'failing'",
            [ferry::store::fmt_instant(t)],
        )
        .unwrap();
    };
    let sent_at = last_sent(&p);
    // Still within the hour (by a minute): held back, counted.
    set_last_sent(&p, sent_at - chrono::Duration::minutes(59));
    p.run_json("failing", &[], 1);
    assert_eq!(alerts(&p).len(), 1, "{:#?}", alerts(&p));
    set_last_sent(&p, sent_at - chrono::Duration::minutes(61));
    p.run_json("failing", &[], 1);
    let sent = alerts(&p);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    let second = sent
        .iter()
        .find(|a| a["subject"] == "[ferry] ALERT failing: run failed (+3 more)")
        .unwrap_or_else(|| panic!("{sent:#?}"));
    assert!(
        second["body"]
            .as_str()
            .unwrap()
            .contains("- 3 more failures since the last alert ("),
        "{second}"
    );
}

#[test]
fn successful_runs_do_not_alert() {
    let p = project("1h");
    let json = p.run_json("sales_month", &[], 0);
    assert_eq!(json["status"], "succeeded", "{json}");
    assert!(p.files("alerts").is_empty());
}

#[test]
fn a_project_without_a_templates_folder_validates_and_uses_the_built_in_templates() {
    let p = project("1h");
    std::fs::remove_dir_all(p.path().join("templates")).unwrap();
    let out = p.ferry(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // A file of the same name overrides the built-in one; the others stay built in.
    p.write(
        "templates/alert.subject.j2",
        "[custom] {{ task_name }} {{ status }}",
    );
    p.run_json("failing", &[], 1);
    let sent = alerts(&p);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0]["subject"], "[custom] failing failed");
    let body = sent[0]["body"].as_str().unwrap();
    assert!(
        body.starts_with("### ferry: failing needs attention\n"),
        "{body}"
    );
    // The run's own report used the built-in `report` template.
    let report = p.files("outbox");
    assert_eq!(report.len(), 1);
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(p.path().join("outbox").join(&report[0])).unwrap(),
    )
    .unwrap();
    // A task without a period names the run date; `ferry run` is a manual run.
    let subject = json["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("failing on ") && subject.ends_with(": failed (manual run)"),
        "{json}"
    );
    assert!(
        json["body"]
            .as_str()
            .unwrap()
            .contains("The export failed, so no file was made this time: "),
        "{json}"
    );
}
