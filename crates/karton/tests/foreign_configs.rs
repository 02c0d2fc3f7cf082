//! config.json files written by other tools (runc, crun, podman 4.3, containerd's ctr; see
//! tests/fixtures/foreign/README.md) run through `karton run`. Each fixture is changed only
//! where it names something that cannot exist on the test machine; every such change is
//! marked `ADAPT:` below. Everything else — sysctls, readonly and masked paths, seccomp,
//! capabilities, mounts with their options, devices, rlimits within the host's limits — is
//! exactly what the tool generated.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/foreign").join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

/// A fixture made runnable here, with what the adaptations created.
struct Foreign {
    k: Karton,
    b: Bundle,
    /// Files standing in for the ones podman kept in its storage.
    files: TempDir,
    netns: Option<NetNs>,
    cgroup: Option<TestCgroup>,
}

/// Where the generating run kept its state (podman's storage, containerd's state).
const GEN_TMP: &str = "/tmp/karton-fixgen.";

fn adapt(name: &str, script: &str) -> Foreign {
    let k = Karton::new();
    let mut b = Bundle::new();
    let files = TempDir::new("karton-test-foreign-files");
    let mut cfg = fixture(name);
    let mut netns = None;
    let mut cgroup = None;

    // ADAPT: the root filesystem of the generating run (podman's overlay/vfs layer) does not
    // exist here: use the test's busybox rootfs. A relative "rootfs" already names it.
    if cfg["root"]["path"].as_str().is_some_and(|p| p.starts_with('/')) {
        cfg["root"]["path"] = json!(b.rootfs());
    }
    // ADAPT: the image's command becomes the assertion script; no terminal (the test has none).
    cfg["process"]["args"] = json!(["sh", "-c", script]);
    cfg["process"]["terminal"] = json!(false);
    // ADAPT: busybox's sh lives in /bin; runc's and crun's PATH has it, podman's too — kept.

    // ADAPT: bind-mount sources in podman's storage (resolv.conf, hosts, hostname,
    // .containerenv, the /dev/shm tmpfs) → files and dirs this test creates.
    if let Some(mounts) = cfg["mounts"].as_array_mut() {
        for m in mounts.iter_mut() {
            let src = m["source"].as_str().unwrap_or("").to_string();
            if !src.starts_with(GEN_TMP) {
                continue;
            }
            let base = Path::new(&src).file_name().unwrap().to_string_lossy().into_owned();
            let local: PathBuf = files.path().join(&base);
            match base.as_str() {
                "shm" => std::fs::create_dir_all(&local).unwrap(),
                "hostname" => std::fs::write(&local, "from-test-hostname-file\n").unwrap(),
                "hosts" => std::fs::write(&local, "127.0.0.1 localhost\n").unwrap(),
                "resolv.conf" => std::fs::write(&local, "nameserver 127.0.0.1\n").unwrap(),
                ".containerenv" => std::fs::write(&local, "engine=\"podman-4.3.1\"\n").unwrap(),
                other => panic!("{name}: unexpected bind source from the generating run: {other}"),
            }
            m["source"] = json!(local);
        }
    }
    if let Some(nss) = cfg["linux"]["namespaces"].as_array_mut() {
        for ns in nss.iter_mut() {
            // ADAPT: podman's /run/netns/netns-UUID is gone with its run → a network
            // namespace this test creates (bind-mounted file in a temp dir).
            if ns["path"].as_str().is_some_and(|p| p.starts_with("/run/netns/")) {
                let n = NetNs::new();
                ns["path"] = json!(n.path);
                netns = Some(n);
            }
        }
    }
    // ADAPT: cgroupsPath (podman's /libpod_parent/libpod-ID, ctr's /NS/ID) → a unique
    // path under the tests' own parent, removed after.
    if cfg["linux"]["cgroupsPath"].is_string() {
        let cg = TestCgroup::new("karton-test-foreign");
        cfg["linux"]["cgroupsPath"] = json!(cg.path());
        cgroup = Some(cg);
    }
    // ADAPT: rlimits above the host's hard limit (no CAP_SYS_RESOURCE here) → the host's.
    if let Some(rl) = cfg["process"]["rlimits"].as_array_mut() {
        for r in rl.iter_mut() {
            if let Some(res) = rlimit_resource(r["type"].as_str().unwrap_or("")) {
                let (_, hard) = nix::sys::resource::getrlimit(res).unwrap();
                for key in ["soft", "hard"] {
                    if r[key].as_u64().is_some_and(|v| v > hard) {
                        r[key] = json!(hard);
                    }
                }
            }
        }
    }
    b.config = cfg;
    Foreign { k, b, files, netns, cgroup }
}

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    if std::fs::symlink_metadata(p).unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

fn rlimit_resource(name: &str) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource;
    Some(match name {
        "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
        "RLIMIT_CORE" => Resource::RLIMIT_CORE,
        "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
        _ => return None,
    })
}

impl Foreign {
    fn run(&self) -> String {
        let (code, out, err) = self.k.run_bundle(&self.b);
        assert_eq!(code, 0, "karton run of the foreign config failed: stdout={out} stderr={err}");
        out
    }
}

/// What the script prints about the container, one `key=value` or `Key:\tvalue` per line.
const PROBE: &str = "grep -E '^(Cap(Eff|Prm|Bnd|Inh|Amb)|NoNewPrivs|Seccomp):' /proc/self/status; \
    echo net=$(readlink /proc/self/ns/net); echo uts=$(readlink /proc/self/ns/uts); echo user=$(readlink /proc/self/ns/user); \
    echo hostname=$(hostname); echo uid=$(id -u) gid=$(id -g) groups=\"$(id -G)\"; echo umask=$(umask); \
    echo nofile=$(ulimit -n)/$(ulimit -Hn); \
    echo root=$(awk '$5==\"/\" {split($6,o,\",\"); r=o[1]} END {print r}' /proc/self/mountinfo); \
    (echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null && echo procsys=rw || echo procsys=ro; \
    echo timerlist=$(wc -c < /proc/timer_list 2>/dev/null); echo firmware=$(ls /sys/firmware 2>/dev/null | wc -l); echo pid1=$(cat /proc/1/comm)";

fn kv(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {out}"))
        .to_string()
}

/// The caps a config asks for, limited to what the host's bounding set can give.
fn want_caps(cfg: &Value, set: &str) -> String {
    format!("{:016x}", cap_mask(&cfg["process"]["capabilities"][set]) & host_cap_bounding())
}

/// The assertions every fixture shares: what its process section and linux section say.
fn check_common(name: &str, cfg: &Value, out: &str) {
    for (set, key) in [("effective", "CapEff"), ("bounding", "CapBnd"), ("permitted", "CapPrm")] {
        let uid0 = cfg["process"]["user"]["uid"].as_u64().unwrap_or(0) == 0;
        if set != "bounding" && !uid0 {
            continue; // a non-root user keeps only ambient capabilities across execve
        }
        assert_eq!(status_field(out, key).unwrap(), want_caps(cfg, set), "{name}: {key}: {out}");
    }
    let nnp = cfg["process"]["noNewPrivileges"].as_bool().unwrap_or(false);
    assert_eq!(status_field(out, "NoNewPrivs").unwrap(), if nnp { "1" } else { "0" }, "{name}: {out}");
    let seccomp = cfg["linux"]["seccomp"].is_object();
    assert_eq!(status_field(out, "Seccomp").unwrap(), if seccomp { "2" } else { "0" }, "{name}: {out}");
    let ro_root = cfg["root"]["readonly"].as_bool().unwrap_or(false);
    assert_eq!(kv(out, "root"), if ro_root { "ro" } else { "rw" }, "{name}: root.readonly: {out}");
    let ro_sys = cfg["linux"]["readonlyPaths"].as_array().is_some_and(|a| a.iter().any(|p| p == "/proc/sys"));
    assert_eq!(
        kv(out, "procsys"),
        if ro_sys { "ro" } else { "rw" },
        "{name}: readonlyPaths /proc/sys: {out}"
    );
    // (/proc/kcore, also in every list, does not exist on this kernel.)
    let masked = |p: &str| cfg["linux"]["maskedPaths"].as_array().is_some_and(|a| a.iter().any(|m| m == p));
    if masked("/proc/timer_list") {
        assert_eq!(kv(out, "timerlist"), "0", "{name}: masked /proc/timer_list reads empty: {out}");
    }
    if masked("/sys/firmware") {
        assert_eq!(kv(out, "firmware"), "0", "{name}: masked directory /sys/firmware is empty: {out}");
    }
    let has =
        |t: &str| cfg["linux"]["namespaces"].as_array().unwrap().iter().find(|n| n["type"] == t).cloned();
    for (t, proc_name) in [("network", "net"), ("uts", "uts"), ("user", "user")] {
        let inside = kv(out, proc_name);
        match has(t) {
            None => assert_eq!(
                inside,
                host_ns(proc_name),
                "{name}: no {t} namespace in the config: the host's is inherited"
            ),
            Some(ns) if ns["path"].is_string() => {}
            Some(_) => assert_ne!(inside, host_ns(proc_name), "{name}: a new {t} namespace"),
        }
    }
    if has("pid").is_some() {
        assert_eq!(kv(out, "pid1"), "sh", "{name}: the process is pid 1 of its pid namespace");
    }
    if let Some(h) = cfg["hostname"].as_str() {
        assert_eq!(kv(out, "hostname"), h, "{name}: hostname");
    }
    let user = &cfg["process"]["user"];
    assert_eq!(
        kv(out, "uid").split_whitespace().next().unwrap(),
        user["uid"].as_u64().unwrap().to_string(),
        "{name}: {out}"
    );
    if let Some(umask) = user["umask"].as_u64() {
        assert_eq!(kv(out, "umask"), format!("{umask:04o}"), "{name}: {out}");
    }
    if let Some(nofile) =
        cfg["process"]["rlimits"].as_array().and_then(|a| a.iter().find(|r| r["type"] == "RLIMIT_NOFILE"))
    {
        assert_eq!(kv(out, "nofile"), format!("{}/{}", nofile["soft"], nofile["hard"]), "{name}: {out}");
    }
}

fn run_fixture(name: &str, extra: &str) -> (Foreign, String) {
    let f = adapt(name, &format!("{PROBE}; {extra}"));
    let out = f.run();
    check_common(name, &f.b.config, &out);
    (f, out)
}

#[test]
fn runc_spec() {
    if !can_run() {
        return;
    }
    let (_f, out) = run_fixture(
        "runc-spec",
        "echo acpi=$(ls /proc/acpi 2>/dev/null | wc -l); ls /sys/class/net | tr '\\n' ' '",
    );
    assert_eq!(kv(&out, "acpi"), "0", "masked directory /proc/acpi is empty: {out}");
    assert!(out.trim_end().ends_with("lo"), "a new network namespace has only lo: {out}");
}

#[test]
fn runc_spec_rootless() {
    if !can_run() {
        return;
    }
    let (_f, out) = run_fixture("runc-spec-rootless", "echo uidmap=$(cat /proc/self/uid_map)");
    // As root, `runc spec --rootless` maps container root to host uid 0, one id.
    assert_eq!(kv(&out, "uidmap").split_whitespace().collect::<Vec<_>>(), ["0", "0", "1"], "{out}");
}

#[test]
fn crun_spec() {
    if !can_run() {
        return;
    }
    let (_f, out) = run_fixture("crun-spec", "echo ptmx=$(stat -c %t:%T /dev/pts/ptmx)");
    assert_eq!(kv(&out, "ptmx"), "5:2", "{out}");
}

#[test]
fn crun_spec_rootless() {
    if !can_run() {
        return;
    }
    // ADAPT: `crun spec --rootless` leaves the mappings out: crun fills in the calling
    // user (here uid/gid 0, size 1) when it runs. karton wants them spelled out (it says
    // so in a clear error), so they are written as crun would use them.
    let mut f = adapt("crun-spec-rootless", &format!("{PROBE}; echo uidmap=$(cat /proc/self/uid_map)"));
    for key in ["uidMappings", "gidMappings"] {
        f.b.config["linux"][key] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
    }
    let out = f.run();
    check_common("crun-spec-rootless", &f.b.config, &out);
    assert_eq!(kv(&out, "uidmap").split_whitespace().collect::<Vec<_>>(), ["0", "0", "1"], "{out}");
}

/// ctr's config: cgroups with a device allowlist (default deny), a /run tmpfs.
#[test]
fn ctr_run() {
    if !can_run() {
        return;
    }
    let (f, out) = run_fixture(
        "ctr-run",
        "mknod /dev/probe-fuse c 10 229 && (exec 3</dev/probe-fuse) 2>/dev/null && echo fuse=open || echo fuse=denied; \
         head -c 4 /dev/zero | wc -c | sed 's/^/zero=/'; grep -E ':(memory|devices):' /proc/self/cgroup; \
         grep ' /run ' /proc/self/mountinfo",
    );
    // mknod of anything is allowed (runc's and karton's implicit "c *:* m" rule); opening a
    // device outside linux.resources.devices is not.
    assert_eq!(kv(&out, "fuse"), "denied", "the devices cgroup denies /dev/fuse (10:229): {out}");
    assert_eq!(kv(&out, "zero"), "4", "an allowed default device: {out}");
    let cg = f.cgroup.as_ref().unwrap().path();
    assert!(out.lines().any(|l| l.contains(":memory:") && l.ends_with(&cg)), "placed in {cg}: {out}");
    assert!(out.lines().any(|l| l.contains(" /run ") && l.contains("tmpfs")), "{out}");
}

/// podman's default network is a namespace it made beforehand (/run/netns/...): joined by path.
#[test]
fn podman_default() {
    if !can_run() {
        return;
    }
    let (f, out) = run_fixture(
        "podman-default",
        "echo etchostname=$(cat /etc/hostname); echo resolv=$(cat /etc/resolv.conf); echo containerenv=$(cat /run/.containerenv); \
         echo asound=$(ls /proc/asound 2>/dev/null | wc -l); grep -E ':pids:' /proc/self/cgroup; \
         p=$(grep ':pids:' /proc/self/cgroup | cut -d: -f3); echo pidsmax=$(cat /sys/fs/cgroup/pids$p/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max); \
         echo nproc=$(ulimit -u)",
    );
    assert_eq!(kv(&out, "net"), f.netns.as_ref().unwrap().link(), "the joined network namespace: {out}");
    assert_eq!(kv(&out, "etchostname"), "from-test-hostname-file", "{out}");
    assert_eq!(kv(&out, "resolv"), "nameserver 127.0.0.1", "{out}");
    assert_eq!(kv(&out, "containerenv"), "engine=\"podman-4.3.1\"", "{out}");
    assert_eq!(kv(&out, "pidsmax"), "2048", "linux.resources.pids.limit: {out}");
    assert_eq!(kv(&out, "nproc"), "32768", "{out}");
    let _ = &f.files;
}

#[test]
fn podman_privileged() {
    if !can_run() {
        return;
    }
    let cfg = fixture("podman-privileged");
    // A device podman copied from the host's /dev into the config.
    let dev = cfg["linux"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["path"] == "/dev/net/tun" || d["path"] == "/dev/loop0")
        .cloned()
        .unwrap();
    let path = dev["path"].as_str().unwrap().to_string();
    let (f, out) = run_fixture(
        "podman-privileged",
        &format!(
            "echo dev=$(stat -c '%t:%T' {path}); mkdir -p /tmp/sysprobe; grep ' /sys ' /proc/self/mountinfo | head -1 | sed 's/^/sysmnt=/'; \
             grep ' /sys/fs/cgroup ' /proc/self/mountinfo | head -1 | sed 's/^/cgmnt=/'"
        ),
    );
    assert_eq!(kv(&out, "net"), f.netns.as_ref().unwrap().link(), "{out}");
    let want = format!("{:x}:{:x}", dev["major"].as_u64().unwrap(), dev["minor"].as_u64().unwrap());
    assert_eq!(kv(&out, "dev"), want, "linux.devices {path}: {out}");
    assert!(kv(&out, "sysmnt").contains(" rw,"), "--privileged mounts /sys rw: {out}");
}

#[test]
fn podman_network_host() {
    if !can_run() {
        return;
    }
    let (_f, out) = run_fixture("podman-network-host", "ls /sys/class/net | wc -l | sed 's/^/ifaces=/'");
    assert_eq!(kv(&out, "net"), host_ns("net"), "{out}");
    let host_ifaces = std::fs::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(kv(&out, "ifaces"), host_ifaces.to_string(), "the host's interfaces in sysfs: {out}");
}

#[test]
fn podman_network_none() {
    if !can_run() {
        return;
    }
    let (_f, out) = run_fixture("podman-network-none", "echo ifaces=$(ls /sys/class/net | tr '\\n' ' ')");
    assert_eq!(kv(&out, "ifaces").trim(), "lo", "{out}");
}

#[test]
fn podman_read_only() {
    if !can_run() {
        return;
    }
    let (_f, out) = run_fixture(
        "podman-read-only",
        "for d in /tmp /var/tmp /run; do touch $d/x 2>/dev/null && echo $d=rw || echo $d=ro; done; \
         (echo x > /etc/hostname) 2>/dev/null && echo etchostname=rw || echo etchostname=ro",
    );
    for d in ["/tmp", "/var/tmp", "/run"] {
        assert_eq!(kv(&out, d), "rw", "{d} is a writable tmpfs on the read-only root: {out}");
    }
    assert_eq!(kv(&out, "etchostname"), "ro", "{out}");
}

/// podman's sysctl lands in the network namespace it joins, with /proc/sys read-only.
#[test]
fn podman_sysctl() {
    if !can_run() {
        return;
    }
    let (f, out) = run_fixture("podman-sysctl", "echo range=$(cat /proc/sys/net/ipv4/ip_local_port_range)");
    assert_eq!(kv(&out, "range"), "1024 65000", "{out}");
    assert_eq!(kv(&out, "net"), f.netns.as_ref().unwrap().link(), "{out}");
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    assert_ne!(
        host.split_whitespace().collect::<Vec<_>>(),
        ["1024", "65000"],
        "the host's value is untouched"
    );
}

/// Rootless podman's keep-id: the container user is the invoking user's uid, mapped back.
#[test]
fn podman_userns_keep_id() {
    if !can_run() {
        return;
    }
    // ADAPT: the mappings' hostIDs are ids of the generating (rootless) user's namespace:
    // 0 = that user, 1.. = its subordinate range. Here: 0 → host uid/gid 165536 (a stand-in
    // for the user), n ≥ 1 → 100000 + n - 1 (a 65536-id subordinate range).
    let f = {
        let mut f = adapt(
            "podman-userns-keep-id",
            &format!("{PROBE}; echo uidmap=$(cat /proc/self/uid_map | tr -s ' \\n' ' ')"),
        );
        for key in ["uidMappings", "gidMappings"] {
            for m in f.b.config["linux"][key].as_array_mut().unwrap() {
                let h = m["hostID"].as_u64().unwrap();
                m["hostID"] = json!(if h == 0 { 165536 } else { 100000 + h - 1 });
            }
        }
        // ADAPT: podman's image layer belongs to the mapped ids (its root is subordinate id
        // 1); the test's busybox rootfs belongs to host root. Give it to the container's
        // root (host 100000), as the layer would be.
        chown_tree(&f.b.rootfs(), 100000, 100000);
        f
    };
    let out = f.run();
    check_common("podman-userns-keep-id", &f.b.config, &out);
    assert_eq!(kv(&out, "uid"), "999 gid=995 groups=995", "process.user uid, gid, additionalGids: {out}");
    let words: Vec<String> = kv(&out, "uidmap").split_whitespace().map(String::from).collect();
    assert!(
        words.windows(3).any(|w| w == ["999", "165536", "1"]),
        "the user maps back to the stand-in: {out}"
    );
    assert_eq!(
        status_field(&out, "CapEff").unwrap(),
        "0000000000000000",
        "uid 999 has no effective caps: {out}"
    );
}
