#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: checks the toolchain, starts the services
# the tests need (none yet for the embedded SQLite core), then formatting, lints and tests.
# Usage: scripts/test.sh            (CI runs it with CI=true: nothing may be skipped)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install the Rust toolchain (rustc 1.95) first" >&2
    exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --all-targets --locked
