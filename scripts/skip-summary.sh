#!/usr/bin/env bash
# The end of `make test`: how many tests skipped themselves, and why, from the skip log
# that karton_testkit::skip and scripts/fuzz-smoke.sh append to ("<test>\t<reason>" lines).
# A test that records more than one skip counts once. The last line is `skipped: N`.
set -euo pipefail
log=${1:-${KARTON_SKIP_LOG:-$(dirname "$0")/../target/test-skips.log}}
if [ ! -s "$log" ]; then
    echo "skipped: 0"
    exit 0
fi
awk -F'\t' '
    !($1 in reason) { order[n++] = $1 }
    { reason[$1] = $2 }
    END {
        for (i = 0; i < n; i++) count[reason[order[i]]]++
        for (r in count) printf "%6d  %s\n", count[r], r | "sort -rn"
        close("sort -rn")
        printf "skipped: %d (by reason above; each test in %s)\n", n, FILENAME
    }' "$log"
