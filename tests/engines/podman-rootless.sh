#!/usr/bin/env bash
# Rootless podman (4.3, via conmon) with karton as its OCI runtime, as an ordinary user.
#
# Usage: tests/engines/podman-rootless.sh KARTON_BINARY   (run as root: it makes the user)
# Prints PASS/FAIL per case and a summary; exits 0 when every case passed, 1 when one
# failed, 77 when a prerequisite is missing (the caller prints SKIP).
#
# A test user with /etc/subuid and /etc/subgid ranges runs podman with its defaults (the
# same containers.conf as podman.sh: only what this host forces, private paths); podman
# makes its user namespace through newuidmap/newgidmap and gives containers slirp4netns
# networking. karton then runs as uid 0 of podman's user namespace and keeps its state
# under $XDG_RUNTIME_DIR/karton. The user, its ranges, its processes and the work
# directory are removed at the end.

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"

KARTON=$(realpath "${1:?usage: podman-rootless.sh KARTON_BINARY}")
need podman conmon slirp4netns newuidmap newgidmap useradd userdel setpriv python3 curl ss
W=$(mktemp -d /tmp/karton-e2e-podman-rl.XXXXXX)
chmod 755 "$W"
cd "$W" || exit 1
echo "workdir: $W"
KARTON_CALLED=$W/bin/karton
IMG=localhost/karton-e2e-busybox:latest
U=krlpod$(( $$ % 100000 ))
SUB_START=$(( 1700000000 + ($$ % 1000) * 65536 ))
TUN_MODE=""
MADE_USER=0

cleanup() {
    set +e
    cd /
    if [ "$MADE_USER" = 1 ]; then
        P rm -a -f -t 0 >/dev/null 2>&1
        P rmi -a -f >/dev/null 2>&1
        # podman's pause process (holder of its user namespace), conmon, slirp4netns: every
        # process of the test user, by pid.
        for p in $(ps -o pid= -u "$U" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        userdel "$U" 2>/dev/null
        sed -i "/^$U:/d" /etc/subuid /etc/subgid
    fi
    [ -n "$TUN_MODE" ] && chmod "$TUN_MODE" /dev/net/tun
    unmount_all_under "$W"
    rm -rf "$W"
}
trap cleanup EXIT

# --- the user, its ranges, its runtime directory ----------------------------------------
if ! useradd --system --home-dir "$W/home" --create-home --shell /bin/sh "$U" >/dev/null 2>&1; then
    echo "SKIP: useradd $U failed"
    exit 77
fi
MADE_USER=1
echo "$U:$SUB_START:65536" >> /etc/subuid
echo "$U:$SUB_START:65536" >> /etc/subgid
UID_=$(id -u "$U")
GID_=$(id -g "$U")
XDG=$W/xdg
mkdir -p "$XDG" "$W/bin" "$W/net" "$W/libpod-tmp" "$W/storage"
chmod 700 "$XDG"
# slirp4netns opens /dev/net/tun as the user. Debian's udev makes it 0666; this VM has no
# udev and devtmpfs leaves it 0600: give it Debian's mode for the test, put it back after.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
    TUN_MODE=$(stat -c %a /dev/net/tun)
    chmod 666 /dev/net/tun
fi

karton_wrapper "$KARTON_CALLED"
render_containers_conf "$HERE/containers.conf.in" "$W/containers.conf"
# Rootless, containers/storage reads rootless_storage_path (not graphroot); the runroot
# stays podman's rootless default under XDG_RUNTIME_DIR.
printf '[storage]\ndriver = "overlay"\nrootless_storage_path = "%s/storage"\nrunroot = "%s/containers"\n' "$W" "$XDG" > "$W/storage.conf"
touch "$W/argv.log" "$W/events.log"
chown -R "$U:" "$W"

# P ARGS...: podman as the test user, with a clean environment.
P() {
    setpriv --reuid "$UID_" --regid "$GID_" --init-groups env -i \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$W/home" USER="$U" LOGNAME="$U" \
        XDG_RUNTIME_DIR="$XDG" CONTAINERS_CONF="$W/containers.conf" CONTAINERS_STORAGE_CONF="$W/storage.conf" \
        podman "$@"
}
state() { P inspect -f '{{.State.Status}}' "$1" 2>&1; }
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

busybox_rootfs_tar "$W" "$W/rootfs.tar" || exit 1
chown "$U:" "$W/rootfs.tar"
if ! P import --quiet --change 'CMD ["/bin/sh"]' "$W/rootfs.tar" "$IMG" >/dev/null 2>&1; then
    fail image-import "$(P import --quiet "$W/rootfs.tar" "$IMG" 2>&1 | tail -3)"
    summary podman-rootless
    exit 1
fi
pass image-import
expect_eq podman-is-rootless "true slirp4netns" "$(P info --format '{{.Host.Security.Rootless}} {{.Host.Slirp4NetNS.Executable}}' 2>&1 | sed 's#/usr/bin/##')"

# --- run ---------------------------------------------------------------------------------
out=$(P run --rm "$IMG" echo hi 2>&1)
expect_eq run-echo-hi hi "$(printf '%s\n' "$out" | grep -v 'is not a shared mount')"

out=$(P run --rm "$IMG" sh -c 'id -u; cat /proc/self/uid_map; ip -o -4 addr show tap0; grep Seccomp: /proc/self/status' 2>&1)
expect_match run-root-inside '^0$' "$(printf '%s\n' "$out" | grep -E '^[0-9]+$' | head -n 1)"
# The container's uid 0 is the user on the host; its other ids are the user's subuid range.
expect_match run-uid-map-user "^[[:space:]]*0[[:space:]]+$UID_[[:space:]]+1$" "$out"
expect_match run-uid-map-subuid "^[[:space:]]*1[[:space:]]+$SUB_START[[:space:]]+65536$" "$out"
expect_match slirp4netns-tap0 'tap0 +inet 10\.0\.2\.100/24' "$out"
expect_match default-seccomp 'Seccomp:[[:space:]]+2' "$out"
expect_match karton-called-by-podman '(^| )create --bundle ' "$(cat "$W/argv.log")"

# Rootless networking reaches the host: a listener on the host's own address (slirp4netns
# connects from the host's network namespace; nothing leaves the machine).
HOSTIP=$(ip -4 -o addr show scope global | awk '{ print $4 }' | cut -d/ -f1 | head -n 1)
if [ -n "$HOSTIP" ]; then
    mkdir -p "$W/hostwww"
    echo "host-page-$$" > "$W/hostwww/index.html"
    busybox httpd -f -p "$HOSTIP:18089" -h "$W/hostwww" &
    HOST_HTTPD=$!
    wait_until 10 sh -c "ss -ltnH | awk '{print \$4}' | grep -qx '$HOSTIP:18089'"
    out=$(P run --rm "$IMG" sh -c "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $HOSTIP 18089" 2>&1)
    expect_match slirp4netns-reaches-host "^host-page-$$\$" "$out"
    kill "$HOST_HTTPD" 2>/dev/null
    wait "$HOST_HTTPD" 2>/dev/null
else
    skip slirp4netns-reaches-host "the host has no global IPv4 address"
fi

# Port forwarding through podman's rootlessport.
P run -d --name web -p 8081:80 "$IMG" \
    sh -c 'mkdir -p /www && echo page-from-rootless > /www/index.html && exec httpd -f -p 80 -h /www' >/dev/null 2>&1
wait_until 10 curl -sf -m 2 http://127.0.0.1:8081/
expect_eq rootless-port-forward "page-from-rootless" "$(curl -sS -m 5 http://127.0.0.1:8081/ 2>&1)"
P rm -f -t 0 web >/dev/null 2>&1

out=$(P run --rm --network none "$IMG" sh -c 'ip -o link | cut -d: -f2 | tr -d " " | tr "\n" " "' 2>&1)
expect_match network-none-only-lo 'lo $' "$out"

out=$(P run --rm --userns=keep-id "$IMG" id -u 2>&1)
expect_eq userns-keep-id "$UID_" "$(printf '%s\n' "$out" | grep -E '^[0-9]+$')"

# --- run -d, exec, stop, rm; karton's state in XDG_RUNTIME_DIR ---------------------------
P run -d --name r1 "$IMG" sh -c 'trap "exit 0" TERM; echo ready; while :; do sleep 0.1; done' >/dev/null 2>&1
expect_eq run-d-running running "$(state r1)"
R1=$(P inspect -f '{{.Id}}' r1 2>/dev/null)
if [ -n "$R1" ] && [ -d "$XDG/karton/$R1" ]; then pass karton-state-in-xdg; else fail karton-state-in-xdg "no $XDG/karton/$R1 ($(ls "$XDG" 2>&1))"; fi
if [ -n "$R1" ] && [ ! -e "/run/karton/$R1" ]; then pass karton-no-state-in-run; else fail karton-no-state-in-run "/run/karton/$R1 exists"; fi
out=$(P exec r1 sh -c 'echo $((6*7)); cat /proc/1/cmdline | tr "\0" " "' 2>&1)
expect_match exec-output '^42$' "$out"
expect_match exec-sees-init 'while :' "$out"
P exec r1 sh -c 'exit 3' >/dev/null 2>&1; rc=$?
expect_eq exec-exit-code 3 "$rc"
wait_until 10 sh -c "$(declare -f P); P logs r1 2>&1 | grep -q ready"
P stop -t 10 r1 >/dev/null 2>&1; rc=$?
expect_eq stop-exit 0 "$rc"
expect_eq stop-exited exited "$(state r1)"
expect_eq stop-term-code 0 "$(P inspect -f '{{.State.ExitCode}}' r1 2>&1)"
P rm r1 >/dev/null 2>&1; rc=$?
expect_eq rm-exit 0 "$rc"
expect_eq rm-gone "" "$(P ps -a -q --filter name=r1 2>&1)"
if [ -n "$R1" ] && [ ! -e "$XDG/karton/$R1" ]; then pass rm-karton-state-gone; else fail rm-karton-state-gone "$XDG/karton/$R1 left"; fi

P rm -a -f -t 0 >/dev/null 2>&1
expect_eq podman-no-containers "" "$(P ps -a -q 2>&1)"
expect_eq karton-list-empty "" "$(ls -A "$XDG/karton" 2>/dev/null)"

summary podman-rootless
