#!/usr/bin/env bash
# Builds ferry with the optimised release settings and puts a stripped binary on the PATH:
# `cargo install --profile dist` into ${CARGO_HOME:-~/.cargo}/bin, where rustup's setup
# already points PATH. The first build takes a while (docs/benchmarks.md, "Time to first
# export"); later ones only rebuild what changed. Extra arguments go to `cargo install`
# (e.g. `--features oracle`, `--root /usr/local`).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo >/dev/null || { echo "error: install the Rust toolchain (rustc 1.95) first" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-target}"
if [ ! -d "$target/dist" ]; then
    echo "building ferry (optimised; the first build takes about 12 minutes on 2 cores)…" >&2
fi
# A target folder of our own keeps the compiled dependencies for the next install.
CARGO_TARGET_DIR="$target" cargo install --path . --locked --profile dist --force "$@"
bin="${CARGO_HOME:-$HOME/.cargo}/bin"
case ":$PATH:" in
    *":$bin:"*) ;;
    *) echo "note: $bin is not on your PATH; add it (e.g. in ~/.profile) to run \`ferry\`" >&2 ;;
esac
echo "installed: $(command -v ferry || echo "$bin/ferry") ($("$bin/ferry" --version))" >&2
