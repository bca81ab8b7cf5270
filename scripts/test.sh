#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: checks the toolchain, then formatting and
# lints, then the tests with throwaway PostgreSQL and MariaDB servers started by
# scripts/test-services.sh (which installs them when missing and stops them afterwards).
# Everything is built once, with the `oracle` feature (its code and unit tests need no
# Oracle software); a lint pass of the default build keeps the build without it clean.
# Usage: scripts/test.sh            (CI runs it with CI=true: nothing may be skipped)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install the Rust toolchain (rustc 1.95) first" >&2
    exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets --features oracle"
cargo clippy --all-targets --features oracle --locked -- -D warnings

echo "== cargo clippy (default features: the build without Oracle support)"
cargo clippy --locked -- -D warnings

# Tests that go without a service list themselves in this file (tests/integration/support.rs
# `skip`); under CI=true such a test fails instead.
FERRY_SKIPPED=$(mktemp "${TMPDIR:-/tmp}/ferry-skipped.XXXXXX")
export FERRY_SKIPPED
report_skipped() {
    if [ "${CI:-}" != true ]; then
        if [ -s "$FERRY_SKIPPED" ]; then
            echo
            echo "== skipped: $(cut -f1 "$FERRY_SKIPPED" | sort -u | wc -l) test(s) went without what they need (CI=true would fail them):"
            sort -u "$FERRY_SKIPPED" | awk -F'\t' '{ print "  " $1 ": " $2 }'
        else
            echo
            echo "== skipped: none"
        fi
    fi
    rm -f "$FERRY_SKIPPED"
}
trap report_skipped EXIT

echo "== cargo test --features oracle (with PostgreSQL and MariaDB from scripts/test-services.sh)"
scripts/test-services.sh cargo test --all-targets --features oracle --locked

# The Debian package (docs/install.md): built with cargo-deb, installed, its systemd unit
# verified, its example task run as the `ferry` user, then purged. It needs root (dpkg, a
# system user); elsewhere it is reported as skipped, and under CI=true that fails.
echo "== the Debian package: build, install, run, purge (scripts/package-test.sh)"
if [ "$(id -u)" -eq 0 ]; then
    scripts/package-test.sh
elif [ "${CI:-}" = true ]; then
    echo "error: the package test needs root (CI=true: nothing may be skipped)" >&2
    exit 1
else
    printf 'package test (scripts/package-test.sh)\tneeds root to install a Debian package\n' >>"$FERRY_SKIPPED"
fi
