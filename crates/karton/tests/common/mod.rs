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
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .unwrap();
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
        std::fs::write(self.path().join("config.json"), serde_json::to_vec_pretty(&self.config).unwrap())
            .unwrap();
    }

    /// Replaces the namespace list.
    pub fn namespaces(&mut self, types: &[&str]) -> &mut Self {
        let list: Vec<Value> = types.iter().map(|t| json!({"type": t})).collect();
        self.config["linux"]["namespaces"] = json!(list);
        if types.contains(&"user") {
            self.config["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            self.config["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
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
        Output {
            status,
            stdout: std::fs::read(&out_path).unwrap_or_default(),
            stderr: std::fs::read(&err_path).unwrap_or_default(),
        }
    }

    /// `karton run` of the bundle; returns (exit code, stdout, stderr).
    pub fn run_bundle(&self, b: &Bundle) -> (i32, String, String) {
        b.write();
        let id = unique("run");
        let out = self.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
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

// ---- Leak hunting (kill_sweep.rs, load.rs) ----

/// Every cgroup mount point on the host (each v1 hierarchy and cgroup2).
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let mounts = karton_sys::mountinfo::read_self().expect("reading /proc/self/mountinfo");
    mounts
        .into_iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
        .map(|m| m.mount_point)
        .collect()
}

/// The container's cgroup directories (karton's default `/karton/<id>`) in every hierarchy.
pub fn container_cgroups(id: &str) -> Vec<PathBuf> {
    cgroup_mounts().into_iter().map(|m| m.join("karton").join(id)).filter(|p| p.exists()).collect()
}

/// A process of the host, as much of it as /proc tells.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    pub pid: i32,
    pub state: char,
    pub cmdline: Vec<String>,
    pub cwd: String,
    pub root: String,
    pub cgroups: String,
}

impl std::fmt::Display for ProcInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} [{}] {:?} cwd={} root={}",
            self.pid,
            self.state,
            self.cmdline.join(" "),
            self.cwd,
            self.root
        )
    }
}

pub fn processes() -> Vec<ProcInfo> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let p = e.path();
        let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, r)| r.chars().next()).unwrap_or('?');
        let cmdline = std::fs::read(p.join("cmdline")).unwrap_or_default();
        let cmdline = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let link = |n: &str| {
            std::fs::read_link(p.join(n)).map(|l| l.to_string_lossy().into_owned()).unwrap_or_default()
        };
        out.push(ProcInfo {
            pid,
            state,
            cmdline,
            cwd: link("cwd"),
            root: link("root"),
            cgroups: std::fs::read_to_string(p.join("cgroup")).unwrap_or_default(),
        });
    }
    out
}

/// Whether a /proc/PID/cgroup text places the process in the container's cgroup.
pub fn in_container_cgroup(cgroups: &str, id: &str) -> bool {
    let leaf = format!("/karton/{id}");
    cgroups.lines().any(|l| {
        let path = l.splitn(3, ':').nth(2).unwrap_or("");
        path == leaf || path.starts_with(&format!("{leaf}/"))
    })
}

/// Processes that belong to container `id` of bundle `bundle`: in its cgroup, or with
/// cwd/root/argv pointing at the bundle or naming the ID (a forked, not yet exec'd init
/// still has karton's argv). Zombies are left out: they hold nothing but a pid, and the
/// pid 1 of this machine reaps late.
pub fn container_processes(id: &str, bundle: &Path) -> Vec<ProcInfo> {
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z' && p.state != 'X')
        .filter(|p| {
            in_container_cgroup(&p.cgroups, id)
                || is_under(&p.cwd, bundle)
                || is_under(&p.root, bundle)
                || p.cmdline.iter().any(|a| a == id || is_under(a, bundle))
        })
        .collect()
}

/// `path` is `dir` or inside it (by whole components: /tmp/b-1 is not under /tmp/b).
pub fn is_under(path: &str, dir: &Path) -> bool {
    Path::new(path).starts_with(dir)
}

/// Mounts of the host's mount namespace under the bundle (the container's own mounts
/// live in its mount namespace and must never show here).
pub fn bundle_mounts(bundle: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|mp| is_under(mp, bundle)))
        .map(str::to_string)
        .collect()
}

/// Leaks of one container, by kind: ("list", "state dir", "cgroup", "mount", "process").
pub fn leaks(k: &Karton, id: &str, bundle: &Path) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let list = k.run(&["list", "-q"]);
    for l in String::from_utf8_lossy(&list.stdout).lines().filter(|l| *l == id) {
        out.push(("list", l.to_string()));
    }
    let dir = k.root.path().join(id);
    if dir.exists() {
        let files: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        out.push(("state dir", format!("{} {files:?}", dir.display())));
    }
    for c in container_cgroups(id) {
        out.push(("cgroup", c.display().to_string()));
    }
    for m in bundle_mounts(bundle) {
        out.push(("mount", m));
    }
    for p in container_processes(id, bundle) {
        out.push(("process", p.to_string()));
    }
    out
}

/// Output of a command that finished, or the reason it did not.
pub enum Watched {
    Done(Output),
    Hung { after: std::time::Duration, stderr: String },
}

/// Runs a command with a watchdog: a command still running after `limit` is killed and
/// reported as hung (a hang is a failure of its own, not a slow run).
pub fn run_watched(c: &mut Command, limit: std::time::Duration) -> Watched {
    let dir = TempDir::new("karton-test-out");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut child = c
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn karton");
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Watched::Done(Output {
                status,
                stdout: std::fs::read(&out_path).unwrap_or_default(),
                stderr: std::fs::read(&err_path).unwrap_or_default(),
            });
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Watched::Hung {
                after: start.elapsed(),
                stderr: String::from_utf8_lossy(&std::fs::read(&err_path).unwrap_or_default()).into_owned(),
            };
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Starts `karton ARGS`, SIGKILLs it `after` later (if still running) and reaps it.
/// Returns whether it was still running when killed.
pub fn kill_after(k: &Karton, args: &[&str], after: std::time::Duration) -> bool {
    let mut child = k
        .cmd()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn karton");
    std::thread::sleep(after);
    let running = child.try_wait().ok().flatten().is_none();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = child.wait();
    running
}

/// Removes whatever a leaky run left of a container, by force and without karton's help,
/// so that a failing test still leaves the host clean: `kill --all`, a second
/// `delete --force`, then SIGKILL to its processes, rmdir of its cgroups, detach of its
/// mounts and removal of its state directory.
pub fn scrub(k: &Karton, id: &str, bundle: &Path) {
    let limit = std::time::Duration::from_secs(10);
    let _ = run_watched(k.cmd().args(["kill", "--all", id, "KILL"]), limit);
    let _ = run_watched(k.cmd().args(["delete", "--force", id]), limit);
    for _ in 0..100 {
        let procs = container_processes(id, bundle);
        if procs.is_empty() {
            break;
        }
        for p in procs {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for c in container_cgroups(id) {
        rmdir_tree(&c);
    }
    for m in bundle_mounts(bundle).iter().rev() {
        if let Some(mp) = m.split(' ').nth(4) {
            let _ = nix::mount::umount2(mp, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _ = std::fs::remove_dir_all(k.root.path().join(id));
}

fn rmdir_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
    }
    for _ in 0..100 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Tally of a sweep: attempts and leaks by kind, printed to stderr.
#[derive(Default)]
pub struct Tally {
    pub name: String,
    pub attempts: usize,
    /// Attempts where the killed command had already finished (the kill came too late).
    pub finished_before_kill: usize,
    pub leaky: usize,
    pub by_kind: std::collections::BTreeMap<&'static str, usize>,
    pub details: Vec<String>,
}

impl Tally {
    pub fn new(name: &str) -> Tally {
        Tally { name: name.to_string(), ..Default::default() }
    }

    /// Counts one attempt and what it leaked.
    pub fn record(&mut self, label: &str, leaks: Vec<(&'static str, String)>) {
        self.attempts += 1;
        if leaks.is_empty() {
            return;
        }
        self.leaky += 1;
        // One line per attempt: each kind once (counted once, as "leaks in N of M"), with
        // how many it found and the first of them.
        let mut kinds: std::collections::BTreeMap<&'static str, (usize, String)> = Default::default();
        for (kind, what) in leaks {
            kinds.entry(kind).or_insert((0, what)).0 += 1;
        }
        let mut line = format!("{label}:");
        for (k, (n, first)) in kinds {
            *self.by_kind.entry(k).or_default() += 1;
            line.push_str(&format!(" [{k} x{n}: {first}]"));
        }
        self.details.push(line);
    }

    pub fn report(&self) -> String {
        let kinds: Vec<String> = self.by_kind.iter().map(|(k, n)| format!("{k}={n}")).collect();
        format!(
            "{}: {} attempts ({} finished before the kill), {} leaky; attempts by kind: {}",
            self.name,
            self.attempts,
            self.finished_before_kill,
            self.leaky,
            if kinds.is_empty() { "none".into() } else { kinds.join(" ") }
        )
    }
}

/// A network namespace the test makes itself: `unshare --net sleep` is started, its
/// /proc/PID/ns/net bind-mounted onto a file in a temp dir (so the namespace outlives the
/// sleep, like /run/netns files do, but without `ip netns add`, which would turn
/// /run/netns into a shared mount on the host). Unmounted on drop.
pub struct NetNs {
    pub path: PathBuf,
    mounted: bool,
    _dir: TempDir,
}

impl NetNs {
    pub fn new() -> NetNs {
        let dir = TempDir::new("karton-test-netns");
        let path = dir.path().join("net");
        std::fs::write(&path, "").unwrap();
        let mut ns = NetNs { path, mounted: false, _dir: dir };
        let mut child = holder_command(&["--net"]).spawn().expect("unshare --net sleep");
        let pid = child.id();
        let host = host_ns("net");
        // Wait until unshare has made the namespace and exec'd sleep.
        loop {
            let cur = std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if !cur.is_empty() && cur != host && comm.trim() == "sleep" {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!("unshare --net exited early: {st}");
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let st = Command::new("mount")
            .arg("--bind")
            .arg(format!("/proc/{pid}/ns/net"))
            .arg(&ns.path)
            .status()
            .expect("mount --bind");
        ns.mounted = st.success();
        let _ = child.kill();
        let _ = child.wait();
        assert!(ns.mounted, "bind-mounting the test's network namespace failed");
        ns
    }

    /// The namespace's inode, as `readlink /proc/self/ns/net` shows it inside: net:[INODE].
    pub fn link(&self) -> String {
        use std::os::unix::fs::MetadataExt;
        format!("net:[{}]", std::fs::metadata(&self.path).unwrap().ino())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if self.mounted {
            let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// `unshare FLAGS sleep 1000` for a process that holds namespaces. It must not inherit the
/// test's fds beyond 0-2: `cargo-locked` runs cargo under flock, and a holder that kept the
/// lock fd open would block every build on the machine while it lives. sh closes them
/// before exec (bash: dash cannot name fds above 9; no unsafe pre_exec needed); `--kill-child` takes a forked child along
/// when unshare is killed.
pub fn holder_command(flags: &[&str]) -> Command {
    let mut args: Vec<String> = vec!["unshare".into()];
    if flags.contains(&"--fork") {
        args.push("--kill-child".into());
    }
    args.extend(flags.iter().map(|f| f.to_string()));
    args.extend(["sleep".into(), "1000".into()]);
    let script = format!(
        "for f in /proc/self/fd/*; do n=${{f##*/}}; [ \"$n\" -gt 2 ] 2>/dev/null && eval \"exec $n>&-\"; done; exec {}",
        args.join(" ")
    );
    let mut c = Command::new("bash");
    c.args(["-c", &script]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    c
}

/// Capability names in kernel bit order (capability.h), for CapEff/CapBnd masks.
pub const CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The /proc/PID/status mask of a list of capability names.
pub fn cap_mask(names: &serde_json::Value) -> u64 {
    names
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| CAPS.iter().position(|c| Some(*c) == n.as_str()))
                .fold(0u64, |m, i| m | (1 << i))
        })
        .unwrap_or(0)
}

/// The host's capability bounding set (what a container can get at most).
pub fn host_cap_bounding() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap()
}

/// The value of a `Key:` line of `grep` output like "CapEff:\t00000000a80425fb".
pub fn status_field(out: &str, key: &str) -> Option<String> {
    out.lines().find_map(|l| l.strip_prefix(&format!("{key}:")).map(|v| v.trim().to_string()))
}

/// A cgroupsPath under a parent of the tests' own; on drop removes what is left of it in
/// every hierarchy (the runtime should already have; this only guards a failed test).
pub struct TestCgroup {
    pub parent: String,
    pub name: String,
}

impl TestCgroup {
    pub fn new(parent: &str) -> TestCgroup {
        TestCgroup { parent: parent.to_string(), name: unique("cg") }
    }
    /// The value for linux.cgroupsPath.
    pub fn path(&self) -> String {
        format!("/{}/{}", self.parent, self.name)
    }
    /// The directories of this cgroup that exist on the host.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for base in cgroup_bases() {
            let p = base.join(&self.parent).join(&self.name);
            if p.exists() {
                out.push(p);
            }
        }
        out
    }
}

fn cgroup_bases() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.join("cgroup.procs").exists());
    out
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for base in cgroup_bases() {
            let _ = std::fs::remove_dir(base.join(&self.parent).join(&self.name));
            // Only succeeds when no other test still uses the parent.
            let _ = std::fs::remove_dir(base.join(&self.parent));
        }
    }
}

/// Makes `fds[i]` the child's fd 3+i (without close-on-exec) when `cmd` runs. Every source
/// is first copied above the target range, so a source that already sits at a target
/// number (where dup2 would be a no-op that keeps FD_CLOEXEC) or at another source's
/// target is handled.
pub fn pass_fds(cmd: &mut Command, fds: Vec<std::os::fd::RawFd>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe fcntl/dup2/close run between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = Vec::with_capacity(fds.len());
            for fd in &fds {
                let h = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 1000);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (i, h) in high.iter().enumerate() {
                if libc::dup2(*h, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(*h);
            }
            Ok(())
        });
    }
}
