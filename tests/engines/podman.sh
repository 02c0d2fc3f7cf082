#!/usr/bin/env bash
# podman (4.3, via conmon) with karton as its OCI runtime, end to end.
#
# Usage: tests/engines/podman.sh KARTON_BINARY
# Prints PASS/FAIL per case and a summary; exits 0 when every case passed, 1 when one
# failed, 77 when podman, conmon or root is missing (the caller prints SKIP).
#
# Private state only: storage, runroot, events and libpod's tmp live under $W, karton's
# --root is $W/karton-root. Containers run with no network namespace plumbing.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"

KARTON=$(realpath "${1:?usage: podman.sh KARTON_BINARY}")
need podman conmon script file
W=$(mktemp -d /tmp/karton-e2e-podman.XXXXXX)
# conmon writes an "oom" file into its working directory when a container is OOM-killed.
cd "$W" || exit 1
echo "workdir: $W"
KROOT=$W/karton-root
KARTON_CALLED=$W/bin/karton
IMG=localhost/karton-e2e-busybox:latest
mkdir -p "$W/bin" "$W/net" "$W/libpod-tmp"
karton_wrapper "$KARTON_CALLED" "$KROOT"
render "$HERE/containers.conf.in" "$W/containers.conf"
render "$HERE/storage.conf.in" "$W/storage.conf"
export CONTAINERS_CONF=$W/containers.conf CONTAINERS_STORAGE_CONF=$W/storage.conf

# cgroups podman makes for itself (cgroupfs manager) that did not exist before: removed
# at the end when empty. Nothing else on the host's cgroup tree is touched.
PREEXISTING_LIBPOD=$(ls -d /sys/fs/cgroup/*/libpod_parent 2>/dev/null | tr '\n' ' ')

P() { podman "$@"; }

cleanup() {
    set +e
    cd /
    podman rm -a -f -t 0 >/dev/null 2>&1
    podman rmi -a -f >/dev/null 2>&1
    for id in $("$KARTON" --root "$KROOT" list -q 2>/dev/null); do
        "$KARTON" --root "$KROOT" delete --force "$id" >/dev/null 2>&1
    done
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

# --- the image: a busybox rootfs tarball imported, no registry --------------------------
busybox_rootfs_tar "$W" "$W/rootfs.tar" || exit 1
if ! P import --quiet --change 'CMD ["/bin/sh"]' "$W/rootfs.tar" "$IMG" >/dev/null; then
    fail image-import "podman import failed"
    summary podman
    exit 1
fi
pass image-import

# state NAME: podman's view of a container's status.
state() { P inspect -f '{{.State.Status}}' "$1" 2>&1; }
exitcode() { P inspect -f '{{.State.ExitCode}}' "$1" 2>&1; }
kstate() { "$KARTON" --root "$KROOT" state "$1" 2>&1 | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p'; }
cid() { P inspect -f '{{.Id}}' "$1"; }

# wait_until SECONDS COMMAND...: polls every 0.1 s.
wait_until() {
    local t=$(( $1 * 10 ))
    shift
    while [ $t -gt 0 ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
        t=$((t - 1))
    done
    return 1
}

# --- run --rm, exit codes, errors -------------------------------------------------------
out=$(P run --rm --name rm1 "$IMG" sh -c 'echo hello from $(cat /proc/1/comm)' 2>&1); rc=$?
expect_eq run-rm-output "hello from sh" "$out"
expect_eq run-rm-exit 0 "$rc"
expect_eq run-rm-removed "" "$(P ps -a -q --filter name=rm1)"

P run --rm "$IMG" sh -c 'exit 7' >/dev/null 2>&1; rc=$?
expect_eq failing-command-exit-code 7 "$rc"

out=$(P run --rm "$IMG" /nonexistent 2>&1); rc=$?
expect_eq bad-command-absolute-exit-127 127 "$rc"
expect_match bad-command-absolute-message 'karton: .*"/nonexistent": no such executable file inside the container \(stat /nonexistent: no such file or directory\)' "$out"

out=$(P run --rm "$IMG" no-such-command 2>&1); rc=$?
expect_eq bad-command-path-exit-127 127 "$rc"
expect_match bad-command-path-message 'karton: .*"no-such-command": executable file not found in \$PATH' "$out"

out=$(P run --rm "$IMG" /etc/passwd 2>&1); rc=$?
expect_eq not-executable-exit-126 126 "$rc"
expect_match not-executable-message 'karton: .*/etc/passwd: permission denied' "$out"

# A limit this host cannot grant (no CAP_SYS_RESOURCE): karton's reason reaches the user.
hard=$(ulimit -Hn)
eff=$(awk '/^CapEff/ { print $2 }' /proc/self/status)
# Only where raising the hard limit is impossible (CAP_SYS_RESOURCE, bit 24, is missing).
if [ "$hard" != unlimited ] && [ $(( (0x$eff >> 24) & 1 )) -eq 0 ]; then
    n=$((hard + 1))
    out=$(P run --rm --ulimit nofile=$n:$n "$IMG" true 2>&1); rc=$?
    expect_match rlimit-error-message "karton: .*RLIMIT_NOFILE: soft $n hard $n: the hard limit may not exceed" "$out"
    if [ "$rc" -ne 0 ]; then pass rlimit-error-exit; else fail rlimit-error-exit "rc 0"; fi
fi

# podman must treat karton as a runtime that logs JSON errors.
expect_match podman-passes-json-log '^--log-format=json --log [^ ]+ create --bundle [^ ]+ --pid-file [^ ]+ ' "$(cat "$W/argv.log")"

# --- run -d, exec, top ------------------------------------------------------------------
P run -d --name d1 "$IMG" sleep 600 >/dev/null 2>&1
expect_eq run-d-running running "$(state d1)"
D1=$(cid d1)
expect_eq run-d-karton-state running "$(kstate "$D1")"
cgdirs() { ls -d /sys/fs/cgroup/*/libpod_parent/libpod-"$1" /sys/fs/cgroup/libpod_parent/libpod-"$1" 2>/dev/null; }
if [ -n "$(cgdirs "$D1")" ]; then pass run-d-cgroup-created; else fail run-d-cgroup-created "no libpod_parent/libpod-$D1 cgroup"; fi

out=$(P exec d1 sh -c 'echo $((6*7)) $(cat /proc/1/cmdline | tr "\0" " ")' 2>&1)
expect_eq exec-output "42 sleep 600" "$out"
P exec d1 sh -c 'exit 3' >/dev/null 2>&1; rc=$?
expect_eq exec-exit-code 3 "$rc"
out=$(P exec d1 /nonexistent 2>&1); rc=$?
expect_match exec-bad-command-message 'no such executable file inside the container' "$out"
expect_eq exec-bad-command-exit-127 127 "$rc"
expect_match exec-argv '(^| )exec --pid-file [^ ]+ --process [^ ]+ --detach ' "$(grep ' exec ' "$W/argv.log")"

out=$(P top d1 2>&1)
expect_match top 'sleep 600' "$out"

# --- a real pty: exec -it and run -it (podman passes --console-socket) -----------------
# stdin stays open (sleep) until the command is done: an immediate EOF lets script/podman
# close the session before the container's output has been relayed.
out=$(sleep 3 | timeout 60 script -qec "podman exec -it d1 sh -c 'tty; test -t 0 && echo stdin-is-a-tty; exit 4'" /dev/null 2>&1); rc=$?
expect_match exec-it-tty '/dev/pts/[0-9]+' "$out"
expect_match exec-it-stdin 'stdin-is-a-tty' "$out"
expect_eq exec-it-exit-code 4 "$rc"
out=$(printf 'echo typed-$((6*7))\nexit 9\n' | timeout 60 script -qec "podman exec -it d1 sh" /dev/null 2>&1); rc=$?
expect_match exec-it-interactive 'typed-42' "$out"
expect_eq exec-it-interactive-exit 9 "$rc"
out=$(sleep 3 | timeout 60 script -qec "podman run -it --rm $IMG sh -c 'tty; test -t 1 && echo stdout-is-a-tty; exit 5'" /dev/null 2>&1); rc=$?
expect_match run-it-tty '/dev/pts/[0-9]+' "$out"
expect_match run-it-stdout 'stdout-is-a-tty' "$out"
expect_eq run-it-exit-code 5 "$rc"
expect_match console-socket-passed ' create --bundle [^ ]+ --pid-file [^ ]+ --console-socket ' "$(cat "$W/argv.log")"

# --- pause / unpause --------------------------------------------------------------------
P pause d1 >/dev/null 2>&1
expect_eq pause-podman paused "$(state d1)"
expect_eq pause-karton paused "$(kstate "$D1")"
HOSTPID=$(P inspect -f '{{.State.Pid}}' d1)
frozen=$(awk -F: '$2 ~ /freezer/ { print $3 }' "/proc/$HOSTPID/cgroup")
if [ -n "$frozen" ] && [ -f "/sys/fs/cgroup/freezer$frozen/freezer.state" ]; then
    expect_eq pause-freezer FROZEN "$(cat "/sys/fs/cgroup/freezer$frozen/freezer.state")"
fi
P unpause d1 >/dev/null 2>&1
expect_eq unpause-podman running "$(state d1)"
expect_eq unpause-karton running "$(kstate "$D1")"
expect_eq exec-after-unpause ok "$(P exec d1 echo ok 2>&1)"

# --- update --memory --cpus -------------------------------------------------------------
# One shell snippet reads the limits on cgroup v1 and v2 alike.
LIMITS='m=/sys/fs/cgroup/memory/memory.limit_in_bytes; [ -f $m ] || m=/sys/fs/cgroup/memory.max
if [ -f /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then c="$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)"; else c=$(cat /sys/fs/cgroup/cpu.max); fi
echo "$(cat $m) $c"'
out=$(P update --memory 64m --cpus 0.5 d1 2>&1); rc=$?
expect_eq update-exit 0 "$rc"
expect_eq update-limits-inside "67108864 50000 100000" "$(P exec d1 sh -c "$LIMITS" 2>&1)"
expect_match update-argv '(^| )update --resources[= ][^ ]+ ' "$(cat "$W/argv.log")"

# --- rm -f of a running container -------------------------------------------------------
P rm -f -t 0 d1 >/dev/null 2>&1; rc=$?
expect_eq rm-f-exit 0 "$rc"
expect_eq rm-f-gone-podman "" "$(P ps -a -q --filter name=d1)"
expect_eq rm-f-gone-karton "" "$("$KARTON" --root "$KROOT" list -q | grep -x "$D1")"
expect_eq rm-f-cgroups-removed "" "$(cgdirs "$D1")"

# --- kill -s ----------------------------------------------------------------------------
P run -d --name k1 "$IMG" sh -c 'trap "echo got-USR1" USR1; echo ready; while :; do sleep 0.1; done' >/dev/null 2>&1
wait_until 10 sh -c "podman logs k1 2>&1 | grep -q ready"
P kill -s USR1 k1 >/dev/null 2>&1
if wait_until 10 sh -c "podman logs k1 2>&1 | grep -q got-USR1"; then pass kill-s-usr1-delivered; else fail kill-s-usr1-delivered "$(P logs k1 2>&1 | tail -3)"; fi
expect_eq kill-s-usr1-still-running running "$(state k1)"
P kill -s KILL k1 >/dev/null 2>&1
wait_until 10 sh -c "[ \"\$(podman inspect -f '{{.State.Status}}' k1)\" = exited ]"
expect_eq kill-s-kill-exited exited "$(state k1)"
expect_eq kill-s-kill-code 137 "$(exitcode k1)"
P rm k1 >/dev/null 2>&1

# --- stop: TERM, then KILL after the timeout --------------------------------------------
P run -d --name s1 "$IMG" sh -c 'trap "exit 0" TERM; echo ready; while :; do sleep 0.1; done' >/dev/null 2>&1
wait_until 10 sh -c "podman logs s1 2>&1 | grep -q ready"
t0=$(date +%s%N); P stop --time 10 s1 >/dev/null 2>&1; t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
expect_eq stop-term-honoured-code 0 "$(exitcode s1)"
if [ "$ms" -lt 5000 ]; then pass stop-term-fast; else fail stop-term-fast "took ${ms} ms"; fi
P rm s1 >/dev/null 2>&1

P run -d --name s2 "$IMG" sh -c 'trap "" TERM; echo ready; while :; do sleep 0.1; done' >/dev/null 2>&1
wait_until 10 sh -c "podman logs s2 2>&1 | grep -q ready"
t0=$(date +%s%N); P stop --time 2 s2 >/dev/null 2>&1; t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
expect_eq stop-kill-after-timeout-state exited "$(state s2)"
expect_eq stop-kill-after-timeout-code 137 "$(exitcode s2)"
if [ "$ms" -ge 1900 ] && [ "$ms" -lt 10000 ]; then pass stop-kill-after-2s; else fail stop-kill-after-2s "took ${ms} ms"; fi
expect_match stop-argv-term '(^| )kill [0-9a-f]{64} 15$' "$(cat "$W/argv.log")"
expect_match stop-argv-kill '(^| )kill [0-9a-f]{64} 9$' "$(cat "$W/argv.log")"
P rm s2 >/dev/null 2>&1

# --- limits enforced inside -------------------------------------------------------------
out=$(P run --rm --memory 32m --memory-swap 32m "$IMG" sh -c "$LIMITS" 2>&1)
expect_match memory-limit-inside '^33554432 ' "$out"
# Holding 100 MB in a shell variable under a 32 MiB limit: the OOM killer ends it (137).
P run --rm --memory 32m --memory-swap 32m "$IMG" sh -c 'a=$(head -c 100000000 /dev/zero | tr "\0" x); echo survived ${#a}' >/dev/null 2>&1; rc=$?
expect_eq memory-limit-oom-kill 137 "$rc"

out=$(P run --rm --pids-limit 20 "$IMG" sh -c '
p=/sys/fs/cgroup/pids; [ -f $p/pids.max ] || p=/sys/fs/cgroup
echo max=$(cat $p/pids.max)
sh -c "for i in \$(seq 40); do sleep 30 & done" 2>/dev/null; echo forks-rc=$?
echo current=$(cat $p/pids.current)
kill -9 -1 2>/dev/null; true' 2>&1)
expect_match pids-limit-file 'max=20' "$out"
expect_match pids-limit-forks-fail 'forks-rc=[1-9]' "$out"
expect_match pids-limit-current 'current=(1[0-9]|20)$' "$(printf '%s' "$out" | grep current=)"

out=$(P run --rm --cpus 0.5 "$IMG" sh -c "$LIMITS"'
usage() { if [ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then cat /sys/fs/cgroup/cpuacct/cpuacct.usage; else echo $(( $(sed -n "s/^usage_usec //p" /sys/fs/cgroup/cpu.stat) * 1000 )); fi; }
st=/sys/fs/cgroup/cpu/cpu.stat; [ -f $st ] || st=/sys/fs/cgroup/cpu.stat
a=$(usage)
timeout 2 sh -c "while :; do :; done" & timeout 2 sh -c "while :; do :; done" & wait
b=$(usage)
echo busy-ms=$(( (b - a) / 1000000 ))
echo throttled=$(sed -n "s/^nr_throttled //p" $st)' 2>&1)
expect_match cpus-quota-inside ' 50000 100000' "$out"
busy=$(printf '%s' "$out" | sed -n 's/^busy-ms=//p')
throttled=$(printf '%s' "$out" | sed -n 's/^throttled=//p')
# Two busy loops for 2 s of wall time: up to 4000 ms of CPU time unlimited on 2 cores,
# at most ~1000 ms at 0.5 CPU (plus a period's slack).
if [ -n "$busy" ] && [ "$busy" -le 1300 ]; then pass cpus-not-exceeded; else fail cpus-not-exceeded "cpu time over 2 s: ${busy:-?} ms; $out"; fi
if [ "${throttled:-0}" -gt 0 ]; then
    pass cpus-throttled
elif [ -n "$busy" ] && [ "$busy" -lt 900 ]; then
    # A loaded machine can keep the loops below the quota: then no period is throttled.
    echo "NOTE cpus-throttled: inconclusive, the loops got only ${busy} ms of CPU (machine busy)"
else
    fail cpus-throttled "no throttled period at ${busy:-?} ms of CPU time; $out"
fi

# --- everything gone --------------------------------------------------------------------
P rm -a -f -t 0 >/dev/null 2>&1
expect_eq podman-no-containers "" "$(P ps -a -q)"
expect_eq karton-list-empty "" "$("$KARTON" --root "$KROOT" list -q 2>&1)"
P rmi -a -f >/dev/null 2>&1
# Only the storage driver's own home mount (graphroot/overlay) may remain: no container's
# rootfs, shm or bind mount.
left=$(mounts_under "$W" | grep -vx "$W/storage/overlay")
expect_eq no-container-mounts-left "" "$left"

summary podman
