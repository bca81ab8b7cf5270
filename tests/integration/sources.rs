//! `ferry sources` and `ferry sources test`: the listing, connection checks with versions,
//! and clear failures without passwords, on PostgreSQL and MariaDB when the test servers
//! are available (`scripts/test-services.sh`; under `CI=true` they must be). Whether the
//! account is read-only: `read_only.rs`.

use crate::support::{Project, describe, stderr, stdout};

/// The `project` fixture with `extra` datasources added before `db`.
fn project(extra: &str) -> Project {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    p.write(
        "config.yaml",
        &config.replacen("datasources:\n", &format!("datasources:\n{extra}"), 1),
    );
    p
}

fn all_output(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// The `host:port` of a test server URL.
fn host_port(url: &str) -> String {
    let after = url.rsplit_once('@').unwrap().1;
    after.split('/').next().unwrap().to_string()
}

#[test]
fn sources_lists_every_datasource_with_its_task_count() {
    let p = project(
        "  pgx: { type: postgres, url: \"postgres://u:s3cretpw@127.0.0.1:1/x\" }\n  spare: { type: sqlite, url: \"sqlite://db/spare.db\" }\n",
    );
    let tasks = p.ferry(&["tasks"]);
    assert_eq!(tasks.status.code(), Some(0), "{}", describe(&tasks));
    let uses_db = stdout(&tasks)
        .lines()
        .skip(1)
        .filter(|l| l.contains("  db  "))
        .count();
    assert!(uses_db > 0);

    let out = p.ferry(&["sources"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    assert!(!all_output(&out).contains("s3cretpw"), "{text}");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec!["NAME", "TYPE", "WHERE", "TASKS"],
            vec!["db", "sqlite", "db/test.db", &uses_db.to_string()],
            vec!["pgx", "postgres", "postgres://u:***@127.0.0.1:1/x", "0"],
            vec!["spare", "sqlite", "db/spare.db", "0"],
        ],
        "{text}"
    );
    // No connection is made by the listing.
    assert!(!p.path().join("db/spare.db").exists());
}

#[test]
fn sources_with_a_broken_config_exits_2() {
    let p = Project::fixture("project");
    p.write("config.yaml", "datasources: [\n");
    for args in [&["sources"][..], &["sources", "test"]] {
        let out = p.ferry(args);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    }
}

#[test]
fn sqlite_test_is_ok_and_read_only() {
    let p = Project::fixture("project");
    let out = p.ferry(&["sources", "test"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("ok   db (sqlite): SQLite 3.") && lines[0].ends_with(" ms"),
        "{text}"
    );
    assert!(lines[0].contains(", connected in "), "{text}");
    assert_eq!(lines[1], "     read-only: ferry's connection can only read");
}

#[test]
fn sources_test_fails_for_a_missing_sqlite_file() {
    let p = project("  gone: { type: sqlite, url: \"sqlite://db/missing.db\" }\n");
    let out = p.ferry(&["sources", "test"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let text = stdout(&out);
    assert!(
        text.contains("\nFAIL gone (sqlite): database file not found: "),
        "{text}"
    );
    assert!(text.starts_with("ok   db (sqlite): "), "{text}");
}

#[test]
fn an_unknown_datasource_exits_2_with_a_hint() {
    let p = Project::fixture("project");
    let out = p.ferry(&["sources", "test", "dbb"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        "error: unknown datasource `dbb` (did you mean `db`?) (known datasources: db)"
    );
    assert_eq!(stdout(&out), "");
}

#[test]
fn postgres_failures_name_the_datasource_and_hide_the_password() {
    let Some(url) = crate::postgres::pg_url() else {
        return;
    };
    let hp = host_port(&url);
    let p = project(&format!(
        "  closed: {{ type: postgres, url: \"postgres://ferry:s3cretpw@127.0.0.1:1/ferry_test\", connect_timeout: 3s }}\n  nodb: {{ type: postgres, url: \"postgres://ferry:ferry@{hp}/no_such_db\", connect_timeout: 5s }}\n  badpw: {{ type: postgres, url: \"postgres://ferry:s3cretpw@{hp}/ferry_test\", connect_timeout: 5s }}\n"
    ));
    let out = p.ferry(&["sources", "test"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let all = all_output(&out);
    assert!(!all.contains("s3cretpw"), "password shown: {all}");
    let text = stdout(&out);
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line: {text}"))
            .to_string()
    };
    let closed = line("FAIL closed (postgres): ");
    assert!(
        closed.contains("cannot connect to postgres://ferry:***@127.0.0.1:1/ferry_test: "),
        "{closed}"
    );
    let nodb = line("FAIL nodb (postgres): ");
    assert!(
        nodb.contains(&format!(
            "cannot connect to postgres://ferry:***@{hp}/no_such_db: "
        )) && nodb.contains("no_such_db\" does not exist"),
        "{nodb}"
    );
    let badpw = line("FAIL badpw (postgres): ");
    assert!(
        badpw.ends_with(&format!(
            "cannot connect to postgres://ferry:***@{hp}/ferry_test: password authentication failed for user \"ferry\""
        )),
        "{badpw}"
    );
    line("ok   db (sqlite): ");
}

#[test]
fn mariadb_bad_password_fails_without_showing_it() {
    let Some(url) = crate::mysql::my_url() else {
        return;
    };
    let hp = host_port(&url);
    let p = project(&format!(
        "  badpw: {{ type: mysql, url: \"mysql://ferry:s3cretpw@{hp}/ferry_test\", connect_timeout: 5s }}\n"
    ));
    let out = p.ferry(&["sources", "test", "badpw"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(!all_output(&out).contains("s3cretpw"), "{}", describe(&out));
    assert_eq!(
        stdout(&out).trim_end(),
        format!(
            "FAIL badpw (mysql): cannot connect to mysql://ferry:***@{hp}/ferry_test: Access denied for user 'ferry'@'127.0.0.1' (using password: YES) (error 1045, SQLSTATE 28000)"
        )
    );
}
