#!/usr/bin/env bash
# Benchmark, not a test: `podman run --rm localhost/busybox true` with karton vs runc as
# the OCI runtime, side by side with hyperfine (same podman, conmon, storage and image).
#
# Usage: tests/engines/bench.sh KARTON_BINARY [RUNS]   (use the release build)
# Prints hyperfine's table; with OUT=FILE the JSON export is copied there.
#
# Both runtimes use their default state roots (/run/karton, /run/runc), as a real
# installation would; podman deletes every container it starts (--rm).

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"

KARTON=$(realpath "${1:?usage: bench.sh KARTON_BINARY [RUNS]}")
RUNS=${2:-20}
OUT=${OUT:-}
need podman conmon runc hyperfine file
W=$(mktemp -d /tmp/karton-e2e-bench.XXXXXX)
IMG=localhost/busybox:latest
mkdir -p "$W/net" "$W/libpod-tmp"
render "$HERE/containers.conf.in" "$W/containers.conf"
render "$HERE/storage.conf.in" "$W/storage.conf"
export CONTAINERS_CONF=$W/containers.conf CONTAINERS_STORAGE_CONF=$W/storage.conf
PREEXISTING_LIBPOD=$(ls -d /sys/fs/cgroup/*/libpod_parent 2>/dev/null | tr '\n' ' ')

cleanup() {
    set +e
    podman rm -a -f -t 0 >/dev/null 2>&1
    podman rmi -a -f >/dev/null 2>&1
    unmount_all_under "$W"
    for d in /sys/fs/cgroup/*/libpod_parent; do
        case " $PREEXISTING_LIBPOD " in *" $d "*) continue ;; esac
        [ -d "$d" ] || continue
        rmdir "$d/conmon" 2>/dev/null
        rmdir "$d" 2>/dev/null
    done
    rm -rf "$W"
}
trap cleanup EXIT

busybox_rootfs_tar "$W" "$W/rootfs.tar" || exit 1
podman import --quiet "$W/rootfs.tar" "$IMG" >/dev/null || exit 1

echo "karton: $("$KARTON" --version | head -1)"
echo "runc:   $(runc --version | head -1)"
echo "podman: $(podman --version)"
hyperfine --warmup 3 --runs "$RUNS" --export-json "$W/bench.json" --export-markdown "$W/bench.md" \
    -n karton "podman --runtime karton run --rm $IMG true" \
    -n runc "podman --runtime runc run --rm $IMG true"
cat "$W/bench.md"
# Medians (hyperfine's table shows means): less sensitive to the other work on the box.
python3 - "$W/bench.json" <<'PY' 2>/dev/null || true
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f"{r['command']}: median {r['median'] * 1000:.1f} ms over {len(r['times'])} runs")
PY
if [ -n "$OUT" ] && mkdir -p "$(dirname "$OUT")" 2>/dev/null; then
    cp "$W/bench.json" "$OUT" && echo "hyperfine JSON: $OUT"
fi
