//! The kind of a source error ([`ferry::source::ErrorKind`]) against the real servers of
//! `scripts/test-services.sh`: a wrong password is `Auth`, a closed port `Connect`, the
//! server's statement timeout `Timeout`, a cancelled run `Cancelled`, a bad statement
//! `Query`; the messages stay the ones people read.

use std::time::{Duration, Instant};

use ferry::config::{DbTls, Query, Secret, ServerDatasource};
use ferry::params::RunParams;
use ferry::source::mysql::MysqlSource;
use ferry::source::postgres::PostgresSource;
use ferry::source::{ErrorKind, QueryRequest, Source, SourceError};
use tokio_util::sync::CancellationToken;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Cancels `cancel` once `running` (how many of the statement run on the server) says
/// the statement is under way, so the cancel lands mid-statement, not before it.
fn cancel_when_running(
    cancel: CancellationToken,
    running: impl Fn() -> i64 + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        crate::support::wait_until(Duration::from_secs(30), "the statement to run", || {
            running() > 0
        });
        cancel.cancel();
    })
}

/// `url` with its password replaced.
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user_pw, host) = rest.split_once('@').unwrap();
    let user = user_pw.split(':').next().unwrap();
    format!("{scheme}://{user}:{password}@{host}")
}

/// `url` pointed at port 1 on loopback, where nothing listens.
fn closed_port(url: &str) -> String {
    let (head, rest) = url.split_once('@').unwrap();
    let db = rest.split_once('/').unwrap().1;
    format!("{head}@127.0.0.1:1/{db}")
}

fn pg(url: &str) -> PostgresSource {
    PostgresSource::new("pg", &server(url, "postgres://***")).unwrap()
}

fn my(url: &str) -> MysqlSource {
    MysqlSource::new("my", &server(url, "mysql://***")).unwrap()
}

/// A server datasource at `url`, without TLS, at most 2 connections.
fn server(url: &str, shown_url: &str) -> ServerDatasource {
    ServerDatasource {
        url: Secret::new(url),
        shown_url: shown_url.to_string(),
        max_connections: 2,
        connect_timeout: Duration::from_secs(5),
        tls: DbTls::Disable,
        ca_file: None,
    }
}

/// Runs `sql` to its end; the error it ends with, if any.
async fn run(
    source: &dyn Source,
    sql: &str,
    timeout: Duration,
    cancel: CancellationToken,
) -> Result<u64, SourceError> {
    let params = RunParams::default();
    let query = Query::Sql { text: sql.into() };
    let mut stream = source
        .query(QueryRequest {
            query: &query,
            params: &params,
            chunk_rows: 100,
            timeout,
            cancel,
        })
        .await?;
    let mut rows = 0;
    while let Some(chunk) = stream.chunks.recv().await {
        rows += chunk?.len() as u64;
    }
    Ok(rows)
}

/// What every server source reports the same way: a wrong password is `Auth` (its message
/// holding `auth_text`, its cause kept), a closed port `Connect`, an unknown table `Query`.
/// Returns the source on `url` for the backend's own cases.
async fn common_kinds<S: Source>(open: fn(&str) -> S, url: &str, auth_text: &str) -> S {
    let e = open(&with_password(url, "s3cretpw"))
        .healthcheck()
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Auth, "{e}");
    assert!(e.message.contains(auth_text), "{e}");
    assert!(std::error::Error::source(&e).is_some(), "the cause is kept");

    let e = open(&closed_port(url)).healthcheck().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Connect, "{e}");
    assert!(e.message.starts_with("cannot connect to "), "{e}");

    let source = open(url);
    let e = run(
        &source,
        "SELECT * FROM no_such_table_for_kinds",
        Duration::from_secs(60),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Query, "{e}");
    source
}

/// Runs `sql` and cancels the run once `running` sees the statement on the server: the
/// error is `Cancelled`.
async fn cancelled_while_running(
    source: &dyn Source,
    sql: &str,
    running: impl Fn() -> i64 + Send + 'static,
) -> SourceError {
    let cancel = CancellationToken::new();
    let stop = cancel_when_running(cancel.clone(), running);
    let e = run(source, sql, Duration::from_secs(60), cancel)
        .await
        .unwrap_err();
    stop.await.unwrap();
    assert_eq!(e.kind, ErrorKind::Cancelled, "{e}");
    e
}

#[test]
fn postgres_errors_have_kinds() {
    let Some(url) = crate::postgres::pg_url() else {
        return;
    };
    runtime().block_on(async {
        let source = common_kinds(pg, &url, "password authentication failed").await;

        // A task timeout of 0 leaves only the server's margin (10 s) as statement_timeout.
        let started = Instant::now();
        let e = run(
            &source,
            "SELECT pg_sleep(60) AS slow",
            Duration::ZERO,
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
        assert!(e.message.contains("statement timeout"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(40));

        let admin = crate::postgres::admin_url(&url);
        let e = cancelled_while_running(&source, "SELECT pg_sleep(60) AS ferry_cancel_marker", move || {
            crate::postgres::count(
                &admin,
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%AS ferry_cancel_marker%' AND pid <> pg_backend_pid()",
            )
        })
        .await;
        assert!(e.message.contains("ferry cancelled the statement"), "{e}");
    });
}

#[test]
fn mysql_errors_have_kinds() {
    let Some(url) = crate::mysql::my_url() else {
        return;
    };
    runtime().block_on(async {
        let source = common_kinds(my, &url, "(error 1045, SQLSTATE 28000)").await;

        // SLEEP returns 1 when killed; a long scan of a cross join fails with 1317.
        let url = url.clone();
        cancelled_while_running(
            &source,
            "SELECT COUNT(*) AS ferry_cancel_marker FROM information_schema.COLUMNS a, information_schema.COLUMNS b, information_schema.COLUMNS c",
            move || {
                crate::mysql::count(
                    &url,
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%AS ferry_cancel_marker%' AND ID <> CONNECTION_ID()",
                )
            },
        )
        .await;
    });
}
