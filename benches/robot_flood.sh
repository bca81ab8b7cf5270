#!/usr/bin/env bash
# Robot flood benchmark (not part of CI): N notices (default 100) for one DingTalk robot
# through ferry's robot queue and DingTalk channel to a loopback robot that answers like
# DingTalk (130101 above 20 posts a minute). Prints posts made, the most posts in any
# rolling minute, notices delivered, and the time taken, for a burst and a trickle.
# Results are recorded in docs/benchmarks.md.
#
# Usage: bash benches/robot_flood.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --example robot_flood
./target/release/examples/robot_flood "${1:-100}"
