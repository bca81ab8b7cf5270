//! Running tasks through the CLI: JSON contract, exit codes, history, failures recorded,
//! notifications through the outbox, parameters bound from the scheduled time.

use crate::support::{Project, describe, refusal, stderr, stdout};

fn history_json(p: &Project, task: &str) -> Vec<serde_json::Value> {
    let out = p.ferry(&["history", "--task", task, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).unwrap()
}

#[test]
fn json_contract_and_history_of_a_successful_run() {
    let p = Project::fixture("project");
    let json = p.run_json("types_csv", &[], 0);
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "deliveries",
            "delivery",
            "error",
            "files",
            "rows",
            "run_id",
            "status",
            "task",
            "warnings"
        ]
    );
    assert_eq!(json["status"], "succeeded");
    assert_eq!(json["task"], "types_csv");
    assert_eq!(json["error"], serde_json::Value::Null);
    let file = &json["files"][0];
    assert_eq!(file["path"], "exports/types_csv/types.csv");
    let bytes = std::fs::read(p.path().join("exports/types_csv/types.csv")).unwrap();
    assert_eq!(file["bytes"], bytes.len() as u64);
    assert_eq!(file["sha256"].as_str().unwrap().len(), 64);

    let runs = history_json(&p, "types_csv");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["run_id"], json["run_id"]);
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["rows"], 5);
    assert_eq!(runs[0]["trigger"], "manual");
    assert_eq!(runs[0]["files"][0]["sha256"], file["sha256"]);

    // The table form names the task and the file.
    let out = p.ferry(&["history"]);
    assert!(
        stdout(&out).contains("types_csv") && stdout(&out).contains("succeeded"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_query_error_is_a_failed_run_with_the_database_message() {
    let p = Project::fixture("project");
    let json = p.run_json("broken_query", &[], 1);
    assert_eq!(json["status"], "failed");
    assert_eq!(json["files"], serde_json::json!([]));
    let err = json["error"].as_str().unwrap();
    assert_eq!(err, "datasource `db`: no such table: no_such_table");
    let runs = history_json(&p, "broken_query");
    assert_eq!(runs[0]["status"], "failed");
    assert_eq!(runs[0]["error"], err);
    // The failure notice went to the outbox (notify on: failure).
    let outbox = p.files("outbox");
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    let msg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("outbox").join(&outbox[0])).unwrap())
            .unwrap();
    assert_eq!(msg["subject"], "[ferry] broken_query failed");
    assert!(
        msg["body"].as_str().unwrap().contains("no such table"),
        "{msg}"
    );
    // Without --json the error is one paragraph on stderr, exit 1.
    let out = p.ferry(&["run", "broken_query", "--no-notify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .starts_with("error: task `broken_query` failed: datasource `db`: no such table"),
        "{}",
        describe(&out)
    );
    assert!(!stderr(&out).contains("panicked"));
}

#[test]
fn parameters_follow_the_scheduled_time() {
    let p = Project::fixture("project");
    // 2026-11-01 06:00 Asia/Shanghai: the month before is October 2026.
    let json = p.run_json("sales_month", &["--at", "2026-11-01T06:00:00+08:00"], 0);
    assert_eq!(
        json["files"][0]["path"],
        "exports/sales_month/sales_202610.csv"
    );
    let csv =
        std::fs::read_to_string(p.path().join("exports/sales_month/sales_202610.csv")).unwrap();
    // sales: 2026-09-01 + (i-1) days, amount i*1.5; October is i = 31..=61.
    let total: f64 = (31..=61).map(|i| i as f64 * 1.5).sum();
    assert_eq!(
        csv,
        format!("n,first_day,last_day,total\n31,2026-10-01,2026-10-31,{total}\n")
    );
    // The same fire time never runs twice.
    let again = p.ferry(&["run", "sales_month", "--at", "2026-11-01T06:00:00+08:00"]);
    assert_eq!(again.status.code(), Some(1), "{}", describe(&again));
    assert!(
        stderr(&again).contains("already claimed"),
        "{}",
        describe(&again)
    );
    let runs = history_json(&p, "sales_month");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["scheduled_at"], "2026-10-31T22:00:00Z");
    assert_eq!(runs[0]["trigger"], "schedule");
}

#[test]
fn notifications_go_to_the_outbox_unless_disabled() {
    let p = Project::fixture("project");
    p.run_json(
        "sales_month",
        &["--no-notify", "--at", "2026-10-01T06:00:00+08:00"],
        0,
    );
    assert!(p.files("outbox").is_empty());
    let json = p.run_json("sales_month", &["--at", "2026-12-01T06:00:00+08:00"], 0);
    let outbox = p.files("outbox");
    assert_eq!(outbox.len(), 1);
    assert!(outbox[0].contains(json["run_id"].as_str().unwrap()));
    let msg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("outbox").join(&outbox[0])).unwrap())
            .unwrap();
    assert_eq!(msg["channel"], "box");
    assert_eq!(msg["recipients"], serde_json::json!(["team@example.com"]));
    assert_eq!(msg["subject"], "[ferry] sales_month succeeded: 1 rows");
    assert_eq!(msg["attachments"][0]["sha256"], json["files"][0]["sha256"]);
    let body = msg["body"].as_str().unwrap();
    assert!(
        body.contains("Scheduled: 2026-12-01 06:00:00 (Asia/Shanghai)"),
        "{body}"
    );
    assert!(body.contains("sales_202611.csv"), "{body}");
}

#[test]
fn the_same_channel_twice_writes_two_messages_and_records_two_deliveries() {
    let p = Project::fixture("project");
    p.write(
        "tasks/twice.yaml",
        "schedule: \"0 3 * * *\"\nsource: db\nquery: SELECT id FROM t\noutput: { format: csv }\n\
         notify:\n  - box\n  - { channel: box, recipients: [oncall@example.com] }\n",
    );
    let json = p.run_json("twice", &[], 0);
    let run_id = json["run_id"].as_str().unwrap();
    let mut outbox = p.files("outbox");
    outbox.sort();
    assert_eq!(
        outbox,
        [
            format!("twice_{run_id}_box.json"),
            format!("twice_{run_id}_box_2.json")
        ]
    );
    let second: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.path().join("outbox").join(&outbox[1])).unwrap())
            .unwrap();
    assert_eq!(
        second["recipients"],
        serde_json::json!(["oncall@example.com"])
    );
    let deliveries = json["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    for (d, n) in deliveries.iter().zip([1, 2]) {
        assert_eq!(d["channel"], "box");
        assert_eq!(d["occurrence"], n);
        assert_eq!(d["status"], "sent");
        assert!(
            d["receipt"].as_str().unwrap().starts_with("written to "),
            "{d}"
        );
    }
    assert_eq!(
        history_json(&p, "twice")[0]["deliveries"],
        json["deliveries"]
    );
}

#[test]
fn empty_result_with_on_empty_skip_writes_the_file_but_sends_nothing() {
    let p = Project::fixture("project");
    let json = p.run_json("empty_skip", &[], 0);
    assert_eq!(json["rows"], 0);
    assert_eq!(json["files"].as_array().unwrap().len(), 1);
    assert!(
        json["warnings"][0]
            .as_str()
            .unwrap()
            .contains("on_empty: skip"),
        "{json}"
    );
    assert!(p.files("outbox").is_empty());
}

#[test]
fn query_file_is_read_relative_to_the_task() {
    let p = Project::fixture("project");
    p.run_json("from_file", &[], 0);
    let csv = std::fs::read_to_string(p.path().join("exports/from_file/ids.csv")).unwrap();
    assert_eq!(csv, "id\n1\n2\n");
}

#[test]
fn unknown_task_suggests_close_names() {
    let p = Project::fixture("project");
    let out = p.ferry(&["run", "types_cvs"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: unknown task `types_cvs` (did you mean `types_csv`?)"),
        "{err}"
    );
    assert!(err.contains("known tasks:"), "{err}");
}

#[test]
fn an_output_folder_that_cannot_be_written_fails_clearly() {
    let p = Project::fixture("project");
    // `exports` is a file, so no folder can be made under it (this holds even for root).
    p.write("exports", "not a folder");
    let json = p.run_json("types_csv", &[], 1);
    let err = json["error"].as_str().unwrap();
    assert!(
        err.starts_with("cannot create output folder exports/types_csv:"),
        "{err}"
    );
}

#[test]
fn files_are_never_overwritten() {
    let p = Project::fixture("project");
    let a = p.run_json("types_csv", &["--no-notify"], 0);
    let b = p.run_json("types_csv", &["--no-notify"], 0);
    assert_eq!(a["files"][0]["path"], "exports/types_csv/types.csv");
    assert_eq!(b["files"][0]["path"], "exports/types_csv/types_2.csv");
    assert_ne!(a["run_id"], b["run_id"]);
}

#[test]
fn tasks_lists_every_task_with_its_next_fire() {
    let p = Project::fixture("project");
    let out = p.ferry(&["tasks"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    let line = text
        .lines()
        .find(|l| l.starts_with("sales_month"))
        .expect("sales_month listed");
    assert!(
        line.contains("0 6 1 * *") && line.contains("Asia/Shanghai") && line.contains("csv"),
        "{line}"
    );
    assert!(line.contains(" 06:00:00 +08:00"), "{line}");
}

#[test]
fn every_command_has_help() {
    let p = Project::fixture("project");
    for cmd in [
        "validate", "run", "next", "tasks", "history", "status", "cleanup", "secrets",
    ] {
        let out = p.ferry(&[cmd, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{cmd}: {}", describe(&out));
        assert!(stdout(&out).contains("Usage: ferry"), "{cmd}");
    }
}

#[test]
fn a_run_past_its_timeout_is_stopped_in_the_database_and_recorded_failed() {
    let p = Project::fixture("project");
    p.write(
        "tasks/slow.yaml",
        "schedule: '0 3 * * *'\nsource: db\ntimeout: 1s\nquery: |\n  WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000)\n  SELECT max(x) AS m FROM c\noutput: { format: csv, file_name: slow }\n",
    );
    let started = std::time::Instant::now();
    let json = p.run_json("slow", &["--no-notify"], 1);
    // Without the interrupt, SQLite would count for minutes.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(json["status"], "failed");
    assert_eq!(
        json["error"],
        "timeout: the run took longer than 1s (task `timeout`)"
    );
    assert!(!p.path().join("exports/slow/slow.csv").exists());
    assert!(
        p.files("exports/slow").is_empty(),
        "{:?}",
        p.files("exports/slow")
    );
}

#[test]
fn config_values_come_from_the_environment() {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &config.replace(
            "sqlite://db/test.db",
            "sqlite://${FERRY_TEST_DB_DIR}/test.db",
        ),
    );
    let out = std::process::Command::new(crate::support::FERRY)
        .current_dir(p.path())
        .args(["run", "from_file", "--json"])
        .env("FERRY_TEST_DB_DIR", "elsewhere")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(p.path().join("elsewhere/test.db").exists());
    let missing = std::process::Command::new(crate::support::FERRY)
        .current_dir(p.path())
        .args(["validate"])
        .env_remove("FERRY_TEST_DB_DIR")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing)
            .contains("datasources.db.url: environment variable `FERRY_TEST_DB_DIR` is not set"),
        "{}",
        describe(&missing)
    );
}

#[test]
fn parameters_bind_as_values_never_as_sql() {
    let p = Project::fixture("project");
    p.write(
        "tasks/params.yaml",
        "schedule: '30 2 * * *'\nsource: db\nparams:\n  label: \"x'; DROP TABLE t; --\"\nquery: SELECT :run_date, :yesterday AS y, :label AS label, :run_date = '2026-11-25' AS same\noutput: { format: csv, file_name: params }\n",
    );
    p.run_json("params", &["--at", "2026-11-25T02:30:00+08:00"], 0);
    let csv = std::fs::read_to_string(p.path().join("exports/params/params.csv")).unwrap();
    assert_eq!(
        csv,
        "$1,y,label,same\n2026-11-25,2026-11-24,x'; DROP TABLE t; --,1\n"
    );
    // The hostile parameter value was data, not SQL: the table is still there.
    p.run_json("types_csv", &[], 0);
}

#[test]
fn the_sql_gate_refuses_a_write_before_it_reaches_sqlite() {
    let p = Project::fixture("project");
    p.run_json("types_csv", &[], 0); // builds db/test.db from the seed
    let rows = || {
        let c = rusqlite::Connection::open(p.path().join("db/test.db")).unwrap();
        c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0))
            .unwrap()
    };
    let before = rows();
    let hostile = [
        (
            "gate_multi",
            "SELECT 1; DELETE FROM t",
            "found 2 statements",
        ),
        ("gate_delete", "DELETE FROM t", "found DELETE"),
        (
            "gate_cte",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "data-modifying CTE (DELETE)",
        ),
        ("gate_parse", "SELEC * FROM t", "does not parse"),
    ];
    for (name, q, _) in &hostile {
        p.write(
            &format!("tasks/{name}.yaml"),
            &format!("schedule: '0 6 * * *'\nsource: db\nquery: {q}\noutput: {{ format: csv }}\n"),
        );
    }
    // `ferry validate` names the file, line and column of `query`.
    let out = p.ferry(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    for (name, _, why) in &hostile {
        let line = refusal(&err, name, why);
        assert!(line.contains(&format!("{name}.yaml:3:8: ")), "{line}");
    }
    // A run of such a task is refused before anything connects.
    let out = p.ferry(&["run", "gate_delete", "--no-notify"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        stderr(&out).contains("query: refused: "),
        "{}",
        describe(&out)
    );
    assert_eq!(rows(), before);
    assert!(before > 0);

    // With `sql_gate: false` the statement reaches SQLite, whose query-only mode refuses it.
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &config.replace(
            "seed_sql: seed.sql }",
            "seed_sql: seed.sql, sql_gate: false }",
        ),
    );
    let json = p.run_json("gate_delete", &["--no-notify"], 1);
    assert_eq!(json["status"], "failed", "{json}");
    let e = json["error"].as_str().unwrap();
    assert!(!e.contains("query refused"), "{e}");
    assert_eq!(rows(), before);
}
