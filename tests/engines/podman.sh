#!/usr/bin/env bash
# podman (4.3, via conmon) with karton as its OCI runtime, end to end.
#
# Usage: tests/engines/podman.sh KARTON_BINARY
# Prints PASS/FAIL per case and a summary; exits 0 when every case passed, 1 when one
# failed, 77 when podman, conmon or root is missing (the caller prints SKIP).
#
# podman's default configuration (see containers.conf.in: only what this host forces, and
# private paths), so containers get netavark's bridge network unless a case says otherwise.
# Private state only: storage, runroot, events and libpod's tmp live under $W, karton's
# --root is $W/karton-root. What podman changes on the host for its bridge (podman0,
# iptables chains, ip_forward) and the "containers" subuid entries for --userns=auto are
# put back as they were.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"

KARTON=$(realpath "${1:?usage: podman.sh KARTON_BINARY}")
need podman conmon script file iptables curl ss python3
if [ ! -x /usr/lib/podman/netavark ]; then
    echo "SKIP: netavark is not installed: podman's default network needs it (scripts/deps.sh installs it)"
    exit 77
fi
W=$(mktemp -d /tmp/karton-e2e-podman.XXXXXX)
# conmon writes an "oom" file into its working directory when a container is OOM-killed.
cd "$W" || exit 1
echo "workdir: $W"
KROOT=$W/karton-root
KARTON_CALLED=$W/bin/karton
IMG=localhost/karton-e2e-busybox:latest
mkdir -p "$W/bin" "$W/net" "$W/libpod-tmp"
karton_wrapper "$KARTON_CALLED" "$KROOT"
render_containers_conf "$HERE/containers.conf.in" "$W/containers.conf"
render "$HERE/storage.conf.in" "$W/storage.conf"
export CONTAINERS_CONF=$W/containers.conf CONTAINERS_STORAGE_CONF=$W/storage.conf

# cgroups podman makes for itself (cgroupfs manager) that did not exist before: removed
# at the end when empty. Nothing else on the host's cgroup tree is touched.
PREEXISTING_LIBPOD=$(ls -d /sys/fs/cgroup/*/libpod_parent 2>/dev/null | tr '\n' ' ')

P() { podman "$@"; }

netavark_fw_snapshot
# --userns=auto takes its ids from /etc/subuid and /etc/subgid entries of the user
# "containers" (podman's default root-auto-userns-user): made here when missing.
AUTO_START=1500000000
MADE_CONTAINERS_USER=0
ADDED_SUBID=0
if ! getent passwd containers >/dev/null; then
    useradd --system --no-create-home --shell /usr/sbin/nologin containers && MADE_CONTAINERS_USER=1
fi
if ! grep -q '^containers:' /etc/subuid 2>/dev/null && ! grep -q '^containers:' /etc/subgid 2>/dev/null; then
    echo "containers:$AUTO_START:524288" >> /etc/subuid
    echo "containers:$AUTO_START:524288" >> /etc/subgid
    ADDED_SUBID=1
else
    AUTO_START=$(awk -F: '$1 == "containers" { print $2; exit }' /etc/subuid)
fi

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
    [ -n "${HOST_HTTPD:-}" ] && kill "$HOST_HTTPD" 2>/dev/null
    netavark_fw_restore
    [ "$ADDED_SUBID" = 1 ] && sed -i '/^containers:/d' /etc/subuid /etc/subgid
    [ "$MADE_CONTAINERS_USER" = 1 ] && userdel containers 2>/dev/null
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

# --- podman's default network: netavark's bridge ----------------------------------------
# A fresh storage with netavark installed: podman 4.3 picks netavark (Debian's
# golang-github-containers-common recommends it), the "podman" network 10.88.0.0/16 on
# the bridge podman0, which netavark makes for the first container and removes after the
# last. Every address used below is inside this machine.
expect_eq network-backend-netavark netavark "$(P info --format '{{.Host.NetworkBackend}}' 2>&1)"

out=$(P run --rm "$IMG" echo hi 2>&1)
expect_eq default-network-echo-hi hi "$out"

# A long-lived container keeps the bridge up; it also serves the port-forwarding case
# (busybox httpd on port 80, published on the host's 8080) and the health check.
if grep -q ':8080$' <<< "$(ss -ltnH 2>/dev/null | awk '{ print $4 }')"; then
    fail port-8080-free "the host already listens on 8080: $(ss -ltnp | grep ':8080 ')"
fi
P run -d --name web -p 8080:80 --health-cmd true "$IMG" \
    sh -c 'mkdir -p /www && echo page-from-container > /www/index.html && exec httpd -f -p 80 -h /www' >/dev/null 2>&1
expect_eq web-running running "$(state web)"
GW=$(ip -4 -o addr show podman0 2>/dev/null | awk '{ print $4 }' | cut -d/ -f1)
expect_match bridge-podman0-gateway '^10\.88\.[0-9]+\.[0-9]+$' "$GW"

# A listener on the host's side of the bridge: busybox httpd bound to the gateway address,
# fetched with nc (Debian's static busybox wget segfaults in a container, runc's too).
mkdir -p "$W/hostwww"
echo "host-page-$$" > "$W/hostwww/index.html"
HOSTPORT=18088
busybox httpd -f -p "${GW:-10.88.0.1}:$HOSTPORT" -h "$W/hostwww" &
HOST_HTTPD=$!
if wait_until 10 sh -c "ss -ltnH | awk '{print \$4}' | grep -qx '${GW:-10.88.0.1}:$HOSTPORT'"; then
    pass host-listener-on-bridge
else
    fail host-listener-on-bridge "busybox httpd is not listening on ${GW:-?}:$HOSTPORT"
fi

out=$(P run --rm "$IMG" sh -c "echo hi; ip -o -4 addr show eth0; ip route | grep default; cat /proc/sys/net/ipv4/ping_group_range; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 ${GW:-10.88.0.1} $HOSTPORT" 2>&1)
expect_eq bridge-run-output hi "$(printf '%s\n' "$out" | head -n 1)"
expect_match bridge-eth0-10.88 'eth0 +inet 10\.88\.[0-9]+\.[0-9]+/16' "$out"
expect_match bridge-default-route "default via ${GW:-10.88.0.1} dev eth0" "$out"
# Debian's default sysctl (net.ipv4.ping_group_range=0 0), the one #14 tripped over, is
# set in the container's network namespace (the kernel's default is "1 0").
expect_match bridge-default-sysctl-ping_group_range '^0[[:space:]]+0$' "$(printf '%s\n' "$out" | grep -E '^[0-9]+[[:space:]]+[0-9]+$')"
expect_match bridge-reaches-host-listener "^host-page-$$\$" "$out"
kill "$HOST_HTTPD" 2>/dev/null; wait "$HOST_HTTPD" 2>/dev/null

# -p 8080:80: netavark's DNAT from the host's 127.0.0.1:8080 to the container's port 80.
wait_until 10 curl -sf -m 2 http://127.0.0.1:8080/
out=$(curl -sS -m 5 http://127.0.0.1:8080/ 2>&1)
expect_eq port-forward-8080-curl page-from-container "$out"

out=$(P run --rm --network none "$IMG" sh -c 'ip -o link | cut -d: -f2 | tr -d " " | sort | tr "\n" " "; echo; ip -o -4 addr' 2>&1)
expect_match network-none-only-lo '^lo $' "$(printf '%s\n' "$out" | head -n 1)"
# runc and crun bring lo up in a new network namespace; podman counts on it.
expect_match network-none-lo-up 'lo +inet 127\.0\.0\.1/8' "$out"

host_links=$(ip -o link | awk -F': ' '{ print $2 }' | sed 's/@.*//' | sort | tr '\n' ' ')
out=$(P run --rm --network host "$IMG" sh -c 'ip -o link | cut -d: -f2 | tr -d " " | sed "s/@.*//" | sort | tr "\n" " "' 2>&1)
expect_eq network-host-interfaces "$host_links" "$out"

# --- podman's default security settings -------------------------------------------------
out=$(P run --rm "$IMG" sh -c 'grep -E "^(Seccomp|NoNewPrivs|CapBnd):" /proc/self/status' 2>&1)
expect_match default-seccomp-filter-mode 'Seccomp:[[:space:]]+2' "$out"
# Debian's default_capabilities (11: CHOWN DAC_OVERRIDE FOWNER FSETID KILL
# NET_BIND_SERVICE SETFCAP SETGID SETPCAP SETUID SYS_CHROOT), not the host's.
expect_match default-capabilities 'CapBnd:[[:space:]]+00000000800405fb' "$out"
out=$(P run --rm --security-opt seccomp=unconfined "$IMG" grep Seccomp: /proc/self/status 2>&1)
expect_match seccomp-unconfined-no-filter 'Seccomp:[[:space:]]+0' "$out"

out=$(P run --rm --read-only "$IMG" sh -c 'touch /x 2>&1; touch /tmp/y && echo tmp-writable; grep " / " /proc/mounts' 2>&1)
expect_match read-only-root 'Read-only file system' "$out"
expect_match read-only-tmp-tmpfs 'tmp-writable' "$out"
expect_match read-only-root-mount ' / [a-z]+ ro[, ]' "$out"

bnd=$(awk '/^CapBnd/ { print $2 }' /proc/self/status)
out=$(P run --rm --privileged "$IMG" sh -c 'grep -E "^(Seccomp|CapEff):" /proc/self/status; ls /dev | wc -l; mkdir -p /mnt && mount -t tmpfs t /mnt && echo mounted' 2>&1)
expect_match privileged-all-caps "CapEff:[[:space:]]+$bnd" "$out"
expect_match privileged-no-seccomp 'Seccomp:[[:space:]]+0' "$out"
expect_match privileged-can-mount 'mounted' "$out"
ndev=$(printf '%s\n' "$out" | grep -E '^[0-9]+$')
if [ "${ndev:-0}" -gt 30 ]; then pass privileged-host-devices; else fail privileged-host-devices "only ${ndev:-?} entries in /dev"; fi

out=$(P run --rm --sysctl net.ipv4.ip_local_port_range="1024 65000" "$IMG" cat /proc/sys/net/ipv4/ip_local_port_range 2>&1)
expect_match sysctl-ip_local_port_range '^1024[[:space:]]+65000$' "$out"
expect_match sysctl-host-unchanged '^[0-9]+[[:space:]]+[0-9]+$' "$(cat /proc/sys/net/ipv4/ip_local_port_range)"
[ "$(cat /proc/sys/net/ipv4/ip_local_port_range | tr -s '[:space:]' ' ')" != "1024 65000" ] || fail sysctl-host-unchanged "the host's range became 1024 65000"

# --userns=auto: podman takes ranges from the "containers" entries of /etc/subuid and
# /etc/subgid (its documented default user); the test adds them when missing.
out=$(P run --rm --userns=auto "$IMG" sh -c 'id -u; cat /proc/self/uid_map' 2>&1)
expect_eq userns-auto-root-inside 0 "$(printf '%s\n' "$out" | head -n 1)"
expect_match userns-auto-map "^[[:space:]]*0[[:space:]]+$AUTO_START[[:space:]]+[0-9]+" "$(printf '%s\n' "$out" | sed -n 2p)"
# --userns=keep-id is tested in podman-rootless.sh: podman 4.3 refuses it when rootful
# ("keep-id is only supported in rootless mode").

# --- exec, top, stats, healthcheck on the bridge container ------------------------------
out=$(P exec web sh -c 'cat /proc/1/cmdline | tr "\0" " "; echo; grep Seccomp: /proc/self/status' 2>&1)
expect_match web-exec 'httpd -f -p 80 -h /www' "$out"
expect_match web-exec-seccomp 'Seccomp:[[:space:]]+2' "$out"
expect_match web-top 'httpd -f -p 80' "$(P top web 2>&1)"
out=$(P stats --no-stream --format '{{.Name}} {{.PIDs}} {{.MemUsage}}' web 2>&1); rc=$?
expect_eq stats-no-stream-exit 0 "$rc"
expect_match stats-no-stream 'web 1 [0-9.]+[kMG]?B / ' "$out"
# No systemd: podman cannot install the health check's timer (it says so on stderr),
# `healthcheck run` works all the same.
P healthcheck run web >/dev/null 2>&1; rc=$?
expect_eq healthcheck-run-exit 0 "$rc"
expect_eq healthcheck-healthy healthy "$(P inspect -f '{{.State.Health.Status}}' web 2>&1)"
P rm -f -t 0 web >/dev/null 2>&1
wait_until 10 sh -c '! [ -e /sys/class/net/podman0 ]'
if [ "$FW_HAD_PODMAN0" = 0 ] && [ -e /sys/class/net/podman0 ]; then fail bridge-removed-after-last "podman0 still exists"; else pass bridge-removed-after-last; fi

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
expect_match not-executable-message 'karton: .*/etc/passwd.* permission denied' "$out"

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

# --- podman's exact calls ----------------------------------------------------------------
# A fixed lifecycle with argv recorded by the wrapper, normalised (IDs, work paths) and
# compared with tests/engines/podman-argv.expected: a change in how podman calls the
# runtime shows up as a diff. Regenerate with PODMAN_ARGV_UPDATE=1.
: > "$W/argv.log"
P run -d --name a1 "$IMG" sh -c 'trap "exit 0" TERM; echo ready; while :; do sleep 0.1; done' >/dev/null 2>&1
wait_until 10 sh -c "podman logs a1 2>&1 | grep -q ready"
P exec a1 true >/dev/null 2>&1
sleep 2 | script -qec "podman exec -it a1 true" /dev/null >/dev/null 2>&1
P pause a1 >/dev/null 2>&1
P unpause a1 >/dev/null 2>&1
P update --memory 64m a1 >/dev/null 2>&1
P stop -t 10 a1 >/dev/null 2>&1
P rm a1 >/dev/null 2>&1
P run --rm --network none "$IMG" true >/dev/null 2>&1
argv_normalise < "$W/argv.log" > "$W/argv.got"
if [ "${PODMAN_ARGV_UPDATE:-0}" = 1 ]; then
    cp "$W/argv.got" "$HERE/podman-argv.expected"
    echo "NOTE podman-argv: $HERE/podman-argv.expected rewritten"
fi
if d=$(diff -u "$HERE/podman-argv.expected" "$W/argv.got" 2>&1); then
    pass podman-argv-unchanged
else
    fail podman-argv-unchanged "podman's calls differ from podman-argv.expected (PODMAN_ARGV_UPDATE=1 rewrites it):
$d"
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
