-- Benchmark table for benches/db_export.sh, PostgreSQL flavour (performance.md §6.2).
-- psql variables: :tbl (table name) and :rows (row count).
--
-- The columns mirror benches/sqlite_export_gen.sql (same three integer hashes a, b, c of
-- the row number n, no random(), so the same row count always gives the same rows), with
-- real server types and what the SQLite table cannot have: an exact numeric, Chinese
-- text, a timestamptz, and NULLs in three columns.
--
--   id       bigint PK       1..N
--   qty      integer         1..500
--   amount   numeric(12,2)   0.00..99999.99 (exact decimal)
--   customer text            '客户 012345', 250,000 distinct (Chinese + digits)
--   label    text            'segment-X', 36 distinct
--   day      date            2020-01-01..2025-12-31
--   ts       timestamp       2020..2025, whole seconds
--   flag     boolean
--   delta    integer NULL    -99999..-1, NULL in 10 % of rows
--   paid_at  timestamptz NULL  2020..2025, NULL in 20 % of rows
--   note     text NULL       'order N lane L ref xxxxxxxx' (unique); every 50th row
--                            '订单 N, "加急" lane L' (comma, quotes, Chinese: CSV quoting);
--                            NULL in 5 % of rows
--   score    float8          (c mod 1000003) / 7, full double precision
--
-- The same rows are copied into MariaDB by benches/db_export.sh (LOAD DATA).
\set ON_ERROR_STOP 1
SET client_min_messages = warning;
DROP TABLE IF EXISTS :tbl;
CREATE TABLE :tbl (
    id       bigint           NOT NULL,
    qty      integer          NOT NULL,
    amount   numeric(12, 2)   NOT NULL,
    customer text             NOT NULL,
    label    text             NOT NULL,
    day      date             NOT NULL,
    ts       timestamp        NOT NULL,
    flag     boolean          NOT NULL,
    delta    integer,
    paid_at  timestamptz,
    note     text,
    score    double precision NOT NULL
);
INSERT INTO :tbl
SELECT n,
       1 + a % 500,
       ((b % 10000000) / 100.0)::numeric(12, 2),
       '客户 ' || lpad((c % 250000)::text, 6, '0'),
       'segment-' || substr('ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', 1 + ((a / 7) % 36)::int, 1),
       date '2020-01-01' + (b % 2192)::int,
       timestamp '2020-01-01 00:00:00' + (c % 189216000) * interval '1 second',
       ((a >> 3) & 1) = 1,
       CASE WHEN a % 10 = 3 THEN NULL ELSE (-1 - ((b >> 5) % 99999))::int END,
       CASE WHEN b % 5 = 1 THEN NULL
            ELSE timestamptz '2020-01-01 00:00:00+00' + ((c * 7) % 189216000) * interval '1 second' END,
       CASE WHEN c % 20 = 7 THEN NULL
            WHEN n % 50 = 0 THEN format('订单 %s, "加急" lane %s', n, a % 97)
            ELSE format('order %s lane %s ref %s', n, a % 97, lpad(to_hex(c), 8, '0')) END,
       (c % 1000003) / 7.0::float8
FROM (SELECT n, a, b, (b * 1103515245 + 12345) % 4294967296 AS c
      FROM (SELECT n, a, (a * 1597334677 + 11) % 4294967296 AS b
            FROM (SELECT n, (n * 2654435761 + 97) % 4294967296 AS a
                  FROM generate_series(1::bigint, :rows::bigint) AS n) s1) s2) s3;
ALTER TABLE :tbl ADD PRIMARY KEY (id);
VACUUM (FREEZE, ANALYZE) :tbl;
