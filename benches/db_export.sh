#!/usr/bin/env bash
# ferry PostgreSQL and MariaDB export benchmark, with baselines run side by side
# (issue 4's performance section; performance.md §6). Runs under the throwaway servers of
# scripts/test-services.sh:
#
#   scripts/test-services.sh bash benches/db_export.sh [ROWS...]
#
# ROWS: row counts (default: 1000000 10000000). The first is the main size, where every
# contender runs; each further size runs ferry CSV and XLSX on both servers (peak-memory
# flatness) and the two CLI CSV baselines (BIG_BASELINES=1 adds the Rust XLSX baseline).
#
# What it does (all generated files go under bench-out/db_export/, git-ignored):
#   1. builds `ferry` and `examples/db_xlsx_baseline` in release mode (honours
#      CARGO_TARGET_DIR; FERRY_REF=<commit> builds that commit from a `git archive`
#      snapshot instead of the working tree, with the working tree's baseline example);
#   2. creates a Python venv with pandas, XlsxWriter, SQLAlchemy, psycopg2-binary and
#      PyMySQL (pip; never the system Python);
#   3. loads ROWS rows × 12 mixed columns into PostgreSQL (generate_series,
#      benches/db_export_gen_pg.sql) and copies the same rows into MariaDB
#      (COPY → LOAD DATA, benches/db_export_gen_mariadb.sql);
#   4. writes a throw-away ferry project (config.yaml + tasks) for both servers;
#   5. times every contender with /usr/bin/time (wall, CPU, peak RSS), the database
#      server's CPU for the same run, the load average and the number of other `rustc`
#      processes at the start of each run; contenders of one group run interleaved
#      (round-robin), after WARMUP untimed rounds:
#        CSV  PG     : psql \copy (query) to file csv header  | psql COPY … TO STDOUT
#                      | ferry run
#        CSV  MariaDB: mariadb --quick --batch -e query > file (TCP) | ferry run
#        XLSX        : db_xlsx_baseline (rust_xlsxwriter constant_memory) | ferry run
#        Python      : pandas read_sql + to_excel / to_csv, XlsxWriter constant_memory
#                      from a server-side cursor (main size only, capped at PY_MAX_ROWS)
#        diagnostics : decode-only fetch floors, COPY through tokio-postgres, ferry with a
#                      count-only and a 1-row query, mariadb CLI over the unix socket,
#                      ferry with chunk_rows 1000 and with MALLOC_ARENA_MAX=2 (memory)
#   6. records a system-wide `perf` profile of one ferry CSV run per server (PERF=1);
#   7. checks the outputs (row counts, CSV values ferry vs psql / mariadb, XLSX cells ferry
#      vs the Rust baseline) and writes bench-out/db_export/results.md and results.json
#      (benches/db_export_report.py).
#
# Knobs (environment): RUNS=5 (CSV and diagnostics) XLSX_RUNS=3 BIG_RUNS=1 PY_RUNS=1
# WARMUP=1 PY=1 PY_MAX_ROWS=1000000 DIAG=1 PERF=1 BIG_BASELINES=0 FERRY_REF= VENV=
# CMD_TIMEOUT=1800 (seconds per command) CHECK_VALUES=1 CHUNK_ROWS= (export.chunk_rows
# of the generated project; unset: ferry's default; docs/benchmarks.md says which was used).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${BENCH_OUT:-$ROOT/bench-out/db_export}
if [ "$#" -gt 0 ]; then SIZES=("$@"); else SIZES=(1000000 10000000); fi
MAIN=${SIZES[0]}
RUNS=${RUNS:-5}
XLSX_RUNS=${XLSX_RUNS:-3}
BIG_RUNS=${BIG_RUNS:-1}
PY_RUNS=${PY_RUNS:-1}
WARMUP=${WARMUP:-1}
PY=${PY:-1}
PY_MAX_ROWS=${PY_MAX_ROWS:-1000000}
DIAG=${DIAG:-1}
PERF=${PERF:-1}
BIG_BASELINES=${BIG_BASELINES:-0}
FERRY_REF=${FERRY_REF:-}
VENV=${VENV:-$OUT/venv}
CMD_TIMEOUT=${CMD_TIMEOUT:-1800}
CHECK_VALUES=${CHECK_VALUES:-1}
COLS="id, qty, amount, customer, label, day, ts, flag, delta, paid_at, note, score"

log() { printf '\033[1m[db-bench %(%H:%M:%S)T]\033[0m %s\n' -1 "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for s in "${SIZES[@]}"; do
    [[ "$s" =~ ^[1-9][0-9]*$ ]] || die "row counts must be positive integers, got '$s'"
done
for v in FERRY_TEST_PG_URL FERRY_TEST_PG_ADMIN_URL FERRY_TEST_MYSQL_URL FERRY_TEST_MYSQL_SOCKET; do
    [ -n "${!v:-}" ] || die "$v is not set: run this under scripts/test-services.sh, e.g.
  scripts/test-services.sh bash benches/db_export.sh ${SIZES[*]}"
done
[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) is missing (apt-get install time)"
command -v python3 >/dev/null || die "python3 is missing"
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
PSQL=$PG_BIN/psql
[ -x "$PSQL" ] || PSQL=$(command -v psql) || die "psql is missing"
MARIADB=$(command -v mariadb) || die "the mariadb client is missing"

mkdir -p "$OUT/data" "$OUT/results" "$OUT/out"
rm -rf "$OUT/project" "$OUT/results"/* "$OUT/out"/*
mkdir -p "$OUT/project/tasks" "$OUT/project/templates"
R=$OUT/results
S=$OUT/out
uptime >"$R/uptime_start"

# ---------------------------------------------------------------------------- build
SRC=$ROOT
if [ -n "$FERRY_REF" ]; then
    sha=$(git -C "$ROOT" rev-parse --short "$FERRY_REF")
    SRC=$OUT/src-$sha
    if [ ! -f "$SRC/Cargo.toml" ]; then
        log "exporting commit $sha to $SRC (git archive; the working tree is not touched)"
        rm -rf "$SRC" && mkdir -p "$SRC"
        git -C "$ROOT" archive "$sha" | tar -x -C "$SRC"
    fi
    cp "$ROOT/examples/db_xlsx_baseline.rs" "$SRC/examples/"
    echo "$sha (git archive of $FERRY_REF)" >"$R/ferry_code"
else
    echo "$(git -C "$ROOT" rev-parse --short HEAD) + working tree ($(git -C "$ROOT" status --porcelain -- src Cargo.toml Cargo.lock | wc -l) changed files under src/, Cargo.*)" >"$R/ferry_code"
fi
log "building ferry and examples/db_xlsx_baseline (release) from $SRC"
(cd "$SRC" && cargo build --release --quiet --bin ferry --example db_xlsx_baseline)
TARGET_DIR=$(cd "$SRC" && cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
FERRY=$TARGET_DIR/release/ferry
BASELINE=$TARGET_DIR/release/examples/db_xlsx_baseline
[ -x "$FERRY" ] && [ -x "$BASELINE" ] || die "build outputs not found under $TARGET_DIR/release"
cp "$SRC/Cargo.lock" "$R/Cargo.lock"

# ---------------------------------------------------------------------------- python
PYBIN=""
if [ "$PY" = 1 ]; then
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import pandas, xlsxwriter, sqlalchemy, psycopg2, pymysql' 2>/dev/null; then
        log "creating the Python venv $VENV (pandas xlsxwriter sqlalchemy psycopg2-binary pymysql)"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check pandas xlsxwriter sqlalchemy psycopg2-binary pymysql
    fi
    PYBIN=$VENV/bin/python
    "$PYBIN" -m pip list --disable-pip-version-check 2>/dev/null \
        | grep -i -E '^(pandas|numpy|xlsxwriter|sqlalchemy|psycopg2-binary|pymysql) ' >"$R/py_versions" || true
    "$PYBIN" --version >>"$R/py_versions" 2>&1
fi

# ---------------------------------------------------------------------------- servers
pg_admin() { "$PSQL" -X -q -v ON_ERROR_STOP=1 "$FERRY_TEST_PG_ADMIN_URL" "$@"; }
my_root() { "$MARIADB" --no-defaults -S "$FERRY_TEST_MYSQL_SOCKET" -u root --default-character-set=utf8mb4 "$@"; }
PG_PORT=$(python3 -c 'import sys,urllib.parse as u; print(u.urlsplit(sys.argv[1]).port)' "$FERRY_TEST_PG_URL")
MY_PORT=$(python3 -c 'import sys,urllib.parse as u; print(u.urlsplit(sys.argv[1]).port)' "$FERRY_TEST_MYSQL_URL")
PG_DATA=$(pg_admin -Atc 'SHOW data_directory')
PG_PID=$(head -n 1 "$PG_DATA/postmaster.pid")
MY_PID=$(cat "$(dirname "$FERRY_TEST_MYSQL_SOCKET")/mariadb.pid")
{
    echo "pg_version=$(pg_admin -Atc 'SHOW server_version')"
    echo "pg_shared_buffers=$(pg_admin -Atc 'SHOW shared_buffers')"
    echo "pg_work_mem=$(pg_admin -Atc 'SHOW work_mem')"
    echo "psql=$("$PSQL" --version)"
    echo "mariadb_version=$(my_root -N -e 'SELECT VERSION()')"
    echo "mariadb_client=$("$MARIADB" --version)"
} >"$R/server_versions"

# The largest table must fit MariaDB's buffer pool (test-services starts it with 256 MB);
# PostgreSQL reads through the OS page cache (shared_buffers 128 MB).
max_rows=0
for s in "${SIZES[@]}"; do [ "$s" -gt "$max_rows" ] && max_rows=$s; done
pool_mb=$(( (max_rows / 1000000 + 1) * 300 ))
[ "$pool_mb" -lt 1024 ] && pool_mb=1024
my_root -e "SET GLOBAL innodb_buffer_pool_size = $((pool_mb * 1024 * 1024))"
sleep 2
echo "mariadb_innodb_buffer_pool_size=$(my_root -N -e 'SELECT @@innodb_buffer_pool_size DIV 1048576')MB" >>"$R/server_versions"

GEN_SHA=$(cat "$ROOT/benches/db_export_gen_pg.sql" "$ROOT/benches/db_export_gen_mariadb.sql" | sha256sum | cut -c1-16)
load_size() { # rows
    local n=$1 t=bench_$1 tsv="$OUT/data/bench_$1.tsv" got
    got=$(pg_admin -Atc "SELECT obj_description('public.$t'::regclass)" 2>/dev/null || true)
    if [ "$got" = "$GEN_SHA" ]; then
        log "PostgreSQL: reusing $t"
    else
        log "PostgreSQL: generating $t ($n rows)"
        local t0=$SECONDS
        pg_admin -v tbl="$t" -v rows="$n" -f "$ROOT/benches/db_export_gen_pg.sql"
        pg_admin -c "COMMENT ON TABLE $t IS '$GEN_SHA'" -c "GRANT SELECT ON $t TO ferry"
        echo "$t $((SECONDS - t0))" >>"$R/load_secs_pg"
    fi
    got=$(my_root -N -D ferry_test -e "SELECT table_comment FROM information_schema.tables WHERE table_schema = 'ferry_test' AND table_name = '$t'")
    if [ "$got" = "$GEN_SHA" ]; then
        log "MariaDB: reusing $t"
    else
        log "MariaDB: copying $t from PostgreSQL (COPY → LOAD DATA)"
        local t0=$SECONDS
        pg_admin -c "\\copy (SELECT id, qty, amount, customer, label, day, ts, flag::int, delta, paid_at AT TIME ZONE 'UTC', note, score FROM $t ORDER BY id) TO '$tsv'"
        sed -e "s|__TABLE__|$t|g" -e "s|__FILE__|$tsv|g" "$ROOT/benches/db_export_gen_mariadb.sql" \
            | my_root --local-infile=1 -D ferry_test >/dev/null
        my_root -D ferry_test -e "ALTER TABLE $t COMMENT = '$GEN_SHA'"
        rm -f "$tsv"
        echo "$t $((SECONDS - t0))" >>"$R/load_secs_mariadb"
    fi
    local pc mc
    pc=$(pg_admin -Atc "SELECT count(*) FROM $t")
    mc=$(my_root -N -D ferry_test -e "SELECT count(*) FROM $t")
    [ "$pc" = "$n" ] && [ "$mc" = "$n" ] || die "$t: PostgreSQL has $pc rows, MariaDB $mc, want $n"
    pg_admin -Atc "SELECT pg_size_pretty(pg_total_relation_size('$t'))" >"$R/table_size_pg_$n"
    my_root -N -D ferry_test -e "SELECT CONCAT(ROUND((data_length + index_length) / 1048576), ' MB') FROM information_schema.tables WHERE table_schema = 'ferry_test' AND table_name = '$t'" >"$R/table_size_mariadb_$n"
    pg_admin -c "EXPLAIN SELECT $COLS FROM $t ORDER BY id" >"$R/plan_pg_$n.txt"
    my_root -D ferry_test -e "EXPLAIN SELECT $COLS FROM $t ORDER BY id" >"$R/plan_mariadb_$n.txt"
}
for s in "${SIZES[@]}"; do load_size "$s"; done
query() { echo "SELECT $COLS FROM bench_$1 ORDER BY id"; }

# ---------------------------------------------------------------------------- ferry project
P=$OUT/project
cat >"$P/config.yaml" <<EOF
# Generated by benches/db_export.sh
timezone: UTC
tasks_dir: tasks
output_dir: exports
templates_dir: templates
node_name: bench
store:
  url: "sqlite://data/ferry.db"
export:
${CHUNK_ROWS:+  chunk_rows: $CHUNK_ROWS
}  timeout: 2h
# Plain TCP on loopback for ferry and every baseline alike (the test servers also offer
# TLS, which ferry's default "tls: prefer" would take and the mariadb CLI would not).
datasources:
  pg:
    type: postgres
    url: "$FERRY_TEST_PG_URL"
    tls: disable
  my:
    type: mysql
    url: "$FERRY_TEST_MYSQL_URL"
    tls: disable
EOF
task() { # name source format query
    cat >"$P/tasks/$1.yaml" <<EOF
description: benchmark export ($3 from $2)
schedule: "0 0 1 1 *"
source: $2
query: "$4"
output:
  format: $3
  file_name: "$1"
EOF
    if [ "$3" = csv ]; then
        printf '  csv:\n    bom: false\n    encoding: utf-8\n' >>"$P/tasks/$1.yaml"
    fi
}
for s in "${SIZES[@]}"; do
    for srv in pg my; do
        task "${srv}_csv_$s" "$srv" csv "$(query "$s")"
        task "${srv}_xlsx_$s" "$srv" xlsx "$(query "$s")"
    done
done
for srv in pg my; do
    task "${srv}_count_$MAIN" "$srv" csv "SELECT count(*) AS n FROM ($(query "$MAIN")) q"
    task "${srv}_one_$MAIN" "$srv" csv "$(query "$MAIN") LIMIT 1"
    # Memory diagnostics: the same CSV task with smaller chunks.
    task "${srv}_csv_c1000_$MAIN" "$srv" csv "$(query "$MAIN")"
    echo "chunk_rows: 1000" >>"$P/tasks/${srv}_csv_c1000_$MAIN.yaml"
done
task "pg_xlsx_c1000_$MAIN" pg xlsx "$(query "$MAIN")"
echo "chunk_rows: 1000" >>"$P/tasks/pg_xlsx_c1000_$MAIN.yaml"
"$FERRY" validate --config "$P/config.yaml" >/dev/null || die "the generated ferry project does not validate"

# ---------------------------------------------------------------------------- timing
TICK=$(getconf CLK_TCK)
server_ticks() { # pg|my -> cumulative CPU ticks of the server (finished children included)
    local pid
    case $1 in pg) pid=$PG_PID ;; my) pid=$MY_PID ;; *) echo 0; return ;; esac
    # Fields after "(comm)": utime stime cutime cstime are 14-17 of /proc/PID/stat.
    sed -e 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 + $14 + $15 }'
}

declare -A C_CMD C_PREP C_SRV C_ROWS
# add NAME SERVER ROWS PREPARE COMMAND: COMMAND is one program with its redirections (it
# is run as `time COMMAND`, so the peak RSS is that program's).
add() {
    C_SRV[$1]=$2
    C_ROWS[$1]=$3
    C_PREP[$1]=$4
    C_CMD[$1]=$5
    printf '%s\n' "$5" >"$R/$1.cmd"
    printf '%s\n' "$2 $3" >"$R/$1.meta"
}

run_one() { # NAME WARM(0|1)
    local n=$1 warm=$2 tf="$R/.time" load rustc s0 s1 rc=0
    sh -c "${C_PREP[$n]:-true}"
    sync
    load=$(cut -d' ' -f1 /proc/loadavg)
    rustc=$(pgrep -c -x rustc || true)
    s0=$(server_ticks "${C_SRV[$n]}")
    rm -f "$tf"
    sh -c "timeout $CMD_TIMEOUT /usr/bin/time -f '%e %U %S %M' -o '$tf' ${C_CMD[$n]}" || rc=$?
    [ "${C_SRV[$n]}" = pg ] && sleep 0.3 # the backend exits after the client
    s1=$(server_ticks "${C_SRV[$n]}")
    local t
    t=$(grep -E '^[0-9.]+ [0-9.]+ [0-9.]+ [0-9]+$' "$tf" 2>/dev/null | tail -n 1 || true)
    [ -n "$t" ] || t="0 0 0 0"
    # shellcheck disable=SC2086
    set -- $t
    printf '{"warm":%s,"rc":%s,"wall":%s,"user":%s,"sys":%s,"rss_kb":%s,"load1":%s,"rustc":%s,"server_cpu":%s}\n' \
        "$warm" "$rc" "$1" "$2" "$3" "$4" "$load" "$rustc" \
        "$(awk -v a="$s0" -v b="$s1" -v t="$TICK" 'BEGIN { printf "%.2f", (b - a) / t }')" >>"$R/$n.runs"
    if [ "$rc" != 0 ]; then
        log "  $n: FAILED (exit $rc; see $R/$n.stderr)"
    else
        log "  $n: ${1}s wall, $(($4 / 1024)) MB peak RSS, load $load$([ "$warm" = 1 ] && echo ' (warm-up)')"
    fi
}

# interleave RUNS WARMUP NAME...: WARMUP untimed rounds, then RUNS timed rounds, each
# round running every NAME once, in order.
interleave() {
    local runs=$1 warm=$2 i n
    shift 2
    log "group: $* ($warm warm-up + $runs timed rounds, interleaved)"
    for ((i = 0; i < warm; i++)); do for n in "$@"; do run_one "$n" 1; done; done
    for ((i = 0; i < runs; i++)); do for n in "$@"; do run_one "$n" 0; done; done
}

FERRY_RUN="'$FERRY' run --json --no-notify --config '$P/config.yaml'"
case "$FERRY_TEST_PG_URL" in *\?*) PGURL="$FERRY_TEST_PG_URL&sslmode=disable" ;; *) PGURL="$FERRY_TEST_PG_URL?sslmode=disable" ;; esac
MY_ARGS="--no-defaults --skip-ssl -h 127.0.0.1 -P $MY_PORT -u ferry -pferry --default-character-set=utf8mb4 -D ferry_test"
# each ferry task publishes into exports/<task>/; remove the previous run's file first
fclean() { echo "rm -rf '$P/exports/$1'"; }
ferry_file() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["files"][0]["path"])' "$1"; }
keep_ferry() { # NAME DEST: move the last run's published file
    local f
    f=$(ferry_file "$R/$1.stdout" 2>/dev/null) && [ -f "$f" ] && mv "$f" "$2" || log "  no output file for $1"
}
cut -d' ' -f1-3 /proc/loadavg >"$R/loadavg_start"

# ---------------------------------------------------------------------------- main size
Q=$(query "$MAIN")
M=$MAIN
add "csv_pg_psql_copy_$M" pg "$M" "rm -f '$S/psql.csv'" \
    "'$PSQL' -X -q '$PGURL' -c \"\\\\copy ($Q) to '$S/psql.csv' csv header\""
add "csv_pg_ferry_$M" pg "$M" "$(fclean "pg_csv_$M")" \
    "$FERRY_RUN pg_csv_$M > '$R/csv_pg_ferry_$M.stdout' 2> '$R/csv_pg_ferry_$M.stderr'"
add "csv_my_cli_$M" my "$M" "rm -f '$S/mariadb.tsv'" \
    "'$MARIADB' $MY_ARGS --quick --batch -e '$Q' > '$S/mariadb.tsv'"
add "csv_my_ferry_$M" my "$M" "$(fclean "my_csv_$M")" \
    "$FERRY_RUN my_csv_$M > '$R/csv_my_ferry_$M.stdout' 2> '$R/csv_my_ferry_$M.stderr'"
CSV_GROUP=("csv_pg_psql_copy_$M" "csv_pg_ferry_$M" "csv_my_cli_$M" "csv_my_ferry_$M")
if [ "$DIAG" = 1 ]; then
    add "diag_pg_psql_stdout_$M" pg "$M" "rm -f '$S/psql_stdout.csv'" \
        "'$PSQL' -X -q '$PGURL' -c 'COPY ($Q) TO STDOUT (FORMAT csv, HEADER)' > '$S/psql_stdout.csv'"
    add "diag_my_cli_socket_$M" my "$M" "rm -f '$S/mariadb_socket.tsv'" \
        "'$MARIADB' --no-defaults -S '$FERRY_TEST_MYSQL_SOCKET' -u root --default-character-set=utf8mb4 -D ferry_test --quick --batch -e '$Q' > '$S/mariadb_socket.tsv'"
    CSV_GROUP+=("diag_pg_psql_stdout_$M" "diag_my_cli_socket_$M")
fi
interleave "$RUNS" "$WARMUP" "${CSV_GROUP[@]}"
keep_ferry "csv_pg_ferry_$M" "$S/ferry_pg.csv"
keep_ferry "csv_my_ferry_$M" "$S/ferry_my.csv"

if [ "$DIAG" = 1 ]; then
    add "diag_pg_fetch_$M" pg "$M" "" "'$BASELINE' pg-fetch '$PGURL' '$Q' > '$R/diag_pg_fetch_$M.stdout'"
    add "diag_pg_copy_rust_$M" pg "$M" "rm -f '$S/rust_copy.csv'" \
        "'$BASELINE' pg-copy '$PGURL' '$Q' '$S/rust_copy.csv' > '$R/diag_pg_copy_rust_$M.stdout'"
    add "diag_pg_ferry_count_$M" pg "$M" "$(fclean "pg_count_$M")" \
        "$FERRY_RUN pg_count_$M > '$R/diag_pg_ferry_count_$M.stdout'"
    add "diag_pg_ferry_one_$M" pg 1 "$(fclean "pg_one_$M")" \
        "$FERRY_RUN pg_one_$M > '$R/diag_pg_ferry_one_$M.stdout'"
    add "diag_my_fetch_$M" my "$M" "" "'$BASELINE' mysql-fetch '$FERRY_TEST_MYSQL_URL' '$Q' > '$R/diag_my_fetch_$M.stdout'"
    add "diag_my_ferry_count_$M" my "$M" "$(fclean "my_count_$M")" \
        "$FERRY_RUN my_count_$M > '$R/diag_my_ferry_count_$M.stdout'"
    add "diag_my_ferry_one_$M" my 1 "$(fclean "my_one_$M")" \
        "$FERRY_RUN my_one_$M > '$R/diag_my_ferry_one_$M.stdout'"
    interleave "$RUNS" "$WARMUP" "diag_pg_fetch_$M" "diag_pg_copy_rust_$M" "diag_pg_ferry_count_$M" \
        "diag_pg_ferry_one_$M" "diag_my_fetch_$M" "diag_my_ferry_count_$M" "diag_my_ferry_one_$M"
fi

add "xlsx_pg_baseline_$M" pg "$M" "rm -f '$S/baseline_pg.xlsx'" \
    "'$BASELINE' pg '$PGURL' '$Q' '$S/baseline_pg.xlsx' > '$R/xlsx_pg_baseline_$M.stdout'"
add "xlsx_pg_ferry_$M" pg "$M" "$(fclean "pg_xlsx_$M")" \
    "$FERRY_RUN pg_xlsx_$M > '$R/xlsx_pg_ferry_$M.stdout' 2> '$R/xlsx_pg_ferry_$M.stderr'"
add "xlsx_my_baseline_$M" my "$M" "rm -f '$S/baseline_my.xlsx'" \
    "'$BASELINE' mysql '$FERRY_TEST_MYSQL_URL' '$Q' '$S/baseline_my.xlsx' > '$R/xlsx_my_baseline_$M.stdout'"
add "xlsx_my_ferry_$M" my "$M" "$(fclean "my_xlsx_$M")" \
    "$FERRY_RUN my_xlsx_$M > '$R/xlsx_my_ferry_$M.stdout' 2> '$R/xlsx_my_ferry_$M.stderr'"
if [ "$DIAG" = 1 ]; then
    # Where ferry's peak RSS comes from: chunks in flight (chunk_rows 1000 instead of
    # 10000) and glibc's per-thread malloc arenas (MALLOC_ARENA_MAX=2).
    for srv in pg my; do
        add "diag_${srv}_ferry_c1000_$M" "$srv" "$M" "$(fclean "${srv}_csv_c1000_$M")" \
            "$FERRY_RUN ${srv}_csv_c1000_$M > '$R/diag_${srv}_ferry_c1000_$M.stdout'"
        add "diag_${srv}_ferry_arena2_$M" "$srv" "$M" "$(fclean "${srv}_csv_$M")" \
            "env MALLOC_ARENA_MAX=2 $FERRY_RUN ${srv}_csv_$M > '$R/diag_${srv}_ferry_arena2_$M.stdout'"
    done
    interleave "$RUNS" 0 "diag_pg_ferry_c1000_$M" "diag_pg_ferry_arena2_$M" "diag_my_ferry_c1000_$M" "diag_my_ferry_arena2_$M"
    rm -rf "$P/exports/pg_csv_$M" "$P/exports/my_csv_$M" "$P/exports/pg_csv_c1000_$M" "$P/exports/my_csv_c1000_$M"
fi

# The data is warm from the CSV rounds; an XLSX warm-up would only cost time.
interleave "$XLSX_RUNS" 0 "xlsx_pg_baseline_$M" "xlsx_pg_ferry_$M" "xlsx_my_baseline_$M" "xlsx_my_ferry_$M"
keep_ferry "xlsx_pg_ferry_$M" "$S/ferry_pg.xlsx"
keep_ferry "xlsx_my_ferry_$M" "$S/ferry_my.xlsx"
if [ "$DIAG" = 1 ]; then
    add "diag_pg_xlsx_ferry_c1000_$M" pg "$M" "$(fclean "pg_xlsx_c1000_$M")" \
        "$FERRY_RUN pg_xlsx_c1000_$M > '$R/diag_pg_xlsx_ferry_c1000_$M.stdout'"
    interleave 1 0 "diag_pg_xlsx_ferry_c1000_$M"
    rm -rf "$P/exports/pg_xlsx_c1000_$M"
fi

if [ -n "$PYBIN" ]; then
    if [ "$MAIN" -le "$PY_MAX_ROWS" ]; then
        PYS="'$PYBIN' '$ROOT/benches/db_export_py.py'"
        PY_GROUP=()
        for srv in pg my; do
            url=$FERRY_TEST_PG_URL
            [ $srv = my ] && url=$FERRY_TEST_MYSQL_URL
            for mode in pandas-csv xlsxwriter pandas-xlsx; do
                ext=xlsx
                [ $mode = pandas-csv ] && ext=csv
                name="py_${mode//-/_}_${srv}_$M"
                add "$name" "$srv" "$M" "rm -f '$S/$name.$ext'" \
                    "$PYS $mode $srv '$url' '$Q' '$S/$name.$ext' > '$R/$name.stdout' 2> '$R/$name.stderr'"
                PY_GROUP+=("$name")
            done
        done
        interleave "$PY_RUNS" 0 "${PY_GROUP[@]}"
    else
        log "skipping the Python contenders: $MAIN rows > PY_MAX_ROWS=$PY_MAX_ROWS"
    fi
fi

if [ "$PERF" = 1 ] && command -v perf >/dev/null; then
    for srv in pg my; do
        log "perf: system-wide profile of ferry run ${srv}_csv_$M"
        rm -rf "$P/exports/${srv}_csv_$M"
        # System-wide (ferry, the database server and anything else running): by thread
        # name and binary.
        perf record -q -a -F 999 -o "$R/perf_${srv}_csv.data" -- \
            "$FERRY" run --json --no-notify --config "$P/config.yaml" "${srv}_csv_$M" >/dev/null 2>&1 || true
        perf report -i "$R/perf_${srv}_csv.data" --sort comm,dso --stdio 2>/dev/null \
            | grep -E '^ +[0-9]' | head -30 >"$R/perf_${srv}_csv_system.txt" || true
        rm -f "$R/perf_${srv}_csv.data"
        rm -rf "$P/exports/${srv}_csv_$M"
        # ferry alone (all its threads): by symbol.
        perf record -q -F 1999 -o "$R/perf_${srv}_csv.data" -- \
            "$FERRY" run --json --no-notify --config "$P/config.yaml" "${srv}_csv_$M" >/dev/null 2>&1 || true
        perf report -i "$R/perf_${srv}_csv.data" --sort comm,dso,symbol --stdio 2>/dev/null \
            | grep -E '^ +[0-9]' | head -60 >"$R/perf_${srv}_csv_ferry.txt" || true
        rm -f "$R/perf_${srv}_csv.data"
    done
    rm -rf "$P/exports/pg_csv_$M" "$P/exports/my_csv_$M"
fi

# ---------------------------------------------------------------------------- big sizes
for s in "${SIZES[@]:1}"; do
    Qb=$(query "$s")
    add "csv_pg_psql_copy_$s" pg "$s" "rm -f '$S/big.csv'" \
        "'$PSQL' -X -q '$PGURL' -c \"\\\\copy ($Qb) to '$S/big.csv' csv header\""
    add "csv_pg_ferry_$s" pg "$s" "$(fclean "pg_csv_$s")" \
        "$FERRY_RUN pg_csv_$s > '$R/csv_pg_ferry_$s.stdout' 2> '$R/csv_pg_ferry_$s.stderr'"
    add "csv_my_cli_$s" my "$s" "rm -f '$S/big.tsv'" \
        "'$MARIADB' $MY_ARGS --quick --batch -e '$Qb' > '$S/big.tsv'"
    add "csv_my_ferry_$s" my "$s" "$(fclean "my_csv_$s")" \
        "$FERRY_RUN my_csv_$s > '$R/csv_my_ferry_$s.stdout' 2> '$R/csv_my_ferry_$s.stderr'"
    interleave "$BIG_RUNS" "$WARMUP" "csv_pg_psql_copy_$s" "csv_pg_ferry_$s" "csv_my_cli_$s" "csv_my_ferry_$s"
    # Lines of the last run's outputs (header included), for the report's row checks.
    for f in "$S/big.csv:csv_pg_psql_copy_$s" "$S/big.tsv:csv_my_cli_$s"; do
        [ -f "${f%%:*}" ] && wc -l <"${f%%:*}" >"$R/${f##*:}.lines"
    done
    for srv in pg my; do
        f=$(ferry_file "$R/csv_${srv}_ferry_$s.stdout" 2>/dev/null) && [ -f "$f" ] && wc -l <"$f" >"$R/csv_${srv}_ferry_$s.lines"
    done
    for f in "$S/big.csv:csv_pg_psql_copy_$s" "$S/big.tsv:csv_my_cli_$s"; do
        [ -f "${f%%:*}" ] && stat -c %s "${f%%:*}" >"$R/${f##*:}.bytes"
    done
    rm -rf "$S/big.csv" "$S/big.tsv" "$P/exports"
    add "xlsx_pg_ferry_$s" pg "$s" "rm -rf '$P/exports'" \
        "$FERRY_RUN pg_xlsx_$s > '$R/xlsx_pg_ferry_$s.stdout' 2> '$R/xlsx_pg_ferry_$s.stderr'"
    add "xlsx_my_ferry_$s" my "$s" "rm -rf '$P/exports'" \
        "$FERRY_RUN my_xlsx_$s > '$R/xlsx_my_ferry_$s.stdout' 2> '$R/xlsx_my_ferry_$s.stderr'"
    BIG_X=("xlsx_pg_ferry_$s" "xlsx_my_ferry_$s")
    if [ "$BIG_BASELINES" = 1 ]; then
        add "xlsx_pg_baseline_$s" pg "$s" "rm -f '$S/big.xlsx'" \
            "'$BASELINE' pg '$PGURL' '$Qb' '$S/big.xlsx' > '$R/xlsx_pg_baseline_$s.stdout'"
        add "xlsx_my_baseline_$s" my "$s" "rm -f '$S/big.xlsx'" \
            "'$BASELINE' mysql '$FERRY_TEST_MYSQL_URL' '$Qb' '$S/big.xlsx' > '$R/xlsx_my_baseline_$s.stdout'"
        BIG_X=("xlsx_pg_baseline_$s" "xlsx_pg_ferry_$s" "xlsx_my_baseline_$s" "xlsx_my_ferry_$s")
    fi
    interleave "$BIG_RUNS" 0 "${BIG_X[@]}"
    rm -rf "$P/exports" "$S/big.xlsx"
done
cut -d' ' -f1-3 /proc/loadavg >"$R/loadavg_end"
uptime >"$R/uptime_end"

# ---------------------------------------------------------------------------- checks + report
log "checking outputs and writing the report"
python3 "$ROOT/benches/db_export_report.py" --out "$OUT" --sizes "${SIZES[@]}" --check-values "$CHECK_VALUES"
log "done: $OUT/results.md"
