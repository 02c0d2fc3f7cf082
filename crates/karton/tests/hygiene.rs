//! Security hygiene (issue #13): checks that used to pass while the kernel would refuse,
//! and messages that blamed the wrong thing. Each test runs the real `karton` binary and
//! fails if its fix is reverted.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{can_run, cgroup_dirs_named, unique, Bundle, Karton, TempDir};
use serde_json::json;

fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn create(k: &Karton, b: &Bundle, id: &str) -> std::process::Output {
    b.write();
    k.run(&["create", "--bundle", b.path().to_str().unwrap(), id])
}

#[test]
fn seccomp_profile_over_bpf_maxinsns_is_refused_at_create() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    // 700 conditional rules, two argument checks each: ~5,600 BPF instructions, over the
    // kernel's 4,096 but under the 65,535 the old check used (then create and start
    // succeeded and the container died with "seccomp(SET_MODE_FILTER): Invalid argument").
    let rules: Vec<_> = (0..700u64)
        .map(|i| {
            let name = ["write", "read", "openat", "close", "fcntl", "ioctl"][i as usize % 6];
            json!({"names": [name], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 0, "value": 1000 + i, "op": "SCMP_CMP_EQ"},
                            {"index": 1, "value": 0xffff_0000u64 + i, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]})
        })
        .collect();
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules});
    let id = unique("bigseccomp");
    let out = create(&k, &b, &id);
    let e = err(&out);
    assert!(!out.status.success(), "create accepted a filter the kernel refuses: {e}");
    assert!(e.contains("BPF instructions") && e.contains("limit of 4096") && e.contains("shorten it"), "{e}");
    assert!(!k.root.path().join(&id).exists(), "state left behind");
    assert!(cgroup_dirs_named(&id).is_empty(), "cgroups left behind");
}

#[test]
fn relative_hook_path_is_refused_not_run_from_the_callers_cwd() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    // A hook at a relative path that exists in karton's cwd: it used to run.
    let cwd = TempDir::new("karton-hook-cwd");
    let marker = cwd.path().join("ran");
    std::fs::create_dir_all(cwd.path().join("bin")).unwrap();
    std::fs::write(cwd.path().join("bin/hook"), format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(cwd.path().join("bin/hook"), std::fs::Permissions::from_mode(0o755)).unwrap();
    b.config["hooks"] = json!({"createRuntime": [{"path": "/bin/true"}, {"path": "bin/hook"}]});
    b.write();
    let id = unique("relhook");
    let out = k.run_cmd(k.cmd().current_dir(cwd.path()).args([
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]));
    let e = err(&out);
    assert!(!out.status.success(), "{e}");
    assert!(e.contains("hooks.createRuntime[1].path \"bin/hook\" is not absolute"), "{e}");
    assert!(!marker.exists(), "the relative hook ran");
    assert!(!k.root.path().join(&id).exists());
}

#[test]
fn container_ids_outside_runcs_alphabet_or_over_name_max_are_refused() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let b = Bundle::new();
    for bad in ["a b", "$(id)", "*", "a:b", "caf\u{e9}"] {
        let out = create(&k, &b, bad);
        let e = err(&out);
        assert!(
            !out.status.success() && e.contains("which is not allowed: use only letters"),
            "{bad:?}: {e}"
        );
    }
    let out = create(&k, &b, ".");
    let e = err(&out);
    assert!(!out.status.success() && e.contains("is reserved") && !e.contains("contains '..'"), "{e}");
    // 256 bytes: refused by the check, not by the kernel's "File name too long".
    let out = create(&k, &b, &"a".repeat(256));
    let e = err(&out);
    assert!(
        !out.status.success() && e.contains("256 bytes long") && !e.contains("File name too long"),
        "{e}"
    );
    let entries = std::fs::read_dir(k.root.path()).map(|d| d.count()).unwrap_or(0);
    assert_eq!(entries, 0, "nothing may be left under --root");
    // The longest ID and an engine's 64-hex ID work end to end.
    for good in ["b".repeat(255), "0123456789abcdef".repeat(4)] {
        let out = create(&k, &b, &good);
        assert!(out.status.success(), "{}: {}", good.len(), err(&out));
        assert_eq!(k.status(&good), "created");
        let out = k.run(&["delete", "--force", &good]);
        assert!(out.status.success(), "{}", err(&out));
        assert!(cgroup_dirs_named(&good).is_empty());
    }
}

#[test]
fn kill_refuses_real_time_offsets_outside_the_range() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let b = Bundle::new();
    let id = unique("rtsig");
    let out = create(&k, &b, &id);
    assert!(out.status.success(), "{}", err(&out));
    // RTMIN+-5 was SIGRTMIN-5 = 29 (SIGIO), which kills the init by default.
    for sig in ["RTMIN+-5", "RTMIN+-40", "RTMAX-+1", "RTMIN+31"] {
        let out = k.run(&["kill", &id, sig]);
        let e = err(&out);
        assert!(!out.status.success() && e.contains("takes N from 0 to"), "{sig}: {e}");
    }
    assert_eq!(k.status(&id), "created", "a refused signal reached the container");
    let out = k.run(&["kill", &id, "sigkill"]);
    assert!(out.status.success(), "{}", err(&out));
}

#[test]
fn kill_while_creating_says_creating_and_what_to_do() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    // The state a create leaves while its init is being set up: status creating, pid 0.
    let id = unique("creating");
    let dir = k.root.path().join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    let state = json!({"ociVersion": "1.2.1", "id": id, "status": "creating", "pid": 0, "bundle": "/nonexistent",
                       "rootfs": "/nonexistent/rootfs", "created": "2026-12-02T00:00:00Z", "owner": "0"});
    std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
    let out = k.run(&["kill", &id, "KILL"]);
    let e = err(&out);
    assert!(!out.status.success(), "{e}");
    assert!(
        e.contains("is creating") && e.contains("still being set up") && e.contains("delete --force"),
        "{e}"
    );
    assert!(!e.contains("stopped"), "{e}");
    let out = k.run(&["delete", "--force", &id]);
    assert!(out.status.success(), "{}", err(&out));
}

#[test]
fn invalid_utf8_config_is_not_blamed_on_permissions() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let b = Bundle::new();
    b.write();
    let mut text = std::fs::read(b.path().join("config.json")).unwrap();
    text.splice(1..1, [b' ', 0xff, b' ']);
    std::fs::write(b.path().join("config.json"), text).unwrap();
    let out = k.run(&["create", "--bundle", b.path().to_str().unwrap(), &unique("utf8")]);
    let e = err(&out);
    assert!(
        !out.status.success()
            && e.contains("is not valid UTF-8 (byte 2, line 1)")
            && !e.contains("permission"),
        "{e}"
    );
}

#[test]
fn rlimit_soft_above_hard_is_refused_for_what_it_is() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 256}]);
    let id = unique("rlimit");
    let out = create(&k, &b, &id);
    let e = err(&out);
    assert!(!out.status.success() && e.contains("soft limit 512 is above the hard limit 256"), "{e}");
    assert!(!e.contains("CAP_SYS_RESOURCE"), "{e}");
    assert!(!k.root.path().join(&id).exists());
}
