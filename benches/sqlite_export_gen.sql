-- Benchmark table for benches/sqlite_export.sh (performance.md §6.2, SQLite flavour).
-- __ROWS__ is replaced by the row count. Deterministic: every value is a function of the
-- row number n through three integer hashes a, b, c (no random()), so two builds with the
-- same row count are identical. examples/xlsx_baseline.rs (`mem` mode) uses the same
-- formulas; keep them in step.
--
-- 12 mixed columns: id bigint pk, qty int, amount decimal-like REAL (2 decimals),
-- customer text (250k distinct), label text (36 distinct), day DATE, ts DATETIME,
-- flag BOOLEAN (stored 0/1), delta int (negative), sku text (50k distinct),
-- note text (unique), score REAL (full double precision).
PRAGMA journal_mode = OFF;
PRAGMA synchronous = OFF;
PRAGMA cache_size = -262144;

CREATE TABLE bench (
    id       INTEGER PRIMARY KEY,
    qty      INTEGER NOT NULL,
    amount   REAL    NOT NULL,
    customer TEXT    NOT NULL,
    label    TEXT    NOT NULL,
    day      DATE    NOT NULL,
    ts       DATETIME NOT NULL,
    flag     BOOLEAN NOT NULL,
    delta    INTEGER NOT NULL,
    sku      TEXT    NOT NULL,
    note     TEXT    NOT NULL,
    score    REAL    NOT NULL
);

BEGIN;
WITH RECURSIVE
  s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < __ROWS__),
  ha(n, a) AS (SELECT n, (n * 2654435761 + 97) % 4294967296 FROM s),
  hb(n, a, b) AS (SELECT n, a, (a * 1597334677 + 11) % 4294967296 FROM ha),
  hc(n, a, b, c) AS (SELECT n, a, b, (b * 1103515245 + 12345) % 4294967296 FROM hb)
INSERT INTO bench
SELECT n,
       1 + a % 500,
       round((b % 10000000) / 100.0, 2),
       printf('Customer %06d', c % 250000),
       'segment-' || substr('ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789', 1 + (a / 7) % 36, 1),
       date(2458849.5 + b % 2192),                       -- 2020-01-01 + 0..2191 days
       datetime(1577836800 + c % 189216000, 'unixepoch'), -- 2020-01-01 .. 2025-12-31
       (a >> 3) & 1,
       -1 - ((b >> 5) % 99999),
       printf('SKU-%05d', (c >> 3) % 50000),
       printf('order %d lane %d ref %08x', n, a % 97, c),
       (c % 1000003) / 7.0
FROM hc;
COMMIT;
ANALYZE;
