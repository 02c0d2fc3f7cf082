//! The container start path under configurations others write (issue #12, #13): the
//! seccomp filter last, sysctls under a read-only /proc/sys and in joined namespaces,
//! joined and absent mount namespaces, the seccomp agent during create, the state every
//! hook receives, and `--preserve-fds` handing over exactly the caller's descriptors.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// A process that holds a new namespace of `kind` (unshare flag) until dropped.
struct Holder(Child);

impl Holder {
    fn new(flag: &str) -> Holder {
        // Through holder_command: no inherited descriptor (a build lock, say) outlives us.
        let child = holder_command(&[flag]).spawn().expect("unshare");
        // Wait until the namespace exists (the child has exec'd sleep).
        let deadline = Instant::now() + Duration::from_secs(5);
        let me = std::fs::read_link("/proc/self/exe").unwrap();
        while std::fs::read_link(format!("/proc/{}/exe", child.id()))
            .is_ok_and(|e| e == me || !e.ends_with("sleep"))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        Holder(child)
    }
    fn ns(&self, kind: &str) -> String {
        format!("/proc/{}/ns/{kind}", self.0.id())
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Replaces the config's `typ` namespace entry with one that joins `path`.
fn join_by_path(b: &mut Bundle, typ: &str, path: impl serde::Serialize) {
    let nss: Vec<Value> = b.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| if n["type"] == typ { json!({"type": typ, "path": path}) } else { n.clone() })
        .collect();
    b.config["linux"]["namespaces"] = json!(nss);
}

/// An allow-list of classic syscalls: no openat2, close_range, mount API, clone3, pidfds,
/// socket sends: what a profile recorded from an application's own calls looks like.
fn classic_allow_list(extra_denied: &[&str]) -> Value {
    let names = [
        "read",
        "write",
        "open",
        "openat",
        "close",
        "stat",
        "fstat",
        "lstat",
        "newfstatat",
        "statx",
        "poll",
        "lseek",
        "mmap",
        "mprotect",
        "munmap",
        "brk",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "ioctl",
        "pread64",
        "pwrite64",
        "readv",
        "writev",
        "access",
        "pipe",
        "pipe2",
        "select",
        "sched_yield",
        "mremap",
        "madvise",
        "dup",
        "dup2",
        "dup3",
        "nanosleep",
        "getpid",
        "clone",
        "fork",
        "vfork",
        "execve",
        "exit",
        "wait4",
        "kill",
        "uname",
        "fcntl",
        "getdents64",
        "getcwd",
        "chdir",
        "fchdir",
        "mkdir",
        "rmdir",
        "unlink",
        "readlink",
        "umask",
        "gettimeofday",
        "getrlimit",
        "getuid",
        "getgid",
        "geteuid",
        "getegid",
        "setpgid",
        "getppid",
        "getpgrp",
        "setsid",
        "getgroups",
        "setgroups",
        "setresuid",
        "setresgid",
        "getresuid",
        "getresgid",
        "capget",
        "capset",
        "sigaltstack",
        "arch_prctl",
        "set_tid_address",
        "exit_group",
        "clock_gettime",
        "futex",
        "set_robust_list",
        "rseq",
        "prlimit64",
        "getrandom",
        "tgkill",
        "faccessat",
        "faccessat2",
    ];
    let allowed: Vec<&str> = names.iter().copied().filter(|n| !extra_denied.contains(n)).collect();
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]
    })
}

#[test]
fn allow_list_seccomp_without_no_new_privileges_runs_the_container() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["args"] = json!(["echo", "hi"]);
    b.config["process"]["noNewPrivileges"] = json!(false);
    b.config["linux"]["seccomp"] = classic_allow_list(&[]);
    assert_eq!(k.stdout_of(&b).trim(), "hi");
    // The same with noNewPrivileges: only execve runs after the filter.
    b.config["process"]["noNewPrivileges"] = json!(true);
    assert_eq!(k.stdout_of(&b).trim(), "hi");
}

#[test]
fn failure_under_a_strict_filter_reports_its_reason() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["args"] = json!(["echo", "hi"]);
    b.config["process"]["noNewPrivileges"] = json!(false);
    // Without capset the container's capabilities cannot be lowered after the filter.
    b.config["linux"]["seccomp"] = classic_allow_list(&["capset"]);
    let (code, _out, err) = k.run_bundle(&b);
    assert_eq!(code, 126, "{err}");
    assert!(err.contains("capset: Operation not permitted"), "{err}");
    assert!(err.contains("seccomp"), "{err}");
    // Without execve: the real reason, not "exited during setup".
    b.config["process"]["noNewPrivileges"] = json!(true);
    b.config["linux"]["seccomp"] = classic_allow_list(&["execve"]);
    let (code, _out, err) = k.run_bundle(&b);
    assert_eq!(code, 126, "{err}");
    assert!(err.contains("execve: Operation not permitted"), "{err}");
}

#[test]
fn sysctls_are_written_although_proc_sys_is_read_only() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let ro = b.config["linux"]["readonlyPaths"].as_array().unwrap().clone();
    assert!(ro.contains(&json!("/proc/sys")), "the engines' default: /proc/sys read-only");
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"});
    b.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shm_rmid_forced; echo x > /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo ro");
    assert_eq!(k.stdout_of(&b).split_whitespace().collect::<Vec<_>>(), ["1", "1", "ro"]);
}

#[test]
fn network_sysctl_in_a_joined_network_namespace() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let holder = Holder::new("--net");
    let mut b = Bundle::new();
    join_by_path(&mut b, "network", holder.ns("net"));
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ping_group_range": "0 2147483647"});
    b.sh("cat /proc/sys/net/ipv4/ping_group_range; readlink /proc/self/ns/net");
    let out = k.stdout_of(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["0", "2147483647"], "{out}");
    assert_eq!(
        lines[1],
        std::fs::read_link(holder.ns("net")).unwrap().to_str().unwrap(),
        "the joined namespace"
    );
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap();
    assert_ne!(
        host.split_whitespace().collect::<Vec<_>>(),
        ["0", "2147483647"],
        "the host's value is untouched"
    );

    // The runtime's own network namespace by path: the kernel would change the host's.
    join_by_path(&mut b, "network", format!("/proc/{}/ns/net", std::process::id()));
    let (code, _, err) = k.run_bundle(&b);
    assert_ne!(code, 0);
    assert!(err.contains("linux.sysctl.net.ipv4.ping_group_range") && err.contains("runtime's own"), "{err}");
}

#[test]
fn hostname_in_a_joined_uts_namespace() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let holder = Holder::new("--uts");
    let mut b = Bundle::new();
    join_by_path(&mut b, "uts", holder.ns("uts"));
    b.config["hostname"] = json!("joined-uts");
    b.sh("hostname");
    assert_eq!(k.stdout_of(&b).trim(), "joined-uts");
    let seen =
        Command::new("nsenter").args(["-t", &holder.0.id().to_string(), "-u", "hostname"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&seen.stdout).trim(), "joined-uts", "set in the joined namespace");
}

/// A config that makes no mounts: what a container sharing a mount table may ask for.
fn without_mounts(b: &mut Bundle) {
    b.config["mounts"] = json!([]);
    b.config["root"]["readonly"] = json!(false);
    if let Some(l) = b.config["linux"].as_object_mut() {
        l.remove("maskedPaths");
        l.remove("readonlyPaths");
    }
}

#[test]
fn joined_mount_namespace_runs_the_process_in_it() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut a = Bundle::new();
    a.sh("echo from-a > /tmp/marker; exec sleep 1000");
    a.write();
    let a_id = unique("mnt-a");
    let out = k.run(&["run", "-d", "--bundle", a.path().to_str().unwrap(), &a_id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a_pid = k.state(&a_id)["pid"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a.rootfs().join("bin").exists() || Instant::now() < deadline {
        if std::fs::read_to_string(format!("/proc/{a_pid}/root/tmp/marker")).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // B joins A's mount namespace; A's root is the same rootfs, so nothing changes root.
    let mut b = Bundle::new();
    without_mounts(&mut b);
    b.config["root"]["path"] = json!(a.rootfs());
    join_by_path(&mut b, "mount", format!("/proc/{a_pid}/ns/mnt"));
    b.sh("cat /tmp/marker");
    assert_eq!(k.stdout_of(&b).trim(), "from-a", "B sees A's /tmp");

    // Mounts in a mount table that is not the container's are refused, naming the field.
    let mut c = Bundle::new();
    c.config["linux"]["namespaces"] = b.config["linux"]["namespaces"].clone();
    let (code, _, err) = k.run_bundle(&c);
    assert_ne!(code, 0);
    assert!(err.contains("mounts") && err.contains("joined mount namespace"), "{err}");
}

#[test]
fn no_mount_namespace_shares_the_runtime_mount_table() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    without_mounts(&mut b);
    let nss: Vec<Value> = b.config["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] != "mount")
        .cloned()
        .collect();
    b.config["linux"]["namespaces"] = json!(nss);
    b.sh("exec sleep 1000");
    b.write();
    let id = unique("nomnt");
    let out = k.run(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid = k.state(&id)["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap().to_str().unwrap(), host_ns("mnt"));
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/root")).unwrap(),
        std::fs::canonicalize(b.rootfs()).unwrap()
    );
    assert!(k.run(&["delete", "--force", &id]).status.success());

    // maskedPaths need a mount table of the container's own.
    b.config["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
    let (code, _, err) = k.run_bundle(&b);
    assert_ne!(code, 0);
    assert!(err.contains("linux.maskedPaths") && err.contains("no mount namespace"), "{err}");
}

#[test]
fn seccomp_agent_gets_the_listener_during_create() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let dir = TempDir::new("karton-agent");
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    // The agent blocks in accept/recv, as real agents do, and reports what it got.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = (|| -> Result<(String, bool), String> {
            let (stream, _) = listener.accept().map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 8192];
            let (n, fd) =
                karton_sys::seccomp::recv_fd(stream.as_fd(), &mut buf).map_err(|e| e.to_string())?;
            let mut msg = buf[..n].to_vec();
            let mut stream = stream;
            let _ = stream.read_to_end(&mut msg);
            Ok((String::from_utf8_lossy(&msg).into_owned(), fd.is_some()))
        })();
        let _ = tx.send(r);
    });
    let mut b = Bundle::new();
    b.config["process"]["args"] = json!(["echo", "started"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_NOTIFY"}]
    });
    b.write();
    let id = unique("notify");
    let out = k.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "create: {}", String::from_utf8_lossy(&out.stderr));
    // Before `start`: the agent must have its fd already.
    let got = rx.recv_timeout(Duration::from_secs(10)).expect("the agent received nothing during create");
    let (msg, had_fd) = got.unwrap();
    assert!(had_fd, "the listener fd came with the message");
    let v: Value = serde_json::from_str(&msg).unwrap();
    assert_eq!(v["state"]["id"], json!(id), "{msg}");
    assert_eq!(v["pid"], k.state(&id)["pid"], "{msg}");
    assert!(k.run(&["start", &id]).status.success());
    let _ = k.run(&["delete", "--force", &id]);
}

#[test]
fn hooks_in_the_container_receive_the_full_state() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let out_dir = TempDir::new("karton-hookstate");
    let mut b = Bundle::new();
    b.config["annotations"] = json!({"org.example.key": "value"});
    let cc = out_dir.path().join("createContainer.json");
    b.config["hooks"] = json!({
        // Runs before pivot_root: the host's paths still resolve.
        "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", cc.display())]}],
        // Runs in the container's root.
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/start.json"]}],
        // Writes far more than a pipe holds: must not block create.
        "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x >&2"]}]
    });
    b.sh("cat /tmp/start.json; echo; echo $$");
    b.write();
    let id = unique("hooks");
    let out = k.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&std::fs::read(&cc).unwrap()).unwrap();
    // runtime.md: for hooks in the container namespace, "the pid as seen by the container":
    // 1 in the container's own pid namespace.
    for (field, want) in [("id", json!(id)), ("pid", json!(1)), ("status", json!("creating"))] {
        assert_eq!(created[field], want, "createContainer state: {created}");
    }
    assert_eq!(created["annotations"]["org.example.key"], "value", "{created}");
    assert_eq!(created["bundle"], json!(std::fs::canonicalize(b.path()).unwrap()), "{created}");
    assert!(k.run(&["start", &id]).status.success());
    // The container prints what startContainer got; wait for it to exit.
    let deadline = Instant::now() + Duration::from_secs(10);
    while k.status(&id) != "stopped" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = k.run(&["delete", "--force", &id]);
    // stdout went to the karton create's stdout file... run the same through `run` instead.
    let mut b2 = Bundle::new();
    b2.config["annotations"] = json!({"org.example.key": "value"});
    b2.config["hooks"] =
        json!({"startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/start.json"]}]});
    b2.sh("cat /tmp/start.json");
    let started: Value = serde_json::from_str(k.stdout_of(&b2).trim()).unwrap();
    assert!(started["id"].as_str().is_some_and(|s| s.starts_with("run-")), "{started}");
    assert!(started["pid"].as_i64().is_some_and(|p| p > 0), "{started}");
    assert_eq!(started["annotations"]["org.example.key"], "value", "{started}");
    assert_eq!(started["bundle"], json!(std::fs::canonicalize(b2.path()).unwrap()), "{started}");

    // A failing hook's message keeps the end of what it wrote.
    let mut b3 = Bundle::new();
    b3.config["hooks"] = json!({"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x >&2; echo the-real-reason >&2; exit 3"]}]});
    let (code, _, err) = k.run_bundle(&b3);
    assert_ne!(code, 0);
    assert!(err.contains("the-real-reason"), "{}", &err[err.len().saturating_sub(300)..]);
}

#[test]
fn preserved_fds_are_exactly_the_callers() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let dir = TempDir::new("karton-fds");
    let n = 5;
    let mut b = Bundle::new();
    // Each preserved fd must read back the caller's file; nothing else above 2 is open.
    b.sh(&format!(
        "for i in $(seq 3 {}); do read -r line <&$i; echo \"$i=$line\"; done; ls /proc/self/fd | sort -n | tr '\\n' ' '",
        2 + n
    ));
    b.write();
    let mut files = Vec::new();
    for fd in 3..(3 + n + 2) {
        let p = dir.path().join(format!("f{fd}"));
        std::fs::write(&p, format!("caller-{fd}\n")).unwrap();
        files.push(std::fs::File::open(&p).unwrap());
    }
    let raw: Vec<i32> = files.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    let id = unique("fds");
    let mut cmd = k.cmd();
    cmd.args(["run", "--preserve-fds", &n.to_string(), "--bundle", b.path().to_str().unwrap(), &id]);
    // The caller holds fds 3..3+n and more above the range, which must not reach the
    // container.
    pass_fds(&mut cmd, raw);
    let out = k.run_cmd(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for fd in 3..(3 + n) {
        assert!(stdout.contains(&format!("{fd}=caller-{fd}")), "{stdout}");
    }
    let listed: Vec<i32> =
        stdout.lines().last().unwrap().split_whitespace().filter_map(|s| s.parse().ok()).collect();
    // ls itself opens one directory fd (the lowest free number).
    let expected: Vec<i32> = (0..(3 + n + 1)).collect();
    assert_eq!(listed, expected, "{stdout}");

    // A caller that holds none of those numbers: refused, nothing created.
    let out = k.run(&["run", "--preserve-fds", "5", "--bundle", b.path().to_str().unwrap(), &unique("fds")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--preserve-fds 5") && err.contains("not open in the calling process"), "{err}");
    assert!(std::fs::read_dir(k.root.path()).map(|d| d.count()).unwrap_or(0) == 0, "no state left");
}

/// config-linux.md "Personality", config.md "Scheduler" and "IO Priority": each is applied
/// to the container's process (read back from the kernel inside).
#[test]
fn personality_scheduler_and_io_priority_are_applied() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    // /proc/self/stat: field 19 is nice, 41 the policy (3 = SCHED_BATCH).
    b.sh("uname -m; ionice -p $$; cut -d' ' -f19,41 /proc/$$/stat");
    let out = k.stdout_of(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "i686", "PER_LINUX32: {out}");
    assert!(lines[1].starts_with("idle"), "ioprio: {out}");
    assert_eq!(lines[2], "7 3", "nice and policy: {out}");
}

/// `exec --preserve-fds`: the same rule as for the container's first process.
#[test]
fn exec_preserved_fds_are_exactly_the_callers() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let dir = TempDir::new("karton-execfds");
    let mut b = Bundle::new();
    b.sh("exec sleep 1000");
    b.write();
    let id = unique("execfds");
    let out = k.run(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let n = 3;
    let mut files = Vec::new();
    for fd in 3..(3 + n + 1) {
        let p = dir.path().join(format!("f{fd}"));
        std::fs::write(&p, format!("caller-{fd}\n")).unwrap();
        files.push(std::fs::File::open(&p).unwrap());
    }
    let raw: Vec<i32> = files.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    let mut cmd = k.cmd();
    cmd.args(["exec", "--preserve-fds", &n.to_string(), &id, "sh", "-c"]);
    cmd.arg(
        "for i in 3 4 5; do read -r l <&$i; echo \"$i=$l\"; done; ls /proc/self/fd | sort -n | tr '\\n' ' '",
    );
    // The caller holds fds 3..3+n and more above the range, which must not reach the
    // container.
    pass_fds(&mut cmd, raw);
    let out = k.run_cmd(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for fd in 3..6 {
        assert!(stdout.contains(&format!("{fd}=caller-{fd}")), "{stdout}");
    }
    let listed: Vec<i32> =
        stdout.lines().last().unwrap().split_whitespace().filter_map(|s| s.parse().ok()).collect();
    assert_eq!(listed, (0..7).collect::<Vec<i32>>(), "0-2, the 3 preserved, ls's own: {stdout}");
    let out = k.run(&["exec", "--preserve-fds", "4", &id, "true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not open in the calling process"));
}

/// config-linux.md "Memory policy": the container's process runs with the policy
/// (numa_maps shows it on every mapping of the process).
#[test]
fn memory_policy_is_applied() {
    if !can_run() {
        return;
    }
    if !std::path::Path::new("/proc/self/numa_maps").exists() {
        return karton_testkit::skip("this kernel has no NUMA support (/proc/self/numa_maps is missing)");
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"});
    b.sh("head -1 /proc/self/numa_maps");
    let out = k.stdout_of(&b);
    assert!(out.contains("interleave:0"), "{out}");
}
