//! The PostgreSQL source against a real server (started by `scripts/test-services.sh`,
//! which exports `FERRY_TEST_PG_URL` and `FERRY_TEST_PG_ADMIN_URL`): every type through
//! the real `ferry` binary into CSV and XLSX, typed parameters, read-only enforcement,
//! server-side cancellation on timeout, connection errors and the cost guard. What every
//! backend must do alike (chunk boundaries, empty results, 0-column statements, query
//! errors) is in the conformance suite (`conformance.rs`).
//!
//! Under `CI=true` a missing `FERRY_TEST_PG_URL` fails the tests; elsewhere they print a
//! note and pass without running.
//!
//! Each test uses its own tables (`pgt_<test>_...`), so the tests run in parallel.

use std::time::{Duration, Instant};

use calamine::{Data, Reader, Xlsx, open_workbook};

use crate::support::{Project, describe, refusal, stderr};

/// The test server's URL, or `None` (with a note) outside CI when it is not set.
pub(crate) fn pg_url() -> Option<String> {
    match std::env::var("FERRY_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            crate::support::skip(
                "a PostgreSQL server",
                "FERRY_TEST_PG_URL is not set (run the tests with scripts/test-services.sh)",
            );
            None
        }
    }
}

pub(crate) fn admin_url(url: &str) -> String {
    std::env::var("FERRY_TEST_PG_ADMIN_URL").unwrap_or_else(|_| url.to_string())
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test server: {e}"));
    tokio::spawn(conn);
    client
}

/// Runs SQL statements (the test's own setup) on the server.
pub(crate) fn exec(url: &str, sql: &str) {
    block_on(async {
        client(url)
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{sql}"))
    })
}

/// The first column of every row, as PostgreSQL's own text.
fn texts(url: &str, sql: &str) -> Vec<Option<String>> {
    block_on(async {
        let rows = client(url).await.simple_query(sql).await.unwrap();
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(String::from)),
                _ => None,
            })
            .collect()
    })
}

pub(crate) fn count(url: &str, sql: &str) -> i64 {
    texts(url, sql)[0].as_deref().unwrap().parse().unwrap()
}

/// The `project` fixture with a `pg` datasource and the given tasks.
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
            "datasources:\n  pg: {{ type: postgres, url: \"${{FERRY_TEST_PG_URL}}\", connect_timeout: 5s{settings} }}\n"
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
    format!("schedule: '0 6 * * *'\nsource: pg\nquery: |\n{q}\noutput: {output}\n")
}

fn read(p: &Project, json: &serde_json::Value) -> String {
    let rel = json["files"][0]["path"].as_str().expect("a file");
    std::fs::read_to_string(p.path().join(rel)).unwrap()
}

const TYPES_TABLE: &str = r#"
DROP TABLE IF EXISTS pgt_types;
DROP TYPE IF EXISTS pgt_mood;
CREATE TYPE pgt_mood AS ENUM ('happy', 'sad');
CREATE TABLE pgt_types (
    id int4 PRIMARY KEY, i2 int2, i8 int8, f4 float4, f8 float8, num numeric(38,10),
    b bool, t text, vc varchar(20), bc char(4), by bytea, d date, tm time, ts timestamp,
    tstz timestamptz, u uuid, j json, jb jsonb, iv interval, mood pgt_mood, arr int4[],
    tarr text[], pt point
);
INSERT INTO pgt_types VALUES
 (1, 32767, 9223372036854775807, 0.1, 0.1, 12345678901234567890.1234567890,
  true, '销售 😀', 'abc', 'ab', '\x00ff', '2026-11-25', '10:30:00.25', '2026-11-25 10:30:00',
  '2026-11-25 02:30:00+00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": 1}', '{"b": [1, 2]}',
  '1 year 2 mons 3 days 04:05:06.5', 'happy', '{1,2,NULL}', '{"x y","中文",""}', '(1,2)'),
 (2, -32768, -9223372036854775808, -1.5, 'NaN', -0.0000000001,
  false, '=1+1', '中文', 'abcd', '\x', '1899-12-31', '00:00:00', '2026-01-01 00:00:00.123456',
  '2026-06-30 23:59:59.5-07', '00000000-0000-0000-0000-000000000000', '[]', '{}',
  '-1 days +02:00:00', 'sad', '{}', '{}', '(0,0)'),
 (3, NULL, NULL, NULL, 'Infinity', 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, '00:00:00', NULL, NULL, NULL, NULL);
"#;

#[test]
fn every_type_reaches_csv_exactly() {
    let Some(url) = pg_url() else { return };
    exec(&url, TYPES_TABLE);
    let p = project(&[(
        "pg_types",
        &task(
            "SELECT * FROM pgt_types ORDER BY id",
            "{ format: csv, file_name: types }",
        ),
    )]);
    let json = p.run_json("pg_types", &["--no-notify"], 0);
    assert_eq!(json["status"], "succeeded", "{json}");
    assert_eq!(json["rows"], 3);
    // The point column is read as bytes, with a warning that says what to do.
    let warnings = json["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{json}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("`pt`") && w.contains("`point`") && w.contains("pt::text"),
        "{w}"
    );
    let csv = read(&p, &json);
    let expected = concat!(
        "id,i2,i8,f4,f8,num,b,t,vc,bc,by,d,tm,ts,tstz (Asia/Shanghai),u,j,jb,iv,mood,arr,tarr,pt\n",
        "1,32767,9223372036854775807,0.1,0.1,12345678901234567890.1234567890,true,销售 😀,abc,ab  ,0x00FF,",
        "2026-11-25,10:30:00.250,2026-11-25 10:30:00,2026-11-25 10:30:00+08:00,",
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,\"{\"\"a\"\": 1}\",\"{\"\"b\"\": [1, 2]}\",",
        "1 year 2 mons 3 days 04:05:06.5,happy,\"{1,2,NULL}\",\"{\"\"x y\"\",中文,\"\"\"\"}\",",
        "0x3FF00000000000004000000000000000\n",
        "2,-32768,-9223372036854775808,-1.5,NaN,-0.0000000001,false,'=1+1,中文,abcd,0x,",
        "1899-12-31,00:00:00,2026-01-01 00:00:00.123456,2026-07-01 14:59:59.500+08:00,",
        // An interval is text: a leading `-` gets the formula-escaping `'`.
        "00000000-0000-0000-0000-000000000000,[],{},'-1 days +02:00:00,sad,{},{},",
        "0x00000000000000000000000000000000\n",
        "3,,,,Infinity,0.0000000000,,,,,,,,,,,,,00:00:00,,,,\n",
    );
    assert_eq!(csv, expected);

    // The exact decimals and intervals are PostgreSQL's own text for them.
    let pg = |col: &str| {
        texts(
            &url,
            &format!("SELECT {col}::text FROM pgt_types ORDER BY id"),
        )
    };
    assert_eq!(
        pg("num"),
        [
            Some("12345678901234567890.1234567890".into()),
            Some("-0.0000000001".into()),
            Some("0.0000000000".into())
        ]
    );
    assert_eq!(
        pg("iv"),
        [
            Some("1 year 2 mons 3 days 04:05:06.5".into()),
            Some("-1 days +02:00:00".into()),
            Some("00:00:00".into())
        ]
    );
    assert_eq!(pg("arr")[0].as_deref(), Some("{1,2,NULL}"));
    assert_eq!(pg("tarr")[0].as_deref(), Some("{\"x y\",中文,\"\"}"));
}

#[test]
fn every_type_reaches_xlsx_cells() {
    let Some(url) = pg_url() else { return };
    exec(
        &url,
        &TYPES_TABLE
            .replace("pgt_types", "pgt_xtypes")
            .replace("pgt_mood", "pgt_xmood"),
    );
    let p = project(&[(
        "pg_xlsx",
        &task(
            "SELECT id, i2, i8, f8, num, b, t, d, tm, ts, tstz, u FROM pgt_xtypes ORDER BY id",
            "{ format: xlsx, file_name: types }",
        ),
    )]);
    let json = p.run_json("pg_xlsx", &["--no-notify"], 0);
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
            "i2",
            "i8",
            "f8",
            "num",
            "b",
            "t",
            "d",
            "tm",
            "ts",
            "tstz (Asia/Shanghai)",
            "u"
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
    assert_eq!(num(&r1[1]), 32767.0);
    // 19 digits: Excel would round them, so the exact digits are text.
    assert_eq!(text(&r1[2]), "9223372036854775807");
    assert_eq!(num(&r1[3]), 0.1);
    assert_eq!(text(&r1[4]), "12345678901234567890.1234567890");
    assert_eq!(r1[5], Data::Bool(true));
    assert_eq!(text(&r1[6]), "销售 😀");
    assert_eq!(when(&r1[7]), 46351.0);
    assert!((when(&r1[8]) - 10.5 / 24.0 - 0.25 / 86400.0).abs() < 1e-9);
    assert_eq!(when(&r1[9]), 46351.4375);
    // 02:30 UTC is 10:30 in Asia/Shanghai, the task's zone.
    assert_eq!(when(&r1[10]), 46351.4375);
    assert_eq!(text(&r1[11]), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    let r2 = &rows[2];
    assert_eq!(text(&r2[2]), "-9223372036854775808");
    assert_eq!(text(&r2[3]), "NaN");
    assert_eq!(num(&r2[4]), -0.0000000001);
    assert_eq!(text(&r2[6]), "=1+1");
    assert_eq!(text(&r2[7]), "1899-12-31");
    let r3 = &rows[3];
    assert_eq!(r3[1], Data::Empty);
    assert_eq!(r3[2], Data::Empty);
    assert_eq!(text(&r3[3]), "Infinity");
    assert_eq!(num(&r3[4]), 0.0);
    assert_eq!(r3[10], Data::Empty);
}

#[test]
fn parameters_are_bound_with_their_types() {
    let Some(url) = pg_url() else { return };
    exec(
        &url,
        "DROP TABLE IF EXISTS pgt_sales;
         CREATE TABLE pgt_sales (day date, at timestamp, at_tz timestamptz, amount numeric(12,2), region text);
         INSERT INTO pgt_sales
           SELECT d::date, d + interval '12 hours', d + interval '12 hours', 1.50, CASE WHEN extract(day FROM d)::int % 2 = 0 THEN 'east' ELSE 'west' END
           FROM generate_series('2026-09-01'::timestamp, '2026-12-31', interval '1 day') AS d;",
    );
    let body = "schedule: '0 6 1 * *'\nsource: pg\nperiod: month\nparams:\n  region: east\n  min: 1\n  factor: 2.0\n  yes: true\nquery: |\n  SELECT count(*) AS n, min(day) AS first_day, max(day) AS last_day, sum(amount) * :factor AS total,\n         :region AS region, :yes AS yes\n  FROM pgt_sales\n  WHERE day >= :period_start_date AND day < :period_end_date\n    AND at >= :period_start AND at < :period_end\n    AND at_tz < :scheduled_at\n    AND region = :region AND amount >= :min\noutput: { format: csv, file_name: sales }\n";
    let p = project(&[("pg_sales", body)]);
    // 2026-11-01 06:00 Asia/Shanghai: October 2026; the even days of October are 15.
    // numeric * float8 is float8 in PostgreSQL, hence `45`, not `45.00`.
    let json = p.run_json(
        "pg_sales",
        &["--at", "2026-11-01T06:00:00+08:00", "--no-notify"],
        0,
    );
    assert_eq!(
        read(&p, &json),
        "n,first_day,last_day,total,region,yes\n15,2026-10-02,2026-10-30,45,east,true\n",
        "{json}"
    );
}

#[test]
fn writes_are_refused_by_the_read_only_transaction() {
    let Some(url) = pg_url() else { return };
    let admin = admin_url(&url);
    exec(
        &url,
        "DROP TABLE IF EXISTS pgt_ro; DROP TABLE IF EXISTS pgt_ro_new; DROP SEQUENCE IF EXISTS pgt_ro_seq;
         CREATE TABLE pgt_ro (id int PRIMARY KEY, v text);
         CREATE SEQUENCE pgt_ro_seq;
         INSERT INTO pgt_ro SELECT g, 'v' || g FROM generate_series(1, 5) g;",
    );
    let writes = [
        ("pg_insert", "INSERT INTO pgt_ro VALUES (100, 'x')"),
        ("pg_update", "UPDATE pgt_ro SET v = 'changed'"),
        ("pg_delete", "DELETE FROM pgt_ro"),
        ("pg_create", "CREATE TABLE pgt_ro_new (id int)"),
        ("pg_select_into", "SELECT * INTO pgt_ro_new FROM pgt_ro"),
        (
            "pg_cte",
            "WITH d AS (DELETE FROM pgt_ro RETURNING *) SELECT * FROM d",
        ),
        ("pg_nextval", "SELECT nextval('pgt_ro_seq') AS n"),
        ("pg_lock", "SELECT * FROM pgt_ro FOR UPDATE"),
        ("pg_truncate", "TRUNCATE pgt_ro"),
        ("pg_drop", "DROP TABLE pgt_ro"),
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
            err.starts_with("datasource `pg`: ") && err.contains("in a read-only transaction"),
            "{name}: {err}"
        );
    }
    assert_eq!(count(&admin, "SELECT count(*) FROM pgt_ro"), 5);
    assert_eq!(
        count(&admin, "SELECT count(*) FROM pgt_ro WHERE v <> 'v' || id"),
        0
    );
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'pgt_ro_new'"
        ),
        0
    );
    assert_eq!(
        count(
            &admin,
            "SELECT CASE WHEN is_called THEN 1 ELSE 0 END FROM pgt_ro_seq"
        ),
        0
    );
}

#[test]
fn a_timeout_stops_the_statement_on_the_server() {
    let Some(url) = pg_url() else { return };
    let admin = admin_url(&url);
    let body = "schedule: '0 6 * * *'\nsource: pg\ntimeout: 2s\nquery: SELECT pg_sleep(600) AS ferry_timeout_marker\noutput: { format: csv, file_name: slow }\n";
    let p = project(&[("pg_slow", body)]);
    let started = Instant::now();
    let json = p.run_json("pg_slow", &["--no-notify"], 1);
    let took = started.elapsed();
    assert_eq!(json["status"], "failed", "{json}");
    let err = json["error"].as_str().unwrap();
    assert!(err.starts_with("timeout"), "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(p.files("exports").iter().all(|f| f.starts_with(".tmp")));
    // The statement is gone from the server too (poll with a deadline). The server's own
    // statement_timeout is 10 s longer than the task's, so only ferry's cancel request can
    // have stopped it this early.
    let lingering = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%ferry_timeout_marker%' AND pid <> pg_backend_pid()";
    let deadline = started + Duration::from_secs(9);
    loop {
        let n = count(&admin, lingering);
        if n == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{n} pg_sleep statement(s) still running on the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn connection_errors_name_the_datasource_and_hide_the_password() {
    let Some(url) = pg_url() else { return };
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
        "datasources:\n  nodb: {{ type: postgres, url: \"postgres://ferry:ferry@{hostport}/no_such_db\" }}\n  badpw: {{ type: postgres, url: \"postgres://ferry:s3cretpw@{hostport}/ferry_test\" }}\n  norole: {{ type: postgres, url: \"postgresql://nobody:s3cretpw@{hostport}/ferry_test\" }}\n  closed: {{ type: postgres, url: \"postgres://ferry:s3cretpw@127.0.0.1:1/ferry_test\", connect_timeout: 3s }}\n"
    );
    p.write(
        "config.yaml",
        &config.replacen("datasources:\n", &sources, 1),
    );
    for ds in ["nodb", "badpw", "norole", "closed"] {
        p.write(
            &format!("tasks/pg_{ds}.yaml"),
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
        err("pg_nodb"),
        format!(
            "datasource `nodb`: cannot connect to postgres://ferry:***@{hostport}/no_such_db: database \"no_such_db\" does not exist"
        )
    );
    // The test server asks for SCRAM passwords on TCP (scripts/test-services.sh); like any
    // server, it does not say whether the role exists.
    assert_eq!(
        err("pg_badpw"),
        format!(
            "datasource `badpw`: cannot connect to postgres://ferry:***@{hostport}/ferry_test: password authentication failed for user \"ferry\""
        )
    );
    assert_eq!(
        err("pg_norole"),
        format!(
            "datasource `norole`: cannot connect to postgresql://nobody:***@{hostport}/ferry_test: password authentication failed for user \"nobody\""
        )
    );
    let closed = err("pg_closed");
    assert!(
        closed.starts_with(
            "datasource `closed`: cannot connect to postgres://ferry:***@127.0.0.1:1/ferry_test: error connecting to server"
        ) && closed.contains("refused"),
        "{closed}"
    );
}

#[test]
fn invalid_datasource_settings_are_reported_without_the_password() {
    // Pure validation: no server needed.
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    let sources = "datasources:\n  a: { type: postgres, url: \"mysql://u:s3cretpw@h/db\" }\n  b: { type: postgres, url: \"postgres://u:s3cretpw@h:notaport/db\" }\n  c: { type: postgres, url: \"postgres://u@h/db\", max_connections: 0, connect_timeout: soon }\n";
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
        "datasources.a.url: expected `postgres://USER:PASSWORD@HOST:PORT/DATABASE`, got `mysql://u:***@h/db`",
        "datasources.b.url: invalid PostgreSQL url `postgres://u:***@h:notaport/db`",
        "datasources.c.max_connections: must be at least 1",
        "datasources.c.connect_timeout:",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn the_sql_gate_refuses_writes_before_they_reach_postgres() {
    let Some(url) = pg_url() else { return };
    let admin = admin_url(&url);
    exec(
        &url,
        "DROP TABLE IF EXISTS pgt_gate; DROP SEQUENCE IF EXISTS pgt_gate_seq;
         CREATE TABLE pgt_gate (id int PRIMARY KEY, v text);
         CREATE SEQUENCE pgt_gate_seq;
         INSERT INTO pgt_gate SELECT g, 'v' || g FROM generate_series(1, 5) g;",
    );
    let hostile = [
        (
            "pg_insert",
            "INSERT INTO pgt_gate VALUES (100, 'x')",
            "found INSERT",
        ),
        (
            "pg_update",
            "UPDATE pgt_gate SET v = 'changed'",
            "found UPDATE",
        ),
        ("pg_delete", "DELETE FROM pgt_gate", "found DELETE"),
        (
            "pg_create",
            "CREATE TABLE pgt_gate_new (id int)",
            "found CREATE TABLE",
        ),
        (
            "pg_select_into",
            "SELECT * INTO pgt_gate_new FROM pgt_gate",
            "SELECT … INTO",
        ),
        (
            "pg_cte",
            "WITH d AS (DELETE FROM pgt_gate RETURNING *) SELECT * FROM d",
            "data-modifying CTE (DELETE)",
        ),
        (
            "pg_nextval",
            "SELECT nextval('pgt_gate_seq') AS n",
            "`nextval`",
        ),
        ("pg_lock", "SELECT * FROM pgt_gate FOR UPDATE", "FOR UPDATE"),
        (
            "pg_multi",
            "SELECT 1; DROP TABLE pgt_gate",
            "found 2 statements",
        ),
        (
            "pg_xml",
            "SELECT query_to_xml('delete from pgt_gate', true, true, '')",
            "`query_to_xml`",
        ),
        (
            "pg_session",
            "SET SESSION default_transaction_read_only = off",
            "found SET",
        ),
        (
            "pg_explain",
            "EXPLAIN ANALYZE DELETE FROM pgt_gate",
            "EXPLAIN ANALYZE",
        ),
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
    assert_eq!(count(&admin, "SELECT count(*) FROM pgt_gate"), 5);
    assert_eq!(
        count(&admin, "SELECT count(*) FROM pgt_gate WHERE v <> 'v' || id"),
        0
    );
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'pgt_gate_new'"
        ),
        0
    );
    assert_eq!(
        count(
            &admin,
            "SELECT CASE WHEN is_called THEN 1 ELSE 0 END FROM pgt_gate_seq"
        ),
        0
    );
}

#[test]
fn the_cost_guard_refuses_expensive_plans_before_they_run() {
    let Some(url) = pg_url() else { return };
    exec(
        &url,
        "DROP TABLE IF EXISTS pgt_cost;
         CREATE TABLE pgt_cost (id int PRIMARY KEY, v text);
         INSERT INTO pgt_cost SELECT g, 'row ' || g FROM generate_series(1, 200000) g;
         ANALYZE pgt_cost;",
    );
    let scan = task(
        "SELECT * FROM pgt_cost a JOIN pgt_cost b ON a.v > b.v",
        "{ format: csv, file_name: scan }",
    );
    let point = "schedule: '0 6 * * *'\nsource: pg\nparams: { wanted: 42 }\nquery: SELECT v FROM pgt_cost WHERE id = :wanted\noutput: { format: csv, file_name: point }\n";
    let p = project_with(
        ", max_cost: 100000",
        &[("pg_scan", &scan), ("pg_point", point)],
    );

    let json = p.run_json("pg_scan", &["--no-notify"], 1);
    assert_eq!(json["status"], "failed", "{json}");
    let err = json["error"].as_str().unwrap();
    assert!(
        err.starts_with("the query was refused by the cost guard: estimated cost "),
        "{err}"
    );
    assert!(
        err.contains("(PostgreSQL planner cost units, about ")
            && err.contains("exceeds max_cost 100,000 of datasource `pg`"),
        "{err}"
    );
    // Nothing was written, and the join never ran.
    assert!(p.files("exports").iter().all(|f| f.starts_with(".tmp")));
    let admin = admin_url(&url);
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%a.v > b.v%' AND query NOT LIKE 'EXPLAIN%' AND pid <> pg_backend_pid()"
        ),
        0
    );

    // A cheap plan (an index lookup with a bound parameter) runs.
    let json = p.run_json("pg_point", &["--no-notify"], 0);
    assert_eq!(json["status"], "succeeded", "{json}");
    assert_eq!(read(&p, &json), "v\nrow 42\n");
}
