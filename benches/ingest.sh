#!/usr/bin/env bash
# Query-by-email benchmark (issue 13): 500 small requests appended at once and answered
# through Postfix into Dovecot (time from the first append to the last reply, requests
# per second, peak RSS of `ferry serve`), then ten ~9.5 MB requests (peak RSS, target
# ≤ 150 MB). Runs under the throwaway servers of scripts/test-services.sh:
#
#   scripts/test-services.sh bash benches/ingest.sh
#
# Knobs: REQUESTS=500 BIG_REQUESTS=10 BENCH_OUT=bench-out/ingest. Builds ferry in release
# mode (honours CARGO_TARGET_DIR). Results: $BENCH_OUT/results.json; docs/benchmarks.md
# has the figures and the machine.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${BENCH_OUT:-$ROOT/bench-out/ingest}
mkdir -p "$OUT"
: "${FERRY_TEST_IMAP_PORT:?run under scripts/test-services.sh}"
cargo build --release --quiet
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB; $(uname -sr)"
echo "dovecot $(dovecot --version 2>/dev/null | cut -d' ' -f1), postfix $(dpkg-query -W -f '${Version}' postfix 2>/dev/null)"
python3 benches/ingest.py "$TARGET/release/ferry" "$OUT"
