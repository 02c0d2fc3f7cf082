//! Where each of a container's namespaces comes from: a pure function from
//! `linux.namespaces` (and whether time offsets are set) to the steps that make them.
//!
//! The kernel's rules that shape the plan:
//! - one `clone3` can make every new namespace at once, but a namespace made by it is
//!   owned by the new user namespace, if any: namespaces joined from the host must be
//!   entered *before* that clone, so the runtime joins them itself and returns to its own
//!   afterwards (prestart and createRuntime hooks run in the runtime's namespaces);
//! - joining or making a pid or time namespace applies to children only: the runtime's
//!   `pid_for_children` / `time_for_children` place the init, and where the init itself
//!   unshares them it must fork once more;
//! - a joined user namespace must own the namespaces made after it: the init joins it first
//!   and unshares the new ones itself;
//! - a cgroup namespace's root is its creator's cgroup: the init unshares it once it sits
//!   in the container's cgroups (v1 hierarchies are joined after clone3);
//! - time offsets can be written only before any process is in the time namespace: the
//!   init unshares it, writes them and forks into it.

use karton_ns::NsType;

use crate::config::NsRequest;

/// The mount table the container's process gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountMode {
    /// A new mount namespace: the rootfs is built in it and pivot_root'ed into.
    New,
    /// A mount namespace joined by path: karton mounts nothing in it (it is not karton's)
    /// and only changes the process's root to root.path.
    Joined,
    /// No mount namespace in the config: the runtime's own, shared; likewise no mounts.
    Inherited,
}

/// The namespace steps of one container start, in the order they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsPlan {
    /// Joined by the runtime just before clone3 (so the init is made in them), then left
    /// again: net, ipc, uts, cgroup, and pid/time (which apply to the child only).
    pub join_in_parent: Vec<NsType>,
    /// CLONE_NEW* flags of the clone3 that makes the init.
    pub clone_flags: u64,
    /// Joined by the init itself, in this order: user first (it grants the capabilities
    /// for what follows), mount last.
    pub join_in_child: Vec<NsType>,
    /// CLONE_NEW* flags the init unshares after joining.
    pub unshare_in_child: u64,
    /// The init forks once more so that the new pid/time namespace applies.
    pub fork_again: bool,
    /// The runtime writes the id maps (the clone made the user namespace).
    pub maps_from_parent: bool,
    /// The init lives in a user namespace (new or joined).
    pub userns: bool,
    pub mounts: MountMode,
}

impl NsPlan {
    /// Every namespace the init ends up with that is new (made by clone3 or unshare).
    pub fn new_flags(&self) -> u64 {
        self.clone_flags | self.unshare_in_child
    }
}

/// Plans the namespaces of `nss` (already validated: one entry per type).
pub fn plan(nss: &[NsRequest], time_offsets: bool) -> NsPlan {
    let mut new_flags = 0u64;
    for k in NsType::ALL {
        if is_new(nss, k) {
            new_flags |= k.clone_flag();
        }
    }
    let (join_in_parent, join_in_child) = split_joins(nss);
    let user_joined = is_joined(nss, NsType::User);
    let made = split_new(new_flags, user_joined, time_offsets);
    let mounts = if is_new(nss, NsType::Mnt) {
        MountMode::New
    } else if is_joined(nss, NsType::Mnt) {
        MountMode::Joined
    } else {
        MountMode::Inherited
    };
    NsPlan {
        join_in_parent,
        clone_flags: made.clone_flags,
        join_in_child,
        unshare_in_child: made.unshare_in_child,
        fork_again: made.fork_again,
        maps_from_parent: made.clone_flags & NsType::User.clone_flag() != 0,
        userns: is_new(nss, NsType::User) || user_joined,
        mounts,
    }
}

fn is_new(nss: &[NsRequest], k: NsType) -> bool {
    nss.iter().any(|n| n.kind == k && n.path.is_none())
}

fn is_joined(nss: &[NsRequest], k: NsType) -> bool {
    nss.iter().any(|n| n.kind == k && n.path.is_some())
}

/// The namespaces joined by path, split into those the runtime joins before clone3 and
/// those the init joins itself; each in join order.
fn split_joins(nss: &[NsRequest]) -> (Vec<NsType>, Vec<NsType>) {
    // NsType's order is the join order: user first, mount last.
    let mut join_in_parent = Vec::new();
    let mut join_in_child = Vec::new();
    // With no user namespace the init is as privileged as the runtime and joins net, ipc,
    // uts and cgroup itself: a runtime that is root of a user namespace (rootless podman's)
    // could join them but not return to its own, which belong to the initial one.
    let no_userns = !is_new(nss, NsType::User) && !is_joined(nss, NsType::User);
    for k in NsType::ALL {
        if !is_joined(nss, k) {
            continue;
        }
        match k {
            NsType::User | NsType::Mnt => join_in_child.push(k),
            NsType::Net | NsType::Ipc | NsType::Uts | NsType::Cgroup if no_userns => join_in_child.push(k),
            _ => join_in_parent.push(k),
        }
    }
    (join_in_parent, join_in_child)
}

/// How the new namespaces get made: by the clone3, or unshared by the init after it.
#[derive(Debug, PartialEq, Eq)]
struct Made {
    clone_flags: u64,
    unshare_in_child: u64,
    fork_again: bool,
}

fn split_new(new_flags: u64, user_joined: bool, time_offsets: bool) -> Made {
    let pid_or_time = NsType::Pid.clone_flag() | NsType::Time.clone_flag();
    if user_joined {
        // Everything new must be owned by the joined user namespace: made after the join.
        return Made {
            clone_flags: 0,
            unshare_in_child: new_flags,
            fork_again: new_flags & pid_or_time != 0,
        };
    }
    let mut made = Made { clone_flags: new_flags, unshare_in_child: 0, fork_again: false };
    let cgroup = NsType::Cgroup.clone_flag();
    if made.clone_flags & cgroup != 0 {
        made.clone_flags &= !cgroup;
        made.unshare_in_child |= cgroup;
    }
    if time_offsets && new_flags & NsType::Time.clone_flag() != 0 {
        // The pid namespace moves along, so that the forked process is its pid 1.
        let moved = made.clone_flags & pid_or_time;
        made.clone_flags &= !moved;
        made.unshare_in_child |= moved;
        made.fork_again = true;
    }
    made
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const PID: u64 = karton_sys::clone::CLONE_NEWPID;
    const TIME: u64 = karton_sys::clone::CLONE_NEWTIME;
    const USER: u64 = karton_sys::clone::CLONE_NEWUSER;
    const CGROUP: u64 = karton_sys::clone::CLONE_NEWCGROUP;
    const MNT: u64 = karton_sys::clone::CLONE_NEWNS;
    const NET: u64 = karton_sys::clone::CLONE_NEWNET;

    fn new(k: NsType) -> NsRequest {
        NsRequest { kind: k, path: None }
    }
    fn joined(k: NsType) -> NsRequest {
        NsRequest { kind: k, path: Some(PathBuf::from(format!("/proc/1/ns/{}", k.proc_name()))) }
    }

    #[test]
    fn each_type_alone_new_is_made_by_clone3_except_cgroup() {
        for k in NsType::ALL {
            let p = plan(&[new(k)], false);
            if k == NsType::Cgroup {
                assert_eq!(p.clone_flags, 0, "{k}");
                assert_eq!(p.unshare_in_child, CGROUP, "{k}");
            } else {
                assert_eq!(p.clone_flags, k.clone_flag(), "{k}");
                assert_eq!(p.unshare_in_child, 0, "{k}");
            }
            assert!(!p.fork_again, "{k}");
            assert!(p.join_in_parent.is_empty() && p.join_in_child.is_empty(), "{k}");
            assert_eq!(p.maps_from_parent, k == NsType::User, "{k}");
            assert_eq!(p.userns, k == NsType::User, "{k}");
            assert_eq!(p.mounts, if k == NsType::Mnt { MountMode::New } else { MountMode::Inherited }, "{k}");
        }
    }

    #[test]
    fn each_type_alone_joined_goes_where_the_kernel_needs_it() {
        for k in NsType::ALL {
            let p = plan(&[joined(k)], false);
            assert_eq!(p.clone_flags, 0, "{k}");
            assert_eq!(p.unshare_in_child, 0, "{k}");
            assert!(!p.fork_again, "{k}: a pid/time namespace joined by the runtime places the init itself");
            match k {
                NsType::User | NsType::Mnt | NsType::Net | NsType::Ipc | NsType::Uts | NsType::Cgroup => {
                    assert_eq!(p.join_in_child, vec![k]);
                    assert!(p.join_in_parent.is_empty());
                }
                _ => {
                    assert_eq!(p.join_in_parent, vec![k]);
                    assert!(p.join_in_child.is_empty());
                }
            }
            assert_eq!(p.userns, k == NsType::User, "{k}");
            assert!(!p.maps_from_parent, "{k}: nobody writes maps of a joined user namespace");
            assert_eq!(
                p.mounts,
                if k == NsType::Mnt { MountMode::Joined } else { MountMode::Inherited },
                "{k}"
            );
        }
    }

    #[test]
    fn absent_namespaces_are_inherited() {
        let p = plan(&[], false);
        assert_eq!(p.new_flags(), 0);
        assert!(p.join_in_parent.is_empty() && p.join_in_child.is_empty());
        assert_eq!(p.mounts, MountMode::Inherited);
        assert!(!p.userns);
    }

    #[test]
    fn all_new_is_one_clone3_with_cgroup_unshared_later() {
        let all: Vec<NsRequest> = NsType::ALL.into_iter().map(new).collect();
        let p = plan(&all, false);
        let every = NsType::ALL.iter().fold(0, |m, k| m | k.clone_flag());
        assert_eq!(p.clone_flags, every & !CGROUP);
        assert_eq!(p.unshare_in_child, CGROUP);
        assert!(!p.fork_again);
        assert!(p.maps_from_parent);
    }

    #[test]
    fn time_offsets_move_time_and_pid_into_the_init_and_fork() {
        let p = plan(&[new(NsType::Time), new(NsType::Pid), new(NsType::Mnt)], true);
        assert_eq!(p.clone_flags, MNT);
        assert_eq!(p.unshare_in_child, TIME | PID);
        assert!(p.fork_again);
        // Without offsets clone3 makes both.
        let p = plan(&[new(NsType::Time), new(NsType::Pid), new(NsType::Mnt)], false);
        assert_eq!(p.clone_flags, MNT | TIME | PID);
        assert!(!p.fork_again);
        // Offsets with a joined pid namespace: only time moves.
        let p = plan(&[new(NsType::Time), joined(NsType::Pid)], true);
        assert_eq!(p.unshare_in_child, TIME);
        assert_eq!(p.join_in_parent, vec![NsType::Pid]);
        assert!(p.fork_again);
    }

    #[test]
    fn joined_user_namespace_owns_everything_new() {
        let p = plan(
            &[
                joined(NsType::User),
                new(NsType::Pid),
                new(NsType::Mnt),
                new(NsType::Net),
                new(NsType::Cgroup),
            ],
            false,
        );
        assert_eq!(p.clone_flags, 0);
        assert_eq!(p.join_in_child, vec![NsType::User]);
        assert_eq!(p.unshare_in_child, PID | MNT | NET | CGROUP);
        assert!(p.fork_again, "a new pid namespace unshared by the init needs a fork");
        assert!(p.userns && !p.maps_from_parent);
        let p = plan(&[joined(NsType::User), new(NsType::Mnt)], false);
        assert!(!p.fork_again);
    }

    #[test]
    fn new_user_namespace_with_joined_host_namespaces_joins_them_first() {
        // podman/CRI: a new user namespace and a network namespace made by the engine.
        let p = plan(&[new(NsType::User), joined(NsType::Net), new(NsType::Mnt), new(NsType::Pid)], false);
        assert_eq!(p.join_in_parent, vec![NsType::Net]);
        assert_eq!(p.clone_flags, USER | MNT | PID);
        assert!(p.maps_from_parent);
    }

    #[test]
    fn join_order_is_user_first_mount_last() {
        let all: Vec<NsRequest> = NsType::ALL.into_iter().rev().map(joined).collect();
        let p = plan(&all, false);
        assert_eq!(p.join_in_child, vec![NsType::User, NsType::Mnt]);
        assert_eq!(
            p.join_in_parent,
            vec![NsType::Pid, NsType::Net, NsType::Ipc, NsType::Uts, NsType::Cgroup, NsType::Time]
        );
    }

    #[test]
    fn without_a_user_namespace_the_init_joins_net_ipc_uts_cgroup_itself() {
        // Rootless podman: karton is root of podman's user namespace and joins the netns
        // podman made there; leaving it again for the host's would need privilege it lacks.
        let p = plan(
            &[new(NsType::Pid), joined(NsType::Net), new(NsType::Ipc), joined(NsType::Uts), new(NsType::Mnt)],
            false,
        );
        assert!(p.join_in_parent.is_empty());
        assert_eq!(p.join_in_child, vec![NsType::Net, NsType::Uts]);
        let all: Vec<NsRequest> =
            NsType::ALL.into_iter().filter(|k| *k != NsType::User).map(joined).collect();
        let p = plan(&all, false);
        assert_eq!(
            p.join_in_parent,
            vec![NsType::Pid, NsType::Time],
            "pid/time apply to children: joined before clone3"
        );
        assert_eq!(p.join_in_child, vec![NsType::Net, NsType::Ipc, NsType::Uts, NsType::Cgroup, NsType::Mnt]);
    }

    #[test]
    fn every_combination_of_new_joined_absent_is_consistent() {
        // 3^8 configurations: each namespace made exactly once, joined exactly once, or
        // neither; fork_again exactly when the init itself unshares pid or time.
        for code in 0..3usize.pow(8) {
            let mut nss = Vec::new();
            let mut c = code;
            for k in NsType::ALL {
                match c % 3 {
                    1 => nss.push(new(k)),
                    2 => nss.push(joined(k)),
                    _ => {}
                }
                c /= 3;
            }
            for offsets in [false, true] {
                let p = plan(&nss, offsets);
                for k in NsType::ALL {
                    let f = k.clone_flag();
                    let made = (p.clone_flags & f != 0) as u8 + (p.unshare_in_child & f != 0) as u8;
                    let joins = p.join_in_parent.contains(&k) as u8 + p.join_in_child.contains(&k) as u8;
                    let req = nss.iter().find(|n| n.kind == k);
                    match req {
                        Some(n) if n.path.is_none() => assert_eq!((made, joins), (1, 0), "{code} {k}"),
                        Some(_) => assert_eq!((made, joins), (0, 1), "{code} {k}"),
                        None => assert_eq!((made, joins), (0, 0), "{code} {k}"),
                    }
                }
                assert_eq!(p.fork_again, p.unshare_in_child & (PID | TIME) != 0, "{code}");
                assert_eq!(p.clone_flags & p.unshare_in_child, 0, "{code}");
            }
        }
    }
    #[test]
    fn split_new_moves_what_clone3_cannot_make() {
        let m = |f, u, t| split_new(f, u, t);
        assert_eq!(
            m(NET | MNT, false, false),
            Made { clone_flags: NET | MNT, unshare_in_child: 0, fork_again: false }
        );
        assert_eq!(
            m(NET | CGROUP, false, false),
            Made { clone_flags: NET, unshare_in_child: CGROUP, fork_again: false }
        );
        assert_eq!(
            m(PID | TIME | NET, false, true),
            Made { clone_flags: NET, unshare_in_child: PID | TIME, fork_again: true }
        );
        assert_eq!(
            m(PID | TIME, false, false),
            Made { clone_flags: PID | TIME, unshare_in_child: 0, fork_again: false }
        );
        assert_eq!(
            m(NET | PID, true, false),
            Made { clone_flags: 0, unshare_in_child: NET | PID, fork_again: true }
        );
        assert_eq!(m(NET, true, false), Made { clone_flags: 0, unshare_in_child: NET, fork_again: false });
    }
}
