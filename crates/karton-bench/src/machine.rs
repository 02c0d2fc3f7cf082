//! What every result records about the machine it was measured on.

use std::path::Path;
use std::process::Command;

use crate::results::Machine;

fn read(p: &str) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

/// Detects the machine: kernel, CPUs, memory, cgroup layout, lockdown, instruments, runtimes.
pub fn detect() -> Machine {
    let uts = nix::sys::utsname::uname().ok();
    let s = |o: Option<&std::ffi::OsStr>| o.map(|x| x.to_string_lossy().into_owned()).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let cpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let mem_total_kib = read("/proc/meminfo")
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    let os = read("/etc/os-release")
        .and_then(|o| {
            o.lines()
                .find(|l| l.starts_with("PRETTY_NAME="))
                .map(|l| l.trim_start_matches("PRETTY_NAME=").trim_matches('"').to_string())
        })
        .unwrap_or_default();
    Machine {
        hostname: s(uts.as_ref().map(|u| u.nodename())),
        kernel: s(uts.as_ref().map(|u| u.release())),
        arch: s(uts.as_ref().map(|u| u.machine())),
        cpu_model,
        cpus,
        mem_total_kib,
        cgroup_layout: cgroup_layout(),
        lockdown: lockdown(),
        instruments: instruments(),
        runtimes: runtimes(),
        os,
    }
}

/// /sys/kernel/security/lockdown; when securityfs is not mounted, read it in a private
/// mount namespace that mounts it (nothing changes on the host).
fn lockdown() -> Option<String> {
    read("/sys/kernel/security/lockdown").or_else(|| {
        let o = Command::new("unshare")
            .args([
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                "mount -t securityfs securityfs /sys/kernel/security && cat /sys/kernel/security/lockdown",
            ])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
        (o.status.success() && !s.is_empty()).then_some(s)
    })
}

/// "v2", "v1" or "hybrid (v1 controllers …; v2 at /sys/fs/cgroup/unified with …)".
pub fn cgroup_layout() -> String {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};
    let root = Path::new("/sys/fs/cgroup");
    match statfs(root) {
        Ok(st) if st.filesystem_type() == CGROUP2_SUPER_MAGIC => {
            format!("v2 (controllers: {})", read("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default())
        }
        Ok(st) if st.filesystem_type() == TMPFS_MAGIC => {
            let mut v1: Vec<String> = std::fs::read_dir(root)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.path().is_dir() && e.file_name() != "unified")
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            v1.sort();
            let uni = root.join("unified");
            match statfs(&uni) {
                Ok(u) if u.filesystem_type() == CGROUP2_SUPER_MAGIC => format!(
                    "hybrid (v1: {}; v2 at /sys/fs/cgroup/unified, controllers: {})",
                    v1.join(","),
                    read("/sys/fs/cgroup/unified/cgroup.controllers").unwrap_or_default()
                ),
                _ => format!("v1 ({})", v1.join(",")),
            }
        }
        Ok(_) => "unknown".into(),
        Err(e) => format!("unknown ({e})"),
    }
}

fn instruments() -> Vec<String> {
    let mut v = Vec::new();
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        v.push("btf".into());
    }
    if Path::new("/sys/kernel/tracing/events/raw_syscalls").exists()
        || Path::new("/sys/kernel/debug/tracing/events/raw_syscalls").exists()
    {
        v.push("tracepoints".into());
    }
    if nix::unistd::geteuid().is_root() {
        v.push("bpf (root)".into());
    }
    v.push("clock_gettime(CLOCK_MONOTONIC) wall timing".into());
    v
}

/// First line of `NAME --version` for the other runtimes found.
pub fn runtimes() -> Vec<String> {
    ["runc", "crun", "sysbench"]
        .iter()
        .filter_map(|r| {
            let o = Command::new(r).arg("--version").output().ok()?;
            let text = String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string();
            o.status.success().then(|| if text.is_empty() { (*r).to_string() } else { text })
        })
        .collect()
}

/// Whether `name` runs (`name --version` succeeds).
pub fn has(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
