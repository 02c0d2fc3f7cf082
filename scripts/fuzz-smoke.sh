#!/usr/bin/env bash
# Short fuzz smoke run of every cargo-fuzz target in fuzz/ (about 8 s each, under 60 s of
# fuzzing in total; the first build takes longer). Exits non-zero on any crash, leaving the
# crashing input in fuzz/artifacts/<target>/. Without cargo-fuzz it prints SKIP, adds the skip
# to $KARTON_SKIP_LOG (counted in `make test`'s summary) and exits 0.
# Long runs: RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -O <target> -- -max_total_time=600
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
. ../scripts/toolchain.sh
if ! cargo fuzz --version >/dev/null 2>&1; then
    # The test command installs what it needs: cargo-fuzz comes from crates.io.
    echo "fuzz smoke: installing cargo-fuzz"
    if ! cargo install --quiet --locked cargo-fuzz >/tmp/cargo-fuzz-install.log 2>&1; then
        why="cargo-fuzz could not be installed (log: /tmp/cargo-fuzz-install.log)"
        echo "SKIP fuzz-smoke: $why"
        [ -n "${KARTON_SKIP_LOG:-}" ] && printf 'fuzz-smoke\t%s\n' "$why" >>"$KARTON_SKIP_LOG"
        exit 0
    fi
fi
per_target=${FUZZ_SECONDS:-8}
# cargo-fuzz passes nightly-only flags to rustc; RUSTC_BOOTSTRAP lets stable accept them.
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list)
cargo fuzz build -s none -O >/dev/null
triple=$(rustc -vV | sed -n 's/^host: //p')
for t in $targets; do
    mkdir -p "corpus/$t"
    [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    # The binaries cargo fuzz built above (cargo fuzz run would re-check the build each time).
    mkdir -p "artifacts/$t"
    if ! "target/$triple/release/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$per_target" "corpus/$t" >"/tmp/fuzz-smoke-$t.log" 2>&1; then
        echo "fuzz smoke: $t FAILED (log: /tmp/fuzz-smoke-$t.log)"
        grep -E "panicked|SUMMARY|Test unit written" "/tmp/fuzz-smoke-$t.log" || tail -20 "/tmp/fuzz-smoke-$t.log"
        exit 1
    fi
    echo "fuzz smoke: $t ok ($(grep -aEo '^Done [0-9]+ runs' "/tmp/fuzz-smoke-$t.log" | tr -dc 0-9) runs in ${per_target}s)"
done
