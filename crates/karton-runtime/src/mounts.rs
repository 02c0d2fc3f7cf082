//! Mounts inside the container's new mount namespace.
//!
//! Everything is mounted by file descriptor: a destination is resolved inside the rootfs
//! with openat2(RESOLVE_IN_ROOT), so no symlink in the image can point a mount at the host;
//! bind sources are cloned with open_tree(2), filesystems are made with fsopen/fsmount, and
//! the detached mount is attached with move_mount(2) onto the resolved fd.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use karton_sys::fs::{openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};
use karton_sys::mount as m;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};

use crate::error::{Context, Error, Result};

/// One parsed entry of a mount's `options`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountOpt {
    /// A per-mount attribute (MOUNT_ATTR_*) set or cleared on this mount only.
    Attr { set: u64, clr: u64 },
    /// The atime mode (MOUNT_ATTR__ATIME values); `None` for "nodiratime"-style toggles.
    Atime(u64),
    /// A superblock flag passed to the filesystem ("sync", "dirsync", "lazytime", "mand").
    SbFlag(&'static str),
    /// bind (false) or rbind (true).
    Bind { recursive: bool },
    /// Propagation type, e.g. MS_PRIVATE | MS_REC.
    Propagation(MsFlags),
    /// A recursive attribute (rro, rnosuid, ...), applied with mount_setattr(AT_RECURSIVE).
    RecAttr { set: u64, clr: u64, atime: Option<u64> },
    /// Copy what the destination held into a new tmpfs.
    TmpCopyUp,
    /// Options that mean nothing here and are ignored as mount(8) ignores them.
    Ignore,
    /// Filesystem-specific data ("mode=755", "size=64m", "newinstance").
    Data(String),
}

/// Parses one mount option; `None` for options karton knows but cannot honour.
pub fn parse_option(o: &str) -> Option<MountOpt> {
    use MountOpt::*;
    let attr = |set: u64| Some(Attr { set, clr: 0 });
    let clr = |clr: u64| Some(Attr { set: 0, clr });
    let rec = |set: u64, clr: u64| Some(RecAttr { set, clr, atime: None });
    match o {
        "ro" => attr(m::MOUNT_ATTR_RDONLY),
        "rw" => clr(m::MOUNT_ATTR_RDONLY),
        "nosuid" => attr(m::MOUNT_ATTR_NOSUID),
        "suid" => clr(m::MOUNT_ATTR_NOSUID),
        "nodev" => attr(m::MOUNT_ATTR_NODEV),
        "dev" => clr(m::MOUNT_ATTR_NODEV),
        "noexec" => attr(m::MOUNT_ATTR_NOEXEC),
        "exec" => clr(m::MOUNT_ATTR_NOEXEC),
        "nodiratime" => attr(m::MOUNT_ATTR_NODIRATIME),
        "diratime" => clr(m::MOUNT_ATTR_NODIRATIME),
        "nosymfollow" => attr(m::MOUNT_ATTR_NOSYMFOLLOW),
        "symfollow" => clr(m::MOUNT_ATTR_NOSYMFOLLOW),
        "relatime" | "nostrictatime" | "atime" => Some(Atime(m::MOUNT_ATTR_RELATIME)),
        "noatime" => Some(Atime(m::MOUNT_ATTR_NOATIME)),
        "strictatime" | "norelatime" => Some(Atime(m::MOUNT_ATTR_STRICTATIME)),
        "sync" => Some(SbFlag("sync")),
        "dirsync" => Some(SbFlag("dirsync")),
        "lazytime" => Some(SbFlag("lazytime")),
        "mand" => Some(SbFlag("mand")),
        "async" | "nomand" | "nolazytime" | "loud" | "silent" | "defaults" => Some(Ignore),
        "bind" => Some(Bind { recursive: false }),
        "rbind" => Some(Bind { recursive: true }),
        "private" => Some(Propagation(MsFlags::MS_PRIVATE)),
        "rprivate" => Some(Propagation(MsFlags::MS_PRIVATE | MsFlags::MS_REC)),
        "shared" => Some(Propagation(MsFlags::MS_SHARED)),
        "rshared" => Some(Propagation(MsFlags::MS_SHARED | MsFlags::MS_REC)),
        "slave" => Some(Propagation(MsFlags::MS_SLAVE)),
        "rslave" => Some(Propagation(MsFlags::MS_SLAVE | MsFlags::MS_REC)),
        "unbindable" => Some(Propagation(MsFlags::MS_UNBINDABLE)),
        "runbindable" => Some(Propagation(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC)),
        "rro" => rec(m::MOUNT_ATTR_RDONLY, 0),
        "rrw" => rec(0, m::MOUNT_ATTR_RDONLY),
        "rnosuid" => rec(m::MOUNT_ATTR_NOSUID, 0),
        "rsuid" => rec(0, m::MOUNT_ATTR_NOSUID),
        "rnodev" => rec(m::MOUNT_ATTR_NODEV, 0),
        "rdev" => rec(0, m::MOUNT_ATTR_NODEV),
        "rnoexec" => rec(m::MOUNT_ATTR_NOEXEC, 0),
        "rexec" => rec(0, m::MOUNT_ATTR_NOEXEC),
        "rnodiratime" => rec(m::MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => rec(0, m::MOUNT_ATTR_NODIRATIME),
        "rnosymfollow" => rec(m::MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => rec(0, m::MOUNT_ATTR_NOSYMFOLLOW),
        "rrelatime" | "ratime" | "rnostrictatime" => Some(RecAttr { set: 0, clr: 0, atime: Some(m::MOUNT_ATTR_RELATIME) }),
        "rnoatime" => Some(RecAttr { set: 0, clr: 0, atime: Some(m::MOUNT_ATTR_NOATIME) }),
        "rstrictatime" | "rnorelatime" => Some(RecAttr { set: 0, clr: 0, atime: Some(m::MOUNT_ATTR_STRICTATIME) }),
        "tmpcopyup" => Some(TmpCopyUp),
        // id-mapped mounts are not implemented: refuse rather than mount unmapped.
        "idmap" | "ridmap" | "remount" => None,
        other => Some(Data(other.to_string())),
    }
}

/// The option names `karton features` reports.
pub const KNOWN_OPTIONS: &[&str] = &[
    "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "lazytime", "loud", "mand",
    "noatime", "nodev", "nodiratime", "noexec", "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid",
    "nosymfollow", "private", "ratime", "rbind", "rdev", "rdiratime", "relatime", "rexec", "rnoatime",
    "rnodev", "rnodiratime", "rnoexec", "rnorelatime", "rnostrictatime", "rnosuid", "rnosymfollow", "ro",
    "rprivate", "rrelatime", "rro", "rrw", "rshared", "rslave", "rstrictatime", "rsuid", "rsymfollow",
    "runbindable", "rw", "shared", "silent", "slave", "strictatime", "suid", "symfollow", "sync", "tmpcopyup",
    "unbindable",
];

/// A mount request, with options parsed.
#[derive(Debug, Clone)]
pub struct MountSpec {
    pub destination: PathBuf,
    pub fstype: String,
    pub source: Option<PathBuf>,
    pub options: Vec<MountOpt>,
}

impl MountSpec {
    pub fn from_oci(mnt: &oci_spec::runtime::Mount, bundle: &Path) -> Result<MountSpec> {
        let mut options = Vec::new();
        for o in mnt.options().iter().flatten() {
            options.push(parse_option(o).ok_or_else(|| {
                Error::Unsupported(format!(
                    "mount {}: option {o:?} is not supported by karton: remove it",
                    mnt.destination().display()
                ))
            })?);
        }
        let is_bind = options.iter().any(|o| matches!(o, MountOpt::Bind { .. }));
        let fstype = match mnt.typ().as_deref() {
            Some(t) if !t.is_empty() && t != "none" => t.to_string(),
            _ if is_bind => "bind".to_string(),
            _ => "none".to_string(),
        };
        let source = mnt.source().as_ref().map(|s| if s.is_relative() && is_bind { bundle.join(s) } else { s.clone() });
        Ok(MountSpec { destination: mnt.destination().clone(), fstype, source, options })
    }

    fn bind(&self) -> Option<bool> {
        self.options.iter().find_map(|o| match o {
            MountOpt::Bind { recursive } => Some(*recursive),
            _ => None,
        })
        .or(if self.fstype == "bind" { Some(false) } else { None })
    }

    fn attrs(&self) -> (u64, u64) {
        let (mut set, mut clr) = (0u64, 0u64);
        for o in &self.options {
            match o {
                MountOpt::Attr { set: s, clr: c } => {
                    set = (set | s) & !c;
                    clr = (clr | c) & !s;
                }
                MountOpt::Atime(a) => {
                    set = (set & !m::MOUNT_ATTR__ATIME) | a;
                    clr |= m::MOUNT_ATTR__ATIME;
                }
                _ => {}
            }
        }
        (set, clr)
    }

    fn rec_attr(&self) -> Option<m::MountAttr> {
        let mut a = m::MountAttr::default();
        let mut any = false;
        for o in &self.options {
            if let MountOpt::RecAttr { set, clr, atime } = o {
                any = true;
                a.attr_set = (a.attr_set | set) & !clr;
                a.attr_clr = (a.attr_clr | clr) & !set;
                if let Some(t) = atime {
                    a.attr_set = (a.attr_set & !m::MOUNT_ATTR__ATIME) | t;
                    a.attr_clr |= m::MOUNT_ATTR__ATIME;
                }
            }
        }
        any.then_some(a)
    }

    fn propagation(&self) -> Vec<MsFlags> {
        self.options.iter().filter_map(|o| if let MountOpt::Propagation(p) = o { Some(*p) } else { None }).collect()
    }
}

fn cstr(p: impl AsRef<std::ffi::OsStr>) -> Result<CString> {
    CString::new(p.as_ref().as_bytes()).map_err(|_| Error::Config(format!("path {:?} contains a NUL byte", p.as_ref())))
}

/// The path of `dest` relative to the root, with "." and leading "/" removed.
fn relative(dest: &Path) -> PathBuf {
    dest.components().filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir)).collect()
}

/// Opens `dest` inside `root` as O_PATH, never leaving the root.
pub fn open_in_root(root: BorrowedFd<'_>, dest: &Path) -> Result<OwnedFd> {
    let rel = relative(dest);
    let path = if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel };
    openat2(root, &cstr(&path)?, libc::O_PATH, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        .ctx(|| format!("resolving {} inside the rootfs", dest.display()))
}

/// Resolves `dest` inside `root`, creating what is missing (directories; the last
/// component as an empty file when `file`), and returns an O_PATH fd to it.
pub fn make_target(root: BorrowedFd<'_>, dest: &Path, file: bool) -> Result<OwnedFd> {
    if let Ok(fd) = open_in_root(root, dest) {
        return Ok(fd);
    }
    let rel = relative(dest);
    let comps: Vec<_> = rel.components().collect();
    let mut prefix = PathBuf::new();
    let mut parent = open_in_root(root, Path::new("/"))?;
    for (i, c) in comps.iter().enumerate() {
        prefix.push(c);
        let last = i + 1 == comps.len();
        match open_in_root(root, &prefix) {
            Ok(fd) => parent = fd,
            Err(_) => {
                let name = c.as_os_str();
                if last && file {
                    let f = nix::fcntl::openat(
                        parent.as_fd(),
                        name,
                        OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::from_bits_truncate(0o644),
                    )
                    .ctx(|| format!("creating mount target {} inside the rootfs", dest.display()))?;
                    drop(f);
                } else {
                    match nix::sys::stat::mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                        Err(e) => {
                            return Err(e).ctx(|| format!("creating directory {} inside the rootfs", prefix.display()))
                        }
                    }
                }
                parent = open_in_root(root, &prefix)?;
            }
        }
    }
    Ok(parent)
}

/// Attaches a detached mount onto the object `target`.
pub fn attach(tree: &OwnedFd, target: &OwnedFd, what: &Path) -> Result<()> {
    m::move_mount_fd(tree.as_fd(), target.as_fd()).ctx(|| format!("mounting onto {}", what.display()))
}

/// Clones the mount tree at `source` (host side, before pivot_root) as a detached mount.
pub fn clone_tree(source: &Path, recursive: bool) -> Result<OwnedFd> {
    let mut flags = m::OPEN_TREE_CLONE | m::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= m::AT_RECURSIVE;
    }
    m::open_tree(nix::fcntl::AT_FDCWD, &cstr(source)?, flags).ctx(|| format!("bind mount source {}", source.display()))
}

/// Clones the object behind an fd (e.g. a verified /dev/null) as a detached mount.
pub fn clone_fd(fd: &OwnedFd, what: &Path) -> Result<OwnedFd> {
    m::open_tree(fd.as_fd(), c"", m::OPEN_TREE_CLONE | m::OPEN_TREE_CLOEXEC | m::AT_EMPTY_PATH)
        .ctx(|| format!("cloning {}", what.display()))
}

/// Clones the mount tree at an fd, recursively (for read-only paths).
pub fn clone_fd_recursive(fd: &OwnedFd, what: &Path) -> Result<OwnedFd> {
    m::open_tree(fd.as_fd(), c"", m::OPEN_TREE_CLONE | m::OPEN_TREE_CLOEXEC | m::AT_EMPTY_PATH | m::AT_RECURSIVE)
        .ctx(|| format!("cloning {}", what.display()))
}

/// Sets attributes on a detached or attached mount.
pub fn setattr(fd: &OwnedFd, attr: &m::MountAttr, recursive: bool, what: &Path) -> Result<()> {
    let mut flags = m::AT_EMPTY_PATH;
    if recursive {
        flags |= m::AT_RECURSIVE;
    }
    m::mount_setattr(fd.as_fd(), c"", flags, attr).ctx(|| format!("setting mount attributes on {}", what.display()))
}

/// Makes a new filesystem mount (detached) of `fstype` with `data` options.
pub fn new_fs(fstype: &str, source: Option<&Path>, data: &[&str], sb_flags: &[&str], attrs: u64, what: &Path) -> Result<OwnedFd> {
    let fs = m::fsopen(&cstr(fstype)?).ctx(|| format!("mount {}: filesystem type {fstype:?}", what.display()))?;
    let fail = |e: karton_sys::SysError, key: &str| {
        let log = m::fs_context_log(fs.as_fd());
        let detail = if log.is_empty() { String::new() } else { format!(" ({log})") };
        Error::Sys { context: format!("mount {} ({fstype}): option {key:?}{detail}", what.display()), err: e }
    };
    if let Some(src) = source {
        let s = cstr(src)?;
        m::fsconfig_set_string(fs.as_fd(), c"source", &s).map_err(|e| fail(e, "source"))?;
    }
    for f in sb_flags {
        m::fsconfig_set_flag(fs.as_fd(), &cstr(f)?).map_err(|e| fail(e, f))?;
    }
    for d in data {
        for part in d.split(',').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((k, v)) => m::fsconfig_set_string(fs.as_fd(), &cstr(k)?, &cstr(v)?).map_err(|e| fail(e, part))?,
                None => m::fsconfig_set_flag(fs.as_fd(), &cstr(part)?).map_err(|e| fail(e, part))?,
            }
        }
    }
    m::fsconfig_create(fs.as_fd()).map_err(|e| fail(e, "create"))?;
    m::fsmount(fs.as_fd(), attrs).ctx(|| format!("mount {} ({fstype})", what.display()))
}

/// Context for mounting into one rootfs.
pub struct Mounter<'a> {
    pub root: &'a OwnedFd,
    pub rootfs: &'a Path,
    /// Whether the init has a new user namespace (then device nodes are bind-mounted and
    /// some filesystems need fallbacks).
    pub in_userns: bool,
    pub new_cgroupns: bool,
    /// The container's cgroup directories by host mount point, for a "cgroup" mount.
    pub cgroup_dirs: &'a [(PathBuf, PathBuf)],
}

impl Mounter<'_> {
    pub fn mount(&self, ms: &MountSpec) -> Result<()> {
        let dest = &ms.destination;
        if ms.fstype == "cgroup" || ms.fstype == "cgroup2" && !self.new_cgroupns {
            return self.mount_cgroup(ms);
        }
        let (set, clr) = ms.attrs();
        let tree = if let Some(recursive) = ms.bind() {
            let src = ms.source.as_deref().ok_or_else(|| {
                Error::Config(format!("mount {}: a bind mount needs a source", dest.display()))
            })?;
            let is_file = std::fs::metadata(src)
                .map_err(|e| Error::Config(format!("mount {}: source {}: {e}", dest.display(), src.display())))?
                .is_file();
            let target = make_target(self.root.as_fd(), dest, is_file)?;
            let tree = clone_tree(src, recursive)?;
            if set | clr != 0 {
                let attr = m::MountAttr { attr_set: set, attr_clr: clr, ..Default::default() };
                setattr(&tree, &attr, false, dest)?;
            }
            attach(&tree, &target, dest)?;
            tree
        } else {
            let target = make_target(self.root.as_fd(), dest, false)?;
            let copy_up = ms.options.contains(&MountOpt::TmpCopyUp);
            let data: Vec<&str> = ms.options.iter().filter_map(|o| if let MountOpt::Data(d) = o { Some(d.as_str()) } else { None }).collect();
            let sb: Vec<&str> = ms.options.iter().filter_map(|o| if let MountOpt::SbFlag(f) = o { Some(*f) } else { None }).collect();
            let src = ms.source.as_deref().filter(|s| !s.as_os_str().is_empty());
            let tree = match new_fs(&ms.fstype, src, &data, &sb, set & !clr_only(clr), dest) {
                Ok(t) => t,
                Err(e) if self.in_userns && (ms.fstype == "sysfs" || ms.fstype == "mqueue") => {
                    // Without a new network namespace a user namespace may not mount sysfs
                    // (likewise mqueue without ipc): bind the host's read-only instead, as runc does.
                    tracing::debug!("{e}; falling back to a read-only bind of the host's");
                    let host = if ms.fstype == "sysfs" { Path::new("/sys") } else { Path::new("/dev/mqueue") };
                    let tree = clone_tree(host, true)?;
                    let attr = m::MountAttr { attr_set: set | m::MOUNT_ATTR_RDONLY, ..Default::default() };
                    setattr(&tree, &attr, true, dest)?;
                    tree
                }
                Err(e) => return Err(e),
            };
            if copy_up {
                copy_dir_into(&target, &tree, dest)?;
            }
            attach(&tree, &target, dest)?;
            tree
        };
        if let Some(attr) = ms.rec_attr() {
            setattr(&tree, &attr, true, dest)?;
        }
        for p in ms.propagation() {
            set_propagation(&tree, p, dest)?;
        }
        Ok(())
    }

    /// A "cgroup" mount: on a v2 host the container's cgroup (a new cgroup2 mount inside a
    /// cgroup namespace, else a bind); on v1/hybrid hosts a tmpfs with one directory per
    /// hierarchy, each a bind of the container's cgroup there (or a fresh mount in a
    /// cgroup namespace, whose root is the container's cgroup).
    fn mount_cgroup(&self, ms: &MountSpec) -> Result<()> {
        let dest = &ms.destination;
        let (set, clr) = ms.attrs();
        let attrs = set & !clr_only(clr);
        let hier = host_cgroup_mounts();
        let target = make_target(self.root.as_fd(), dest, false)?;
        let unified_only = hier.len() == 1 && hier[0].fstype == "cgroup2";
        if unified_only {
            let tree = if self.new_cgroupns {
                new_fs("cgroup2", None, &[], &[], attrs, dest)?
            } else {
                let dir = self.cgroup_dir(&hier[0].mount_point)?;
                let t = clone_tree(&dir, false)?;
                setattr(&t, &m::MountAttr { attr_set: attrs, ..Default::default() }, false, dest)?;
                t
            };
            return attach(&tree, &target, dest);
        }
        let tmpfs = new_fs("tmpfs", None, &["mode=755"], &[], m::MOUNT_ATTR_NOSUID | m::MOUNT_ATTR_NODEV | m::MOUNT_ATTR_NOEXEC, dest)?;
        attach(&tmpfs, &target, dest)?;
        for h in &hier {
            let name = h.mount_point.file_name().map(PathBuf::from).unwrap_or_default();
            let sub = dest.join(&name);
            let sub_fd = make_target(self.root.as_fd(), &sub, false)?;
            let tree = if self.new_cgroupns {
                let opts: Vec<&str> = h.super_opts.iter().map(|s| s.as_str()).collect();
                let (flags, data): (Vec<&str>, Vec<&str>) = opts.iter().partition(|o| !o.contains('='));
                new_fs(&h.fstype, None, &data, &flags, attrs, &sub)?
            } else {
                let dir = self.cgroup_dir(&h.mount_point)?;
                let t = clone_tree(&dir, false)?;
                setattr(&t, &m::MountAttr { attr_set: attrs, ..Default::default() }, false, &sub)?;
                t
            };
            attach(&tree, &sub_fd, &sub)?;
        }
        if attrs & m::MOUNT_ATTR_RDONLY != 0 {
            let t = open_in_root(self.root.as_fd(), dest)?;
            setattr(&t, &m::MountAttr { attr_set: m::MOUNT_ATTR_RDONLY, ..Default::default() }, false, dest)?;
        }
        Ok(())
    }

    fn cgroup_dir(&self, mount_point: &Path) -> Result<PathBuf> {
        if self.cgroup_dirs.is_empty() {
            // No cgroup of its own (rootless, nothing asked): the container sees the cgroups
            // it was started in, as with runc.
            if let Some(d) = own_cgroup_dir(mount_point) {
                return Ok(d);
            }
        }
        self.cgroup_dirs
            .iter()
            .find(|(mp, _)| mp == mount_point)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| Error::Unsupported(format!("no container cgroup in the hierarchy at {}", mount_point.display())))
    }
}

/// This process's cgroup in the hierarchy mounted at `mount_point` (from /proc/self/cgroup),
/// if that directory exists.
fn own_cgroup_dir(mount_point: &Path) -> Option<PathBuf> {
    let hier = host_cgroup_mounts().into_iter().find(|h| h.mount_point == mount_point)?;
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let matches = if hier.fstype == "cgroup2" {
            ctrls.is_empty()
        } else {
            !ctrls.is_empty() && ctrls.split(',').all(|c| hier.super_opts.iter().any(|o| o == c))
        };
        if matches {
            let dir = mount_point.join(path.trim_start_matches('/'));
            return dir.is_dir().then_some(dir);
        }
    }
    None
}

/// Attributes cleared but not set: fsmount takes only attributes to set.
fn clr_only(clr: u64) -> u64 {
    clr & !m::MOUNT_ATTR__ATIME
}

/// Sets the propagation of an attached mount.
pub fn set_propagation(fd: &OwnedFd, flags: MsFlags, what: &Path) -> Result<()> {
    let recursive = flags.contains(MsFlags::MS_REC);
    let prop = (flags & !MsFlags::MS_REC).bits();
    let attr = m::MountAttr { propagation: prop, ..Default::default() };
    setattr(fd, &attr, recursive, what)
}

/// A cgroup hierarchy mounted on the host.
#[derive(Debug, Clone)]
pub struct HostCgroupMount {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_opts: Vec<String>,
}

/// The host's cgroup mounts under /sys/fs/cgroup, from /proc/self/mountinfo.
pub fn host_cgroup_mounts() -> Vec<HostCgroupMount> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else { continue };
        let mp = pre.split(' ').nth(4).unwrap_or("");
        let mut post = post.split(' ');
        let fstype = post.next().unwrap_or("");
        let _src = post.next();
        let sopts = post.next().unwrap_or("");
        if (fstype == "cgroup" || fstype == "cgroup2") && mp.starts_with("/sys/fs/cgroup") {
            let super_opts = sopts
                .split(',')
                .filter(|o| *o != "rw" && *o != "ro" && !o.is_empty())
                .map(str::to_string)
                .collect();
            out.push(HostCgroupMount { mount_point: PathBuf::from(mp), fstype: fstype.to_string(), super_opts });
        }
    }
    out
}

/// tmpcopyup: copy what `target` holds into the new (still detached) tmpfs `tree`.
fn copy_dir_into(target: &OwnedFd, tree: &OwnedFd, what: &Path) -> Result<()> {
    let src = nix::dir::Dir::openat(target.as_fd(), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty());
    let Ok(src) = src else { return Ok(()) };
    copy_tree(src, tree, what)
}

fn copy_tree(mut src: nix::dir::Dir, dst: &OwnedFd, what: &Path) -> Result<()> {
    let entries: Vec<(CString, Option<nix::dir::Type>)> = src
        .iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_bytes() != b"." && e.file_name().to_bytes() != b"..")
        .map(|e| (e.file_name().to_owned(), e.file_type()))
        .collect();
    let srcb = src.as_fd();
    for (name, ty) in entries {
        let ctx = || format!("tmpcopyup of {}/{}", what.display(), name.to_string_lossy());
        let st = nix::sys::stat::fstatat(srcb, name.as_c_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).ctx(ctx)?;
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        match ty {
            Some(nix::dir::Type::Directory) => {
                nix::sys::stat::mkdirat(dst.as_fd(), name.as_c_str(), mode).ctx(ctx)?;
                let sub_src = nix::dir::Dir::openat(srcb, name.as_c_str(), OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW, Mode::empty()).ctx(ctx)?;
                let sub_dst = nix::fcntl::openat(dst.as_fd(), name.as_c_str(), OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).ctx(ctx)?;
                copy_tree(sub_src, &sub_dst, what)?;
            }
            Some(nix::dir::Type::Symlink) => {
                let t = nix::fcntl::readlinkat(srcb, name.as_c_str()).ctx(ctx)?;
                nix::unistd::symlinkat(t.as_os_str(), dst.as_fd(), name.as_c_str()).ctx(ctx)?;
            }
            Some(nix::dir::Type::File) => {
                let inf = nix::fcntl::openat(srcb, name.as_c_str(), OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).ctx(ctx)?;
                let outf = nix::fcntl::openat(dst.as_fd(), name.as_c_str(), OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC, mode).ctx(ctx)?;
                let mut i = std::fs::File::from(inf);
                let mut o = std::fs::File::from(outf);
                std::io::copy(&mut i, &mut o).ctx(ctx)?;
            }
            _ => {}
        }
        let _ = nix::unistd::fchownat(dst.as_fd(), name.as_c_str(), Some(st.st_uid.into()), Some(st.st_gid.into()), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW);
    }
    Ok(())
}

/// Whether `fd` is the real /dev/null (char 1:3): masking with anything else could expose
/// the file a hostile image swapped in (CVE-2025-31133).
pub fn is_dev_null(fd: &OwnedFd) -> bool {
    match nix::sys::stat::fstat(fd.as_fd()) {
        Ok(st) => {
            SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFCHR
                && nix::sys::stat::major(st.st_rdev) == 1
                && nix::sys::stat::minor(st.st_rdev) == 3
        }
        Err(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        assert_eq!(parse_option("ro"), Some(MountOpt::Attr { set: m::MOUNT_ATTR_RDONLY, clr: 0 }));
        assert_eq!(parse_option("mode=755"), Some(MountOpt::Data("mode=755".into())));
        assert_eq!(parse_option("rbind"), Some(MountOpt::Bind { recursive: true }));
        assert!(matches!(parse_option("rro"), Some(MountOpt::RecAttr { set: m::MOUNT_ATTR_RDONLY, .. })));
        assert_eq!(parse_option("idmap"), None);
        for o in KNOWN_OPTIONS {
            assert!(parse_option(o).is_some(), "{o}");
            assert!(!matches!(parse_option(o), Some(MountOpt::Data(_))), "{o} must not fall through to data");
        }
    }

    #[test]
    fn relative_paths() {
        assert_eq!(relative(Path::new("/a/./b")), PathBuf::from("a/b"));
        assert_eq!(relative(Path::new("/")), PathBuf::new());
    }
}
