#!/usr/bin/env bash
# Builds a busybox OCI bundle from Debian's busybox-static: no registry, no network.
# Usage: scripts/mkbundle.sh DIR [karton-binary]   → DIR/rootfs and DIR/config.json
set -euo pipefail
dir=${1:?usage: mkbundle.sh DIR [karton-binary]}
karton=${2:-karton}
busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ! file "$busybox" 2>/dev/null | grep -q static; then
    for b in /bin/busybox /usr/bin/busybox; do [ -x "$b" ] && busybox=$b; done
fi
if [ -z "$busybox" ]; then
    echo "mkbundle: busybox not found: apt-get install busybox-static" >&2
    exit 1
fi
rootfs="$dir/rootfs"
mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,home,var/tmp}
chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
cp "$busybox" "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
    [ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
cat > "$rootfs/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$rootfs/etc/group" <<'G'
root:x:0:
tty:x:5:
nogroup:x:65534:
G
echo karton > "$rootfs/etc/hostname"
if [ ! -f "$dir/config.json" ]; then
    "$karton" spec --bundle "$dir"
    # Non-interactive by default: the tests and the benchmark attach no terminal.
    sed -i 's/"terminal": true/"terminal": false/' "$dir/config.json"
fi
