#!/usr/bin/env bash
# ferry SQLite export benchmark, with baselines run side by side (performance.md §6).
#
#   bash benches/sqlite_export.sh            # from the repository root
#
# What it does (all generated files go under bench-out/sqlite_export/, git-ignored):
#   1. installs missing tools (sqlite3, GNU time; hyperfine if apt has it) with apt-get;
#   2. builds `ferry` and `examples/xlsx_baseline` in release mode;
#   3. generates deterministic SQLite databases of ROWS and BIG_ROWS rows × 12 mixed
#      columns (benches/sqlite_export_gen.sql; kept between runs, rebuilt when the
#      generator changes);
#   4. writes a throw-away ferry project (config.yaml + one task per format and size);
#   5. times, side by side, with a warm-up run then RUNS timed runs each:
#        CSV : sqlite3 -header -csv          vs  ferry run <csv task>
#        XLSX: xlsx_baseline (sqlx fetch)    vs  ferry run <xlsx task>
#        plus diagnostics: xlsx_baseline in memory (no DB), at deflate level 1,
#        and a fetch-only floor (sqlx fetch + decode, no output);
#      and ferry again at BIG_ROWS for peak-RSS flatness;
#   6. checks row counts (CSV lines, ferry's JSON `rows`, <row> elements in the sheets)
#      and compares the two CSVs value by value;
#   7. writes bench-out/sqlite_export/results.md (tables) and results.json.
#
# Knobs (environment): ROWS=1000000 BIG_ROWS=5000000 (0 skips) RUNS=5 BIG_RUNS=2
# DIAG=1 (0 skips the diagnostic contenders) CHECK_VALUES=1 FORCE_DATA=0
# CMD_TIMEOUT=900 (seconds, per command) NO_INSTALL=0 NO_HYPERFINE=0 PERF=0 (1 records a
# `perf` profile of one ferry xlsx and csv run, if perf is installed).
# Takes about 10 minutes on a 2-core machine with the defaults.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${BENCH_OUT:-$ROOT/bench-out/sqlite_export}
ROWS=${ROWS:-1000000}
BIG_ROWS=${BIG_ROWS:-5000000}
RUNS=${RUNS:-5}
BIG_RUNS=${BIG_RUNS:-2}
DIAG=${DIAG:-1}
CHECK_VALUES=${CHECK_VALUES:-1}
FORCE_DATA=${FORCE_DATA:-0}
CMD_TIMEOUT=${CMD_TIMEOUT:-900}
NO_INSTALL=${NO_INSTALL:-0}
NO_HYPERFINE=${NO_HYPERFINE:-0}
PERF=${PERF:-0}
QUERY="SELECT id, qty, amount, customer, label, day, ts, flag, delta, sku, note, score FROM bench ORDER BY id"

log() { printf '\033[1m[bench %(%H:%M:%S)T]\033[0m %s\n' -1 "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------- tools
apt_install() {
    [ "$NO_INSTALL" = 1 ] && return 1
    command -v apt-get >/dev/null || return 1
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo -n"
    log "installing $* with apt-get"
    $sudo apt-get install -y "$@" >/dev/null 2>&1 \
        || { $sudo apt-get update >/dev/null 2>&1 && $sudo apt-get install -y "$@" >/dev/null 2>&1; }
}
command -v sqlite3 >/dev/null || apt_install sqlite3 || die "sqlite3 is missing and could not be installed"
[ -x /usr/bin/time ] || apt_install time || die "GNU time (/usr/bin/time) is missing"
command -v python3 >/dev/null || apt_install python3 || die "python3 is missing"
HYPERFINE=""
if [ "$NO_HYPERFINE" != 1 ]; then
    command -v hyperfine >/dev/null || apt_install hyperfine || true
    command -v hyperfine >/dev/null && HYPERFINE=$(command -v hyperfine)
fi
[ -n "$HYPERFINE" ] && log "timing with $($HYPERFINE --version)" || log "timing with a /usr/bin/time loop"

# ---------------------------------------------------------------------------- build
log "building ferry and examples/xlsx_baseline (release)"
cargo build --release --quiet --bin ferry --example xlsx_baseline
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
FERRY=$TARGET_DIR/release/ferry
BASELINE=$TARGET_DIR/release/examples/xlsx_baseline
[ -x "$FERRY" ] && [ -x "$BASELINE" ] || die "build outputs not found under $TARGET_DIR/release"

mkdir -p "$OUT/data" "$OUT/results"
rm -rf "$OUT/project" "$OUT/out" "$OUT/results"/*
mkdir -p "$OUT/project/tasks" "$OUT/project/templates" "$OUT/out"

# ---------------------------------------------------------------------------- data
GEN_SQL=$ROOT/benches/sqlite_export_gen.sql
GEN_SHA=$(sha256sum "$GEN_SQL" | cut -c1-16)
make_db() { # rows -> path of the database
    local rows=$1 db="$OUT/data/bench_$1.db"
    if [ "$FORCE_DATA" != 1 ] && [ -f "$db" ] && [ "$(cat "$db.stamp" 2>/dev/null)" = "$GEN_SHA" ]; then
        log "reusing $db"
    else
        log "generating $db ($rows rows)"
        rm -f "$db" "$db.stamp" "$db.tmp"
        sed "s/__ROWS__/$rows/" "$GEN_SQL" | sqlite3 "$db.tmp" >/dev/null
        [ "$(sqlite3 "$db.tmp" 'SELECT count(*) FROM bench')" = "$rows" ] || die "generation of $db failed"
        mv "$db.tmp" "$db"
        echo "$GEN_SHA" >"$db.stamp"
    fi
    echo "$db"
}
DB=$(make_db "$ROWS")
BIG_DB=""
[ "$BIG_ROWS" != 0 ] && BIG_DB=$(make_db "$BIG_ROWS")

# ---------------------------------------------------------------------------- ferry project
P=$OUT/project
{
    cat <<EOF
# Generated by benches/sqlite_export.sh
timezone: UTC
tasks_dir: tasks
output_dir: exports
templates_dir: templates
node_name: bench
store:
  url: "sqlite://data/ferry.db"
export:
  chunk_rows: 10000
  timeout: 1h
datasources:
  bench_small:
    type: sqlite
    url: "sqlite://$DB"
EOF
    if [ -n "$BIG_DB" ]; then
        cat <<EOF
  bench_big:
    type: sqlite
    url: "sqlite://$BIG_DB"
EOF
    fi
} >"$P/config.yaml"
task() { # name source format
    cat >"$P/tasks/$1.yaml" <<EOF
description: benchmark export ($3, datasource $2)
schedule: "0 0 1 1 *"
source: $2
query: "$QUERY"
output:
  format: $3
  file_name: "$1"
EOF
    if [ "$3" = csv ]; then
        printf '  csv:\n    bom: false\n    encoding: utf-8\n' >>"$P/tasks/$1.yaml"
    fi
}
task csv_small bench_small csv
task xlsx_small bench_small xlsx
# Fixed cost of one `ferry run` (config, run store, claim, publish) on a 1-row result.
QUERY_FULL=$QUERY
QUERY="$QUERY_FULL LIMIT 1"
task csv_one_row bench_small csv
QUERY=$QUERY_FULL
if [ -n "$BIG_DB" ]; then
    task csv_big bench_big csv
    task xlsx_big bench_big xlsx
fi
"$FERRY" validate --config "$P/config.yaml" >/dev/null || die "the generated ferry project does not validate"

# ---------------------------------------------------------------------------- timing
# bench NAME WARMUP RUNS PREPARE COMMAND
#   Runs COMMAND (a shell string) WARMUP + RUNS times, each under
#   /usr/bin/time -f '%e %U %S %M' (wall s, user s, sys s, max RSS KiB), appended to
#   results/NAME.time (warm-up lines first); with hyperfine, also results/NAME.json.
#   PREPARE (shell string) runs before every run, untimed.
bench() {
    local name=$1 warmup=$2 runs=$3 prep=$4 cmd=$5
    local tf="$OUT/results/$name.time"
    local timed="timeout $CMD_TIMEOUT /usr/bin/time -f '%e %U %S %M' -a -o '$tf' $cmd"
    : >"$tf"
    printf '%s\n' "$cmd" >"$OUT/results/$name.cmd"
    log "$name: $warmup warm-up + $runs runs"
    if [ -n "$HYPERFINE" ]; then
        "$HYPERFINE" --style basic --warmup "$warmup" --runs "$runs" --prepare "${prep:-true}" \
            --command-name "$name" --export-json "$OUT/results/$name.json" "$timed" >&2 \
            || die "$name failed (see $OUT/results/$name.*)"
    else
        local i
        for ((i = 0; i < warmup + runs; i++)); do
            sh -c "${prep:-true}"
            sh -c "$timed" || die "$name failed (see $OUT/results/$name.*)"
        done
    fi
    echo "$warmup" >"$OUT/results/$name.warmup"
}

FERRY_RUN="'$FERRY' run --json --no-notify --config '$P/config.yaml'"
clean() { echo "rm -rf '$P/exports/$1'"; } # each task publishes into exports/<task>/
S=$OUT/out

# Warm the page cache for the small database.
cat "$DB" >/dev/null
cut -d' ' -f1-3 /proc/loadavg >"$OUT/results/loadavg_start"

bench csv_sqlite3 1 "$RUNS" "rm -f '$S/sqlite3.csv'" \
    "sqlite3 -header -csv '$DB' '$QUERY' > '$S/sqlite3.csv'"
bench csv_ferry 1 "$RUNS" "$(clean csv_small)" \
    "$FERRY_RUN csv_small > '$OUT/results/csv_ferry.stdout'"
bench xlsx_baseline 1 "$RUNS" "rm -f '$S/baseline.xlsx'" \
    "'$BASELINE' sqlite '$DB' '$S/baseline.xlsx' > '$OUT/results/xlsx_baseline.stdout'"
bench xlsx_ferry 1 "$RUNS" "$(clean xlsx_small)" \
    "$FERRY_RUN xlsx_small > '$OUT/results/xlsx_ferry.stdout'"
# Keep ferry's small outputs for the checks.
ferry_file() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["files"][0]["path"])' "$1"; }
mv "$(ferry_file "$OUT/results/csv_ferry.stdout")" "$S/ferry.csv"
mv "$(ferry_file "$OUT/results/xlsx_ferry.stdout")" "$S/ferry.xlsx"

if [ "$DIAG" = 1 ]; then
    bench diag_ferry_one_row 1 "$RUNS" "$(clean csv_one_row)" \
        "$FERRY_RUN csv_one_row > '$OUT/results/diag_ferry_one_row.stdout'"
    bench diag_fetch_floor 1 "$RUNS" "" \
        "'$BASELINE' fetch '$DB' > '$OUT/results/diag_fetch_floor.stdout'"
    bench diag_xlsx_baseline_mem 1 "$RUNS" "rm -f '$S/baseline_mem.xlsx'" \
        "'$BASELINE' mem '$ROWS' '$S/baseline_mem.xlsx' > '$OUT/results/diag_xlsx_baseline_mem.stdout'"
    bench diag_xlsx_baseline_level1 0 3 "rm -f '$S/baseline_l1.xlsx'" \
        "'$BASELINE' sqlite '$DB' '$S/baseline_l1.xlsx' --level 1 > '$OUT/results/diag_xlsx_baseline_level1.stdout'"
fi

if [ -n "$BIG_DB" ]; then
    cat "$BIG_DB" >/dev/null
    bench big_csv_sqlite3 0 "$BIG_RUNS" "rm -f '$S/big_sqlite3.csv'" \
        "sqlite3 -header -csv '$BIG_DB' '$QUERY' > '$S/big_sqlite3.csv'"
    bench big_csv_ferry 0 "$BIG_RUNS" "$(clean csv_big)" \
        "$FERRY_RUN csv_big > '$OUT/results/big_csv_ferry.stdout'"
    bench big_xlsx_ferry 0 "$BIG_RUNS" "$(clean xlsx_big)" \
        "$FERRY_RUN xlsx_big > '$OUT/results/big_xlsx_ferry.stdout'"
    rm -f "$S/big_sqlite3.csv"
fi

if [ "$PERF" = 1 ] && command -v perf >/dev/null; then
    for t in xlsx_small csv_small; do
        log "perf profile of ferry run $t"
        rm -rf "$P/exports/$t"
        perf record -q -F 499 -g -o "$OUT/results/perf_$t.data" -- \
            "$FERRY" run --json --no-notify --config "$P/config.yaml" "$t" >/dev/null 2>&1 || true
        perf report -i "$OUT/results/perf_$t.data" --no-children --sort dso,symbol --stdio 2>/dev/null \
            | grep -v '^#' | grep -v '^$' | head -60 >"$OUT/results/perf_$t.txt" || true
    done
fi
rm -rf "$P/exports"
cut -d' ' -f1-3 /proc/loadavg >"$OUT/results/loadavg_end"

# ---------------------------------------------------------------------------- checks + report
log "checking outputs and writing the report"
python3 "$ROOT/benches/sqlite_export_report.py" \
    --out "$OUT" --rows "$ROWS" --big-rows "$BIG_ROWS" --runs "$RUNS" \
    --check-values "$CHECK_VALUES" --hyperfine "${HYPERFINE:+1}"
log "done: $OUT/results.md"
