#!/usr/bin/env bash
# Peak memory of ferry's one-off commands, two builds side by side (issue 11's "no figure
# more than 5 % worse"): `validate`, `run` of a 10-row CSV export and of a 200,000-row
# XLSX export on SQLite, each RUNS times, the builds interleaved. Needs python3 (sqlite3
# module) and /usr/bin/time.
#
#   bash benches/footprint.sh OLD_FERRY NEW_FERRY
#
# Prints the median peak RSS (MB) per command and build, and the ratio new/old.
set -euo pipefail
OLD=$1
NEW=$2
RUNS=${RUNS:-7}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
P=$(mktemp -d)
trap 'rm -rf "$P"' EXIT
mkdir -p "$P/tasks"
cp -r "$ROOT/templates" "$P/templates"
python3 - "$P/data.db" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, day TEXT, amount REAL, note TEXT)")
con.executemany("INSERT INTO orders VALUES (?,?,?,?)",
                [(i, "2026-12-06", i * 1.5, "note %d" % i) for i in range(1, 200001)])
con.commit()
PY
cat >"$P/config.yaml" <<'YAML'
timezone: UTC
store: { url: "sqlite://state/ferry.db" }
output_dir: out
datasources:
  db: { type: sqlite, url: "sqlite://data.db" }
channels:
  box: { type: outbox, dir: outbox }
YAML
# One store per build: a newer build migrates the store, which an older one then refuses.
sed -e 's|state/ferry.db|state-new/ferry.db|' -e 's|^output_dir: out|output_dir: out-new|' "$P/config.yaml" >"$P/config-new.yaml"
mv "$P/config.yaml" "$P/config-old.yaml"
printf 'schedule: "0 8 * * *"\nsource: db\nquery: SELECT id, day, amount, note FROM orders WHERE id <= 10\noutput: { format: csv }\nnotify: [box]\n' >"$P/tasks/small.yaml"
printf 'schedule: "0 8 * * *"\nsource: db\nquery: SELECT id, day, amount, note FROM orders\noutput: { format: xlsx }\nnotify: [box]\n' >"$P/tasks/big.yaml"
declare -A RSS
for i in $(seq 1 "$RUNS"); do
    for b in old new; do
        bin=$OLD; [ "$b" = new ] && bin=$NEW
        for cmd in validate "run small" "run big"; do
            # shellcheck disable=SC2086
            /usr/bin/time -f "%M" -o "$P/rss" "$bin" --config "$P/config-$b.yaml" $cmd >"$P/cmd.log" 2>&1 \
                || { echo "$b: ferry $cmd failed:" >&2; cat "$P/cmd.log" >&2; exit 1; }
            kb=$(tail -1 "$P/rss")
            RSS["$b/$cmd"]+="$kb "
        done
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-12s %10s %10s %7s\n' command "old MB" "new MB" ratio
for cmd in validate "run small" "run big"; do
    o=$(echo "${RSS["old/$cmd"]}" | median)
    n=$(echo "${RSS["new/$cmd"]}" | median)
    awk -v c="$cmd" -v o="$o" -v n="$n" 'BEGIN {printf "%-12s %10.1f %10.1f %7.3f\n", c, o/1024, n/1024, n/o}'
done
