#!/usr/bin/env bash
# Peak RSS (max resident set, KiB) of `create` for karton, runc and crun on a busybox bundle.
set -euo pipefail
karton=$(realpath "${1:-target/release/karton}")
work=$(mktemp -d /tmp/karton-rss.XXXXXX)
trap 'for r in k r c; do :; done; rm -rf "$work"' EXIT
scripts/mkbundle.sh "$work/bundle" "$karton" >/dev/null
sed -i -e 's/"sh"$/"\/bin\/true"/' -e 's/"ociVersion": "[0-9.]*"/"ociVersion": "1.0.2"/' "$work/bundle/config.json"
peak() { # prints the child's ru_maxrss in KiB
    python3 -c 'import resource,subprocess,sys
r=subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if r.returncode==0 else "failed")' "$@"
}
echo "karton create: $(peak "$karton" --root "$work/k" create --bundle "$work/bundle" rss1) KiB"
"$karton" --root "$work/k" delete --force rss1
if command -v runc >/dev/null; then
    echo "runc create:   $(peak runc --root "$work/r" create --bundle "$work/bundle" rss2) KiB"
    runc --root "$work/r" delete --force rss2 || true
fi
if command -v crun >/dev/null; then
    echo "crun create:   $(peak unshare -m --propagation private sh -c "umount /sys/fs/cgroup/unified; exec crun --root $work/c create --bundle $work/bundle rss3") KiB (wrapped)"
    unshare -m --propagation private sh -c "umount /sys/fs/cgroup/unified; crun --root $work/c delete --force rss3" || true
fi
