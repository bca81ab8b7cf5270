-- Benchmark table for benches/db_export.sh, MariaDB flavour: the same 12 columns and the
-- same rows as benches/db_export_gen_pg.sql (the script copies them over from PostgreSQL
-- with LOAD DATA). __TABLE__ and __FILE__ are replaced by the script.
-- BOOLEAN is TINYINT(1) (ferry and the mariadb CLI write it as 0/1); TIMESTAMP is the
-- instant type (ferry converts it to the task's zone, like PostgreSQL's timestamptz).
SET SESSION time_zone = '+00:00';
SET SESSION unique_checks = 0;
SET SESSION foreign_key_checks = 0;
DROP TABLE IF EXISTS __TABLE__;
CREATE TABLE __TABLE__ (
    id       BIGINT        NOT NULL PRIMARY KEY,
    qty      INT           NOT NULL,
    amount   DECIMAL(12,2) NOT NULL,
    customer VARCHAR(32)   NOT NULL,
    label    VARCHAR(16)   NOT NULL,
    day      DATE          NOT NULL,
    ts       DATETIME      NOT NULL,
    flag     BOOLEAN       NOT NULL,
    delta    INT           NULL,
    paid_at  TIMESTAMP     NULL DEFAULT NULL,
    note     VARCHAR(100)  NULL,
    score    DOUBLE        NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
-- PostgreSQL's COPY text format is LOAD DATA's default format: tab-separated, \N for
-- NULL, backslash escapes.
LOAD DATA LOCAL INFILE '__FILE__' INTO TABLE __TABLE__ CHARACTER SET utf8mb4
    (id, qty, amount, customer, label, day, ts, flag, delta, paid_at, note, score);
ANALYZE TABLE __TABLE__;
