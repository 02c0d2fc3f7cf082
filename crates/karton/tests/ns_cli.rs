//! `karton ns` through the built binary: output formats, bad input, containers.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const KARTON: &str = env!("CARGO_BIN_EXE_karton");

/// Records the skip and returns true when not root (the test returns at once).
#[track_caller]
fn skip_unless_root() -> bool {
    if let Some(why) = karton_testkit::needs_root() {
        karton_testkit::skip(why);
        return true;
    }
    false
}

fn karton(args: &[&str]) -> Output {
    Command::new(KARTON).args(args).stdin(Stdio::null()).output().expect("run karton")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A process group killed and reaped on drop.
struct Group(Child);

impl Group {
    fn spawn(argv: &[&str]) -> Group {
        Group(
            Command::new(argv[0])
                .args(&argv[1..])
                .process_group(0)
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn"),
        )
    }
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.pid()),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.0.wait();
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("karton-ns-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `unshare --uts --pid --fork --mount-proc sh -c 'hostname H; exec sleep 30'`: the group
/// and the pid of the sleep (pid 1 inside).
fn target(hostname: &str) -> (Group, i32) {
    let script = format!("hostname {hostname}; exec sleep 30");
    let g = Group::spawn(&[
        "unshare",
        "--uts",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "sh",
        "-c",
        &script,
    ]);
    let pid = wait_for("target sleep", || {
        let kids = std::fs::read_to_string(format!("/proc/{}/task/{}/children", g.pid(), g.pid())).ok()?;
        let c: i32 = kids.split_whitespace().next()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{c}/comm")).ok()?;
        (comm.trim() == "sleep").then_some(c)
    });
    (g, pid)
}

#[test]
fn list_json_has_schema_and_own_namespaces() {
    let out = karton(&["ns", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["schema"], "karton.ns.list/v1");
    let own = std::fs::read_link("/proc/self/ns/net").expect("own net ns");
    let inode: u64 = own.to_str().and_then(karton_ns::NsType::parse_link).map(|(_, i)| i).expect("inode");
    let rows = v["namespaces"].as_array().expect("namespaces array");
    assert!(rows.iter().any(|r| r["type"] == "net" && r["id"]["inode"] == inode));
    // The human table has a header and aligned rows.
    let out = karton(&["ns", "list", "--type", "net"]);
    assert!(out.status.success());
    let t = text(&out.stdout);
    assert!(t.lines().next().is_some_and(|h| h.contains("NS") && h.contains("COMMAND")), "{t}");
    assert!(t.lines().skip(1).all(|l| l.contains(" net ")), "{t}");
}

#[test]
fn enter_sees_hostname_pids_and_propagates_exit() {
    if skip_unless_root() {
        return;
    }
    let (_g, pid) = target("cli-x");
    let p = pid.to_string();
    let out = karton(&["ns", "enter", "--target", &p, "--", "sh", "-c", "hostname; echo $$; exit 5"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    let lines: Vec<&str> = o.lines().collect();
    assert_eq!(lines[0], "cli-x");
    let inner: i32 = lines[1].parse().expect("pid");
    assert!(inner > 1 && inner < 10, "pid inside the target's pid namespace: {inner}");
    // tree and inspect see the same process.
    let out = karton(&["ns", "inspect", &p, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["schema"], "karton.ns.inspect/v1");
    assert_eq!(v["nspid"], serde_json::json!([pid, 1]));
    let out = karton(&["ns", "tree", "--type", "pid", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["schema"], "karton.ns.tree/v1");
    assert!(v["user"].is_null());
    assert!(text(&out.stdout).contains(&format!("\"pid\": {pid}")));
}

#[test]
fn bad_input_gives_one_line_messages() {
    for args in [
        vec!["ns", "inspect", "999999999"],
        vec!["ns", "enter", "--target", "999999999", "--", "true"],
        vec!["ns", "list", "--pid", "999999999"],
    ] {
        let out = karton(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let e = text(&out.stderr);
        assert!(e.contains("999999999") && e.contains("does not exist"), "{args:?}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    }
    let out = karton(&["ns", "list", "--type", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("use one of user, pid"));
    let root = TempDir::new("badroot");
    let r = root.0.to_str().expect("utf-8 path");
    let out = karton(&["--root", r, "ns", "inspect", "nosuchcontainer"]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out.stderr);
    assert!(e.contains("nosuchcontainer") && e.contains("state.json"), "{e}");
    let out = karton(&["ns", "enter", "--target", "1", "--type", "uts", "--", "/nonexistent/cmd"]);
    if out.status.code() != Some(1) || !text(&out.stderr).contains("permission denied") {
        // Where pid 1 is readable the exec fails instead: 127, as a shell says.
        assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    }
}

#[test]
fn unprivileged_list_says_what_it_skipped() {
    if skip_unless_root() {
        return;
    }
    if !Path::new("/usr/bin/setpriv").exists() {
        return karton_testkit::skip("setpriv (util-linux) is not installed");
    }
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", KARTON, "ns", "list"])
        .output()
        .expect("setpriv");
    if !out.status.success() && text(&out.stderr).contains("Permission denied") {
        return karton_testkit::skip(format!("nobody cannot execute {KARTON}"));
    }
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).lines().count() > 1, "still prints what it could read");
    let e = text(&out.stderr);
    assert!(e.contains("skipped") && e.contains("process"), "{e}");
}

#[test]
fn container_id_resolves_through_state_file() {
    if skip_unless_root() {
        return;
    }
    // A state file as the runtime writes it, for a process the test made: exercises the
    // CLI's reading of --root without depending on `karton create`.
    let (_g, pid) = target("cli-state");
    let root = TempDir::new("state");
    std::fs::create_dir_all(root.0.join("fake1")).expect("mkdir");
    let state = serde_json::json!({"ociVersion": "1.2.1", "id": "fake1", "pid": pid, "status": "running",
        "bundle": "/nonexistent", "rootfs": "/nonexistent", "created": "", "owner": "0"});
    std::fs::write(root.0.join("fake1/state.json"), state.to_string()).expect("state");
    let r = root.0.to_str().expect("utf-8 path");

    let out = karton(&["--root", r, "ns", "list", "--container", "fake1", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let types: Vec<&str> =
        v["namespaces"].as_array().expect("rows").iter().filter_map(|r| r["type"].as_str()).collect();
    let mut sorted = types.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["mnt", "pid", "uts"], "only the namespaces not shared with the host");
    let out = karton(&["--root", r, "ns", "enter", "-t", "fake1", "--", "hostname"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "cli-state");
    let out = karton(&["--root", r, "ns", "inspect", "fake1"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(&format!("process {pid}")));
}

/// Runs karton for a lifecycle command whose container process inherits stdio: output
/// goes to a file, not a pipe, or waiting for EOF would wait for the container.
fn karton_detached(args: &[&str], log: &Path) -> (bool, String) {
    let f = std::fs::File::create(log).expect("log file");
    let ok = Command::new(KARTON)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    (ok, std::fs::read_to_string(log).unwrap_or_default())
}

/// Deletes a karton container on drop.
struct Container<'a> {
    root: &'a str,
    id: &'a str,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = Command::new(KARTON)
            .args(["--root", self.root, "delete", "--force", self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn enter_a_karton_container() {
    if skip_unless_root() {
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/mkbundle.sh");
    if !script.exists() {
        return karton_testkit::skip("scripts/mkbundle.sh is missing");
    }
    let dir = TempDir::new("bundle");
    let bundle = dir.0.join("b");
    let mk = Command::new("bash").arg(&script).arg(&bundle).arg(KARTON).output().expect("mkbundle");
    if !mk.status.success() {
        return karton_testkit::skip(format!("cannot build a busybox bundle: {}", text(&mk.stderr).trim()));
    }
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).expect("config")).expect("config JSON");
    cfg["process"]["args"] = serde_json::json!(["sleep", "30"]);
    cfg["hostname"] = serde_json::json!("kns-box");
    std::fs::write(&cfg_path, cfg.to_string()).expect("write config");
    let root = dir.0.join("root");
    let r = root.to_str().expect("utf-8 path");
    let b = bundle.to_str().expect("utf-8 path");
    let id = "kns-enter";
    let _c = Container { root: r, id };
    let log = dir.0.join("karton.log");
    let (ok, err) = karton_detached(&["--root", r, "create", "--bundle", b, id], &log);
    if !ok {
        return karton_testkit::skip(format!("`karton create` does not work yet: {}", err.trim()));
    }
    let (ok, err) = karton_detached(&["--root", r, "start", id], &log);
    if !ok {
        return karton_testkit::skip(format!("`karton start` does not work yet: {}", err.trim()));
    }
    let out =
        karton(&["--root", r, "ns", "enter", "--target", id, "--", "sh", "-c", "hostname; ps -o pid,comm"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let o = text(&out.stdout);
    assert_eq!(o.lines().next(), Some("kns-box"), "{o}");
    assert!(
        o.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "sleep"]),
        "pid 1 is the container's init: {o}"
    );
    let out = karton(&["--root", r, "ns", "list", "--container", id]);
    assert!(out.status.success());
    assert!(text(&out.stdout).lines().skip(1).all(|l| l.contains(id)), "{}", text(&out.stdout));
}
