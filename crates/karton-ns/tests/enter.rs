//! `enter`: run a command in the namespaces of a process the test made.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::OwnedFd;

use common::*;
use karton_ns::enter::{self, EnterOptions, Exit, JoinMethod};
use karton_ns::{NsError, NsType};

fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
}

fn args(a: &[&str]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

/// Runs a shell snippet in the target's namespaces, returns (exit, stdout).
fn sh_in(pid: i32, mut opts: EnterOptions, script: &str) -> Result<(Exit, String), NsError> {
    let (rd, wr) = pipe();
    opts.stdout = Some(wr);
    let exit = enter::run(pid, opts, &args(&["sh", "-c", script]))?;
    let mut out = String::new();
    std::fs::File::from(rd).read_to_string(&mut out).expect("read output");
    Ok((exit, out))
}

/// `unshare --uts --pid --fork --mount-proc sh -c 'hostname x; sleep 30'`; returns the
/// group and the sh (pid 1 of the new pid namespace).
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
    let sh = wait_for("sleep after hostname", || descendant_named(g.pid(), "sleep"));
    (g, sh)
}

fn check_sees_target(method: JoinMethod) {
    if skip_unless_root_with(&["unshare", "sleep", "sh", "hostname", "ls"]) {
        return;
    }
    let (_g, t) = target("karton-x");
    let opts = EnterOptions { method, ..Default::default() };
    let (exit, out) =
        sh_in(t, opts, "hostname; readlink /proc/self/ns/pid; ls /proc | grep -c '^[0-9][0-9]*$'; echo $$")
            .expect("enter");
    assert_eq!(exit, Exit::Code(0), "output: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first(), Some(&"karton-x"), "hostname of the target: {out}");
    let pidns = std::fs::read_link(format!("/proc/{t}/ns/pid")).expect("target pid ns");
    assert_eq!(lines.get(1).copied(), pidns.to_str(), "joined the target's pid namespace");
    // The target's /proc (mounted by --mount-proc) lists only its own few processes.
    let n: usize = lines.get(2).and_then(|l| l.parse().ok()).expect("process count");
    assert!((2..=6).contains(&n), "processes seen in the target pid ns: {n}");
    let mypid: i32 = lines.get(3).and_then(|l| l.parse().ok()).expect("own pid");
    assert!(mypid > 1 && mypid < 10, "pid inside the target's pid namespace: {mypid}");
}

fn enter_sees_hostname_and_pids_pidfd() {
    check_sees_target(JoinMethod::Pidfd);
}

fn enter_sees_hostname_and_pids_per_type_fallback() {
    check_sees_target(JoinMethod::PerType);
}

fn enter_propagates_exit_code_and_signal() {
    if skip_unless_root_with(&["unshare", "sleep", "sh", "hostname"]) {
        return;
    }
    let (_g, t) = target("karton-y");
    let (exit, _) = sh_in(t, EnterOptions::default(), "exit 7").expect("enter");
    assert_eq!(exit, Exit::Code(7));
    assert_eq!(exit.code(), 7);
    let (exit, _) = sh_in(t, EnterOptions::default(), "kill -TERM $$").expect("enter");
    assert_eq!(exit, Exit::Signal(libc::SIGTERM));
    assert_eq!(exit.code(), 128 + libc::SIGTERM);
    // A command that does not exist: a typed error naming the exec, code 127 in the child.
    let e =
        enter::run(t, EnterOptions::default(), &args(&["/nonexistent/cmd"])).expect_err("no such command");
    assert!(matches!(e, NsError::Enter { errno: nix::errno::Errno::ENOENT, .. }), "{e}");
    assert!(e.to_string().contains("exec"), "{e}");
    assert_eq!(e.exit_code(), 127);
}

fn enter_only_some_types_and_wd() {
    if skip_unless_root_with(&["unshare", "sleep", "sh", "hostname"]) {
        return;
    }
    let (_g, t) = target("karton-z");
    // Only uts: our own pid namespace and cwd stay.
    let opts =
        EnterOptions { types: Some(vec![NsType::Uts]), wd: Some("/proc".into()), ..Default::default() };
    let (exit, out) = sh_in(t, opts, "hostname; readlink /proc/self/ns/pid; pwd").expect("enter");
    assert_eq!(exit, Exit::Code(0));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "karton-z");
    let mine = std::fs::read_link("/proc/self/ns/pid").expect("own pid ns");
    assert_eq!(Some(lines[1]), mine.to_str());
    assert_eq!(lines[2], "/proc");
}

fn enter_user_namespace_sets_credentials() {
    if skip_unless_root_with(&["unshare", "sleep", "sh", "id"]) {
        return;
    }
    // Inside: uid 1234 is our uid 0; uid 0 is not mapped at all.
    let g =
        Group::spawn(&["unshare", "--user", "--map-user=1234", "--map-group=1234", "--uts", "sleep", "60"]);
    let host = ns_id(me(), NsType::User);
    wait_for("sleep in its user namespace", || {
        let u = karton_ns::procfs::ns_id(g.pid(), NsType::User).ok()?;
        (u != host && comm(g.pid()).as_deref() == Some("sleep")).then_some(())
    });
    // Without --preserve-credentials the child must become uid 0 there, which is unmapped.
    let e = sh_in(g.pid(), EnterOptions::default(), "id -u").expect_err("uid 0 unmapped");
    let msg = e.to_string();
    assert!(msg.contains("setgid(0)") || msg.contains("setuid(0)"), "{msg}");
    assert!(msg.contains("--preserve-credentials"), "{msg}");
    // With it, our uid 0 shows as 1234 inside.
    let opts = EnterOptions { preserve_credentials: true, ..Default::default() };
    let (exit, out) = sh_in(g.pid(), opts, "id -u; readlink /proc/self/ns/user").expect("enter");
    assert_eq!(exit, Exit::Code(0));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1234");
    let theirs = std::fs::read_link(format!("/proc/{}/ns/user", g.pid())).expect("user ns link");
    assert_eq!(Some(lines[1]), theirs.to_str());
}

fn enter_missing_pid_fails_cleanly() {
    let e = enter::run(999_999_999, EnterOptions::default(), &args(&["true"])).expect_err("no such pid");
    assert!(matches!(e, NsError::NoSuchProcess { .. }), "{e}");
}

fn enter_a_directory_of_bind_mounted_namespace_files() {
    if skip_unless_root_with(&["unshare", "sleep", "sh", "hostname"]) {
        return;
    }
    // What `karton spawn --persist DIR` leaves behind: namespaces that outlive their
    // process, joined later by file.
    let dir = TempDir::new("persist");
    let mut g = Group::spawn(&["unshare", "--uts", "--ipc", "sh", "-c", "hostname persisted; exec sleep 60"]);
    let host = ns_id(me(), NsType::Uts);
    wait_for("sleep in its namespaces", || {
        let id = karton_ns::procfs::ns_id(g.pid(), NsType::Uts).ok()?;
        (id != host && comm(g.pid()).as_deref() == Some("sleep")).then_some(())
    });
    let ipc = ns_id(g.pid(), NsType::Ipc);
    let _m1 = BindMount::new(&NsType::Uts.proc_path(g.pid()), &dir.0.join("uts"));
    let _m2 = BindMount::new(&NsType::Ipc.proc_path(g.pid()), &dir.0.join("ipc"));
    g.kill();

    let target = enter::Target::Dir(dir.0.clone());
    let plan = enter::plan_target(&target, None).expect("plan");
    assert_eq!(plan.join, vec![NsType::Ipc, NsType::Uts]);
    let (rd, wr) = pipe();
    let opts = EnterOptions { stdout: Some(wr), ..Default::default() };
    let exit = enter::run_plan(&plan, opts, &args(&["sh", "-c", "hostname; readlink /proc/self/ns/ipc"]))
        .expect("enter");
    let mut out = String::new();
    std::fs::File::from(rd).read_to_string(&mut out).expect("read");
    assert_eq!(exit, Exit::Code(0));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "persisted");
    assert_eq!(lines[1], format!("ipc:[{}]", ipc.inode));
    // Asking for a kind the directory lacks names the file.
    let e = enter::plan_target(&target, Some(&[NsType::Net])).expect_err("no net file");
    assert!(e.to_string().contains("/net does not exist"), "{e}");
}

fn time_namespace_offsets_inspected_and_entered() {
    if skip_unless_root_with(&["unshare", "sleep", "cat"]) {
        return;
    }
    if !NsType::Time.is_supported() {
        return karton_testkit::skip("this kernel has no time namespaces");
    }
    let g =
        Group::spawn(&["unshare", "--time", "--boottime", "100000", "--fork", "--kill-child", "sleep", "60"]);
    let leaf = wait_for("sleep in the time namespace", || descendant_named(g.pid(), "sleep"));
    let ins = karton_ns::inspect::inspect(leaf).expect("inspect");
    let offs = ins.time_offsets.expect("offsets readable");
    let boot = offs.iter().find(|o| o.clock == "boottime").expect("boottime line");
    assert_eq!((boot.secs, boot.nanos), (100000, 0));
    let ours: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .expect("own uptime");
    let opts = EnterOptions { types: Some(vec![NsType::Time]), ..Default::default() };
    let (exit, out) = sh_in(leaf, opts, "cat /proc/uptime").expect("enter");
    assert_eq!(exit, Exit::Code(0));
    let theirs: f64 = out.split_whitespace().next().and_then(|n| n.parse().ok()).expect("uptime inside");
    assert!((theirs - ours - 100000.0).abs() < 5.0, "uptime inside {theirs} vs outside {ours}");
}

fn main() {
    karton_testkit::single_thread::run(&[
        ("enter_sees_hostname_and_pids_pidfd", enter_sees_hostname_and_pids_pidfd),
        ("enter_sees_hostname_and_pids_per_type_fallback", enter_sees_hostname_and_pids_per_type_fallback),
        ("enter_propagates_exit_code_and_signal", enter_propagates_exit_code_and_signal),
        ("enter_only_some_types_and_wd", enter_only_some_types_and_wd),
        ("enter_user_namespace_sets_credentials", enter_user_namespace_sets_credentials),
        ("enter_missing_pid_fails_cleanly", enter_missing_pid_fails_cleanly),
        (
            "enter_a_directory_of_bind_mounted_namespace_files",
            enter_a_directory_of_bind_mounted_namespace_files,
        ),
        ("time_namespace_offsets_inspected_and_entered", time_namespace_offsets_inspected_and_entered),
    ]);
}
