//! Test scaffolding: a private parent cgroup per test, removed on drop (even on panic),
//! and child processes that are killed and reaped on drop.
//!
//! A test that cannot run here returns through `karton_testkit::skip(reason)` (directly or
//! through `host()`), which prints the reason and counts it in `make test`'s summary; never
//! a bare `return`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread::sleep;
use std::time::{Duration, Instant};

use karton_cgroup::Host;

static N: AtomicU32 = AtomicU32::new(0);
static CPU_HEAVY: Mutex<()> = Mutex::new(());

/// Serialises tests that keep a CPU busy (2-core VMs): measurements stay honest.
pub fn cpu_heavy() -> MutexGuard<'static, ()> {
    CPU_HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// The host's cgroups, or `None` after recording the skip (not root, no cgroups): the test
/// returns at once (`let Some(h) = host() else { return };`).
#[track_caller]
pub fn host() -> Option<Host> {
    if let Some(why) = karton_testkit::needs_root() {
        karton_testkit::skip(why);
        return None;
    }
    match Host::detect() {
        Ok(h) => Some(h),
        Err(e) => {
            karton_testkit::skip(e);
            None
        }
    }
}

/// A parent cgroup "/karton-test-<pid>-<n>" of our own in every hierarchy.
pub struct Parent {
    pub name: String,
    mounts: Vec<PathBuf>,
}

impl Parent {
    pub fn new(host: &Host) -> Parent {
        let name = format!("/karton-test-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let mut mounts: Vec<PathBuf> = host.v1_controllers().map(|(_, m)| m.mount_point.clone()).collect();
        mounts.extend(host.v2_mount().map(|m| m.mount_point.clone()));
        mounts.sort();
        mounts.dedup();
        Parent { name, mounts }
    }

    /// A child cgroup path under this parent.
    pub fn path(&self, child: &str) -> String {
        format!("{}/{child}", self.name)
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.mounts.iter().map(|m| m.join(self.name.trim_start_matches('/'))).filter(|d| d.exists()).collect()
    }

    /// Whether any directory of ours is left in any hierarchy.
    pub fn exists(&self) -> bool {
        !self.dirs().is_empty()
    }
}

fn subdirs_deepest_first(d: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                subdirs_deepest_first(&e.path(), out);
            }
        }
    }
    out.push(d.to_path_buf());
}

impl Drop for Parent {
    fn drop(&mut self) {
        let mut all = Vec::new();
        for d in self.dirs() {
            subdirs_deepest_first(&d, &mut all);
        }
        // Thaw and kill whatever a failed test left inside our own tree, then remove it.
        for d in &all {
            let _ = fs::write(d.join("freezer.state"), "THAWED");
            let _ = fs::write(d.join("cgroup.freeze"), "0");
            if let Ok(p) = fs::read_to_string(d.join("cgroup.procs")) {
                for pid in p.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for d in &all {
            while fs::remove_dir(d).is_err() && d.exists() && Instant::now() < deadline {
                sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A child process, killed and reaped on drop.
pub struct Proc {
    pub child: Child,
    stdin: Option<ChildStdin>,
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Opens the gate: the shell scripts below wait on `read` before doing their work,
    /// so that they run only once they are in the cgroup.
    pub fn go(&mut self) {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.write_all(b"go\n");
        }
    }

    pub fn wait_timeout(&mut self, t: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + t;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        // Bounded: a process a failed test left frozen cannot be reaped until the
        // Parent guard thaws it; never hang the suite on it.
        let _ = self.wait_timeout(Duration::from_secs(2));
    }
}

/// `sh -c script`, stdin piped (the gate), stdout piped.
pub fn sh(script: &str) -> Proc {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn /bin/sh");
    let stdin = child.stdin.take();
    Proc { child, stdin }
}

/// This test binary again, running only the `helper` test in `mode`, gated on stdin.
pub fn spawn_helper(mode: &str, arg: &str) -> Proc {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--exact", "helper", "--nocapture", "--test-threads=1", "-q"])
        .env("KARTON_CGROUP_HELPER", mode)
        .env("KARTON_CGROUP_HELPER_ARG", arg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let stdin = child.stdin.take();
    Proc { child, stdin }
}

pub fn wait_until(t: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + t;
    while Instant::now() < end {
        if f() {
            return true;
        }
        sleep(Duration::from_millis(10));
    }
    f()
}

/// Resources from OCI JSON, as the runtime gets them.
pub fn res(json: &str) -> oci_spec::runtime::LinuxResources {
    serde_json::from_str(json).expect("resources json")
}
