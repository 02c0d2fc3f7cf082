//! Nested user namespaces (three deep) with a pid namespace inside: the parent chain,
//! levels, owners and the trees, through the real kernel.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::*;
use karton_ns::{discover, inspect, tree, HeldBy, NsType};

/// unshare(1) three times: U1 ⊃ U2 ⊃ U3, the last with a new pid (and mount) namespace.
/// Returns the process group and the pids of the process in U1, U2, and the leaf.
fn nested() -> (Group, [i32; 3]) {
    let g = Group::spawn(&[
        "unshare",
        "--user",
        "--map-root-user",
        "--fork",
        "--kill-child",
        "unshare",
        "--user",
        "--map-root-user",
        "--fork",
        "--kill-child",
        "unshare",
        "--user",
        "--map-root-user",
        "--pid",
        "--mount",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "sleep",
        "60",
    ]);
    let leaf = wait_for("innermost sleep", || descendant_named(g.pid(), "sleep"));
    let c = chain(g.pid());
    assert_eq!(c.len(), 4, "expected unshare -> unshare -> unshare -> sleep, got {c:?}");
    assert_eq!(c[3], leaf);
    (g, [c[0], c[1], leaf])
}

#[test]
fn user_namespaces_three_deep_report_parent_chain() {
    if skip_unless_root_with(&["unshare", "sleep"]) {
        return;
    }
    let (_g, [p1, p2, leaf]) = nested();
    let u0 = ns_id(me(), NsType::User);
    let u1 = ns_id(p1, NsType::User);
    let u2 = ns_id(p2, NsType::User);
    let u3 = ns_id(leaf, NsType::User);
    let all = [u0, u1, u2, u3];
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b, "each level must be its own user namespace");
        }
    }

    let list = discover::list(Default::default()).expect("list");
    let get = |id| list.get(NsType::User, id).unwrap_or_else(|| panic!("user ns {id} not listed"));
    assert_eq!(get(u3).parent, Some(u2));
    assert_eq!(get(u2).parent, Some(u1));
    assert_eq!(get(u1).parent, Some(u0));
    assert_eq!(get(u0).parent, None, "the initial user namespace is the root of the visible tree");
    assert_eq!(get(u3).level, Some(3));
    assert_eq!(get(u0).level, Some(0));
    // For a user namespace the owner is its parent.
    assert_eq!(get(u3).owner, Some(u2));
    // Each was made by uid 0 of the level above, which maps to host uid 0.
    assert_eq!(get(u1).owner_uid, Some(0));
    assert_eq!(get(u3).owner_uid, Some(0));
    assert_eq!(get(u3).held_by, HeldBy::Processes);

    // The pid namespace inside U3: owned by U3, child of ours, one member (sleep).
    let p = ns_id(leaf, NsType::Pid);
    let mine = ns_id(me(), NsType::Pid);
    let pns = list.get(NsType::Pid, p).expect("inner pid namespace listed");
    assert_eq!(pns.owner, Some(u3));
    assert_eq!(pns.parent, Some(mine));
    assert_eq!(pns.level, Some(1));
    assert_eq!(pns.nprocs, 1);
    assert_eq!(pns.pid, Some(leaf));
    assert!(pns.command.as_deref().unwrap_or("").starts_with("sleep"));

    // The tree: U0 -> U1 -> U2 -> U3, and U3 owns the pid namespace.
    let t = tree::build(&list, None);
    let users = t.user.as_ref().expect("user tree");
    let root = users.iter().find(|n| n.ns.id == u0).expect("initial user ns is a root");
    let n1 = root.children.iter().find(|n| n.ns.id == u1).expect("U1 under U0");
    let n2 = n1.children.iter().find(|n| n.ns.id == u2).expect("U2 under U1");
    let n3 = n2.children.iter().find(|n| n.ns.id == u3).expect("U3 under U2");
    assert!(n3.owned.iter().any(|n| n.ty == NsType::Pid && n.id == p), "pid ns hung under U3");
    let pids = t.pid.as_ref().expect("pid tree");
    let proot = pids.iter().find(|n| n.ns.id == mine).expect("our pid ns is a root");
    assert!(proot.children.iter().any(|n| n.ns.id == p));
    let only_pid = tree::build(&list, Some(NsType::Pid));
    assert!(only_pid.user.is_none() && only_pid.pid.is_some());
    let js = serde_json::to_value(&t).expect("tree serialises");
    assert_eq!(js["schema"], "karton.ns.tree/v1");

    // inspect: the chains and the pid of the leaf in each of its pid namespaces.
    let ins = inspect::inspect(leaf).expect("inspect");
    let chain: Vec<_> = ins.user_chain.iter().map(|a| a.id).collect();
    assert_eq!(chain, vec![u3, u2, u1, u0]);
    let pchain: Vec<_> = ins.pid_chain.iter().map(|a| a.id).collect();
    assert_eq!(pchain, vec![p, mine]);
    assert_eq!(ins.nspid, vec![leaf, 1]);
    let shared = |ty| ins.namespaces.iter().find(|c| c.ty == ty).map(|c| c.shared_with_host);
    assert_eq!(shared(NsType::User), Some(false));
    assert_eq!(shared(NsType::Pid), Some(false));
    assert_eq!(shared(NsType::Mnt), Some(false));
    assert_eq!(shared(NsType::Net), Some(true));
    let uid_map = ins.uid_map.as_ref().expect("uid map readable");
    assert_eq!(uid_map.0.len(), 1);
    assert_eq!((uid_map.0[0].inside, uid_map.0[0].count), (0, 1));
    assert_eq!(ins.setgroups_allowed, Some(false), "unshare -r denies setgroups");
    let js = serde_json::to_value(&ins).expect("inspection serialises");
    assert_eq!(js["schema"], "karton.ns.inspect/v1");
}

#[test]
fn pid_for_children_is_reported() {
    if skip_unless_root_with(&["unshare", "sleep"]) {
        return;
    }
    // unshare --pid --fork: the unshare process itself stays in our pid namespace but its
    // children go to the new one.
    let g = Group::spawn(&["unshare", "--pid", "--fork", "--kill-child", "sleep", "60"]);
    let leaf = wait_for("sleep", || descendant_named(g.pid(), "sleep"));
    let ins = inspect::inspect(g.pid()).expect("inspect unshare");
    let pid = ins.namespaces.iter().find(|c| c.ty == NsType::Pid).expect("pid row");
    assert!(pid.shared_with_host);
    assert_eq!(pid.for_children, Some(ns_id(leaf, NsType::Pid)));
}
