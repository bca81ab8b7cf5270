#!/usr/bin/env python3
"""What users write instead of ferry, for benches/db_export.sh (runs in the bench venv).

    db_export_py.py pandas-xlsx  (pg|mysql) URL QUERY OUT.xlsx
    db_export_py.py pandas-csv   (pg|mysql) URL QUERY OUT.csv
    db_export_py.py xlsxwriter   (pg|mysql) URL QUERY OUT.xlsx

URL is ferry's (postgres://... or mysql://...); the SQLAlchemy / driver URL is derived
from it (psycopg2 for PostgreSQL, PyMySQL for MariaDB).

- pandas-xlsx: `pd.read_sql(query, engine)` then `df.to_excel(path, index=False)`, the
  way the pandas docs and most scripts do it (the default engine: xlsxwriter when it is
  installed, as here). Excel cannot hold time zones, so tz-aware columns are made naive
  (in UTC) first; without that `to_excel` raises "Excel does not support datetimes with
  timezones".
- pandas-csv: `pd.read_sql` then `df.to_csv(path, index=False)`.
- xlsxwriter: XlsxWriter with `constant_memory`, rows from a server-side cursor
  (psycopg2 named cursor, PyMySQL SSCursor) 10,000 at a time, the same cell formats as
  ferry (bold frozen header, yyyy-mm-dd dates, yyyy-mm-dd hh:mm:ss date-times, numbers,
  booleans, text via write_string), a new sheet after 1,048,575 rows.

Prints one JSON object: rows, read_secs, write_secs, total_secs, bytes.
"""

import datetime
import decimal
import json
import os
import sys
import time
from urllib.parse import urlsplit

MAX_DATA_ROWS = 1_048_575


def parse(url):
    u = urlsplit(url)
    return {
        "user": u.username,
        "password": u.password or "",
        "host": u.hostname,
        "port": u.port,
        "db": u.path.lstrip("/"),
    }


def sqlalchemy_url(kind, url):
    p = parse(url)
    if kind == "pg":
        return (f"postgresql+psycopg2://{p['user']}:{p['password']}@{p['host']}:{p['port']}/{p['db']}",
                {"options": "-c TimeZone=UTC", "sslmode": "disable"})
    return (f"mysql+pymysql://{p['user']}:{p['password']}@{p['host']}:{p['port']}/{p['db']}?charset=utf8mb4",
            {"init_command": "SET time_zone = '+00:00'"})


def read_frame(kind, url, query):
    import pandas as pd
    import sqlalchemy

    sa_url, connect_args = sqlalchemy_url(kind, url)
    engine = sqlalchemy.create_engine(sa_url, connect_args=connect_args)
    with engine.connect() as conn:
        df = pd.read_sql(sqlalchemy.text(query), conn)
    engine.dispose()
    return df


def pandas_export(kind, url, query, out, fmt):
    t0 = time.perf_counter()
    df = read_frame(kind, url, query)
    t1 = time.perf_counter()
    if fmt == "xlsx":
        for col in df.columns:
            if getattr(df[col].dtype, "tz", None) is not None:
                df[col] = df[col].dt.tz_convert("UTC").dt.tz_localize(None)
        df.to_excel(out, index=False)
    else:
        df.to_csv(out, index=False)
    t2 = time.perf_counter()
    return len(df), t1 - t0, t2 - t1


def server_cursor(kind, url, query):
    p = parse(url)
    if kind == "pg":
        import psycopg2

        conn = psycopg2.connect(host=p["host"], port=p["port"], user=p["user"],
                                password=p["password"], dbname=p["db"], options="-c TimeZone=UTC",
                                sslmode="disable")
        conn.set_session(readonly=True)
        cur = conn.cursor(name="export")  # server-side cursor
        cur.itersize = 10_000
        cur.execute(query)
        return conn, cur
    import pymysql
    import pymysql.cursors

    conn = pymysql.connect(host=p["host"], port=p["port"], user=p["user"], password=p["password"],
                           database=p["db"], charset="utf8mb4",
                           cursorclass=pymysql.cursors.SSCursor,
                           init_command="SET time_zone = '+00:00'")
    cur = conn.cursor()
    cur.execute(query)
    return conn, cur


def xlsxwriter_export(kind, url, query, out):
    import xlsxwriter

    t0 = time.perf_counter()
    conn, cur = server_cursor(kind, url, query)
    batch = cur.fetchmany(10_000)  # a named psycopg2 cursor knows its columns only now
    names = [d[0] for d in cur.description]
    wb = xlsxwriter.Workbook(out, {"constant_memory": True, "remove_timezone": True,
                                   "tmpdir": os.path.dirname(os.path.abspath(out))})
    bold = wb.add_format({"bold": True})
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    dt_fmt = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    state = {"ws": None, "row": 0, "sheets": 0}

    def new_sheet(header):
        state["sheets"] += 1
        name = "data" if state["sheets"] == 1 else f"data_{state['sheets']}"
        ws = wb.add_worksheet(name)
        for i, h in enumerate(header):
            ws.write_string(0, i, h, bold)
        ws.freeze_panes(1, 0)
        state["ws"], state["row"] = ws, 1

    # One writer per Python type (what a careful hand-written export does).
    def w_num(ws, r, c, v):
        ws.write_number(r, c, v)

    def w_dec(ws, r, c, v):
        ws.write_number(r, c, float(v))

    def w_str(ws, r, c, v):
        ws.write_string(r, c, v)

    def w_bool(ws, r, c, v):
        ws.write_boolean(r, c, v)

    def w_date(ws, r, c, v):
        ws.write_datetime(r, c, v, date_fmt)

    def w_dt(ws, r, c, v):
        ws.write_datetime(r, c, v, dt_fmt)

    writers = {int: w_num, float: w_num, decimal.Decimal: w_dec, str: w_str, bool: w_bool,
               datetime.date: w_date, datetime.datetime: w_dt}
    header = names
    n = 0
    while batch:
        for rec in batch:
            if state["ws"] is None or state["row"] > MAX_DATA_ROWS:
                new_sheet(header)
            ws, r = state["ws"], state["row"]
            for c, v in enumerate(rec):
                if v is not None:
                    writers[type(v)](ws, r, c, v)
            state["row"] += 1
            n += 1
        batch = cur.fetchmany(10_000)
    if state["ws"] is None:
        new_sheet(header)
    cur.close()
    conn.close()
    t1 = time.perf_counter()
    wb.close()  # deflate + zip
    t2 = time.perf_counter()
    return n, t1 - t0, t2 - t1


def main():
    if len(sys.argv) != 6:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    mode, kind, url, query, out = sys.argv[1:]
    t0 = time.perf_counter()
    if mode == "pandas-xlsx":
        rows, read, write = pandas_export(kind, url, query, out, "xlsx")
    elif mode == "pandas-csv":
        rows, read, write = pandas_export(kind, url, query, out, "csv")
    elif mode == "xlsxwriter":
        rows, read, write = xlsxwriter_export(kind, url, query, out)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    total = time.perf_counter() - t0
    print(json.dumps({"mode": mode, "rows": rows, "read_secs": round(read, 3),
                      "write_secs": round(write, 3), "total_secs": round(total, 3),
                      "bytes": os.path.getsize(out)}))


if __name__ == "__main__":
    main()
