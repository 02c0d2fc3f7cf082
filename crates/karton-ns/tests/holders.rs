//! Namespaces kept alive by something other than a process: a bind mount, an open fd.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::*;
use karton_ns::{discover, HeldBy, NsType};

/// A process alone in a new uts namespace; returns its group and the namespace.
fn lone_uts() -> (Group, karton_ns::NsId) {
    let g = Group::spawn(&["unshare", "--uts", "sleep", "60"]);
    let host = ns_id(me(), NsType::Uts);
    let id = wait_for("sleep in its own uts namespace", || {
        let id = karton_ns::procfs::ns_id(g.pid(), NsType::Uts).ok()?;
        (id != host && comm(g.pid()).as_deref() == Some("sleep")).then_some(id)
    });
    (g, id)
}

#[test]
fn bind_mount_keeps_namespace_listed() {
    if skip_unless_root_with(&["unshare", "sleep"]) {
        return;
    }
    let dir = TempDir::new("bind");
    let (mut g, id) = lone_uts();
    let target = dir.0.join("uts");
    let _mount = BindMount::new(&NsType::Uts.proc_path(g.pid()), &target);
    g.kill();

    let list = discover::list(Default::default()).expect("list");
    let n = list.get(NsType::Uts, id).expect("namespace held by the bind mount is listed");
    assert_eq!(n.nprocs, 0);
    assert_eq!(n.held_by, HeldBy::BindMount);
    assert!(n.opened, "opened through the mount point");
    assert!(n.bind_mounts.iter().any(|m| std::path::Path::new(&m.path) == target), "{:?}", n.bind_mounts);
    assert_eq!(n.owner, Some(ns_id(me(), NsType::User)));
    let js = serde_json::to_value(&list).expect("serialises");
    assert_eq!(js["schema"], "karton.ns.list/v1");
    assert!(js["namespaces"].as_array().is_some_and(|a| a.iter().any(|r| r["held_by"] == "bind-mount")));
    // _mount unmounts and dir removes the temp directory on drop, also on failure.
}

#[test]
fn open_fd_keeps_namespace_listed() {
    if skip_unless_root_with(&["unshare", "sleep", "sh"]) {
        return;
    }
    let (mut g, id) = lone_uts();
    let script = format!("exec 7</proc/{}/ns/uts; exec sleep 60", g.pid());
    let holder = Group::spawn(&["sh", "-c", &script]);
    wait_for("holder fd 7", || {
        (comm(holder.pid()).as_deref() == Some("sleep")
            && std::fs::read_link(format!("/proc/{}/fd/7", holder.pid())).is_ok())
        .then_some(())
    });
    g.kill();

    let list = discover::list(Default::default()).expect("list");
    let n = list.get(NsType::Uts, id).expect("namespace held by an fd is listed");
    assert_eq!(n.nprocs, 0);
    assert_eq!(n.held_by, HeldBy::OpenFd);
    assert!(n.open_fds.iter().any(|f| f.pid == holder.pid() && f.fd == 7), "{:?}", n.open_fds);
    assert!(n.opened);
}

#[test]
fn containers_label_only_their_own_namespaces() {
    if skip_unless_root_with(&["unshare", "sleep"]) {
        return;
    }
    let (g, id) = lone_uts();
    let mut list = discover::list(Default::default()).expect("list");
    list.label_containers([("c1", g.pid())]);
    let uts = list.get(NsType::Uts, id).expect("uts listed");
    assert_eq!(uts.containers, vec!["c1".to_string()]);
    // Its net namespace is the host's: not the container's.
    let net = list.get(NsType::Net, ns_id(g.pid(), NsType::Net)).expect("net listed");
    assert!(net.containers.is_empty());
    list.filter(None, None, Some("c1"));
    assert_eq!(list.namespaces.len(), 1);
    assert_eq!(list.namespaces[0].id, id);
}

#[test]
fn unprivileged_scan_reports_what_it_skipped() {
    if skip_unless_root_with(&[]) {
        return;
    }
    // Credentials are per thread in the kernel; the raw setresuid of karton-sys changes
    // only this thread, which exits afterwards, so the test process keeps root.
    let r = std::thread::spawn(|| {
        karton_sys::process::setresgid(65534).map_err(|e| e.to_string())?;
        karton_sys::process::setresuid(65534).map_err(|e| e.to_string())?;
        let list = discover::list(Default::default()).map_err(|e| e.to_string())?;
        let e = karton_ns::inspect::inspect(1).expect_err("pid 1 is not readable as nobody");
        Ok::<_, String>((list, e))
    })
    .join()
    .expect("thread");
    let (list, err) = r.expect("unprivileged scan");
    assert!(list.skipped.processes > 0, "{:?}", list.skipped);
    assert!(list.skipped.any_permission());
    assert!(matches!(err, karton_ns::NsError::PermissionDenied { pid: 1, .. }), "{err}");
    assert!(err.to_string().contains("run karton as root"));
}

#[test]
fn missing_pid_is_a_clear_error() {
    let e = karton_ns::inspect::inspect(999_999_999).expect_err("no such pid");
    assert!(matches!(e, karton_ns::NsError::NoSuchProcess { pid: 999_999_999 }));
    let msg = e.to_string();
    assert!(msg.contains("999999999") && msg.contains("does not exist"), "{msg}");
}

#[test]
fn scans_survive_processes_exiting_under_them() {
    if skip_unless_root_with(&["unshare", "sh", "true"]) {
        return;
    }
    // Two loops making and ending uts+ipc namespaces as fast as they can, while we scan.
    let churn: Vec<Group> =
        (0..2).map(|_| Group::spawn(&["sh", "-c", "while :; do unshare --uts --ipc true; done"])).collect();
    std::thread::sleep(std::time::Duration::from_millis(50));
    for _ in 0..20 {
        let list = discover::list(Default::default()).expect("a scan never fails because a process exited");
        for n in &list.namespaces {
            // No half rows: a listed namespace was opened, or is held by a mount or fd.
            assert!(n.opened || !n.bind_mounts.is_empty() || !n.open_fds.is_empty(), "half row: {n:?}");
            if n.held_by == HeldBy::Processes {
                assert!(n.pid.is_some() && n.nprocs > 0, "{n:?}");
            }
            // Only the root of the visible user tree has no owner.
            if n.opened && !(n.ty == NsType::User && n.parent.is_none()) {
                assert!(n.owner.is_some(), "{n:?}");
            }
        }
    }
    drop(churn);
}

#[test]
fn user_namespace_held_only_as_owner_is_listed() {
    if skip_unless_root_with(&["unshare", "sleep"]) {
        return;
    }
    // A uts namespace owned by a fresh user namespace, bind-mounted; once the process is
    // gone, only the uts namespace keeps the user namespace alive.
    let dir = TempDir::new("ref");
    let mut g = Group::spawn(&["unshare", "--user", "--map-root-user", "--uts", "sleep", "60"]);
    let host = ns_id(me(), NsType::User);
    let user = wait_for("sleep in its user namespace", || {
        let u = karton_ns::procfs::ns_id(g.pid(), NsType::User).ok()?;
        (u != host && comm(g.pid()).as_deref() == Some("sleep")).then_some(u)
    });
    let uts = ns_id(g.pid(), NsType::Uts);
    let _m = BindMount::new(&NsType::Uts.proc_path(g.pid()), &dir.0.join("uts"));
    g.kill();

    let list = discover::list(Default::default()).expect("list");
    let u = list.get(NsType::User, user).expect("owner user namespace listed");
    assert_eq!(u.held_by, HeldBy::Reference);
    assert_eq!(u.nprocs, 0);
    assert_eq!(u.parent, Some(host));
    assert_eq!(u.level, Some(1));
    let n = list.get(NsType::Uts, uts).expect("uts listed");
    assert_eq!(n.owner, Some(user));
    assert_eq!(n.held_by, HeldBy::BindMount);
    let t = karton_ns::tree::build(&list, Some(NsType::User));
    let roots = t.user.expect("user tree");
    let r = roots.iter().find(|r| r.ns.id == host).expect("host root");
    let child = r.children.iter().find(|c| c.ns.id == user).expect("ref-only user ns in the tree");
    assert!(child.owned.iter().any(|o| o.id == uts));
}
