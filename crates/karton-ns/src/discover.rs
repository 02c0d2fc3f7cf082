//! Discovery: every namespace on the host, found through processes (/proc/*/ns), nsfs
//! bind mounts (/proc/*/mountinfo), open fds (/proc/*/fd) and the kernel's own links
//! (a namespace referenced only as the owner or parent of another).
//!
//! Races are normal: a process may exit between listing and reading. Such a process is
//! skipped whole (its namespaces are counted only from a complete read), never reported
//! half. Permission errors are counted in [`Skipped`] so the caller can say what it
//! could not see.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{NsError, Result};
use crate::handle::{NsHandle, NsId};
use crate::procfs::{self, NsSet};
use crate::NsType;

pub const LIST_SCHEMA: &str = "karton.ns.list/v1";

/// What keeps a namespace alive, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeldBy {
    /// At least one process is a member.
    Processes,
    /// No member process; an nsfs bind mount keeps it.
    BindMount,
    /// No member process and no mount; an open file descriptor keeps it.
    OpenFd,
    /// Only another namespace refers to it (as owning user namespace or parent), or a
    /// holder karton could not see.
    Reference,
}

impl HeldBy {
    pub fn as_str(self) -> &'static str {
        match self {
            HeldBy::Processes => "procs",
            HeldBy::BindMount => "mount",
            HeldBy::OpenFd => "fd",
            HeldBy::Reference => "ref",
        }
    }
}

/// An nsfs bind mount of a namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    /// Mount point, as seen from `pid`'s root.
    pub path: String,
    /// The mount namespace holding the mount.
    pub mnt_ns: NsId,
    /// A process of that mount namespace, through which the path resolves
    /// (`/proc/<pid>/root/<path>`).
    pub pid: i32,
}

/// An open fd on a namespace file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenFd {
    pub pid: i32,
    pub fd: i32,
    pub command: Option<String>,
}

/// One namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub ty: NsType,
    pub id: NsId,
    /// Owning user namespace (NS_GET_USERNS; for a user namespace, its parent).
    /// `None`: outside the caller's view, or the namespace could not be opened.
    pub owner: Option<NsId>,
    /// User namespaces only: uid of the creator (NS_GET_OWNER_UID), as the caller sees it.
    pub owner_uid: Option<u32>,
    /// Pid and user namespaces only: the parent (NS_GET_PARENT). `None` for the root of
    /// the caller's view (the kernel answers EPERM) and for the other kinds.
    pub parent: Option<NsId>,
    /// Pid and user namespaces: depth below the root of the caller's view (root = 0).
    pub level: Option<u32>,
    /// Number of member processes.
    pub nprocs: usize,
    /// Representative process: the lowest member pid.
    pub pid: Option<i32>,
    /// Its real uid and command line.
    pub uid: Option<u32>,
    pub command: Option<String>,
    pub held_by: HeldBy,
    pub bind_mounts: Vec<BindMount>,
    pub open_fds: Vec<OpenFd>,
    /// Labels attached by the caller: ids of the karton containers whose namespace this is.
    pub containers: Vec<String>,
    /// False when the namespace was seen (e.g. in mountinfo) but could not be opened, so
    /// owner and parent are unknown rather than absent.
    pub opened: bool,
}

/// What a scan could not read for lack of privilege, and what vanished under it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Processes whose /proc/PID/ns could not be read (EACCES/EPERM).
    pub processes: usize,
    /// Their pids.
    pub process_pids: Vec<i32>,
    /// Mount namespaces whose mountinfo could not be read.
    pub mountinfo: usize,
    /// Processes whose fd table could not be read.
    pub fd_tables: usize,
    /// Processes that exited (or were zombies) during the scan: not an error.
    pub vanished: usize,
    /// Namespace kinds the kernel lacks.
    pub unsupported_types: Vec<NsType>,
}

impl Skipped {
    pub fn any_permission(&self) -> bool {
        self.processes + self.mountinfo + self.fd_tables > 0
    }
}

/// The result of a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsList {
    pub schema: String,
    /// The host's namespaces: those of pid 1 (as the caller's pid namespace numbers it),
    /// or of kthreadd when pid 1 is unreadable; see [`procfs::host_ns_set`].
    pub host: Option<NsSet>,
    /// The process `host` was read from.
    pub host_pid: Option<i32>,
    /// Processes scanned.
    pub processes: usize,
    pub namespaces: Vec<Namespace>,
    pub skipped: Skipped,
}

/// What to scan beyond processes.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions {
    /// Look for nsfs bind mounts in every mount namespace's mountinfo.
    pub mounts: bool,
    /// Look for namespace fds in every process's fd table.
    pub fds: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions { mounts: true, fds: true }
    }
}

#[derive(Default)]
struct Acc {
    pids: Vec<i32>,
    mounts: Vec<BindMount>,
    fds: Vec<OpenFd>,
    /// Where the namespace can be opened if no member process is left.
    paths: Vec<PathBuf>,
    /// Found only through another namespace's ioctl.
    handle: Option<NsHandle>,
}

/// Scans the host for namespaces.
pub fn list(opts: ScanOptions) -> Result<NsList> {
    let me = std::process::id() as i32;
    let mut skipped = Skipped {
        unsupported_types: NsType::ALL.into_iter().filter(|t| !t.is_supported()).collect(),
        ..Default::default()
    };
    let mut acc: HashMap<(NsType, NsId), Acc> = HashMap::new();
    let mut mnt_rep: BTreeMap<NsId, i32> = BTreeMap::new();
    let pids = procfs::pids()?;
    let mut seen_pids = Vec::with_capacity(pids.len());

    for &pid in &pids {
        match procfs::ns_set(pid) {
            Ok(set) => {
                seen_pids.push(pid);
                for (ty, id) in set {
                    acc.entry((ty, id)).or_default().pids.push(pid);
                    if ty == NsType::Mnt {
                        mnt_rep.entry(id).or_insert(pid);
                    }
                }
            }
            Err(e) if e.is_permission() => {
                skipped.processes += 1;
                skipped.process_pids.push(pid);
            }
            Err(_) => skipped.vanished += 1,
        }
    }

    if opts.mounts {
        for (&mnt, &pid) in &mnt_rep {
            match nsfs_mounts(pid) {
                Ok(mounts) => {
                    for (ty, id, path) in mounts {
                        let via =
                            PathBuf::from(format!("/proc/{pid}/root")).join(path.trim_start_matches('/'));
                        let a = acc.entry((ty, id)).or_default();
                        a.paths.push(via);
                        a.mounts.push(BindMount { path, mnt_ns: mnt, pid });
                    }
                }
                Err(e) if e.is_permission() => skipped.mountinfo += 1,
                // The namespace's last process exited during the scan.
                Err(e) if e.is_gone() => {}
                Err(e) => return Err(e),
            }
        }
    }

    if opts.fds {
        for &pid in &seen_pids {
            // Our own fds are the handles of this scan.
            if pid == me {
                continue;
            }
            match ns_fds(pid) {
                Ok(fds) => {
                    for (ty, id, fd) in fds {
                        let a = acc.entry((ty, id)).or_default();
                        a.paths.push(PathBuf::from(format!("/proc/{pid}/fd/{fd}")));
                        a.fds.push(OpenFd { pid, fd, command: procfs::comm(pid) });
                    }
                }
                Err(e) if e.is_permission() => skipped.fd_tables += 1,
                Err(_) => {}
            }
        }
    }

    // Open every namespace once, then follow owner and parent links to namespaces that
    // nothing else showed (their only holders are other namespaces).
    // Handles are dropped as soon as they have answered: a host with thousands of
    // namespaces would otherwise run into the fd limit.
    let mut opened: BTreeSet<(NsType, NsId)> = BTreeSet::new();
    let mut queue: VecDeque<(NsType, NsId)> = acc.keys().copied().collect();
    // Per namespace: owner, parent, owner uid.
    type Links = (Option<NsId>, Option<NsId>, Option<u32>);
    let mut rows: BTreeMap<(NsType, NsId), Links> = BTreeMap::new();
    let mut dropped: BTreeSet<(NsType, NsId)> = BTreeSet::new();
    while let Some(key) = queue.pop_front() {
        if rows.contains_key(&key) || dropped.contains(&key) {
            continue;
        }
        let a = acc.entry(key).or_default();
        let h = match a.handle.take() {
            Some(h) => Some(h),
            None => open_any(key, a),
        };
        let Some(h) = h else {
            if a.mounts.is_empty() && a.fds.is_empty() {
                // Every member exited between listing and opening: the namespace is gone
                // (or going); no half row for it.
                dropped.insert(key);
            } else {
                // Seen in mountinfo or an fd table but not openable (a shadowed mount
                // point, a closed fd): listed with what is known, `opened: false`.
                rows.insert(key, (None, None, None));
            }
            continue;
        };
        let owner = h.owner().ok().flatten();
        let parent = h.parent().ok().flatten();
        let owner_uid = h.owner_uid().ok().flatten();
        rows.insert(key, (owner.as_ref().map(|o| o.id), parent.as_ref().map(|p| p.id), owner_uid));
        for linked in [owner, parent].into_iter().flatten() {
            let k = (linked.ty, linked.id);
            // Keep the handle only for a namespace nothing else showed (or whose members
            // all exited before it could be opened): the others open through their holders,
            // and holding every handle at once could exhaust the fd limit.
            if !rows.contains_key(&k) && (dropped.remove(&k) || !acc.contains_key(&k)) {
                acc.entry(k).or_default().handle = Some(linked);
                queue.push_back(k);
            }
        }
        opened.insert(key);
        drop(h);
    }

    let mut namespaces: Vec<Namespace> = rows
        .into_iter()
        .map(|((ty, id), (owner, parent, owner_uid))| {
            let mut a = acc.remove(&(ty, id)).unwrap_or_default();
            a.pids.sort_unstable();
            // The lowest member that is still there to name.
            let rep = a.pids.iter().find_map(|&p| procfs::command(p).map(|c| (p, c)));
            let (pid, command) = match rep {
                Some((p, c)) => (Some(p), Some(c)),
                None => (a.pids.first().copied(), None),
            };
            let held_by = if !a.pids.is_empty() {
                HeldBy::Processes
            } else if !a.mounts.is_empty() {
                HeldBy::BindMount
            } else if !a.fds.is_empty() {
                HeldBy::OpenFd
            } else {
                HeldBy::Reference
            };
            Namespace {
                ty,
                id,
                owner,
                owner_uid,
                parent,
                level: None,
                nprocs: a.pids.len(),
                pid,
                uid: pid.and_then(procfs::uid),
                command,
                held_by,
                bind_mounts: a.mounts,
                open_fds: a.fds,
                containers: Vec::new(),
                opened: opened.contains(&(ty, id)),
            }
        })
        .collect();
    set_levels(&mut namespaces);

    let host = procfs::host_ns_set();
    Ok(NsList {
        schema: LIST_SCHEMA.to_string(),
        host_pid: host.as_ref().map(|h| h.0),
        host: host.map(|h| h.1),
        processes: seen_pids.len(),
        namespaces,
        skipped,
    })
}

/// Opens a namespace through any of its holders, checking that what opened is the
/// namespace expected (a pid may have been reused since it was listed).
fn open_any(key: (NsType, NsId), a: &Acc) -> Option<NsHandle> {
    let mut pids = a.pids.clone();
    pids.sort_unstable();
    let from_pids = pids.into_iter().map(|p| key.0.proc_path(p));
    for path in from_pids.chain(a.paths.iter().cloned()) {
        if let Ok(h) = NsHandle::open(&path) {
            if (h.ty, h.id) == key {
                return Some(h);
            }
        }
    }
    None
}

/// Depth of each pid and user namespace below the root of the visible tree.
fn set_levels(v: &mut [Namespace]) {
    let parents: HashMap<(NsType, NsId), Option<NsId>> = v.iter().map(|n| ((n.ty, n.id), n.parent)).collect();
    for n in v.iter_mut().filter(|n| n.ty.is_hierarchical()) {
        let mut level = 0u32;
        let mut cur = n.parent;
        while let Some(p) = cur {
            level += 1;
            cur = parents.get(&(n.ty, p)).copied().flatten();
            if level > 64 {
                break;
            }
        }
        n.level = Some(level);
    }
}

/// nsfs mounts in the mount namespace of `pid`: (type, id, mount point).
pub fn nsfs_mounts(pid: i32) -> Result<Vec<(NsType, NsId, String)>> {
    let path = PathBuf::from(format!("/proc/{pid}/mountinfo"));
    let text = std::fs::read_to_string(&path).map_err(|e| match e.raw_os_error() {
        // A zombie has no mount namespace left: the kernel answers EINVAL.
        Some(libc::EINVAL) => NsError::Vanished { pid },
        _ => NsError::from_proc_io(pid, &path, e),
    })?;
    parse_nsfs_mounts_from(&path, &text)
}

/// Picks the nsfs lines of a mountinfo text; for nsfs the mount's root is `type:[inode]`.
pub fn parse_nsfs_mounts(text: &str) -> Result<Vec<(NsType, NsId, String)>> {
    parse_nsfs_mounts_from(std::path::Path::new("mountinfo"), text)
}

fn parse_nsfs_mounts_from(path: &std::path::Path, text: &str) -> Result<Vec<(NsType, NsId, String)>> {
    use karton_sys::mountinfo::{parse_from, MountInfoError};
    let mounts = parse_from(path, text).map_err(|e| match e {
        MountInfoError::Parse { path, text, reason, .. } => {
            NsError::Parse { path, line: text, reason: reason.to_string() }
        }
        MountInfoError::Read { path, source } => NsError::Io { path, error: source },
    })?;
    Ok(mounts
        .into_iter()
        .filter(|m| m.fstype == "nsfs")
        .filter_map(|m| {
            let dev = nix::sys::stat::makedev(m.major.into(), m.minor.into());
            let (ty, inode) = NsType::parse_link(m.root.to_str()?)?;
            Some((ty, NsId { dev, inode }, m.mount_point.to_string_lossy().into_owned()))
        })
        .collect())
}

/// Namespace fds open in `pid`: (type, id, fd number).
pub fn ns_fds(pid: i32) -> Result<Vec<(NsType, NsId, i32)>> {
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let entries = std::fs::read_dir(&dir).map_err(|e| NsError::from_proc_io(pid, &dir, e))?;
    let mut out = Vec::new();
    for e in entries.filter_map(|e| e.ok()) {
        let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        // The link text says whether this is a namespace before we stat anything.
        let Ok(target) = std::fs::read_link(e.path()) else { continue };
        let Some((ty, inode)) = target.to_str().and_then(NsType::parse_link) else { continue };
        match NsId::of_path(&e.path()) {
            Ok(id) if id.inode == inode => out.push((ty, id, fd)),
            _ => {}
        }
    }
    Ok(out)
}

impl NsList {
    /// Keeps the namespaces matching all given filters.
    pub fn filter(&mut self, ty: Option<NsType>, of_pid: Option<&NsSet>, container: Option<&str>) {
        self.namespaces.retain(|n| {
            (ty.is_none() || ty == Some(n.ty))
                && !matches!(of_pid, Some(set) if set.get(&n.ty) != Some(&n.id))
                && !matches!(container, Some(c) if !n.containers.iter().any(|x| x == c))
        });
    }

    /// Labels namespaces with the containers whose init process is in them. A namespace
    /// shared with the host (pid 1) is not the container's and stays unlabelled.
    pub fn label_containers<'a>(&mut self, inits: impl IntoIterator<Item = (&'a str, i32)>) {
        for (label, pid) in inits {
            let Ok(set) = procfs::ns_set(pid) else { continue };
            for n in self.namespaces.iter_mut() {
                let host_has = self.host.as_ref().and_then(|h| h.get(&n.ty)) == Some(&n.id);
                if !host_has && set.get(&n.ty) == Some(&n.id) && !n.containers.iter().any(|c| c == label) {
                    n.containers.push(label.to_string());
                }
            }
        }
    }

    pub fn get(&self, ty: NsType, id: NsId) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| n.ty == ty && n.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let text = "42 27 0:4 uts:[4026532177] /tmp/a\\040b/uts rw - nsfs nsfs rw\n\
                    27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n";
        let v = parse_nsfs_mounts(text).expect("parse");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0, NsType::Uts);
        assert_eq!(v[0].1.inode, 4026532177);
        assert_eq!(v[0].1.dev, nix::sys::stat::makedev(0, 4));
        assert_eq!(v[0].2, "/tmp/a b/uts");
        // Text that is not mountinfo is an error, not an empty list.
        assert!(matches!(
            parse_nsfs_mounts("42 27 0:4 uts:[1] /x rw nsfs nsfs rw\n"),
            Err(NsError::Parse { .. })
        ));
    }

    #[test]
    fn own_scan_sees_own_namespaces() {
        let l = list(ScanOptions::default()).expect("test value");
        let me = procfs::ns_set(std::process::id() as i32).expect("test value");
        for (ty, id) in me {
            let n = l.get(ty, id).expect("own namespace listed");
            assert!(n.nprocs >= 1);
            assert_eq!(n.held_by, HeldBy::Processes);
        }
    }
}
