//! Cancellation reaches the database: when `ferry serve` shuts down, or a `concurrency:
//! replace` fire cancels the run in flight, the statement stops on the PostgreSQL and
//! MariaDB servers (cancel request / `KILL QUERY`), not only in ferry. The statements sleep
//! for ten minutes and the servers' own statement timeouts are longer than the tests, so
//! only ferry's cancel can have stopped them.

use std::time::{Duration, Instant};

use crate::support::{Project, history, only_task, serve, terminate, wait_logged};

/// A server under test: its datasource line, a sleeping query, and a count of the
/// statements carrying a marker that are still running there.
struct Server {
    datasource: String,
    sleep_sql: &'static str,
    running: Box<dyn Fn(&str) -> i64>,
}

fn postgres() -> Option<Server> {
    let url = crate::postgres::pg_url()?;
    let admin = crate::postgres::admin_url(&url);
    Some(Server {
        datasource: "  db2: { type: postgres, url: \"${FERRY_TEST_PG_URL}\" }\n".into(),
        sleep_sql: "SELECT pg_sleep(600) AS MARKER",
        running: Box::new(move |marker| {
            crate::postgres::count(
                &admin,
                &format!(
                    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
                ),
            )
        }),
    })
}

fn mariadb() -> Option<Server> {
    let url = crate::mysql::my_url()?;
    Some(Server {
        datasource: "  db2: { type: mysql, url: \"${FERRY_TEST_MYSQL_URL}\" }\n".into(),
        sleep_sql: "SELECT SLEEP(600) AS MARKER",
        running: Box::new(move |marker| {
            crate::mysql::count(
                &url,
                &format!(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%{marker}%' AND ID <> CONNECTION_ID()"
                ),
            )
        }),
    })
}

fn project(server: &Server, task: &str, marker: &str, extra: &str) -> Project {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    let config = config.replacen(
        "datasources:\n",
        &format!("datasources:\n{}", server.datasource),
        1,
    );
    p.write(
        "config.yaml",
        &format!("{config}scheduler: {{ drain_timeout: 1s }}\n"),
    );
    only_task(
        &p,
        task,
        &format!(
            "schedule: \"{}\"\nsource: db2\ntimeout: 30m\n{extra}query: {}\noutput: {{ format: csv }}\n",
            "* * * * * *",
            server.sleep_sql.replace("MARKER", marker)
        ),
    );
    p
}

/// Waits until no statement with `marker` runs on the server.
fn wait_stopped(server: &Server, marker: &str, limit: Duration) {
    let start = Instant::now();
    loop {
        let n = (server.running)(marker);
        if n == 0 {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{n} `{marker}` statement(s) still running on the server {:?} after ferry stopped",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn shutdown_stops_the_statement(server: Server, marker: &str) {
    let p = project(&server, "sleepy", marker, "");
    let mut a = serve(&p, "serve.log");
    wait_logged(
        &p,
        "serve.log",
        Duration::from_secs(60),
        "the statement to start",
        || (server.running)(marker) > 0,
    );
    assert_eq!(terminate(&mut a), Some(0));
    let runs = history(&p, "sleepy");
    assert!(
        runs.iter().any(|r| r["status"] == "cancelled"
            && r["error"]
                .as_str()
                .unwrap_or("")
                .contains("ferry is shutting down")),
        "{runs:#?}"
    );
    wait_stopped(&server, marker, Duration::from_secs(5));
}

fn replace_stops_the_replaced_statement(server: Server, marker: &str) {
    let p = project(&server, "replacing", marker, "concurrency: replace\n");
    let mut a = serve(&p, "serve.log");
    let replaced = |p: &Project| {
        history(p, "replacing")
            .iter()
            .filter(|r| {
                r["status"] == "cancelled"
                    && r["error"]
                        .as_str()
                        .unwrap_or("")
                        .contains("(concurrency: replace)")
            })
            .count()
    };
    // Fires come every second; each replaces the one before.
    wait_logged(
        &p,
        "serve.log",
        Duration::from_secs(60),
        "three replaced runs",
        || replaced(&p) >= 3,
    );
    // Replaced statements do not pile up on the server: at most the current one and one
    // being cancelled, never the three or more that were started. Watched over two more
    // replacements.
    let seen = replaced(&p);
    let mut most = 0;
    wait_logged(
        &p,
        "serve.log",
        Duration::from_secs(60),
        "two more replaced runs",
        || {
            most = most.max((server.running)(marker));
            replaced(&p) >= seen + 2
        },
    );
    assert!(most <= 2, "{most} statements running at once");
    assert_eq!(terminate(&mut a), Some(0));
    wait_stopped(&server, marker, Duration::from_secs(5));
}

#[test]
fn postgres_statement_stops_when_serve_shuts_down() {
    let Some(server) = postgres() else { return };
    shutdown_stops_the_statement(server, "ferry_pg_shutdown_marker");
}

#[test]
fn postgres_statement_stops_when_its_run_is_replaced() {
    let Some(server) = postgres() else { return };
    replace_stops_the_replaced_statement(server, "ferry_pg_replace_marker");
}

#[test]
fn mariadb_statement_stops_when_serve_shuts_down() {
    let Some(server) = mariadb() else { return };
    shutdown_stops_the_statement(server, "ferry_my_shutdown_marker");
}

#[test]
fn mariadb_statement_stops_when_its_run_is_replaced() {
    let Some(server) = mariadb() else { return };
    replace_stops_the_replaced_statement(server, "ferry_my_replace_marker");
}
