//! Shared test harness: busybox bundles, a private state root, and cleanup that runs
//! even when a test fails (Drop guards).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Value};

pub const KARTON: &str = env!("CARGO_BIN_EXE_karton");

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A unique name for this test process and call.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst))
}

/// Returns false (and says why) when the test cannot run here.
pub fn can_run() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: needs root (real namespaces, cgroups and mounts)");
        return false;
    }
    if busybox().is_none() {
        eprintln!("SKIP: needs a static busybox (apt-get install busybox-static)");
        return false;
    }
    true
}

pub fn busybox() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An OCI bundle with a busybox rootfs and an editable config.
pub struct Bundle {
    pub dir: TempDir,
    pub config: Value,
}

impl Bundle {
    pub fn new() -> Bundle {
        let dir = TempDir::new("karton-test-bundle");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
        }
        let bb = busybox().expect("busybox");
        std::fs::copy(&bb, rootfs.join("bin/busybox")).expect("copy busybox");
        let list = Command::new(&bb).arg("--list").output().expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet));
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut config = karton_runtime::defaults::default_spec(false, 0, 0);
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(["true"]);
        // The default root is read-only: give tests a writable /tmp.
        config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=64m"]}));
        Bundle { dir, config }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Sets the command to `sh -c SCRIPT`.
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.config["process"]["args"] = json!(["sh", "-c", script]);
        self
    }

    pub fn write(&self) {
        std::fs::write(self.path().join("config.json"), serde_json::to_vec_pretty(&self.config).unwrap()).unwrap();
    }

    /// Replaces the namespace list.
    pub fn namespaces(&mut self, types: &[&str]) -> &mut Self {
        let list: Vec<Value> = types.iter().map(|t| json!({"type": t})).collect();
        self.config["linux"]["namespaces"] = json!(list);
        if types.contains(&"user") {
            self.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            self.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        }
        if !types.contains(&"network") {
            // sysfs needs a network namespace of its own; bind the host's instead.
            if let Some(mounts) = self.config["mounts"].as_array_mut() {
                for m in mounts.iter_mut() {
                    if m["destination"] == "/sys" {
                        *m = json!({"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
                    }
                }
            }
        }
        if types.contains(&"user") && !types.contains(&"pid") {
            // A user namespace may mount procfs only for a pid namespace it owns.
            if let Some(mounts) = self.config["mounts"].as_array_mut() {
                for m in mounts.iter_mut() {
                    if m["destination"] == "/proc" {
                        *m = json!({"destination": "/proc", "type": "none", "source": "/proc", "options": ["rbind"]});
                    }
                }
            }
        }
        if !types.contains(&"uts") {
            if let Some(o) = self.config.as_object_mut() {
                o.remove("hostname");
            }
        }
        if !types.contains(&"ipc") {
            if let Some(mounts) = self.config["mounts"].as_array_mut() {
                mounts.retain(|m| m["destination"] != "/dev/mqueue");
            }
        }
        self
    }
}

/// A private state root; deletes every container left in it on drop.
pub struct Karton {
    pub root: TempDir,
}

impl Karton {
    pub fn new() -> Karton {
        Karton { root: TempDir::new("karton-test-root") }
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(KARTON);
        c.arg("--root").arg(self.root.path());
        c
    }

    /// Runs karton to completion. Its output goes through files, not pipes: a container
    /// made by `create` or `run -d` inherits them and would hold a pipe open.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_cmd(self.cmd().args(args))
    }

    pub fn run_cmd(&self, c: &mut Command) -> Output {
        let dir = TempDir::new("karton-test-out");
        let out_path = dir.path().join("stdout");
        let err_path = dir.path().join("stderr");
        let status = c
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).expect("stdout file"))
            .stderr(std::fs::File::create(&err_path).expect("stderr file"))
            .status()
            .expect("run karton");
        Output { status, stdout: std::fs::read(&out_path).unwrap_or_default(), stderr: std::fs::read(&err_path).unwrap_or_default() }
    }

    /// `karton run` of the bundle; returns (exit code, stdout, stderr).
    pub fn run_bundle(&self, b: &Bundle) -> (i32, String, String) {
        b.write();
        let id = unique("run");
        let out = self.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Runs and insists on success; returns stdout.
    pub fn stdout_of(&self, b: &Bundle) -> String {
        let (code, out, err) = self.run_bundle(b);
        assert_eq!(code, 0, "karton run failed: stdout={out} stderr={err}");
        out
    }

    pub fn state(&self, id: &str) -> Value {
        let out = self.run(&["state", id]);
        assert!(out.status.success(), "state {id}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("state JSON")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap_or("").to_string()
    }
}

impl Drop for Karton {
    fn drop(&mut self) {
        if let Ok(out) = self.cmd().args(["list", "-q"]).output() {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = self.cmd().args(["delete", "--force", id]).output();
            }
        }
    }
}

pub fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap().to_string_lossy().into_owned()
}

/// The cgroup directories named after `id` that exist on the host.
pub fn cgroup_dirs_named(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in rd.flatten() {
            let p = h.path().join("karton").join(id);
            if p.exists() {
                out.push(p);
            }
        }
    }
    out
}
