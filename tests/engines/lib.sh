# Shared helpers for the engine end-to-end scripts (sourced, not run).
#
# Every script keeps all of its state under one private work directory ($W): the
# engines' storage, state and sockets, karton's --root, logs. Nothing of the host's
# podman or containerd state is read or written. No network traffic leaves loopback:
# podman runs with --network none, containerd's CRI plugin (CNI) is disabled.

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
expect_match() {
    if printf '%s' "$3" | grep -Eq -- "$2"; then
        pass "$1"
    else
        fail "$1" "no match for /$2/ in: $(printf '%s' "$3" | tail -n 15)"
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
        if [ -x "$b" ] && file "$b" 2>/dev/null | grep -q static; then bb=$b; break; fi
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
