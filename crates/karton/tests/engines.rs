//! Real engines drive karton end to end: podman (through conmon), rootful with its default
//! configuration and rootless as an ordinary user, and containerd 1.6 (through its runc
//! shim). The cases live in `tests/engines/*.sh` at the repository root;
//! each script keeps its state in a private work directory, cleans up after itself and
//! exits 77 when an engine is not installed (printed here as SKIP).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

const KARTON: &str = env!("CARGO_BIN_EXE_karton");

/// The two engines share the machine's 2 cores and cgroup tree: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/engines").join(name)
}

fn run_engine_script(name: &str) {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !nix::unistd::geteuid().is_root() {
        return karton_testkit::skip(format!("{name} needs root (rootful podman and containerd)"));
    }
    let path = script(name);
    // A hung engine must not hang the test suite: 10 minutes is ~20 times a normal run.
    let out = Command::new("timeout")
        .args(["--kill-after=10", "600", "bash"])
        .arg(&path)
        .arg(KARTON)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(77) {
        // The script's exit code for "cannot run here"; its output says why.
        return karton_testkit::skip(stdout.trim());
    }
    println!("{stdout}");
    eprintln!("{stderr}");
    // The script's own cleanup ran (trap): its work directory and every mount below it are gone.
    if let Some(dir) = stdout.lines().find_map(|l| l.strip_prefix("workdir: ")) {
        let dir = dir.trim();
        assert!(!Path::new(dir).exists(), "{name} left its work directory {dir}");
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let left: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| *m == dir || m.starts_with(&format!("{dir}/")))
            .collect();
        assert!(left.is_empty(), "{name} left mounts: {left:?}");
    }
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert!(
        out.status.success() && failed.is_empty(),
        "{name} exited with {}; failed cases:\n{}",
        out.status,
        failed.join("\n")
    );
}

#[test]
fn podman_runs_containers_on_karton() {
    run_engine_script("podman.sh");
}

#[test]
fn rootless_podman_runs_containers_on_karton() {
    run_engine_script("podman-rootless.sh");
}

#[test]
fn containerd_runc_shim_runs_containers_on_karton() {
    run_engine_script("containerd.sh");
}
