#!/usr/bin/env bash
# `make check` (CI runs it before `make test`): formatting, clippy on every target, and
# each crate built alone (features are unified only across the crates built together, so
# a crate can build in the workspace and not alone). One target dir: after the first crate
# only the workspace's own crates are checked again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/toolchain.sh
for tool in rustfmt clippy; do
    if ! cargo "${tool/rustfmt/fmt}" --version >/dev/null 2>&1 && command -v rustup >/dev/null; then
        rustup component add "$tool"
    fi
done
step() { echo "check: $*"; "$@"; }
step cargo fmt --all --check
step cargo clippy --workspace --all-targets --quiet -- -D warnings
for manifest in crates/*/Cargo.toml; do
    crate=$(sed -n 's/^name = "\(.*\)"$/\1/p' "$manifest" | head -1)
    step cargo check -p "$crate" --all-targets --quiet
done
