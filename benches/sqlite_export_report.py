#!/usr/bin/env python3
"""Checks and report for benches/sqlite_export.sh (standard library only).

Reads OUT/results/NAME.{time,json,stdout,cmd,warmup}, checks the outputs in OUT/out, and
writes OUT/results.md (markdown tables, ready to paste into docs/benchmarks.md) and
OUT/results.json.
"""

import argparse
import csv
import glob
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
p.add_argument("--rows", type=int, required=True)
p.add_argument("--big-rows", type=int, default=0)
p.add_argument("--runs", type=int, default=5)
p.add_argument("--check-values", default="1")
p.add_argument("--hyperfine", default="")
args = p.parse_args()
OUT = args.out
RES = os.path.join(OUT, "results")
S = os.path.join(OUT, "out")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception:
        return ""


# ------------------------------------------------------------------ measurements
def load(name):
    tf = os.path.join(RES, name + ".time")
    if not os.path.exists(tf):
        return None
    warm = int(open(os.path.join(RES, name + ".warmup")).read().strip() or 0)
    lines = []
    for line in open(tf):
        parts = line.split()
        if len(parts) == 4:
            try:
                lines.append([float(x) for x in parts])
            except ValueError:
                pass
    timed = lines[warm:] if len(lines) > warm else lines
    m = {
        "name": name,
        "cmd": open(os.path.join(RES, name + ".cmd")).read().strip(),
        "runs": len(timed),
        "wall": [t[0] for t in timed],
        "cpu": [t[1] + t[2] for t in timed],
        "user": [t[1] for t in timed],
        "sys": [t[2] for t in timed],
        "rss_kb": [t[3] for t in lines],  # peak over every run, warm-up included
    }
    hf = os.path.join(RES, name + ".json")
    if os.path.exists(hf):
        times = json.load(open(hf))["results"][0]["times"]
        m["wall"] = times
    so = os.path.join(RES, name + ".stdout")
    if os.path.exists(so):
        try:
            m["json"] = json.loads(open(so).read().strip().splitlines()[-1])
        except Exception:
            m["json"] = None
    m["wall_median"] = statistics.median(m["wall"])
    m["wall_min"] = min(m["wall"])
    m["cpu_median"] = statistics.median(m["cpu"])
    m["user_median"] = statistics.median(m["user"])
    m["sys_median"] = statistics.median(m["sys"])
    m["rss_max_mb"] = max(m["rss_kb"]) / 1024
    m["rss_median_mb"] = statistics.median(m["rss_kb"]) / 1024
    return m


M = {}
for f in sorted(glob.glob(os.path.join(RES, "*.time"))):
    name = os.path.basename(f)[:-5]
    m = load(name)
    if m:
        M[name] = m


def out_size(name):
    m = M.get(name)
    if m and m.get("json"):
        j = m["json"]
        if "files" in j and j["files"]:
            return j["files"][0]["bytes"]
        if "bytes" in j:
            return j["bytes"]
    fixed = {"csv_sqlite3": "sqlite3.csv"}
    if name in fixed and os.path.exists(os.path.join(S, fixed[name])):
        return os.path.getsize(os.path.join(S, fixed[name]))
    return None


# ------------------------------------------------------------------ checks
checks = []


def check(label, ok, detail=""):
    checks.append({"check": label, "ok": bool(ok), "detail": detail})


def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 22)
            if not b:
                return n
            n += b.count(b"\n")


for name in ["csv_ferry", "xlsx_ferry", "big_csv_ferry", "big_xlsx_ferry"]:
    m = M.get(name)
    if not m:
        continue
    j = m.get("json") or {}
    want = args.big_rows if name.startswith("big_") else args.rows
    check(f"`{name}`: ferry JSON status succeeded, rows = {want:,}",
          j.get("status") == "succeeded" and j.get("rows") == want,
          f"status={j.get('status')} rows={j.get('rows')}")

ferry_csv = os.path.join(S, "ferry.csv")
sqlite_csv = os.path.join(S, "sqlite3.csv")
csv_lines = {}
for label, path in [("ferry", ferry_csv), ("sqlite3", sqlite_csv)]:
    if os.path.exists(path):
        csv_lines[label] = count_lines(path)
        check(f"{label} CSV has header + {args.rows:,} lines", csv_lines[label] == args.rows + 1,
              f"{csv_lines[label]:,} lines")
if len(csv_lines) == 2:
    check("both CSVs have the same number of lines", csv_lines["ferry"] == csv_lines["sqlite3"],
          f"{csv_lines['ferry']:,} vs {csv_lines['sqlite3']:,}")

value_diffs = None
if args.check_values == "1" and os.path.exists(ferry_csv) and os.path.exists(sqlite_csv):
    # Same values, column by column. Known formatting differences: flag is true/false in
    # ferry and 1/0 in sqlite3; REALs are shortest round-trip in ferry and %!.15g in sqlite3.
    INTS = {0, 1, 8}
    REALS = {2, 11}
    FLAG = 7
    value_diffs = {}
    first = None
    n = 0
    with open(ferry_csv, newline="") as fa, open(sqlite_csv, newline="") as fb:
        ra, rb = csv.reader(fa), csv.reader(fb)
        ha, hb = next(ra), next(rb)
        if ha != hb:
            value_diffs["header"] = 1
        for a, b in zip(ra, rb):
            n += 1
            for i, (x, y) in enumerate(zip(a, b)):
                if x == y:
                    continue
                ok = False
                if i in REALS:
                    fx, fy = float(x), float(y)
                    ok = abs(fx - fy) <= 1e-13 * max(abs(fx), abs(fy), 1.0)
                elif i == FLAG:
                    ok = (x, y) in (("true", "1"), ("false", "0"))
                elif i in INTS:
                    ok = int(x) == int(y)
                if not ok:
                    value_diffs[ha[i]] = value_diffs.get(ha[i], 0) + 1
                    if first is None:
                        first = (n, ha[i], x, y)
    check(f"CSV values identical (ferry vs sqlite3, {n:,} rows × 12 columns; REAL within 1e-13, flag true/false = 1/0)",
          not value_diffs, f"differences per column: {value_diffs}, first: {first}" if value_diffs else "")


def sheet_stats(path):
    """Rows, cells and the sha256 of <sheetData>..</sheetData> of every worksheet."""
    res = {"rows": 0, "cells": 0, "sheets": 0, "sheetdata_sha": []}
    hold = 1 << 16  # the part after </sheetData> is far shorter than this
    with zipfile.ZipFile(path) as z:
        names = sorted((n for n in z.namelist() if re.match(r"xl/worksheets/sheet\d+\.xml$", n)),
                       key=lambda s: int(re.findall(r"\d+", s)[0]))
        for name in names:
            res["sheets"] += 1
            h = hashlib.sha256()
            tail = b""      # last bytes of the previous chunk, for tags cut in two
            pending = None  # bytes not hashed yet (from <sheetData on)
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
                        if i < 0:
                            raise ValueError(f"{path}: no <sheetData> in the first chunk")
                        pending = chunk[i:]
                    else:
                        pending += chunk
                    if len(pending) > hold:
                        h.update(pending[:-hold])
                        pending = pending[-hold:]
            j = pending.rfind(b"</sheetData>")
            h.update(pending[: j + len(b"</sheetData>")] if j >= 0 else pending)
            res["sheetdata_sha"].append(h.hexdigest()[:16])
    return res


xlsx = {}
for label, path in [("ferry", os.path.join(S, "ferry.xlsx")), ("baseline", os.path.join(S, "baseline.xlsx")),
                    ("baseline_mem", os.path.join(S, "baseline_mem.xlsx"))]:
    if os.path.exists(path):
        st = sheet_stats(path)
        xlsx[label] = st
        check(f"{label} xlsx: {args.rows + 1:,} <row> elements (header + rows), 12 cells each",
              st["rows"] == args.rows + 1 and st["cells"] == 12 * (args.rows + 1),
              f"{st['rows']:,} rows, {st['cells']:,} cells, {st['sheets']} sheet(s)")
if "ferry" in xlsx and "baseline" in xlsx:
    check("ferry and baseline write byte-identical <sheetData> (same cells, types and formats)",
          xlsx["ferry"]["sheetdata_sha"] == xlsx["baseline"]["sheetdata_sha"],
          f"{xlsx['ferry']['sheetdata_sha']} vs {xlsx['baseline']['sheetdata_sha']}")
if "baseline_mem" in xlsx and "baseline" in xlsx:
    check("in-memory baseline writes the same <sheetData> as the database baseline",
          xlsx["baseline_mem"]["sheetdata_sha"] == xlsx["baseline"]["sheetdata_sha"],
          f"{xlsx['baseline_mem']['sheetdata_sha']} vs {xlsx['baseline']['sheetdata_sha']}")


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
    text = open(os.path.join(ROOT, "Cargo.lock")).read()
    out = {}
    for n in names:
        vs = re.findall(r'name = "' + re.escape(n) + r'"\nversion = "([^"]+)"', text)
        if vs:
            out[n] = ", ".join(vs)
    return out


def bundled_sqlite():
    v = lock_versions(["libsqlite3-sys"]).get("libsqlite3-sys")
    for h in glob.glob(os.path.expanduser(f"~/.cargo/registry/src/*/libsqlite3-sys-{v}/sqlite3/sqlite3.h")):
        mm = re.search(r'#define SQLITE_VERSION\s+"([^"]+)"', open(h, errors="replace").read())
        if mm:
            return mm.group(1)
    return "?"


env = {
    "nproc": sh("nproc"),
    "cpu": cpu_model(),
    "memory": mem_total(),
    "kernel": platform.release(),
    "fs": sh(f"df -T '{OUT}' | awk 'NR==2 {{print $2}}'"),
    "rustc": sh("rustc --version"),
    "sqlite3_cli": sh("sqlite3 --version").split(" ")[0],
    "sqlite_bundled_in_ferry": bundled_sqlite(),
    "hyperfine": sh("hyperfine --version") if args.hyperfine else "not used",
    "python": platform.python_version(),
    "crates": lock_versions(["rust_xlsxwriter", "sqlx", "sqlx-sqlite", "libsqlite3-sys", "csv", "zip",
                             "zlib-rs", "flate2", "tokio", "chrono"]),
    "date": sh("date -u +%Y-%m-%dT%H:%MZ"),
    "git": os.environ.get("BENCH_GIT_REV")
    or (sh(f"git -C '{ROOT}' rev-parse --short HEAD") or "unknown")
    + (" (dirty)" if sh(f"git -C '{ROOT}' status --porcelain --untracked-files=no") else ""),
}
def loadavg(which):
    f = os.path.join(RES, f"loadavg_{which}")
    return open(f).read().strip() if os.path.exists(f) else "?"


env["loadavg"] = f"{loadavg('start')} before the timed runs, {loadavg('end')} after"
dbs = {os.path.basename(f): os.path.getsize(f) for f in glob.glob(os.path.join(OUT, "data", "*.db"))}


# ------------------------------------------------------------------ report
def human(n):
    return f"{n / 1e6:g}M" if n >= 10**6 else f"{n / 1e3:g}k"


def mb(b):
    return f"{b / 1e6:.1f} MB" if b is not None else "—"


def s(x):
    return f"{x:.2f} s"


ROLE = {  # name: (kind, label, [(baseline name, short label)])
    "csv_sqlite3": ("CSV", "baseline: `sqlite3 -header -csv`", []),
    "csv_ferry": ("CSV", "**ferry** `run` csv task", [("csv_sqlite3", "sqlite3")]),
    "xlsx_baseline": ("XLSX", "baseline: `xlsx_baseline sqlite` (sqlx fetch → rust_xlsxwriter, one thread)", []),
    "diag_xlsx_baseline_mem": ("XLSX", "writer limit: `xlsx_baseline mem` (same cells generated in memory, no DB)", [("xlsx_baseline", "baseline")]),
    "xlsx_ferry": ("XLSX", "**ferry** `run` xlsx task", [("xlsx_baseline", "baseline"), ("diag_xlsx_baseline_mem", "writer limit")]),
    "diag_xlsx_baseline_level1": ("diag", "`xlsx_baseline sqlite --level 1` (deflate level 1 instead of 6)", [("xlsx_baseline", "baseline")]),
    "diag_fetch_floor": ("diag", "`xlsx_baseline fetch`: sqlx fetch + decode of all 12 columns, no output", []),
    "diag_ferry_one_row": ("diag", "**ferry** `run` csv task with `LIMIT 1` (fixed cost per run)", []),
    "big_csv_sqlite3": ("CSV", "baseline: `sqlite3 -header -csv`", []),
    "big_csv_ferry": ("CSV", "**ferry** `run` csv task", [("big_csv_sqlite3", "sqlite3")]),
    "big_xlsx_ferry": ("XLSX", "**ferry** `run` xlsx task", []),
}
rows_of = lambda n: args.big_rows if n.startswith("big_") else args.rows

md = []
md.append(f"Run {env['date']} at commit {env['git']}.\n")
md.append("| Contender | Rows | Runs | Wall median | Wall min | Wall max | Ratio vs baseline (median) | Rows/s (median) | CPU user+sys (median) | Peak RSS max (median) of runs | Output |")
md.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name in ROLE:
    m = M.get(name)
    if not m:
        continue
    kind, label, bases = ROLE[name]
    ratio = "; ".join(f"{m['wall_median'] / M[b]['wall_median']:.2f}× {bl}" for b, bl in bases if b in M) or "—"
    r = 1 if name == "diag_ferry_one_row" else rows_of(name)
    md.append(
        f"| {kind}: {label} | {r:,} | {m['runs']} | {s(m['wall_median'])} | {s(m['wall_min'])} | {s(max(m['wall']))} | {ratio} | "
        f"{r / m['wall_median'] / 1000:,.0f} k | {m['user_median']:.2f} + {m['sys_median']:.2f} s | "
        f"{m['rss_max_mb']:.1f} ({m['rss_median_mb']:.1f}) MB | {mb(out_size(name))} |")
md.append("")

# splits printed by the baseline program
splits = []
for name in ["xlsx_baseline", "diag_xlsx_baseline_mem", "diag_xlsx_baseline_level1", "diag_fetch_floor"]:
    m = M.get(name)
    if m and m.get("json") and "rows_secs" in m["json"]:
        j = m["json"]
        splits.append(f"| `{name}` (last run) | {j['rows_secs']:.2f} s | {j['save_secs']:.2f} s | {j['total_secs']:.2f} s | {mb(j.get('bytes'))} |")
if splits:
    md.append("Time split reported by the baseline program itself (rows written to the constant-memory tempfile, then `save()` = deflate + zip):\n")
    md.append("| Program | Rows phase | save() | Total (in-process) | File |")
    md.append("|---|---:|---:|---:|---:|")
    md.extend(splits)
    md.append("")

# targets
targets = []
def target(label, value, ok):
    targets.append((label, value, ok))

if "csv_ferry" in M and "csv_sqlite3" in M:
    r = M["csv_ferry"]["wall_median"] / M["csv_sqlite3"]["wall_median"]
    target("CSV: ferry ≤ 1.3× `sqlite3` CLI (median wall, 1M)", f"{r:.2f}×", r <= 1.3)
if "xlsx_ferry" in M and "xlsx_baseline" in M:
    r = M["xlsx_ferry"]["wall_median"] / M["xlsx_baseline"]["wall_median"]
    target("XLSX: ferry ≤ 1.15× bare rust_xlsxwriter baseline reading SQLite with sqlx (median wall, 1M)", f"{r:.2f}×", r <= 1.15)
if "xlsx_ferry" in M and "diag_xlsx_baseline_mem" in M:
    r = M["xlsx_ferry"]["wall_median"] / M["diag_xlsx_baseline_mem"]["wall_median"]
    target("XLSX: ferry ≤ 1.15× the pure writer on in-memory rows (performance.md §6.5 wording; median wall, 1M)", f"{r:.2f}×", r <= 1.15)
for fmt in ["csv", "xlsx"]:
    small, big = M.get(f"{fmt}_ferry"), M.get(f"big_{fmt}_ferry")
    if small:
        target(f"{fmt.upper()}: ferry peak RSS ≤ 64 MB at {args.rows:,} rows", f"{small['rss_max_mb']:.1f} MB", small["rss_max_mb"] <= 64)
    if big:
        target(f"{fmt.upper()}: ferry peak RSS ≤ 64 MB at {args.big_rows:,} rows", f"{big['rss_max_mb']:.1f} MB", big["rss_max_mb"] <= 64)
    if small and big:
        g = big["rss_max_mb"] / small["rss_max_mb"] - 1
        target(f"{fmt.upper()}: peak RSS flat from {human(args.rows)} to {human(args.big_rows)} rows (within 10 %)",
               f"{small['rss_max_mb']:.1f} → {big['rss_max_mb']:.1f} MB ({g * 100:+.1f} %)", abs(g) <= 0.10)
md.append("| Target | Measured | Met |")
md.append("|---|---:|:---:|")
for label, value, ok in targets:
    md.append(f"| {label} | {value} | {'yes' if ok else '**no**'} |")
md.append("")

md.append("| Correctness check | Result | Detail |")
md.append("|---|:---:|---|")
for c in checks:
    md.append(f"| {c['check']} | {'pass' if c['ok'] else '**FAIL**'} | {c['detail']} |")
md.append("")

md.append("Environment:\n")
md.append(f"- machine: {env['nproc']} CPUs, `{env['cpu']}`, {env['memory']} RAM, Linux {env['kernel']}, output on {env['fs']}; load average (1/5/15 min) {env['loadavg']}")
md.append(f"- {env['rustc']}; sqlite3 CLI {env['sqlite3_cli']}; SQLite bundled in ferry (libsqlite3-sys) {env['sqlite_bundled_in_ferry']}; "
          f"{env['hyperfine']}; Python {env['python']}")
md.append("- crates (Cargo.lock): " + ", ".join(f"{k} {v}" for k, v in env["crates"].items()))
md.append("- databases: " + ", ".join(f"{k} {mb(v)}" for k, v in sorted(dbs.items())))
md.append("")
md.append("Commands (as timed; `/usr/bin/time -f '%e %U %S %M'` wraps each):\n")
md.append("```sh")
for name in ROLE:
    if name in M:
        md.append(f"# {name}")
        md.append(M[name]["cmd"])
md.append("```")

open(os.path.join(OUT, "results.md"), "w").write("\n".join(md) + "\n")
json.dump({"env": env, "measurements": {k: {kk: vv for kk, vv in v.items()} for k, v in M.items()},
           "checks": checks, "targets": [{"target": a, "value": b, "met": c} for a, b, c in targets]},
          open(os.path.join(OUT, "results.json"), "w"), indent=1)
print("\n".join(md))
failed = [c for c in checks if not c["ok"]]
if failed:
    print(f"\n{len(failed)} correctness check(s) FAILED", file=sys.stderr)
    sys.exit(1)
