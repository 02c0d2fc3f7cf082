//! Running containers through the karton binary as a subprocess: a shared busybox rootfs,
//! per-container config.json, `karton run` with a wall-time limit, forced cleanup.
//!
//! The runtime library's `create` uses raw clone3 and must not be called from a
//! multi-threaded process, so the audit never calls it in-process.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::AuditError;

/// The eight namespaces by their short name, with the OCI `linux.namespaces` type.
pub const NAMESPACES: [(&str, &str); 8] = [
    ("mnt", "mount"),
    ("pid", "pid"),
    ("net", "network"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("user", "user"),
    ("cgroup", "cgroup"),
    ("time", "time"),
];

/// The namespaces of karton's default config.json (short names).
pub fn default_namespaces() -> Vec<String> {
    let spec = karton_runtime::defaults::default_spec(false, 0, 0);
    let mut out = Vec::new();
    if let Some(list) = spec["linux"]["namespaces"].as_array() {
        for n in list {
            if let Some(t) = n["type"].as_str() {
                let short = NAMESPACES.iter().find(|(_, o)| *o == t).map(|(s, _)| *s).unwrap_or(t);
                out.push(short.to_string());
            }
        }
    }
    out
}

/// Every capability name, indexed by number.
pub use karton_sys::caps::NAMES as ALL_CAPS;

/// The capabilities this host's bounding set still holds (a container cannot get more).
pub fn host_caps() -> Vec<&'static str> {
    ALL_CAPS
        .iter()
        .enumerate()
        .filter(|(i, _)| karton_sys::caps::in_bounding(*i as u32).unwrap_or(false))
        .map(|(_, c)| *c)
        .collect()
}

/// A config.json under construction, from karton's default spec.
#[derive(Debug, Clone)]
pub struct Config {
    pub spec: Value,
    namespaces: BTreeSet<String>,
}

impl Config {
    /// karton's default config with `namespaces` (short names; "mnt" is always added,
    /// karton requires it), the given argv, a non-terminal process and an absolute rootfs.
    pub fn new(rootfs: &Path, namespaces: &[String], args: &[String]) -> Self {
        let mut spec = karton_runtime::defaults::default_spec(false, 0, 0);
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(args);
        spec["root"] = json!({"path": rootfs, "readonly": true});
        let mut ns: BTreeSet<String> = namespaces.iter().cloned().collect();
        ns.insert("mnt".into());
        Self { spec, namespaces: ns }
    }

    pub fn has(&self, ns: &str) -> bool {
        self.namespaces.contains(ns)
    }

    /// The namespaces, sorted, joined by "+".
    pub fn describe(&self) -> String {
        let v: Vec<&str> =
            NAMESPACES.iter().map(|(s, _)| *s).filter(|s| self.namespaces.contains(*s)).collect();
        format!("container ns={}", v.join("+"))
    }

    pub fn caps(&mut self, caps: &[&str]) -> &mut Self {
        let c = json!(caps);
        self.spec["process"]["capabilities"] = json!({"bounding": c, "effective": c, "permitted": c});
        self
    }

    pub fn add_caps(&mut self, extra: &[&str]) -> &mut Self {
        let mut cur: Vec<String> = self.spec["process"]["capabilities"]["bounding"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        for e in extra {
            if !cur.iter().any(|c| c == e) {
                cur.push(e.to_string());
            }
        }
        let refs: Vec<&str> = cur.iter().map(|s| s.as_str()).collect();
        self.caps(&refs)
    }

    /// No masked or read-only paths.
    pub fn unmask(&mut self) -> &mut Self {
        self.spec["linux"]["maskedPaths"] = json!([]);
        self.spec["linux"]["readonlyPaths"] = json!([]);
        self
    }

    pub fn bind(&mut self, source: &Path, dest: &str, ro: bool) -> &mut Self {
        let mut opts = vec!["rbind"];
        if ro {
            opts.push("ro");
        }
        if let Some(m) = self.spec["mounts"].as_array_mut() {
            m.push(json!({"destination": dest, "type": "bind", "source": source, "options": opts}));
        }
        self
    }

    pub fn env(&mut self, kv: &str) -> &mut Self {
        if let Some(e) = self.spec["process"]["env"].as_array_mut() {
            e.push(json!(kv));
        }
        self
    }

    pub fn resources(&mut self, res: Value) -> &mut Self {
        let mut r = res;
        r["devices"] = json!([{"allow": false, "access": "rwm"}]);
        self.spec["linux"]["resources"] = r;
        self
    }

    pub fn cgroups_path(&mut self, p: &str) -> &mut Self {
        self.spec["linux"]["cgroupsPath"] = json!(p);
        self
    }

    pub fn time_offsets(&mut self, secs: i64) -> &mut Self {
        self.spec["linux"]["timeOffsets"] =
            json!({"monotonic": {"secs": secs, "nanosecs": 0}, "boottime": {"secs": secs, "nanosecs": 0}});
        self
    }

    /// A seccomp profile that allows everything but makes `syscalls` fail with EPERM.
    pub fn seccomp_deny(&mut self, syscalls: &[&str]) -> &mut Self {
        self.spec["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": syscalls, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
        self
    }

    /// The final config.json: namespaces, and the adjustments a namespace set forces (no
    /// hostname without a uts namespace, no time offsets without a time namespace, id maps
    /// and host bind mounts of /proc and /sys where a user namespace may not mount fresh
    /// ones).
    pub fn finish(&self) -> Value {
        let mut spec = self.spec.clone();
        let list: Vec<Value> = NAMESPACES
            .iter()
            .filter(|(s, _)| self.namespaces.contains(*s))
            .map(|(_, o)| json!({"type": o}))
            .collect();
        spec["linux"]["namespaces"] = json!(list);
        if !self.namespaces.contains("uts") {
            // Without a uts namespace the hostname would be the host's: never set it.
            if let Some(p) = spec.as_object_mut() {
                p.remove("hostname");
            }
        }
        if !self.namespaces.contains("time") {
            if let Some(l) = spec["linux"].as_object_mut() {
                l.remove("timeOffsets");
            }
        }
        if self.namespaces.contains("user") {
            spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            let pid = self.namespaces.contains("pid");
            let net = self.namespaces.contains("net");
            if let Some(mounts) = spec["mounts"].as_array_mut() {
                mounts.retain(|m| m["type"] != "cgroup");
                for m in mounts.iter_mut() {
                    if m["destination"] == "/proc" && !pid {
                        *m = json!({"destination": "/proc", "type": "bind", "source": "/proc", "options": ["rbind", "nosuid", "noexec", "nodev"]});
                    }
                    if m["destination"] == "/sys" && !net {
                        *m = json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
                    }
                    if m["destination"] == "/dev/pts" {
                        m["options"] =
                            json!(["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]);
                    }
                }
            }
        }
        spec
    }
}

/// Builds the audit's busybox rootfs under `dir` (shared read-only by every container).
pub fn build_rootfs(dir: &Path, exe: &Path) -> Result<PathBuf, AuditError> {
    let io = |what: String| move |e: std::io::Error| AuditError::Io { what, source: e };
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| AuditError::Host("busybox not found: apt-get install busybox-static".into()))?;
    let rootfs = dir.join("rootfs");
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "root",
        "audit",
        "hostfiles",
        "var/tmp",
    ] {
        fs::create_dir_all(rootfs.join(d)).map_err(io(format!("creating {}", rootfs.join(d).display())))?;
    }
    let bb = rootfs.join("bin/busybox");
    fs::copy(busybox, &bb).map_err(io(format!("copying {}", busybox.display())))?;
    // The applets from the host's copy: executing the file just written fails with ETXTBSY
    // while any process forked meanwhile (another test's, in this process) still holds the
    // writer's descriptor.
    let list = Command::new(busybox).arg("--list").output().map_err(io("running busybox --list".into()))?;
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let l = rootfs.join("bin").join(applet.trim());
        if !applet.trim().is_empty() && !l.exists() {
            symlink("busybox", &l).map_err(io(format!("linking {}", l.display())))?;
        }
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .map_err(io("writing etc/passwd".into()))?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
        .map_err(io("writing etc/group".into()))?;
    // The karton binary is bound in at /karton: give it its shared libraries (as `ldd`
    // lists them) at the same paths.
    let ldd = Command::new("ldd").arg(exe).output().map_err(io("running ldd on the karton binary".into()))?;
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line.split_whitespace().find(|w| w.starts_with('/'));
        if let Some(p) = path {
            let src = Path::new(p);
            let dst = rootfs.join(p.trim_start_matches('/'));
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
            }
            fs::copy(src, &dst).map_err(io(format!("copying {p}")))?;
        }
    }
    // Mount target of the karton binary (the rootfs is read-only inside).
    fs::write(rootfs.join("karton"), b"").map_err(io("creating the /karton mount target".into()))?;
    use std::os::unix::fs::PermissionsExt;
    for d in ["tmp", "var/tmp"] {
        let _ = fs::set_permissions(rootfs.join(d), fs::Permissions::from_mode(0o1777));
    }
    Ok(rootfs)
}

/// The result of one `karton run`.
#[derive(Debug, Clone)]
pub struct RunOutput {
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl RunOutput {
    pub fn describe_status(&self) -> String {
        if self.timed_out {
            return "killed after the wall-time limit".into();
        }
        match self.status {
            Some(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                (Some(c), _) => format!("exit {c}"),
                (_, Some(sig)) => format!("killed by signal {sig}"),
                _ => "unknown".into(),
            },
            None => "not waited".into(),
        }
    }
}

/// Containers started by this audit, so that an interrupt can kill and delete them.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    ids: Arc<Mutex<BTreeSet<String>>>,
}

impl Registry {
    fn add(&self, id: &str) {
        if let Ok(mut g) = self.ids.lock() {
            g.insert(id.to_string());
        }
    }
    fn remove(&self, id: &str) {
        if let Ok(mut g) = self.ids.lock() {
            g.remove(id);
        }
    }
    pub fn ids(&self) -> Vec<String> {
        self.ids.lock().map(|g| g.iter().cloned().collect()).unwrap_or_default()
    }
}

/// The karton binary and a private state root.
#[derive(Debug, Clone)]
pub struct Karton {
    pub exe: PathBuf,
    pub root: PathBuf,
    pub bundles: PathBuf,
    pub run_id: String,
    pub registry: Registry,
    seq: Arc<AtomicU64>,
}

impl Karton {
    pub fn new(exe: &Path, root: &Path, bundles: &Path, run_id: &str) -> Result<Self, AuditError> {
        for d in [root, bundles] {
            fs::create_dir_all(d)
                .map_err(|e| AuditError::Io { what: format!("creating {}", d.display()), source: e })?;
        }
        Ok(Self {
            exe: exe.to_path_buf(),
            root: root.to_path_buf(),
            bundles: bundles.to_path_buf(),
            run_id: run_id.to_string(),
            registry: Registry::default(),
            seq: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A fresh container id with `tag` in it.
    pub fn new_id(&self, tag: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let tag: String = tag.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        format!("kaudit-{}-{n}-{tag}", self.run_id)
    }

    /// The cgroup path of container `id`: under the audit's own parent.
    pub fn cgroup_path(&self, id: &str) -> String {
        format!("/karton-audit/{}/{id}", self.run_id)
    }

    /// Writes the bundle (config.json only; the rootfs path is absolute) for `id`.
    pub fn write_bundle(&self, id: &str, cfg: &Config) -> Result<PathBuf, AuditError> {
        let dir = self.bundles.join(id);
        fs::create_dir_all(&dir)
            .map_err(|e| AuditError::Io { what: format!("creating {}", dir.display()), source: e })?;
        let mut c = cfg.clone();
        if c.spec["linux"]["cgroupsPath"].is_null() {
            c.cgroups_path(&self.cgroup_path(id));
        }
        let spec = c.finish();
        let text = serde_json::to_string_pretty(&spec).map_err(|e| AuditError::Json(e.to_string()))?;
        fs::write(dir.join("config.json"), text).map_err(|e| AuditError::Io {
            what: format!("writing {}/config.json", dir.display()),
            source: e,
        })?;
        Ok(dir)
    }

    fn run_command(&self, wrapper: &[String], id: &str, bundle: &Path) -> Command {
        let mut cmd = if let Some((first, rest)) = wrapper.split_first() {
            let mut c = Command::new(first);
            c.args(rest);
            c.arg(&self.exe);
            c
        } else {
            Command::new(&self.exe)
        };
        cmd.arg("--root").arg(&self.root).arg("run").arg("--bundle").arg(bundle).arg(id);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    /// Runs container `id` to completion (at most `limit`), capturing its output; the
    /// container is killed and deleted when the limit passes. `wrapper` is a command the
    /// karton invocation is appended to (e.g. the uts scratch-namespace helper).
    pub fn run(
        &self,
        id: &str,
        cfg: &Config,
        limit: Duration,
        wrapper: &[String],
    ) -> Result<RunOutput, AuditError> {
        let bundle = self.write_bundle(id, cfg)?;
        let started = Instant::now();
        self.registry.add(id);
        let child = self
            .run_command(wrapper, id, &bundle)
            .spawn()
            .map_err(|e| AuditError::Io { what: format!("starting {}", self.exe.display()), source: e })?;
        let out = self.wait_child(id, child, started, limit);
        self.force_delete(id);
        let _ = fs::remove_dir_all(&bundle);
        out
    }

    /// Starts container `id` in the background (`karton run` without --detach): its output
    /// is collected until [`Background::stop`].
    pub fn start(&self, id: &str, cfg: &Config) -> Result<Background, AuditError> {
        let bundle = self.write_bundle(id, cfg)?;
        self.registry.add(id);
        let mut child = self
            .run_command(&[], id, &bundle)
            .spawn()
            .map_err(|e| AuditError::Io { what: format!("starting {}", self.exe.display()), source: e })?;
        let stdout = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        if let Some(mut o) = child.stdout.take() {
            let buf = stdout.clone();
            readers.push(std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = o.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut g) = buf.lock() {
                        g.push_str(&String::from_utf8_lossy(&chunk[..n]));
                    }
                }
            }));
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut e) = child.stderr.take() {
            let buf = stderr.clone();
            readers.push(std::thread::spawn(move || {
                let mut s = String::new();
                let _ = e.read_to_string(&mut s);
                if let Ok(mut g) = buf.lock() {
                    g.push_str(&s);
                }
            }));
        }
        Ok(Background {
            karton: self.clone(),
            id: id.to_string(),
            bundle,
            child: Some(child),
            stdout,
            stderr,
            readers,
            started: Instant::now(),
        })
    }

    fn wait_child(
        &self,
        id: &str,
        mut child: Child,
        started: Instant,
        limit: Duration,
    ) -> Result<RunOutput, AuditError> {
        let mut so = child.stdout.take();
        let mut se = child.stderr.take();
        let t_out = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(o) = so.as_mut() {
                let _ = o.read_to_string(&mut s);
            }
            s
        });
        let t_err = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(e) = se.as_mut() {
                let _ = e.read_to_string(&mut s);
            }
            s
        });
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) => {}
                Err(_) => break None,
            }
            if started.elapsed() > limit {
                timed_out = true;
                self.kill_all(id);
                let _ = child.kill();
                break child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stdout = t_out.join().unwrap_or_default();
        let stderr = t_err.join().unwrap_or_default();
        Ok(RunOutput { status, stdout, stderr, timed_out, elapsed: started.elapsed() })
    }

    /// `karton kill --all ID KILL` (errors ignored: the container may be gone).
    pub fn kill_all(&self, id: &str) {
        let _ = Command::new(&self.exe)
            .arg("--root")
            .arg(&self.root)
            .args(["kill", "--all", id, "KILL"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// `karton delete --force ID` if its state still exists.
    pub fn force_delete(&self, id: &str) {
        if self.root.join(id).exists() {
            let _ = Command::new(&self.exe)
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        self.registry.remove(id);
    }

    /// Kills and deletes every container this audit still has (Ctrl-C, errors), then the
    /// audit's parent cgroups.
    pub fn cleanup_all(&self) {
        for id in self.registry.ids() {
            self.kill_all(&id);
            self.force_delete(&id);
        }
        remove_parent_cgroups(&self.run_id);
    }
}

/// Removes `/karton-audit/<run_id>` (and `/karton-audit` when empty) from every cgroup
/// hierarchy: only directories this audit's containers created; rmdir fails harmlessly on
/// anything still in use.
pub fn remove_parent_cgroups(run_id: &str) {
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else { return };
    let mut roots: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for r in roots {
        let run = r.join("karton-audit").join(run_id);
        if run.is_dir() {
            if let Ok(children) = fs::read_dir(&run) {
                for c in children.flatten() {
                    if c.path().is_dir() {
                        let _ = fs::remove_dir(c.path());
                    }
                }
            }
            let _ = fs::remove_dir(&run);
        }
        let _ = fs::remove_dir(r.join("karton-audit"));
    }
}

/// A container running in the background.
pub struct Background {
    karton: Karton,
    pub id: String,
    bundle: PathBuf,
    child: Option<Child>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    pub started: Instant,
}

impl Background {
    /// The output so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Whether the container's process has ended (e.g. OOM-killed).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Kills the container, waits for `karton run`, deletes the state. Returns the output
    /// and how the container ended.
    pub fn stop(mut self) -> RunOutput {
        let mut timed_out = false;
        let status = match self.child.as_mut() {
            Some(c) => match c.try_wait() {
                Ok(Some(s)) => Some(s),
                _ => {
                    self.karton.kill_all(&self.id);
                    timed_out = true;
                    let deadline = Instant::now() + Duration::from_secs(10);
                    loop {
                        match c.try_wait() {
                            Ok(Some(s)) => break Some(s),
                            Ok(None) if Instant::now() < deadline => {
                                std::thread::sleep(Duration::from_millis(10))
                            }
                            _ => {
                                let _ = c.kill();
                                break c.wait().ok();
                            }
                        }
                    }
                }
            },
            None => None,
        };
        self.child = None;
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.karton.force_delete(&self.id);
        let _ = fs::remove_dir_all(&self.bundle);
        RunOutput {
            status,
            stdout: self.stdout(),
            stderr: self.stderr.lock().map(|g| g.clone()).unwrap_or_default(),
            timed_out,
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            self.karton.kill_all(&self.id);
            let _ = c.kill();
            let _ = c.wait();
            self.karton.force_delete(&self.id);
        }
    }
}

/// The last line of `stdout` that parses as a probe report.
pub fn parse_report(stdout: &str) -> Option<crate::results::ProbeReport> {
    stdout
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str::<crate::results::ProbeReport>(l.trim()).ok())
}

/// A short one-line excerpt of stderr for error evidence.
pub fn excerpt(s: &str) -> String {
    let line = s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    line.chars().take(240).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ns(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_hostname_without_uts_and_mnt_always() {
        let c = Config::new(Path::new("/r"), &ns(&["pid"]), &["x".into()]);
        let s = c.finish();
        assert!(s.get("hostname").is_none(), "a hostname without a uts namespace would be the host's");
        let types: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, vec!["mount", "pid"]);
        let c = Config::new(Path::new("/r"), &ns(&["uts"]), &["x".into()]);
        assert_eq!(c.finish()["hostname"], "karton");
        assert_eq!(c.describe(), "container ns=mnt+uts");
    }

    #[test]
    fn user_namespace_gets_maps_and_host_binds_where_it_cannot_mount() {
        let c = Config::new(Path::new("/r"), &ns(&["user", "net"]), &["x".into()]);
        let s = c.finish();
        assert_eq!(s["linux"]["uidMappings"][0]["hostID"], 100000);
        let mounts = s["mounts"].as_array().unwrap();
        let proc_ = mounts.iter().find(|m| m["destination"] == "/proc").unwrap();
        assert_eq!(proc_["type"], "bind", "no pid namespace of its own: bind the host's /proc");
        let sys = mounts.iter().find(|m| m["destination"] == "/sys").unwrap();
        assert_eq!(sys["type"], "sysfs", "own network namespace: a fresh sysfs");
        assert!(!mounts.iter().any(|m| m["type"] == "cgroup"));
    }

    #[test]
    fn time_offsets_only_with_a_time_namespace() {
        let mut c = Config::new(Path::new("/r"), &ns(&["pid"]), &["x".into()]);
        c.time_offsets(5);
        assert!(c.finish()["linux"].get("timeOffsets").is_none());
        let mut c = Config::new(Path::new("/r"), &ns(&["time"]), &["x".into()]);
        c.time_offsets(5);
        assert_eq!(c.finish()["linux"]["timeOffsets"]["monotonic"]["secs"], 5);
    }

    #[test]
    fn probe_report_is_found_among_other_lines() {
        let out = "noise\n{\"not\":\"a report\"}\n{\"schema\":\"karton.audit.probe/v1\",\"probe\":\"x\",\"verdict\":\"leaked\",\"evidence\":\"e\"}\n";
        let r = parse_report(out).unwrap();
        assert_eq!(r.verdict, crate::Verdict::Leaked);
        assert!(parse_report("nothing").is_none());
    }
}
