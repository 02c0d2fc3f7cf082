//! `karton spawn` against the real kernel: namespaces, hostname, binds, time offsets,
//! cgroup limits, --persist with `ns enter`, unprivileged use, and bad input leaving
//! nothing behind. Needs root; every test cleans up in Drop guards.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Karton, TempDir, KARTON};

const TYPES: [&str; 8] = ["user", "pid", "net", "ipc", "uts", "mnt", "cgroup", "time"];

/// One sandbox at a time in this binary: concurrent creates race in karton-cgroup on the
/// shared `karton/` parent's cpuset (reported; see the spawn report), which would make
/// these tests flaky for a reason that is not spawn's.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether the test runs as root; when not, records the skip and the test returns.
#[track_caller]
fn root_or_skip() -> bool {
    if let Some(why) = karton_testkit::needs_root() {
        karton_testkit::skip(why);
        return false;
    }
    true
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `karton spawn ARGS` with output through files.
fn spawn(k: &Karton, args: &[&str]) -> Output {
    let mut c = k.cmd();
    c.arg("spawn").args(args);
    k.run_cmd(&mut c)
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "karton spawn failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The script that prints `TYPE LINK` for each namespace of the sandbox's process.
fn ns_script() -> String {
    TYPES.iter().map(|t| format!("echo {t} $(readlink /proc/self/ns/{t});")).collect()
}

fn parse_ns(out: &str) -> BTreeMap<String, String> {
    out.lines().filter_map(|l| l.split_once(' ')).map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// The types whose namespace differs from the test's own (the host's).
fn differing(inside: &BTreeMap<String, String>) -> Vec<String> {
    TYPES
        .iter()
        .filter(|t| inside.get(**t).map(String::as_str) != Some(common::host_ns(t).as_str()))
        .map(|t| t.to_string())
        .collect()
}

/// Lines of our mountinfo mentioning `needle`.
fn mounts_with(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

/// Unmounts DIR/<type> and removes DIR, also when the test fails.
struct PersistGuard(PathBuf);

impl Drop for PersistGuard {
    fn drop(&mut self) {
        for t in TYPES {
            let _ = nix::mount::umount2(
                &self.0.join(t),
                nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW,
            );
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn each_namespace_type_differs_exactly() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let k = Karton::new();
    let script = ns_script();
    for t in TYPES {
        let out = spawn(&k, &["--ns", t, "--", "sh", "-c", &script]);
        let inside = parse_ns(&ok(&out));
        let mut want: Vec<String> = vec![t.to_string(), "mnt".to_string()];
        want.sort();
        want.dedup();
        let mut got = differing(&inside);
        got.sort();
        assert_eq!(got, want, "--ns {t}: namespaces that differ from the host's; inside: {inside:?}");
    }
    // The default: all but user and time.
    let inside = parse_ns(&ok(&spawn(&k, &["--", "sh", "-c", &script])));
    let mut got = differing(&inside);
    got.sort();
    assert_eq!(got, ["cgroup", "ipc", "mnt", "net", "pid", "uts"]);
    // --all, and a comma list.
    let inside = parse_ns(&ok(&spawn(&k, &["--all", "--", "sh", "-c", &script])));
    assert_eq!(differing(&inside).len(), 8, "{inside:?}");
    let inside = parse_ns(&ok(&spawn(&k, &["--ns", "net,uts", "--", "sh", "-c", &script])));
    let mut got = differing(&inside);
    got.sort();
    assert_eq!(got, ["mnt", "net", "uts"]);
}

#[test]
fn hostname_and_exit_status() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let k = Karton::new();
    let out = spawn(&k, &["--hostname", "sandbox-h", "--", "sh", "-c", "hostname; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "sandbox-h");
    // The host's name is untouched.
    assert_ne!(nix::unistd::gethostname().unwrap_or_default().to_string_lossy(), "sandbox-h");
}

#[test]
fn host_ro_root_and_binds() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let k = Karton::new();
    let src = TempDir::new("karton-spawn-bind");
    std::fs::write(src.path().join("f"), "payload\n").expect("write");
    let ro = format!("{}:/mnt/ro:ro", src.path().display());
    let rw = format!("{}:/mnt/rw", src.path().display());
    let script = "cat /mnt/ro/f; \
        if echo x > /mnt/ro/new 2>/dev/null; then echo ro-writable; else echo ro-refused; fi; \
        echo y > /mnt/rw/new && echo rw-ok; \
        if touch /usr/karton-spawn-test 2>/dev/null; then echo usr-writable; else echo usr-refused; fi; \
        touch /tmp/x && echo tmp-ok";
    let out = ok(&spawn(&k, &["--bind", &ro, "--bind", &rw, "--", "sh", "-c", script]));
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["payload", "ro-refused", "rw-ok", "usr-refused", "tmp-ok"],
        "{out}"
    );
    assert!(
        !src.path().join("new").exists()
            || std::fs::read_to_string(src.path().join("new")).unwrap_or_default() == "y\n"
    );
    assert!(!Path::new("/usr/karton-spawn-test").exists());
}

#[test]
fn time_offsets_apply() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let k = Karton::new();
    // Default namespaces: --time-offset adds the time namespace.
    let out = ok(&spawn(
        &k,
        &[
            "--time-offset",
            "monotonic=86400",
            "--time-offset",
            "boottime=100000",
            "--",
            "sh",
            "-c",
            "cat /proc/self/timens_offsets; cut -d' ' -f1 /proc/uptime",
        ],
    ));
    let host_uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap_or_default()
        .split(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert!(lines.contains(&vec!["monotonic", "86400", "0"]), "{out}");
    assert!(lines.contains(&vec!["boottime", "100000", "0"]), "{out}");
    let inside: f64 = lines.last().and_then(|l| l.first()).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    assert!(inside > host_uptime + 99_000.0, "uptime inside {inside}, host {host_uptime}");
    // An explicit list without time is refused.
    let out = spawn(&k, &["--ns", "pid", "--time-offset", "monotonic=1", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("time namespace"), "{}", text(&out.stderr));
}

#[test]
fn cgroup_limits_apply() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let k = Karton::new();
    // Ten background sleeps under a limit of 5 processes: some forks must fail.
    let script = "n=0; i=0; while [ $i -lt 10 ]; do if sleep 3 & then n=$((n+1)); fi; i=$((i+1)); done; echo started=$n";
    let out = spawn(&k, &["--pids", "5", "--", "sh", "-c", script]);
    let so = text(&out.stdout);
    let se = text(&out.stderr);
    assert!(se.contains("fork"), "expected fork failures: stdout {so} stderr {se}");
    let out = ok(&spawn(
        &k,
        &["--memory", "64m", "--cpus", "0.5", "--pids", "20", "--", "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/pids/pids.max"],
    ));
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["67108864", "50000", "20"], "{out}");
}

#[test]
fn persist_then_enter() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let k = Karton::new();
    let base = TempDir::new("karton-spawn-persist");
    let dir = base.path().join("ns");
    let _guard = PersistGuard(dir.clone());
    let d = dir.to_str().expect("utf-8 path");
    let out = ok(&spawn(
        &k,
        &["--all", "--hostname", "kept-name", "--persist", d, "--", "sh", "-c", "readlink /proc/self/ns/uts"],
    ));
    let uts_inside = out.trim().to_string();
    // Every new namespace but pid is a bind mount in DIR.
    for t in TYPES {
        let held = mounts_with(&format!("{d}/{t} "));
        if t == "pid" {
            assert!(held.is_empty(), "pid should not be persisted: {held:?}");
        } else {
            assert_eq!(held.len(), 1, "{t}: {held:?}");
        }
    }
    // Nothing else of the sandbox is mounted on the host.
    let others: Vec<String> = mounts_with(base.path().to_str().unwrap_or("-"))
        .into_iter()
        .filter(|l| !TYPES.iter().any(|t| l.contains(&format!("{d}/{t} "))))
        .collect();
    assert!(others.is_empty(), "unexpected mounts: {others:?}");
    // The container itself is gone.
    assert!(std::fs::read_dir(k.root.path()).map(|r| r.count()).unwrap_or(0) == 0);

    let mut c = Command::new(KARTON);
    c.args([
        "--root",
        k.root.path().to_str().unwrap_or("-"),
        "ns",
        "enter",
        "--target",
        d,
        "--",
        "sh",
        "-c",
        "hostname; id -u",
    ]);
    let out = k.run_cmd(&mut c);
    assert_eq!(ok(&out).lines().collect::<Vec<_>>(), ["kept-name", "0"], "stderr: {}", text(&out.stderr));
    // Joining only the uts namespace shows the same one.
    let mut c = Command::new(KARTON);
    c.args(["ns", "enter", "--target", d, "--type", "uts", "--", "readlink", "/proc/self/ns/uts"]);
    let out = k.run_cmd(&mut c);
    assert_eq!(ok(&out).trim(), uts_inside);
    // Releasing: umount DIR/*.
    for t in TYPES {
        let _ = nix::mount::umount2(&dir.join(t), nix::mount::MntFlags::UMOUNT_NOFOLLOW);
    }
    assert!(mounts_with(d).is_empty());
}

#[test]
fn bad_input_leaves_nothing() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let k = Karton::new();
    let base = TempDir::new("karton-spawn-bad");
    let pdir = base.path().join("persist");
    let _guard = PersistGuard(pdir.clone());
    let p = pdir.to_str().expect("utf-8 path");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--ns", "pid,bogus", "--", "true"], "unknown namespace type \"bogus\""),
        (vec!["--uid-map", "0:1000", "--gid-map", "0:1000:1", "--", "true"], "--uid-map \"0:1000\""),
        (vec!["--uid-map", "0:100000:10", "--", "true"], "--gid-map"),
        (vec!["--ns", "pid", "--map-root", "--", "true"], "user namespace"),
        (vec!["--ns", "pid", "--hostname", "x", "--", "true"], "uts"),
        (vec!["--memory", "lots", "--", "true"], "--memory"),
        (vec!["--"], "no command given"),
        (vec![], "no command given"),
        (vec!["--persist", p, "--", "/nonexistent/command"], "/nonexistent/command"),
        (vec!["--", "/nonexistent/command"], "/nonexistent/command"),
    ];
    for (i, (args, needle)) in cases.iter().enumerate() {
        let id = common::unique(&format!("bad{i}"));
        let mut full = vec!["--id", id.as_str()];
        full.extend(args.iter().copied());
        let out = spawn(&k, &full);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: want one line, got {err:?}");
        assert!(err.starts_with("karton: ") && err.contains(needle), "{args:?}: {err:?}");
        let left: Vec<_> = std::fs::read_dir(k.root.path())
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{args:?}: state left: {left:?}");
        assert!(
            common::cgroup_dirs_named(&id).is_empty(),
            "{args:?}: cgroups left: {:?}",
            common::cgroup_dirs_named(&id)
        );
        assert!(mounts_with(&id).is_empty() && mounts_with(p).is_empty(), "{args:?}: mounts left");
        assert!(
            !std::env::temp_dir().join(format!("karton-{id}")).exists(),
            "{args:?}: rootfs skeleton left"
        );
        assert!(!pdir.exists(), "{args:?}: --persist dir left");
    }
}

#[test]
fn unprivileged_with_user_namespace() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].into_iter().find(|p| Path::new(p).exists());
    let Some(setpriv) = setpriv else {
        return karton_testkit::skip("setpriv (util-linux) is not installed");
    };
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap_or_default();
    if max.trim() == "0" {
        return karton_testkit::skip(
            "user namespaces are disabled on this host (user.max_user_namespaces = 0)",
        );
    }
    let base = TempDir::new("karton-spawn-unpriv");
    let _ = std::os::unix::fs::chown(base.path(), Some(65534), Some(65534));
    let root = base.path().join("state");
    let k = Karton::new();
    let run = || {
        let mut c = Command::new(setpriv);
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups", KARTON, "--root"])
            .arg(&root)
            .args(["spawn", "--hostname", "nobody-box", "--", "sh", "-c"])
            .arg(format!("id -u; hostname; cat /proc/self/uid_map; {}", ns_script()));
        c.current_dir(base.path());
        k.run_cmd(&mut c)
    };
    let mut out = run();
    // Known runtime race (reported): the init makes itself non-dumpable before the
    // runtime writes its uid_map, so an unprivileged runtime may get EACCES there.
    for _ in 0..8 {
        if out.status.success() || !text(&out.stderr).contains("writing uid_map") {
            break;
        }
        eprintln!("NOTE: retrying after the known uid_map race of the runtime: {}", text(&out.stderr).trim());
        out = run();
    }
    let so = ok(&out);
    let mut lines = so.lines();
    assert_eq!(lines.next(), Some("0"), "{so}");
    assert_eq!(lines.next(), Some("nobody-box"), "{so}");
    assert_eq!(
        lines.next().map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["0", "65534", "1"]),
        "{so}"
    );
    let inside = parse_ns(&lines.collect::<Vec<_>>().join("\n"));
    let mut got = differing(&inside);
    got.sort();
    assert_eq!(got, ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"], "{so}");
    assert!(
        std::fs::read_dir(&root).map(|r| r.count()).unwrap_or(0) == 0,
        "state left under {}",
        root.display()
    );
}

#[test]
fn second_term_kills_a_pid_namespace_init() {
    if !root_or_skip() {
        return;
    }
    let _serial = serial();
    let k = Karton::new();
    let out_dir = TempDir::new("karton-spawn-sig");
    let file = |n: &str| std::fs::File::create(out_dir.path().join(n)).expect("output file");
    // `sleep` as pid 1 of its pid namespace ignores SIGTERM: the first is passed on (and
    // ignored), the second becomes SIGKILL.
    let id = common::unique("sig");
    // Kills karton (and with it, via the Karton guard, the sandbox) if the test fails.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(
        k.cmd()
            .args(["spawn", "--id", &id, "--", "sleep", "30"])
            .stdin(std::process::Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .expect("start karton"),
    );
    let pid = nix::unistd::Pid::from_raw(child.0.id() as i32);
    // Signals before the sandbox runs would end karton itself: wait for "running".
    let wait_from = std::time::Instant::now();
    loop {
        let out = k.run(&["state", &id]);
        if out.status.success() && text(&out.stdout).contains("\"running\"") {
            break;
        }
        assert!(wait_from.elapsed() < std::time::Duration::from_secs(20), "the sandbox did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let started = std::time::Instant::now();
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        child.0.try_wait().ok().flatten().is_none(),
        "the first SIGTERM should be passed on and ignored by pid 1"
    );
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let status = loop {
        if let Ok(Some(st)) = child.0.try_wait() {
            break st;
        }
        if started.elapsed() > std::time::Duration::from_secs(20) {
            panic!("karton spawn did not end after two SIGTERMs");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(137),
        "stderr: {}",
        std::fs::read_to_string(out_dir.path().join("stderr")).unwrap_or_default()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(std::fs::read_dir(k.root.path()).map(|r| r.count()).unwrap_or(0) == 0, "state left");
}
