-- The example database of a project made by `ferry init`, built by ferry on first use
-- (datasource `local`, seed_sql). Orders cover the 70 days before the day it is built, so
-- "yesterday" and "last month" always have rows. Delete data/example.db to build it again.

CREATE TABLE orders (
    id         INTEGER PRIMARY KEY,
    order_date DATE NOT NULL,
    ordered_at TIMESTAMP NOT NULL,
    customer   TEXT NOT NULL,
    product    TEXT NOT NULL,
    quantity   INTEGER NOT NULL,
    amount     REAL NOT NULL
);

WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 70 * 8 - 1)
INSERT INTO orders (order_date, ordered_at, customer, product, quantity, amount)
SELECT date('now', '-' || (i / 8 + 1) || ' days'),
       datetime(date('now', '-' || (i / 8 + 1) || ' days'), '+' || (8 + i % 8) || ' hours',
                '+' || (i * 7 % 60) || ' minutes'),
       'Customer ' || (i % 23 + 1),
       CASE i % 4 WHEN 0 THEN 'Tea' WHEN 1 THEN 'Coffee' WHEN 2 THEN 'Cocoa' ELSE 'Juice' END,
       i % 5 + 1,
       ROUND((i % 5 + 1) * (CASE i % 4 WHEN 0 THEN 3.5 WHEN 1 THEN 4.2 WHEN 2 THEN 2.9 ELSE 2.4 END), 2)
FROM n;
