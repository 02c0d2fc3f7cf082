//! The systemd cgroup driver against a real systemd: Debian's systemd booted as pid 1 in
//! namespaces and cgroups of the test's own (tests/systemd/boot.sh), karton run inside
//! it through nsenter. Checks the scope unit, its properties, the cgroup files, update
//! through SetUnitProperties, and that delete removes the unit and its directories.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

const BOOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/systemd/boot.sh");
/// Where DIR/share appears inside the booted system.
const SHARE: &str = "/mnt/karton";

/// A systemd booted as pid 1; dropping it kills it and removes its cgroups and files.
struct BootedSystemd {
    dir: TempDir,
    tag: String,
    pid: i32,
}

impl BootedSystemd {
    fn boot() -> BootedSystemd {
        let dir = TempDir::new("karton-systemd");
        std::fs::create_dir_all(dir.path().join("share")).unwrap();
        let tag = unique("t");
        let mut me = BootedSystemd { dir, tag, pid: 0 };
        let out =
            Command::new("bash").args([BOOT, "start"]).arg(me.dir.path()).arg(&me.tag).output().unwrap();
        assert!(out.status.success(), "boot.sh start: {}", String::from_utf8_lossy(&out.stderr));
        me.pid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        me
    }

    fn share(&self) -> PathBuf {
        self.dir.path().join("share")
    }

    /// Runs a command inside the booted system (all its namespaces, its root). Output
    /// goes through files: a container that `create` leaves waiting would hold a pipe.
    fn exec(&self, args: &[&str]) -> Output {
        let dir = TempDir::new("karton-systemd-out");
        let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let status = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-m", "-p", "-C", "-u", "-i", "-r", "-w"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        Output {
            status,
            stdout: std::fs::read(&out).unwrap_or_default(),
            stderr: std::fs::read(&err).unwrap_or_default(),
        }
    }

    fn stdout(&self, args: &[&str]) -> String {
        let o = self.exec(args);
        assert!(
            o.status.success(),
            "{args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// `systemctl show UNIT -p NAME` for each name, as (name, value) pairs.
    fn show(&self, unit: &str, props: &[&str]) -> Vec<(String, String)> {
        let mut args = vec!["systemctl", "show", unit];
        for p in props {
            args.extend(["-p", p]);
        }
        let text = self.stdout(&args);
        let mut out: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.sort_by_key(|(k, _)| props.iter().position(|p| p == k));
        out
    }

    fn prop(&self, unit: &str, name: &str) -> String {
        self.show(unit, &[name]).into_iter().next().map(|(_, v)| v).unwrap_or_default()
    }

    fn karton(&self, args: &[&str]) -> Output {
        let bin = format!("{SHARE}/karton");
        let root = format!("{SHARE}/state");
        let mut all = vec![bin.as_str(), "--root", root.as_str()];
        all.extend_from_slice(args);
        self.exec(&all)
    }
}

impl Drop for BootedSystemd {
    fn drop(&mut self) {
        let out = Command::new("bash").args([BOOT, "stop"]).arg(self.dir.path()).arg(&self.tag).output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("boot.sh stop: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => eprintln!("boot.sh stop: {e}"),
        }
    }
}

fn have_systemd() -> bool {
    for (path, pkg) in [
        ("/lib/systemd/systemd", "systemd"),
        ("/usr/bin/dbus-daemon", "dbus"),
        ("/usr/bin/nsenter", "util-linux"),
    ] {
        if !Path::new(path).exists() {
            karton_testkit::skip(format!("needs {path} (apt-get install {pkg}; scripts/deps.sh)"));
            return false;
        }
    }
    if Path::new("/run/systemd/system").is_dir() {
        // A host booted with systemd runs this driver for real; booting a second systemd
        // beside it is not what this test is for.
        karton_testkit::skip("the host runs systemd already; this test boots its own");
        return false;
    }
    true
}

fn check(ok: bool, what: &str, got: impl std::fmt::Debug) {
    assert!(ok, "{what}: got {got:?}");
}

#[test]
fn systemd_scope_lifecycle() {
    if !can_run() || !have_systemd() {
        return;
    }
    let t0 = Instant::now();
    let sd = BootedSystemd::boot();
    // Booted: the manager answers and has finished its start-up jobs ("degraded" here:
    // units of other packages, such as podman's, fail inside this namespace).
    let deadline = Instant::now() + Duration::from_secs(120);
    let state = loop {
        let s =
            String::from_utf8_lossy(&sd.exec(&["systemctl", "is-system-running"]).stdout).trim().to_string();
        if s == "running" || s == "degraded" || Instant::now() >= deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    check(state == "running" || state == "degraded", "systemctl is-system-running", &state);
    eprintln!("systemd booted as pid 1 (host pid {}) in {} ms: {state}", sd.pid, t0.elapsed().as_millis());
    check(
        sd.stdout(&["cat", "/proc/1/comm"]) == "systemd",
        "pid 1 inside",
        sd.stdout(&["cat", "/proc/1/comm"]),
    );

    // The binary and a bundle where the booted system sees them.
    std::fs::copy(KARTON, sd.share().join("karton")).unwrap();
    let mut b = Bundle::new();
    let id = unique("sd");
    let unit = format!("karton-{id}.scope");
    b.config["process"]["args"] = json!(["sleep", "1000"]);
    b.config["linux"]["cgroupsPath"] = json!(format!("system.slice:karton:{id}"));
    b.config["linux"]["resources"] = json!({
        "memory": {"limit": 64 << 20},
        "pids": {"limit": 32},
        "cpu": {"quota": 50000, "period": 100000, "shares": 512}
    });
    b.write();
    let status = Command::new("cp").arg("-a").arg(b.path()).arg(sd.share().join("b")).status().unwrap();
    assert!(status.success());
    let bundle = format!("{SHARE}/b");

    let o = sd.karton(&["--systemd-cgroup", "create", "--bundle", &bundle, &id]);
    assert!(o.status.success(), "create: {}", String::from_utf8_lossy(&o.stderr));

    // The scope exists, with the limits as unit properties.
    let status = sd.exec(&["systemctl", "status", "--no-pager", &unit]);
    assert!(status.status.success(), "systemctl status: {}", String::from_utf8_lossy(&status.stdout));
    let props = sd.show(
        &unit,
        &[
            "ActiveState",
            "Delegate",
            "Slice",
            "ControlGroup",
            "MemoryMax",
            "TasksMax",
            "CPUQuotaPerSecUSec",
            "CPUShares",
        ],
    );
    eprintln!("{unit}: {props:?}");
    let want = [
        ("ActiveState", "active".to_string()),
        ("Delegate", "yes".to_string()),
        ("Slice", "system.slice".to_string()),
        ("ControlGroup", format!("/system.slice/{unit}")),
        ("MemoryMax", (64u64 << 20).to_string()),
        ("TasksMax", "32".to_string()),
        ("CPUQuotaPerSecUSec", "500ms".to_string()),
        ("CPUShares", "512".to_string()),
    ];
    for (k, v) in &want {
        let got = props.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        check(got.as_deref() == Some(v.as_str()), k, got);
    }

    // The init is in the scope in every hierarchy, and the kernel holds the limits.
    let state: serde_json::Value = serde_json::from_slice(&sd.karton(&["state", &id]).stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap().to_string();
    let cg = |h: &str, f: &str| format!("/sys/fs/cgroup/{h}/system.slice/{unit}/{f}");
    for h in ["memory", "pids", "cpu", "cpuset", "freezer", "devices", "blkio", "systemd", "unified"] {
        let procs = sd.stdout(&["cat", &cg(h, "cgroup.procs")]);
        check(procs.lines().any(|l| l == pid), &format!("{h}: init {pid} in cgroup.procs"), procs);
    }
    let read = |h: &str, f: &str| sd.stdout(&["cat", &cg(h, f)]);
    check(
        read("memory", "memory.limit_in_bytes") == "67108864",
        "memory.limit_in_bytes",
        read("memory", "memory.limit_in_bytes"),
    );
    check(read("pids", "pids.max") == "32", "pids.max", read("pids", "pids.max"));
    check(read("cpu", "cpu.cfs_quota_us") == "50000", "cpu.cfs_quota_us", read("cpu", "cpu.cfs_quota_us"));
    check(read("cpu", "cpu.shares") == "512", "cpu.shares", read("cpu", "cpu.shares"));

    // update goes through the unit: the properties change, and the files with them.
    let o = sd.karton(&["start", &id]);
    assert!(o.status.success(), "start: {}", String::from_utf8_lossy(&o.stderr));
    let o = sd.karton(&["update", "--memory", "134217728", "--pids-limit", "64", &id]);
    assert!(o.status.success(), "update: {}", String::from_utf8_lossy(&o.stderr));
    check(sd.prop(&unit, "MemoryMax") == "134217728", "MemoryMax after update", sd.prop(&unit, "MemoryMax"));
    check(sd.prop(&unit, "TasksMax") == "64", "TasksMax after update", sd.prop(&unit, "TasksMax"));
    check(
        read("memory", "memory.limit_in_bytes") == "134217728",
        "memory.limit_in_bytes after update",
        read("memory", "memory.limit_in_bytes"),
    );
    check(read("pids", "pids.max") == "64", "pids.max after update", read("pids", "pids.max"));

    // delete stops the unit; nothing of it stays, in systemd or in any hierarchy.
    let o = sd.karton(&["delete", "--force", &id]);
    assert!(o.status.success(), "delete: {}", String::from_utf8_lossy(&o.stderr));
    check(sd.prop(&unit, "LoadState") == "not-found", "LoadState after delete", sd.prop(&unit, "LoadState"));
    for h in ["memory", "pids", "cpu", "cpuset", "freezer", "devices", "blkio", "systemd", "unified"] {
        let gone = sd.exec(&["test", "-e", &format!("/sys/fs/cgroup/{h}/system.slice/{unit}")]);
        check(!gone.status.success(), &format!("{h}: scope directory removed"), gone.status);
    }

    // `run` with no cgroupsPath: ":karton:ID" in system.slice; the unit goes with the container.
    let mut b2 = Bundle::new();
    let id2 = unique("sd");
    let unit2 = format!("karton-{id2}.scope");
    b2.sh("grep -q . /proc/self/cgroup");
    b2.write();
    let status = Command::new("cp").arg("-a").arg(b2.path()).arg(sd.share().join("b2")).status().unwrap();
    assert!(status.success());
    let o = sd.karton(&["--systemd-cgroup", "run", "--bundle", &format!("{SHARE}/b2"), &id2]);
    assert!(o.status.success(), "run: {}", String::from_utf8_lossy(&o.stderr));
    check(sd.prop(&unit2, "LoadState") == "not-found", "LoadState after run", sd.prop(&unit2, "LoadState"));
    let left = sd.stdout(&["ls", &format!("{SHARE}/state")]);
    check(left.is_empty(), "state left in --root", left);
}
