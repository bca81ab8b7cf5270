#!/usr/bin/env python3
"""Checks and report for benches/db_export.sh (standard library only).

Reads OUT/results/NAME.{runs,cmd,meta,stdout,lines}, checks the outputs in OUT/out, and
writes OUT/results.md (markdown, ready to paste into docs/benchmarks.md) and
OUT/results.json.
"""

import argparse
import csv
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import zipfile

p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--sizes", type=int, nargs="+", required=True)
p.add_argument("--check-values", default="1")
args = p.parse_args()
OUT = args.out
RES = os.path.join(OUT, "results")
S = os.path.join(OUT, "out")
MAIN = args.sizes[0]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIGS = args.sizes[1:]
csv.field_size_limit(1 << 24)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception:
        return ""


def read(name, default=""):
    f = os.path.join(RES, name)
    return open(f).read().strip() if os.path.exists(f) else default


# ------------------------------------------------------------------ measurements
def last_json(path):
    try:
        return json.loads(open(path).read().strip().splitlines()[-1])
    except Exception:
        return None


def load(name):
    runs = [json.loads(line) for line in open(os.path.join(RES, name + ".runs")) if line.strip()]
    timed = [r for r in runs if not r["warm"] and r["rc"] == 0]
    srv, rows = read(name + ".meta").split()
    m = {
        "name": name,
        "server": srv,
        "rows": int(rows),
        "cmd": read(name + ".cmd"),
        "runs": len(timed),
        "failed": sum(1 for r in runs if r["rc"] != 0),
        "all": runs,
    }
    m["json"] = last_json(os.path.join(RES, name + ".stdout"))
    if not timed:
        return m
    wall = [r["wall"] for r in timed]
    m.update({
        "wall": wall,
        "wall_median": statistics.median(wall),
        "wall_min": min(wall),
        "wall_max": max(wall),
        "user_median": statistics.median(r["user"] for r in timed),
        "sys_median": statistics.median(r["sys"] for r in timed),
        "server_cpu_median": statistics.median(r["server_cpu"] for r in timed),
        "rss_max_mb": max(r["rss_kb"] for r in runs if r["rc"] == 0) / 1024,
        "load_median": statistics.median(r["load1"] for r in timed),
        "load_min": min(r["load1"] for r in timed),
        "load_max": max(r["load1"] for r in timed),
        "rustc_max": max(r["rustc"] for r in timed),
    })
    return m


M = {}
for f in sorted(os.listdir(RES)):
    if f.endswith(".runs"):
        M[f[:-5]] = load(f[:-5])


def ok(name):
    return name in M and M[name]["runs"] > 0


# ------------------------------------------------------------------ checks
checks = []


def check(label, good, detail=""):
    checks.append({"check": label, "ok": bool(good), "detail": detail})


def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 22)
            if not b:
                return n
            n += b.count(b"\n")


for name, m in sorted(M.items()):
    if m["failed"]:
        check(f"`{name}`: every run exited with status 0", False, f"{m['failed']} run(s) failed")
    j = m.get("json") or {}
    want = m["rows"]
    if "_ferry_" in name and "_count_" not in name:
        check(f"`{name}`: ferry JSON status succeeded, rows = {want:,}",
              j.get("status") == "succeeded" and j.get("rows") == want,
              f"status={j.get('status')} rows={j.get('rows')}")
    elif name.startswith(("xlsx_", "diag_pg_fetch", "diag_my_fetch", "diag_pg_copy", "py_")) and j:
        check(f"`{name}`: the program reports rows = {want:,}", j.get("rows") == want, f"rows={j.get('rows')}")

# CSV line counts (header + rows; no value in the data contains a newline)
lines = {}
for label, path in [("psql \\copy", "psql.csv"), ("psql COPY TO STDOUT", "psql_stdout.csv"),
                    ("COPY via tokio-postgres", "rust_copy.csv"), ("ferry (PostgreSQL)", "ferry_pg.csv"),
                    ("mariadb CLI (TCP)", "mariadb.tsv"), ("mariadb CLI (socket)", "mariadb_socket.tsv"),
                    ("ferry (MariaDB)", "ferry_my.csv"),
                    ("pandas to_csv (PostgreSQL)", f"py_pandas_csv_pg_{MAIN}.csv"),
                    ("pandas to_csv (MariaDB)", f"py_pandas_csv_my_{MAIN}.csv")]:
    fp = os.path.join(S, path)
    if os.path.exists(fp):
        lines[label] = count_lines(fp)
        check(f"{label} output has header + {MAIN:,} lines", lines[label] == MAIN + 1, f"{lines[label]:,} lines")
K_COPY = "psql \\copy"
if K_COPY in lines and "ferry (PostgreSQL)" in lines:
    check("ferry's PostgreSQL CSV and psql's have the same number of lines",
          lines[K_COPY] == lines["ferry (PostgreSQL)"],
          f"{lines['ferry (PostgreSQL)']:,} vs {lines[K_COPY]:,}")
for name in M:
    lf = os.path.join(RES, name + ".lines")
    if os.path.exists(lf):
        n = int(open(lf).read().strip())
        check(f"`{name}` output has header + {M[name]['rows']:,} lines", n == M[name]["rows"] + 1, f"{n:,} lines")

# CSV values, column by column.
COLS = ["id", "qty", "amount", "customer", "label", "day", "ts", "flag", "delta", "paid_at", "note", "score"]
FLOAT_COL = COLS.index("score")


def mariadb_tsv(path):
    """Rows of `mariadb --batch` output: tab-separated, backslash escapes, NULL as `NULL`."""
    esc = {"t": "\t", "n": "\n", "\\": "\\", "0": "\0", "r": "\r"}
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            out = []
            for x in fields:
                if x == "NULL":
                    out.append(None)
                elif "\\" in x:
                    out.append(re.sub(r"\\(.)", lambda mm: esc.get(mm.group(1), mm.group(1)), x))
                else:
                    out.append(x)
            yield out


def ferry_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            yield [None if x == "" else x for x in row]


def psql_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            yield [None if x == "" else x for x in row]


def compare(label, a_rows, b_rows, norm_a, norm_b, note):
    """Compares two row streams after normalising; floats within 1e-15 relative."""
    diffs, first, n = {}, None, 0
    ha, hb = next(a_rows), next(b_rows)
    for a, b in zip(a_rows, b_rows):
        n += 1
        a, b = norm_a(a), norm_b(b)
        if a == b:
            continue
        for i, (x, y) in enumerate(zip(a, b)):
            if x == y:
                continue
            if i == FLOAT_COL and x is not None and y is not None:
                fx, fy = float(x), float(y)
                if abs(fx - fy) <= 1e-15 * max(abs(fx), abs(fy)):
                    continue
            diffs[COLS[i]] = diffs.get(COLS[i], 0) + 1
            if first is None:
                first = (n, COLS[i], x, y)
        if len(a) != len(b):
            diffs["width"] = diffs.get("width", 0) + 1
    check(f"{label}: same values in all {n:,} rows × 12 columns ({note})", not diffs and n == MAIN,
          f"headers {ha} / {hb}; differences per column: {diffs}, first: {first}" if diffs or n != MAIN
          else f"headers: `{','.join(x or '' for x in ha)}` / `{','.join(x or '' for x in hb)}`")


def pg_norm(r):
    # psql writes booleans t/f and timestamptz as +00; ferry true/false and +00:00.
    r = list(r)
    r[7] = {"t": "true", "f": "false"}.get(r[7], r[7])
    if r[9] is not None and re.search(r"[+-]\d\d$", r[9]):
        r[9] += ":00"
    return r


def ident(r):
    return list(r)


def my_norm(r):
    # the mariadb CLI prints TIMESTAMP in the session zone (UTC here) without an offset.
    r = list(r)
    if r[9] is not None and not r[9].endswith("+00:00"):
        r[9] += "+00:00"
    return r


def flag_num(r):
    r = list(r)
    r[7] = {"true": "1", "false": "0"}.get(r[7], r[7])
    return r


if args.check_values == "1":
    fp, pp = os.path.join(S, "ferry_pg.csv"), os.path.join(S, "psql.csv")
    if os.path.exists(fp) and os.path.exists(pp):
        compare("CSV: ferry (PostgreSQL) vs psql \\copy", ferry_csv(fp), psql_csv(pp), ident, pg_norm,
                "psql's t/f = true/false and +00 = +00:00")
    ps = os.path.join(S, "psql_stdout.csv")
    if os.path.exists(ps) and os.path.exists(pp):
        check("psql COPY TO STDOUT writes the same bytes as psql \\copy",
              sh(f"cmp -s '{ps}' '{pp}' && echo same") == "same")
    rc = os.path.join(S, "rust_copy.csv")
    if os.path.exists(rc) and os.path.exists(pp):
        check("COPY through tokio-postgres writes the same bytes as psql \\copy",
              sh(f"cmp -s '{rc}' '{pp}' && echo same") == "same")
    fm, mt = os.path.join(S, "ferry_my.csv"), os.path.join(S, "mariadb.tsv")
    if os.path.exists(fm) and os.path.exists(mt):
        compare("CSV: ferry (MariaDB) vs mariadb --batch", ferry_csv(fm), mariadb_tsv(mt), ident, my_norm,
                "TSV unescaped, NULL = empty, TIMESTAMP in UTC, DOUBLE within 1e-15")
    if os.path.exists(fm) and os.path.exists(fp):
        compare("same data in both servers: ferry's MariaDB CSV vs its PostgreSQL CSV", ferry_csv(fm),
                ferry_csv(fp), ident, flag_num, "BOOLEAN is TINYINT(1) in MariaDB: 1/0 = true/false")


def sheet_stats(path):
    """Rows, cells and the sha256 of <sheetData>..</sheetData> of every worksheet."""
    res = {"rows": 0, "cells": 0, "sheets": 0, "sheetdata_sha": []}
    hold = 1 << 16
    with zipfile.ZipFile(path) as z:
        names = sorted((n for n in z.namelist() if re.match(r"xl/worksheets/sheet\d+\.xml$", n)),
                       key=lambda s: int(re.findall(r"\d+", s)[0]))
        for name in names:
            res["sheets"] += 1
            h = hashlib.sha256()
            tail, pending = b"", None
            with z.open(name) as f:
                while True:
                    chunk = f.read(1 << 22)
                    if not chunk:
                        break
                    both = tail + chunk
                    res["rows"] += both.count(b"<row ") - tail.count(b"<row ")
                    res["cells"] += both.count(b"<c ") - tail.count(b"<c ")
                    tail = chunk[-8:]
                    if pending is None:
                        i = chunk.find(b"<sheetData")
                        pending = chunk[i:] if i >= 0 else b""
                    else:
                        pending += chunk
                    if len(pending) > hold:
                        h.update(pending[:-hold])
                        pending = pending[-hold:]
            j = (pending or b"").rfind(b"</sheetData>")
            h.update(pending[: j + len(b"</sheetData>")] if j >= 0 else (pending or b""))
            res["sheetdata_sha"].append(h.hexdigest()[:16])
    return res


xl = {}
for label, path in [("ferry_pg", "ferry_pg.xlsx"), ("baseline_pg", "baseline_pg.xlsx"),
                    ("ferry_my", "ferry_my.xlsx"), ("baseline_my", "baseline_my.xlsx"),
                    ("xlsxwriter_pg", f"py_xlsxwriter_pg_{MAIN}.xlsx"), ("xlsxwriter_my", f"py_xlsxwriter_my_{MAIN}.xlsx"),
                    ("pandas_pg", f"py_pandas_xlsx_pg_{MAIN}.xlsx"), ("pandas_my", f"py_pandas_xlsx_my_{MAIN}.xlsx")]:
    fp = os.path.join(S, path)
    if os.path.exists(fp):
        st = sheet_stats(fp)
        xl[label] = st
        sheets = (MAIN + 1_048_574) // 1_048_575
        check(f"{label} xlsx: {MAIN + sheets:,} rows (header per sheet + data) in {sheets} sheet(s)",
              st["rows"] == MAIN + sheets and st["sheets"] == sheets,
              f"{st['rows']:,} rows, {st['cells']:,} cells (NULLs are no cell), {st['sheets']} sheet(s)")
for srv in ["pg", "my"]:
    a, b = xl.get(f"ferry_{srv}"), xl.get(f"baseline_{srv}")
    if a and b:
        check(f"ferry and the Rust baseline write byte-identical <sheetData> ({'PostgreSQL' if srv == 'pg' else 'MariaDB'})",
              a["sheetdata_sha"] == b["sheetdata_sha"], f"{a['sheetdata_sha']} vs {b['sheetdata_sha']}")
    c = xl.get(f"xlsxwriter_{srv}")
    if a and c:
        check(f"XlsxWriter writes as many cells as ferry ({srv})", a["cells"] == c["cells"],
              f"{c['cells']:,} vs {a['cells']:,}")


# ------------------------------------------------------------------ environment
def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def mem_total():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "?"


def lock_versions(names):
    lf = os.path.join(RES, "Cargo.lock")
    text = open(lf).read() if os.path.exists(lf) else ""
    out = {}
    for n in names:
        vs = re.findall(r'name = "' + re.escape(n) + r'"\nversion = "([^"]+)"', text)
        if vs:
            out[n] = ", ".join(vs)
    return out


servers = dict(line.split("=", 1) for line in read("server_versions").splitlines() if "=" in line)
env = {
    "date": sh("date -u +%Y-%m-%dT%H:%MZ"),
    "ferry_code": read("ferry_code", "?"),
    "nproc": sh("nproc"),
    "cpu": cpu_model(),
    "memory": mem_total(),
    "kernel": platform.release(),
    "fs": sh(f"df -T '{OUT}' | awk 'NR==2 {{print $2}}'"),
    "rustc": sh("rustc --version"),
    "servers": servers,
    "python": read("py_versions").replace("\n", ", "),
    "crates": lock_versions(["tokio-postgres", "mysql_async", "rust_xlsxwriter", "csv", "zip", "zlib-rs",
                             "flate2", "tokio"]),
    "uptime_start": read("uptime_start"),
    "uptime_end": read("uptime_end"),
    "load_secs_pg": read("load_secs_pg").replace("\n", ", "),
    "load_secs_mariadb": read("load_secs_mariadb").replace("\n", ", "),
    "table_sizes": {s: (read(f"table_size_pg_{s}"), read(f"table_size_mariadb_{s}")) for s in args.sizes},
    "plan_pg": read(f"plan_pg_{MAIN}.txt"),
}


# ------------------------------------------------------------------ report
def human(n):
    return f"{n / 1e6:g}M" if n >= 10**6 else f"{n / 1e3:g}k" if n >= 1000 else str(n)


def mbytes(b):
    return f"{b / 1e6:,.0f} MB" if b is not None else "—"


def out_size(name):
    j = M[name].get("json") or {}
    if j.get("files"):
        return sum(f.get("bytes", 0) for f in j["files"])
    if "bytes" in j:
        return j["bytes"]
    fixed = {f"csv_pg_psql_copy_{MAIN}": "psql.csv", f"diag_pg_psql_stdout_{MAIN}": "psql_stdout.csv",
             f"csv_my_cli_{MAIN}": "mariadb.tsv", f"diag_my_cli_socket_{MAIN}": "mariadb_socket.tsv"}
    if name in fixed and os.path.exists(os.path.join(S, fixed[name])):
        return os.path.getsize(os.path.join(S, fixed[name]))
    b = read(name + ".bytes")
    return int(b) if b else None


# name pattern (without the _ROWS suffix) -> (group, label, baseline pattern, short baseline label)
ROLE = [
    ("csv_pg_psql_copy", "CSV · PostgreSQL", "baseline: `psql -c \"\\copy (query) to 'file' csv header\"`", None, None),
    ("diag_pg_psql_stdout", "CSV · PostgreSQL", "diag: `psql -c \"COPY (query) TO STDOUT (FORMAT csv, HEADER)\" > file`", "csv_pg_psql_copy", "\\copy"),
    ("diag_pg_copy_rust", "CSV · PostgreSQL", "diag: same COPY through tokio-postgres `copy_out` into a file (`db_xlsx_baseline pg-copy`)", "csv_pg_psql_copy", "\\copy"),
    ("csv_pg_ferry", "CSV · PostgreSQL", "**ferry** `run` (CSV task)", "csv_pg_psql_copy", "\\copy"),
    ("py_pandas_csv_pg", "CSV · PostgreSQL", "Python: pandas `read_sql` (SQLAlchemy + psycopg2) + `to_csv`", "csv_pg_psql_copy", "\\copy"),
    ("diag_pg_fetch", "CSV · PostgreSQL", "diag: fetch floor, tokio-postgres `query_raw` + decode every value, no output", "csv_pg_psql_copy", "\\copy"),
    ("diag_pg_ferry_count", "CSV · PostgreSQL", "diag: **ferry** `run` with `SELECT count(*) FROM (query) q` (server work, no transfer)", "csv_pg_psql_copy", "\\copy"),
    ("diag_pg_ferry_one", "CSV · PostgreSQL", "diag: **ferry** `run` with `query LIMIT 1` (fixed cost per run)", None, None),
    ("diag_pg_ferry_c1000", "CSV · PostgreSQL", "diag: **ferry** `run` (CSV task) with `chunk_rows: 1000` instead of 10000", "csv_pg_psql_copy", "\\copy"),
    ("diag_pg_ferry_arena2", "CSV · PostgreSQL", "diag: **ferry** `run` (CSV task) with `MALLOC_ARENA_MAX=2`", "csv_pg_psql_copy", "\\copy"),
    ("csv_my_cli", "CSV · MariaDB", "baseline: `mariadb --quick --batch -e 'query' > file` (TCP, TSV)", None, None),
    ("diag_my_cli_socket", "CSV · MariaDB", "diag: the same over the unix socket", "csv_my_cli", "CLI"),
    ("csv_my_ferry", "CSV · MariaDB", "**ferry** `run` (CSV task)", "csv_my_cli", "CLI"),
    ("py_pandas_csv_my", "CSV · MariaDB", "Python: pandas `read_sql` (SQLAlchemy + PyMySQL) + `to_csv`", "csv_my_cli", "CLI"),
    ("diag_my_fetch", "CSV · MariaDB", "diag: fetch floor, mysql_async `exec_iter` (binary) + decode, no output", "csv_my_cli", "CLI"),
    ("diag_my_ferry_count", "CSV · MariaDB", "diag: **ferry** `run` with `SELECT count(*) FROM (query) q`", "csv_my_cli", "CLI"),
    ("diag_my_ferry_one", "CSV · MariaDB", "diag: **ferry** `run` with `query LIMIT 1` (fixed cost per run)", None, None),
    ("diag_my_ferry_c1000", "CSV · MariaDB", "diag: **ferry** `run` (CSV task) with `chunk_rows: 1000` instead of 10000", "csv_my_cli", "CLI"),
    ("diag_my_ferry_arena2", "CSV · MariaDB", "diag: **ferry** `run` (CSV task) with `MALLOC_ARENA_MAX=2`", "csv_my_cli", "CLI"),
    ("xlsx_pg_baseline", "XLSX · PostgreSQL", "baseline: bare rust_xlsxwriter constant_memory (`db_xlsx_baseline pg`, tokio-postgres, one thread)", None, None),
    ("xlsx_pg_ferry", "XLSX · PostgreSQL", "**ferry** `run` (XLSX task)", "xlsx_pg_baseline", "baseline"),
    ("diag_pg_xlsx_ferry_c1000", "XLSX · PostgreSQL", "diag: **ferry** `run` (XLSX task) with `chunk_rows: 1000`", "xlsx_pg_baseline", "baseline"),
    ("py_xlsxwriter_pg", "XLSX · PostgreSQL", "Python: XlsxWriter `constant_memory` from a psycopg2 server-side cursor", "xlsx_pg_baseline", "baseline"),
    ("py_pandas_xlsx_pg", "XLSX · PostgreSQL", "Python: pandas `read_sql` + `to_excel` (default engine: xlsxwriter)", "xlsx_pg_baseline", "baseline"),
    ("xlsx_my_baseline", "XLSX · MariaDB", "baseline: bare rust_xlsxwriter constant_memory (`db_xlsx_baseline mysql`, mysql_async, one thread)", None, None),
    ("xlsx_my_ferry", "XLSX · MariaDB", "**ferry** `run` (XLSX task)", "xlsx_my_baseline", "baseline"),
    ("py_xlsxwriter_my", "XLSX · MariaDB", "Python: XlsxWriter `constant_memory` from a PyMySQL server-side cursor (SSCursor)", "xlsx_my_baseline", "baseline"),
    ("py_pandas_xlsx_my", "XLSX · MariaDB", "Python: pandas `read_sql` + `to_excel` (default engine: xlsxwriter)", "xlsx_my_baseline", "baseline"),
]
FERRY_OF = {"py_pandas_csv_pg": "csv_pg_ferry", "py_pandas_csv_my": "csv_my_ferry",
            "py_xlsxwriter_pg": "xlsx_pg_ferry", "py_pandas_xlsx_pg": "xlsx_pg_ferry",
            "py_xlsxwriter_my": "xlsx_my_ferry", "py_pandas_xlsx_my": "xlsx_my_ferry"}


def cpu_total(m):
    """Client user + sys + database server CPU (median of each)."""
    return m["user_median"] + m["sys_median"] + m["server_cpu_median"]


def sec(x):
    return f"{x:.2f} s" if x < 100 else f"{x:.0f} s"


md = []
md.append(f"Run {env['date']}; ferry code: {env['ferry_code']}.\n")
md.append("| Group | Contender | Rows | Runs | Wall median (min – max) | Rows/s | Ratio to baseline: wall median / median (min / min); total CPU (client + server) | Client CPU user + sys | DB server CPU | Peak RSS | Output | Load 1-min at run start, median (min – max); other rustc |")
md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for size in args.sizes:
    for pat, group, label, base, blabel in ROLE:
        name = f"{pat}_{size}"
        if name not in M:
            continue
        m = M[name]
        if not m["runs"]:
            md.append(f"| {group} | {label} | {m['rows']:,} | 0 | **failed** ({m['failed']} run(s)) | | | | | | | |")
            continue
        bname = f"{base}_{size}" if base else None
        ratio = "—"
        if bname and ok(bname):
            ratio = f"{m['wall_median'] / M[bname]['wall_median']:.2f}× {blabel}"
            if m["runs"] > 1 and M[bname]["runs"] > 1:
                ratio += f" (min/min {m['wall_min'] / M[bname]['wall_min']:.2f}×)"
            ratio += f"; CPU {cpu_total(m) / cpu_total(M[bname]):.2f}×"
        fer = FERRY_OF.get(pat)
        if fer and ok(f"{fer}_{size}"):
            ratio += f"; ferry is {m['wall_median'] / M[f'{fer}_{size}']['wall_median']:.1f}× faster"
        rate = f"{m['rows'] / m['wall_median'] / 1000:,.0f} k" if m["rows"] > 1 else "—"
        md.append(
            f"| {group} | {label} | {m['rows']:,} | {m['runs']} | {sec(m['wall_median'])} ({sec(m['wall_min'])} – {sec(m['wall_max'])}) | "
            f"{rate} | {ratio} | {m['user_median']:.2f} + {m['sys_median']:.2f} s | {m['server_cpu_median']:.2f} s | "
            f"{m['rss_max_mb']:.1f} MB | {mbytes(out_size(name))} | {m['load_median']:.2f} ({m['load_min']:.2f} – {m['load_max']:.2f}); {m['rustc_max']} |")
md.append("")

# splits printed by the programs themselves
splits = []
for name, m in M.items():
    j = m.get("json") or {}
    if "rows_secs" in j and "save_secs" in j and m["runs"]:
        splits.append(f"| `{name}` | {j['rows_secs']:.2f} s | {j['save_secs']:.2f} s | {j['total_secs']:.2f} s |")
    elif "read_secs" in j:
        splits.append(f"| `{name}` | {j['read_secs']:.2f} s | {j['write_secs']:.2f} s | {j['total_secs']:.2f} s |")
if splits:
    md.append("Time split printed by the programs themselves (last run). Rust baseline and XlsxWriter: "
              "rows phase (fetch + cells into the constant-memory temp file) | save (deflate + zip); "
              "pandas: `read_sql` | `to_excel`/`to_csv`:\n")
    md.append("| Program | Rows / read phase | Save / write phase | Total (in-process) |")
    md.append("|---|---:|---:|---:|")
    md.extend(sorted(splits))
    md.append("")

# targets
targets = []


def target(label, value, good):
    targets.append((label, value, good))


def ratio(a, b):
    return M[a]["wall_median"] / M[b]["wall_median"] if ok(a) and ok(b) else None


def min_ratio(a, b):
    return f" (min/min {M[a]['wall_min'] / M[b]['wall_min']:.2f}×)" if M[a]["runs"] > 1 and M[b]["runs"] > 1 else ""


for size in args.sizes:
    a, b = f"csv_pg_ferry_{size}", f"csv_pg_psql_copy_{size}"
    r = ratio(a, b)
    if r:
        target(f"CSV from PostgreSQL ≤ 1.3× `psql \\copy … csv header` ({human(size)} rows)", f"{r:.2f}×{min_ratio(a, b)}", r <= 1.3)
        target(f"stretch: CSV from PostgreSQL ≤ 1.1× `psql \\copy` ({human(size)} rows)", f"{r:.2f}×{min_ratio(a, b)}", r <= 1.1)
    a, b = f"csv_my_ferry_{size}", f"csv_my_cli_{size}"
    r = ratio(a, b)
    if r:
        target(f"CSV from MariaDB ≤ 1.0× `mariadb --quick --batch` ({human(size)} rows)", f"{r:.2f}×{min_ratio(a, b)}", r <= 1.0)
    for srv, sname in [("pg", "PostgreSQL"), ("my", "MariaDB")]:
        a, b = f"xlsx_{srv}_ferry_{size}", f"xlsx_{srv}_baseline_{size}"
        r = ratio(a, b)
        if r:
            target(f"XLSX from {sname} ≤ 1.15× bare rust_xlsxwriter constant_memory ({human(size)} rows)", f"{r:.2f}×{min_ratio(a, b)}", r <= 1.15)
for fmt in ["csv", "xlsx"]:
    for srv, sname in [("pg", "PostgreSQL"), ("my", "MariaDB")]:
        vals = [(size, M[f"{fmt}_{srv}_ferry_{size}"]["rss_max_mb"]) for size in args.sizes if ok(f"{fmt}_{srv}_ferry_{size}")]
        for size, v in vals:
            target(f"{fmt.upper()} from {sname}: ferry peak RSS ≤ 64 MB ({human(size)} rows)", f"{v:.1f} MB", v <= 64)
        if len(vals) > 1:
            lo, hi = vals[0][1], max(v for _, v in vals)
            g = hi / lo - 1
            target(f"{fmt.upper()} from {sname}: peak RSS flat from {human(vals[0][0])} to {human(vals[-1][0])} rows (within 10 %)",
                   " → ".join(f"{v:.1f}" for _, v in vals) + f" MB ({g * 100:+.1f} %)", abs(g) <= 0.10)
md.append("| Target | Measured | Met |")
md.append("|---|---:|:---:|")
for label, value, good in targets:
    md.append(f"| {label} | {value} | {'yes' if good else '**no**'} |")
md.append("")

md.append("| Correctness check | Result | Detail |")
md.append("|---|:---:|---|")
for c in checks:
    md.append(f"| {c['check']} | {'pass' if c['ok'] else '**FAIL**'} | {c['detail']} |")
md.append("")

md.append("Environment:\n")
md.append(f"- machine: {env['nproc']} CPUs `{env['cpu']}`, {env['memory']} RAM, Linux {env['kernel']}, outputs on {env['fs']}")
md.append(f"- `uptime` before: `{env['uptime_start']}`; after: `{env['uptime_end']}`")
md.append(f"- servers: PostgreSQL {servers.get('pg_version', '?')} (shared_buffers {servers.get('pg_shared_buffers', '?')}, "
          f"work_mem {servers.get('pg_work_mem', '?')}, fsync off), MariaDB {servers.get('mariadb_version', '?')} "
          f"(innodb_buffer_pool_size raised to {servers.get('mariadb_innodb_buffer_pool_size', '?')}); both on 127.0.0.1, "
          f"started by scripts/test-services.sh")
md.append(f"- clients: {servers.get('psql', '?')}; {servers.get('mariadb_client', '?')}; {env['rustc']}; Python venv: {env['python']}")
md.append("- crates (Cargo.lock): " + ", ".join(f"{k} {v}" for k, v in env["crates"].items()))
md.append("- tables: " + "; ".join(f"{human(s)} rows: PostgreSQL {a}, MariaDB {b}" for s, (a, b) in env["table_sizes"].items())
          + f"; load times (s): PostgreSQL `{env['load_secs_pg'] or 'reused'}`, MariaDB `{env['load_secs_mariadb'] or 'reused'}`")
md.append(f"- PostgreSQL plan for the {human(MAIN)} query: `{' / '.join(x.strip() for x in env['plan_pg'].splitlines()[2:-1])}`")
md.append("")
md.append("Commands, as timed (`/usr/bin/time -f '%e %U %S %M'` wraps each; `$OUT` = bench-out/db_export):\n")
md.append("```sh")
for size in args.sizes:
    for pat, *_ in ROLE:
        name = f"{pat}_{size}"
        if name in M:
            cmd = M[name]["cmd"].replace(OUT, "$OUT").replace(ROOT + "/", "")
            cmd = re.sub(r"/tmp/ferry-services\.[^/']+/", "$SERVICES_TMP/", cmd)
            cmd = re.sub(r"://ferry:ferry@127\.0\.0\.1:\d+", "://ferry:***@127.0.0.1:PORT", cmd)
            cmd = re.sub(r"-P \d+", "-P PORT", cmd).replace("-pferry", "-p***")
            md.append(f"# {name}")
            md.append(cmd)
md.append("```")

perf = []
for srv in ["pg", "my"]:
    for kind, what in [("system", "system-wide, by thread name and binary"), ("ferry", "ferry's threads only, by symbol")]:
        t = read(f"perf_{srv}_csv_{kind}.txt")
        t = "\n".join(re.sub(r"\s+-\s+-\s*$", "", line).rstrip() for line in t.splitlines())
        if t:
            perf.append(f"perf, one ferry CSV run from {'PostgreSQL' if srv == 'pg' else 'MariaDB'} ({what}):\n\n```\n{t}\n```\n")
open(os.path.join(OUT, "results.md"), "w").write("\n".join(md) + "\n")
open(os.path.join(OUT, "perf.md"), "w").write("\n".join(perf) + "\n")
json.dump({"env": env, "measurements": M, "checks": checks,
           "targets": [{"target": a, "value": b, "met": c} for a, b, c in targets]},
          open(os.path.join(OUT, "results.json"), "w"), indent=1)
print("\n".join(md))
failed = [c for c in checks if not c["ok"]]
if failed:
    print(f"\n{len(failed)} correctness check(s) FAILED", file=sys.stderr)
    sys.exit(1)
