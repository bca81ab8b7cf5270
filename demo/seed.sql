-- Demo database for ferry, built by ferry on first use (datasource `demo`, seed_sql).
-- Orders cover the 120 days before the day the database is built, so the demo tasks that
-- export "yesterday" or "last month" always find rows. Values are deterministic functions
-- of the row number (no random()), so every build has the same shape.

PRAGMA journal_mode = DELETE;

CREATE TABLE regions (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);
INSERT INTO regions (id, name) VALUES
    (1, '华东 East'), (2, '华北 North'), (3, '华南 South'), (4, '西部 West');

CREATE TABLE customers (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    email      TEXT,
    region_id  INTEGER NOT NULL REFERENCES regions (id),
    vip        BOOLEAN NOT NULL,
    signed_up  DATE NOT NULL
);

CREATE TABLE products (
    id         INTEGER PRIMARY KEY,
    sku        TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    unit_price REAL NOT NULL
);

CREATE TABLE orders (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    product_id  INTEGER NOT NULL REFERENCES products (id),
    quantity    INTEGER NOT NULL,
    amount      REAL NOT NULL,
    status      TEXT NOT NULL,
    ordered_at  DATETIME NOT NULL,
    order_date  DATE NOT NULL,
    note        TEXT
);

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40)
INSERT INTO products (id, sku, name, unit_price)
SELECT i,
       printf('SKU-%04d', i),
       CASE i % 5
           WHEN 0 THEN '绿茶 Green tea ' || i
           WHEN 1 THEN 'Notebook A5 #' || i
           WHEN 2 THEN '咖啡豆 Coffee beans ' || i
           WHEN 3 THEN 'USB-C cable ' || i
           ELSE 'Desk lamp ' || i
       END,
       round(5 + (i * 37 % 400) + (i % 7) * 0.25, 2)
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
INSERT INTO customers (id, name, email, region_id, vip, signed_up)
SELECT i,
       CASE i % 4
           WHEN 0 THEN '张伟 ' || i
           WHEN 1 THEN 'Li Na ' || i
           WHEN 2 THEN 'O''Brien & Sons ' || i
           ELSE 'Müller GmbH ' || i
       END,
       CASE WHEN i % 9 = 0 THEN NULL ELSE 'customer' || i || '@example.com' END,
       1 + i % 4,
       i % 6 = 0,
       date('now', '-' || (200 + i) || ' days')
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000)
INSERT INTO orders (id, customer_id, product_id, quantity, amount, status, ordered_at, order_date, note)
SELECT i,
       1 + (i * 7919) % 300,
       1 + (i * 104729) % 40,
       1 + i % 9,
       0, -- filled below from the product price
       CASE WHEN i % 23 = 0 THEN 'refunded' WHEN i % 11 = 0 THEN 'pending' ELSE 'paid' END,
       datetime('now', 'start of day', '-' || (i % 120) || ' days', '+' || ((i * 97) % 86400) || ' seconds'),
       date('now', 'start of day', '-' || (i % 120) || ' days'),
       CASE
           WHEN i % 50 = 0 THEN '=HYPERLINK("http://example.com")'
           WHEN i % 17 = 0 THEN '加急, "quoted", multi
line'
           ELSE NULL
       END
FROM n;

UPDATE orders
SET amount = round(quantity * (SELECT unit_price FROM products WHERE products.id = orders.product_id), 2);

CREATE INDEX orders_date ON orders (order_date);
