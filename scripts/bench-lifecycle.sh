#!/usr/bin/env bash
# Times create + start + wait + delete of /bin/true in a busybox bundle, side by side:
# karton, runc and crun (when installed), with hyperfine. Debian's crun refuses this
# hybrid cgroup host, so every runtime runs inside a private mount namespace that hides
# the cgroup2 mount (nothing changes on the host) — the same wrapper for all, so the
# comparison stays fair; karton also runs without the wrapper.
set -euo pipefail
karton=$(realpath "${1:-target/release/karton}")
runs=${RUNS:-30}
work=$(mktemp -d /tmp/karton-bench-lifecycle.XXXXXX)
trap 'rm -rf "$work"' EXIT
scripts/mkbundle.sh "$work/bundle" "$karton" >/dev/null
sed -i -e 's/"sh"$/"\/bin\/true"/' -e 's/"ociVersion": "[0-9.]*"/"ociVersion": "1.0.2"/' "$work/bundle/config.json"
b="$work/bundle"
wrap() { echo "unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; $*'"; }
cmds=(-n "karton" "$karton --root $work/k run --bundle $b k\$\$")
cmds+=(-n "karton (wrapped)" "$(wrap "$karton --root $work/kw run --bundle $b kw\$\$")")
if command -v runc >/dev/null; then
    cmds+=(-n "runc (wrapped)" "$(wrap "runc --root $work/r run --bundle $b r\$\$ >/dev/null")")
fi
if command -v crun >/dev/null; then
    cmds+=(-n "crun (wrapped)" "$(wrap "crun --root $work/c run --bundle $b c\$\$ >/dev/null")")
fi
hyperfine -N --warmup 3 --runs "$runs" --export-json "${OUT:-$work}/lifecycle.json" "${cmds[@]}" 2>&1 || \
hyperfine --warmup 3 --runs "$runs" --export-json "${OUT:-$work}/lifecycle.json" "${cmds[@]}"
