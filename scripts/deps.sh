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
    # podman's default network (netavark's bridge, port forwarding through iptables), rootless
    # networking (slirp4netns), and the engine tests' tools (curl, ss, python3)
    netavark aardvark-dns iptables slirp4netns curl iproute2 python3
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
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
