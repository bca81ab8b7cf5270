#!/usr/bin/env bash
# PostgreSQL driver comparison for issue 4 ("sqlx or tokio-postgres: measure and choose").
# Runs under the throwaway servers of scripts/test-services.sh:
#
#   scripts/test-services.sh bash benches/pg_driver.sh [ROWS]
#
# 1. builds benches/pg_driver (a crate of its own, release mode) into
#    ${CARGO_TARGET_DIR:-target}/pg_driver;
# 2. loads the db_export benchmark table bench_ROWS (default 1,000,000 rows × 12 mixed
#    columns) into PostgreSQL with benches/db_export_gen_pg.sql, or reuses it when
#    benches/db_export.sh (or an earlier run of this script) already made it from the same
#    generator files;
# 3. streams `SELECT <12 columns> FROM bench_ROWS ORDER BY id` through each contender
#    (tokio-postgres `query_raw`, sqlx `fetch`; both decode every value the same way and
#    write nothing), WARMUP untimed rounds then RUNS timed rounds, interleaved: each round
#    runs both, alternating which goes first, so other load on the machine hits both alike;
# 4. checks that both saw the same rows (row count, checksum over every decoded value)
#    and prints a markdown table (medians; wall, user+sys CPU, peak RSS) to stdout and to
#    bench-out/pg_driver/results.md; every run's JSON is in bench-out/pg_driver/runs.jsonl.
#
# Knobs (environment): RUNS=5 WARMUP=1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROWS=${1:-1000000}
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
OUT=$ROOT/bench-out/pg_driver
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/pg_driver
COLS="id, qty, amount, customer, label, day, ts, flag, delta, paid_at, note, score"

log() { printf '[pg-driver %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[[ "$ROWS" =~ ^[1-9][0-9]*$ ]] || die "ROWS must be a positive integer, got '$ROWS'"
for v in FERRY_TEST_PG_URL FERRY_TEST_PG_ADMIN_URL; do
    [ -n "${!v:-}" ] || die "$v is not set: run this under scripts/test-services.sh, e.g.
  scripts/test-services.sh bash benches/pg_driver.sh $ROWS"
done
PSQL=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)/psql
[ -x "$PSQL" ] || PSQL=$(command -v psql) || die "psql is missing"
mkdir -p "$OUT"
: >"$OUT/runs.jsonl"

log "building benches/pg_driver (release) into $TARGET"
cargo build --release --quiet --manifest-path "$ROOT/benches/pg_driver/Cargo.toml" --target-dir "$TARGET"
BIN=$TARGET/release/pg_driver

# The table: the same name and generator-hash comment as benches/db_export.sh uses, so
# either script reuses what the other made.
pg_admin() { "$PSQL" -X -q -v ON_ERROR_STOP=1 "$FERRY_TEST_PG_ADMIN_URL" "$@"; }
T=bench_$ROWS
GEN_SHA=$(cat benches/db_export_gen_pg.sql benches/db_export_gen_mariadb.sql | sha256sum | cut -c1-16)
if [ "$(pg_admin -Atc "SELECT obj_description('public.$T'::regclass)" 2>/dev/null || true)" = "$GEN_SHA" ]; then
    log "reusing $T"
else
    log "generating $T ($ROWS rows, benches/db_export_gen_pg.sql)"
    pg_admin -v tbl="$T" -v rows="$ROWS" -f benches/db_export_gen_pg.sql
    pg_admin -c "COMMENT ON TABLE $T IS '$GEN_SHA'" -c "GRANT SELECT ON $T TO ferry"
fi
[ "$(pg_admin -Atc "SELECT count(*) FROM $T")" = "$ROWS" ] || die "$T does not have $ROWS rows"
Q="SELECT $COLS FROM $T ORDER BY id"

run() { # CONTENDER ROUND
    local load rustc
    load=$(cut -d' ' -f1 /proc/loadavg)
    rustc=$(pgrep -c -x rustc || true)
    "$BIN" "$1" "$FERRY_TEST_PG_URL" "$Q" \
        | sed -e "s/}\$/,\"round\":$2,\"load1\":$load,\"rustc\":$rustc}/" >>"$OUT/runs.jsonl"
    log "  $(tail -n 1 "$OUT/runs.jsonl")"
}
log "$WARMUP warm-up + $RUNS timed rounds, each running both contenders"
for ((r = 1 - WARMUP; r <= RUNS; r++)); do
    if ((r % 2)); then run tokio-postgres "$r"; run sqlx "$r"; else run sqlx "$r"; run tokio-postgres "$r"; fi
done

python3 - "$OUT/runs.jsonl" "$ROWS" <<'PY' | tee "$OUT/results.md"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
rows = int(sys.argv[2])
sums = {r["checksum"] for r in runs}
assert all(r["rows"] == rows for r in runs), "a contender did not read every row"
assert len(sums) == 1, f"the contenders decoded different data: {sums}"
timed = [r for r in runs if r["round"] >= 1]
med = lambda xs: statistics.median(xs)
by = {c: [r for r in timed if r["contender"] == c] for c in ("tokio-postgres", "sqlx")}
base = med([r["wall"] for r in by["tokio-postgres"]])
print(f"{rows:,} rows × 12 columns, {len(by['sqlx'])} timed runs each (medians; min–max wall in brackets)\n")
print("| driver | wall s | rows/s | wall vs tokio-postgres | user+sys CPU s | peak RSS MB |")
print("|---|---|---|---|---|---|")
for c, rs in by.items():
    w = [r["wall"] for r in rs]
    cpu = med([r["user"] + r["sys"] for r in rs])
    rss = med([r["peak_rss_kib"] for r in rs]) / 1024
    print(f"| {c} | {med(w):.2f} ({min(w):.2f}–{max(w):.2f}) | {rows / med(w):,.0f} | "
          f"{med(w) / base:.2f}× | {cpu:.2f} | {rss:.1f} |")
loads = [r["load1"] for r in timed]
print(f"\nload average (1 min) at the start of the timed runs: {min(loads)}–{max(loads)}; "
      f"other rustc processes: {min(r['rustc'] for r in timed)}–{max(r['rustc'] for r in timed)}; "
      f"checksum {sums.pop()} in every run")
PY
