//! Mounts inside the container's new mount namespace.
//!
//! Everything is mounted by file descriptor: a destination is resolved inside the rootfs
//! with openat2(RESOLVE_IN_ROOT), so no symlink in the image can point a mount at the host;
//! bind sources are cloned with open_tree(2), filesystems are made with fsopen/fsmount, and
//! the detached mount is attached with move_mount(2) onto the resolved fd.

use std::ffi::{CStr, CString};
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

/// Parses one filesystem-independent mount option (flag, atime mode, propagation,
/// recursive attribute, bind, extension); `None` for anything else, including
/// filesystem data and options karton refuses (see [`parse_options`]).
// Stays long: a flat table from mount(8) names to options reads best whole.
pub fn parse_option(o: &str) -> Option<MountOpt> {
    use MountOpt::*;
    let attr = |set: u64| Some(Attr { set, clr: 0 });
    let clr = |clr: u64| Some(Attr { set: 0, clr });
    let rec = |set: u64, clr: u64| Some(RecAttr { set, clr, atime: None });
    let rec_atime = |a: u64| Some(RecAttr { set: 0, clr: 0, atime: Some(a) });
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
        // mount(8): "atime" and "nostrictatime" mean the kernel's default, relatime;
        // "norelatime" turns relatime off, i.e. strictatime.
        "relatime" | "nostrictatime" | "atime" => Some(Atime(m::MOUNT_ATTR_RELATIME)),
        "noatime" => Some(Atime(m::MOUNT_ATTR_NOATIME)),
        "strictatime" | "norelatime" => Some(Atime(m::MOUNT_ATTR_STRICTATIME)),
        "sync" => Some(SbFlag("sync")),
        "dirsync" => Some(SbFlag("dirsync")),
        "lazytime" => Some(SbFlag("lazytime")),
        "mand" => Some(SbFlag("mand")),
        // MS_POSIXACL (runc's "acl"); the new mount API calls the flag "posixacl".
        "acl" => Some(SbFlag("posixacl")),
        // Defaults (or messages only) that mount(8) also accepts without effect; podman's
        // "notmpcopyup" asks for what karton does anyway.
        "async" | "nomand" | "nolazytime" | "loud" | "silent" | "defaults" | "notmpcopyup" => Some(Ignore),
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
        "rrelatime" | "ratime" | "rnostrictatime" => rec_atime(m::MOUNT_ATTR_RELATIME),
        "rnoatime" => rec_atime(m::MOUNT_ATTR_NOATIME),
        "rstrictatime" | "rnorelatime" => rec_atime(m::MOUNT_ATTR_STRICTATIME),
        "tmpcopyup" => Some(TmpCopyUp),
        _ => None,
    }
}

/// Options karton recognises but cannot honour: why, and what to do instead.
fn refused(o: &str) -> Option<&'static str> {
    let name = o.split_once('=').map_or(o, |(k, _)| k);
    Some(match name {
        "idmap" | "ridmap" => "karton does not create id-mapped mounts yet: remove it and chown the source for the container's user namespace",
        "remount" => "karton mounts every entry afresh and cannot remount an earlier one: merge these options into that entry",
        "copy-symlink" => "crun's copy-symlink extension is not implemented: mount the symlink's target instead",
        "z" | "Z" => "SELinux relabelling is done by the engine (podman/docker strip z/Z), not the runtime: remove it",
        "U" => "chowning the source is done by the engine (podman's :U), not the runtime: remove it and chown the source",
        "noacl" | "iversion" | "noiversion" => "karton cannot set this superblock flag through the new mount API: remove it",
        _ => return None,
    })
}

/// Bare (valueless) data options of the filesystems containers usually mount. Filesystems
/// not listed get bare words through to the kernel, which refuses unknown parameters
/// itself, unless the word looks like a misspelt flag.
fn fs_flags(fstype: &str) -> Option<&'static [&'static str]> {
    Some(match fstype {
        "tmpfs" => &["noswap", "quota", "usrquota", "grpquota", "inode32", "inode64"],
        "devpts" => &["newinstance"],
        "cgroup" => &[
            "cpu",
            "cpuacct",
            "cpuset",
            "memory",
            "devices",
            "freezer",
            "net_cls",
            "net_prio",
            "blkio",
            "perf_event",
            "hugetlb",
            "pids",
            "rdma",
            "misc",
            "debug",
            "none",
            "all",
            "noprefix",
            "xattr",
            "clone_children",
            "cpuset_v2_mode",
            "favordynmods",
        ],
        "cgroup2" => &[
            "nsdelegate",
            "favordynmods",
            "memory_localevents",
            "memory_recursiveprot",
            "memory_hugetlb_accounting",
            "pids_localevents",
        ],
        "overlay" => &["userxattr", "volatile"],
        "fuse" => &["allow_other", "default_permissions"],
        "autofs" => &["direct", "indirect", "offset", "strictexpire", "ignore"],
        "proc" | "sysfs" | "mqueue" | "ramfs" | "hugetlbfs" | "securityfs" | "debugfs" | "tracefs"
        | "bpf" | "binfmt_misc" | "configfs" | "pstore" | "efivarfs" | "fusectl" => &[],
        _ => return None,
    })
}

/// Why one mount option was refused; `message` names the option, the reason and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionProblem {
    pub option: String,
    pub message: String,
}

/// Parses a mount's whole option list. Every option must be known: a typo (`nosiud`) must
/// not silently become filesystem data, which a bind mount would then drop.
pub fn parse_options(
    opts: &[String],
    typ: Option<&str>,
) -> std::result::Result<Vec<MountOpt>, OptionProblem> {
    let typ = typ.filter(|t| !t.is_empty() && *t != "none");
    let is_bind = typ == Some("bind") || opts.iter().any(|o| o == "bind" || o == "rbind");
    let fs = if is_bind { "bind" } else { typ.unwrap_or("none") };
    let problem = |o: &str, message: String| OptionProblem { option: o.to_string(), message };
    let mut out = Vec::with_capacity(opts.len());
    for o in opts {
        let o = o.as_str();
        if let Some(why) = refused(o) {
            return Err(problem(o, format!("option {o:?} is not supported: {why}")));
        }
        match parse_option(o) {
            Some(MountOpt::SbFlag(_)) if is_bind => {
                return Err(problem(o, format!(
                    "option {o:?} is a filesystem (superblock) flag, which a bind mount cannot change: remove it, or mount the filesystem itself"
                )))
            }
            Some(MountOpt::TmpCopyUp) if fs != "tmpfs" => {
                return Err(problem(o, format!("option \"tmpcopyup\" applies to tmpfs mounts only, this is {fs}: remove it")))
            }
            Some(opt) => out.push(opt),
            None if is_bind => {
                let why = if o.contains('=') {
                    format!("option {o:?}: a bind mount takes no filesystem data, so the kernel would ignore it: remove it")
                } else {
                    unknown(o, &[], "a bind mount takes only mount flags, propagation and recursive attributes")
                };
                return Err(problem(o, why));
            }
            None if o.contains('=') => out.push(MountOpt::Data(o.to_string())),
            None => match fs_flags(fs) {
                Some(flags) if flags.contains(&o) => out.push(MountOpt::Data(o.to_string())),
                Some(flags) => {
                    let kind = if flags.is_empty() { "takes no valueless data options".to_string() } else { format!("takes only {}", flags.join(", ")) };
                    return Err(problem(o, unknown(o, flags, &format!("besides the mount flags, {fs} {kind} (write other data as key=value)"))));
                }
                None => match suggestion(o, &[]) {
                    Some(_) => return Err(problem(o, unknown(o, &[], "it is not a mount flag"))),
                    // A filesystem karton has no list for: the kernel checks its own parameters.
                    None => out.push(MountOpt::Data(o.to_string())),
                },
            },
        }
    }
    Ok(out)
}

/// "unknown option "nosiud": did you mean "nosuid"? ..." with `what` explaining the rule.
fn unknown(o: &str, extra: &[&'static str], what: &str) -> String {
    match suggestion(o, extra) {
        Some(s) => format!("unknown option {o:?}: did you mean {s:?}? fix the spelling (`karton features` lists the mount options)"),
        None => format!("unknown option {o:?}: {what}; remove it (`karton features` lists the mount options)"),
    }
}

/// The known option closest to `o`, if it is close enough to be a typo of it.
fn suggestion(o: &str, extra: &[&'static str]) -> Option<&'static str> {
    let max = if o.len() <= 4 { 1 } else { 2 };
    KNOWN_OPTIONS
        .iter()
        .chain(extra)
        .map(|k| (edit_distance(o, k), *k))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance, with a swap of two neighbours counting as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    d[0] = (0..=b.len()).collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The option names `karton features` reports.
pub const KNOWN_OPTIONS: &[&str] = &[
    "acl",
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "notmpcopyup",
    "private",
    "ratime",
    "rbind",
    "rdev",
    "rdiratime",
    "relatime",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
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
        let opts = mnt.options().clone().unwrap_or_default();
        let options = parse_options(&opts, mnt.typ().as_deref())
            .map_err(|p| Error::Config(format!("mount {}: {}", mnt.destination().display(), p.message)))?;
        let is_bind = options.iter().any(|o| matches!(o, MountOpt::Bind { .. }));
        let fstype = match mnt.typ().as_deref() {
            Some(t) if !t.is_empty() && t != "none" => t.to_string(),
            _ if is_bind => "bind".to_string(),
            _ => "none".to_string(),
        };
        let source =
            mnt.source()
                .as_ref()
                .map(|s| if s.is_relative() && is_bind { bundle.join(s) } else { s.clone() });
        // A relative destination is relative to the container's root (config.md).
        let destination = Path::new("/").join(mnt.destination());
        Ok(MountSpec { destination, fstype, source, options })
    }

    fn bind(&self) -> Option<bool> {
        self.options
            .iter()
            .find_map(|o| match o {
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
        self.options
            .iter()
            .filter_map(|o| if let MountOpt::Propagation(p) = o { Some(*p) } else { None })
            .collect()
    }
}

fn cstr(p: impl AsRef<std::ffi::OsStr>) -> Result<CString> {
    CString::new(p.as_ref().as_bytes())
        .map_err(|_| Error::Config(format!("path {:?} contains a NUL byte", p.as_ref())))
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
    // Usually only the last component is missing (the mount points in a fresh tmpfs, such
    // as /sys/fs/cgroup/cpu): make it in its parent instead of walking from the root.
    if let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) {
        if let Ok(dir) = open_in_root(root, parent) {
            create_entry(dir.as_fd(), name, file, dest, &rel)?;
            return open_in_root(root, dest);
        }
    }
    let comps: Vec<_> = rel.components().collect();
    let mut prefix = PathBuf::new();
    let mut parent = open_in_root(root, Path::new("/"))?;
    for (i, c) in comps.iter().enumerate() {
        prefix.push(c);
        let last = i + 1 == comps.len();
        // The whole path failed to open just above: for the last component that open
        // would fail again (every parent exists now), so go straight to creating it; if
        // it exists after all, mkdirat says EEXIST and the open below reports why.
        let found = if last { Err(()) } else { open_in_root(root, &prefix).map_err(drop) };
        match found {
            Ok(fd) => parent = fd,
            Err(()) => {
                create_entry(parent.as_fd(), c.as_os_str(), last && file, dest, &prefix)?;
                parent = open_in_root(root, &prefix)?;
            }
        }
    }
    Ok(parent)
}

/// Creates `name` in `parent`: an empty file when `file`, else a directory (one that
/// exists already is fine). `dest` and `prefix` name it in errors.
fn create_entry(
    parent: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    file: bool,
    dest: &Path,
    prefix: &Path,
) -> Result<()> {
    if file {
        let f = nix::fcntl::openat(
            parent,
            name,
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .ctx(|| format!("creating mount target {} inside the rootfs", dest.display()))?;
        drop(f);
        return Ok(());
    }
    match nix::sys::stat::mkdirat(parent, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e).ctx(|| format!("creating directory {} inside the rootfs", prefix.display())),
    }
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
    m::open_tree(nix::fcntl::AT_FDCWD, &cstr(source)?, flags)
        .ctx(|| format!("bind mount source {}", source.display()))
}

/// Clones the object behind an fd (e.g. a verified /dev/null) as a detached mount.
pub fn clone_fd(fd: &OwnedFd, what: &Path) -> Result<OwnedFd> {
    m::open_tree(fd.as_fd(), c"", m::OPEN_TREE_CLONE | m::OPEN_TREE_CLOEXEC | m::AT_EMPTY_PATH)
        .ctx(|| format!("cloning {}", what.display()))
}

/// Clones the mount tree at an fd, recursively (for read-only paths).
pub fn clone_fd_recursive(fd: &OwnedFd, what: &Path) -> Result<OwnedFd> {
    m::open_tree(
        fd.as_fd(),
        c"",
        m::OPEN_TREE_CLONE | m::OPEN_TREE_CLOEXEC | m::AT_EMPTY_PATH | m::AT_RECURSIVE,
    )
    .ctx(|| format!("cloning {}", what.display()))
}

/// Sets attributes on a detached or attached mount.
pub fn setattr(fd: &OwnedFd, attr: &m::MountAttr, recursive: bool, what: &Path) -> Result<()> {
    let mut flags = m::AT_EMPTY_PATH;
    if recursive {
        flags |= m::AT_RECURSIVE;
    }
    m::mount_setattr(fd.as_fd(), c"", flags, attr)
        .ctx(|| format!("setting mount attributes on {}", what.display()))
}

/// Makes a new filesystem mount (detached) of `fstype` with `data` options.
pub fn new_fs(
    fstype: &str,
    source: Option<&Path>,
    data: &[&str],
    sb_flags: &[&str],
    attrs: u64,
    what: &Path,
) -> Result<OwnedFd> {
    let fs =
        m::fsopen(&cstr(fstype)?).ctx(|| format!("mount {}: filesystem type {fstype:?}", what.display()))?;
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
                Some((k, v)) => {
                    m::fsconfig_set_string(fs.as_fd(), &cstr(k)?, &cstr(v)?).map_err(|e| fail(e, part))?
                }
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
        let tree =
            if let Some(recursive) = ms.bind() { self.bind(ms, recursive)? } else { self.new_mount(ms)? };
        if let Some(attr) = ms.rec_attr() {
            setattr(&tree, &attr, true, dest)?;
        }
        for p in ms.propagation() {
            set_propagation(&tree, p, dest)?;
        }
        Ok(())
    }

    /// A bind mount: the source's tree cloned, its attributes set, attached at the
    /// destination.
    fn bind(&self, ms: &MountSpec, recursive: bool) -> Result<OwnedFd> {
        let dest = &ms.destination;
        let (set, clr) = ms.attrs();
        let src = ms
            .source
            .as_deref()
            .ok_or_else(|| Error::Config(format!("mount {}: a bind mount needs a source", dest.display())))?;
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
        Ok(tree)
    }

    /// A new filesystem (fsopen/fsmount) attached at the destination, with tmpcopyup's
    /// copy of what was there.
    fn new_mount(&self, ms: &MountSpec) -> Result<OwnedFd> {
        let dest = &ms.destination;
        let (set, clr) = ms.attrs();
        let target = make_target(self.root.as_fd(), dest, false)?;
        let copy_up = ms.options.contains(&MountOpt::TmpCopyUp);
        let data: Vec<&str> = ms
            .options
            .iter()
            .filter_map(|o| if let MountOpt::Data(d) = o { Some(d.as_str()) } else { None })
            .collect();
        let sb: Vec<&str> = ms
            .options
            .iter()
            .filter_map(|o| if let MountOpt::SbFlag(f) = o { Some(*f) } else { None })
            .collect();
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
        Ok(tree)
    }

    /// A "cgroup" mount: on a v2 host the container's cgroup (a new cgroup2 mount inside a
    /// cgroup namespace, else a bind); on v1/hybrid hosts a tmpfs with one directory per
    /// hierarchy, each a bind of the container's cgroup there (or a fresh mount in a
    /// cgroup namespace, whose root is the container's cgroup).
    fn mount_cgroup(&self, ms: &MountSpec) -> Result<()> {
        let dest = &ms.destination;
        let (set, clr) = ms.attrs();
        let attrs = set & !clr_only(clr);
        let hier = host_cgroup_mounts()?;
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
        let tmpfs = new_fs(
            "tmpfs",
            None,
            &["mode=755"],
            &[],
            m::MOUNT_ATTR_NOSUID | m::MOUNT_ATTR_NODEV | m::MOUNT_ATTR_NOEXEC,
            dest,
        )?;
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
        self.cgroup_dirs.iter().find(|(mp, _)| mp == mount_point).map(|(_, d)| d.clone()).ok_or_else(|| {
            Error::Unsupported(format!("no container cgroup in the hierarchy at {}", mount_point.display()))
        })
    }
}

/// This process's cgroup in the hierarchy mounted at `mount_point` (from /proc/self/cgroup),
/// if that directory exists.
fn own_cgroup_dir(mount_point: &Path) -> Option<PathBuf> {
    let hier = host_cgroup_mounts().ok()?.into_iter().find(|h| h.mount_point == mount_point)?;
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

/// The host's cgroup mounts under /sys/fs/cgroup, from /proc/self/mountinfo, read once per
/// process: the runtime reads them before the clone and the init, whose mount table is a
/// copy of the runtime's whenever it mounts anything, inherits the answer instead of
/// parsing mountinfo again.
pub fn host_cgroup_mounts() -> Result<Vec<HostCgroupMount>> {
    static MOUNTS: std::sync::OnceLock<Vec<HostCgroupMount>> = std::sync::OnceLock::new();
    if let Some(m) = MOUNTS.get() {
        return Ok(m.clone());
    }
    let m = cgroup_mounts_in(&karton_sys::mountinfo::read_self()?);
    Ok(MOUNTS.get_or_init(|| m).clone())
}

fn cgroup_mounts_in(mounts: &[karton_sys::mountinfo::MountInfo]) -> Vec<HostCgroupMount> {
    mounts
        .iter()
        .filter(|m| {
            (m.fstype == "cgroup" || m.fstype == "cgroup2") && m.mount_point.starts_with("/sys/fs/cgroup")
        })
        .map(|m| HostCgroupMount {
            mount_point: m.mount_point.clone(),
            fstype: m.fstype.clone(),
            super_opts: m.super_opts().filter(|o| *o != "rw" && *o != "ro").map(str::to_string).collect(),
        })
        .collect()
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
        let st = nix::sys::stat::fstatat(srcb, name.as_c_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .ctx(ctx)?;
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        match ty {
            Some(nix::dir::Type::Directory) => copy_subdir(srcb, dst, &name, mode, what, &ctx)?,
            Some(nix::dir::Type::Symlink) => {
                let t = nix::fcntl::readlinkat(srcb, name.as_c_str()).ctx(ctx)?;
                nix::unistd::symlinkat(t.as_os_str(), dst.as_fd(), name.as_c_str()).ctx(ctx)?;
            }
            Some(nix::dir::Type::File) => copy_file(srcb, dst, &name, mode, &ctx)?,
            _ => {}
        }
        let _ = nix::unistd::fchownat(
            dst.as_fd(),
            name.as_c_str(),
            Some(st.st_uid.into()),
            Some(st.st_gid.into()),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
    }
    Ok(())
}

/// Makes directory `name` in `dst` and copies the one in `src` into it.
fn copy_subdir(
    src: BorrowedFd,
    dst: &OwnedFd,
    name: &CStr,
    mode: Mode,
    what: &Path,
    ctx: &dyn Fn() -> String,
) -> Result<()> {
    nix::sys::stat::mkdirat(dst.as_fd(), name, mode).ctx(ctx)?;
    let sub_src = nix::dir::Dir::openat(
        src,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        Mode::empty(),
    )
    .ctx(ctx)?;
    let sub_dst = nix::fcntl::openat(
        dst.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(ctx)?;
    copy_tree(sub_src, &sub_dst, what)
}

/// Copies regular file `name` from `src` to a new file in `dst`.
fn copy_file(
    src: BorrowedFd,
    dst: &OwnedFd,
    name: &CStr,
    mode: Mode,
    ctx: &dyn Fn() -> String,
) -> Result<()> {
    let inf =
        nix::fcntl::openat(src, name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            .ctx(ctx)?;
    let outf = nix::fcntl::openat(
        dst.as_fd(),
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
        mode,
    )
    .ctx(ctx)?;
    let mut i = std::fs::File::from(inf);
    let mut o = std::fs::File::from(outf);
    std::io::copy(&mut i, &mut o).ctx(ctx)?;
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
        assert_eq!(parse_option("mode=755"), None);
        assert_eq!(parse_option("rbind"), Some(MountOpt::Bind { recursive: true }));
        assert!(matches!(parse_option("rro"), Some(MountOpt::RecAttr { set: m::MOUNT_ATTR_RDONLY, .. })));
        assert_eq!(parse_option("idmap"), None);
        for o in KNOWN_OPTIONS {
            assert!(parse_option(o).is_some(), "{o}");
            assert!(!matches!(parse_option(o), Some(MountOpt::Data(_))), "{o} must not fall through to data");
        }
    }

    fn opts(v: &[&str], typ: &str) -> std::result::Result<Vec<MountOpt>, OptionProblem> {
        parse_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>(), Some(typ))
    }

    fn refusal(v: &[&str], typ: &str) -> String {
        match opts(v, typ) {
            Ok(o) => panic!("{v:?} on {typ} accepted as {o:?}"),
            Err(p) => p.message,
        }
    }

    #[test]
    fn typos_are_refused_with_a_suggestion() {
        let e = refusal(&["rbind", "nosiud"], "bind");
        assert!(e.starts_with(r#"unknown option "nosiud": did you mean "nosuid"?"#), "{e}");
        assert!(refusal(&["nosiud"], "tmpfs").contains(r#"did you mean "nosuid""#));
        assert!(refusal(&["rnoexce"], "none").contains(r#"did you mean "rnoexec""#));
        // A filesystem karton has no list for still refuses a misspelt flag.
        assert!(refusal(&["noexce"], "ext4").contains(r#"did you mean "noexec""#));
        assert!(refusal(&["newinstanse"], "devpts").contains(r#"did you mean "newinstance""#));
    }

    #[test]
    fn bind_mounts_take_no_data() {
        assert!(refusal(&["rbind", "mode=755"], "none").contains("takes no filesystem data"));
        assert!(refusal(&["newinstance"], "bind").contains("unknown option"));
        assert!(refusal(&["bind", "sync"], "none").contains("superblock"));
        assert!(opts(&["rbind", "rprivate", "nosuid", "nodev", "ro", "rnoatime", "async"], "bind").is_ok());
    }

    #[test]
    fn fs_data_passes() {
        // runc spec's and podman's defaults.
        for (typ, v) in [
            ("tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"][..]),
            ("devpts", &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
            ("tmpfs", &["rw", "rprivate", "nosuid", "nodev", "tmpcopyup", "size=64m", "noswap"]),
            ("mqueue", &["nosuid", "noexec", "nodev"]),
            ("cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"]),
            ("cgroup", &["memory", "xattr", "name=systemd"]),
            ("cgroup2", &["nsdelegate", "memory_recursiveprot"]),
            ("overlay", &["lowerdir=/a:/b", "upperdir=/u", "workdir=/w", "userxattr"]),
            ("proc", &["hidepid=2", "subset=pid"]),
            ("ext4", &["discard", "errors=remount-ro"]),
        ] {
            let parsed = opts(v, typ).unwrap_or_else(|p| panic!("{typ} {v:?}: {}", p.message));
            assert_eq!(parsed.len(), v.len());
        }
        assert_eq!(opts(&["size=1m"], "tmpfs").unwrap(), vec![MountOpt::Data("size=1m".into())]);
        assert!(refusal(&["newinstance"], "tmpfs").contains("tmpfs takes only"));
        assert!(refusal(&["hidepid"], "proc").contains("takes no valueless data"));
    }

    #[test]
    fn unhonourable_options_are_refused() {
        for (o, typ, why) in [
            ("idmap", "bind", "id-mapped"),
            ("ridmap", "bind", "id-mapped"),
            ("idmap=uids=0-1-10", "bind", "id-mapped"),
            ("remount", "tmpfs", "remount"),
            ("copy-symlink", "bind", "copy-symlink"),
            ("z", "bind", "SELinux"),
            ("Z", "bind", "SELinux"),
            ("U", "bind", "chown"),
            ("tmpcopyup", "bind", "tmpfs mounts only"),
        ] {
            let e = refusal(&[o], typ);
            assert!(e.contains(why), "{o}: {e}");
        }
        assert_eq!(opts(&["notmpcopyup"], "tmpfs").unwrap(), vec![MountOpt::Ignore]);
    }

    #[test]
    fn cgroup_mounts_are_unescaped() {
        let mi = karton_sys::mountinfo::parse(
            "35 31 0:32 / /sys/fs/cgroup/mem\\040ory rw,nosuid - cgroup cgroup rw,memory\n\
             22 1 8:1 / / rw - ext4 /dev/vda1 rw\n",
        )
        .unwrap();
        let v = cgroup_mounts_in(&mi);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].mount_point, Path::new("/sys/fs/cgroup/mem ory"));
        assert_eq!(v[0].super_opts, vec!["memory"]);
    }

    #[test]
    fn relative_paths() {
        assert_eq!(relative(Path::new("/a/./b")), PathBuf::from("a/b"));
        assert_eq!(relative(Path::new("/")), PathBuf::new());
    }
}
