#!/usr/bin/env bash
# containerd 1.6 with its runc shim (io.containerd.runc.v2) running karton as the runc
# binary (`ctr run --runc-binary`), with the overlayfs and native snapshotters.
#
# Usage: tests/engines/containerd.sh KARTON_BINARY
# Prints PASS/FAIL per case and a summary; exits 0 when every case passed, 1 when one
# failed, 77 when containerd, ctr, podman (to build the image) or root is missing.
#
# A private containerd: its config, root, state and sockets live under $W and it is
# stopped on exit. The shim keeps karton's state in /run/containerd/runc/$NS (the shim
# chooses that --root), with a namespace unique to this run, removed at the end.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"

KARTON=$(realpath "${1:?usage: containerd.sh KARTON_BINARY}")
need containerd ctr containerd-shim-runc-v2 podman script file
W=$(mktemp -d /tmp/karton-e2e-containerd.XXXXXX)
# conmon writes an "oom" file into its working directory when a container is OOM-killed.
cd "$W" || exit 1
echo "workdir: $W"
NS=karton-e2e-$$
KROOT=/run/containerd/runc/$NS
RUNTIME=$W/bin/karton
IMG=localhost/karton-e2e-busybox:latest
mkdir -p "$W/bin" "$W/podman/net" "$W/podman/libpod-tmp"
karton_wrapper "$RUNTIME"
C() { ctr --address "$W/containerd.sock" --namespace "$NS" "$@"; }
CD_PID=""
PREEXISTING_CG=$(ls -d /sys/fs/cgroup/*/"$NS" 2>/dev/null | tr '\n' ' ')

cleanup() {
    set +e
    cd /
    if [ -n "$CD_PID" ]; then
        for t in $(C task ls -q 2>/dev/null); do
            C task kill --all -s SIGKILL "$t" >/dev/null 2>&1
            sleep 0.2
            C task delete --force "$t" >/dev/null 2>&1
        done
        for c in $(C container ls -q 2>/dev/null); do C container delete "$c" >/dev/null 2>&1; done
        for i in $(C image ls -q 2>/dev/null); do C image rm "$i" >/dev/null 2>&1; done
        C namespace remove "$NS" >/dev/null 2>&1
        kill "$CD_PID" 2>/dev/null
        wait "$CD_PID" 2>/dev/null
    fi
    # Shims outlive containerd by design; ours are those serving this run's socket.
    for p in /proc/[0-9]*; do
        if [[ $(tr '\0' ' ' 2>/dev/null < "$p/cmdline") == *"-address $W/containerd.sock"* ]]; then
            kill "${p#/proc/}" 2>/dev/null
        fi
    done
    for id in $("$KARTON" --root "$KROOT" list -q 2>/dev/null); do
        "$KARTON" --root "$KROOT" delete --force "$id" >/dev/null 2>&1
    done
    rmdir "$KROOT" 2>/dev/null
    for d in /sys/fs/cgroup/*/"$NS"; do
        case " $PREEXISTING_CG " in *" $d "*) continue ;; esac
        [ -d "$d" ] && rmdir "$d" 2>/dev/null
    done
    podman_env podman rmi -a -f >/dev/null 2>&1
    unmount_all_under "$W"
    rm -rf "$W"
}
trap cleanup EXIT

# Podman only builds the image here (private storage), karton is not involved.
podman_env() {
    CONTAINERS_CONF=$W/podman/containers.conf CONTAINERS_STORAGE_CONF=$W/podman/storage.conf "$@"
}

# --- a private containerd ---------------------------------------------------------------
render "$HERE/containerd.toml.in" "$W/containerd.toml"
containerd --config "$W/containerd.toml" >"$W/containerd.log" 2>&1 &
CD_PID=$!
for _ in $(seq 100); do
    C version >/dev/null 2>&1 && break
    sleep 0.1
done
if ! C version >/dev/null 2>&1; then
    fail containerd-start "$(tail -5 "$W/containerd.log")"
    summary containerd
    exit 1
fi
pass containerd-start

# --- the image: podman import + save as an OCI archive, ctr images import ---------------
busybox_rootfs_tar "$W" "$W/rootfs.tar" || exit 1
W_SAVE=$W; W=$W/podman
render "$HERE/containers.conf.in" "$W/containers.conf"
render "$HERE/storage.conf.in" "$W/storage.conf"
W=$W_SAVE
if podman_env podman import --quiet --change 'CMD ["/bin/sh"]' "$W/rootfs.tar" "$IMG" >/dev/null &&
    podman_env podman save --quiet --format oci-archive -o "$W/busybox-oci.tar" "$IMG"; then
    pass image-oci-archive
else
    fail image-oci-archive "podman import/save failed"
fi
podman_env podman rmi -a -f >/dev/null 2>&1
unmount_all_under "$W/podman"
for snap in overlayfs native; do
    check "image-import-$snap" C images import --snapshotter "$snap" "$W/busybox-oci.tar"
done

kstate() { "$KARTON" --root "$KROOT" state "$1" 2>&1 | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p'; }
tstatus() { C task ls 2>/dev/null | awk -v t="$1" '$1 == t { print $3 }'; }

for snap in overlayfs native; do
    R="--snapshotter $snap --runc-binary $RUNTIME"

    # run, output and exit code
    out=$(C run --rm $R "$IMG" "run-$snap" sh -c 'echo hello from $(cat /proc/1/comm); exit 3' 2>&1); rc=$?
    expect_eq "$snap-run-output" "hello from sh" "$out"
    expect_eq "$snap-run-exit-code" 3 "$rc"
    expect_eq "$snap-run-rm-gone" "" "$(C container ls -q | grep -x "run-$snap")"

    # a long-running task with three processes
    T=task-$snap
    C run -d $R "$IMG" "$T" sh -c 'sleep 600 & sleep 601 & wait' >/dev/null 2>&1
    wait_s=0
    until [ "$(tstatus "$T")" = RUNNING ] || [ $wait_s -ge 50 ]; do sleep 0.1; wait_s=$((wait_s + 1)); done
    expect_eq "$snap-run-d" RUNNING "$(tstatus "$T")"
    expect_eq "$snap-karton-state" running "$(kstate "$T")"
    # ctr asks for cgroupsPath /NS/ID.
    if [ -n "$(ls -d /sys/fs/cgroup/*/"$NS/$T" /sys/fs/cgroup/"$NS/$T" 2>/dev/null)" ]; then
        pass "$snap-cgroup-created"
    else
        fail "$snap-cgroup-created" "no /sys/fs/cgroup/*/$NS/$T"
    fi

    out=$(C task exec --exec-id e1 "$T" sh -c 'echo exec-$((6*7)); exit 6' 2>&1); rc=$?
    expect_eq "$snap-exec-output" "exec-42" "$out"
    expect_eq "$snap-exec-exit-code" 6 "$rc"

    # -t: the shim hands karton a --console-socket; `sleep` lets ctr resize the pty before exit.
    out=$(timeout 60 script -qec "ctr --address $W/containerd.sock --namespace $NS task exec -t --exec-id e2 $T sh -c 'tty; test -t 0 && echo stdin-is-a-tty; sleep 0.3; exit 2'" /dev/null </dev/null 2>&1); rc=$?
    expect_match "$snap-exec-t-tty" '/dev/pts/[0-9]+' "$out"
    expect_match "$snap-exec-t-stdin" 'stdin-is-a-tty' "$out"
    expect_eq "$snap-exec-t-exit-code" 2 "$rc"

    out=$(C task ps "$T" 2>&1)
    n=$(printf '%s\n' "$out" | awk 'NR > 1 && $1 ~ /^[0-9]+$/' | wc -l)
    expect_eq "$snap-task-ps-count" 3 "$n"

    C task pause "$T" >/dev/null 2>&1
    expect_eq "$snap-pause" PAUSED "$(tstatus "$T")"
    expect_eq "$snap-pause-karton" paused "$(kstate "$T")"
    C task resume "$T" >/dev/null 2>&1
    expect_eq "$snap-resume" RUNNING "$(tstatus "$T")"
    expect_eq "$snap-resume-karton" running "$(kstate "$T")"

    # An error from karton: in ctr's output and, as a JSON line, in the shim's log.json.
    out=$(C task exec --exec-id bad "$T" /nonexistent 2>&1); rc=$?
    expect_match "$snap-exec-error-in-ctr" 'OCI runtime exec failed: .*"/nonexistent": no such executable file inside the container' "$out"
    logjson=$W/state/io.containerd.runtime.v2.task/$NS/$T/log.json
    expect_match "$snap-exec-error-in-shim-log" '^\{"level":"error","msg":".*no such executable file inside the container.*","time":"' "$(cat "$logjson" 2>&1)"

    C task kill --all -s SIGKILL "$T" >/dev/null 2>&1
    wait_s=0
    until [ "$(tstatus "$T")" = STOPPED ] || [ $wait_s -ge 50 ]; do sleep 0.1; wait_s=$((wait_s + 1)); done
    expect_eq "$snap-kill-all" STOPPED "$(tstatus "$T")"
    expect_match "$snap-kill-all-argv" "(^| )kill --all $T (9|KILL|SIGKILL)\$" "$(cat "$W/argv.log")"
    check "$snap-task-delete" C task delete "$T"
    check "$snap-container-delete" C container delete "$T"
    expect_eq "$snap-karton-list-empty" "" "$("$KARTON" --root "$KROOT" list -q 2>&1)"

    # create fails: the error reaches ctr, nothing is left behind.
    out=$(C run --rm $R "$IMG" "bad-$snap" /nonexistent 2>&1); rc=$?
    expect_match "$snap-create-error-in-ctr" 'OCI runtime create failed: .*"/nonexistent": no such executable file inside the container \(stat /nonexistent: no such file or directory\)' "$out"
    if [ "$rc" -ne 0 ]; then pass "$snap-create-error-exit"; else fail "$snap-create-error-exit" "rc 0"; fi
    C container delete "bad-$snap" >/dev/null 2>&1
    expect_eq "$snap-create-error-karton-clean" "" "$("$KARTON" --root "$KROOT" list -q 2>&1)"
done

# The shim's global flags reach karton on every call.
calls=$(wc -l < "$W/argv.log")
global=$(grep -cE "^--root $KROOT --log $W/state/io.containerd.runtime.v2.task/$NS/[^ ]+/log.json --log-format json " "$W/argv.log")
expect_eq shim-global-flags-on-every-call "$calls" "$global"
for verb in 'create --bundle' start 'exec --process' pause resume 'ps --format json' 'kill --all' delete; do
    expect_match "shim-called-$(echo "$verb" | tr ' ' '-')" "--log-format json $verb( |\$)" "$(cat "$W/argv.log")"
done

# --- everything gone --------------------------------------------------------------------
expect_eq no-tasks-left "" "$(C task ls -q)"
expect_eq no-containers-left "" "$(C container ls -q)"
# karton removes each container's cgroup on delete, and the parent it made for the
# namespace once that is empty.
left=$(ls -d /sys/fs/cgroup/*/"$NS" 2>/dev/null)
expect_eq container-cgroups-removed "" "$left"
left=$(mounts_under "$W" | grep -v "^$W/podman")
expect_eq no-container-mounts-left "" "$left"

summary containerd
