//! Conformance matrix: one test per MUST / SHOULD of the OCI runtime spec (v1.2,
//! opencontainers/runtime-spec `config.md`, `config-linux.md`, `runtime.md`) that can be
//! checked from outside or inside a container on the test machine. Each test quotes the
//! sentence it checks. A failing test here means karton does not (yet) do what the spec
//! says, not that the test is wrong.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command};

// ---------------------------------------------------------------------------------------
// helpers

/// A process holding namespaces of the test's own (`unshare FLAGS sleep`), killed on drop.
struct NsHolder {
    child: Child,
}

impl NsHolder {
    fn new(flags: &[&str]) -> NsHolder {
        let mut child = holder_command(flags).spawn().expect("unshare");
        let pid = child.id();
        // Wait until unshare has set up and exec'd (sleep, or with --fork, waits for it).
        loop {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let children =
                std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            if comm.trim() == "sleep" || (flags.contains(&"--fork") && !children.trim().is_empty()) {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("unshare {flags:?} exited early: {st}");
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        NsHolder { child }
    }
    /// /proc/PID/ns/NAME of the holder (NAME like "net" or "pid_for_children").
    fn path(&self, name: &str) -> String {
        format!("/proc/{}/ns/{name}", self.child.id())
    }
    fn link(&self, name: &str) -> String {
        std::fs::read_link(self.path(name)).unwrap().to_string_lossy().into_owned()
    }
}

impl Drop for NsHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn create(k: &Karton, b: &Bundle) -> String {
    b.write();
    let id = unique("conf");
    let out = k.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "create: {}", String::from_utf8_lossy(&out.stderr));
    id
}

fn ok(k: &Karton, args: &[&str]) {
    let out = k.run(args);
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn wait_stopped(k: &Karton, id: &str) {
    for _ in 0..1000 {
        if k.status(id) == "stopped" {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{id} did not stop");
}

/// `karton run` that is expected to fail; returns stderr.
fn run_fails(k: &Karton, b: &Bundle) -> String {
    let (code, out, err) = k.run_bundle(b);
    assert_ne!(code, 0, "should have been refused: stdout={out}");
    assert!(
        std::fs::read_dir(k.root.path()).map(|d| d.count()).unwrap_or(0) == 0,
        "a refused container left state behind: {err}"
    );
    err
}

/// A host directory bound read-write at /shared in the container.
fn share(b: &mut Bundle) -> TempDir {
    let dir = TempDir::new("karton-conf-shared");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/shared", "type": "bind", "source": dir.path(), "options": ["rbind", "rw"]}),
    );
    dir
}

fn status_of(out: &str, key: &str) -> String {
    status_field(out, key).unwrap_or_else(|| panic!("no {key}: in {out}"))
}

fn mountinfo_count() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().count()
}

// ---------------------------------------------------------------------------------------
// config.md: root

/// config.md, root.path: "On POSIX platforms, `path` is either an absolute path or a
/// relative path to the bundle."
#[test]
fn root_path_absolute_or_relative() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.sh("test -x /bin/busybox && echo found");
    assert_eq!(k.stdout_of(&b).trim(), "found");
    b.config["root"]["path"] = json!(b.rootfs());
    assert_eq!(k.stdout_of(&b).trim(), "found");
}

/// config.md, root.readonly: "If true then the root filesystem MUST be read-only inside the
/// container, defaults to false."
#[test]
fn root_readonly_true_and_default_false() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.sh("touch /probe 2>/dev/null && echo rw || echo ro");
    b.config["root"]["readonly"] = json!(true);
    assert_eq!(k.stdout_of(&b).trim(), "ro");
    b.config["root"].as_object_mut().unwrap().remove("readonly");
    assert_eq!(k.stdout_of(&b).trim(), "rw", "absent readonly defaults to false");
}

// ---------------------------------------------------------------------------------------
// config.md: mounts

/// config.md, mounts: "The runtime MUST mount entries in the listed order."
#[test]
fn mounts_in_listed_order() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let src = TempDir::new("karton-conf-order");
    std::fs::write(src.path().join("marker"), "bound").unwrap();
    let bind =
        json!({"destination": "/a/b", "type": "bind", "source": src.path(), "options": ["rbind", "ro"]});
    let tmpfs = json!({"destination": "/a", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]});
    let mut b = Bundle::new();
    b.sh("cat /a/b/marker 2>/dev/null || echo hidden");
    // tmpfs first, then the bind inside it: the bind is visible.
    b.config["mounts"].as_array_mut().unwrap().extend([tmpfs.clone(), bind.clone()]);
    assert_eq!(k.stdout_of(&b).trim(), "bound");
    // bind first, then a tmpfs over its parent: the tmpfs hides it.
    let mut b2 = Bundle::new();
    b2.sh("cat /a/b/marker 2>/dev/null || echo hidden");
    std::fs::create_dir_all(b2.rootfs().join("a/b")).unwrap();
    b2.config["mounts"].as_array_mut().unwrap().extend([bind, tmpfs]);
    assert_eq!(k.stdout_of(&b2).trim(), "hidden");
}

/// config.md, mounts.destination (Linux): "it MAY be a relative path, in which case it MUST
/// be interpreted as relative to "/"."
#[test]
fn mount_relative_destination_is_relative_to_root() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "rel/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}));
    b.sh("grep -c ' /rel/mnt ' /proc/self/mountinfo");
    assert_eq!(k.stdout_of(&b).trim(), "1");
}

/// config.md, mounts.source: "Path values for bind mounts are either absolute or relative
/// to the bundle."
#[test]
fn bind_source_relative_to_bundle() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    std::fs::create_dir_all(b.path().join("data")).unwrap();
    std::fs::write(b.path().join("data/f"), "in-bundle").unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/data", "type": "bind", "source": "data", "options": ["bind", "ro"]}));
    b.sh("cat /data/f");
    assert_eq!(k.stdout_of(&b).trim(), "in-bundle");
}

/// config.md, Linux mount options: "Runtimes MUST/SHOULD/MAY implement the following option
/// strings" — the MUST ones that show in mountinfo: ro, nosuid, nodev, noexec, noatime,
/// nodiratime, strictatime, relatime, sync/dirsync (superblock) — and "Runtimes SHOULD treat
/// unknown options as filesystem-specific ones" (size=, mode=, nr_inodes=).
#[test]
fn mount_options_must_and_fs_specific() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let m = b.config["mounts"].as_array_mut().unwrap();
    m.push(json!({"destination": "/m1", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "nosuid", "nodev", "noexec", "noatime", "size=1m", "mode=711", "nr_inodes=77"]}));
    m.push(json!({"destination": "/m2", "type": "tmpfs", "source": "tmpfs", "options": ["strictatime", "nodiratime", "sync", "dirsync"]}));
    m.push(json!({"destination": "/m3", "type": "tmpfs", "source": "tmpfs", "options": ["relatime", "rw", "exec", "suid", "dev"]}));
    b.sh("grep -E ' /m[123] ' /proc/self/mountinfo; stat -c mode=%a /m1; df -i /m1 | tail -1");
    let out = k.stdout_of(&b);
    let line = |p: &str| {
        out.lines()
            .find(|l| l.split(' ').nth(4) == Some(p))
            .unwrap_or_else(|| panic!("{p}: {out}"))
            .to_string()
    };
    let m1 = line("/m1");
    let opts1: Vec<&str> = m1.split(' ').nth(5).unwrap().split(',').collect();
    for o in ["ro", "nosuid", "nodev", "noexec", "noatime"] {
        assert!(opts1.contains(&o), "/m1 lacks {o}: {m1}");
    }
    assert!(out.contains("mode=711"), "{out}");
    assert!(
        out.lines().any(|l| l.split_whitespace().nth(1) == Some("77")),
        "nr_inodes=77 reached tmpfs: {out}"
    );
    let m2 = line("/m2");
    let opts2: Vec<&str> = m2.split(' ').nth(5).unwrap().split(',').collect();
    assert!(
        opts2.contains(&"nodiratime") && !opts2.contains(&"relatime") && !opts2.contains(&"noatime"),
        "strictatime,nodiratime: {m2}"
    );
    assert!(m2.contains("sync") && m2.contains("dirsync"), "sync,dirsync: {m2}");
    let m3 = line("/m3");
    let opts3: Vec<&str> = m3.split(' ').nth(5).unwrap().split(',').collect();
    assert!(
        opts3.contains(&"rw")
            && opts3.contains(&"relatime")
            && !opts3.iter().any(|o| ["nosuid", "nodev", "noexec"].contains(o)),
        "{m3}"
    );
}

/// config.md, root.path: "A directory MUST exist at the path declared by the field."
#[test]
fn root_path_must_exist() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["root"]["path"] = json!("no-such-rootfs");
    let err = run_fails(&k, &b);
    assert!(err.contains("no-such-rootfs"), "{err}");
}

/// config.md, Linux mount options, `idmap`: "If there are no `uidMappings` and `gidMappings`
/// specified and the container isn't using user namespaces, an error MUST be returned."
#[test]
fn idmap_mount_without_mappings_or_user_namespace_is_an_error() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let src = TempDir::new("karton-conf-idmap");
    let mut b = Bundle::new();
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/idm", "type": "bind", "source": src.path(), "options": ["bind", "idmap"]}),
    );
    run_fails(&k, &b);
}

/// config.md, POSIX mounts, uidMappings: "If specified, it MUST be specified along with
/// `gidMappings`."
#[test]
fn mount_uid_mappings_without_gid_mappings_is_an_error() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let src = TempDir::new("karton-conf-idmap");
    let mut b = Bundle::new();
    b.config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/idm", "type": "bind", "source": src.path(), "options": ["bind", "idmap"],
        "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}),
    );
    run_fails(&k, &b);
}

// ---------------------------------------------------------------------------------------
// config.md: process

/// config.md, process.cwd: "is the working directory that will be set for the executable.
/// This value MUST be an absolute path." (and "Runtimes MUST generate an error when invalid
/// or unsupported values are encountered").
#[test]
fn process_cwd_absolute_set_relative_refused() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["cwd"] = json!("/tmp");
    b.sh("pwd");
    assert_eq!(k.stdout_of(&b).trim(), "/tmp");
    b.config["process"]["cwd"] = json!("tmp");
    let err = run_fails(&k, &b);
    assert!(err.contains("cwd"), "{err}");
}

/// config.md, process.consoleSize: "Runtimes MUST ignore `consoleSize` if `terminal` is
/// `false` or unset."
#[test]
fn console_size_ignored_without_terminal() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["terminal"] = json!(false);
    b.config["process"]["consoleSize"] = json!({"height": 25, "width": 80});
    b.sh("test -t 0 && echo tty || echo notty");
    assert_eq!(k.stdout_of(&b).trim(), "notty");
}

/// config.md, process.env: "with the same semantics as IEEE Std 1003.1-2008's `environ`".
#[test]
fn process_env_is_the_environ() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let env = ["PATH=/bin", "A=1", "SPACED=a b  c", "EMPTY="];
    b.config["process"]["env"] = json!(env);
    // env(1) as the process prints exactly the environ it was executed with.
    b.config["process"]["args"] = json!(["env"]);
    let out = k.stdout_of(&b);
    let mut got: Vec<&str> = out.lines().collect();
    // Like runc, karton adds HOME from /etc/passwd when the config has none.
    got.retain(|l| *l != "HOME=/root");
    assert_eq!(got, env);
}

/// config.md, process.args: "at least one entry is REQUIRED (non-Windows), and that entry is
/// used with the same semantics as `execvp`'s *file*."
#[test]
fn process_args_execvp_semantics_and_required() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    // "echo" has no slash: looked up in PATH like execvp; every arg passes unchanged.
    b.config["process"]["args"] = json!(["echo", "a  b", "", "c"]);
    assert_eq!(k.stdout_of(&b), "a  b  c\n");
    b.config["process"]["args"] = json!([]);
    let err = run_fails(&k, &b);
    assert!(err.contains("args"), "{err}");
}

/// config.md, user: "`uid` (int, REQUIRED) specifies the user ID in the container namespace",
/// "`gid`…", "`additionalGids` (array of ints, OPTIONAL) specifies additional group IDs in the
/// container namespace to be added to the process."
#[test]
fn process_user_uid_gid_additional_gids() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["user"] = json!({"uid": 1234, "gid": 2345, "additionalGids": [7, 3456]});
    b.sh("grep -E '^(Uid|Gid|Groups):' /proc/self/status");
    let out = k.stdout_of(&b);
    assert_eq!(status_of(&out, "Uid").split_whitespace().collect::<Vec<_>>(), ["1234"; 4]);
    assert_eq!(status_of(&out, "Gid").split_whitespace().collect::<Vec<_>>(), ["2345"; 4]);
    let groups_line = status_of(&out, "Groups");
    let mut groups: Vec<&str> = groups_line.split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["3456", "7"], "exactly the additionalGids as supplementary groups: {out}");
}

/// config.md, user.umask: "specifies the umask of the user." (The next sentence, "If
/// unspecified, the umask should not be changed from the calling process' umask", is a
/// lowercase, non-normative "should"; runc sets 0022 then, and so does karton: not tested.)
#[test]
fn process_umask_set() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.sh("umask");
    b.config["process"]["user"] = json!({"uid": 0, "gid": 0, "umask": 0o27});
    assert_eq!(k.stdout_of(&b).trim(), "0027");
}

/// config.md, rlimits: "`rlim.rlim_cur` MUST match the configured value." / "`rlim.rlim_max`
/// MUST match the configured value."
#[test]
fn rlimits_soft_and_hard_match() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
        {"type": "RLIMIT_CORE", "soft": 4096, "hard": 8192},
        {"type": "RLIMIT_MSGQUEUE", "soft": 1000, "hard": 2000}
    ]);
    b.sh("grep -E '^Max (open files|core file size|msgqueue size)' /proc/self/limits | awk '{print $(NF-2), $(NF-1)}'");
    let out = k.stdout_of(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["4096 8192", "100 200", "1000 2000"], "{out}");
}

/// config.md, rlimits.type: "The runtime MUST generate an error for any values which cannot
/// be mapped to a relevant kernel interface."
#[test]
fn rlimits_unknown_type_is_an_error() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]);
    let err = run_fails(&k, &b);
    assert!(err.contains("RLIMIT_BOGUS"), "{err}");
}

/// config.md, rlimits: "If `rlimits` contains duplicated entries with same `type`, the runtime
/// MUST generate an error."
#[test]
fn rlimits_duplicate_type_is_an_error() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10}, {"type": "RLIMIT_NOFILE", "soft": 20, "hard": 20}]);
    let err = run_fails(&k, &b);
    assert!(err.contains("RLIMIT_NOFILE"), "{err}");
}

/// config.md, capabilities: "an object containing arrays that specifies the sets of
/// capabilities for the process" — effective, bounding, inheritable, permitted, ambient.
#[test]
fn capabilities_each_set() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let three = json!(["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    b.config["process"]["capabilities"] = json!({
        "bounding": three, "permitted": three, "inheritable": three,
        "effective": ["CAP_CHOWN", "CAP_KILL"], "ambient": ["CAP_NET_BIND_SERVICE"]
    });
    b.sh("grep -E '^Cap' /proc/self/status");
    let out = k.stdout_of(&b);
    let mask = |v: Value| format!("{:016x}", cap_mask(&v));
    assert_eq!(status_of(&out, "CapBnd"), mask(three.clone()));
    assert_eq!(status_of(&out, "CapInh"), mask(three.clone()));
    assert_eq!(status_of(&out, "CapAmb"), mask(json!(["CAP_NET_BIND_SERVICE"])));
    // execve as root recomputes: P'(eff) = P'(perm) = bounding ∩ (inh ∪ perm) ∪ ambient.
    assert_eq!(status_of(&out, "CapPrm"), mask(three));
}

/// config.md, capabilities: "Any value which cannot be mapped to a relevant kernel
/// interface, or cannot be granted otherwise MUST be logged as a warning by the runtime.
/// Runtimes SHOULD NOT fail if the container configuration requests capabilities that
/// cannot be granted". Case 1: `runc spec`'s own default — ambient caps with an empty
/// inheritable set (the kernel refuses to raise them).
#[test]
fn capabilities_ambient_not_grantable_warns_not_fails() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let three = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    b.config["process"]["capabilities"] = json!({"bounding": three, "permitted": three, "effective": three, "inheritable": [], "ambient": three});
    b.sh("grep CapAmb /proc/self/status");
    let (code, out, err) = k.run_bundle(&b);
    assert_eq!(code, 0, "SHOULD NOT fail: {err}");
    assert!(out.contains("0000000000000000"), "nothing ambient could be raised: {out}");
    assert!(err.contains("CAP_KILL") || err.contains("ambient"), "MUST be logged as a warning: {err:?}");
}

/// config.md, capabilities (as above). Case 2: a capability outside the host's bounding set
/// (CAP_SYS_RESOURCE is not in it here).
#[test]
fn capabilities_outside_host_bounding_set_warns_not_fails() {
    if !can_run() {
        return;
    }
    if host_cap_bounding() & (1 << 24) != 0 {
        return karton_testkit::skip("the host's bounding set has CAP_SYS_RESOURCE");
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let caps = json!(["CAP_KILL", "CAP_SYS_RESOURCE"]);
    b.config["process"]["capabilities"] = json!({"bounding": caps, "permitted": caps, "effective": caps});
    b.sh("grep CapEff /proc/self/status");
    let (code, out, err) = k.run_bundle(&b);
    assert_eq!(code, 0, "SHOULD NOT fail: {err}");
    assert!(out.contains(&format!("{:016x}", 1u64 << 5)), "CAP_KILL granted: {out}");
    assert!(err.contains("CAP_SYS_RESOURCE"), "MUST be logged as a warning: {err:?}");
}

/// config.md, noNewPrivileges: "setting `noNewPrivileges` to true prevents the process from
/// gaining additional privileges."
#[test]
fn no_new_privileges() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.sh("grep NoNewPrivs /proc/self/status");
    b.config["process"]["noNewPrivileges"] = json!(true);
    assert_eq!(status_of(&k.stdout_of(&b), "NoNewPrivs"), "1");
    b.config["process"]["noNewPrivileges"] = json!(false);
    assert_eq!(status_of(&k.stdout_of(&b), "NoNewPrivs"), "0");
}

/// config.md, oomScoreAdj: "If `oomScoreAdj` is set, the runtime MUST set `oom_score_adj` to
/// the given value."
#[test]
fn oom_score_adj_set() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["oomScoreAdj"] = json!(345);
    b.sh("cat /proc/self/oom_score_adj");
    assert_eq!(k.stdout_of(&b).trim(), "345");
}

/// config.md, oomScoreAdj: "If `oomScoreAdj` is not set, the runtime MUST NOT change the
/// value of `oom_score_adj`."
#[test]
fn oom_score_adj_unset_is_inherited() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.sh("cat /proc/self/oom_score_adj");
    b.write();
    let id = unique("oom");
    let script = format!(
        "echo 123 > /proc/self/oom_score_adj && exec {KARTON} --root {} run --bundle {} {id}",
        k.root.path().display(),
        b.path().display()
    );
    let out = k.run_cmd(Command::new("sh").args(["-c", &script]));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "123");
}

// ---------------------------------------------------------------------------------------
// config.md: hostname, domainname, annotations, extensibility, valid values

/// config.md, hostname: "specifies the container's hostname as seen by processes running
/// inside the container. On Linux, for example, this will change the hostname in the
/// container UTS namespace." (also domainname)
#[test]
fn hostname_and_domainname_in_new_uts() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["hostname"] = json!("conf-host");
    b.config["domainname"] = json!("conf.test");
    b.sh("hostname; cat /proc/sys/kernel/domainname");
    assert_eq!(k.stdout_of(&b).lines().collect::<Vec<_>>(), ["conf-host", "conf.test"]);
}

/// config.md, hostname: "Depending on your namespace configuration, the container UTS
/// namespace may be the runtime UTS namespace." with config-linux.md: "The runtime MUST
/// place the container process in the namespace associated with that `path`." — a hostname
/// with a joined UTS namespace is set in that namespace.
#[test]
fn hostname_with_joined_uts_namespace() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let holder = NsHolder::new(&["--uts"]);
    let mut b = Bundle::new();
    b.config["hostname"] = json!("joined-host");
    let nss = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    nss.retain(|n| n["type"] != "uts");
    nss.push(json!({"type": "uts", "path": holder.path("uts")}));
    b.sh("hostname; readlink /proc/self/ns/uts");
    let out = k.stdout_of(&b);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["joined-host", holder.link("uts").as_str()]);
    let seen = Command::new("nsenter")
        .args(["--uts", "-t", &holder.child.id().to_string(), "hostname"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&seen.stdout).trim(), "joined-host", "set in the joined namespace");
}

/// runtime.md, state: "`annotations` (map, OPTIONAL) contains the list of annotations
/// associated with the container."
#[test]
fn annotations_in_state() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["annotations"] = json!({"com.example.key": "value", "org.opencontainers.image.os": "linux"});
    let id = create(&k, &b);
    let st = k.state(&id);
    assert_eq!(st["annotations"]["com.example.key"], "value", "{st}");
    assert_eq!(st["annotations"]["org.opencontainers.image.os"], "linux", "{st}");
}

/// Kubernetes allows 256 KiB of annotations on a pod and CRI copies them into config.json;
/// the state the runtime hands the init (for hooks) carries them whole. They once broke
/// `create` at 64 KiB ("garbled message from the container init").
#[test]
fn large_annotations() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let big = "x".repeat(250 * 1024);
    b.config["annotations"] = json!({"com.example.big": big});
    let id = create(&k, &b);
    let st = k.state(&id);
    assert_eq!(st["annotations"]["com.example.big"].as_str().map(str::len), Some(250 * 1024));
    assert_eq!(st["status"], "created", "{}", st["status"]);
}

/// config.md, Extensibility: "Runtimes MAY log unknown properties but MUST otherwise ignore
/// them. That includes not generating errors if they encounter an unknown property." and
/// annotations: "Runtimes MUST handle unknown annotation keys like any other unknown property."
#[test]
fn unknown_properties_are_ignored() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["com.example.top"] = json!({"x": 1});
    b.config["process"]["com.example.proc"] = json!(true);
    b.config["linux"]["com.example.linux"] = json!([1, 2]);
    b.config["root"]["com.example.root"] = json!("y");
    b.config["mounts"].as_array_mut().unwrap()[0]["com.example.mount"] = json!(null);
    b.config["annotations"] = json!({"org.example.unknown": "z"});
    b.sh("echo fine");
    assert_eq!(k.stdout_of(&b).trim(), "fine");
}

/// config.md, Valid values: "Runtimes MUST generate an error when invalid or unsupported
/// values are encountered."
#[test]
fn invalid_values_are_errors() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 4] = [
        ("namespace type", |c| {
            c["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "bogus"}))
        }),
        ("ociVersion", |c| c["ociVersion"] = json!("not-semver")),
        ("user.uid", |c| c["process"]["user"]["uid"] = json!(-1)),
        ("mount propagation", |c| c["linux"]["rootfsPropagation"] = json!("sideways")),
    ];
    for (what, f) in cases {
        let mut b = Bundle::new();
        f(&mut b.config);
        let (code, out, _) = k.run_bundle(&b);
        assert_ne!(code, 0, "{what}: an invalid value must be an error: {out}");
    }
}

// ---------------------------------------------------------------------------------------
// config.md: hooks

/// The hooks of every kind, each logging its kind to `order` and its stdin to KIND-N.json;
/// the container process logs "process". Runtime-namespace hooks write to the host path,
/// createContainer too (it runs before pivot_root); startContainer runs after it and
/// writes to /shared.
fn hook_bundle(b: &mut Bundle, shared: &Path, per_kind: usize) {
    let host = shared.display().to_string();
    let hook = |kind: &str, i: usize, dir: &str| {
        json!({"path": "/bin/sh", "args": ["sh", "-c", format!(
            "cat > {dir}/{kind}-{i}.json; echo {kind}-{i} >> {dir}/order; readlink /proc/self/ns/mnt > {dir}/{kind}-{i}.mnt; readlink /proc/self/ns/uts > {dir}/{kind}-{i}.uts")]})
    };
    let mut hooks = serde_json::Map::new();
    for kind in ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] {
        let dir = if kind == "startContainer" { "/shared".to_string() } else { host.clone() };
        hooks.insert(kind.to_string(), json!((0..per_kind).map(|i| hook(kind, i, &dir)).collect::<Vec<_>>()));
    }
    b.config["hooks"] = Value::Object(hooks);
    b.config["annotations"] = json!({"com.example.hooks": "yes"});
}

fn hook_state(shared: &Path, kind: &str) -> Value {
    let text = std::fs::read_to_string(shared.join(format!("{kind}-0.json")))
        .unwrap_or_else(|_| panic!("the {kind} hook did not run"));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{kind}: stdin is not the state JSON ({e}): {text:?}"))
}

/// Runs a hooked container through create, start, wait, delete; returns (id, shared dir).
fn hooked_lifecycle(k: &Karton, per_kind: usize) -> (String, TempDir, Bundle) {
    let mut b = Bundle::new();
    let shared = share(&mut b);
    hook_bundle(&mut b, shared.path(), per_kind);
    b.sh("echo process >> /shared/order; readlink /proc/self/ns/uts > /shared/process.uts");
    let id = create(k, &b);
    ok(k, &["start", &id]);
    wait_stopped(k, &id);
    ok(k, &["delete", &id]);
    (id, shared, b)
}

/// config.md, hooks: "Hooks MUST be called in the listed order." and runtime.md's lifecycle
/// order: prestart ("MUST be called before the createRuntime hooks"), createRuntime,
/// createContainer ("MUST be called after the createRuntime hooks"), startContainer, the
/// process, poststart, poststop.
#[test]
fn hooks_called_in_listed_and_lifecycle_order() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let (_, shared, _) = hooked_lifecycle(&k, 2);
    let order = std::fs::read_to_string(shared.path().join("order")).unwrap();
    let got: Vec<&str> = order.lines().collect();
    let pos = |s: &str| got.iter().position(|l| *l == s).unwrap_or_else(|| panic!("{s} missing: {got:?}"));
    for kind in ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"] {
        assert!(pos(&format!("{kind}-0")) < pos(&format!("{kind}-1")), "listed order within {kind}: {got:?}");
    }
    let seq = [
        "prestart-1",
        "createRuntime-0",
        "createRuntime-1",
        "createContainer-0",
        "createContainer-1",
        "startContainer-0",
        "startContainer-1",
        "poststop-0",
    ];
    for w in seq.windows(2) {
        assert!(pos(w[0]) < pos(w[1]), "{} before {}: {got:?}", w[0], w[1]);
    }
    assert!(pos("startContainer-1") < pos("process"), "startContainer before the process: {got:?}");
    assert!(pos("poststart-1") < pos("poststop-0"), "{got:?}");
}

fn check_state(kind: &str, st: &Value, id: &str, bundle: &Path, status: &str, pid_in_container: bool) {
    assert_eq!(st["id"], id, "{kind}: id: {st}");
    assert_eq!(st["bundle"], bundle.to_str().unwrap(), "{kind}: bundle: {st}");
    assert_eq!(st["status"], status, "{kind}: status: {st}");
    assert!(st["ociVersion"].is_string(), "{kind}: ociVersion: {st}");
    assert_eq!(st["annotations"]["com.example.hooks"], "yes", "{kind}: annotations: {st}");
    if status != "stopped" {
        let pid = st["pid"].as_i64().unwrap_or_else(|| panic!("{kind}: pid: {st}"));
        if pid_in_container {
            // "For hooks executed in the container namespace, it is the pid as seen by the container."
            assert_eq!(pid, 1, "{kind}: pid as seen in the container's pid namespace: {st}");
        } else {
            assert!(pid > 1, "{kind}: {st}");
        }
    }
}

/// config.md, hooks: "The state of the container MUST be passed to hooks over stdin" —
/// prestart and createRuntime (runtime namespace, during create: status "creating").
#[test]
fn hook_state_prestart_and_create_runtime() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let (id, shared, b) = hooked_lifecycle(&k, 1);
    for kind in ["prestart", "createRuntime"] {
        check_state(kind, &hook_state(shared.path(), kind), &id, b.path(), "creating", false);
        let mnt = std::fs::read_to_string(shared.path().join(format!("{kind}-0.mnt"))).unwrap();
        assert_eq!(mnt.trim(), host_ns("mnt"), "{kind} MUST be executed in the runtime namespace");
    }
}

/// config.md, hooks: "The state of the container MUST be passed to hooks over stdin" —
/// createContainer, which "MUST be executed in the container namespace".
#[test]
fn hook_state_create_container() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let (id, shared, b) = hooked_lifecycle(&k, 1);
    check_state(
        "createContainer",
        &hook_state(shared.path(), "createContainer"),
        &id,
        b.path(),
        "creating",
        true,
    );
    let uts = std::fs::read_to_string(shared.path().join("createContainer-0.uts")).unwrap();
    let proc_uts = std::fs::read_to_string(shared.path().join("process.uts")).unwrap();
    assert_eq!(uts, proc_uts, "createContainer runs in the container's namespaces");
}

/// config.md, hooks: "The state of the container MUST be passed to hooks over stdin" —
/// startContainer: "The `startContainer` hooks' path MUST resolve in the container
/// namespace. The `startContainer` hooks MUST be executed in the container namespace."
#[test]
fn hook_state_start_container() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let (id, shared, b) = hooked_lifecycle(&k, 1);
    check_state(
        "startContainer",
        &hook_state(shared.path(), "startContainer"),
        &id,
        b.path(),
        "created",
        true,
    );
    let uts = std::fs::read_to_string(shared.path().join("startContainer-0.uts")).unwrap();
    let proc_uts = std::fs::read_to_string(shared.path().join("process.uts")).unwrap();
    assert_eq!(uts, proc_uts, "startContainer runs in the container's namespaces");
}

/// config.md, hooks: "The state of the container MUST be passed to hooks over stdin" —
/// poststart ("MUST be called after the user-specified process is executed but before the
/// start operation returns") and poststop ("after the container is deleted but before the
/// delete operation returns").
#[test]
fn hook_state_poststart_and_poststop() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let (id, shared, b) = hooked_lifecycle(&k, 1);
    check_state("poststart", &hook_state(shared.path(), "poststart"), &id, b.path(), "running", false);
    check_state("poststop", &hook_state(shared.path(), "poststop"), &id, b.path(), "stopped", false);
}

/// config.md, poststart: "MUST be called after the user-specified process is executed but
/// before the start operation returns" — the hook sees the process already exec'd.
#[test]
fn poststart_runs_after_exec_before_start_returns() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let shared = share(&mut b);
    b.config["hooks"] = json!({"poststart": [{"path": "/bin/sh", "args": ["sh", "-c", format!(
        "pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p'); tr '\\0' ' ' < /proc/$pid/cmdline > {}/cmdline", shared.path().display())]}]});
    b.config["process"]["args"] = json!(["sleep", "300"]);
    let id = create(&k, &b);
    ok(&k, &["start", &id]);
    let cmdline =
        std::fs::read_to_string(shared.path().join("cmdline")).expect("poststart ran before start returned");
    assert_eq!(cmdline.trim(), "sleep 300", "the user program was already executing");
    ok(&k, &["delete", "--force", &id]);
}

/// runtime.md, lifecycle: "If any `startContainer` hook fails, the runtime MUST generate an
/// error, stop the container, and continue the lifecycle at step 12." — the user program
/// never runs.
#[test]
fn failing_start_container_hook_stops_the_container() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let shared = share(&mut b);
    b.config["hooks"] = json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 7"]}]});
    b.sh("touch /shared/ran");
    let id = create(&k, &b);
    let out = k.run(&["start", &id]);
    // Let a program that does run get as far as its marker before looking.
    if out.status.success() {
        let _ = k.run(&["kill", &id, "KILL"]);
        for _ in 0..100 {
            if k.status(&id) == "stopped" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let ran = shared.path().join("ran").exists();
    assert!(!out.status.success(), "start MUST generate an error (the user program ran: {ran})");
    assert!(!ran, "the user program must not run");
    let st = k.run(&["state", &id]);
    if st.status.success() {
        let v: Value = serde_json::from_slice(&st.stdout).unwrap();
        assert_eq!(v["status"], "stopped", "the container is stopped: {v}");
    }
}

/// runtime.md, lifecycle: "If any `createContainer` hook fails, the runtime MUST generate an
/// error, stop the container, and continue the lifecycle at step 12." (and Errors:
/// "generating an error MUST leave the state of the environment as if the operation were
/// never attempted")
#[test]
fn failing_create_container_hook_leaves_nothing() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let cg = TestCgroup::new("karton-test-conf");
    let mut b = Bundle::new();
    b.config["linux"]["cgroupsPath"] = json!(cg.path());
    b.config["hooks"] =
        json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo refused >&2; exit 5"]}]});
    b.write();
    let id = unique("cchook");
    let out = k.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(!out.status.success());
    assert!(!k.root.path().join(&id).exists(), "state left");
    assert!(cg.dirs().is_empty(), "cgroups left: {:?}", cg.dirs());
}

/// runtime.md, lifecycle: "If any `poststart` hook fails, the runtime MUST log a warning,
/// but the remaining hooks and lifecycle continue as if the hook had succeeded." (poststop:
/// the same).
#[test]
fn failing_poststart_and_poststop_hooks_only_warn() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let shared = share(&mut b);
    let fail = json!({"path": "/bin/sh", "args": ["sh", "-c", "exit 9"]});
    let mark = |n: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("touch {}/{n}", shared.path().display())]});
    b.config["hooks"] =
        json!({"poststart": [fail.clone(), mark("poststart-2")], "poststop": [fail, mark("poststop-2")]});
    b.sh("touch /shared/ran");
    let id = create(&k, &b);
    let start = k.run(&["start", &id]);
    assert!(start.status.success(), "start continues: {}", String::from_utf8_lossy(&start.stderr));
    assert!(!start.stderr.is_empty(), "a warning is logged for the failed poststart hook");
    wait_stopped(&k, &id);
    let del = k.run(&["delete", &id]);
    assert!(del.status.success(), "delete continues: {}", String::from_utf8_lossy(&del.stderr));
    assert!(!del.stderr.is_empty(), "a warning is logged for the failed poststop hook");
    let present: Vec<&str> =
        ["ran", "poststart-2", "poststop-2"].into_iter().filter(|f| shared.path().join(f).exists()).collect();
    assert_eq!(present, ["ran", "poststart-2", "poststop-2"], "the remaining hooks and lifecycle continue");
}

/// config.md, hooks.timeout: "If set, `timeout` MUST be greater than zero."
#[test]
fn hook_timeout_must_be_positive() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["hooks"] = json!({"createRuntime": [{"path": "/bin/true", "timeout": 0}]});
    let err = run_fails(&k, &b);
    assert!(err.contains("timeout"), "{err}");
}

/// config.md, hooks.path: "This specification extends the IEEE standard in that **`path`**
/// MUST be absolute."
#[test]
fn hook_path_must_be_absolute() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["hooks"] = json!({"poststart": [{"path": "true"}]});
    let err = run_fails(&k, &b);
    assert!(err.contains("path"), "{err}");
}

// ---------------------------------------------------------------------------------------
// config-linux.md: namespaces

const KINDS: [(&str, &str); 8] = [
    ("pid", "pid"),
    ("network", "net"),
    ("mount", "mnt"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("user", "user"),
    ("cgroup", "cgroup"),
    ("time", "time"),
];

/// config-linux.md, namespaces: "If `path` is not specified, the runtime MUST create a new
/// container namespace of type `type`."
#[test]
fn namespace_new_without_path() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    for (t, p) in KINDS {
        let mut b = Bundle::new();
        let set: Vec<&str> = if t == "mount" { vec!["mount"] } else { vec!["mount", t] };
        b.namespaces(&set);
        b.sh(&format!("readlink /proc/self/ns/{p}"));
        assert_ne!(k.stdout_of(&b).trim(), host_ns(p), "a new {t} namespace");
    }
}

/// config-linux.md, namespaces: "If a namespace type is not specified in the `namespaces`
/// array, the container MUST inherit the runtime namespace of that type." — every type but
/// mount.
#[test]
fn namespace_absent_is_inherited() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.namespaces(&["mount"]);
    b.sh("for n in pid net ipc uts user cgroup time; do echo $n $(readlink /proc/self/ns/$n); done");
    for line in k.stdout_of(&b).lines() {
        let (kind, link) = line.split_once(' ').unwrap();
        assert_eq!(link, host_ns(kind), "{kind} inherited");
    }
}

/// config-linux.md, namespaces: "If a namespace type is not specified in the `namespaces`
/// array, the container MUST inherit the runtime namespace of that type." — mount: a
/// config without a mount namespace runs in the runtime's mount namespace, and nothing it
/// does is left mounted on the host.
#[test]
fn namespace_absent_mount_is_inherited() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "uts"}, {"type": "ipc"}]);
    without_mounts(&mut b);
    b.config["process"]["args"] = json!(["sleep", "300"]);
    b.write();
    let before = mountinfo_count();
    let id = unique("nomnt");
    let out = k.run(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let after = mountinfo_count();
    // Clean up anything a runtime mounted on the host under the bundle before asserting.
    let _ = Command::new("sh")
        .args([
            "-c",
            &format!(
                "grep -o ' {}[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l",
                b.path().display()
            ),
        ])
        .status();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // No /proc inside (no mounts): look from the host.
    let pid = k.state(&id)["pid"].as_i64().unwrap();
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap().to_str().unwrap(),
        host_ns("mnt"),
        "the runtime's mount namespace"
    );
    assert_eq!(before, after, "no mounts left on the host");
    ok(&k, &["delete", "--force", &id]);
}

/// No mounts, masked or read-only paths, writable root: what a config needs when the
/// container has no mount table of its own.
fn without_mounts(b: &mut Bundle) {
    b.config["mounts"] = json!([]);
    b.config["linux"].as_object_mut().unwrap().remove("maskedPaths");
    b.config["linux"].as_object_mut().unwrap().remove("readonlyPaths");
    b.config["root"]["readonly"] = json!(false);
}

/// config-linux.md, namespaces.path: "The runtime MUST place the container process in the
/// namespace associated with that `path`." — one check per type, each joining a namespace
/// a holder process of the test's own keeps alive.
fn joined(t: &str, proc_name: &str, flags: &[&str], holder_ns: &str) {
    let k = Karton::new();
    let holder = NsHolder::new(flags);
    let mut b = Bundle::new();
    let mut list: Vec<Value> = vec![json!({"type": t, "path": holder.path(holder_ns)})];
    if t != "mount" {
        list.push(json!({"type": "mount"}));
    }
    if t != "pid" {
        list.push(json!({"type": "pid"}));
    }
    b.config["linux"]["namespaces"] = json!(list);
    // A hostname with a joined uts namespace has a test of its own.
    b.config.as_object_mut().unwrap().remove("hostname");
    // sysfs and mqueue need the container's own network / ipc namespace to mount fresh.
    b.namespaces_fixup();
    if t == "user" {
        // The holder's user namespace maps root to host root (--map-root-user).
        b.config["linux"].as_object_mut().unwrap().remove("uidMappings");
        b.config["linux"].as_object_mut().unwrap().remove("gidMappings");
        // The holder's namespace maps only id 0: devpts cannot use gid 5 there.
        for m in b.config["mounts"].as_array_mut().unwrap() {
            if m["type"] == "devpts" {
                m["options"].as_array_mut().unwrap().retain(|o| o != "gid=5");
            }
        }
    }
    if t == "mount" {
        // The mount table is the holder's, not the container's own: karton makes no mounts
        // there (it refuses them), and without /proc inside the check is made from the host.
        without_mounts(&mut b);
        b.config["process"]["args"] = json!(["sleep", "300"]);
        b.write();
        let id = unique("joinmnt");
        ok(&k, &["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
        let pid = k.state(&id)["pid"].as_i64().unwrap();
        let link =
            std::fs::read_link(format!("/proc/{pid}/ns/{proc_name}")).unwrap().to_string_lossy().into_owned();
        ok(&k, &["delete", "--force", &id]);
        assert_eq!(link, holder.link(holder_ns), "{t}: the process is in the namespace at the path");
        return;
    }
    b.sh(&format!("readlink /proc/self/ns/{proc_name}"));
    let (code, out, err) = k.run_bundle(&b);
    assert_eq!(code, 0, "joining {t}: {err}");
    assert_eq!(out.trim(), holder.link(holder_ns), "{t}: the process is in the namespace at the path");
}

trait Fixup {
    fn namespaces_fixup(&mut self);
}

impl Fixup for Bundle {
    /// Drops the mounts that need a namespace the config does not create anew.
    fn namespaces_fixup(&mut self) {
        let nss = self.config["linux"]["namespaces"].as_array().unwrap().clone();
        let new = |t: &str| nss.iter().any(|n| n["type"] == t && n["path"].is_null());
        let mounts = self.config["mounts"].as_array_mut().unwrap();
        if !new("network") {
            for m in mounts.iter_mut() {
                if m["destination"] == "/sys" {
                    *m = json!({"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
                }
            }
            mounts.retain(|m| m["destination"] != "/sys/fs/cgroup");
        }
        if !new("ipc") {
            mounts.retain(|m| m["destination"] != "/dev/mqueue");
        }
    }
}

#[test]
fn namespace_joined_network() {
    if can_run() {
        joined("network", "net", &["--net"], "net");
    }
}
#[test]
fn namespace_joined_uts() {
    if can_run() {
        joined("uts", "uts", &["--uts"], "uts");
    }
}
#[test]
fn namespace_joined_ipc() {
    if can_run() {
        joined("ipc", "ipc", &["--ipc"], "ipc");
    }
}
#[test]
fn namespace_joined_cgroup() {
    if can_run() {
        joined("cgroup", "cgroup", &["--cgroup"], "cgroup");
    }
}
#[test]
fn namespace_joined_pid() {
    if can_run() {
        joined("pid", "pid", &["--pid", "--fork"], "pid_for_children");
    }
}
#[test]
fn namespace_joined_time() {
    if can_run() {
        joined("time", "time", &["--time", "--fork"], "time_for_children");
    }
}
#[test]
fn namespace_joined_mount() {
    if can_run() {
        joined("mount", "mnt", &["--mount", "--propagation", "private"], "mnt");
    }
}
#[test]
fn namespace_joined_user() {
    if can_run() {
        joined("user", "user", &["--user", "--map-root-user"], "user");
    }
}

/// config-linux.md, namespaces.path: "The runtime MUST generate an error if `path` is not
/// associated with a namespace of type `type`."
#[test]
fn namespace_path_of_wrong_type_is_an_error() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["namespaces"] =
        json!([{"type": "mount"}, {"type": "ipc", "path": "/proc/self/ns/uts"}]);
    b.namespaces_fixup();
    run_fails(&k, &b);
}

/// config-linux.md, namespaces: "If a `namespaces` field contains duplicated namespaces
/// with same `type`, the runtime MUST generate an error."
#[test]
fn namespace_duplicates_are_an_error() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "uts"}));
    run_fails(&k, &b);
}

/// config-linux.md, namespaces.path: "This value MUST be an absolute path in the runtime
/// mount namespace."
#[test]
fn namespace_path_must_be_absolute() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let nss = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    nss.retain(|n| n["type"] != "uts");
    nss.push(json!({"type": "uts", "path": "proc/self/ns/uts"}));
    run_fails(&k, &b);
}

/// config-linux.md, user namespace mappings: uidMappings/gidMappings "describes the user
/// namespace uid mappings from the host to the container", and "The runtime SHOULD NOT
/// modify the ownership of referenced filesystems to realize the mapping."
#[test]
fn user_namespace_mappings_without_chown() {
    if !can_run() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let k = Karton::new();
    let mut b = Bundle::new();
    b.namespaces(&["user", "mount", "pid", "ipc", "uts", "network"]);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 1000}, {"containerID": 1000, "hostID": 300000, "size": 10}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 210000, "size": 500}]);
    b.sh("cat /proc/self/uid_map /proc/self/gid_map");
    let owner = |p: &Path| std::fs::symlink_metadata(p).map(|m| (m.uid(), m.gid())).unwrap();
    let before = (owner(&b.rootfs()), owner(&b.rootfs().join("bin/busybox")));
    let out = k.stdout_of(&b);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        rows,
        [vec!["0", "200000", "1000"], vec!["1000", "300000", "10"], vec!["0", "210000", "500"]],
        "{out}"
    );
    assert_eq!((owner(&b.rootfs()), owner(&b.rootfs().join("bin/busybox"))), before, "ownership untouched");
}

// ---------------------------------------------------------------------------------------
// config-linux.md: devices

/// config-linux.md, devices: "lists devices that MUST be available in the container" with
/// type, major/minor, fileMode, uid, gid.
#[test]
fn devices_are_created_as_described() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["devices"] = json!([
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640, "uid": 12, "gid": 34},
        {"path": "/dev/sub/loopx", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600, "uid": 0, "gid": 0},
        {"path": "/dev/fifo0", "type": "p", "fileMode": 0o666}
    ]);
    b.sh("stat -c '%n %F %t:%T %a %u:%g' /dev/fuse /dev/sub/loopx /dev/fifo0");
    let out = k.stdout_of(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "/dev/fuse character special file a:e5 640 12:34", "{out}");
    assert_eq!(lines[1], "/dev/sub/loopx block special file 7:c8 600 0:0", "{out}");
    assert!(lines[2].starts_with("/dev/fifo0 fifo") && lines[2].contains(" 666 "), "{out}");
}

/// config-linux.md, devices.path: "If a file already exists at `path` that does not match
/// the requested device, the runtime MUST generate an error."
#[test]
fn device_over_a_mismatching_file_is_an_error() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    std::fs::create_dir_all(b.rootfs().join("opt")).unwrap();
    std::fs::write(b.rootfs().join("opt/plain"), "a regular file").unwrap();
    b.config["linux"]["devices"] = json!([{"path": "/opt/plain", "type": "c", "major": 1, "minor": 3}]);
    run_fails(&k, &b);
}

/// config-linux.md, default devices: "In addition to any devices configured with this
/// setting, the runtime MUST also supply: /dev/null, /dev/zero, /dev/full, /dev/random,
/// /dev/urandom, /dev/tty, /dev/console (if terminal is enabled), /dev/ptmx".
#[test]
fn default_devices_are_supplied() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.sh("for d in null zero full random urandom tty; do echo $d $(stat -c %t:%T /dev/$d); done; echo ptmx $(stat -L -c %t:%T /dev/ptmx)");
    let out = k.stdout_of(&b);
    let want = ["null 1:3", "zero 1:5", "full 1:7", "random 1:8", "urandom 1:9", "tty 5:0"];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..6], want, "{out}");
    assert!(lines[6] == "ptmx 5:2", "ptmx is the container's /dev/pts/ptmx (5:2): {out}");
}

/// config-linux.md, dev symbolic links: "runtimes MUST create the following symlinks if the
/// source file exists after processing mounts: /dev/fd → /proc/self/fd, /dev/stdin →
/// /proc/self/fd/0, /dev/stdout → /proc/self/fd/1, /dev/stderr → /proc/self/fd/2".
#[test]
fn dev_symlinks() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.sh("for l in fd stdin stdout stderr; do echo $l $(readlink /dev/$l); done");
    assert_eq!(
        k.stdout_of(&b).lines().collect::<Vec<_>>(),
        ["fd /proc/self/fd", "stdin /proc/self/fd/0", "stdout /proc/self/fd/1", "stderr /proc/self/fd/2"]
    );
}

/// config-linux.md, device allowed list: "The runtime MUST apply entries in the listed
/// order." — an allow of 10:229 followed by a deny of it denies; the allow alone allows.
#[test]
fn device_cgroup_rules_in_listed_order() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    // In /dev: the test bundle's /tmp is nodev.
    let probe =
        "mknod /dev/probe-fuse c 10 229 && (exec 3</dev/probe-fuse) 2>/dev/null && echo open || echo denied";
    let allow = json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"});
    let deny = json!({"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rw"});
    let mut b = Bundle::new();
    b.sh(probe);
    let caps = json!(["CAP_MKNOD"]);
    b.config["process"]["capabilities"] = json!({"bounding": caps, "permitted": caps, "effective": caps});
    b.config["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}, allow.clone()]});
    assert_eq!(k.stdout_of(&b).trim(), "open");
    b.config["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}, allow, deny]});
    assert_eq!(k.stdout_of(&b).trim(), "denied");
}

// ---------------------------------------------------------------------------------------
// config-linux.md: cgroups

/// config-linux.md, cgroupsPath: "In the case of an absolute path (starting with `/`), the
/// runtime MUST take the path to be relative to the cgroups mount point." and "the runtime
/// MUST consistently attach to the same place in the cgroups hierarchy given the same value
/// of `cgroupsPath`."
#[test]
fn cgroups_path_absolute_relative_to_mount_point() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let cg = TestCgroup::new("karton-test-conf");
    let mut b = Bundle::new();
    b.namespaces(&["mount", "pid", "uts", "ipc", "network"]);
    b.config["linux"]["cgroupsPath"] = json!(cg.path());
    b.sh("grep -E ':(memory|pids|name=systemd):|^0::' /proc/self/cgroup");
    for _ in 0..2 {
        let out = k.stdout_of(&b);
        for line in out.lines() {
            assert!(line.ends_with(&cg.path()), "{line}: attached at {} in every hierarchy", cg.path());
        }
        assert!(out.lines().count() >= 3, "{out}");
    }
}

/// config-linux.md, control groups: "You can configure a container's cgroups via the
/// `resources` field" — memory limit, pids limit, cpu shares, read from the host while the
/// container runs.
#[test]
fn resources_are_applied() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let cg = TestCgroup::new("karton-test-conf");
    let mut b = Bundle::new();
    b.config["linux"]["cgroupsPath"] = json!(cg.path());
    b.config["linux"]["resources"] =
        json!({"memory": {"limit": 67108864}, "pids": {"limit": 33}, "cpu": {"shares": 512}});
    b.config["process"]["args"] = json!(["sleep", "300"]);
    b.write();
    let id = unique("res");
    ok(&k, &["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    let read = |h: &str, f: &str| {
        std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(h).join(&cg.parent).join(&cg.name).join(f))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(read("pids", "pids.max"), "33");
    assert_eq!(read("cpu", "cpu.shares"), "512");
    ok(&k, &["delete", "--force", &id]);
}

// ---------------------------------------------------------------------------------------
// config-linux.md: sysctl, seccomp, masked and readonly paths, default filesystems

/// config-linux.md, sysctl: "allows kernel parameters to be modified at runtime for the
/// container" — with the default readonlyPaths (/proc/sys), as every engine sends them.
#[test]
fn sysctl_applied_with_readonly_proc_sys() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1", "net.ipv4.ping_group_range": "0 0"});
    b.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced /proc/sys/net/ipv4/ping_group_range; (echo 0 > /proc/sys/net/ipv4/ip_forward) 2>/dev/null && echo procsys=rw || echo procsys=ro");
    let out = k.stdout_of(&b);
    let lines: Vec<String> =
        out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
    assert_eq!(lines, ["1", "1", "0 0", "procsys=ro"], "{out}");
}

/// config-linux.md, sysctl in a network namespace joined by path (podman's default): the
/// value lands in that namespace.
#[test]
fn sysctl_in_joined_network_namespace() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let ns = NetNs::new();
    let mut b = Bundle::new();
    let nss = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    nss.retain(|n| n["type"] != "network");
    nss.push(json!({"type": "network", "path": ns.path}));
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_local_port_range": "2000 3000"});
    b.sh("cat /proc/sys/net/ipv4/ip_local_port_range");
    let out = k.stdout_of(&b);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["2000", "3000"]);
}

/// config-linux.md, seccomp: the profile applies to the process — a syscall with
/// SCMP_ACT_ERRNO fails with the given errno.
#[test]
fn seccomp_errno_rule() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
    b.sh("grep Seccomp: /proc/self/status; mkdir /tmp/x 2>&1 || true");
    let out = k.stdout_of(&b);
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("Operation not permitted"), "errno 1 = EPERM: {out}");
}

/// config-linux.md, seccomp.syscalls.names: "`names` MUST contain at least one entry."
#[test]
fn seccomp_empty_names_is_an_error() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["seccomp"] =
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]});
    run_fails(&k, &b);
}

/// config-linux.md, seccomp.listenerPath: "specifies the path of UNIX domain socket over
/// which the runtime will send the container process state data structure when the
/// `SCMP_ACT_NOTIFY` action is used." — during `create`, with the seccomp fd.
#[test]
fn seccomp_notify_listener_gets_state_and_fd() {
    if !can_run() {
        return;
    }
    use std::os::fd::AsRawFd;
    let k = Karton::new();
    let dir = TempDir::new("karton-conf-seccomp");
    let sock = dir.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let mut b = Bundle::new();
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock, "listenerMetadata": "meta",
        "syscalls": [{"names": ["mknodat"], "action": "SCMP_ACT_NOTIFY"}]});
    b.config["process"]["args"] = json!(["true"]);
    // The agent: accept one connection, read one message with its fds.
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = nix::sys::socket::recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        let mut fds = 0;
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(v) = c {
                fds += v.len();
                for fd in v {
                    let _ = nix::unistd::close(fd);
                }
            }
        }
        let n = msg.bytes;
        (String::from_utf8_lossy(&buf[..n]).into_owned(), fds)
    });
    b.write();
    let id = unique("notify");
    let out = k.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (text, fds) = agent.join().unwrap();
    let st: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert_eq!(fds, 1, "the seccomp fd: {text}");
    assert_eq!(st["fds"], json!(["seccompFd"]), "{text}");
    assert_eq!(st["metadata"], "meta", "{text}");
    assert_eq!(st["state"]["id"], id.as_str(), "{text}");
    assert!(st["pid"].as_i64().unwrap_or(0) > 0, "{text}");
}

/// config-linux.md, maskedPaths: "will mask over the provided paths inside the container so
/// that they cannot be read." (a file and a directory)
#[test]
fn masked_paths_cannot_be_read() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["maskedPaths"] = json!(["/proc/timer_list", "/sys/firmware", "/etc/passwd"]);
    b.sh("echo $(wc -c < /proc/timer_list) $(ls /sys/firmware | wc -l) $(wc -c < /etc/passwd)");
    assert_eq!(k.stdout_of(&b).trim(), "0 0 0");
}

/// config-linux.md, maskedPaths / readonlyPaths: "The values MUST be absolute paths in the
/// container namespace."
#[test]
fn masked_and_readonly_paths_must_be_absolute() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["maskedPaths"] = json!(["proc/timer_list"]);
    run_fails(&k, &b);
    let mut b = Bundle::new();
    b.config["linux"]["readonlyPaths"] = json!(["proc/sys"]);
    run_fails(&k, &b);
}

/// config-linux.md, readonlyPaths: "will set the provided paths as readonly inside the
/// container."
#[test]
fn readonly_paths_are_readonly() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["root"]["readonly"] = json!(false);
    std::fs::create_dir_all(b.rootfs().join("srv")).unwrap();
    b.config["linux"]["readonlyPaths"] = json!(["/proc/sys", "/srv", "/does/not/exist"]);
    b.sh("(echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null && echo sys=rw || echo sys=ro; touch /srv/x 2>/dev/null && echo srv=rw || echo srv=ro; touch /y && echo root=rw");
    assert_eq!(k.stdout_of(&b).lines().collect::<Vec<_>>(), ["sys=ro", "srv=ro", "root=rw"]);
}

/// config-linux.md, default filesystems: "The following filesystems SHOULD be made available
/// in each container's filesystem: /proc proc, /sys sysfs, /dev/pts devpts, /dev/shm tmpfs".
#[test]
fn default_filesystems() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.sh("for p in /proc /sys /dev/pts /dev/shm; do awk -v p=$p '$2==p {t=$3} END {print p, t}' /proc/self/mounts; done");
    assert_eq!(
        k.stdout_of(&b).lines().collect::<Vec<_>>(),
        ["/proc proc", "/sys sysfs", "/dev/pts devpts", "/dev/shm tmpfs"]
    );
}

// ---------------------------------------------------------------------------------------
// runtime.md: state and operations

/// runtime.md, create: "Upon successful completion of this operation the `status` property
/// of this container MUST be `created`." and state: "The state of a container includes …
/// ociVersion, id, status, pid (REQUIRED when status is created or running on Linux),
/// bundle (the absolute path to the container's bundle directory)".
#[test]
fn state_after_create() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["args"] = json!(["sleep", "300"]);
    let id = create(&k, &b);
    let st = k.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    assert!(st["ociVersion"].as_str().is_some_and(|v| v.starts_with("1.")), "{st}");
    assert!(st["pid"].as_i64().unwrap_or(0) > 0, "{st}");
    assert_eq!(st["bundle"], b.path().to_str().unwrap());
    assert!(Path::new(st["bundle"].as_str().unwrap()).is_absolute());
}

/// runtime.md, lifecycle: "While the resources requested in the config.json MUST be created,
/// the user-specified program (from process) MUST NOT be run at this time." and start:
/// "This operation MUST run the user-specified program as specified by process." / "Upon
/// successful completion of this operation the `status` property of this container MUST be
/// `running`."
#[test]
fn create_does_not_run_the_program_start_does() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let shared = share(&mut b);
    b.sh("touch /shared/ran; exec sleep 300");
    let id = create(&k, &b);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!shared.path().join("ran").exists(), "the program ran during create");
    ok(&k, &["start", &id]);
    assert_eq!(k.status(&id), "running");
    for _ in 0..500 {
        if shared.path().join("ran").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(shared.path().join("ran").exists(), "start runs the program");
    ok(&k, &["delete", "--force", &id]);
}

/// runtime.md, lifecycle: "Any updates to config.json after this step MUST NOT affect the
/// container."
#[test]
fn config_changes_after_create_have_no_effect() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let shared = share(&mut b);
    b.sh("echo original > /shared/out");
    let id = create(&k, &b);
    b.sh("echo changed > /shared/out");
    b.config["process"]["env"] = json!(["PATH=/nonexistent"]);
    b.write();
    ok(&k, &["start", &id]);
    wait_stopped(&k, &id);
    assert_eq!(std::fs::read_to_string(shared.path().join("out")).unwrap().trim(), "original");
}

/// runtime.md, create: "If the ID provided is not unique across all containers within the
/// scope of the runtime, or is not valid in any other way, the implementation MUST generate
/// an error and a new container MUST NOT be created."
#[test]
fn create_with_a_taken_id_is_an_error() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["args"] = json!(["sleep", "300"]);
    let id = create(&k, &b);
    let pid = k.state(&id)["pid"].clone();
    let out = k.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(!out.status.success());
    assert_eq!(k.state(&id)["pid"], pid, "the existing container is untouched");
    assert_eq!(k.status(&id), "created");
}

/// runtime.md, Errors: "Unless otherwise stated, generating an error MUST leave the state of
/// the environment as if the operation were never attempted" — a create that fails late
/// (a bind source that does not exist) leaves no state, cgroups, mounts or processes.
#[test]
fn failed_create_leaves_nothing() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let cg = TestCgroup::new("karton-test-conf");
    let mut b = Bundle::new();
    b.config["linux"]["cgroupsPath"] = json!(cg.path());
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/missing", "type": "bind", "source": "/nonexistent/karton-conf", "options": ["bind"]}));
    b.write();
    let before = mountinfo_count();
    let id = unique("fail");
    let out = k.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(!out.status.success());
    assert!(!k.root.path().join(&id).exists(), "state left");
    assert!(cg.dirs().is_empty(), "cgroups left: {:?}", cg.dirs());
    assert_eq!(mountinfo_count(), before, "mounts left");
    assert!(
        !std::fs::read_dir(b.rootfs()).unwrap().flatten().any(|e| e.file_name() == "missing"),
        "the mount point it made is left"
    );
}

/// runtime.md, start: "Attempting to `start` a container that is not `created` MUST have no
/// effect on the container and MUST generate an error."
#[test]
fn start_of_a_running_or_stopped_container_is_an_error() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let shared = share(&mut b);
    b.sh("echo x >> /shared/starts; exec sleep 300");
    let id = create(&k, &b);
    ok(&k, &["start", &id]);
    let pid = k.state(&id)["pid"].clone();
    assert!(!k.run(&["start", &id]).status.success(), "start of a running container");
    assert_eq!(k.status(&id), "running");
    assert_eq!(k.state(&id)["pid"], pid);
    ok(&k, &["kill", &id, "KILL"]);
    wait_stopped(&k, &id);
    assert!(!k.run(&["start", &id]).status.success(), "start of a stopped container");
    assert_eq!(k.status(&id), "stopped");
    assert_eq!(
        std::fs::read_to_string(shared.path().join("starts")).unwrap().lines().count(),
        1,
        "the program ran once"
    );
}

/// runtime.md, kill: "Attempting to send a signal to a container that is neither `created`
/// nor `running` MUST have no effect on the container and MUST generate an error." and
/// "This operation MUST send the specified signal to the container process." (a created one
/// included)
#[test]
fn kill_semantics() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["args"] = json!(["sleep", "300"]);
    let id = create(&k, &b);
    ok(&k, &["kill", &id, "KILL"]);
    wait_stopped(&k, &id);
    let out = k.run(&["kill", &id, "KILL"]);
    assert!(!out.status.success(), "kill of a stopped container MUST be an error");
    assert_eq!(k.status(&id), "stopped");
    ok(&k, &["delete", &id]);
}

/// runtime.md, delete: "Attempting to `delete` a container that is not `stopped` MUST have
/// no effect on the container and MUST generate an error."
#[test]
fn delete_of_created_or_running_is_an_error() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["args"] = json!(["sleep", "300"]);
    let id = create(&k, &b);
    assert!(!k.run(&["delete", &id]).status.success(), "delete of a created container");
    assert_eq!(k.status(&id), "created");
    ok(&k, &["start", &id]);
    assert!(!k.run(&["delete", &id]).status.success(), "delete of a running container");
    assert_eq!(k.status(&id), "running");
    ok(&k, &["delete", "--force", &id]);
}

/// runtime.md, delete: "Deleting a container MUST delete the resources that were created
/// during the `create` step. Note that resources associated with the container, but not
/// created by this container, MUST NOT be deleted." — its cgroup goes, a cgroup parent the
/// test made and a network namespace it joined stay.
#[test]
fn delete_removes_what_create_made_only() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let ns = NetNs::new();
    let parent = format!("karton-test-conf-{}", unique("own"));
    let cg = TestCgroup::new(&parent);
    let made: Vec<std::path::PathBuf> =
        ["memory", "pids"].iter().map(|h| Path::new("/sys/fs/cgroup").join(h).join(&parent)).collect();
    for d in &made {
        std::fs::create_dir_all(d).unwrap();
    }
    let mut b = Bundle::new();
    b.config["linux"]["cgroupsPath"] = json!(cg.path());
    let nss = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    nss.retain(|n| n["type"] != "network");
    nss.push(json!({"type": "network", "path": ns.path}));
    b.config["process"]["args"] = json!(["true"]);
    let id = create(&k, &b);
    assert!(!cg.dirs().is_empty());
    ok(&k, &["start", &id]);
    wait_stopped(&k, &id);
    ok(&k, &["delete", &id]);
    assert!(cg.dirs().is_empty(), "the container's cgroups: {:?}", cg.dirs());
    assert!(!k.root.path().join(&id).exists());
    for d in &made {
        assert!(d.exists(), "{} was the test's, not the container's", d.display());
    }
    assert!(
        std::fs::metadata(&ns.path).is_ok()
            && Command::new("nsenter")
                .arg(format!("--net={}", ns.path.display()))
                .arg("true")
                .status()
                .unwrap()
                .success(),
        "the joined netns lives on"
    );
    for d in &made {
        let _ = std::fs::remove_dir(d);
    }
}

/// runtime.md, kill: "When the process in the container is stopped, irrespective of it being
/// as a result of a `kill` operation or any other reason, the `status` property of this
/// container MUST be `stopped`."
#[test]
fn status_stopped_after_exit() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.sh("exit 3");
    let id = create(&k, &b);
    ok(&k, &["start", &id]);
    wait_stopped(&k, &id);
    ok(&k, &["delete", &id]);
}

/// runtime.md, query state / start / kill / delete: "Attempting to query a container that
/// does not exist MUST generate an error." (and the same for start, kill, delete), and each
/// "MUST generate an error if it is not provided the container ID."
#[test]
fn operations_on_missing_containers_are_errors() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    for op in [
        vec!["state", "nosuch"],
        vec!["start", "nosuch"],
        vec!["kill", "nosuch", "KILL"],
        vec!["delete", "nosuch"],
        vec!["state"],
        vec!["start"],
        vec!["kill"],
        vec!["delete"],
    ] {
        assert!(!k.run(&op).status.success(), "{op:?} must be an error");
    }
}
