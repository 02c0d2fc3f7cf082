#!/usr/bin/env bash
# Builds the CRI test's two images without a registry, as OCI archives for
# `ctr images import`: a busybox image (plus the `shm` helper) and the pod sandbox's
# pause image (a static pause that reaps and exits on TERM).
#
# Usage: tests/engines/cri/images.sh WORKDIR   (writes WORKDIR/busybox.tar, WORKDIR/pause.tar)
# The images are built with podman in private storage below WORKDIR, removed afterwards.
CRI=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$CRI/../lib.sh"
set -e
W=${1:?usage: images.sh WORKDIR}
# podman only imports and saves here; it checks that the runtime named in the rendered
# containers.conf exists but never runs it.
KARTON=${KARTON:-$(command -v runc)}
mkdir -p "$W/podman/net" "$W/podman/libpod-tmp" "$W/img"
cc -static -Os -o "$W/img/pause" "$CRI/pause.c"
cc -static -Os -o "$W/img/shm" "$CRI/shm.c"
busybox_rootfs_tar "$W/img" "$W/img/rootfs.tar"
tar -C "$W/img" -rf "$W/img/rootfs.tar" --transform 's#^#./bin/#' --owner=0 --group=0 pause shm
W_SAVE=$W; W=$W/podman
render "$CRI/../containers.conf.in" "$W/containers.conf"
render "$CRI/../storage.conf.in" "$W/storage.conf"
W=$W_SAVE
pm() { CONTAINERS_CONF=$W/podman/containers.conf CONTAINERS_STORAGE_CONF=$W/podman/storage.conf podman "$@"; }
trap 'pm rmi -a -f >/dev/null 2>&1; unmount_all_under "$W/podman"; rm -rf "$W/podman" "$W/img"' EXIT
pm import --quiet --change 'CMD ["/bin/sh"]' "$W/img/rootfs.tar" localhost/karton-cri-busybox:1 >/dev/null
pm save --quiet --format oci-archive -o "$W/busybox.tar" localhost/karton-cri-busybox:1
pm import --quiet --change 'ENTRYPOINT ["/bin/pause"]' "$W/img/rootfs.tar" localhost/karton-cri-pause:1 >/dev/null
pm save --quiet --format oci-archive -o "$W/pause.tar" localhost/karton-cri-pause:1
