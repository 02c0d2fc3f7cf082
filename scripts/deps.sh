#!/usr/bin/env bash
# Installs what karton's build, tests and benchmarks need on Debian 12 (idempotent, quiet).
set -euo pipefail
pkgs=(
    # build: eBPF programs (clang, libbpf's deps) and seccomp
    clang libelf-dev zlib1g-dev pkg-config make libseccomp-dev
    # test fixtures and references: a busybox rootfs, strace for syscall counts,
    # newuidmap/newgidmap for rootless mappings, ip for network namespaces
    busybox-static strace uidmap iproute2 file
    # comparators for the benchmarks
    runc crun hyperfine sysbench time
    podman conmon containerd  # engines driving karton end to end (tests/engines)
    # the systemd cgroup driver's test boots systemd as pid 1 in namespaces of its own
    # (nothing is enabled on the host: there systemd is not pid 1); nsenter is util-linux
    systemd dbus util-linux
    # podman's default network (netavark's bridge, port forwarding through iptables), rootless
    # networking (slirp4netns), and the engine tests' tools (curl, ss, python3)
    netavark aardvark-dns iptables slirp4netns curl iproute2 python3
    # Kubernetes' node path (crates/karton-cri-tests): CNI plugins for containerd's CRI plugin,
    # protoc for the k8s-cri crate's build, a static libc for the test's pause image
    containernetworking-plugins protobuf-compiler gcc libc6-dev
    # application rows of `karton bench` (servers in containers, clients outside) and the
    # bridge mode's port forward
    redis-server redis-tools nginx-light wrk apache2-utils postgresql postgresql-contrib nftables
)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages ${missing[*]}: run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Packages such as nginx, redis-server and postgresql start their services on install; the
# benchmarks start their own servers inside containers, so nothing may start on the host
# (policy-rc.d exit 101 = "action forbidden"; an existing policy is left as it is).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
