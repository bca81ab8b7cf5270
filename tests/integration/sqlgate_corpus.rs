//! The SQL gate's bypass corpus (issue 12) against real servers, through **superuser**
//! accounts (`FERRY_TEST_PG_SUPER_URL`, `FERRY_TEST_MYSQL_SUPER_URL` from
//! `scripts/test-services.sh`), so that nothing but the gate stands in the way.
//!
//! Each entry is a query with a lasting effect outside the transaction. For each:
//! 1. where it is safe, the query is first run directly as the superuser against a
//!    harmless target (a slot, file, sequence or connection of the test's own) and its
//!    effect is observed, proving the entry is a real attack on this server, then undone;
//! 2. as a ferry task on a datasource with the superuser's URL, `ferry validate` and
//!    `ferry run` refuse it with the entry's reason (exit 2);
//! 3. afterwards the effect is absent: no replication slot, no file in the servers' file
//!    folder (`FERRY_TEST_DB_FILES`), the victim connection still alive, statistics not
//!    reset, sequences not advanced, no export written.
//!
//! Everything happens in a database of its own (`ferry_sqlgate`), so resetting its
//! statistics in a proof does not disturb tests running in parallel. Under `CI=true` a
//! missing server or variable fails the tests; elsewhere they print a note and pass.

use std::path::{Path, PathBuf};

use mysql_async::prelude::Queryable;

use crate::support::{Project, describe, stderr};

/// The superuser URL in `var`, once the service's own URL is known to be set (`base`);
/// `None` (with a note) outside CI when it is missing.
fn super_url(base: Option<String>, var: &str) -> Option<String> {
    base?;
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            crate::support::skip(
                "a database superuser account",
                &format!("{var} is not set (run the tests with scripts/test-services.sh)"),
            );
            None
        }
    }
}

/// The folder both servers may write files into.
fn files_dir() -> PathBuf {
    match std::env::var("FERRY_TEST_DB_FILES") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => panic!("FERRY_TEST_DB_FILES is not set (scripts/test-services.sh sets it)"),
    }
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    format!("{base}/{db}")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// One corpus entry: its task name, the query (built for a target name or path), and
/// a part of the reason the gate must give.
struct Entry {
    name: &'static str,
    sql: String,
    why: &'static str,
}

/// A project whose datasource `source` (`type`, URL variable) holds the entries' tasks.
fn project(source: &str, kind: &str, url: &str, entries: &[&Entry]) -> Project {
    let p = Project::fixture("project");
    let config = std::fs::read_to_string(p.path().join("config.yaml")).unwrap();
    let config = config.replacen(
        "datasources:\n",
        &format!(
            "datasources:\n  {source}: {{ type: {kind}, url: \"{url}\", connect_timeout: 5s }}\n"
        ),
        1,
    );
    p.write("config.yaml", &config);
    for e in entries {
        let body = format!(
            "schedule: '0 6 * * *'\nsource: {source}\nquery: |\n  {}\noutput: {{ format: csv }}\n",
            e.sql.replace('\n', "\n  ")
        );
        p.write(&format!("tasks/{}.yaml", e.name), &body);
    }
    p
}

/// `ferry validate` names every entry with its reason; `ferry run` of each, alone in a
/// project, refuses it before connecting; no export is written.
fn assert_gate_refuses(source: &str, kind: &str, url: &str, entries: &[Entry]) {
    let all: Vec<&Entry> = entries.iter().collect();
    let p = project(source, kind, url, &all);
    let out = p.ferry(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    for e in entries {
        let line = err
            .lines()
            .find(|l| l.contains(&format!("tasks/{}.yaml:", e.name)))
            .unwrap_or_else(|| panic!("{}: not refused by validate:\n{err}", e.name));
        assert!(
            line.contains(": query: refused: ") && line.contains(e.why),
            "{}: {line}",
            e.name
        );
    }
    for e in entries {
        let p = project(source, kind, url, &[e]);
        let out = p.ferry(&["run", e.name, "--no-notify"]);
        assert_eq!(out.status.code(), Some(2), "{}: {}", e.name, describe(&out));
        assert!(
            stderr(&out).contains(e.why),
            "{}: {}",
            e.name,
            describe(&out)
        );
        assert!(
            p.files("exports").is_empty(),
            "{}: {:?}",
            e.name,
            p.files("exports")
        );
    }
}

// ------------------------------------------------------------------------- PostgreSQL

async fn pg_client(url: &str, app: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = url.parse().unwrap();
    config.application_name(app);
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test server: {e}"));
    tokio::spawn(conn);
    client
}

/// The first column of the first row, as PostgreSQL's text.
async fn pg_text(c: &tokio_postgres::Client, sql: &str) -> Option<String> {
    let rows = c
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{e}: {sql}"));
    rows.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(String::from)),
        _ => None,
    })?
}

async fn pg_slot_exists(c: &tokio_postgres::Client, slot: &str) -> bool {
    pg_text(
        c,
        &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    )
    .await
    .as_deref()
        == Some("1")
}

/// When this database's statistics were last reset.
const STATS_RESET: &str = "SELECT coalesce(stats_reset::text, 'never') FROM pg_stat_database WHERE datname = current_database()";

fn pg_entries(files: &Path, lo: &str) -> Vec<Entry> {
    let f = |name: &str| files.join(name).display().to_string();
    vec![
        Entry {
            name: "pg_terminate_unicode",
            sql: r#"SELECT U&"pg\005fterminate\005fbackend"(pid) FROM pg_stat_activity WHERE application_name = 'sqlgate_victim_gate'"#.into(),
            why: "`pg_terminate_backend` signals or controls server processes",
        },
        Entry {
            name: "pg_lo_export_unicode",
            sql: format!(r#"SELECT U&"lo\005fexport"({lo}, '{}')"#, f("gate_lo.txt")),
            why: "`lo_export` creates, changes or exports large objects",
        },
        Entry {
            name: "pg_read_file_unicode",
            sql: format!(r#"SELECT U&"pg!005fread!005ffile" UESCAPE '!' ('{}')"#, f("secret.txt")),
            why: "`pg_read_file` reads, lists or writes files",
        },
        Entry {
            name: "pg_create_slot",
            sql: "SELECT pg_create_physical_replication_slot('sqlgate_gate_slot', true)".into(),
            why: "`pg_create_physical_replication_slot` changes replication state",
        },
        Entry {
            name: "pg_create_slot_unicode",
            sql: r#"SELECT pg_catalog.U&"pg\005fcreate\005fphysical\005freplication\005fslot"('sqlgate_gate_slot', true)"#.into(),
            why: "`pg_create_physical_replication_slot` changes replication state",
        },
        Entry {
            name: "pg_drop_slot",
            sql: "SELECT pg_drop_replication_slot('sqlgate_keep_slot')".into(),
            why: "`pg_drop_replication_slot` changes replication state",
        },
        Entry {
            name: "pg_stat_reset",
            sql: "SELECT pg_stat_reset()".into(),
            why: "`pg_stat_reset` resets or rewrites the server's statistics",
        },
        Entry {
            name: "pg_try_advisory_lock",
            sql: "SELECT pg_try_advisory_lock(424242)".into(),
            why: "`pg_try_advisory_lock` takes or releases a lock",
        },
        Entry {
            name: "pg_nextval",
            sql: "SELECT nextval('sqlgate_seq')".into(),
            why: "`nextval` advances or sets a sequence",
        },
        Entry {
            name: "pg_set_config",
            sql: "SELECT set_config('statement_timeout', '0', false)".into(),
            why: "`set_config` changes a server setting",
        },
    ]
}

#[test]
fn postgres_bypasses_are_refused_and_leave_no_trace() {
    let Some(url) = super_url(crate::postgres::pg_url(), "FERRY_TEST_PG_SUPER_URL") else {
        return;
    };
    let files = files_dir();
    let rt = runtime();
    let db = with_database(&url, "ferry_sqlgate");
    let lo = rt.block_on(async {
        let admin = pg_client(&url, "sqlgate_setup").await;
        if pg_text(
            &admin,
            "SELECT count(*) FROM pg_database WHERE datname = 'ferry_sqlgate'",
        )
        .await
        .as_deref()
            == Some("0")
        {
            admin
                .batch_execute("CREATE DATABASE ferry_sqlgate")
                .await
                .unwrap();
        }
        let c = pg_client(&db, "sqlgate_setup").await;
        c.batch_execute(
            "DROP SEQUENCE IF EXISTS sqlgate_seq; CREATE SEQUENCE sqlgate_seq;
             DROP SEQUENCE IF EXISTS sqlgate_proof_seq; CREATE SEQUENCE sqlgate_proof_seq;",
        )
        .await
        .unwrap();
        for slot in [
            "sqlgate_gate_slot",
            "sqlgate_keep_slot",
            "sqlgate_proof_slot",
        ] {
            if pg_slot_exists(&c, slot).await {
                pg_text(&c, &format!("SELECT pg_drop_replication_slot('{slot}')")).await;
            }
        }
        pg_text(
            &c,
            "SELECT pg_create_physical_replication_slot('sqlgate_keep_slot')",
        )
        .await;
        std::fs::write(files.join("secret.txt"), "the server's secret\n").unwrap();
        pg_text(&c, "SELECT lo_from_bytea(0, 'large object')")
            .await
            .unwrap()
    });
    let entries = pg_entries(&files, &lo);

    // 1. Proof, as the superuser on the test's own targets: these are real attacks.
    rt.block_on(async {
        let c = pg_client(&db, "sqlgate_proof").await;
        let victim = pg_client(&db, "sqlgate_victim_proof").await;
        let sql = entries[0].sql.replace("sqlgate_victim_gate", "sqlgate_victim_proof");
        assert_eq!(pg_text(&c, &sql).await.as_deref(), Some("t"), "{sql}");
        assert!(victim.simple_query("SELECT 1").await.is_err(), "the victim survived");
        let proof_file = files.join("proof_lo.txt");
        let sql = entries[1].sql.replace("gate_lo.txt", "proof_lo.txt");
        pg_text(&c, &sql).await;
        assert_eq!(std::fs::read_to_string(&proof_file).unwrap(), "large object");
        std::fs::remove_file(&proof_file).unwrap();
        assert_eq!(
            pg_text(&c, &entries[2].sql).await.as_deref(),
            Some("the server's secret\n")
        );
        for e in &entries[3..5] {
            let sql = e.sql.replace("sqlgate_gate_slot", "sqlgate_proof_slot");
            pg_text(&c, &sql).await;
            assert!(pg_slot_exists(&c, "sqlgate_proof_slot").await, "{sql}");
            pg_text(&c, "SELECT pg_drop_replication_slot('sqlgate_proof_slot')").await;
        }
        let sql = entries[8].sql.replace("sqlgate_seq", "sqlgate_proof_seq");
        assert_eq!(pg_text(&c, &sql).await.as_deref(), Some("1"));
        // pg_stat_reset resets this database's counters (a database of the test's own).
        let before = pg_text(&c, STATS_RESET).await;
        pg_text(&c, &entries[6].sql).await;
        assert_ne!(pg_text(&c, STATS_RESET).await, before, "statistics were not reset");
        assert_eq!(pg_text(&c, &entries[7].sql).await.as_deref(), Some("t"));
        assert_eq!(
            pg_text(
                &c,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242 AND pid = pg_backend_pid()"
            )
            .await
            .as_deref(),
            Some("1")
        );
    });

    // 2. The gate refuses every entry at validate and at run, with the superuser's URL.
    let stats_before = rt.block_on(async {
        let c = pg_client(&db, "sqlgate_check").await;
        pg_text(&c, STATS_RESET).await
    });
    let victim = rt.block_on(pg_client(&db, "sqlgate_victim_gate"));
    assert_gate_refuses("pg", "postgres", &db, &entries);

    // 3. Nothing happened.
    rt.block_on(async {
        let c = pg_client(&db, "sqlgate_check").await;
        assert_eq!(
            victim
                .simple_query("SELECT 1")
                .await
                .map(|_| ())
                .err()
                .map(|e| e.to_string()),
            None,
            "the victim connection was terminated"
        );
        assert!(
            !files.join("gate_lo.txt").exists(),
            "lo_export wrote its file"
        );
        assert!(
            !pg_slot_exists(&c, "sqlgate_gate_slot").await,
            "a slot was created"
        );
        assert!(
            pg_slot_exists(&c, "sqlgate_keep_slot").await,
            "a slot was dropped"
        );
        assert_eq!(
            pg_text(&c, STATS_RESET).await,
            stats_before,
            "statistics were reset"
        );
        assert_eq!(
            pg_text(
                &c,
                "SELECT last_value::text || ' ' || is_called::text FROM sqlgate_seq"
            )
            .await
            .as_deref(),
            Some("1 false"),
            "the sequence was advanced"
        );
        assert_eq!(
            pg_text(
                &c,
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424242"
            )
            .await
            .as_deref(),
            Some("0")
        );
        pg_text(&c, "SELECT pg_drop_replication_slot('sqlgate_keep_slot')").await;
        pg_text(&c, &format!("SELECT lo_unlink({lo})")).await;
    });
}

// ------------------------------------------------------------------------ MariaDB

async fn my_conn(url: &str) -> mysql_async::Conn {
    mysql_async::Conn::from_url(url)
        .await
        .unwrap_or_else(|e| panic!("connect to the test server: {e}"))
}

fn my_entries(files: &Path) -> Vec<Entry> {
    let f = |name: &str| files.join(name).display().to_string();
    vec![
        Entry {
            name: "my_outfile_m",
            sql: format!(
                "SELECT id FROM sqlgate_t /*M! INTO OUTFILE '{}' */",
                f("gate_m.txt")
            ),
            why: "executable comment (/*M!…*/)",
        },
        Entry {
            name: "my_outfile_m_version",
            sql: format!(
                "SELECT id FROM sqlgate_t /*M!100100 INTO OUTFILE '{}' */",
                f("gate_mv.txt")
            ),
            why: "executable comment (/*M!NNNNNN …*/)",
        },
        Entry {
            name: "my_outfile_bang_version",
            sql: format!(
                "SELECT id FROM sqlgate_t /*!50100 INTO OUTFILE '{}' */",
                f("gate_bv.txt")
            ),
            why: "executable comment (/*!NNNNN …*/)",
        },
        Entry {
            name: "my_dumpfile_m",
            sql: format!(
                "SELECT id FROM sqlgate_t LIMIT 1 /*M! INTO DUMPFILE '{}' */",
                f("gate_dump.bin")
            ),
            why: "executable comment (/*M!…*/)",
        },
        Entry {
            name: "my_load_file_m",
            sql: format!(
                "SELECT /*M! LOAD_FILE('{}') AS */ id FROM sqlgate_t",
                f("secret.txt")
            ),
            why: "executable comment (/*M!…*/)",
        },
        Entry {
            name: "my_get_lock_m",
            sql: "SELECT /*M! GET_LOCK('sqlgate_gate', 0) AS */ id FROM sqlgate_t".into(),
            why: "executable comment (/*M!…*/)",
        },
        Entry {
            name: "my_set_statement_m",
            sql: "/*M! SET STATEMENT max_statement_time=0 FOR */ SELECT SLEEP(0.3) AS s".into(),
            why: "executable comment (/*M!…*/)",
        },
        Entry {
            name: "my_hint",
            sql: "SELECT /*+ MAX_EXECUTION_TIME(0) */ id FROM sqlgate_t".into(),
            why: "optimizer hint",
        },
        Entry {
            name: "my_nextval",
            sql: "SELECT NEXTVAL(sqlgate_seq) AS n".into(),
            why: "`nextval` advances or sets a sequence",
        },
        Entry {
            name: "my_get_lock",
            sql: "SELECT GET_LOCK('sqlgate_gate', 0) AS l".into(),
            why: "`get_lock` takes or releases a lock",
        },
        Entry {
            name: "my_load_file",
            sql: format!("SELECT LOAD_FILE('{}') AS f", f("secret.txt")),
            why: "`load_file` reads, lists or writes files",
        },
        // `--` and a no-break space is not a comment for MariaDB (two minus signs and a
        // column named by the no-break space); sqlparser alone took it for one.
        Entry {
            name: "my_dash_nbsp",
            sql: format!(
                "SELECT 1 --\u{a0}, LOAD_FILE('{}') AS f\nFROM (SELECT 1 AS `\u{a0}`) AS t",
                f("secret.txt")
            ),
            why: "`load_file` reads, lists or writes files",
        },
    ]
}

#[test]
fn mariadb_bypasses_are_refused_and_leave_no_trace() {
    let Some(url) = super_url(crate::mysql::my_url(), "FERRY_TEST_MYSQL_SUPER_URL") else {
        return;
    };
    let files = files_dir();
    let rt = runtime();
    let db = with_database(&url, "ferry_sqlgate");
    let entries = my_entries(&files);
    let seq_before: i64 = rt.block_on(async {
        let mut admin = my_conn(&url).await;
        admin
            .query_drop("CREATE DATABASE IF NOT EXISTS ferry_sqlgate")
            .await
            .unwrap();
        let mut c = my_conn(&db).await;
        for stmt in [
            "DROP TABLE IF EXISTS sqlgate_t",
            "CREATE TABLE sqlgate_t (id INT PRIMARY KEY)",
            "INSERT INTO sqlgate_t VALUES (1), (2), (3)",
            "DROP SEQUENCE IF EXISTS sqlgate_seq",
            "CREATE SEQUENCE sqlgate_seq NOCACHE",
            "DROP SEQUENCE IF EXISTS sqlgate_proof_seq",
            "CREATE SEQUENCE sqlgate_proof_seq NOCACHE",
        ] {
            c.query_drop(stmt)
                .await
                .unwrap_or_else(|e| panic!("{e}: {stmt}"));
        }
        std::fs::write(files.join("secret.txt"), "the server's secret\n").unwrap();
        c.query_first("SELECT next_not_cached_value FROM sqlgate_seq")
            .await
            .unwrap()
            .unwrap()
    });

    // 1. Proof, as the superuser: MariaDB runs what is inside the comments.
    rt.block_on(async {
        let mut c = my_conn(&db).await;
        for (i, file) in [
            (0, "gate_m.txt"),
            (1, "gate_mv.txt"),
            (2, "gate_bv.txt"),
            (3, "gate_dump.bin"),
        ] {
            let proof = format!("proof_{file}");
            let sql = entries[i].sql.replace(file, &proof);
            c.query_drop(&sql)
                .await
                .unwrap_or_else(|e| panic!("{e}: {sql}"));
            let path = files.join(&proof);
            assert!(path.exists(), "{sql} wrote no file");
            std::fs::remove_file(path).unwrap();
        }
        let got: Vec<Option<String>> = c.query(&entries[4].sql).await.unwrap();
        assert_eq!(got[0].as_deref(), Some("the server's secret\n"));
        // MariaDB computes 1 - -1 and reads the file.
        let got: Vec<(i64, Option<String>)> = c.query(&entries[11].sql).await.unwrap();
        assert_eq!(got, vec![(2, Some("the server's secret\n".to_string()))]);
        let got: Option<i64> = c.query_first(&entries[5].sql).await.unwrap();
        assert_eq!(got, Some(1), "GET_LOCK inside /*M! */ took the lock");
        c.query_drop("DO RELEASE_LOCK('sqlgate_gate')")
            .await
            .unwrap();
        // The statement's own timeout is switched off: SLEEP(0.3) outlives a 0.1 s limit
        // that stops it without the comment.
        c.query_drop("SET SESSION max_statement_time = 0.1")
            .await
            .unwrap();
        let plain: Result<Option<i64>, _> = c.query_first("SELECT SLEEP(0.3)").await;
        assert!(
            !matches!(plain, Ok(Some(0))),
            "the 0.1 s limit did not stop SLEEP(0.3): {plain:?}"
        );
        let slept: Option<i64> = c.query_first(&entries[6].sql).await.unwrap();
        assert_eq!(slept, Some(0), "SLEEP was not interrupted");
        let sql = entries[8].sql.replace("sqlgate_seq", "sqlgate_proof_seq");
        let n: Option<i64> = c.query_first(&sql).await.unwrap();
        assert_eq!(n, Some(1));
        c.disconnect().await.unwrap();
    });

    // 2. The gate refuses every entry at validate and at run, with the superuser's URL.
    assert_gate_refuses("my", "mysql", &db, &entries);

    // 3. Nothing happened.
    rt.block_on(async {
        let mut c = my_conn(&db).await;
        for file in ["gate_m.txt", "gate_mv.txt", "gate_bv.txt", "gate_dump.bin"] {
            assert!(!files.join(file).exists(), "{file} was written");
        }
        let free: Option<i64> = c
            .query_first("SELECT IS_FREE_LOCK('sqlgate_gate')")
            .await
            .unwrap();
        assert_eq!(free, Some(1), "the named lock is held");
        let seq: Option<i64> = c
            .query_first("SELECT next_not_cached_value FROM sqlgate_seq")
            .await
            .unwrap();
        assert_eq!(seq, Some(seq_before), "the sequence was advanced");
        let rows: Option<i64> = c
            .query_first("SELECT count(*) FROM sqlgate_t")
            .await
            .unwrap();
        assert_eq!(rows, Some(3));
        c.disconnect().await.unwrap();
    });
}

/// Issue 12 item 4 at the binary: a 70,000-term `OR` chain (and long `AND`, `+` and
/// `UNION ALL` chains, each under the 1 MiB limit of query files so that the gate reads it) in a task makes `ferry validate` and `ferry run` refuse it with a
/// clear message and exit 2, not abort on a stack overflow. No server is needed: the
/// gate refuses before connecting.
#[test]
fn deep_queries_fail_cleanly_at_validate_and_run() {
    let terms = |n: usize, f: &dyn Fn(usize) -> String, sep: &str| {
        (0..n).map(f).collect::<Vec<_>>().join(sep)
    };
    let cases = [
        (
            "deep_or",
            format!(
                "SELECT 1 FROM t WHERE {}",
                terms(70_000, &|i| format!("id = {i}"), " OR ")
            ),
        ),
        (
            "deep_and",
            format!(
                "SELECT 1 FROM t WHERE {}",
                terms(60_000, &|i| format!("id <> {i}"), " AND ")
            ),
        ),
        (
            "deep_plus",
            format!("SELECT {} AS n", terms(150_000, &|_| "1".into(), "+")),
        ),
        (
            "deep_union",
            terms(50_000, &|_| "SELECT 1".into(), " UNION ALL "),
        ),
    ];
    for (name, sql) in &cases {
        let p = Project::fixture("project");
        p.write(&format!("tasks/{name}.sql"), sql);
        p.write(
            &format!("tasks/{name}.yaml"),
            &format!(
                "schedule: '0 6 * * *'\nsource: db\nquery_file: {name}.sql\noutput: {{ format: csv }}\n"
            ),
        );
        for args in [vec!["validate"], vec!["run", name, "--no-notify"]] {
            let out = p.ferry(&args);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{name} {args:?}: {}",
                describe(&out)
            );
            let err = stderr(&out);
            assert!(
                err.contains(&format!("tasks/{name}.yaml:")) && err.contains("refused: the query"),
                "{name} {args:?}: {err}"
            );
        }
    }
}
