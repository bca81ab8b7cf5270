#!/usr/bin/env bash
# Scheduler benchmark (not part of CI): generates TASKS task files (default 10000) whose
# schedules are spread over every second of the minute, times loading and validating them,
# then runs the real scheduler loop for MINUTES minutes (default 5) against the wall clock
# with a no-op runner (claims and finishes still go to the SQLite store) and prints fire
# lateness p50/p99/max, CPU use and peak RSS. Results are recorded in docs/benchmarks.md.
#
# Usage: bash benches/scheduler.sh [TASKS] [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --example sched_bench
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
./target/release/examples/sched_bench "${1:-10000}" "${2:-5}"
