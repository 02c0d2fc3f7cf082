#!/usr/bin/env bash
# Benchmark, not a test: `podman run --rm localhost/busybox true` with karton vs runc as
# the OCI runtime, side by side with hyperfine (same podman, conmon, storage and image).
#
# Usage: tests/engines/bench.sh KARTON_BINARY [RUNS]   (use the release build)
# Prints hyperfine's tables and medians; with OUT=FILE the run times go there as JSON.
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
# conmon writes an "oom" file into its working directory when a container is OOM-killed.
cd "$W" || exit 1
IMG=localhost/busybox:latest
mkdir -p "$W/net" "$W/libpod-tmp"
render "$HERE/containers.conf.in" "$W/containers.conf"
render "$HERE/storage.conf.in" "$W/storage.conf"
export CONTAINERS_CONF=$W/containers.conf CONTAINERS_STORAGE_CONF=$W/storage.conf
PREEXISTING_LIBPOD=$(ls -d /sys/fs/cgroup/*/libpod_parent 2>/dev/null | tr '\n' ' ')

cleanup() {
    set +e
    cd /
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
# Two rounds in opposite order, so drift on a shared machine hits both runtimes alike.
K=(-n karton "podman --runtime karton run --rm --network none $IMG true")
R=(-n runc "podman --runtime runc run --rm --network none $IMG true")
hyperfine --warmup 3 --runs "$RUNS" --export-json "$W/round1.json" --export-markdown "$W/round1.md" "${K[@]}" "${R[@]}"
hyperfine --warmup 3 --runs "$RUNS" --export-json "$W/round2.json" --export-markdown "$W/round2.md" "${R[@]}" "${K[@]}"
cat "$W/round1.md" "$W/round2.md"
# Medians over both rounds (hyperfine's tables show means): less sensitive to the other
# work on the box.
python3 - "$W/round1.json" "$W/round2.json" > "$W/bench.json" <<'PY'
import json, statistics, sys
times = {}
for f in sys.argv[1:]:
    for r in json.load(open(f))["results"]:
        times.setdefault(r["command"], []).extend(r["times"])
for name, t in times.items():
    q = statistics.quantiles(t, n=4)
    print(f"{name}: median {statistics.median(t) * 1000:.1f} ms, quartiles {q[0] * 1000:.1f}-{q[2] * 1000:.1f} ms, "
          f"min {min(t) * 1000:.1f} ms over {len(t)} runs", file=sys.stderr)
json.dump(times, sys.stdout)
PY
# Interleaved pairs (karton, runc / runc, karton alternately): each pair runs under the
# same load, so the per-pair difference is the figure to trust on a busy machine.
python3 - "$RUNS" "$IMG" <<'PY'
import statistics, subprocess, sys, time
runs, img = int(sys.argv[1]), sys.argv[2]
def once(rt):
    t = time.perf_counter()
    subprocess.run(["podman", "--runtime", rt, "run", "--rm", "--network", "none", img, "true"], check=True)
    return time.perf_counter() - t
k, r = [], []
for i in range(runs):
    for rt in (("karton", "runc") if i % 2 == 0 else ("runc", "karton")):
        (k if rt == "karton" else r).append(once(rt))
d = sorted(a - b for a, b in zip(k, r))
print(f"interleaved, {runs} pairs: karton median {statistics.median(k) * 1000:.1f} ms, "
      f"runc median {statistics.median(r) * 1000:.1f} ms, median of (karton - runc) {statistics.median(d) * 1000:+.1f} ms, "
      f"karton faster in {sum(x < 0 for x in d)}/{runs} pairs")
PY
if [ -n "$OUT" ] && mkdir -p "$(dirname "$OUT")" 2>/dev/null; then
    cp "$W/bench.json" "$OUT" && echo "run times (s) per runtime: $OUT"
fi
