//! Rootless karton: an unprivileged user runs the whole lifecycle with `karton spec
//! --rootless`, state in $XDG_RUNTIME_DIR/karton, no cgroups; what needs privilege is
//! refused with an error that says so. Subordinate id ranges go through newuidmap and
//! newgidmap for a test user with /etc/subuid and /etc/subgid entries.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// An unprivileged identity and a private XDG_RUNTIME_DIR it owns.
struct User {
    uid: u32,
    gid: u32,
    xdg: TempDir,
}

impl User {
    fn new(uid: u32, gid: u32) -> User {
        let xdg = TempDir::new("karton-test-xdg");
        nix::unistd::chown(xdg.path(), Some(uid.into()), Some(gid.into())).unwrap();
        std::fs::set_permissions(xdg.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        User { uid, gid, xdg }
    }

    /// karton run as this user (setpriv), with a clean environment.
    fn karton(&self, args: &[&str]) -> Output {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &self.uid.to_string(),
            "--regid",
            &self.gid.to_string(),
            "--clear-groups",
            "env",
            "-i",
        ])
        .arg("PATH=/usr/sbin:/usr/bin:/sbin:/bin")
        .arg(format!("HOME={}", self.xdg.path().display()))
        .arg(format!("XDG_RUNTIME_DIR={}", self.xdg.path().display()))
        .arg(KARTON)
        .args(args);
        // Output through files: a created container inherits them (a pipe would stay open).
        let dir = TempDir::new("karton-test-rl-out");
        let (op, ep) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let status = c
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&op).unwrap())
            .stderr(std::fs::File::create(&ep).unwrap())
            .status()
            .expect("run setpriv karton");
        Output {
            status,
            stdout: std::fs::read(&op).unwrap_or_default(),
            stderr: std::fs::read(&ep).unwrap_or_default(),
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.karton(args);
        assert!(
            o.status.success(),
            "karton {args:?} as uid {}: {}",
            self.uid,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn state_root(&self) -> PathBuf {
        self.xdg.path().join("karton")
    }
}

/// Deletes (as root, --force) every container left in the user's state root.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let root = self.0.to_str().unwrap_or("");
        if let Ok(o) = Command::new(KARTON).args(["--root", root, "list", "-q"]).output() {
            for id in String::from_utf8_lossy(&o.stdout).lines() {
                let _ = Command::new(KARTON).args(["--root", root, "delete", "--force", id]).output();
            }
        }
    }
}

/// Whether setpriv is installed; when not, records the skip and the test returns.
#[track_caller]
fn have_setpriv() -> bool {
    if Command::new("setpriv").arg("--version").output().is_err() {
        karton_testkit::skip("needs setpriv (util-linux)");
        return false;
    }
    true
}

/// The config `karton spec --rootless` writes for `user`, with `args` as the command.
fn rootless_bundle(user: &User, args: Value) -> Bundle {
    let spec_dir = user.xdg.path().join("spec");
    std::fs::create_dir_all(&spec_dir).unwrap();
    nix::unistd::chown(&spec_dir, Some(user.uid.into()), Some(user.gid.into())).unwrap();
    let _ = std::fs::remove_file(spec_dir.join("config.json"));
    user.ok(&["spec", "--rootless", "--bundle", spec_dir.to_str().unwrap()]);
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(spec_dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        config["linux"]["uidMappings"][0]["hostID"],
        json!(user.uid),
        "spec --rootless maps the caller's uid"
    );
    assert_eq!(config["linux"]["gidMappings"][0]["hostID"], json!(user.gid));
    assert!(config["linux"]["resources"].is_null(), "no cgroup limits in a rootless spec");
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = args;
    // A writable /tmp (the root is read-only and owned by the host's root).
    config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=16m"]}));
    let mut b = Bundle::new();
    b.config = config;
    b.write();
    b
}

fn wait_status(user: &User, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st: Value = serde_json::from_str(&user.ok(&["state", id])).unwrap();
        if st["status"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never became {want}: {st}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn host_uid_of(pid: i64) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(2).unwrap().parse().unwrap()
}

#[test]
fn rootless_lifecycle_as_nobody() {
    if !can_run() || !have_setpriv() {
        return;
    }
    let user = User::new(65534, 65534);
    let _cleanup = Cleanup(user.state_root());
    let b = rootless_bundle(&user, json!(["sleep", "600"]));
    let bundle = b.path().to_str().unwrap().to_string();
    let id = unique("rl");

    user.ok(&["create", "--bundle", &bundle, &id]);
    assert!(user.state_root().join(&id).is_dir(), "state lives in $XDG_RUNTIME_DIR/karton");
    let st: Value = serde_json::from_str(&user.ok(&["state", &id])).unwrap();
    assert_eq!(st["status"], "created");
    assert_eq!(st["owner"], "65534");
    let pid = st["pid"].as_i64().unwrap();
    assert_eq!(host_uid_of(pid), 65534, "the init runs as the caller on the host");
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(map.split_whitespace().collect::<Vec<_>>(), ["0", "65534", "1"]);
    assert_ne!(
        std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap(),
        std::fs::read_link("/proc/self/ns/user").unwrap()
    );
    assert!(cgroup_dirs_named(&id).is_empty(), "rootless without resources makes no cgroup");

    user.ok(&["start", &id]);
    wait_status(&user, &id, "running");
    let o = user.ok(&["exec", &id, "sh", "-c", "id -u; id -g; readlink /proc/1/exe"]);
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(&lines[..3], ["0", "0", "/bin/busybox"], "{o}");
    // An unprivileged user cannot gain privilege on the host through the container.
    let o = user.ok(&["exec", &id, "sh", "-c", "cat /proc/self/uid_map; cat /proc/sys/kernel/core_pattern > /proc/sys/kernel/core_pattern 2>/dev/null && echo HOST-SYSCTL; true"]);
    assert!(!o.contains("HOST-SYSCTL"), "{o}");
    assert!(o.contains("65534"), "{o}");

    user.ok(&["kill", &id, "KILL"]);
    wait_status(&user, &id, "stopped");
    user.ok(&["delete", &id]);
    assert!(!user.state_root().join(&id).exists());
    assert!(user.ok(&["list", "-q"]).trim().is_empty());

    // A time namespace with offsets: the init writes them inside its user namespace.
    let mut b3 = rootless_bundle(&user, json!(["sh", "-c", "cut -d. -f1 /proc/uptime"]));
    b3.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "time"}));
    b3.config["linux"]["timeOffsets"] =
        json!({"boottime": {"secs": 1_000_000}, "monotonic": {"secs": 1_000_000}});
    b3.write();
    let o = user.karton(&["run", "--bundle", b3.path().to_str().unwrap(), &unique("rl")]);
    let up: u64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0);
    assert!(up >= 1_000_000, "rootless time offsets: uptime {up}: {}", String::from_utf8_lossy(&o.stderr));

    // run, foreground, with its exit code.
    let b2 = rootless_bundle(&user, json!(["sh", "-c", "echo rootless-ok; exit 3"]));
    let o = user.karton(&["run", "--bundle", b2.path().to_str().unwrap(), &unique("rl")]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "rootless-ok");
}

/// Every config item that needs privilege the caller lacks is refused before anything
/// runs, with an error that names it.
#[test]
fn rootless_refuses_what_needs_privilege() {
    if !can_run() || !have_setpriv() {
        return;
    }
    let user = User::new(65534, 65534);
    let _cleanup = Cleanup(user.state_root());
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "memory limit",
            Box::new(|c: &mut Value| c["linux"]["resources"] = json!({"memory": {"limit": 100_000_000}})),
            "rootless: linux.resources",
        ),
        ("cgroupsPath", Box::new(|c: &mut Value| c["linux"]["cgroupsPath"] = json!("/rl-test")), "delegated"),
        (
            "subordinate ids without /etc/subuid",
            Box::new(
                |c: &mut Value| c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 65534, "size": 1}, {"containerID": 1, "hostID": 400000, "size": 100}]),
            ),
            "/etc/subuid",
        ),
        (
            "oomScoreAdj below 0",
            Box::new(|c: &mut Value| c["process"]["oomScoreAdj"] = json!(-500)),
            "process.oomScoreAdj",
        ),
        (
            "host sysctl",
            Box::new(|c: &mut Value| c["linux"]["sysctl"] = json!({"kernel.domainname": "x"})),
            "linux.sysctl.kernel.domainname",
        ),
        (
            "rlimit above the hard limit",
            Box::new(|c: &mut Value| {
                c["process"]["rlimits"] =
                    json!([{"type": "RLIMIT_NOFILE", "hard": 4_000_000u64, "soft": 4_000_000u64}])
            }),
            "process.rlimits",
        ),
        ("systemd cgroup", Box::new(|_c: &mut Value| {}), "systemd"),
    ];
    for (what, edit, expect) in cases {
        let mut b = rootless_bundle(&user, json!(["true"]));
        edit(&mut b.config);
        b.write();
        let id = unique("rl");
        let mut args = vec!["run", "--bundle", b.path().to_str().unwrap(), &id];
        if what == "systemd cgroup" {
            args.insert(0, "--systemd-cgroup");
        }
        let o = user.karton(&args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{what}: accepted for an unprivileged user");
        assert!(stderr.contains(expect), "{what}: the error must name {expect:?}: {stderr}");
        assert!(!user.state_root().join(&id).exists(), "{what}: state left behind");
    }
}

/// Subordinate ranges: a test user with /etc/subuid and /etc/subgid entries maps 65536
/// more ids through newuidmap/newgidmap (Debian's uidmap), and files chowned inside land
/// on the host as the subordinate ids.
#[test]
fn rootless_subordinate_ranges_via_newuidmap() {
    if !can_run() || !have_setpriv() {
        return;
    }
    for tool in ["newuidmap", "newgidmap", "useradd", "userdel"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            return karton_testkit::skip(format!("needs {tool} (apt-get install uidmap passwd)"));
        }
    }
    let name = format!("krl{}", std::process::id() % 100000);
    let sub_start = 500_000 + (std::process::id() % 1000) * 65536;
    struct TestUser(String);
    impl Drop for TestUser {
        fn drop(&mut self) {
            let _ = Command::new("userdel").arg(&self.0).output();
            for f in ["/etc/subuid", "/etc/subgid"] {
                if let Ok(text) = std::fs::read_to_string(f) {
                    let kept: String = text
                        .lines()
                        .filter(|l| !l.starts_with(&format!("{}:", self.0)))
                        .map(|l| format!("{l}\n"))
                        .collect();
                    let _ = std::fs::write(f, kept);
                }
            }
        }
    }
    let o = Command::new("useradd")
        .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", &name])
        .output()
        .unwrap();
    assert!(o.status.success(), "useradd: {}", String::from_utf8_lossy(&o.stderr));
    let _guard = TestUser(name.clone());
    for f in ["/etc/subuid", "/etc/subgid"] {
        let mut text = std::fs::read_to_string(f).unwrap_or_default();
        text.push_str(&format!("{name}:{sub_start}:65536\n"));
        std::fs::write(f, text).unwrap();
    }
    let uid = nix::unistd::User::from_name(&name).unwrap().unwrap().uid.as_raw();
    let gid = nix::unistd::User::from_name(&name).unwrap().unwrap().gid.as_raw();
    let user = User::new(uid, gid);
    let _cleanup = Cleanup(user.state_root());
    let mut b = rootless_bundle(&user, json!(["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; touch /tmp/f && chown 1000:1000 /tmp/f && stat -c '%u %g' /tmp/f"]));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}, {"containerID": 1, "hostID": sub_start, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}, {"containerID": 1, "hostID": sub_start, "size": 65536}]);
    let caps = json!(["CAP_CHOWN", "CAP_KILL"]);
    b.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps});
    b.write();
    let o = user.karton(&["run", "--bundle", b.path().to_str().unwrap(), &unique("rl")]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{} {out}", String::from_utf8_lossy(&o.stderr));
    let words: Vec<&str> = out.split_whitespace().collect();
    assert!(
        words.windows(3).any(|w| w == ["1", sub_start.to_string().as_str(), "65536"]),
        "subordinate uid range mapped: {out}"
    );
    assert_eq!(out.lines().last().unwrap_or(""), "1000 1000", "chown to a subordinate id inside: {out}");
}
