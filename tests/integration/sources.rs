//! `ferry sources` and `ferry sources test`: the listing, connection checks with versions,
//! clear failures without passwords, and the warning when ferry's account can write —
//! on SQLite always, on PostgreSQL and MariaDB when the test servers are available
//! (`scripts/test-services.sh`; under `CI=true` they must be).

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
fn sqlite_test_is_ok_and_warns_about_a_writable_file() {
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
    assert_eq!(
        lines[1],
        "warning: db: this process can write the file db/test.db (ferry opens it read-only anyway; a read-only file or account is safer)"
    );

    // A file this process cannot write: no warning (unless running as root, who can).
    let db = p.path().join("db/test.db");
    let mut perms = std::fs::metadata(&db).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&db, perms).unwrap();
    let root = std::fs::OpenOptions::new().append(true).open(&db).is_ok();
    let out = p.ferry(&["sources", "test", "db"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(stdout(&out).contains("warning"), root, "{}", describe(&out));
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
fn postgres_owner_account_is_warned_and_a_read_only_role_is_not() {
    let Some(url) = crate::postgres::pg_url() else {
        return;
    };
    let admin = crate::postgres::admin_url(&url);
    crate::postgres::exec(
        &admin,
        "DO $$ BEGIN
            IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ferry_ro') THEN
                CREATE ROLE ferry_ro LOGIN PASSWORD 'ro';
            END IF;
         END $$;
         GRANT CONNECT ON DATABASE ferry_test TO ferry_ro;
         GRANT USAGE ON SCHEMA public TO ferry_ro;
         REVOKE CREATE ON SCHEMA public FROM PUBLIC;
         DROP TABLE IF EXISTS pgt_sources_ro;
         CREATE TABLE pgt_sources_ro (id int);
         ALTER TABLE pgt_sources_ro OWNER TO ferry;
         GRANT SELECT ON pgt_sources_ro TO ferry_ro;",
    );
    let ro_url = url.replacen("://ferry:ferry@", "://ferry_ro:ro@", 1);
    assert_ne!(ro_url, url, "the test URL has the ferry account: {url}");
    let p = project(&format!(
        "  pg: {{ type: postgres, url: \"${{FERRY_TEST_PG_URL}}\", connect_timeout: 5s }}\n  pgro: {{ type: postgres, url: \"{ro_url}\", connect_timeout: 5s }}\n"
    ));

    let out = p.ferry(&["sources", "test", "pg"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("ok   pg (postgres): PostgreSQL ")
            && lines[0].contains(", connected in "),
        "{text}"
    );
    assert!(
        lines[1].starts_with("warning: pg: the account can write (")
            && lines[1].ends_with("); give ferry a read-only account"),
        "{text}"
    );
    assert!(
        lines[1].contains("CREATE on schema public") || lines[1].contains("INSERT"),
        "{text}"
    );
    assert!(
        !all_output(&out).contains(":ferry@"),
        "password shown: {text}"
    );

    let out = p.ferry(&["sources", "test", "pgro"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with("ok   pgro (postgres): PostgreSQL "),
        "{text}"
    );
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
fn mariadb_account_with_all_privileges_is_warned_and_a_bad_password_fails() {
    let Some(url) = crate::mysql::my_url() else {
        return;
    };
    let hp = host_port(&url);
    let p = project(&format!(
        "  my: {{ type: mysql, url: \"${{FERRY_TEST_MYSQL_URL}}\", connect_timeout: 5s }}\n  badpw: {{ type: mysql, url: \"mysql://ferry:s3cretpw@{hp}/ferry_test\", connect_timeout: 5s }}\n"
    ));
    let out = p.ferry(&["sources", "test", "my"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("ok   my (mysql): MariaDB ") && lines[0].contains(", connected in "),
        "{text}"
    );
    assert!(
        lines[1].starts_with("warning: my: the account can write (")
            && lines[1].contains("ALL PRIVILEGES on `ferry_test`.*")
            && lines[1].ends_with("); give ferry a read-only account"),
        "{text}"
    );

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
