//! Unit tests of the gate: every bypass form, every listed function, ordinary SQL.

use super::lists;
use super::*;

const ALL: [Dialect; 4] = [
    Dialect::Sqlite,
    Dialect::Postgres,
    Dialect::Mysql,
    Dialect::Oracle,
];

fn refused(sql: &str, d: Dialect) -> String {
    refused_in(sql, d, Mode::Standard)
}

fn accepted(sql: &str, d: Dialect) {
    accepted_in(sql, d, Mode::Standard)
}

fn refused_in(sql: &str, d: Dialect, mode: Mode) -> String {
    match check(sql, d, mode) {
        Ok(()) => panic!("{d:?} {mode:?} accepted: {sql}"),
        Err(e) => {
            assert!(e.message.starts_with("refused: "), "{e}");
            e.message
        }
    }
}

fn accepted_in(sql: &str, d: Dialect, mode: Mode) {
    if let Err(e) = check(sql, d, mode) {
        panic!("{d:?} {mode:?} refused `{sql}`: {e}");
    }
}

#[test]
fn the_bypass_corpus_is_refused_in_every_dialect() {
    // (query, a part of the reason) — reliability.md case 35.
    let corpus: &[(&str, &str)] = &[
        (
            "WITH a AS (INSERT INTO foo (id) VALUES (1) RETURNING id) SELECT * FROM a",
            "data-modifying CTE (INSERT)",
        ),
        (
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "data-modifying CTE (DELETE)",
        ),
        (
            "WITH u AS (UPDATE t SET a = 1 RETURNING a) SELECT * FROM u",
            "data-modifying CTE (UPDATE)",
        ),
        ("SELECT * INTO t2 FROM t", "SELECT … INTO"),
        ("SELECT a FROM t FOR UPDATE", "locking clause (FOR UPDATE)"),
        ("SELECT a FROM t FOR SHARE", "locking clause (FOR SHARE)"),
        ("SELECT nextval('s')", "`nextval`"),
        ("SELECT setval('s', 10)", "`setval`"),
        (
            "SELECT query_to_xml('delete from t', true, true, '')",
            "`query_to_xml`",
        ),
        ("SELECT pg_terminate_backend(1)", "`pg_terminate_backend`"),
        ("SELECT load_file('/etc/passwd')", "`load_file`"),
        (
            "SELECT * FROM t WHERE a IN (SELECT pg_catalog.nextval('s'))",
            "`nextval`",
        ),
        (
            "SELECT 1; DROP TABLE t",
            "only one read-only query is allowed; found 2 statements",
        ),
        (
            "COMMIT; BEGIN READ WRITE; DELETE FROM t",
            "found 3 statements",
        ),
        ("DELETE FROM t", "found DELETE"),
        ("INSERT INTO t VALUES (1)", "found INSERT"),
        ("UPDATE t SET a = 1", "found UPDATE"),
        ("CREATE TABLE t2 (id INT)", "found CREATE TABLE"),
        ("DROP TABLE t", "found DROP TABLE"),
        ("TRUNCATE TABLE t", "found TRUNCATE"),
        ("EXPLAIN ANALYZE DELETE FROM t", "EXPLAIN ANALYZE"),
        ("EXPLAIN DELETE FROM t", "found EXPLAIN DELETE"),
        ("SELEC 1 FROM", "does not parse"),
        ("", "no SQL statement"),
        ("-- only a comment", "no SQL statement"),
    ];
    for d in ALL {
        for (sql, why) in corpus {
            let e = refused(sql, d);
            assert!(e.contains(why), "{d:?} `{sql}`: {e}");
        }
    }
}

#[test]
fn dialect_specific_bypasses_are_refused() {
    let e = refused(
        "SET SESSION default_transaction_read_only = off",
        Dialect::Postgres,
    );
    assert!(e.contains("found SET"), "{e}");
    refused("SET default_transaction_read_only = off", Dialect::Postgres);
    refused("SET TRANSACTION READ WRITE", Dialect::Postgres);
    refused("SET SESSION TRANSACTION READ WRITE", Dialect::Mysql);
    refused("COPY t TO '/tmp/x'", Dialect::Postgres);
    refused(
        "SELECT * FROM dblink('db', 'delete from t') AS x(a int)",
        Dialect::Postgres,
    );
    refused("SELECT dblink_exec('delete from t')", Dialect::Postgres);
    refused("SELECT lo_export(1, '/tmp/x')", Dialect::Postgres);
    refused("SELECT pg_read_file('/etc/passwd')", Dialect::Postgres);
    refused("EXPLAIN (ANALYZE) DELETE FROM t", Dialect::Postgres);
    refused("EXPLAIN (ANALYZE true) SELECT 1", Dialect::Postgres);
    // MySQL executes `/*! … */` hints: parse with the MySQL dialect, which sees them.
    refused("SELECT /*! 1; DROP TABLE t */ 2", Dialect::Mysql);
    refused("SELECT a INTO OUTFILE '/tmp/x' FROM t", Dialect::Mysql);
    refused("SELECT * FROM t INTO OUTFILE '/tmp/x'", Dialect::Mysql);
    refused("SELECT a INTO @v FROM t", Dialect::Mysql);
    refused("SELECT a FROM t LOCK IN SHARE MODE", Dialect::Mysql);
    refused("SELECT get_lock('x', 10)", Dialect::Mysql);
    refused("REPLACE INTO t VALUES (1)", Dialect::Mysql);
    refused("CALL p()", Dialect::Mysql);
    refused("SELECT load_extension('x')", Dialect::Sqlite);
    refused("ATTACH DATABASE 'x.db' AS x", Dialect::Sqlite);
    refused("PRAGMA query_only = 0", Dialect::Sqlite);
    refused("VACUUM", Dialect::Sqlite);
}

#[test]
fn read_only_queries_are_accepted() {
    let common = [
        "SELECT 1",
        "select a, b from t where a > 1 order by b desc limit 10",
        "SELECT t.a, u.b FROM t JOIN u ON u.id = t.id LEFT JOIN v ON v.id = u.id",
        "WITH x AS (SELECT a FROM t), y AS (SELECT a FROM x) SELECT * FROM y",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT i FROM n",
        "SELECT region, sum(amount) OVER (PARTITION BY region ORDER BY day) FROM sales",
        "SELECT row_number() OVER (ORDER BY a) AS rn FROM t",
        "SELECT * FROM sales WHERE day >= :period_start AND day < :period_end",
        "SELECT :run_date AS d, :run_date AS again",
        "SELECT a FROM t UNION SELECT b FROM u",
        "SELECT count(*) FROM (SELECT a FROM t) s WHERE EXISTS (SELECT 1 FROM u)",
        "SELECT CASE WHEN a IS NULL THEN 'none' ELSE 'x' END FROM t -- note: DELETE",
        "SELECT 'DROP TABLE t; DELETE FROM t' AS text_only",
        "SELECT sleep_time FROM t /* UPDATE t SET a = 1 */",
        "EXPLAIN SELECT a FROM t",
        "VALUES (1, 2)",
    ];
    for d in ALL {
        for sql in common {
            accepted(sql, d);
        }
    }
    for sql in [
        "SELECT id::text, now() - interval '1 day' AS since, ARRAY[1, 2] AS a FROM t",
        "SELECT pg_sleep(0.1)",
        "SELECT * FROM generate_series(1, 5) g",
        "SELECT (ARRAY['a', 'b'])[1], '{1,2}'::int[] AS arr, '{\"a\":1}'::jsonb ->> 'a'",
        "SELECT d::date FROM t WHERE d > :period_start::timestamptz",
        "EXPLAIN (ANALYZE false) SELECT 1",
    ] {
        accepted(sql, Dialect::Postgres);
    }
    for sql in [
        "SELECT `order`, `group` FROM `my table` LIMIT 10, 20",
        "SELECT SLEEP(1)",
        "SHOW TABLES",
        "SHOW DATABASES",
        "SHOW COLUMNS FROM t",
        "SELECT CONCAT('v', id) FROM t WHERE day = :run_date",
    ] {
        accepted(sql, Dialect::Mysql);
    }
    for sql in [
        "SELECT date(:run_date, '-1 day')",
        "SELECT \"quoted col\" FROM [bracketed]",
        "EXPLAIN QUERY PLAN SELECT a FROM t",
    ] {
        accepted(sql, Dialect::Sqlite);
    }
}

#[test]
fn ordinary_oracle_queries_are_accepted() {
    for sql in [
        "SELECT 1 FROM dual",
        "SELECT * FROM orders WHERE ROWNUM <= 10",
        "SELECT id FROM orders ORDER BY id FETCH FIRST 10 ROWS ONLY",
        "SELECT id FROM orders ORDER BY id OFFSET 5 ROWS FETCH NEXT 10 ROWS ONLY",
        "SELECT NVL(name, 'none'), NVL2(a, 1, 0), DECODE(status, 'P', 'paid', 'other') FROM orders",
        "SELECT TO_CHAR(sysdate, 'YYYY') FROM dual",
        "SELECT TRUNC(SYSDATE) - 1, ADD_MONTHS(TRUNC(SYSDATE, 'MM'), -1) FROM dual",
        "SELECT e.name, d.name FROM emp e, dept d WHERE e.dept_id = d.id(+)",
        "SELECT q'[it's]' AS t FROM dual",
        "SELECT * FROM sales WHERE day >= :period_start_date AND day < :period_end_date",
        "SELECT :run_date AS d, :run_date AS again FROM dual",
        "SELECT level, name FROM emp START WITH mgr IS NULL CONNECT BY PRIOR id = mgr",
        "SELECT a FROM t MINUS SELECT a FROM u",
        "SELECT CAST(amount AS NUMBER(38,10)) AS amount FROM t",
        "SELECT /*+ FULL(t) */ * FROM t",
        "WITH x AS (SELECT 1 a FROM dual) SELECT a FROM x",
        "SELECT dbms_lob.getlength(body), SUBSTR(body, 1, 100) FROM docs",
        "SELECT EXTRACT(YEAR FROM d), SYSTIMESTAMP AT TIME ZONE 'UTC' FROM t",
        "SELECT LISTAGG(a, ',') WITHIN GROUP (ORDER BY a) FROM t",
        "SELECT a || ' ' || b FROM t",
        "SELECT COUNT(*) FROM \"Orders\" o WHERE o.\"Day\" = TO_DATE('2026-11-01', 'YYYY-MM-DD')",
    ] {
        accepted(sql, Dialect::Oracle);
    }
    // A gap of sqlparser 0.63 (fails closed): `SUBSTR` after a package name does not
    // parse. docs/types.md names the workarounds (SUBSTR on the CLOB, `sql_gate: false`).
    let e = refused(
        "SELECT dbms_lob.substr(body, 100, 1) FROM docs",
        Dialect::Oracle,
    );
    assert!(e.contains("does not parse as Oracle SQL"), "{e}");
}

#[test]
fn oracle_writes_and_side_effects_are_refused() {
    for (sql, why) in [
        (
            "MERGE INTO t USING s ON (t.id = s.id) WHEN MATCHED THEN UPDATE SET t.a = s.a",
            "found MERGE",
        ),
        ("INSERT ALL INTO t VALUES (1) SELECT * FROM dual", "refused"),
        ("BEGIN DELETE FROM t; END;", "refused"),
        ("DECLARE x NUMBER; BEGIN NULL; END;", "refused"),
        ("CALL p()", "found CALL"),
        ("LOCK TABLE t IN EXCLUSIVE MODE", "refused"),
        ("ALTER SESSION SET NLS_DATE_FORMAT = 'YYYY'", "refused"),
        ("SET TRANSACTION READ WRITE", "refused"),
        ("SELECT a FROM t FOR UPDATE NOWAIT", "locking clause"),
        ("SELECT a FROM t FOR UPDATE SKIP LOCKED", "locking clause"),
        ("SELECT a INTO v FROM t", "SELECT … INTO"),
        (
            "SELECT utl_http.request('http://example.com') FROM dual",
            "`utl_http.request`",
        ),
        (
            "SELECT sys.dbms_pipe.send_message('p') FROM dual",
            "`sys.dbms_pipe.send_message`",
        ),
        (
            "SELECT httpuritype('http://x').getclob() FROM dual",
            "refused",
        ),
        ("EXECUTE IMMEDIATE 'DELETE FROM t'", "refused"),
        ("GRANT SELECT ON t TO u", "refused"),
        ("COMMENT ON TABLE t IS 'x'", "refused"),
        ("CREATE TABLE t2 AS SELECT * FROM t", "found CREATE TABLE"),
        ("TRUNCATE TABLE t", "found TRUNCATE"),
        ("PURGE RECYCLEBIN", "refused"),
    ] {
        let e = refused(sql, Dialect::Oracle);
        assert!(e.contains(why), "`{sql}`: {e}");
    }
}

/// Issue 12 item 1: `U&"…"` names are decoded before the lists are matched.
#[test]
fn unicode_escaped_names_are_read_as_postgresql_reads_them() {
    for (sql, name) in [
        (
            r#"SELECT U&"pg\005fterminate\005fbackend"(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"#,
            "pg_terminate_backend",
        ),
        (r#"SELECT U&"lo\005fexport"(1, '/tmp/x')"#, "lo_export"),
        (
            r#"SELECT U&"pg\005fread\005ffile"('/etc/passwd')"#,
            "pg_read_file",
        ),
        (
            r#"SELECT u&"pg!005fread!005ffile" UESCAPE '!' ('/etc/passwd')"#,
            "pg_read_file",
        ),
        (
            r#"SELECT pg_catalog.U&"pg\+00005fcancel\005fbackend"(1)"#,
            "pg_cancel_backend",
        ),
        (
            r#"SELECT U&"pg_catalog".U&"set\005fconfig"('statement_timeout', '0', false)"#,
            "set_config",
        ),
        (
            r#"SELECT * FROM U&"pg\005fls\005fdir"('.') AS f"#,
            "pg_ls_dir",
        ),
        (
            r#"SELECT "pg_catalog"."PG_TERMINATE_BACKEND"(1)"#,
            "pg_terminate_backend",
        ),
        (
            r#"SELECT U&"\0070g_try_advisory_lock"(1)"#,
            "pg_try_advisory_lock",
        ),
    ] {
        let e = refused(sql, Dialect::Postgres);
        assert!(e.contains(&format!("`{name}`")), "`{sql}`: {e}");
    }
    // A bad escape is refused, as the server would.
    let e = refused(r#"SELECT U&"\zzzz"(1)"#, Dialect::Postgres);
    assert!(e.contains("invalid Unicode escape"), "{e}");
}

/// Issue 12 item 2: every form of executable comment, and hints, on MySQL/MariaDB.
#[test]
fn mysql_executable_comments_and_hints_are_refused() {
    for sql in [
        "SELECT id FROM t /*M! INTO OUTFILE 'x.txt' */",
        "SELECT id FROM t /*M! INTO DUMPFILE 'x.bin' */",
        "SELECT /*M! LOAD_FILE('/etc/passwd') AS */ id FROM t",
        "SELECT /*M! GET_LOCK('x', 10) AS */ id FROM t",
        "/*M! SET STATEMENT max_statement_time=0 FOR */ SELECT BENCHMARK(100000000, md5('x'))",
        "SELECT id FROM t /*! INTO OUTFILE 'x.txt' */",
        "SELECT id FROM t /*!50100 INTO OUTFILE 'x.txt' */",
        "SELECT id FROM t /*M!100100 INTO OUTFILE 'x.txt' */",
        "SELECT id FROM t /*!*/",
        "SELECT id FROM t WHERE 1--1 /*M! INTO OUTFILE 'x' */\n",
    ] {
        let e = refused(sql, Dialect::Mysql);
        assert!(e.contains("executable comment"), "`{sql}`: {e}");
    }
    for sql in [
        "SELECT /*+ MAX_EXECUTION_TIME(0) */ SLEEP(100)",
        "SELECT /*+ SET_VAR(max_statement_time=0) */ id FROM t",
        "SELECT /*+ RESOURCE_GROUP(rg) */ id FROM t",
    ] {
        let e = refused(sql, Dialect::Mysql);
        assert!(e.contains("optimizer hint"), "`{sql}`: {e}");
    }
    // MySQL needs an ASCII space after `--`: with a no-break space the rest of the line is
    // code (`- -<nbsp>`, a column named by the no-break space), which sqlparser alone
    // took for a comment.
    let e = refused(
        "SELECT 1 --\u{a0}, LOAD_FILE('/etc/passwd')\nFROM (SELECT 1 AS `\u{a0}`) AS t",
        Dialect::Mysql,
    );
    assert!(e.contains("`load_file`"), "{e}");
    // Under NO_BACKSLASH_ESCAPES the string ends early and the comment would run.
    let e = refused(
        r"SELECT 'a\' /*M! INTO OUTFILE 'x' */ '' AS t",
        Dialect::Mysql,
    );
    assert!(e.contains("NO_BACKSLASH_ESCAPES"), "{e}");
}

/// Statement-level settings that weaken the server's timeout or read-only mode.
#[test]
fn settings_that_weaken_the_server_are_refused() {
    for (sql, d) in [
        (
            "SET STATEMENT max_statement_time=0 FOR SELECT SLEEP(100)",
            Dialect::Mysql,
        ),
        ("SET TRANSACTION READ WRITE", Dialect::Mysql),
        ("SET SESSION max_statement_time = 0", Dialect::Mysql),
        ("SET max_execution_time = 0", Dialect::Mysql),
        ("SET TRANSACTION READ WRITE", Dialect::Postgres),
        ("SET LOCAL statement_timeout = 0", Dialect::Postgres),
        ("SET statement_timeout TO 0", Dialect::Postgres),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
            Dialect::Postgres,
        ),
        ("RESET statement_timeout", Dialect::Postgres),
    ] {
        refused(sql, d);
    }
    let e = refused("SET LOCAL statement_timeout = 0", Dialect::Postgres);
    assert!(e.contains("found SET (a setting can switch off"), "{e}");
    for sql in [
        "SELECT set_config('statement_timeout', '0', false)",
        "SELECT pg_catalog.set_config('transaction_read_only', 'off', true)",
    ] {
        let e = refused(sql, Dialect::Postgres);
        assert!(e.contains("`set_config` changes a server setting"), "{e}");
    }
    let e = refused("SELECT @t := 1, a FROM t", Dialect::Mysql);
    assert!(e.contains("`:=` assigns a session variable"), "{e}");
}

/// Issue 12 item 3 and the rest of the lists: each entry is refused by name in every
/// dialect, as a call and (on PostgreSQL) as a table function.
#[test]
fn every_listed_function_is_refused_in_every_dialect() {
    let lists = [lists::POSTGRES, lists::MYSQL, lists::SQLITE, lists::ORACLE];
    for (pattern, effect) in lists.iter().flat_map(|l| l.iter()) {
        let name = match pattern.strip_suffix('*') {
            Some(prefix) => format!("{prefix}x"),
            None => pattern.to_string(),
        };
        for d in ALL {
            let e = refused(&format!("SELECT {name}(1, 'a') AS v FROM t"), d);
            assert!(
                e.contains(&format!("`{name}` {}", effect.why())),
                "{d:?} {name}: {e}"
            );
            let upper = name.to_uppercase();
            let e = refused(&format!("SELECT a FROM t WHERE {upper}(a) > 0"), d);
            assert!(e.contains(&format!("`{name}`")), "{d:?} {upper}: {e}");
        }
        let e = refused(
            &format!("SELECT * FROM public.{name}('a') AS f"),
            Dialect::Postgres,
        );
        assert!(e.contains(&format!("`{name}`")), "{name}: {e}");
    }
    for package in lists::ORACLE_PACKAGES {
        for d in ALL {
            let e = refused(&format!("SELECT sys.{package}.anything(1) FROM dual"), d);
            assert!(
                e.contains(&format!("package `{package}`")),
                "{d:?} {package}: {e}"
            );
        }
    }
    // The issue's examples and real members of each family.
    for sql in [
        "SELECT pg_create_physical_replication_slot('s', true)",
        "SELECT * FROM pg_create_logical_replication_slot('s', 'test_decoding')",
        "SELECT pg_drop_replication_slot('s')",
        "SELECT pg_stat_reset()",
        "SELECT pg_stat_reset_shared('bgwriter')",
        "SELECT pg_stat_reset_single_table_counters('t'::regclass)",
        "SELECT pg_try_advisory_lock(1)",
        "SELECT pg_try_advisory_xact_lock_shared(1, 2)",
        "SELECT pg_advisory_unlock_all()",
        "SELECT * FROM pg_logical_slot_get_changes('s', NULL, NULL)",
        "SELECT pg_logical_emit_message(true, 'p', 'x')",
        "SELECT pg_replication_origin_create('o')",
        "SELECT * FROM pg_ls_waldir()",
        "SELECT pg_read_binary_file('/etc/passwd')",
        "SELECT lo_import('/etc/passwd')",
        "SELECT lo_from_bytea(0, 'x')",
        "SELECT dblink_exec('host=x', 'DELETE FROM t')",
        "SELECT pg_notify('c', 'x')",
        "SELECT setval('s', 1)",
        "SELECT txid_current()",
        "SELECT pg_backup_start('x')",
        "SELECT pg_wal_replay_pause()",
        "SELECT pg_reload_conf()",
        "SELECT pg_log_backend_memory_contexts(1)",
        "SELECT * FROM crosstab('SELECT 1')",
        "SELECT ts_stat('DELETE FROM t')",
    ] {
        refused(sql, Dialect::Postgres);
    }
    for sql in [
        "SELECT GET_LOCK('x', 10)",
        "SELECT RELEASE_ALL_LOCKS()",
        "SELECT LOAD_FILE('/etc/passwd')",
        "SELECT MASTER_GTID_WAIT('0-1-1', 1)",
        "SELECT NEXTVAL(s)",
        "SELECT SETVAL(s, 100)",
        "SELECT LAST_INSERT_ID(5)",
        "SELECT s.nextval FROM dual",
        "SELECT spider_direct_sql('DELETE FROM t', 't', 'srv \"s\"')",
    ] {
        refused(sql, Dialect::Mysql);
    }
    let e = refused("SELECT s.NEXTVAL FROM dual", Dialect::Oracle);
    assert!(e.contains("advances a sequence"), "{e}");
    // Lookalikes are not caught by a family (only exact names and marked families).
    for sql in [
        "SELECT pg_stat_get_live_tuples('t'::regclass)",
        "SELECT pg_replication_origin_oid('o')",
        "SELECT pg_is_in_recovery(), pg_backend_pid(), pg_sleep(0.1)",
        "SELECT lower(a), lpad(a, 3), log(2, 8), lastval() FROM t",
        "SELECT httpd_status FROM t",
    ] {
        accepted(sql, Dialect::Postgres);
    }
}

#[test]
fn strict_mode_allows_only_pure_functions() {
    let ok = [
        "SELECT region, count(*), sum(amount), avg(amount), max(day) FROM sales GROUP BY region",
        "WITH m AS (SELECT date_trunc('month', day) AS m, sum(amount) AS s FROM sales GROUP BY 1) SELECT m, s, lag(s) OVER (ORDER BY m) FROM m",
        "SELECT CASE WHEN a > 0 THEN 'p' ELSE 'n' END, coalesce(b, 0), nullif(c, ''), CAST(d AS text), d::date FROM t",
        "SELECT upper(name), substring(name FROM 1 FOR 3), trim(name), round(v, 2), abs(v) FROM t",
        "SELECT extract(year FROM day), to_char(day, 'YYYY-MM'), now() - interval '1 day' FROM t",
        "SELECT doc ->> 'a', jsonb_extract_path_text(doc, 'b'), json_array_length(doc -> 'c') FROM t",
        "SELECT * FROM generate_series(1, 3) g",
        "SELECT a FROM t WHERE b IN (SELECT b FROM u) AND c LIKE 'x%' AND d BETWEEN 1 AND 2",
    ];
    for sql in ok {
        accepted_in(sql, Dialect::Postgres, Mode::Strict);
    }
    for sql in [
        "SELECT DATE_FORMAT(day, '%Y'), IFNULL(a, 0), JSON_EXTRACT(doc, '$.a'), GROUP_CONCAT(b) FROM t GROUP BY day",
        "SELECT IF(a > 1, 'x', 'y'), CONCAT_WS('-', a, b) FROM t",
    ] {
        accepted_in(sql, Dialect::Mysql, Mode::Strict);
    }
    for (sql, d, why) in [
        (
            "SELECT version()",
            Dialect::Postgres,
            "`version` is not one of the pure functions",
        ),
        ("SELECT pg_sleep(10)", Dialect::Postgres, "`pg_sleep`"),
        ("SELECT SLEEP(10)", Dialect::Mysql, "`sleep`"),
        (
            "SELECT BENCHMARK(1000, md5('x'))",
            Dialect::Mysql,
            "`benchmark`",
        ),
        ("SELECT random()", Dialect::Postgres, "`random`"),
        (
            "SELECT current_setting('data_directory')",
            Dialect::Postgres,
            "`current_setting`",
        ),
        (
            "SELECT my_schema.lower(a) FROM t",
            Dialect::Postgres,
            "`my_schema.lower`",
        ),
        ("SELECT * FROM my_func(1)", Dialect::Postgres, "`my_func`"),
        (
            "SELECT a FROM t WHERE my_check(a)",
            Dialect::Sqlite,
            "`my_check`",
        ),
        (
            "SELECT nextval('s')",
            Dialect::Postgres,
            "advances or sets a sequence",
        ),
        (
            "SELECT 1 OPERATOR(pg_catalog.+) 1",
            Dialect::Postgres,
            "operator",
        ),
        (
            "SHOW TABLES",
            Dialect::Mysql,
            "strict allows only a SELECT; found SHOW",
        ),
        (
            "EXPLAIN SELECT 1",
            Dialect::Postgres,
            "strict allows only a SELECT; found EXPLAIN",
        ),
    ] {
        let e = refused_in(sql, d, Mode::Strict);
        assert!(e.contains(why), "`{sql}`: {e}");
    }
    // No allowed name is refused as unknown (whatever else the parser makes of it).
    for name in STRICT_ALLOWED {
        for d in ALL {
            if let Err(e) = check(&format!("SELECT {name}(a) FROM t"), d, Mode::Strict) {
                assert!(!e.message.contains("pure functions"), "{d:?} {name}: {e}");
            }
        }
    }
}

#[test]
fn ordinary_reporting_sql_passes_both_modes() {
    let pg = [
        "WITH m AS (SELECT region, date_trunc('month', day) AS month, sum(amount) AS total FROM sales GROUP BY 1, 2) \
         SELECT region, month, total, rank() OVER (PARTITION BY month ORDER BY total DESC) AS r FROM m ORDER BY month, r",
        "SELECT o.id, c.name, CASE WHEN o.total > 100 THEN 'big' ELSE 'small' END AS size, o.total::numeric(12, 2) \
         FROM orders o JOIN customers c ON c.id = o.customer_id LEFT JOIN returns r USING (id) WHERE r.id IS NULL",
        "SELECT day::date, extract(dow FROM day), day + interval '1 day', to_char(day, 'YYYY-MM-DD') FROM t -- trailing; comment\n",
        "SELECT 'U&\"pg\\005fterminate\\005fbackend\"(1)' AS text, '/*M! INTO OUTFILE */' AS c, 'a; DROP TABLE t; --' AS d",
        "SELECT $$ U&\"x\" /* ; */ $$ AS dollar, E'it\\'s' AS escaped, 'it''s' AS doubled",
        "/* leading comment /* nested */ still comment */ SELECT a FROM t /* U&\"lo\\005fexport\" */",
        "SELECT \"weird \"\" name\", U&\"d\\0061ta\" FROM t",
        "SELECT count(*) FILTER (WHERE a > 0), string_agg(b, ', ' ORDER BY b) FROM t",
    ];
    for sql in pg {
        for mode in [Mode::Standard, Mode::Strict] {
            accepted_in(sql, Dialect::Postgres, mode);
        }
    }
    let my = [
        "SELECT d.name, COUNT(*) AS n, SUM(o.total) FROM orders o JOIN dept d ON d.id = o.dept_id GROUP BY d.name HAVING n > 1",
        "SELECT id, ROW_NUMBER() OVER (PARTITION BY k ORDER BY id) AS rn FROM t",
        "SELECT DATE_FORMAT(created, '%Y-%m') AS m, CAST(v AS DECIMAL(10, 2)) FROM t # comment /*M! x */\n",
        "SELECT '/*M! INTO OUTFILE ''x'' */' AS a, \"/*!50100 x */\" AS b, 'U&\"x\"' AS c, 'a;b' AS d",
        "SELECT `select`, `/*M!*/` FROM `t` /* plain comment */ WHERE a = 'x' -- comment\n",
        "SELECT 1 - -1 AS two, 'C:\\\\dir\\\\' AS path",
    ];
    for sql in my {
        for mode in [Mode::Standard, Mode::Strict] {
            accepted_in(sql, Dialect::Mysql, mode);
        }
    }
}

/// Issue 12 item 4: deep SQL gives a clean refusal, never a stack overflow.
#[test]
fn deep_and_huge_queries_are_refused_cleanly() {
    let terms = |n: usize, f: &dyn Fn(usize) -> String, sep: &str| {
        (0..n).map(f).collect::<Vec<_>>().join(sep)
    };
    let or = format!(
        "SELECT 1 FROM t WHERE {}",
        terms(70_000, &|i| format!("a = {i}"), " OR ")
    );
    let and = format!(
        "SELECT 1 FROM t WHERE {}",
        terms(70_000, &|i| format!("a <> {i}"), " AND ")
    );
    let plus = format!("SELECT {}", terms(200_000, &|_| "1".into(), "+"));
    let union = terms(50_000, &|_| "SELECT 1".into(), " UNION ALL ");
    assert!(or.len() < MAX_QUERY_BYTES && union.len() < MAX_QUERY_BYTES);
    for d in ALL {
        for (what, sql) in [
            ("or", &or),
            ("and", &and),
            ("plus", &plus),
            ("union", &union),
        ] {
            let e = refused(sql, d);
            assert!(
                e.contains("too deeply chained") || e.contains("tokens"),
                "{d:?} {what}: {e}"
            );
        }
        let parens = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
        let e = refused(&parens, d);
        assert!(
            e.contains("nest deeper than the gate reads (50 levels)"),
            "{d:?}: {e}"
        );
        let subqueries = format!(
            "SELECT {}",
            terms(2_001, &|i| format!("(SELECT {i})"), ", ")
        );
        let e = refused(&subqueries, d);
        assert!(e.contains("2002 SELECTs"), "{d:?}: {e}");
        let list = format!(
            "SELECT a FROM t WHERE {}",
            terms(100_001, &|i| format!("a{i}"), " ")
        );
        let e = refused(&list, d);
        assert!(e.contains("at most 100000"), "{d:?}: {e}");
    }
    let big = format!("SELECT '{}'", "x".repeat(MAX_QUERY_BYTES));
    let e = refused(&big, Dialect::Postgres);
    assert!(e.contains("the gate reads at most 1048576 bytes"), "{e}");
    // Just inside the limits the whole check runs (parse, walk, drop) without trouble,
    // also for a refused statement whose text is printed for the message.
    let chain = terms(MAX_DEPTH - 10, &|_| "1".into(), "+");
    accepted(&format!("SELECT {chain}"), Dialect::Postgres);
    let e = refused(
        &format!("DELETE FROM t WHERE a = {chain}"),
        Dialect::Postgres,
    );
    assert!(e.contains("found DELETE"), "{e}");
    let in_list = format!(
        "SELECT a FROM t WHERE a IN ({})",
        terms(90_000, &|i| i.to_string(), ", ")
    );
    accepted(&in_list, Dialect::Mysql);
    let nested = format!("SELECT {}1{}", "(".repeat(12), ")".repeat(12));
    accepted(&nested, Dialect::Postgres);
    // Chains without operators or keywords (the depth estimate does not count them) are
    // flat in the tree: adjacent strings are one literal. They pass or fail, never crash.
    for d in ALL {
        let _ = check(
            &format!("SELECT {}", vec!["'a'"; 99_000].join(" ")),
            d,
            Mode::Standard,
        );
        let _ = check(
            &format!("SELECT {}", vec!["'a'"; 99_000].join("\n")),
            d,
            Mode::Standard,
        );
        let _ = check(
            &format!("SELECT {}", vec!["\"a\""; 99_000].join(" ")),
            d,
            Mode::Standard,
        );
        let _ = check(
            &format!("SELECT {}", vec!["1"; 99_000].join(" ")),
            d,
            Mode::Standard,
        );
    }
}

#[test]
fn other_call_syntaxes_are_seen() {
    for (sql, d) in [
        ("SELECT NEXT VALUE FOR s", Dialect::Mysql),
        (
            "SELECT * FROM ROWS FROM (pg_ls_dir('.')) AS f",
            Dialect::Postgres,
        ),
        (
            "SELECT * FROM t, LATERAL pg_read_file('x') AS f",
            Dialect::Postgres,
        ),
        ("SELECT (SELECT pg_advisory_lock(1))", Dialect::Postgres),
        (
            "SELECT a FROM t ORDER BY pg_stat_reset()",
            Dialect::Postgres,
        ),
        (
            "SELECT a FROM t GROUP BY a HAVING pg_try_advisory_lock(a) ",
            Dialect::Postgres,
        ),
        (
            "SELECT max(a) FILTER (WHERE lo_unlink(a) = 1) FROM t",
            Dialect::Postgres,
        ),
        ("VALUES (nextval('s'))", Dialect::Postgres),
        (
            "SELECT sum(a) OVER (ORDER BY pg_notify('c', 'x')) FROM t",
            Dialect::Postgres,
        ),
        ("EXPLAIN SELECT pg_terminate_backend(1)", Dialect::Postgres),
    ] {
        refused(sql, d);
    }
}

/// Each refusal says what kind it is: mailed requests answer with it.
#[test]
fn refusals_have_kinds() {
    use super::RefusalKind::*;
    let kind = |sql: &str, d: Dialect| check(sql, d, Mode::Strict).unwrap_err().kind;
    assert_eq!(kind("DELETE FROM t", Dialect::Postgres), NotReadOnly);
    assert_eq!(kind("SELECT pg_sleep(1)", Dialect::Postgres), NotReadOnly);
    assert_eq!(
        kind("SELECT 1; SELECT 2", Dialect::Postgres),
        MultipleStatements
    );
    assert_eq!(kind("-- nothing", Dialect::Postgres), NoStatement);
    assert_eq!(kind("SELEC 1", Dialect::Postgres), Unparsable);
    assert_eq!(kind("SELECT 'open", Dialect::Postgres), Unparsable);
    assert_eq!(
        kind("SELECT 1 /*! INTO OUTFILE 'x' */", Dialect::Mysql),
        NotReadOnly
    );
    let deep = format!("SELECT {}1{}", "(".repeat(200), ")".repeat(200));
    assert_eq!(kind(&deep, Dialect::Postgres), TooComplex);
    assert_eq!(
        kind(&"x".repeat(MAX_QUERY_BYTES + 1), Dialect::Sqlite),
        TooComplex
    );
}

/// A project load checks its queries in place on a thread with the gate's stack: the
/// same verdicts as through the gate's thread, deep queries included, and a panic in the
/// load reaches the caller.
#[test]
fn checks_on_the_gate_stack_give_the_same_verdicts() {
    let deep = format!("SELECT {}1{}", "(".repeat(20), ")".repeat(20));
    let deeper = format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000));
    let queries = [
        "SELECT 1",
        "DELETE FROM t",
        "SELECT 1; SELECT 2",
        deep.as_str(),
        deeper.as_str(),
    ];
    let outside: Vec<_> = queries
        .iter()
        .map(|q| check(q, Dialect::Postgres, Mode::Standard))
        .collect();
    let inside = super::on_gate_stack(|| {
        queries
            .iter()
            .map(|q| check(q, Dialect::Postgres, Mode::Standard))
            .collect::<Vec<_>>()
    });
    assert_eq!(inside, outside);
    assert!(outside[0].is_ok() && outside[3].is_ok(), "{outside:?}");
    assert!(outside[1].is_err() && outside[4].is_err(), "{outside:?}");
    let panicked = std::panic::catch_unwind(|| super::on_gate_stack(|| panic!("in the load")));
    assert!(panicked.is_err());
}
