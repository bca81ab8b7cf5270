//! The source conformance suite: one list of cases, run identically against every backend
//! (SQLite in a temporary file, PostgreSQL and MariaDB from `scripts/test-services.sh`)
//! through the real `ferry run`, each case written once as CSV and once as XLSX and read
//! back (XLSX with calamine).
//!
//! A case is a portable description: the setup SQL (per backend where the DDL must
//! differ), the query, and what `docs/types.md` says comes out — the CSV text and the XLSX
//! cells, or the run's failure. Where backends legitimately differ (MariaDB's booleans are
//! `1`/`0`, SQLite has no exact decimals), the case says so per backend; where a backend
//! has no such type, the case says why it does not apply. Every type case has a NULL row,
//! so NULL is checked in every type.
//!
//! Adding a backend: a [`Db`] variant, its project datasource and setup runner in
//! [`Suite::new`], an expectation wherever a case differs for it, and a `#[test]` below.
//!
//! Under `CI=true` a missing server fails the test (`pg_url`, `my_url`); elsewhere the
//! server backends print a note and pass without running. Tables are named `cf_*`.

use calamine::{Data, Reader, Xlsx, open_workbook};

use crate::support::{Project, describe};

/// A backend of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
    Mysql,
}
use Db::{Mysql, Postgres, Sqlite};

const ALL: &[Db] = &[Sqlite, Postgres, Mysql];
const SQLITE: &[Db] = &[Sqlite];
const PG: &[Db] = &[Postgres];
const MY: &[Db] = &[Mysql];
const PG_MY: &[Db] = &[Postgres, Mysql];
const SQLITE_PG: &[Db] = &[Sqlite, Postgres];
const SQLITE_MY: &[Db] = &[Sqlite, Mysql];

/// The error of a query that has no result columns (statement, or `SELECT FROM t`).
const NO_COLUMNS: &str = "the query returned no columns: ferry exports the result of a query that selects at least one column";

/// One XLSX cell as calamine reads it back.
#[derive(Debug, Clone)]
enum X {
    /// Empty cell (NULL).
    E,
    S(String),
    N(f64),
    B(bool),
    /// A date/time cell: its Excel serial number.
    T(f64),
}

fn s(text: &str) -> X {
    X::S(text.to_string())
}

fn n(v: f64) -> X {
    X::N(v)
}

/// The Excel serial of `YYYY-MM-DD`, `HH:MM:SS[.f]` or `YYYY-MM-DD HH:MM:SS[.f]`.
fn t(when: &str) -> X {
    let epoch = chrono::NaiveDate::from_ymd_opt(1899, 12, 30).unwrap();
    let (date, time) = match when.split_once(' ') {
        Some((d, tm)) => (Some(d), Some(tm)),
        None if when.contains(':') => (None, Some(when)),
        None => (Some(when), None),
    };
    let days = date.map_or(0.0, |d| {
        (d.parse::<chrono::NaiveDate>().unwrap() - epoch).num_days() as f64
    });
    let secs = time.map_or(0.0, |tm| {
        use chrono::Timelike;
        let tm: chrono::NaiveTime = tm.parse().unwrap();
        f64::from(tm.num_seconds_from_midnight()) + f64::from(tm.nanosecond()) / 1e9
    });
    X::T(days + secs / 86_400.0)
}

fn same_cell(want: &X, got: &Data) -> bool {
    match (want, got) {
        (X::E, Data::Empty) => true,
        (X::S(w), Data::String(g)) => w == g,
        (X::N(w), Data::Float(g)) => w == g,
        (X::N(w), Data::Int(g)) => *w == *g as f64,
        (X::B(w), Data::Bool(g)) => w == g,
        // 1e-10 days is under 10 µs.
        (X::T(w), Data::DateTime(g)) => (w - g.as_f64()).abs() < 1e-10,
        _ => false,
    }
}

/// How a failed run's error must read.
#[derive(Debug, Clone)]
enum Fails {
    Is(String),
    /// Starts with the first part and contains the others.
    Like(Vec<String>),
}

fn is(error: &str) -> Fails {
    Fails::Is(error.to_string())
}

fn like(parts: &[&str]) -> Fails {
    Fails::Like(parts.iter().map(|p| p.to_string()).collect())
}

/// One case. Lookups take the first entry whose backend list holds the backend.
struct Case {
    name: &'static str,
    setup: Vec<(&'static [Db], String)>,
    query: Vec<(&'static [Db], String)>,
    /// Extra task settings (`chunk_rows: 4`, `timezone: …`), one per line.
    task: &'static str,
    /// Run on the `raw` datasource, whose parser gate is off: the case is about what the
    /// database itself does with the statement.
    gate_off: bool,
    csv: Vec<(&'static [Db], String)>,
    xlsx: Vec<(&'static [Db], Vec<Vec<X>>)>,
    warnings: Vec<(&'static [Db], Vec<&'static str>)>,
    fails: Vec<(&'static [Db], Fails)>,
    /// Backends without the feature, and why.
    not_for: Vec<(&'static [Db], &'static str)>,
}

fn case(name: &'static str) -> Case {
    Case {
        name,
        setup: Vec::new(),
        query: Vec::new(),
        task: "",
        gate_off: false,
        csv: Vec::new(),
        xlsx: Vec::new(),
        warnings: Vec::new(),
        fails: Vec::new(),
        not_for: Vec::new(),
    }
}

fn pick<'a, T>(list: &'a [(&'static [Db], T)], db: Db) -> Option<&'a T> {
    list.iter()
        .find(|(dbs, _)| dbs.contains(&db))
        .map(|(_, v)| v)
}

impl Case {
    fn setup(mut self, dbs: &'static [Db], sql: &str) -> Case {
        self.setup.push((dbs, sql.to_string()));
        self
    }
    fn query(mut self, dbs: &'static [Db], sql: &str) -> Case {
        self.query.push((dbs, sql.to_string()));
        self
    }
    fn task(mut self, settings: &'static str) -> Case {
        self.task = settings;
        self
    }
    fn gate_off(mut self) -> Case {
        self.gate_off = true;
        self
    }
    fn csv(mut self, dbs: &'static [Db], text: &str) -> Case {
        self.csv.push((dbs, text.to_string()));
        self
    }
    fn xlsx(mut self, dbs: &'static [Db], rows: Vec<Vec<X>>) -> Case {
        self.xlsx.push((dbs, rows));
        self
    }
    fn warns(mut self, dbs: &'static [Db], parts: Vec<&'static str>) -> Case {
        self.warnings.push((dbs, parts));
        self
    }
    fn fails(mut self, dbs: &'static [Db], how: Fails) -> Case {
        self.fails.push((dbs, how));
        self
    }
    fn not_for(mut self, dbs: &'static [Db], why: &'static str) -> Case {
        self.not_for.push((dbs, why));
        self
    }
}

/// `'中😀'` repeated `n` times, in each backend's SQL.
fn repeat_sql(db: Db, unit: &str, n: usize) -> String {
    match db {
        // SQLite has no repeat(): n pairs of hex zeros, each replaced by the unit.
        Sqlite => format!("replace(hex(zeroblob({n})), '00', '{unit}')"),
        Postgres => format!("repeat('{unit}', {n})"),
        Mysql => format!("REPEAT('{unit}', {n})"),
    }
}

/// Long values with a 4-byte character at every byte offset modulo 4, split over
/// two-row chunks: one of them straddles whatever buffer boundary a reader or writer has.
fn long_unicode_setup(db: Db) -> String {
    let long = repeat_sql(db, "中😀", 5000);
    let cat = |prefix: &str| match db {
        Mysql => format!("CONCAT('{prefix}', {long})"),
        _ => format!("'{prefix}' || {long}"),
    };
    format!(
        "CREATE TABLE cf_long (id INTEGER, v TEXT);\nINSERT INTO cf_long VALUES (1, '😀'), (2, {}), (3, {}), (4, {}), (5, {}), (6, '😀');\n",
        long,
        cat("a"),
        cat("ab"),
        cat("abc")
    )
}

fn long_unicode_values() -> Vec<String> {
    let long = "中😀".repeat(5000);
    vec![
        "😀".to_string(),
        long.clone(),
        format!("a{long}"),
        format!("ab{long}"),
        format!("abc{long}"),
        "😀".to_string(),
    ]
}

/// The CSV of the `floats` case, with negative zero written as `zero`.
fn floats_csv(zero: &str) -> String {
    format!(
        "id,f8,f4\n1,0.1,0.1\n2,1{},1.5\n3,{zero},{zero}\n4,0.0000001,0.0000001\n5,,\n6,100000000000000000000,16777216\n",
        "0".repeat(300)
    )
}

/// The rows `n, 'row n'` for `n` in `1..=last`, as CSV after the header.
fn numbered_csv(last: usize) -> String {
    std::iter::once("n,label\n".to_string())
        .chain((1..=last).map(|i| format!("{i},row {i}\n")))
        .collect()
}

fn numbered_xlsx(last: usize) -> Vec<Vec<X>> {
    (1..=last)
        .map(|i| vec![n(i as f64), s(&format!("row {i}"))])
        .collect()
}

/// A task that reads `cf_rows` up to `last` in chunks of 4 rows.
fn chunk_case(name: &'static str, last: usize) -> Case {
    case(name)
        .task("chunk_rows: 4\n")
        .query(
            ALL,
            &format!("SELECT n, label FROM cf_rows WHERE n <= {last} ORDER BY n"),
        )
        .csv(ALL, &numbered_csv(last))
        .xlsx(ALL, numbered_xlsx(last))
}

fn cases() -> Vec<Case> {
    let nine_rows: String = (1..=9)
        .map(|i| format!("({i}, 'row {i}')"))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        // ---------------------------------------------------------------- types
        case("integers")
            .setup(
                ALL,
                "CREATE TABLE cf_int (id INTEGER, i2 SMALLINT, i4 INTEGER, i8 BIGINT);
INSERT INTO cf_int VALUES (1, 32767, 2147483647, 9223372036854775807), (2, -32768, -2147483648, -9223372036854775808), (3, 0, 999999999, 999999999999999), (4, NULL, NULL, NULL), (5, 1, -1, 1234567890123456);
",
            )
            .query(ALL, "SELECT id, i2, i4, i8 FROM cf_int ORDER BY id")
            .csv(
                ALL,
                "id,i2,i4,i8
1,32767,2147483647,9223372036854775807
2,-32768,-2147483648,-9223372036854775808
3,0,999999999,999999999999999
4,,,
5,1,-1,1234567890123456
",
            )
            // More than 15 digits: text with the exact digits.
            .xlsx(
                ALL,
                vec![
                    vec![n(1.0), n(32767.0), n(2147483647.0), s("9223372036854775807")],
                    vec![n(2.0), n(-32768.0), n(-2147483648.0), s("-9223372036854775808")],
                    vec![n(3.0), n(0.0), n(999999999.0), n(999999999999999.0)],
                    vec![n(4.0), X::E, X::E, X::E],
                    vec![n(5.0), n(1.0), n(-1.0), s("1234567890123456")],
                ],
            ),
        case("unsigned_integers")
            .not_for(SQLITE, "SQLite integers are signed 64-bit")
            .not_for(PG, "PostgreSQL has no unsigned integer types")
            .setup(
                MY,
                "CREATE TABLE cf_uint (id INT, u1 TINYINT UNSIGNED, u4 INT UNSIGNED, u8 BIGINT UNSIGNED);
INSERT INTO cf_uint VALUES (1, 255, 4294967295, 18446744073709551615), (2, 0, 0, 0), (3, NULL, NULL, NULL), (4, 1, 1, 999999999999999);
",
            )
            .query(MY, "SELECT id, u1, u4, u8 FROM cf_uint ORDER BY id")
            .csv(
                MY,
                "id,u1,u4,u8
1,255,4294967295,18446744073709551615
2,0,0,0
3,,,
4,1,1,999999999999999
",
            )
            .xlsx(
                MY,
                vec![
                    vec![n(1.0), n(255.0), n(4294967295.0), s("18446744073709551615")],
                    vec![n(2.0), n(0.0), n(0.0), n(0.0)],
                    vec![n(3.0), X::E, X::E, X::E],
                    vec![n(4.0), n(1.0), n(1.0), n(999999999999999.0)],
                ],
            ),
        case("exact_decimals")
            .setup(
                ALL,
                "CREATE TABLE cf_dec (id INTEGER, big DECIMAL(38,10), money DECIMAL(12,2));
INSERT INTO cf_dec VALUES (1, 12345678901234567890.1234567890, 1234.50), (2, -0.0000000001, -0.5), (3, 0, 0), (4, NULL, NULL), (5, 1, 99999.99);
",
            )
            .query(ALL, "SELECT id, big, money FROM cf_dec ORDER BY id")
            .csv(
                PG_MY,
                "id,big,money
1,12345678901234567890.1234567890,1234.50
2,-0.0000000001,-0.50
3,0.0000000000,0.00
4,,
5,1.0000000000,99999.99
",
            )
            // SQLite has no exact decimal: NUMERIC affinity stores REALs (and integers).
            .csv(
                SQLITE,
                "id,big,money
1,12345678901234567000,1234.5
2,-0.0000000001,-0.5
3,0,0
4,,
5,1,99999.99
",
            )
            .xlsx(
                PG_MY,
                vec![
                    vec![n(1.0), s("12345678901234567890.1234567890"), n(1234.5)],
                    vec![n(2.0), n(-0.0000000001), n(-0.5)],
                    vec![n(3.0), n(0.0), n(0.0)],
                    vec![n(4.0), X::E, X::E],
                    vec![n(5.0), n(1.0), n(99999.99)],
                ],
            )
            .xlsx(
                SQLITE,
                vec![
                    vec![n(1.0), n(12345678901234567890.0), n(1234.5)],
                    vec![n(2.0), n(-0.0000000001), n(-0.5)],
                    vec![n(3.0), n(0.0), n(0.0)],
                    vec![n(4.0), X::E, X::E],
                    vec![n(5.0), n(1.0), n(99999.99)],
                ],
            ),
        case("floats")
            .setup(
                SQLITE_PG,
                "CREATE TABLE cf_float (id INTEGER, f8 DOUBLE PRECISION, f4 REAL);\n",
            )
            // MariaDB's REAL is a DOUBLE; FLOAT is its 4-byte float.
            .setup(
                MY,
                "CREATE TABLE cf_float (id INTEGER, f8 DOUBLE PRECISION, f4 FLOAT);\n",
            )
            // Negative zero as each backend spells it (PostgreSQL's `-0.0` is a numeric,
            // which has no negative zero).
            .setup(
                SQLITE,
                "INSERT INTO cf_float VALUES (3, -0.0, -0.0);\n",
            )
            .setup(PG, "INSERT INTO cf_float VALUES (3, '-0', '-0');\n")
            .setup(MY, "INSERT INTO cf_float VALUES (3, -0e0, -0e0);\n")
            .setup(
                ALL,
                "INSERT INTO cf_float VALUES (1, 0.1, 0.1), (2, 1e300, 1.5), (4, 1e-7, 1e-7), (5, NULL, NULL), (6, 1e20, 16777216);\n",
            )
            .query(ALL, "SELECT id, f8, f4 FROM cf_float ORDER BY id")
            // Shortest round-trip digits, never an exponent: 1e300 is 1 and 300 zeros.
            .csv(PG, &floats_csv("-0"))
            // SQLite and MariaDB store negative zero as zero.
            .csv(SQLITE_MY, &floats_csv("0"))
            .xlsx(
                ALL,
                vec![
                    vec![n(1.0), n(0.1), n(0.1)],
                    vec![n(2.0), n(1e300), n(1.5)],
                    vec![n(3.0), n(-0.0), n(-0.0)],
                    vec![n(4.0), n(1e-7), n(1e-7)],
                    vec![n(5.0), X::E, X::E],
                    vec![n(6.0), n(1e20), n(16777216.0)],
                ],
            ),
        case("float_specials")
            .not_for(MY, "MariaDB stores no NaN or infinity")
            .setup(
                PG,
                "CREATE TABLE cf_fspecial (id INTEGER, f DOUBLE PRECISION);
INSERT INTO cf_fspecial VALUES (1, 'NaN'), (2, 'Infinity'), (3, '-Infinity');
",
            )
            // SQLite reads a too-large literal as infinity and stores NaN as NULL.
            .setup(
                SQLITE,
                "CREATE TABLE cf_fspecial (id INTEGER, f DOUBLE PRECISION);
INSERT INTO cf_fspecial VALUES (1, NULL), (2, 9e999), (3, -9e999);
",
            )
            .query(SQLITE_PG, "SELECT id, f FROM cf_fspecial ORDER BY id")
            .csv(PG, "id,f\n1,NaN\n2,Infinity\n3,-Infinity\n")
            .csv(SQLITE, "id,f\n1,\n2,Infinity\n3,-Infinity\n")
            .xlsx(
                PG,
                vec![
                    vec![n(1.0), s("NaN")],
                    vec![n(2.0), s("Infinity")],
                    vec![n(3.0), s("-Infinity")],
                ],
            )
            .xlsx(
                SQLITE,
                vec![
                    vec![n(1.0), X::E],
                    vec![n(2.0), s("Infinity")],
                    vec![n(3.0), s("-Infinity")],
                ],
            ),
        case("booleans")
            .setup(
                ALL,
                "CREATE TABLE cf_bool (id INTEGER, b BOOLEAN);
INSERT INTO cf_bool VALUES (1, TRUE), (2, FALSE), (3, NULL);
",
            )
            .query(ALL, "SELECT id, b FROM cf_bool ORDER BY id")
            .csv(SQLITE_PG, "id,b\n1,true\n2,false\n3,\n")
            // MariaDB's BOOLEAN is TINYINT(1): the protocol cannot tell it from a number.
            .csv(MY, "id,b\n1,1\n2,0\n3,\n")
            .xlsx(
                SQLITE_PG,
                vec![
                    vec![n(1.0), X::B(true)],
                    vec![n(2.0), X::B(false)],
                    vec![n(3.0), X::E],
                ],
            )
            .xlsx(
                MY,
                vec![
                    vec![n(1.0), n(1.0)],
                    vec![n(2.0), n(0.0)],
                    vec![n(3.0), X::E],
                ],
            ),
        case("dates_and_times")
            .setup(
                SQLITE,
                "CREATE TABLE cf_time (id INTEGER, d DATE, tm TIME, dt DATETIME);\n",
            )
            .setup(
                PG,
                "CREATE TABLE cf_time (id INTEGER, d DATE, tm TIME(6), dt TIMESTAMP(6));\n",
            )
            .setup(
                MY,
                "CREATE TABLE cf_time (id INTEGER, d DATE, tm TIME(6), dt DATETIME(6));\n",
            )
            .setup(
                ALL,
                "INSERT INTO cf_time VALUES (1, '2026-11-25', '10:30:00.25', '2026-11-25 10:30:00'), (2, '1899-12-31', '00:00:00', '2026-01-01 00:00:00.123456'), (3, '2024-02-29', '23:59:59.999999', '1999-12-31 23:59:59.5'), (4, NULL, NULL, NULL);\n",
            )
            .query(ALL, "SELECT id, d, tm, dt FROM cf_time ORDER BY id")
            .csv(
                ALL,
                "id,d,tm,dt
1,2026-11-25,10:30:00.250,2026-11-25 10:30:00
2,1899-12-31,00:00:00,2026-01-01 00:00:00.123456
3,2024-02-29,23:59:59.999999,1999-12-31 23:59:59.500
4,,,
",
            )
            // A date before 1900-03-01 is outside Excel's calendar: ISO text.
            .xlsx(
                ALL,
                vec![
                    vec![
                        n(1.0),
                        t("2026-11-25"),
                        t("10:30:00.25"),
                        t("2026-11-25 10:30:00"),
                    ],
                    vec![
                        n(2.0),
                        s("1899-12-31"),
                        t("00:00:00"),
                        t("2026-01-01 00:00:00.123456"),
                    ],
                    vec![
                        n(3.0),
                        t("2024-02-29"),
                        t("23:59:59.999999"),
                        t("1999-12-31 23:59:59.5"),
                    ],
                    vec![n(4.0), X::E, X::E, X::E],
                ],
            ),
        case("instants_in_the_task_zone")
            .setup(
                SQLITE,
                "CREATE TABLE cf_tz (id INTEGER, ts DATETIME);
INSERT INTO cf_tz VALUES (1, '2026-11-25T02:30:00Z'), (2, '2026-06-30 23:59:59.5-07:00'), (3, NULL);
",
            )
            .setup(
                PG,
                "CREATE TABLE cf_tz (id INTEGER, ts TIMESTAMPTZ);
INSERT INTO cf_tz VALUES (1, '2026-11-25 02:30:00+00'), (2, '2026-06-30 23:59:59.5-07'), (3, NULL);
",
            )
            // The setup session's time_zone is +00:00, like ferry's.
            .setup(
                MY,
                "CREATE TABLE cf_tz (id INTEGER, ts TIMESTAMP(3) NULL);
INSERT INTO cf_tz VALUES (1, '2026-11-25 02:30:00'), (2, '2026-07-01 06:59:59.5'), (3, NULL);
",
            )
            .query(ALL, "SELECT id, ts FROM cf_tz ORDER BY id")
            .csv(
                PG_MY,
                "id,ts (Asia/Shanghai)
1,2026-11-25 10:30:00+08:00
2,2026-07-01 14:59:59.500+08:00
3,
",
            )
            // SQLite has no zone-aware column type: the header cannot name the zone.
            .csv(
                SQLITE,
                "id,ts
1,2026-11-25 10:30:00+08:00
2,2026-07-01 14:59:59.500+08:00
3,
",
            )
            .xlsx(
                ALL,
                vec![
                    vec![n(1.0), t("2026-11-25 10:30:00")],
                    vec![n(2.0), t("2026-07-01 14:59:59.5")],
                    vec![n(3.0), X::E],
                ],
            ),
        case("instants_in_a_zone_with_dst")
            .task("timezone: America/New_York\n")
            .query(ALL, "SELECT id, ts FROM cf_tz ORDER BY id")
            .csv(
                PG_MY,
                "id,ts (America/New_York)
1,2026-11-24 21:30:00-05:00
2,2026-07-01 02:59:59.500-04:00
3,
",
            )
            .csv(
                SQLITE,
                "id,ts
1,2026-11-24 21:30:00-05:00
2,2026-07-01 02:59:59.500-04:00
3,
",
            )
            .xlsx(
                ALL,
                vec![
                    vec![n(1.0), t("2026-11-24 21:30:00")],
                    vec![n(2.0), t("2026-07-01 02:59:59.5")],
                    vec![n(3.0), X::E],
                ],
            ),
        case("binary_as_hex")
            .setup(
                PG,
                "CREATE TABLE cf_bin (id INTEGER, b BYTEA);
INSERT INTO cf_bin VALUES (1, '\\x00ff'), (2, '\\x'), (3, NULL), (4, '\\xdeadbeef');
",
            )
            .setup(
                SQLITE_MY,
                "CREATE TABLE cf_bin (id INTEGER, b VARBINARY(16));
INSERT INTO cf_bin VALUES (1, X'00FF'), (2, X''), (3, NULL), (4, X'DEADBEEF');
",
            )
            .query(ALL, "SELECT id, b FROM cf_bin ORDER BY id")
            .csv(ALL, "id,b\n1,0x00FF\n2,0x\n3,\n4,0xDEADBEEF\n")
            .xlsx(
                ALL,
                vec![
                    vec![n(1.0), s("0x00FF")],
                    vec![n(2.0), s("0x")],
                    vec![n(3.0), X::E],
                    vec![n(4.0), s("0xDEADBEEF")],
                ],
            ),
        case("json")
            .setup(
                ALL,
                "CREATE TABLE cf_json (id INTEGER, j JSON);
INSERT INTO cf_json VALUES (1, '{\"a\": 1}'), (2, '[]'), (3, NULL), (4, '\"中文 😀\"');
",
            )
            .query(ALL, "SELECT id, j FROM cf_json ORDER BY id")
            .csv(
                ALL,
                "id,j\n1,\"{\"\"a\"\": 1}\"\n2,[]\n3,\n4,\"\"\"中文 😀\"\"\"\n",
            )
            .xlsx(
                ALL,
                vec![
                    vec![n(1.0), s("{\"a\": 1}")],
                    vec![n(2.0), s("[]")],
                    vec![n(3.0), X::E],
                    vec![n(4.0), s("\"中文 😀\"")],
                ],
            ),
        case("uuid")
            .not_for(SQLITE, "SQLite has no UUID type (a TEXT column is text)")
            .setup(
                PG_MY,
                "CREATE TABLE cf_uuid (id INTEGER, u UUID);
INSERT INTO cf_uuid VALUES (1, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'), (2, '00000000-0000-0000-0000-000000000000'), (3, NULL);
",
            )
            .query(PG_MY, "SELECT id, u FROM cf_uuid ORDER BY id")
            .csv(
                PG_MY,
                "id,u
1,a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11
2,00000000-0000-0000-0000-000000000000
3,
",
            )
            .xlsx(
                PG_MY,
                vec![
                    vec![n(1.0), s("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")],
                    vec![n(2.0), s("00000000-0000-0000-0000-000000000000")],
                    vec![n(3.0), X::E],
                ],
            ),
        case("enums")
            .not_for(SQLITE, "SQLite has no enum type")
            .setup(
                PG,
                "DROP TABLE IF EXISTS cf_enum;
DROP TYPE IF EXISTS cf_mood;
CREATE TYPE cf_mood AS ENUM ('happy', 'sad');
CREATE TABLE cf_enum (id INTEGER, m cf_mood);
",
            )
            .setup(MY, "CREATE TABLE cf_enum (id INTEGER, m ENUM('happy', 'sad'));\n")
            .setup(
                PG_MY,
                "INSERT INTO cf_enum VALUES (1, 'happy'), (2, 'sad'), (3, NULL);\n",
            )
            .query(PG_MY, "SELECT id, m FROM cf_enum ORDER BY id")
            .csv(PG_MY, "id,m\n1,happy\n2,sad\n3,\n")
            .xlsx(
                PG_MY,
                vec![
                    vec![n(1.0), s("happy")],
                    vec![n(2.0), s("sad")],
                    vec![n(3.0), X::E],
                ],
            ),
        case("arrays")
            .not_for(SQLITE_MY, "only PostgreSQL has array types")
            .setup(
                PG,
                "CREATE TABLE cf_array (id INTEGER, a INT4[], tx TEXT[]);
INSERT INTO cf_array VALUES (1, '{1,2,NULL}', '{\"x y\",\"中文\",\"\"}'), (2, '{}', '{}'), (3, NULL, NULL), (4, '{{1,2},{3,4}}', '[0:1]={a,b}');
",
            )
            .query(PG, "SELECT id, a, tx FROM cf_array ORDER BY id")
            .csv(
                PG,
                "id,a,tx
1,\"{1,2,NULL}\",\"{\"\"x y\"\",中文,\"\"\"\"}\"
2,{},{}
3,,
4,\"{{1,2},{3,4}}\",\"[0:1]={a,b}\"
",
            )
            .xlsx(
                PG,
                vec![
                    vec![n(1.0), s("{1,2,NULL}"), s("{\"x y\",中文,\"\"}")],
                    vec![n(2.0), s("{}"), s("{}")],
                    vec![n(3.0), X::E, X::E],
                    vec![n(4.0), s("{{1,2},{3,4}}"), s("[0:1]={a,b}")],
                ],
            ),
        // ---------------------------------------------------------------- Unicode
        case("unicode_text_and_names")
            .setup(
                SQLITE_PG,
                "CREATE TABLE cf_text (id INTEGER, \"名称\" TEXT);\n",
            )
            .setup(MY, "CREATE TABLE cf_text (id INTEGER, `名称` TEXT);\n")
            .setup(
                ALL,
                "INSERT INTO cf_text VALUES (1, '销售报表'), (2, '😀👍🏽'), (3, 'e\u{301}te\u{301}'), (4, '👨‍👩‍👧 家庭'), (5, 'مرحبا'), (6, '=SUM(A1)'), (7, '中文, \"引号\"\n换行'), (8, NULL), (9, '');\n",
            )
            .query(SQLITE_PG, "SELECT id, \"名称\" FROM cf_text ORDER BY id")
            .query(MY, "SELECT id, `名称` FROM cf_text ORDER BY id")
            // A text starting with `=` gets CSV formula escaping; XLSX keeps it as text.
            .csv(
                ALL,
                "id,名称\n1,销售报表\n2,😀👍🏽\n3,e\u{301}te\u{301}\n4,👨‍👩‍👧 家庭\n5,مرحبا\n6,'=SUM(A1)\n7,\"中文, \"\"引号\"\"\n换行\"\n8,\n9,\n",
            )
            .xlsx(
                ALL,
                vec![
                    vec![n(1.0), s("销售报表")],
                    vec![n(2.0), s("😀👍🏽")],
                    vec![n(3.0), s("e\u{301}te\u{301}")],
                    vec![n(4.0), s("👨‍👩‍👧 家庭")],
                    vec![n(5.0), s("مرحبا")],
                    vec![n(6.0), s("=SUM(A1)")],
                    vec![n(7.0), s("中文, \"引号\"\n换行")],
                    vec![n(8.0), X::E],
                    vec![n(9.0), X::E],
                ],
            ),
        case("four_byte_characters_at_chunk_boundaries")
            .task("chunk_rows: 2\n")
            .setup(SQLITE, &long_unicode_setup(Sqlite))
            .setup(PG, &long_unicode_setup(Postgres))
            .setup(MY, &long_unicode_setup(Mysql))
            .query(ALL, "SELECT id, v FROM cf_long ORDER BY id")
            .csv(
                ALL,
                &std::iter::once("id,v\n".to_string())
                    .chain(
                        long_unicode_values()
                            .iter()
                            .enumerate()
                            .map(|(i, v)| format!("{},{v}\n", i + 1)),
                    )
                    .collect::<String>(),
            )
            .xlsx(
                ALL,
                long_unicode_values()
                    .iter()
                    .enumerate()
                    .map(|(i, v)| vec![n(i as f64 + 1.0), s(v)])
                    .collect(),
            ),
        // ---------------------------------------------------------------- chunks, empty
        chunk_case("chunk_rows_minus_one", 3).setup(
            ALL,
            &format!(
                "CREATE TABLE cf_rows (n INTEGER, label VARCHAR(20));\nINSERT INTO cf_rows VALUES {nine_rows};\n"
            ),
        ),
        chunk_case("chunk_rows_exactly", 4),
        chunk_case("chunk_rows_plus_one", 5),
        chunk_case("two_chunks_exactly", 8),
        chunk_case("two_chunks_plus_one", 9),
        case("empty_result_has_the_header")
            .query(ALL, "SELECT n, label FROM cf_rows WHERE n < 0")
            .csv(ALL, "n,label\n")
            .xlsx(ALL, vec![]),
        case("empty_result_header_names_the_zone")
            .query(ALL, "SELECT id, ts FROM cf_tz WHERE id < 0")
            .csv(PG_MY, "id,ts (Asia/Shanghai)\n")
            .csv(SQLITE, "id,ts\n")
            .xlsx(ALL, vec![]),
        case("empty_result_with_on_empty_skip")
            .task("on_empty: skip\n")
            .query(ALL, "SELECT n, label FROM cf_rows WHERE n < 0")
            .csv(ALL, "n,label\n")
            .xlsx(ALL, vec![])
            .warns(
                ALL,
                vec!["the query returned no rows: notifications skipped (on_empty: skip)"],
            ),
        // ---------------------------------------------------------------- 0 columns
        case("zero_columns")
            .gate_off()
            .query(PG, "SELECT FROM cf_rows")
            .query(MY, "DO 1")
            .query(SQLITE, "PRAGMA foreign_keys = ON")
            .fails(ALL, is(NO_COLUMNS)),
        case("statement_that_is_not_a_query")
            .gate_off()
            .query(PG, "SET SESSION default_transaction_read_only = off")
            .query(MY, "SET @ferry_marker = 1")
            .query(SQLITE, "PRAGMA cache_size = 100")
            .fails(ALL, is(NO_COLUMNS)),
        // ---------------------------------------------------------------- errors
        case("unknown_table")
            .query(ALL, "SELECT * FROM cf_no_such_table")
            .fails(
                PG,
                is("datasource `src`: relation \"cf_no_such_table\" does not exist"),
            )
            .fails(
                MY,
                is(
                    "datasource `src`: Table 'ferry_test.cf_no_such_table' doesn't exist (error 1146, SQLSTATE 42S02)",
                ),
            )
            .fails(SQLITE, is("datasource `src`: no such table: cf_no_such_table")),
        case("syntax_error")
            .gate_off()
            .query(ALL, "SELEC 1")
            .fails(PG, is("datasource `raw`: syntax error at or near \"SELEC\""))
            .fails(
                MY,
                like(&[
                    "datasource `raw`: You have an error in your SQL syntax",
                    "(error 1064, SQLSTATE 42000)",
                ]),
            )
            .fails(SQLITE, is("datasource `raw`: near \"SELEC\": syntax error")),
        case("two_statements")
            .gate_off()
            .query(ALL, "SELECT 1 AS a; SELECT 2 AS b")
            .fails(
                PG,
                is(
                    "datasource `raw`: cannot insert multiple commands into a prepared statement",
                ),
            )
            .fails(MY, like(&["datasource `raw`: ", "(error 1064, SQLSTATE 42000)"]))
            .fails(SQLITE, like(&["datasource `raw`: "])),
        // Division by zero is an error only in PostgreSQL; the others return NULL.
        case("division_by_zero")
            .query(ALL, "SELECT n, 10 / (n - 5) AS q FROM cf_rows ORDER BY n")
            .fails(PG, is("datasource `src`: division by zero"))
            // MariaDB's `/` is exact division (4 more decimals)...
            .csv(
                MY,
                "n,q
1,-2.5000
2,-3.3333
3,-5.0000
4,-10.0000
5,
6,10.0000
7,5.0000
8,3.3333
9,2.5000
",
            )
            // ... SQLite's divides integers.
            .csv(SQLITE, "n,q\n1,-2\n2,-3\n3,-5\n4,-10\n5,\n6,10\n7,5\n8,3\n9,2\n")
            .xlsx(
                MY,
                [-2.5, -3.3333, -5.0, -10.0, f64::NAN, 10.0, 5.0, 3.3333, 2.5]
                    .iter()
                    .enumerate()
                    .map(|(i, q)| vec![n(i as f64 + 1.0), if q.is_nan() { X::E } else { n(*q) }])
                    .collect(),
            )
            .xlsx(
                SQLITE,
                [-2.0, -3.0, -5.0, -10.0, f64::NAN, 10.0, 5.0, 3.0, 2.0]
                    .iter()
                    .enumerate()
                    .map(|(i, q)| vec![n(i as f64 + 1.0), if q.is_nan() { X::E } else { n(*q) }])
                    .collect(),
            ),
        // A run-time error at row 5000 of 10000, after many 100-row chunks went to the
        // writer: the run fails and no file is published.
        case("error_after_earlier_chunks")
            .task("chunk_rows: 100\n")
            .query(
                PG,
                "SELECT n, 1 / (n - 5000) AS q FROM generate_series(1, 10000) AS n",
            )
            // A scalar subquery that returns two rows at seq = 5000 only.
            .query(
                MY,
                "SELECT seq AS n, (SELECT 1 UNION ALL SELECT 2 FROM DUAL WHERE seq = 5000) AS q FROM seq_1_to_10000",
            )
            // abs() of the smallest integer at n = 5000 only.
            .query(
                SQLITE,
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 10000) SELECT n, abs(n - 5000 - 9223372036854775807 - 1) AS q FROM g",
            )
            .fails(PG, is("datasource `src`: division by zero"))
            .fails(
                MY,
                is(
                    "datasource `src`: Subquery returns more than 1 row (error 1242, SQLSTATE 21000)",
                ),
            )
            .fails(SQLITE, is("datasource `src`: integer overflow")),
    ]
}

/// One backend's project, with its datasources `src` (parser gate on) and `raw` (off).
struct Suite {
    db: Db,
    project: Project,
}

impl Suite {
    fn new(db: Db) -> Suite {
        let project = Project::fixture("project");
        let ds = |name: &str, extra: &str| match db {
            Sqlite => format!(
                "  {name}: {{ type: sqlite, url: \"sqlite://db/conformance.db\"{extra} }}\n"
            ),
            Postgres => format!(
                "  {name}: {{ type: postgres, url: \"${{FERRY_TEST_PG_URL}}\", connect_timeout: 5s{extra} }}\n"
            ),
            Mysql => format!(
                "  {name}: {{ type: mysql, url: \"${{FERRY_TEST_MYSQL_URL}}\", connect_timeout: 5s, max_connections: 2{extra} }}\n"
            ),
        };
        let config = std::fs::read_to_string(project.path().join("config.yaml")).unwrap();
        project.write(
            "config.yaml",
            &config.replacen(
                "datasources:\n",
                &format!(
                    "datasources:\n{}{}",
                    ds("src", ""),
                    ds("raw", ", sql_gate: false")
                ),
                1,
            ),
        );
        Suite { db, project }
    }

    /// Runs every case's setup for this backend, in one batch.
    fn setup(&self, cases: &[Case]) {
        let mut sql = String::new();
        for c in cases {
            for (dbs, text) in &c.setup {
                if !dbs.contains(&self.db) {
                    continue;
                }
                // Each table is made afresh (the servers keep them between runs).
                for line in text.lines() {
                    if let Some(rest) = line.strip_prefix("CREATE TABLE ") {
                        let table = rest.split_whitespace().next().unwrap();
                        sql.push_str(&format!("DROP TABLE IF EXISTS {table};\n"));
                    }
                    sql.push_str(line);
                    sql.push('\n');
                }
            }
        }
        match self.db {
            Sqlite => {
                let path = self.project.path().join("db/conformance.db");
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                let conn = rusqlite::Connection::open(path).unwrap();
                conn.execute_batch(&sql)
                    .unwrap_or_else(|e| panic!("{e}\n{sql}"));
            }
            Postgres => {
                crate::postgres::exec(&crate::postgres::pg_url().unwrap(), &sql);
            }
            Mysql => crate::mysql::exec(&crate::mysql::my_url().unwrap(), &sql),
        }
    }

    /// Writes and runs the case's task in one format; the run's JSON, or why not.
    fn run(
        &self,
        c: &Case,
        query: &str,
        format: &str,
        code: i32,
    ) -> Result<serde_json::Value, String> {
        let name = format!("cf_{}_{format}", c.name);
        let mut q = String::from("  ");
        q.push_str(&query.replace('\n', "\n  "));
        let source = if c.gate_off { "raw" } else { "src" };
        self.project.write(
            &format!("tasks/{name}.yaml"),
            &format!(
                "schedule: '0 6 * * *'\nsource: {source}\n{}query: |\n{q}\noutput: {{ format: {format}, file_name: {name} }}\n",
                c.task
            ),
        );
        let out = self.project.ferry(&["run", &name, "--json", "--no-notify"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json: serde_json::Value = serde_json::from_str(stdout.trim())
            .map_err(|e| format!("{format}: {e}: {}", describe(&out)))?;
        if out.status.code() != Some(code) {
            return Err(format!(
                "{format}: exit {:?}, want {code}: {json}",
                out.status.code()
            ));
        }
        Ok(json)
    }

    /// Files under `exports/` from the case's task in `format`, without temporary ones.
    fn published(&self, c: &Case, format: &str) -> Vec<String> {
        let task = format!("cf_{}_{format}", c.name);
        self.project
            .files("exports")
            .into_iter()
            .filter(|f| f.contains(&task) && !f.contains(".tmp"))
            .collect()
    }

    /// Checks one case; returns the problems found.
    fn check(&self, c: &Case) -> Vec<String> {
        let db = self.db;
        let mut problems = Vec::new();
        let mut problem = |msg: String| problems.push(format!("{} ({db:?}): {msg}", c.name));
        if pick(&c.not_for, db).is_some() {
            return problems;
        }
        let query = pick(&c.query, db)
            .unwrap_or_else(|| panic!("{}: no query for {db:?}", c.name))
            .clone();
        if let Some(how) = pick(&c.fails, db) {
            for format in ["csv", "xlsx"] {
                let json = match self.run(c, &query, format, 1) {
                    Ok(j) => j,
                    Err(e) => {
                        problem(e);
                        continue;
                    }
                };
                let err = json["error"].as_str().unwrap_or_default();
                let ok = json["status"] == "failed"
                    && match how {
                        Fails::Is(want) => err == want,
                        Fails::Like(parts) => {
                            err.starts_with(&parts[0])
                                && parts[1..].iter().all(|p| err.contains(p.as_str()))
                        }
                    };
                if !ok {
                    problem(format!("{format}: want a failure {how:?}, got {json}"));
                }
                if json["files"] != serde_json::json!([]) {
                    problem(format!("{format}: a failed run published files: {json}"));
                }
                let left = self.published(c, format);
                if !left.is_empty() {
                    problem(format!("{format}: files left after a failure: {left:?}"));
                }
            }
            return problems;
        }
        let want_csv =
            pick(&c.csv, db).unwrap_or_else(|| panic!("{}: no CSV expectation for {db:?}", c.name));
        let want_warnings = pick(&c.warnings, db).cloned().unwrap_or_default();
        for format in ["csv", "xlsx"] {
            let json = match self.run(c, &query, format, 0) {
                Ok(j) => j,
                Err(e) => {
                    problem(e);
                    continue;
                }
            };
            if json["status"] != "succeeded" {
                problem(format!("{format}: {json}"));
                continue;
            }
            let warnings: Vec<&str> = json["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_str().unwrap())
                .collect();
            if warnings.len() != want_warnings.len()
                || !want_warnings
                    .iter()
                    .zip(&warnings)
                    .all(|(w, g)| g.contains(w))
            {
                problem(format!(
                    "{format}: warnings {warnings:?}, want {want_warnings:?}"
                ));
            }
            let Some(rel) = json["files"][0]["path"].as_str() else {
                problem(format!("{format}: no file: {json}"));
                continue;
            };
            // The failure check looks for files the same way: it must see this one.
            if !self
                .published(c, format)
                .iter()
                .any(|f| rel.ends_with(f.as_str()))
            {
                problem(format!(
                    "{format}: {rel} is not among {:?}",
                    self.published(c, format)
                ));
            }
            let path = self.project.path().join(rel);
            if format == "csv" {
                let got = std::fs::read_to_string(&path).unwrap();
                if &got != want_csv {
                    problem(format!(
                        "csv:\n--- want\n{}\n--- got\n{}",
                        clip(want_csv),
                        clip(&got)
                    ));
                }
                continue;
            }
            let want_xlsx = pick(&c.xlsx, db)
                .unwrap_or_else(|| panic!("{}: no XLSX expectation for {db:?}", c.name));
            let mut wb: Xlsx<_> = open_workbook(&path).unwrap();
            let range = wb.worksheet_range("data").unwrap();
            let got: Vec<Vec<Data>> = range.rows().map(|r| r.to_vec()).collect();
            // The header is the CSV's (no case quotes or escapes a column name).
            let header: Vec<X> = want_csv.lines().next().unwrap().split(',').map(s).collect();
            let want: Vec<&Vec<X>> = std::iter::once(&header).chain(want_xlsx).collect();
            let same = want.len() == got.len()
                && want.iter().zip(&got).all(|(w, g)| {
                    w.len() == g.len() && w.iter().zip(g).all(|(wc, gc)| same_cell(wc, gc))
                });
            if !same {
                problem(format!(
                    "xlsx:\n--- want\n{}\n--- got\n{}",
                    clip(&format!("{want:?}")),
                    clip(&format!("{got:?}"))
                ));
            }
        }
        problems
    }
}

/// Long values shortened for messages.
fn clip(text: &str) -> String {
    if text.chars().count() <= 2000 {
        return text.to_string();
    }
    let head: String = text.chars().take(1000).collect();
    let tail: String = text
        .chars()
        .rev()
        .take(500)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{head}…[{} chars]…{tail}", text.chars().count())
}

fn run_suite(db: Db) {
    let cases = cases();
    let suite = Suite::new(db);
    suite.setup(&cases);
    let mut problems = Vec::new();
    let mut ran = 0;
    for c in &cases {
        if pick(&c.not_for, db).is_none() {
            ran += 1;
        }
        problems.extend(suite.check(c));
    }
    assert!(ran >= 20, "only {ran} cases ran on {db:?}");
    assert!(
        problems.is_empty(),
        "{} problem(s) on {db:?}:\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

#[test]
fn sqlite_passes_the_conformance_suite() {
    run_suite(Sqlite);
}

#[test]
fn postgres_passes_the_conformance_suite() {
    if crate::postgres::pg_url().is_some() {
        run_suite(Postgres);
    }
}

#[test]
fn mariadb_passes_the_conformance_suite() {
    if crate::mysql::my_url().is_some() {
        run_suite(Mysql);
    }
}

#[test]
fn every_case_says_what_each_backend_does() {
    for c in cases() {
        for db in [Sqlite, Postgres, Mysql] {
            if pick(&c.not_for, db).is_some() {
                continue;
            }
            assert!(
                pick(&c.query, db).is_some(),
                "{}: no query for {db:?}",
                c.name
            );
            let fails = pick(&c.fails, db).is_some();
            let rows = pick(&c.csv, db).is_some() && pick(&c.xlsx, db).is_some();
            assert!(
                fails != rows,
                "{}: {db:?} needs either a failure or CSV and XLSX expectations",
                c.name
            );
        }
    }
}
