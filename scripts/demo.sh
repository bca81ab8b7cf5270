#!/usr/bin/env bash
# The main job on embedded defaults: builds ferry, checks the configuration, runs every
# demo task against the demo SQLite database (built from demo/seed.sql on first use),
# and shows what happened. No external service is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install the Rust toolchain (rustc 1.95) first" >&2
    exit 1
fi
cargo build --release --locked
ferry="${CARGO_TARGET_DIR:-target}/release/ferry"

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
