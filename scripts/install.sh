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
    echo "building ferry (optimised; the first build takes 10–20 minutes on 2 cores)…" >&2
fi
# A target folder of our own keeps the compiled dependencies for the next install.
CARGO_TARGET_DIR="$target" cargo install --path . --locked --profile dist --force "$@"
# Where cargo put it: `--root DIR` (or $CARGO_INSTALL_ROOT) else $CARGO_HOME, then `bin/`.
root="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}"
prev=""
for arg in "$@"; do
    case "$arg" in --root=*) root="${arg#--root=}" ;; esac
    [ "$prev" = "--root" ] && root="$arg"
    prev="$arg"
done
bin="$root/bin"
case ":$PATH:" in
    *":$bin:"*) ;;
    *) echo "note: $bin is not on your PATH; add it (e.g. in ~/.profile) to run \`ferry\`" >&2 ;;
esac
echo "installed: $bin/ferry ($("$bin/ferry" --version))" >&2
