//! The MySQL-protocol source against a real MariaDB (started by
//! `scripts/test-services.sh`, which exports `FERRY_TEST_MYSQL_URL`): every type through
//! the real `ferry` binary into CSV and XLSX, typed parameters, chunk boundaries, empty
//! results, read-only enforcement, `KILL QUERY` on timeout, connection errors and the cost
//! guard. What every backend must do alike (also 0-column statements and query errors) is
//! in the conformance suite (`conformance.rs`).
//!
//! Under `CI=true` a missing `FERRY_TEST_MYSQL_URL` fails the tests; elsewhere they print
//! a note and pass without running.
//!
//! Each test uses its own tables (`myt_<test>...`), so the tests run in parallel. Setup
//! and checks use a separate connection (mysql_async in the test itself).

use std::time::{Duration, Instant};

use calamine::{Data, Reader, Xlsx, open_workbook};
use mysql_async::prelude::Queryable;

use crate::support::{Project, describe, refusal, stderr};

/// The test server's URL, or `None` (with a note) outside CI when it is not set.
pub(crate) fn my_url() -> Option<String> {
    match std::env::var("FERRY_TEST_MYSQL_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            crate::support::skip(
                "a MariaDB server",
                "FERRY_TEST_MYSQL_URL is not set (run the tests with scripts/test-services.sh)",
            );
            None
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn conn(url: &str) -> mysql_async::Conn {
    let mut c = mysql_async::Conn::from_url(url)
        .await
        .unwrap_or_else(|e| panic!("connect to the test server: {e}"));
    c.query_drop("SET time_zone = '+00:00'").await.unwrap();
    c
}

/// Runs SQL statements (the test's own setup, separated by `;` at line ends).
pub(crate) fn exec(url: &str, sql: &str) {
    block_on(async {
        let mut c = conn(url).await;
        for stmt in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
            c.query_drop(stmt)
                .await
                .unwrap_or_else(|e| panic!("{e:?}\n{stmt}"));
        }
        c.disconnect().await.unwrap();
    })
}

pub(crate) fn count(url: &str, sql: &str) -> i64 {
    block_on(async {
        let mut c = conn(url).await;
        let n: Option<i64> = c.query_first(sql).await.unwrap();
        c.disconnect().await.unwrap();
        n.unwrap()
    })
}

/// The `project` fixture with a `my` datasource and the given tasks.
fn project(tasks: &[(&str, &str)]) -> Project {
    project_with("", tasks)
}

/// The same with extra datasource settings (e.g. `, sql_gate: false`).
fn project_with(settings: &str, tasks: &[(&str, &str)]) -> Project {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    let config = config.replacen(
        "datasources:\n",
        &format!(
            "datasources:\n  my: {{ type: mysql, url: \"${{FERRY_TEST_MYSQL_URL}}\", connect_timeout: 5s, max_connections: 2{settings} }}\n"
        ),
        1,
    );
    p.write("config.yaml", &config);
    for (name, body) in tasks {
        p.write(&format!("tasks/{name}.yaml"), body);
    }
    p
}

fn task(query: &str, output: &str) -> String {
    let mut q = String::from("  ");
    q.push_str(&query.replace('\n', "\n  "));
    format!("schedule: '0 6 * * *'\nsource: my\nquery: |\n{q}\noutput: {output}\n")
}

fn read(p: &Project, json: &serde_json::Value) -> String {
    let rel = json["files"][0]["path"].as_str().expect("a file");
    std::fs::read_to_string(p.path().join(rel)).unwrap()
}

const TYPES_TABLE: &str = r#"
DROP TABLE IF EXISTS myt_types;
CREATE TABLE myt_types (
    id INT PRIMARY KEY, ti TINYINT, tb TINYINT(1), si SMALLINT, mi MEDIUMINT, i INT,
    bi BIGINT, ubi BIGINT UNSIGNED, ui INT UNSIGNED, yr YEAR, f FLOAT, d DOUBLE,
    num DECIMAL(38,10), bt BIT(8), dt DATE, dtm DATETIME(6), ts TIMESTAMP NULL, tm TIME(6),
    vc VARCHAR(50), ch CHAR(4), tx TEXT, bn BINARY(2), vb VARBINARY(10), bl BLOB, js JSON,
    en ENUM('happy','sad'), st SET('a','b','c')
) CHARACTER SET utf8mb4;
INSERT INTO myt_types VALUES
 (1, 127, 1, 32767, 8388607, 2147483647, 9223372036854775807, 18446744073709551615,
  4294967295, 2026, 0.1, 0.1, 12345678901234567890.1234567890, b'101', '2026-11-25',
  '2026-11-25 10:30:00', '2026-11-25 02:30:00', '10:30:00.25', '销售 😀', 'ab', '中文',
  0x00FF, X'', 0xDEADBEEF, '{"a": 1}', 'happy', 'a,c'),
 (2, -128, 0, -32768, -8388608, -2147483648, -9223372036854775808, 0, 0, 1901, -1.5,
  1.25, -0.0000000001, b'0', '1000-01-01', '2026-01-01 00:00:00.123456',
  '2026-06-30 23:59:59', '-838:59:59', '=1+1', 'abcd', '', 'ab', 'x', '', '[]', 'sad', ''),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, '100:00:00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
"#;

#[test]
fn every_type_reaches_csv_exactly() {
    let Some(url) = my_url() else { return };
    exec(&url, TYPES_TABLE);
    let p = project(&[(
        "my_types",
        &task(
            "SELECT * FROM myt_types ORDER BY id",
            "{ format: csv, file_name: types }",
        ),
    )]);
    let json = p.run_json("my_types", &["--no-notify"], 0);
    assert_eq!(json["status"], "succeeded", "{json}");
    assert_eq!(json["rows"], 3);
    assert_eq!(json["warnings"], serde_json::json!([]), "{json}");
    let csv = read(&p, &json);
    let expected = concat!(
        "id,ti,tb,si,mi,i,bi,ubi,ui,yr,f,d,num,bt,dt,dtm,ts (Asia/Shanghai),tm,vc,ch,tx,bn,vb,bl,js,en,st\n",
        "1,127,1,32767,8388607,2147483647,9223372036854775807,18446744073709551615,4294967295,2026,",
        "0.1,0.1,12345678901234567890.1234567890,5,2026-11-25,2026-11-25 10:30:00,",
        "2026-11-25 10:30:00+08:00,10:30:00.250,销售 😀,ab,中文,0x00FF,0x,0xDEADBEEF,",
        "\"{\"\"a\"\": 1}\",happy,\"a,c\"\n",
        "2,-128,0,-32768,-8388608,-2147483648,-9223372036854775808,0,0,1901,",
        "-1.5,1.25,-0.0000000001,0,1000-01-01,2026-01-01 00:00:00.123456,",
        // A negative TIME is text: its leading `-` gets the formula-escaping `'`.
        "2026-07-01 07:59:59+08:00,'-838:59:59,'=1+1,abcd,,0x6162,0x78,0x,[],sad,\n",
        "3,,,,,,,,,,,,,,,,,100:00:00,,,,,,,,,\n",
    );
    assert_eq!(csv, expected);
}

#[test]
fn every_type_reaches_xlsx_cells() {
    let Some(url) = my_url() else { return };
    exec(&url, &TYPES_TABLE.replace("myt_types", "myt_xtypes"));
    let p = project(&[(
        "my_xlsx",
        &task(
            "SELECT id, tb, bi, ubi, d, num, vc, dt, tm, dtm, ts, bn FROM myt_xtypes ORDER BY id",
            "{ format: xlsx, file_name: types }",
        ),
    )]);
    let json = p.run_json("my_xlsx", &["--no-notify"], 0);
    assert_eq!(json["rows"], 3, "{json}");
    let path = p.path().join(json["files"][0]["path"].as_str().unwrap());
    let mut wb: Xlsx<_> = open_workbook(&path).unwrap();
    let range = wb.worksheet_range("data").unwrap();
    let rows: Vec<Vec<Data>> = range.rows().map(|r| r.to_vec()).collect();
    let header: Vec<String> = rows[0].iter().map(|c| c.to_string()).collect();
    assert_eq!(
        header,
        [
            "id",
            "tb",
            "bi",
            "ubi",
            "d",
            "num",
            "vc",
            "dt",
            "tm",
            "dtm",
            "ts (Asia/Shanghai)",
            "bn"
        ]
    );
    let num = |d: &Data| match d {
        Data::Float(f) => *f,
        Data::Int(i) => *i as f64,
        other => panic!("expected a number, got {other:?}"),
    };
    let text = |d: &Data| match d {
        Data::String(s) => s.clone(),
        other => panic!("expected text, got {other:?}"),
    };
    let when = |d: &Data| match d {
        Data::DateTime(dt) => dt.as_f64(),
        other => panic!("expected a date/time cell, got {other:?}"),
    };
    let r1 = &rows[1];
    assert_eq!(num(&r1[0]), 1.0);
    // TINYINT(1) stays an integer.
    assert_eq!(num(&r1[1]), 1.0);
    // 19 and 20 digits: Excel would round them, so the exact digits are text.
    assert_eq!(text(&r1[2]), "9223372036854775807");
    assert_eq!(text(&r1[3]), "18446744073709551615");
    assert_eq!(num(&r1[4]), 0.1);
    assert_eq!(text(&r1[5]), "12345678901234567890.1234567890");
    assert_eq!(text(&r1[6]), "销售 😀");
    assert_eq!(when(&r1[7]), 46351.0);
    assert!((when(&r1[8]) - 10.5 / 24.0 - 0.25 / 86400.0).abs() < 1e-9);
    assert_eq!(when(&r1[9]), 46351.4375);
    // 02:30 UTC is 10:30 in Asia/Shanghai, the task's zone.
    assert_eq!(when(&r1[10]), 46351.4375);
    let r2 = &rows[2];
    assert_eq!(num(&r2[1]), 0.0);
    assert_eq!(text(&r2[2]), "-9223372036854775808");
    assert_eq!(num(&r2[3]), 0.0);
    assert_eq!(num(&r2[5]), -0.0000000001);
    assert_eq!(text(&r2[6]), "=1+1");
    assert_eq!(text(&r2[8]), "-838:59:59");
    let r3 = &rows[3];
    assert_eq!(r3[1], Data::Empty);
    assert_eq!(r3[2], Data::Empty);
    assert_eq!(text(&r3[8]), "100:00:00");
    assert_eq!(r3[10], Data::Empty);
}

#[test]
fn parameters_are_bound_with_their_types() {
    let Some(url) = my_url() else { return };
    let mut inserts = String::from("INSERT INTO myt_sales VALUES ");
    let start = chrono::NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
    for i in 0..122 {
        let d = start + chrono::Duration::days(i);
        let region = if chrono::Datelike::day(&d).is_multiple_of(2) {
            "east"
        } else {
            "west"
        };
        if i > 0 {
            inserts.push(',');
        }
        inserts.push_str(&format!(
            "('{d}', '{d} 12:00:00', '{d} 12:00:00', 1.50, '{region}')"
        ));
    }
    exec(
        &url,
        &format!(
            "DROP TABLE IF EXISTS myt_sales;\nCREATE TABLE myt_sales (day DATE, at DATETIME, at_ts TIMESTAMP NULL, amount DECIMAL(12,2), region VARCHAR(10));\n{inserts}"
        ),
    );
    let body = "schedule: '0 6 1 * *'\nsource: my\nperiod: month\nparams:\n  region: east\n  min: 1\n  factor: 2.0\n  yes: true\nquery: |\n  SELECT count(*) AS n, min(day) AS first_day, max(day) AS last_day, sum(amount) * :factor AS total,\n         :region AS region, :yes AS yes\n  FROM myt_sales\n  WHERE day >= :period_start_date AND day < :period_end_date\n    AND at >= :period_start AND at < :period_end\n    AND at_ts < :scheduled_at\n    AND region = :region AND amount >= :min\noutput: { format: csv, file_name: sales }\n";
    let p = project(&[("my_sales", body)]);
    // 2026-11-01 06:00 Asia/Shanghai: October 2026; the even days of October are 15.
    // DECIMAL * DOUBLE is DOUBLE in MySQL, hence `45`; a bool is bound as 1.
    let json = p.run_json(
        "my_sales",
        &["--at", "2026-11-01T06:00:00+08:00", "--no-notify"],
        0,
    );
    assert_eq!(
        read(&p, &json),
        "n,first_day,last_day,total,region,yes\n15,2026-10-02,2026-10-30,45,east,1\n",
        "{json}"
    );
}

#[test]
fn chunk_boundaries_and_empty_results() {
    let Some(_url) = my_url() else { return };
    let ten = "schedule: '0 6 * * *'\nsource: my\nchunk_rows: 3\nquery: WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 10) SELECT n, CONCAT('row ', n) AS label FROM g ORDER BY n\noutput: { format: csv, file_name: ten }\n";
    let nine = ten
        .replace("n < 10", "n < 9")
        .replace("file_name: ten", "file_name: nine");
    let empty = task(
        "SELECT 1 AS n, NOW() AS at, CAST(NOW() AS DATETIME) AS local_at FROM DUAL WHERE 1 = 0",
        "{ format: csv, file_name: empty }",
    );
    let empty_xlsx = task(
        "SELECT 1 AS n FROM DUAL WHERE 1 = 0",
        "{ format: xlsx, file_name: empty }",
    );
    let p = project(&[
        ("my_ten", ten),
        ("my_nine", &nine),
        ("my_empty", &empty),
        ("my_empty_xlsx", &empty_xlsx),
    ]);
    let json = p.run_json("my_ten", &["--no-notify"], 0);
    assert_eq!(json["rows"], 10, "{json}");
    let expected: String = std::iter::once("n,label\n".to_string())
        .chain((1..=10).map(|i| format!("{i},row {i}\n")))
        .collect();
    assert_eq!(read(&p, &json), expected);
    let json = p.run_json("my_nine", &["--no-notify"], 0);
    assert_eq!(json["rows"], 9);
    assert_eq!(read(&p, &json).lines().count(), 10);

    let json = p.run_json("my_empty", &["--no-notify"], 0);
    assert_eq!(json["rows"], 0);
    assert_eq!(read(&p, &json), "n,at,local_at\n");
    let json = p.run_json("my_empty_xlsx", &["--no-notify"], 0);
    assert_eq!(json["rows"], 0);
    assert_eq!(json["status"], "succeeded");
}

#[test]
fn writes_are_refused_by_the_read_only_transaction() {
    let Some(url) = my_url() else { return };
    exec(
        &url,
        "DROP TABLE IF EXISTS myt_ro;
         DROP TABLE IF EXISTS myt_ro_new;
         CREATE TABLE myt_ro (id INT PRIMARY KEY, v VARCHAR(10));
         INSERT INTO myt_ro VALUES (1, 'v1'), (2, 'v2'), (3, 'v3'), (4, 'v4'), (5, 'v5')",
    );
    let writes = [
        ("my_insert", "INSERT INTO myt_ro VALUES (100, 'x')"),
        ("my_update", "UPDATE myt_ro SET v = 'changed'"),
        ("my_delete", "DELETE FROM myt_ro"),
        ("my_create", "CREATE TABLE myt_ro_new (id INT)"),
        (
            "my_create_as",
            "CREATE TABLE myt_ro_new AS SELECT * FROM myt_ro",
        ),
        ("my_drop", "DROP TABLE myt_ro"),
        ("my_truncate", "TRUNCATE TABLE myt_ro"),
    ];
    let tasks: Vec<(&str, String)> = writes
        .iter()
        .map(|(n, q)| (*n, task(q, "{ format: csv }")))
        .collect();
    let refs: Vec<(&str, &str)> = tasks.iter().map(|(n, b)| (*n, b.as_str())).collect();
    // The parser gate would refuse these first: turn it off to prove the database does.
    let p = project_with(", sql_gate: false", &refs);
    for (name, _) in &writes {
        let json = p.run_json(name, &["--no-notify"], 1);
        assert_eq!(json["status"], "failed", "{name}: {json}");
        let err = json["error"].as_str().unwrap();
        assert!(
            err.starts_with("datasource `my`: ") && err.contains("READ ONLY transaction"),
            "{name}: {err}"
        );
        assert!(err.contains("error 1792"), "{name}: {err}");
    }
    assert_eq!(count(&url, "SELECT COUNT(*) FROM myt_ro"), 5);
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM myt_ro WHERE v <> CONCAT('v', id)"
        ),
        0
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'myt_ro_new'"
        ),
        0
    );
}

#[test]
fn a_timeout_kills_the_statement_on_the_server() {
    let Some(url) = my_url() else { return };
    let body = "schedule: '0 6 * * *'\nsource: my\ntimeout: 2s\nquery: SELECT SLEEP(600) AS ferry_timeout_marker\noutput: { format: csv, file_name: slow }\n";
    let p = project(&[("my_slow", body)]);
    let started = Instant::now();
    let json = p.run_json("my_slow", &["--no-notify"], 1);
    let took = started.elapsed();
    assert_eq!(json["status"], "failed", "{json}");
    let err = json["error"].as_str().unwrap();
    assert!(err.starts_with("timeout"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(p.files("exports").iter().all(|f| f.starts_with(".tmp")));
    // The statement is gone from the server too (poll with a deadline). The server's own
    // max_statement_time is 10 s longer than the task's, so only ferry's KILL QUERY can
    // have stopped it this early.
    let lingering = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%ferry_timeout_marker%' AND ID <> CONNECTION_ID()";
    let deadline = started + Duration::from_secs(9);
    loop {
        let n = count(&url, lingering);
        if n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} SLEEP statement(s) still running on the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn connection_errors_name_the_datasource_and_hide_the_password() {
    let Some(url) = my_url() else { return };
    // host:port of the test server
    let hostport = url
        .rsplit_once('@')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    let sources = format!(
        "datasources:\n  badpw: {{ type: mysql, url: \"mysql://ferry:s3cretpw@{hostport}/ferry_test\" }}\n  nodb: {{ type: mysql, url: \"mysql://ferry:ferry@{hostport}/no_such_db\" }}\n  closed: {{ type: mysql, url: \"mysql://ferry:s3cretpw@127.0.0.1:1/ferry_test\", connect_timeout: 3s }}\n"
    );
    p.write(
        "config.yaml",
        &config.replacen("datasources:\n", &sources, 1),
    );
    for ds in ["badpw", "nodb", "closed"] {
        p.write(
            &format!("tasks/my_{ds}.yaml"),
            &format!(
                "schedule: '0 6 * * *'\nsource: {ds}\nquery: SELECT 1 AS one\noutput: {{ format: csv }}\n"
            ),
        );
    }
    let err = |task: &str| {
        let out = p.ferry(&["run", task, "--json", "--no-notify"]);
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let all = format!(
            "{}{}",
            crate::support::stdout(&out),
            crate::support::stderr(&out)
        );
        assert!(!all.contains("s3cretpw"), "password shown: {all}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["error"].as_str().unwrap().to_string()
    };
    assert_eq!(
        err("my_badpw"),
        format!(
            "datasource `badpw`: cannot connect to mysql://ferry:***@{hostport}/ferry_test: Access denied for user 'ferry'@'127.0.0.1' (using password: YES) (error 1045, SQLSTATE 28000)"
        )
    );
    let nodb = err("my_nodb");
    assert!(
        nodb.starts_with(&format!(
            "datasource `nodb`: cannot connect to mysql://ferry:***@{hostport}/no_such_db: "
        )) && nodb.contains("'no_such_db'")
            && (nodb.contains("(error 1049,") || nodb.contains("(error 1044,")),
        "{nodb}"
    );
    let closed = err("my_closed");
    assert!(
        closed.starts_with(
            "datasource `closed`: cannot connect to mysql://ferry:***@127.0.0.1:1/ferry_test: "
        ) && closed.contains("refused"),
        "{closed}"
    );
}

#[test]
fn invalid_datasource_settings_are_reported_without_the_password() {
    // Pure validation: no server needed.
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    let sources = "datasources:\n  a: { type: mysql, url: \"postgres://u:s3cretpw@h/db\" }\n  b: { type: mysql, url: \"mysql://u:s3cretpw@h:notaport/db\" }\n  c: { type: mysql, url: \"mysql://u@h/db\", max_connections: 0, connect_timeout: soon }\n";
    p.write(
        "config.yaml",
        &config.replacen("datasources:\n", sources, 1),
    );
    let out = p.ferry(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let text = format!(
        "{}{}",
        crate::support::stdout(&out),
        crate::support::stderr(&out)
    );
    assert!(!text.contains("s3cretpw"), "{text}");
    for needle in [
        "datasources.a.url: expected `mysql://USER:PASSWORD@HOST:PORT/DATABASE`, got `postgres://u:***@h/db`",
        "datasources.b.url: invalid MySQL url `mysql://u:***@h:notaport/db`",
        "datasources.c.max_connections: must be at least 1",
        "datasources.c.connect_timeout:",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn the_sql_gate_refuses_writes_before_they_reach_mariadb() {
    let Some(url) = my_url() else { return };
    exec(
        &url,
        "DROP TABLE IF EXISTS myt_gate;
         DROP TABLE IF EXISTS myt_gate_new;
         CREATE TABLE myt_gate (id INT PRIMARY KEY, v VARCHAR(10));
         INSERT INTO myt_gate VALUES (1, 'v1'), (2, 'v2'), (3, 'v3'), (4, 'v4'), (5, 'v5')",
    );
    let hostile = [
        (
            "my_insert",
            "INSERT INTO myt_gate VALUES (100, 'x')",
            "found INSERT",
        ),
        (
            "my_update",
            "UPDATE myt_gate SET v = 'changed'",
            "found UPDATE",
        ),
        ("my_delete", "DELETE FROM myt_gate", "found DELETE"),
        (
            "my_create",
            "CREATE TABLE myt_gate_new (id INT)",
            "found CREATE TABLE",
        ),
        (
            "my_create_as",
            "CREATE TABLE myt_gate_new AS SELECT * FROM myt_gate",
            "found CREATE TABLE",
        ),
        ("my_drop", "DROP TABLE myt_gate", "found DROP TABLE"),
        (
            "my_multi",
            "SELECT 1; DROP TABLE myt_gate",
            "found 2 statements",
        ),
        (
            "my_hint",
            "SELECT /*! 1; DROP TABLE myt_gate */ 2",
            "executable comment (/*!…*/)",
        ),
        (
            "my_outfile",
            "SELECT * FROM myt_gate INTO OUTFILE '/tmp/x'",
            "refused",
        ),
        ("my_lock", "SELECT * FROM myt_gate FOR UPDATE", "FOR UPDATE"),
    ];
    let tasks: Vec<(&str, String)> = hostile
        .iter()
        .map(|(n, q, _)| (*n, task(q, "{ format: csv }")))
        .collect();
    let refs: Vec<(&str, &str)> = tasks.iter().map(|(n, b)| (*n, b.as_str())).collect();
    let p = project(&refs);
    let out = p.ferry(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    for (name, _, why) in &hostile {
        refusal(&err, name, why);
        let out = p.ferry(&["run", name, "--no-notify"]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", describe(&out));
        assert!(stderr(&out).contains(why), "{name}: {}", describe(&out));
    }
    assert_eq!(count(&url, "SELECT COUNT(*) FROM myt_gate"), 5);
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM myt_gate WHERE v <> CONCAT('v', id)"
        ),
        0
    );
    assert_eq!(
        count(
            &url,
            "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'myt_gate_new'"
        ),
        0
    );
}

#[test]
fn the_cost_guard_refuses_expensive_plans_before_they_run() {
    let Some(url) = my_url() else { return };
    exec(
        &url,
        "DROP TABLE IF EXISTS myt_cost;
         CREATE TABLE myt_cost (id INT PRIMARY KEY, v VARCHAR(20));
         INSERT INTO myt_cost SELECT seq, CONCAT('row ', seq) FROM seq_1_to_5000;
         ANALYZE TABLE myt_cost;",
    );
    let scan = task(
        "SELECT a.id FROM myt_cost a JOIN myt_cost b ON a.v > b.v",
        "{ format: csv, file_name: scan }",
    );
    let point = "schedule: '0 6 * * *'\nsource: my\nparams: { wanted: 42 }\nquery: SELECT v FROM myt_cost WHERE id = :wanted\noutput: { format: csv, file_name: point }\n";
    let p = project_with(
        ", max_cost: 100000",
        &[("my_scan", &scan), ("my_point", point)],
    );

    let json = p.run_json("my_scan", &["--no-notify"], 1);
    assert_eq!(json["status"], "failed", "{json}");
    let err = json["error"].as_str().unwrap();
    assert!(
        err.starts_with("the query was refused by the cost guard: estimated cost ")
            && err.contains("(estimated rows examined)")
            && err.contains("exceeds max_cost 100,000 of datasource `my`"),
        "{err}"
    );
    assert!(p.files("exports").iter().all(|f| f.starts_with(".tmp")));

    let json = p.run_json("my_point", &["--no-notify"], 0);
    assert_eq!(json["status"], "succeeded", "{json}");
    assert_eq!(read(&p, &json), "v\nrow 42\n");
}
