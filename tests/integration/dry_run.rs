//! `ferry run --dry-run`: the query is prepared by the real database (SQLite, and the
//! PostgreSQL and MariaDB servers of `scripts/test-services.sh`), the parameters, file
//! names and messages are printed, a query that does not prepare is exit code 1 with the
//! database's message, and nothing is written: no run store, no file, no outbox message.

use crate::support::{Project, describe, stderr, stdout};

/// The project's folders and files after a dry run: what a run would have written.
fn assert_nothing_written(p: &Project) {
    for rel in ["data/ferry.db", "exports", "outbox"] {
        assert!(!p.path().join(rel).exists(), "{rel} exists after a dry run");
    }
}

/// A project with `datasource` (a line under `datasources:`) and a task `t` on it that
/// reads `query`.
fn project(datasource: &str, query: &str) -> Project {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    let config = config.replacen(
        "datasources:\n",
        &format!("datasources:\n{datasource}\n"),
        1,
    );
    p.write("config.yaml", &config);
    // The built-in templates (the fixture has its own).
    std::fs::remove_dir_all(p.path().join("templates")).unwrap();
    p.write(
        "tasks/t.yaml",
        &format!(
            "schedule: '0 6 * * MON'\nsource: src\nperiod: week\nquery: \"{query}\"\noutput: {{ format: xlsx }}\nnotify: [box]\n"
        ),
    );
    p
}

/// Dry-runs task `t` at Monday 2026-12-07 06:00 Shanghai time; checks what it prints
/// and that it wrote nothing.
fn dry_run_prints_the_plan_and_writes_nothing(p: &Project, columns: &str) {
    let out = p.ferry(&["run", "t", "--dry-run", "--at", "2026-12-07T06:00:00+08:00"]);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let text = stdout(&out);
    for expected in [
        "dry run of `t`: nothing is written, nothing is sent",
        "as a schedule run at 2026-12-07 06:00:00 (Asia/Shanghai), data for 2026-W49 (week)",
        "  * :period_start_date = 2026-11-30",
        "  * :period_end_date = 2026-12-07",
        "    :run_date = 2026-12-07",
        "    :scheduled_at = 2026-12-06 22:00:00 UTC",
        &format!("  query: ok, {columns}"),
        "  t_2026-W49.xlsx",
        "  `box` to team@example.com (template `report`):",
        "  subject: t for 2026-W49: 0 rows",
        "  | Data for week 2026-W49: 2026-11-30 to 2026-12-06.",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert_nothing_written(p);
}

/// A query that the database refuses to prepare: exit 1, its message, nothing written.
fn a_bad_query_does_not_prepare(p: &Project, database_says: &str) {
    let out = p.ferry(&["run", "t", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("error: task `t`: query does not prepare: ") && err.contains(database_says),
        "{}",
        describe(&out)
    );
    assert_nothing_written(p);
}

#[test]
fn sqlite_dry_run_prepares_the_query_and_prints_params_files_and_messages() {
    let p = project(
        "  src: { type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }",
        "SELECT day, amount FROM sales WHERE day >= :period_start_date AND day < :period_end_date",
    );
    dry_run_prints_the_plan_and_writes_nothing(&p, "2 columns: day, amount");
}

#[test]
fn sqlite_dry_run_of_a_bad_query_exits_1_with_the_database_message() {
    let p = project(
        "  src: { type: sqlite, url: \"sqlite://db/test.db\", seed_sql: seed.sql }",
        "SELECT nope FROM no_such_table WHERE day >= :period_start_date",
    );
    a_bad_query_does_not_prepare(&p, "no such table: no_such_table");
}

#[test]
fn postgres_dry_run_prepares_without_running() {
    let Some(url) = crate::postgres::pg_url() else {
        return;
    };
    // The table's only row would fail the query if it ran (division by zero): preparing
    // it must not.
    crate::postgres::exec(
        &url,
        "DROP TABLE IF EXISTS pgt_dry_run; CREATE TABLE pgt_dry_run (day date, amount int);
         INSERT INTO pgt_dry_run VALUES ('2026-12-01', 0);",
    );
    let src = "  src: { type: postgres, url: \"${FERRY_TEST_PG_URL}\", connect_timeout: 5s }";
    let p = project(
        src,
        "SELECT day, 1 / amount AS inverse FROM pgt_dry_run WHERE day >= :period_start_date AND day < :period_end_date",
    );
    dry_run_prints_the_plan_and_writes_nothing(&p, "2 columns: day, inverse");
    let bad = project(
        src,
        "SELECT nope FROM pgt_dry_run WHERE day >= :period_start_date",
    );
    a_bad_query_does_not_prepare(&bad, "column \"nope\" does not exist");
}

#[test]
fn mariadb_dry_run_prepares_without_running() {
    let Some(url) = crate::mysql::my_url() else {
        return;
    };
    crate::mysql::exec(
        &url,
        "DROP TABLE IF EXISTS myt_dry_run;\nCREATE TABLE myt_dry_run (day date, amount int);\nINSERT INTO myt_dry_run VALUES ('2026-12-01', 0);\n",
    );
    let src = "  src: { type: mysql, url: \"${FERRY_TEST_MYSQL_URL}\", connect_timeout: 5s }";
    let p = project(
        src,
        "SELECT day, amount FROM myt_dry_run WHERE day >= :period_start_date AND day < :period_end_date",
    );
    dry_run_prints_the_plan_and_writes_nothing(&p, "2 columns: day, amount");
    let bad = project(
        src,
        "SELECT nope FROM myt_dry_run WHERE day >= :period_start_date",
    );
    a_bad_query_does_not_prepare(&bad, "Unknown column 'nope'");
}
