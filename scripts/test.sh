#!/usr/bin/env bash
# `make test`: every test on the real kernel, then a short fuzz run of every target; ends
# with the skip summary (scripts/skip-summary.sh), also when a test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/toolchain.sh
# Absolute: cargo runs each test binary in its crate's directory.
KARTON_SKIP_LOG=${KARTON_SKIP_LOG:-${CARGO_TARGET_DIR:-$PWD/target}/test-skips.log}
export KARTON_SKIP_LOG
mkdir -p "$(dirname "$KARTON_SKIP_LOG")"
: >"$KARTON_SKIP_LOG"
status=0
cargo test --workspace --no-fail-fast || status=$?
if [ "$status" -eq 0 ]; then
    scripts/fuzz-smoke.sh || status=$?
fi
scripts/skip-summary.sh "$KARTON_SKIP_LOG"
exit "$status"
