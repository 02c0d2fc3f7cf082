//! Shared helpers of the karton-ns integration tests: processes in fresh namespaces that
//! are killed (whole process group) when the guard drops, bind mounts unmounted on drop,
//! skip checks.
//!
//! A test that cannot run here returns through `karton_testkit::skip(reason)` (directly or
//! through `skip_unless_root_with`), which prints the reason and counts it in `make test`'s
//! summary; never a bare `return`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Records the skip (karton_testkit::skip) and returns true when the test cannot run here:
/// not root, or one of `cmds` is not on PATH. The test returns at once.
#[track_caller]
pub fn skip_unless_root_with(cmds: &[&str]) -> bool {
    if let Some(why) = karton_testkit::needs_root() {
        karton_testkit::skip(why);
        return true;
    }
    for c in cmds {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(c).exists()))
            .unwrap_or(false);
        if !found {
            karton_testkit::skip(format!("`{c}` is not installed"));
            return true;
        }
    }
    false
}

/// A process group started by the test; SIGKILLed and reaped on drop, pass or fail.
pub struct Group {
    pub child: Child,
}

impl Group {
    pub fn spawn(argv: &[&str]) -> Group {
        let child = Command::new(argv[0])
            .args(&argv[1..])
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {argv:?}: {e}"));
        Group { child }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Kills the group now and reaps the leader.
    pub fn kill(&mut self) {
        let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it returns Some, for up to 10 s.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim().to_string())
}

/// Follows first children from `pid` down to the first process whose comm is `name`.
pub fn descendant_named(pid: i32, name: &str) -> Option<i32> {
    let mut cur = pid;
    for _ in 0..16 {
        if comm(cur).as_deref() == Some(name) {
            return Some(cur);
        }
        cur = *karton_ns::procfs::children(cur).first()?;
    }
    None
}

/// The process chain from `pid` down through first children.
pub fn chain(pid: i32) -> Vec<i32> {
    let mut v = vec![pid];
    while let Some(c) = v.last().and_then(|&p| karton_ns::procfs::children(p).first().copied()) {
        v.push(c);
        if v.len() > 16 {
            break;
        }
    }
    v
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("karton-ns-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A bind mount, detached on drop even when the test fails.
pub struct BindMount(pub PathBuf);

impl BindMount {
    pub fn new(src: &Path, target: &Path) -> BindMount {
        std::fs::write(target, b"").expect("create mount point file");
        nix::mount::mount(Some(src), target, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
            .unwrap_or_else(|e| panic!("bind {} on {}: {e}", src.display(), target.display()));
        BindMount(target.into())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Identity of a namespace of a process.
pub fn ns_id(pid: i32, ty: karton_ns::NsType) -> karton_ns::NsId {
    karton_ns::procfs::ns_id(pid, ty).expect("read namespace id")
}

pub fn me() -> i32 {
    std::process::id() as i32
}
