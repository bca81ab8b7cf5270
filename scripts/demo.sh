#!/usr/bin/env bash
# The main job on embedded defaults: builds ferry, checks the configuration, runs every
# demo task against the demo SQLite database (built from demo/seed.sql on first use),
# and shows what happened. No external service is needed.
#
# It builds with the `demo` profile (Cargo.toml): unoptimised, so that the first build is
# quick; `scripts/install.sh` builds the optimised binary for real use.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install the Rust toolchain (rustc 1.95) first" >&2
    exit 1
fi
ferry="${CARGO_TARGET_DIR:-target}/demo/ferry"
if [ ! -x "$ferry" ]; then
    echo "== building ferry for the demo (first time: about 3–4 minutes on 2 cores; later runs start at once)…"
fi
started=$SECONDS
cargo build --profile demo --locked
echo "== built in $((SECONDS - started))s"
echo

$ferry validate
echo
$ferry tasks
echo
for file in tasks/*.yaml; do
    task=$(basename "$file" .yaml)
    $ferry run "$task"
done
echo
$ferry history --limit 10
echo
echo "Result files are in exports/, messages in outbox/, run history in data/ferry.db."
echo "To put an optimised ferry on your PATH: scripts/install.sh (docs/benchmarks.md says how long it takes)."
