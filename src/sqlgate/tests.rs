//! Unit tests of the gate: every bypass form, every listed function, ordinary SQL.

use super::*;

const ALL: [Dialect; 4] = [
    Dialect::Sqlite,
    Dialect::Postgres,
    Dialect::Mysql,
    Dialect::Oracle,
];

fn refused(sql: &str, d: Dialect) -> String {
    match check(sql, d) {
        Ok(()) => panic!("{d:?} accepted: {sql}"),
        Err(e) => {
            assert!(e.starts_with("refused: "), "{e}");
            e
        }
    }
}

fn accepted(sql: &str, d: Dialect) {
    if let Err(e) = check(sql, d) {
        panic!("{d:?} refused `{sql}`: {e}");
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
