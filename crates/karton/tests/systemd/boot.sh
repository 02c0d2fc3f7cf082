#!/usr/bin/env bash
# Boots Debian's systemd as pid 1 in namespaces and cgroups of our own, for the systemd
# cgroup driver test (crates/karton/tests/systemd_cgroup.rs).
#   boot.sh start DIR TAG   -> prints the host pid of the booted systemd, writes DIR/pid1
#   DIR/share is bind-mounted at /mnt/karton inside (bundles, state go there).
#   boot.sh stop DIR TAG    -> kills it, unmounts, removes the cgroups it made
# TAG names the cgroups: /karton-systemd/TAG in every hierarchy. Never the caller's own
# cgroups: the booting shell moves into these first.
set -euo pipefail
mode=$1 dir=$2 tag=$3
cg=/sys/fs/cgroup
hier=()
for h in "$cg"/*; do
    [ -e "$h/cgroup.procs" ] && hier+=("$(basename "$h")")
done

stop() {
    set +e +o pipefail
    if [ -s "$dir/pid1" ]; then
        kill -9 "$(cat "$dir/pid1")" 2>/dev/null || true
    fi
    # Every process left in our cgroups (the pid namespace dies with its pid 1).
    for i in $(seq 1 400); do
        left=0
        for h in "${hier[@]}"; do
            d=$cg/$h/karton-systemd/$tag
            [ -d "$d" ] || continue
            p=$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)
            if [ -n "$p" ]; then left=1; kill -9 $p 2>/dev/null || true; fi
        done
        [ $left = 0 ] && break
        sleep 0.05
    done
    for h in "${hier[@]}"; do
        d=$cg/$h/karton-systemd/$tag
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        rmdir "$cg/$h/karton-systemd" 2>/dev/null || true
    done
    # The mounts lived in the dead mount namespace; only the scratch dir is ours here.
    rm -rf "$dir/root" "$dir/pid1" 2>/dev/null || true
}

start() {
    for h in "${hier[@]}"; do
        d=$cg/$h/karton-systemd/$tag
        mkdir -p "$d"
        if [ "$h" = cpuset ]; then
            for f in cpuset.cpus cpuset.mems; do
                [ -n "$(cat "$cg/$h/karton-systemd/$f")" ] || cat "$cg/$h/$f" > "$cg/$h/karton-systemd/$f"
                cat "$cg/$h/karton-systemd/$f" > "$d/$f"
            done
        fi
    done
    mkdir -p "$dir/root"
    # The child shell joins our cgroups, then becomes pid 1 of new namespaces.
    setsid bash -c '
        set -e
        for h in '"${hier[*]}"'; do echo $$ > '"$cg"'/$h/karton-systemd/'"$tag"'/cgroup.procs; done
        exec unshare --pid --fork --mount --uts --ipc --cgroup --propagation private \
            bash "$0" inner "$1" "$2"' "$0" "$dir" "$tag" </dev/null >"$dir/boot.log" 2>&1 &
    # The pid 1 is the child of unshare: wait for it.
    for i in $(seq 1 200); do
        un=$(pgrep -P $! -x unshare || true)
        [ -n "$un" ] || un=$!
        p=$(pgrep -P "$un" | head -1 || true)
        if [ -n "$p" ] && [ "$(cat /proc/$p/comm 2>/dev/null)" = systemd ]; then
            echo "$p" > "$dir/pid1"; echo "$p"; return 0
        fi
        sleep 0.05
    done
    echo "boot.sh: systemd did not start as pid 1 (see $dir/boot.log):" >&2
    cat "$dir/boot.log" >&2
    return 1
}

inner() {
    # pid 1 of the new pid namespace, in a private mount namespace.
    r=$dir/root
    mount -t tmpfs tmpfs "$r"
    mkdir -p "$r/upper" "$r/work" "$r/merged"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$r/upper,workdir=$r/work" "$r/merged"
    m=$r/merged
    mount -t proc proc "$m/proc"
    mount -t sysfs -o ro sysfs "$m/sys"
    mount -t tmpfs -o mode=755 tmpfs "$m/sys/fs/cgroup"
    for h in cpu cpuacct cpuset memory devices freezer blkio pids; do
        mkdir -p "$m/sys/fs/cgroup/$h"
        mount -t cgroup -o "$h" cgroup "$m/sys/fs/cgroup/$h"
    done
    mkdir -p "$m/sys/fs/cgroup/systemd" "$m/sys/fs/cgroup/unified"
    mount -t cgroup -o none,name=systemd,xattr cgroup "$m/sys/fs/cgroup/systemd"
    mount -t cgroup2 -o nsdelegate cgroup2 "$m/sys/fs/cgroup/unified"
    mount -t tmpfs -o mode=755 tmpfs "$m/run"
    mount -t tmpfs -o mode=1777 tmpfs "$m/tmp"
    mount --rbind /dev "$m/dev"
    # DIR/share (bundles, the karton binary) is /mnt/karton inside.
    mkdir -p "$dir/share" "$m/mnt/karton"
    mount --bind "$dir/share" "$m/mnt/karton"
    # No network units or gettys to wait for: this system exists for the cgroup test.
    ln -sf /dev/null "$m/etc/systemd/system/getty@.service" 2>/dev/null || true
    exec chroot "$m" /lib/systemd/systemd --system
}

case $mode in
    start) start ;;
    stop) stop ;;
    inner) inner ;;
    *) echo "usage: boot.sh start|stop DIR TAG" >&2; exit 2 ;;
esac
