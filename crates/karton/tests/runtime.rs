//! The OCI runtime core through the real kernel: what a user checks inside a container.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::*;
use serde_json::{json, Value};

const ALL: [&str; 8] = ["user", "pid", "network", "ipc", "uts", "mount", "cgroup", "time"];

fn proc_name(oci: &str) -> &str {
    match oci {
        "network" => "net",
        "mount" => "mnt",
        o => o,
    }
}

/// For a set of requested namespaces, /proc/self/ns inside differs from the host's
/// exactly for those types.
fn check_ns_set(k: &Karton, types: &[&str]) {
    let mut b = Bundle::new();
    b.namespaces(types);
    b.sh("for n in user pid net ipc uts mnt cgroup time; do echo $n $(readlink /proc/self/ns/$n); done");
    let out = k.stdout_of(&b);
    for line in out.lines() {
        let (kind, inode) = line.split_once(' ').unwrap();
        let requested = types.iter().any(|t| proc_name(t) == kind);
        let host = host_ns(kind);
        if requested {
            assert_ne!(inode, host, "{kind} should be new for {types:?}");
        } else {
            assert_eq!(inode, host, "{kind} should be the host's for {types:?}");
        }
    }
}

#[test]
fn namespaces_differ_exactly_for_requested_types() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    check_ns_set(&k, &ALL);
    check_ns_set(&k, &["mount"]);
    for t in ALL.iter().filter(|t| **t != "mount") {
        check_ns_set(&k, &["mount", t]);
    }
}

#[test]
fn user_namespace_maps_ids() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.namespaces(&["user", "mount", "pid", "ipc", "uts"]);
    b.sh("id; cat /proc/self/uid_map /proc/self/gid_map");
    let out = k.stdout_of(&b);
    assert!(out.contains("uid=0(root) gid=0(root)"), "{out}");
    assert!(
        out.split_whitespace().collect::<Vec<_>>().windows(3).any(|w| w == ["0", "100000", "65536"]),
        "{out}"
    );

    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5]});
    b.sh("id -u; id -g; id -G");
    let out = k.stdout_of(&b);
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), ["1000", "1000", "1000", "5"], "{out}");
}

#[test]
fn capabilities_match_the_config() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    let caps = json!(["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"]);
    b.config["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps, "inheritable": [], "ambient": []});
    b.sh("grep -E '^Cap(Eff|Prm|Bnd|Inh|Amb)' /proc/self/status");
    let out = k.stdout_of(&b);
    let want = format!("{:016x}", (1u64 << 0) | (1 << 5) | (1 << 13));
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert!(out.lines().any(|l| l.starts_with(set) && l.ends_with(&want)), "{set} != {want}: {out}");
    }
    assert!(out.lines().any(|l| l.starts_with("CapInh") && l.ends_with("0000000000000000")), "{out}");

    // A non-root user keeps capabilities only through the ambient set.
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["process"]["capabilities"] = json!({"bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": ["CAP_KILL"]});
    b.sh("grep -E '^Cap(Eff|Amb)' /proc/self/status");
    let out = k.stdout_of(&b);
    let kill = format!("{:016x}", 1u64 << 5);
    assert!(
        out.lines().all(|l| l.ends_with(&kill)),
        "after execve as uid 1000 only the ambient cap remains: {out}"
    );
}

#[test]
fn masked_and_readonly_paths() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["maskedPaths"] = json!(["/proc/timer_list", "/proc/acpi", "/proc/does-not-exist"]);
    b.config["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
    b.sh("echo timer=$(wc -c < /proc/timer_list); echo acpi=$(ls /proc/acpi | wc -l); echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys=writable || echo sys=readonly");
    let out = k.stdout_of(&b);
    assert!(out.contains("timer=0"), "{out}");
    assert!(out.contains("acpi=0"), "{out}");
    assert!(out.contains("sys=readonly"), "{out}");
}

#[test]
fn hostname_and_domainname() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["hostname"] = json!("boxy");
    b.config["domainname"] = json!("example.test");
    b.sh("hostname; cat /proc/sys/kernel/domainname");
    let out = k.stdout_of(&b);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["boxy", "example.test"]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(host.trim(), "boxy", "the host's hostname is untouched");
}

#[test]
fn mounts_and_their_flags() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let src = TempDir::new("karton-test-bindsrc");
    std::fs::create_dir_all(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("file"), "from-host").unwrap();
    let mut b = Bundle::new();
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/data", "type": "bind", "source": src.path(), "options": ["rbind", "ro", "nosuid", "nodev"]}));
    mounts.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["noexec", "nosuid", "size=1m", "mode=700"]}));
    mounts.push(json!({"destination": "/deep/a/b", "type": "tmpfs", "source": "tmpfs", "options": ["rro"]}));
    b.sh("grep -E ' /(data|scratch|deep/a/b) ' /proc/self/mountinfo; cat /data/file; echo; touch /data/x 2>/dev/null && echo data=rw || echo data=ro; stat -c %a /scratch");
    let out = k.stdout_of(&b);
    let line = |p: &str| {
        out.lines()
            .find(|l| l.split(' ').nth(4) == Some(p))
            .unwrap_or_else(|| panic!("no {p} in {out}"))
            .to_string()
    };
    let data = line("/data");
    assert!(data.contains(" ro,nosuid,nodev"), "{data}");
    let scratch = line("/scratch");
    assert!(
        scratch.contains("nosuid") && scratch.contains("noexec") && scratch.contains("size=1024k"),
        "{scratch}"
    );
    assert!(line("/deep/a/b").contains(" ro"), "{out}");
    assert!(out.contains("from-host"), "{out}");
    assert!(out.contains("data=ro"), "{out}");
    assert!(out.trim_end().ends_with("700"), "{out}");
    // Nothing the container mounted is visible on the host.
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host.contains(b.rootfs().to_str().unwrap()), "container mounts leaked to the host");
}

#[test]
fn rlimits_apply() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}, {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]);
    b.sh("ulimit -n; ulimit -Hn; ulimit -c");
    assert_eq!(k.stdout_of(&b).split_whitespace().collect::<Vec<_>>(), ["321", "654", "0"]);
}

#[test]
fn exit_codes_propagate() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.sh("exit 42");
    assert_eq!(k.run_bundle(&b).0, 42);
    // The init of a pid namespace cannot be killed from inside it: use the host's.
    b.namespaces(&["mount"]);
    b.sh("kill -9 $$");
    assert_eq!(k.run_bundle(&b).0, 128 + 9);
    b.config["process"]["args"] = json!(["/no/such/binary"]);
    let (code, _, err) = k.run_bundle(&b);
    assert_ne!(code, 0);
    assert!(err.contains("/no/such/binary") && err.contains("no such executable"), "{err}");
}

#[test]
fn lifecycle_state_transitions() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    // pid 1 of a pid namespace ignores signals it has no handler for.
    b.sh("trap 'exit 0' TERM; sleep 300 & wait");
    b.write();
    let id = unique("life");
    let pidfile = b.path().join("init.pid");
    let bundle = b.path().to_str().unwrap();
    // The ID may come after or before the flags.
    let out = k.run(&["create", &id, "--bundle", bundle, "--pid-file", pidfile.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let st = k.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["ociVersion"], "1.2.1");
    let pid: i64 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert_eq!(st["pid"], pid);
    assert!(!cgroup_dirs_named(&id).is_empty(), "the container has cgroups");

    // start only from created; delete only when stopped.
    assert!(!k.run(&["delete", &id]).status.success());
    assert!(k.run(&["start", &id]).status.success());
    assert_eq!(k.status(&id), "running");
    let again = k.run(&["start", &id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("running"));
    let del = k.run(&["delete", &id]);
    assert!(!del.status.success());
    assert!(String::from_utf8_lossy(&del.stderr).contains("--force"));

    assert!(k.run(&["kill", &id, "SIGTERM"]).status.success());
    for _ in 0..200 {
        if k.status(&id) == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(k.status(&id), "stopped");
    assert!(!k.run(&["kill", &id, "KILL"]).status.success(), "nothing left to signal");
    assert!(k.run(&["delete", &id]).status.success());
    assert!(!k.root.path().join(&id).exists(), "state removed");
    assert!(cgroup_dirs_named(&id).is_empty(), "cgroups removed");
    let gone = k.run(&["state", &id]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("does not exist"));
}

#[test]
fn delete_force_kills_everything() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    // Without a pid namespace the children outlive the init unless the cgroup is killed.
    b.namespaces(&["mount", "ipc", "uts", "network"]);
    b.sh("sleep 300 & sleep 300 & sleep 300");
    b.write();
    let id = unique("force");
    assert!(k.run(&["run", "-d", "--bundle", b.path().to_str().unwrap(), &id]).status.success());
    let procs = cgroup_dirs_named(&id)[0].join("cgroup.procs");
    for _ in 0..100 {
        if std::fs::read_to_string(&procs).unwrap().lines().count() >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let pids: Vec<i32> =
        std::fs::read_to_string(&procs).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert!(pids.len() >= 3, "{pids:?}");
    assert!(k.run(&["kill", "--all", &id, "KILL"]).status.success());
    let out = k.run(&["delete", "--force", &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for p in pids {
        assert!(!karton_runtime::procfs::is_alive(p, 0), "pid {p} survived delete --force");
    }
    assert!(cgroup_dirs_named(&id).is_empty());
}

#[test]
fn hooks_receive_the_state() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let out = TempDir::new("karton-test-hooks");
    let mut b = Bundle::new();
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{name}.json; echo $HOOKENV >> {}/{name}.env", out.path().display(), out.path().display())], "env": ["HOOKENV=yes"], "timeout": 10});
    b.config["hooks"] = json!({
        "prestart": [hook("prestart")],
        "createRuntime": [hook("createRuntime")],
        "poststart": [hook("poststart")],
        "poststop": [hook("poststop")]
    });
    b.config["process"]["args"] = json!(["true"]);
    let id_out = k.stdout_of(&b);
    let _ = id_out;
    for name in ["prestart", "createRuntime", "poststart", "poststop"] {
        let text = std::fs::read_to_string(out.path().join(format!("{name}.json")))
            .unwrap_or_else(|_| panic!("{name} did not run"));
        let st: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(st["ociVersion"], "1.2.1", "{name}: {text}");
        assert_eq!(st["bundle"], b.path().to_str().unwrap(), "{name}");
        assert!(st["pid"].as_i64().unwrap() > 0, "{name}: {text}");
        assert!(st["id"].as_str().unwrap().starts_with("run-"), "{name}");
        let want = match name {
            "prestart" | "createRuntime" => "creating",
            "poststart" => "running",
            _ => "stopped",
        };
        assert_eq!(st["status"], want, "{name}");
        assert_eq!(std::fs::read_to_string(out.path().join(format!("{name}.env"))).unwrap().trim(), "yes");
    }
}

#[test]
fn failing_prestart_hook_aborts_and_cleans_up() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["hooks"] =
        json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}]});
    b.write();
    let id = unique("hookfail");
    let out = k.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("createRuntime hook 0") && err.contains("nope"), "{err}");
    assert!(!k.root.path().join(&id).exists());
    assert!(cgroup_dirs_named(&id).is_empty());
}

#[test]
fn join_namespaces_by_path() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut a = Bundle::new();
    a.config["hostname"] = json!("shared-host");
    a.config["process"]["args"] = json!(["sleep", "300"]);
    a.write();
    let ida = unique("nsa");
    assert!(k.run(&["run", "-d", "--bundle", a.path().to_str().unwrap(), &ida]).status.success());
    let pid = k.state(&ida)["pid"].as_i64().unwrap();

    let mut b = Bundle::new();
    b.config["linux"]["namespaces"] = json!([
        {"type": "mount"}, {"type": "pid"},
        {"type": "uts", "path": format!("/proc/{pid}/ns/uts")},
        {"type": "network", "path": format!("/proc/{pid}/ns/net")},
        {"type": "ipc", "path": format!("/proc/{pid}/ns/ipc")}
    ]);
    b.config.as_object_mut().unwrap().remove("hostname");
    b.sh("hostname; readlink /proc/self/ns/net");
    let out = k.stdout_of(&b);
    let net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(out.lines().collect::<Vec<_>>(), ["shared-host", net.to_str().unwrap()]);

    // A path of the wrong type is refused before anything is created.
    b.config["linux"]["namespaces"] =
        json!([{"type": "mount"}, {"type": "network", "path": format!("/proc/{pid}/ns/uts")}]);
    let (code, _, err) = k.run_bundle(&b);
    assert_ne!(code, 0);
    assert!(err.contains("is a uts namespace, not a network namespace"), "{err}");
}

#[test]
fn time_namespace_offsets() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.namespaces(&["mount", "pid", "time"]);
    b.config["linux"]["timeOffsets"] =
        json!({"monotonic": {"secs": 86400000, "nanosecs": 0}, "boottime": {"secs": 1000000, "nanosecs": 0}});
    b.sh("cut -d. -f1 /proc/uptime");
    let inside: u64 = k.stdout_of(&b).trim().parse().unwrap();
    let host: f64 =
        std::fs::read_to_string("/proc/uptime").unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(inside >= 1_000_000 + host as u64 - 5, "boottime offset applied: {inside} vs host {host}");
    assert!(inside < 1_000_000 + host as u64 + 60);
}

#[test]
fn only_preserved_fds_reach_the_container() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.sh("ls /proc/self/fd | sort -n | tr '\\n' ' '");
    b.write();
    // fd 3 is open in karton (we pass it), fd 4 is another open file.
    let f3 = std::fs::File::open("/etc/hostname").unwrap();
    let f4 = std::fs::File::open("/etc/hostname").unwrap();
    use std::os::fd::AsRawFd;
    let (r3, r4) = (f3.as_raw_fd(), f4.as_raw_fd());
    let run = |preserve: &str| {
        let id = unique("fds");
        let mut c = k.cmd();
        c.args(["run", "--preserve-fds", preserve, "--bundle", b.path().to_str().unwrap(), &id]);
        pass_fds(&mut c, vec![r3, r4]);
        let out = k.run_cmd(&mut c);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect::<Vec<_>>()
    };
    // ls opens one fd of its own for the directory listing (the highest number).
    let none = run("0");
    assert_eq!(&none[..3], ["0", "1", "2"]);
    assert_eq!(none.len(), 4, "{none:?}");
    let one = run("1");
    assert_eq!(&one[..4], ["0", "1", "2", "3"]);
    assert_eq!(one.len(), 5, "{one:?}");
}

#[test]
fn readonly_root_and_no_pivot() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["root"]["readonly"] = json!(true);
    b.config["mounts"].as_array_mut().unwrap().retain(|m| m["destination"] != "/tmp");
    b.sh("touch /newfile 2>/dev/null && echo rw || echo ro; touch /tmp/x 2>/dev/null && echo tmp-rw || echo tmp-ro");
    assert_eq!(k.stdout_of(&b).lines().collect::<Vec<_>>(), ["ro", "tmp-ro"]);
    b.config["root"]["readonly"] = json!(false);
    b.sh("touch /newfile && echo rw");
    b.write();
    let id = unique("nopivot");
    let out = k.run(&["run", "--no-pivot", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "rw");
    assert!(b.rootfs().join("newfile").exists());
}

#[test]
fn console_socket_receives_the_terminal() {
    if !can_run() {
        return;
    }
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let k = Karton::new();
    let dir = TempDir::new("karton-test-console");
    let sock_path = dir.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    let mut b = Bundle::new();
    b.config["process"]["terminal"] = json!(true);
    b.sh("tty; test -t 0 && echo stdin-is-tty");
    b.write();
    let id = unique("tty");
    let out = k.run(&[
        "create",
        "--console-socket",
        sock_path.to_str().unwrap(),
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 256];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    let mut master = None;
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the fd was just received over SCM_RIGHTS and is owned by nobody else.
            master = Some(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        }
    }
    let master = master.expect("pty master received");
    assert!(k.run(&["start", &id]).status.success());
    let mut f = std::fs::File::from(master);
    let mut text = String::new();
    let mut chunk = [0u8; 512];
    // Read until the slave closes (EIO) or the output is complete.
    while !text.contains("stdin-is-tty") {
        match f.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&chunk[..n])),
        }
    }
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("stdin-is-tty"), "{text}");
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let b = Bundle::new();
    let bundle = b.path().to_str().unwrap().to_string();
    let check = |args: &[&str], want: &str| {
        let out = k.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(want), "{args:?}: {err:?} should mention {want:?}");
        assert_eq!(err.trim().lines().count(), 1, "one clear line: {err:?}");
        assert!(
            std::fs::read_dir(k.root.path()).map(|d| d.count()).unwrap_or(0) == 0,
            "{args:?} left state behind"
        );
    };
    check(&["create", "--bundle", "/nonexistent-bundle", "x1"], "not a directory");
    // Malformed config: the file, the field and the line.
    std::fs::write(
        b.path().join("config.json"),
        "{\n  \"ociVersion\": \"1.0.0\",\n  \"process\": {\"args\": 5}\n}",
    )
    .unwrap();
    check(&["create", "--bundle", &bundle, "x2"], "process.args");
    check(&["create", "--bundle", &bundle, "x2"], "line 3");
    let mut cfg = b.config.clone();
    cfg["ociVersion"] = json!("2.0.0");
    std::fs::write(b.path().join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    check(&["create", "--bundle", &bundle, "x3"], r#"ociVersion "2.0.0""#);
    b.write();
    check(&["create", "--bundle", &bundle, ""], "is empty");
    check(&["create", "--bundle", &bundle, "a/b"], "contains '/'");
    check(&["create", "--bundle", &bundle, ".."], "..");
    check(&["create", "--bundle", &bundle, "x\u{1}y"], "which is not allowed: use only letters");
    check(&["create", "--bundle", &bundle, &"x".repeat(256)], "256 bytes long");
    check(&["start", "nosuch"], "does not exist");
    check(&["state", "nosuch"], "does not exist");
    check(&["kill", "nosuch"], "does not exist");
    check(&["delete", "nosuch"], "does not exist");
    check(&["kill", "nosuch", "NOTASIGNAL"], "unknown signal");
    let mut cfg = b.config.clone();
    cfg["linux"]["namespaces"] =
        json!([{"type": "mount"}, {"type": "uts"}, {"type": "network", "path": "/proc/self/ns/uts"}]);
    std::fs::write(b.path().join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    check(&["create", "--bundle", &bundle, "x4"], "not a network namespace");

    // An ID in use.
    b.write();
    let id = unique("dup");
    assert!(k.run(&["create", "--bundle", &bundle, &id]).status.success());
    let out = k.run(&["create", "--bundle", &bundle, &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in use"));
    assert_eq!(k.status(&id), "created", "the first container is untouched");
    assert!(k.run(&["delete", "--force", &id]).status.success());
    assert!(cgroup_dirs_named(&id).is_empty());
}

#[test]
fn json_log_for_engines() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let dir = TempDir::new("karton-test-log");
    let log = dir.path().join("log.json");
    let out = k.run(&["--log", log.to_str().unwrap(), "--log-format", "json", "start", "nosuch"]);
    assert!(!out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert!(line["msg"].as_str().unwrap().contains("does not exist"));
    assert!(line["time"].as_str().unwrap().ends_with('Z'));
    // Without a system bus (no systemd here) the systemd driver says where it looked.
    if !std::path::Path::new("/run/dbus/system_bus_socket").exists() {
        let b = Bundle::new();
        b.write();
        let id = unique("sysd");
        let sys = k.run(&["--systemd-cgroup", "run", "--bundle", b.path().to_str().unwrap(), &id]);
        let err = String::from_utf8_lossy(&sys.stderr);
        assert!(!sys.status.success());
        assert!(
            err.contains("/run/dbus/system_bus_socket") && err.contains("drop --systemd-cgroup"),
            "{err}"
        );
        assert!(!k.root.path().join(&id).exists(), "state left behind: {err}");
    }
}

#[test]
fn concurrent_creates_of_one_id_serialize() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let b = Bundle::new();
    b.write();
    let id = unique("race");
    let bundle = b.path().to_str().unwrap().to_string();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let mut c = k.cmd();
            c.args(["create", "--bundle", &bundle, &id])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            std::thread::spawn(move || c.status().unwrap().success())
        })
        .collect();
    let wins = handles.into_iter().map(|h| h.join().unwrap()).filter(|ok| *ok).count();
    assert_eq!(wins, 1, "exactly one create of {id} succeeds");
    assert_eq!(k.status(&id), "created");
}

#[test]
fn spec_features_and_version() {
    let k = Karton::new();
    let dir = TempDir::new("karton-test-spec");
    let out = k.run(&["spec", "--bundle", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["root"]["path"], "rootfs");
    assert!(!k.run(&["spec", "--bundle", dir.path().to_str().unwrap()]).status.success(), "no overwrite");
    let f: serde_json::Value = serde_json::from_slice(&k.run(&["features"]).stdout).unwrap();
    let nss: Vec<&str> =
        f["linux"]["namespaces"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(nss.contains(&"time") && nss.len() == 8);
    assert!(String::from_utf8_lossy(&k.run(&["--version"]).stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn cgroup_namespace_and_placement() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["linux"]["cgroupsPath"] = json!(format!("/karton-test/{}", unique("cg")));
    b.sh("cat /proc/self/cgroup");
    let out = k.stdout_of(&b);
    // In its own cgroup namespace the container sees itself at the root of every hierarchy.
    for line in out.lines() {
        assert!(line.ends_with(":/"), "{line}");
    }
    assert!(
        !std::path::Path::new("/sys/fs/cgroup/memory/karton-test").exists(),
        "parents karton made are removed"
    );
}

#[test]
fn cwd_env_and_umask() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["cwd"] = json!("/var/work");
    b.config["process"]["env"] = json!(["PATH=/bin", "GREETING=hi there"]);
    b.config["process"]["user"] = json!({"uid": 0, "gid": 0, "umask": 63});
    b.config["root"]["readonly"] = json!(false);
    b.sh("pwd; echo $GREETING; echo $HOME; umask");
    assert_eq!(k.stdout_of(&b).lines().collect::<Vec<_>>(), ["/var/work", "hi there", "/root", "0077"]);
}

/// A new network namespace gets its loopback up, as runc and crun do: podman's
/// `--network none` (and any listener on 127.0.0.1) counts on it. Also when the network
/// namespace is made together with a user namespace.
#[test]
fn new_network_namespace_has_loopback_up() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    for nss in [&["mount", "pid", "network"][..], &["user", "mount", "pid", "network"][..]] {
        let mut b = Bundle::new();
        b.namespaces(nss);
        // The kernel gives lo its 127.0.0.1 only once it is up.
        b.sh("ip -o link show lo; ip -o -4 addr show lo");
        let out = k.stdout_of(&b);
        assert!(out.contains(",UP") && out.contains("inet 127.0.0.1/8"), "{nss:?}: lo is not up: {out}");
    }
}

/// Rootless podman calls karton as uid 0 of podman's own user namespace, with a config
/// that has no user namespace, no cgroupsPath and `"resources": {}`: karton keeps its state
/// under $XDG_RUNTIME_DIR (it may not write /run), makes no cgroup, shows the inherited
/// cgroups at /sys/fs/cgroup, binds devices (no mknod) and joins a network namespace of
/// that user namespace from the init (it could not return to the host's from there).
#[test]
fn root_of_a_user_namespace_runs_like_rootless_podman_calls_it() {
    if !can_run() {
        return;
    }
    let xdg = TempDir::new("karton-test-userns-xdg");
    let mut b = Bundle::new();
    b.namespaces(&["pid", "mount", "ipc", "uts", "network"]);
    b.config["linux"]["resources"] = json!({});
    b.config["linux"]["cgroupsPath"] = Value::Null;
    // This test's user namespace maps uid/gid 0 only (podman's maps 65536 ids): no gid=5.
    for m in b.config["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/dev/pts" {
            let opts: Vec<Value> = m["options"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| !o.as_str().unwrap_or("").starts_with("gid="))
                .cloned()
                .collect();
            m["options"] = json!(opts);
        }
    }
    b.sh("id -u; ls /sys/fs/cgroup/cpu/cgroup.procs; head -c 4 /dev/zero | wc -c; grep -c : /proc/net/dev");
    b.write();
    let id = unique("userns-root");
    // The netns joined by path: one made by (and owned by) the same user namespace, as
    // rootless podman's is; a sleeping process holds it.
    let script = format!(
        "unshare --net sleep 30 & p=$!; sleep 0.3; \
         sed -i 's#\"type\": \"network\"#\"type\": \"network\", \"path\": \"/proc/'$p'/ns/net\"#' {cfg}; \
         {karton} run --bundle {bundle} {id}; rc=$?; kill $p; ls {xdg}; exit $rc",
        cfg = b.path().join("config.json").display(),
        karton = KARTON,
        bundle = b.path().display(),
        xdg = xdg.path().display(),
    );
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", &script])
        .env("XDG_RUNTIME_DIR", xdg.path())
        .env("USER", "karton-test")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout={stdout} stderr={}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "0", "{stdout}");
    assert_eq!(lines[1], "/sys/fs/cgroup/cpu/cgroup.procs", "{stdout}");
    assert_eq!(lines[2].trim(), "4", "/dev/zero bound: {stdout}");
    assert_eq!(lines[3], "1", "only lo: the joined network namespace: {stdout}");
    assert_eq!(lines.last().copied(), Some("karton"), "state under XDG_RUNTIME_DIR: {stdout}");
    assert!(!std::path::Path::new("/run/karton").join(&id).exists());
    assert!(cgroup_dirs_named(&id).is_empty(), "no cgroup made");
}
