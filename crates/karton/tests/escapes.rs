//! The runc family's container escapes, each run as an attack against karton and asserted
//! to fail. Where it is cheap, a control shows that the attack's primitive itself works on
//! this machine (so a test that passes is not passing because the attack never ran).
//! See docs/security.md for how karton prevents each class.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn out(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A host directory outside every bundle holding one marker file: if any mount or write of
/// karton lands here, the marker is hidden or the directory changes.
struct HostDir {
    dir: TempDir,
}

impl HostDir {
    fn new(prefix: &str) -> HostDir {
        let dir = TempDir::new(prefix);
        std::fs::write(dir.path().join("MARKER"), "host").unwrap();
        HostDir { dir }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    /// The directory holds exactly the marker, and nothing is mounted on it in `mountinfo`.
    fn assert_untouched(&self, mountinfo: &str, what: &str) {
        let names: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["MARKER"], "{what}: host dir {} was changed", self.path().display());
        assert_eq!(std::fs::read_to_string(self.path().join("MARKER")).unwrap(), "host", "{what}");
        let p = self.path().to_str().unwrap();
        for line in mountinfo.lines() {
            let mp = line.split(' ').nth(4).unwrap_or("");
            assert!(!mp.starts_with(p), "{what}: something was mounted on the host dir: {line}");
        }
    }
}

fn host_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap()
}

/// A createContainer hook: it runs in the container's mount namespace after every mount
/// and before pivot_root, when host paths are still visible: it copies that namespace's
/// mountinfo to `report`, so the test sees where karton's mounts landed.
fn add_mountinfo_hook(b: &mut Bundle, report: &Path) {
    b.config["hooks"] = json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat /proc/self/mountinfo > {}", report.display())]}]});
}

/// Unshares a private mount namespace and runs `script` with sh (for controls).
fn in_private_mntns(script: &str) -> std::process::Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .output()
        .expect("unshare")
}

fn sha(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

// ---------------------------------------------------------------------------------------
// CVE-2019-5736: overwriting the runtime binary through /proc/PID/exe
// ---------------------------------------------------------------------------------------

/// During create, karton's init waits on exec.fifo as pid 1 of the container; a process
/// exec'd into the container tries to reach karton's binary and fds through /proc/1. The
/// init is non-dumpable, so /proc/1/exe, /proc/1/fd and /proc/1/mem are refused. Control:
/// after `start` the init has execve'd the user's program and the same reads succeed.
#[test]
fn cve_2019_5736_runtime_exe_unreachable_during_create() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["args"] = json!(["sleep", "600"]);
    b.write();
    let id = unique("exe");
    let bin_before = sha(Path::new(KARTON));
    let o = k.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(o.status.success(), "create: {}", err(&o));
    let attack = "readlink /proc/1/exe && echo EXE-LINK; \
                  for f in /proc/1/fd/*; do readlink $f >/dev/null 2>&1 && echo FD-LINK $f; done; \
                  (exec 3</proc/1/exe) 2>/dev/null && echo EXE-OPEN-R; \
                  (exec 3>>/proc/1/exe) 2>/dev/null && echo EXE-OPEN-W; \
                  head -c1 /proc/1/environ >/dev/null 2>&1 && echo ENVIRON; \
                  for f in /proc/1/fd/*; do (exec 4>>\"$f\") 2>/dev/null && echo FD-OPEN-W $f; done; \
                  echo done";
    let o = k.run(&["exec", &id, "sh", "-c", attack]);
    assert!(o.status.success(), "exec: {}", err(&o));
    let text = out(&o);
    assert!(text.contains("done"), "{text}");
    for leak in ["EXE-LINK", "FD-LINK", "EXE-OPEN", "ENVIRON", "FD-OPEN-W"] {
        assert!(!text.contains(leak), "karton's init (pid 1 before start) was reachable: {leak}\n{text}");
    }
    // Control: once the init has execve'd the user's program it is dumpable again, and the
    // same primitive reaches it.
    let o = k.run(&["start", &id]);
    assert!(o.status.success(), "start: {}", err(&o));
    let o = k.run(&["exec", &id, "sh", "-c", "readlink /proc/1/exe; ls /proc/1/fd | sort -n | tr '\\n' ' '"]);
    let text = out(&o);
    assert!(
        text.contains("busybox"),
        "control: /proc/1/exe of the started init must be readable: {text} {}",
        err(&o)
    );
    assert_eq!(
        text.lines().nth(1).unwrap_or("").trim(),
        "0 1 2",
        "the started init holds only fds 0-2: {text}"
    );
    assert_eq!(bin_before, sha(Path::new(KARTON)), "karton's binary changed");
}

/// During `karton exec`, the process karton forks into the container is non-dumpable until
/// it execve's. A watcher inside the container scans /proc as fast as it can while the host
/// runs many execs; it must never resolve a /proc/PID/exe that points at karton's binary
/// (every such read must be refused), and never open one for writing.
#[test]
fn cve_2019_5736_runtime_exe_unreachable_during_exec() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let karton_name = Path::new(KARTON).file_name().unwrap().to_string_lossy().into_owned();
    // The watcher: records every /proc/PID/exe it could resolve that is not busybox, and
    // every process whose exe it was refused (proof the race window was hit).
    let watcher = format!(
        "while [ ! -e /tmp/stop ]; do for p in /proc/[0-9]*; do \
           l=$(readlink $p/exe 2>/dev/null) || {{ [ -e $p/exe ] 2>/dev/null; echo denied >> /tmp/denied; continue; }}; \
           case \"$l\" in *{karton_name}*) echo \"LEAK $p $l\" >> /tmp/leak; (exec 3>>$p/exe) 2>/dev/null && echo \"WRITE $p\" >> /tmp/leak;; esac; \
         done; done; sleep 600"
    );
    b.sh(&watcher);
    b.write();
    let id = unique("exe");
    let o = k.run(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", err(&o));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    while Instant::now() < deadline && n < 150 {
        let o = k.run(&["exec", &id, "true"]);
        assert!(o.status.success(), "exec: {}", err(&o));
        n += 1;
    }
    let o = k.run(&["exec", &id, "sh", "-c", "touch /tmp/stop; sleep 1; cat /tmp/leak 2>/dev/null; echo denied=$(wc -l < /tmp/denied 2>/dev/null || echo 0)"]);
    let text = out(&o);
    assert!(text.contains("denied="), "{text} {}", err(&o));
    assert!(
        !text.contains("LEAK") && !text.contains("WRITE"),
        "a karton process was reachable through /proc/PID/exe:\n{text}"
    );
    eprintln!("{n} execs raced; watcher: {}", text.trim());
}

// ---------------------------------------------------------------------------------------
// CVE-2016-9962, CVE-2024-21626: leaked fds, cwd outside the rootfs, dumpable init
// ---------------------------------------------------------------------------------------

/// Lists the fds of a process that inherited everything and opens nothing itself (a
/// backgrounded sleep: the shell and ls hold fds of their own while they run).
const LIST_FDS: &str = "sleep 5 & ls -l /proc/$!/fd; kill $!";

/// The container sees exactly fds 0-2 plus --preserve-fds, from run and from exec, even
/// when karton itself was started with more fds open.
#[test]
fn cve_2016_9962_only_stdio_and_preserved_fds() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.sh(LIST_FDS);
    b.write();
    let run = |preserve: u32| {
        let id = unique("fd");
        // karton starts with fds 3, 4 and 5 open (a shell opens them, as an engine would).
        let script = format!(
            "exec 3</etc/hostname 4</ 5</tmp; exec {} --root {} run --preserve-fds {preserve} --bundle {} {id}",
            KARTON,
            k.root.path().display(),
            b.path().display()
        );
        let o = k.run_cmd(Command::new("sh").args(["-c", &script]));
        assert!(o.status.success(), "{}", err(&o));
        out(&o)
    };
    let fds = |text: &str| -> Vec<u32> {
        let mut v: Vec<u32> = text
            .lines()
            .filter(|l| l.contains(" -> "))
            .filter_map(|l| l.split(" -> ").next()?.split_whitespace().last()?.parse().ok())
            .collect();
        v.sort();
        v
    };
    let text = run(0);
    assert_eq!(fds(&text), [0, 1, 2], "{text}");
    let text = run(2);
    assert_eq!(fds(&text), [0, 1, 2, 3, 4], "{text}");
    assert!(!text.lines().any(|l| l.ends_with("-> /tmp")), "fd 5 was not preserved: {text}");

    // exec into a running container: 0-2 only.
    let mut b2 = Bundle::new();
    b2.config["process"]["args"] = json!(["sleep", "600"]);
    b2.write();
    let id = unique("fd");
    assert!(k.run(&["run", "-d", "--bundle", b2.path().to_str().unwrap(), &id]).status.success());
    let o = k.run(&["exec", &id, "sh", "-c", LIST_FDS]);
    assert_eq!(fds(&out(&o)), [0, 1, 2], "{} {}", out(&o), err(&o));
}

/// CVE-2024-21626: process.cwd as /proc/self/fd/N, to reach a directory fd the runtime
/// still holds while it sets up the process; and cwd symlinks pointing out of the rootfs.
/// Each attempt must be refused or end inside the container: from its cwd, the container
/// never sees a marker in the host's /tmp.
#[test]
fn cve_2024_21626_cwd_outside_rootfs() {
    if !can_run() {
        return;
    }
    // Control: a cwd of /proc/self/fd/N does follow an open directory fd.
    let host = HostDir::new("karton-test-cwd-host");
    let o = Command::new("sh")
        .args(["-c", &format!("exec 7<{}; cd /proc/self/fd/7 && cat MARKER", host.path().display())])
        .output()
        .unwrap();
    assert_eq!(out(&o), "host", "control: /proc/self/fd/N as cwd reaches the fd's directory");

    let k = Karton::new();
    let marker = host.path().file_name().unwrap().to_string_lossy().into_owned();
    let probe = format!(
        "pwd; cd ../../../../../../../../../..; ls tmp/{marker}/MARKER 2>/dev/null && echo ESCAPED; true"
    );
    let mut b = Bundle::new();
    b.sh(&probe);
    let mut refused = 0;
    for n in 3..16 {
        b.config["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        let (code, stdout, stderr) = k.run_bundle(&b);
        assert!(!stdout.contains("ESCAPED"), "cwd /proc/self/fd/{n} escaped the rootfs: {stdout}");
        if code == 0 {
            assert!(stdout.starts_with('/'), "cwd /proc/self/fd/{n}: pwd outside the root: {stdout:?}");
        } else {
            assert!(stderr.contains("process.cwd"), "cwd /proc/self/fd/{n}: {stderr}");
            refused += 1;
        }
    }
    assert!(refused > 0, "no /proc/self/fd cwd was refused");
    // Same through exec --cwd.
    let mut s = Bundle::new();
    s.config["process"]["args"] = json!(["sleep", "600"]);
    s.write();
    let id = unique("cwd");
    assert!(k.run(&["run", "-d", "--bundle", s.path().to_str().unwrap(), &id]).status.success());
    for n in 3..12 {
        let o = k.run(&["exec", "--cwd", &format!("/proc/self/fd/{n}"), &id, "sh", "-c", &probe]);
        assert!(!out(&o).contains("ESCAPED"), "exec --cwd /proc/self/fd/{n} escaped: {}", out(&o));
    }

    // Symlinked cwds: absolute and ../ chains to the host's directory resolve inside.
    let rootfs = b.rootfs();
    symlink(host.path(), rootfs.join("abs")).unwrap();
    symlink(format!("../../../../../../../..{}", host.path().display()), rootfs.join("dotdot")).unwrap();
    symlink("dotdot", rootfs.join("chain")).unwrap();
    b.sh("pwd; ls MARKER 2>/dev/null && echo ESCAPED; true");
    for cwd in ["/abs", "/dotdot", "/chain", "/../../../..", "/tmp/../../.."] {
        b.config["process"]["cwd"] = json!(cwd);
        let (code, stdout, stderr) = k.run_bundle(&b);
        assert!(!stdout.contains("ESCAPED"), "cwd {cwd} reached the host dir: {stdout}");
        assert!(code == 0 || stderr.contains("process.cwd"), "cwd {cwd}: {stderr}");
    }
    host.assert_untouched(&host_mountinfo(), "cwd attacks");
}

/// karton's init is non-dumpable from its first instruction until execve: a process in the
/// container with the same uid cannot ptrace it, read its memory or its fds. (The dumpable
/// flag is checked by the kernel's ptrace_may_access, which /proc/PID/{exe,fd,mem,environ}
/// use; the control after start shows the check passes for an ordinary process.)
#[test]
fn cve_2016_9962_init_non_dumpable_until_execve() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["args"] = json!(["sleep", "600"]);
    b.write();
    let id = unique("dump");
    assert!(k.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]).status.success());
    let probe = "head -c1 /proc/1/mem 2>&1; cat /proc/1/environ >/dev/null 2>&1 && echo ENVIRON-READ; cat /proc/1/maps | head -1 | grep -q . && echo MAPS-READ; echo end";
    let o = k.run(&["exec", &id, "sh", "-c", probe]);
    let text = out(&o);
    assert!(text.contains("end"), "{text} {}", err(&o));
    assert!(
        !text.contains("ENVIRON-READ") && !text.contains("MAPS-READ"),
        "the init was dumpable before execve: {text}"
    );
    // From the host, the init's /proc/PID/status is root's but /proc/PID/fd as an
    // unprivileged host user is refused (as for any root process); the container side is
    // what matters and is checked above. Control: after start the same reads work.
    assert!(k.run(&["start", &id]).status.success());
    let o = k.run(&["exec", &id, "sh", "-c", probe]);
    let text = out(&o);
    assert!(
        text.contains("ENVIRON-READ") && text.contains("MAPS-READ"),
        "control after execve: {text} {}",
        err(&o)
    );
}

// ---------------------------------------------------------------------------------------
// CVE-2021-30465: symlink swapped into a mount destination during setup
// ---------------------------------------------------------------------------------------

/// A host thread swaps `rootfs/vol` between a directory and a symlink to a host directory
/// (renameat2 RENAME_EXCHANGE, as the original exploit) while karton mounts tmpfs (and a
/// bind) on /vol again and again. Every mount must land inside the rootfs: a
/// createContainer hook reads the container's mountinfo (host paths still visible) and
/// the host directory keeps its marker, with nothing mounted on it. Control: a path-based
/// mount through the symlink does land on the host directory.
#[test]
fn cve_2021_30465_symlink_swap_race_on_mount_destination() {
    if !can_run() {
        return;
    }
    let host = HostDir::new("karton-test-swap-host");
    let k = Karton::new();
    let mut b = Bundle::new();
    let rootfs = b.rootfs();
    std::fs::create_dir(rootfs.join("vol")).unwrap();
    symlink(host.path(), rootfs.join("vol-link")).unwrap();
    // Control: mount(2) by path follows the symlink to the host dir.
    let o = in_private_mntns(&format!(
        "mount -t tmpfs none {} && grep -c ' {} ' /proc/self/mountinfo",
        rootfs.join("vol-link").display(),
        host.path().display()
    ));
    assert_eq!(
        out(&o).trim(),
        "1",
        "control: path-based mount through the symlink lands on the host: {}",
        err(&o)
    );

    let src = TempDir::new("karton-test-swap-src");
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    for i in 0..16 {
        mounts
            .push(json!({"destination": "/vol", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]}));
        mounts.push(json!({"destination": format!("/vol/sub{i}"), "type": "bind", "source": src.path(), "options": ["bind"]}));
    }
    let report = TempDir::new("karton-test-swap-report");
    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicUsize::new(0));
    let swapper = {
        let (stop, swaps, rootfs) = (stop.clone(), swaps.clone(), rootfs.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &rootfs.join("vol"),
                    nix::fcntl::AT_FDCWD,
                    &rootfs.join("vol-link"),
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                )
                .is_ok()
                {
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let mut ok = 0;
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut runs = 0;
    while runs < 40 && Instant::now() < deadline {
        let info = report.path().join(format!("mountinfo-{runs}"));
        add_mountinfo_hook(&mut b, &info);
        b.sh("true");
        let (code, _o, _e) = k.run_bundle(&b);
        if code == 0 {
            ok += 1;
        }
        if let Ok(text) = std::fs::read_to_string(&info) {
            host.assert_untouched(&text, &format!("run {runs} (container's mount namespace)"));
        }
        host.assert_untouched(&host_mountinfo(), &format!("run {runs} (host)"));
        runs += 1;
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    eprintln!("{runs} runs ({ok} succeeded) against {} swaps", swaps.load(Ordering::Relaxed));
    assert!(swaps.load(Ordering::Relaxed) > 100, "the swapper did not run");
    host.assert_untouched(&host_mountinfo(), "after the race");
}

// ---------------------------------------------------------------------------------------
// CVE-2019-16884, CVE-2023-27561: /proc and /sys destinations that are symlinks or mounts
// ---------------------------------------------------------------------------------------

/// rootfs/proc and rootfs/sys are symlinks to host directories (absolute, and a ../ chain).
/// The procfs and sysfs mounts must land inside the rootfs or be refused; nothing is
/// mounted on the host directories in any mount namespace.
#[test]
fn cve_2019_16884_proc_sys_destinations_are_symlinks() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let hp = HostDir::new("karton-test-proc-host");
    let hs = HostDir::new("karton-test-sys-host");
    let mut b = Bundle::new();
    let rootfs = b.rootfs();
    std::fs::remove_dir(rootfs.join("proc")).unwrap();
    std::fs::remove_dir(rootfs.join("sys")).unwrap();
    symlink(hp.path(), rootfs.join("proc")).unwrap();
    symlink(format!("../../../../../../../../..{}", hs.path().display()), rootfs.join("sys")).unwrap();
    let report = TempDir::new("karton-test-proc-report");
    let info = report.path().join("mountinfo");
    add_mountinfo_hook(&mut b, &info);
    b.sh("cat /proc/self/comm; ls /sys/kernel >/dev/null && echo sysok");
    let (code, stdout, stderr) = k.run_bundle(&b);
    if code == 0 {
        assert!(
            stdout.contains("cat") && stdout.contains("sysok"),
            "procfs/sysfs usable inside: {stdout} {stderr}"
        );
    } else {
        assert!(!stderr.is_empty(), "a refusal says why");
    }
    let text = std::fs::read_to_string(&info).unwrap_or_default();
    hp.assert_untouched(&text, "procfs mount (container's mntns)");
    hs.assert_untouched(&text, "sysfs mount (container's mntns)");
    hp.assert_untouched(&host_mountinfo(), "procfs mount (host)");
    hs.assert_untouched(&host_mountinfo(), "sysfs mount (host)");
}

/// CVE-2019-16884/CVE-2023-27561 "already mounted" variant: a config mount puts a fake
/// /proc (a bind of a bundle directory with proc-like files) in place of procfs, then asks
/// for a sysctl: karton must refuse to write through it. Control: with the real procfs the
/// same sysctl is written.
#[test]
fn cve_2023_27561_fake_proc_mount_cannot_take_procfs_writes() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["sysctl"] = json!({"kernel.domainname": "escape-test"});
    b.config["linux"]["readonlyPaths"] = json!([]);
    b.sh("cat /proc/sys/kernel/domainname");
    let good = k.stdout_of(&b);
    assert_eq!(good.trim(), "escape-test", "control: the sysctl is written to the real procfs");

    let fake = b.path().join("fakeproc");
    std::fs::create_dir_all(fake.join("sys/kernel")).unwrap();
    std::fs::write(fake.join("sys/kernel/domainname"), "untouched").unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    let i = mounts.iter().position(|m| m["destination"] == "/proc").unwrap();
    mounts[i] = json!({"destination": "/proc", "type": "bind", "source": fake, "options": ["rbind"]});
    b.config["linux"]["maskedPaths"] = json!([]);
    b.config["linux"]["readonlyPaths"] = json!([]);
    // Sysctls are written before the container's mounts exist, through the procfs the
    // runtime sees: a fake /proc in the config cannot take the write.
    b.sh("true");
    let (code, stdout, stderr) = k.run_bundle(&b);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert_eq!(std::fs::read_to_string(fake.join("sys/kernel/domainname")).unwrap(), "untouched");
}

// ---------------------------------------------------------------------------------------
// CVE-2025-31133, CVE-2025-52565, CVE-2025-52881
// ---------------------------------------------------------------------------------------

/// CVE-2025-31133: maskedPaths are covered by binding /dev/null; if /dev/null is a symlink
/// (here: the image's /dev is used, with /dev/null a symlink to
/// /proc/sys/kernel/core_pattern, kept in place by a racing host thread) a naive runtime
/// binds core_pattern writable over the masked path. karton must refuse, or mask with the
/// real 1:3 device; core_pattern on the host never changes. Control: a path-based bind of
/// that /dev/null does bind core_pattern.
#[test]
fn cve_2025_31133_masked_path_dev_null_symlink() {
    if !can_run() {
        return;
    }
    let core = PathBuf::from("/proc/sys/kernel/core_pattern");
    let before = std::fs::read_to_string(&core).unwrap();
    struct Restore(String);
    impl Drop for Restore {
        fn drop(&mut self) {
            if std::fs::read_to_string("/proc/sys/kernel/core_pattern").ok().as_deref()
                != Some(self.0.as_str())
            {
                let _ = std::fs::write("/proc/sys/kernel/core_pattern", self.0.trim_end());
            }
        }
    }
    let _restore = Restore(before.clone());
    let k = Karton::new();
    let mut b = Bundle::new();
    let rootfs = b.rootfs();
    let null = rootfs.join("dev/null");
    symlink(&core, &null).unwrap();
    // Control: a path-based bind of this /dev/null binds core_pattern (a procfs file).
    let tgt = TempDir::new("karton-test-null-ctl");
    std::fs::write(tgt.path().join("f"), "").unwrap();
    let o = in_private_mntns(&format!(
        "mount --bind {} {f} && stat -c %i {f}",
        null.display(),
        f = tgt.path().join("f").display()
    ));
    let core_ino = std::fs::metadata(&core).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
    assert_eq!(
        out(&o).trim(),
        core_ino.to_string(),
        "control: bind through the symlink reaches core_pattern {}",
        err(&o)
    );

    // The image's /dev, not a tmpfs: the symlink is what karton finds.
    b.config["mounts"].as_array_mut().unwrap().retain(|m| {
        m["destination"] != "/dev" && !m["destination"].as_str().unwrap_or("").starts_with("/dev/")
    });
    b.config["linux"]["maskedPaths"] = json!(["/proc/kcore", "/proc/timer_list", "/proc/keys"]);
    b.config["root"]["readonly"] = json!(false);
    b.sh("for f in /proc/kcore /proc/timer_list /proc/keys; do echo '|/tmp/pwned %p' > $f 2>/dev/null; stat -L -c \"$f %F %t:%T\" $f; done; true");
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let (stop, null, core) = (stop.clone(), null.clone(), core.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if std::fs::symlink_metadata(&null).map(|m| !m.file_type().is_symlink()).unwrap_or(true) {
                    let _ = std::fs::remove_file(&null);
                    let _ = symlink(&core, &null);
                }
            }
        })
    };
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..15 {
        let (code, stdout, stderr) = k.run_bundle(&b);
        assert_eq!(
            std::fs::read_to_string(&core).unwrap(),
            before,
            "core_pattern was written through a masked path: {stdout}"
        );
        if code == 0 {
            for line in stdout.lines().filter(|l| l.starts_with("/proc/")) {
                assert!(
                    line.ends_with("character special file 1:3"),
                    "masked with something other than /dev/null: {line}"
                );
            }
            ok += 1;
        } else {
            assert!(stderr.contains("null") || stderr.contains("device"), "refusal: {stderr}");
            refused += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    racer.join().unwrap();
    eprintln!("masked /dev/null symlink: {ok} runs masked with the real device, {refused} refused");
    assert_eq!(std::fs::read_to_string(&core).unwrap(), before);
}

/// CVE-2025-52565: the /dev/console bind (terminal: true). The container's /dev/pts is a
/// bundle directory whose entries are symlinks to /proc/sys/kernel/core_pattern, and
/// /dev/console a symlink to it too: the terminal karton binds must be a real pty, never
/// core_pattern.
#[test]
fn cve_2025_52565_console_bind_cannot_be_redirected() {
    if !can_run() {
        return;
    }
    let core = Path::new("/proc/sys/kernel/core_pattern");
    let before = std::fs::read_to_string(core).unwrap();
    let k = Karton::new();
    let mut b = Bundle::new();
    let fakepts = b.path().join("fakepts");
    std::fs::create_dir(&fakepts).unwrap();
    for n in 0..64 {
        symlink(core, fakepts.join(n.to_string())).unwrap();
    }
    // /dev/ptmx -> pts/ptmx -> the real devpts instance's ptmx: the master is real, and
    // ptsname() names /dev/pts/N, which is the symlink to core_pattern.
    symlink("../realpts/ptmx", fakepts.join("ptmx")).unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    let i = mounts.iter().position(|m| m["destination"] == "/dev/pts").unwrap();
    // A devpts instance at /dev/ptmx, the fake directory at /dev/pts: ptsname() then names
    // a path that resolves to core_pattern.
    mounts[i] = json!({"destination": "/dev/pts", "type": "bind", "source": fakepts, "options": ["rbind"]});
    mounts.push(json!({"destination": "/dev/realpts", "type": "devpts", "source": "devpts", "options": ["newinstance", "ptmxmode=0666"]}));
    b.config["process"]["terminal"] = json!(true);
    b.sh("stat -L -c '%F %i' /dev/console; readlink /proc/self/fd/0");
    b.write();
    let sock_dir = TempDir::new("karton-test-console");
    let sock = sock_dir.path().join("sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let id = unique("console");
    let mut c = k.cmd();
    c.args([
        "run",
        "-d",
        "--console-socket",
        sock.to_str().unwrap(),
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    let child = std::thread::spawn(move || {
        listener.set_nonblocking(false).unwrap();
        // Accept (and drop) the console connection so karton never blocks on it.
        let _ = listener.accept();
    });
    let o = k.run_cmd(&mut c);
    let _ = child.join();
    assert_eq!(std::fs::read_to_string(core).unwrap(), before, "core_pattern changed");
    if o.status.success() {
        // It ran: /dev/console must be a pty, not a procfs file.
        let st = k.run(&["exec", &id, "stat", "-L", "-c", "%F %t", "/dev/console"]);
        assert!(out(&st).contains("character special file"), "console is {}", out(&st));
    } else {
        assert!(err(&o).contains("is not a pty slave"), "refused for the wrong reason: {}", err(&o));
    }
}

/// CVE-2025-52881: procfs writes redirected by a mount over /proc/sys (a bind or tmpfs with
/// a look-alike kernel/domainname file): sysctls are written before the container's
/// mounts exist (and only to a real procfs), so the look-alike never receives the write.
#[test]
fn cve_2025_52881_sysctl_write_redirected_by_mount_is_refused() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let fake = b.path().join("fakesys");
    std::fs::create_dir_all(fake.join("kernel")).unwrap();
    std::fs::write(fake.join("kernel/domainname"), "untouched").unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/proc/sys", "type": "bind", "source": fake, "options": ["bind"]}));
    b.config["linux"]["readonlyPaths"] = json!([]);
    b.config["linux"]["sysctl"] = json!({"kernel.domainname": "redirected"});
    // Sysctls are written before the container's mounts exist: the bind cannot take the
    // write, and the container's own value is set in the kernel.
    b.sh("true");
    let (code, stdout, stderr) = k.run_bundle(&b);
    assert_eq!(code, 0, "{stdout} {stderr}");
    assert_eq!(std::fs::read_to_string(fake.join("kernel/domainname")).unwrap(), "untouched");
    // A tmpfs over /proc/sys: likewise irrelevant.
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.pop();
    mounts.push(json!({"destination": "/proc/sys", "type": "tmpfs", "source": "tmpfs", "options": []}));
    let (code, stdout, stderr) = k.run_bundle(&b);
    assert_eq!(code, 0, "{stdout} {stderr}");
}

// ---------------------------------------------------------------------------------------
// Hostile rootfs
// ---------------------------------------------------------------------------------------

/// /etc, /dev, /sys, /proc and mount destinations as symlinks to host paths, absolute and
/// ../ chains: every mount and every file karton makes (device nodes, /dev links, mount
/// targets) lands inside the rootfs or the container is refused; the host dirs stay as
/// they were in every mount namespace.
#[test]
fn hostile_rootfs_symlinks_to_host_paths() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let hosts: Vec<HostDir> = (0..6).map(|i| HostDir::new(&format!("karton-test-hostile{i}"))).collect();
    let mut b = Bundle::new();
    let rootfs = b.rootfs();
    for d in ["etc", "dev", "sys", "proc"] {
        let p = rootfs.join(d);
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        }
    }
    let up = "../../../../../../../../../..";
    symlink(hosts[0].path(), rootfs.join("etc")).unwrap();
    symlink(format!("{up}{}", hosts[1].path().display()), rootfs.join("dev")).unwrap();
    symlink(hosts[2].path(), rootfs.join("sys")).unwrap();
    // A chain: proc -> p1 -> p2 -> ../../host dir.
    symlink("p1", rootfs.join("proc")).unwrap();
    symlink("/p2", rootfs.join("p1")).unwrap();
    symlink(format!("{up}{}", hosts[3].path().display()), rootfs.join("p2")).unwrap();
    symlink(hosts[4].path(), rootfs.join("data")).unwrap();
    symlink(format!("{up}{}", hosts[5].path().display()), rootfs.join("data2")).unwrap();
    let src = TempDir::new("karton-test-hostile-src");
    std::fs::write(src.path().join("payload"), "x").unwrap();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/data", "type": "bind", "source": src.path(), "options": ["bind"]}));
    mounts.push(json!({"destination": "/data2/deeper/x", "type": "tmpfs", "source": "tmpfs", "options": []}));
    mounts.push(json!({"destination": "/etc/hosts", "type": "bind", "source": src.path().join("payload"), "options": ["bind"]}));
    b.config["linux"]["devices"] = json!([{"path": "/dev/extra/zero", "type": "c", "major": 1, "minor": 5}]);
    let report = TempDir::new("karton-test-hostile-report");
    let info = report.path().join("mountinfo");
    add_mountinfo_hook(&mut b, &info);
    b.sh("ls /data/payload && cat /etc/hosts && ls /dev/null /dev/extra/zero && cat /proc/self/comm; true");
    let (code, stdout, stderr) = k.run_bundle(&b);
    eprintln!("hostile rootfs: exit {code}\n{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&info).unwrap_or_default();
    for (i, h) in hosts.iter().enumerate() {
        h.assert_untouched(&text, &format!("host dir {i} (container's mntns)"));
        h.assert_untouched(&host_mountinfo(), &format!("host dir {i} (host)"));
    }
    if code == 0 {
        assert!(stdout.contains("/data/payload"), "{stdout}");
    }
}

/// Device nodes in the image: a char device for /dev/mem and a block node for the host's
/// disk, placed in the rootfs (not under the /dev tmpfs). With the default device cgroup
/// rules (the default config's "deny all" plus the standard devices) opening them fails
/// with EPERM. Control: the same image without device rules reads the disk node.
#[test]
fn hostile_rootfs_device_nodes_are_unusable() {
    if !can_run() {
        return;
    }
    let disk = std::fs::read_to_string("/proc/partitions").unwrap().lines().skip(2).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != 4 {
            return None;
        }
        Some((f[0].parse::<u64>().ok()?, f[1].parse::<u64>().ok()?))
    });
    let Some((major, minor)) = disk else {
        eprintln!("SKIP: no block device in /proc/partitions");
        return;
    };
    let k = Karton::new();
    let mut b = Bundle::new();
    let rootfs = b.rootfs();
    let mk = |name: &str, kind: nix::sys::stat::SFlag, ma: u64, mi: u64| {
        nix::sys::stat::mknod(
            &rootfs.join(name),
            kind,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(ma, mi),
        )
        .unwrap();
    };
    mk("hostdisk", nix::sys::stat::SFlag::S_IFBLK, major, minor);
    mk("mem", nix::sys::stat::SFlag::S_IFCHR, 1, 1);
    mk("kmsg", nix::sys::stat::SFlag::S_IFCHR, 1, 11);
    b.sh("for d in /hostdisk /mem /kmsg; do head -c 16 $d > /dev/null 2>/tmp/e && echo \"READ $d\" || echo \"$d $(cat /tmp/e)\"; done; \
          echo x > /hostdisk 2>/dev/null && echo WROTE; echo karton-escape-test > /kmsg 2>/tmp/e && echo WROTE || echo \"/kmsg-w $(cat /tmp/e)\"; true");
    // The default config: linux.resources.devices = deny all (+ the standard devices).
    assert_eq!(b.config["linux"]["resources"]["devices"][0]["allow"], json!(false));
    let stdout = k.stdout_of(&b);
    assert!(
        !stdout.contains("READ") && !stdout.contains("WROTE"),
        "a device node from the image was usable: {stdout}"
    );
    for d in ["/hostdisk", "/mem", "/kmsg", "/kmsg-w"] {
        let line = stdout.lines().find(|l| l.starts_with(&format!("{d} "))).unwrap_or("");
        assert!(line.contains("Operation not permitted"), "{d} must fail with EPERM: {stdout}");
    }
    // Control: without device rules the kmsg node from the image is writable (a line in
    // the host's kernel log): the cgroup rule is what stops it above.
    let mut c = Bundle::new();
    let crootfs = c.rootfs();
    nix::sys::stat::mknod(
        &crootfs.join("kmsg"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 11),
    )
    .unwrap();
    if let Some(o) = c.config["linux"].as_object_mut() {
        o.remove("resources");
    }
    c.sh("echo karton-escape-test-control > /kmsg && echo WROTE");
    assert_eq!(k.stdout_of(&c).trim(), "WROTE", "control: the node is usable without device rules");
}
