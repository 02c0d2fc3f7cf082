# Shared helpers for the engine end-to-end scripts (sourced, not run).
#
# Every script keeps all of its state under one private work directory ($W): the
# engines' storage, state and sockets, karton's --root, logs. Nothing of the host's
# podman or containerd state is read or written. No network traffic leaves the machine:
# podman's bridge (netavark, 10.88.0.0/16) and slirp4netns reach only the host itself,
# containerd's CRI plugin (CNI) is disabled.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PASSED=()
FAILED=()

log() { printf '%s\n' "$*" >&2; }

pass() {
    PASSED+=("$1")
    printf 'PASS %s\n' "$1"
}

fail() {
    FAILED+=("$1")
    printf 'FAIL %s: %s\n' "$1" "$2"
}

# check NAME COMMAND...: passes when the command succeeds; its output goes to the
# case's log on failure.
check() {
    local name=$1
    shift
    local out
    if out=$("$@" 2>&1); then
        pass "$name"
    else
        fail "$name" "$(printf '%s' "$out" | tail -n 15)"
    fi
}

# expect_eq NAME WANT GOT
expect_eq() {
    if [ "$2" = "$3" ]; then
        pass "$1"
    else
        fail "$1" "want [$2], got [$3]"
    fi
}

# expect_match NAME REGEX TEXT
# A here-string, not `printf | grep -q`: under pipefail, grep -q leaving at its first match
# while printf still writes a TEXT of more than one pipe write (4 KiB; the whole argv log
# is) fails the pipeline with SIGPIPE, a match reported as none. A failure says grep's
# exit status (1: no match, 2: an error): exec-argv failed once in CI with a matching text.
expect_match() {
    grep -Eq -- "$2" <<< "$3"
    local rc=$?
    if [ "$rc" -eq 0 ]; then
        pass "$1"
    else
        fail "$1" "no match (grep -E exit $rc) for /$2/ in: $(tail -n 15 <<< "$3")"
    fi
}

# skip NAME REASON: a case that cannot be meaningful here, printed (never a silent pass)
# and added to $KARTON_SKIP_LOG, which `make test`'s skip summary counts.
skip() {
    printf 'SKIP %s: %s\n' "$1" "$2"
    if [ -n "${KARTON_SKIP_LOG:-}" ]; then
        printf 'engines/%s::%s\t%s\n' "$(basename "$0" .sh)" "$1" "$2" >>"$KARTON_SKIP_LOG"
    fi
}

# summary: prints the totals, exits 1 when any case failed.
summary() {
    printf '%s: %d passed, %d failed\n' "$1" "${#PASSED[@]}" "${#FAILED[@]}"
    if [ "${#FAILED[@]}" -gt 0 ]; then
        printf 'failed: %s\n' "${FAILED[*]}"
        return 1
    fi
    return 0
}

# need CMD...: exits 77 ("skipped") naming the first missing command.
need() {
    local c
    for c in "$@"; do
        if ! command -v "$c" >/dev/null 2>&1; then
            echo "SKIP: $c is not installed (scripts/deps.sh installs podman conmon containerd)"
            exit 77
        fi
    done
    if [ "$(id -u)" -ne 0 ]; then
        echo "SKIP: needs root (the engines run rootful containers here)"
        exit 77
    fi
}

# busybox_rootfs_tar DIR OUT: a busybox root filesystem as a tarball, from the host's
# static busybox: no registry.
busybox_rootfs_tar() {
    local dir=$1 out=$2 bb=""
    for b in /bin/busybox /usr/bin/busybox; do
        if [ -x "$b" ] && [[ $(file "$b" 2>/dev/null) == *static* ]]; then bb=$b; break; fi
    done
    [ -n "$bb" ] || { log "busybox-static is not installed"; return 1; }
    local r="$dir/rootfs"
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,home,var/tmp,run}
    chmod 1777 "$r/tmp" "$r/var/tmp"
    cp "$bb" "$r/bin/busybox"
    local a
    for a in $("$r/bin/busybox" --list); do
        [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$r/etc/passwd"
    printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' > "$r/etc/group"
    tar -C "$r" -cf "$out" .
    rm -rf "$r"
}

# render TEMPLATE OUT: substitutes @W@ (work dir), @KARTON@ (the runtime podman and
# containerd call), @KARTON_REAL@ (the karton binary) and @RUNC@.
render() {
    sed -e "s#@W@#$W#g" -e "s#@KARTON@#${KARTON_CALLED:-$KARTON}#g" -e "s#@KARTON_REAL@#$KARTON#g" \
        -e "s#@RUNC@#$(command -v runc || echo /usr/sbin/runc)#g" "$1" > "$2"
}

# karton_wrapper PATH [ROOT]: a tiny wrapper that records each argv the engine passes and
# runs karton, with a private --root when ROOT is given (podman 4.3 drops --runtime-flag
# on `delete`, so a flag alone would leave state behind in /run/karton).
karton_wrapper() {
    local root=""
    [ -n "${2:-}" ] && root="--root \"$2\""
    cat > "$1" <<EOF
#!/bin/sh
printf '%s\n' "\$*" >> "$W/argv.log"
exec "$KARTON" $root "\$@"
EOF
    chmod 755 "$1"
}

# mounts_under DIR: mount points below DIR still in this mount namespace.
mounts_under() {
    awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo
}

# unmount_all_under DIR: lazily unmounts what an engine left below DIR (deepest first).
unmount_all_under() {
    local m
    for m in $(mounts_under "$1" | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}

# netavark_fw_snapshot / netavark_fw_restore: netavark leaves its base iptables chains
# (NETAVARK_FORWARD, NETAVARK-HOSTPORT-*) and net.ipv4.ip_forward=1 behind when the last
# container leaves its bridge. Restore what the host had before the test.
netavark_fw_snapshot() {
    FW_HAD_NETAVARK=$(iptables-save 2>/dev/null | grep -c NETAVARK)
    FW_IP_FORWARD=$(cat /proc/sys/net/ipv4/ip_forward)
    FW_HAD_PODMAN0=$([ -e /sys/class/net/podman0 ] && echo 1 || echo 0)
    # Rootful podman keeps network namespaces in /run/netns, a shared bind mount it makes
    # (as `ip netns add` does) when missing.
    FW_HAD_RUN_NETNS=$(awk '$5 == "/run/netns"' /proc/self/mountinfo | grep -c .)
}

netavark_fw_restore() {
    local t r c
    if [ "${FW_HAD_PODMAN0:-1}" = 0 ] && [ -e /sys/class/net/podman0 ]; then
        ip link del podman0 2>/dev/null
    fi
    if [ "${FW_HAD_NETAVARK:-1}" = 0 ]; then
        for t in filter nat; do
            iptables -t $t -S 2>/dev/null | grep -- '-j NETAVARK' | sed 's/^-A //' | while read -r r; do
                eval "iptables -t $t -D $r" 2>/dev/null
            done
            for c in $(iptables -t $t -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^NETAVARK/ { print $2 }'); do
                iptables -t $t -F "$c" 2>/dev/null
            done
            for c in $(iptables -t $t -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^NETAVARK/ { print $2 }'); do
                iptables -t $t -X "$c" 2>/dev/null
            done
        done
    fi
    [ -n "${FW_IP_FORWARD:-}" ] && echo "$FW_IP_FORWARD" > /proc/sys/net/ipv4/ip_forward
    if [ "${FW_HAD_RUN_NETNS:-1}" = 0 ] && [ -z "$(ls -A /run/netns 2>/dev/null)" ]; then
        umount /run/netns 2>/dev/null
    fi
}

# argv_normalise: podman's calls with IDs, work paths and random names replaced, so that
# a run can be compared with tests/engines/podman-argv.expected.
argv_normalise() {
    sed -E -e "s#$W#@W@#g" -e 's#[0-9a-f]{64}#<ID>#g' -e 's#exec-process-[0-9]+#exec-process-<N>#g' \
        -e 's#/tmp/conmon-term\.[A-Za-z0-9]+#/tmp/conmon-term.<R>#g' -e 's#/var/tmp/podman[0-9]+#/var/tmp/podman<N>#g'
}

# render_containers_conf TEMPLATE OUT: podman reads only $CONTAINERS_CONF when it is set
# (containers/common 0.50: no layering over the distribution's files), so the test's file
# is the distribution's /usr/share/containers/containers.conf (Debian sets
# default_capabilities and default_sysctls there) with the rendered TEMPLATE's settings
# merged over it.
render_containers_conf() {
    render "$1" "$2.override"
    python3 - /usr/share/containers/containers.conf "$2.override" "$2" <<'PY'
import sys, tomllib, json
def load(p):
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
def merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            merge(a[k], v)
        else:
            a[k] = v
    return a
conf = merge(load(sys.argv[1]), load(sys.argv[2]))
def val(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(val(x) for x in v) + "]"
    raise SystemExit(f"containers.conf: cannot write {v!r}")
out = []
def table(name, d):
    out.append(f"[{name}]")
    for k, v in d.items():
        if not isinstance(v, dict):
            out.append(f"{k} = {val(v)}")
    out.append("")
    for k, v in d.items():
        if isinstance(v, dict):
            table(f"{name}.{k}", v)
for name, d in conf.items():
    table(name, d)
open(sys.argv[3], "w").write("\n".join(out))
PY
}
