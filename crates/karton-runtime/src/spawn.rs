//! Ad-hoc sandboxes without a bundle (`karton spawn`): options become an in-memory OCI
//! spec, run by the same [`Runtime`] as any bundle (no second implementation).
//!
//! The default root filesystem is the host's own: an empty directory as root with the
//! host's system directories bind-mounted read-only (recursively), fresh /proc, /dev,
//! /sys, /tmp and /run. With `persist`, the sandbox's namespaces are bind-mounted onto
//! files in a directory of the host's mount namespace after create and before start, so
//! `karton ns enter --target DIR` can join them after the command has exited.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use karton_ns::NsType;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxIdMapping,
    LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, LinuxTimeOffsetBuilder,
    Mount, Process, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use serde::Deserialize;

use crate::config::Config;
use crate::container::{CreateOpts, Runtime, OCI_VERSION};
use crate::error::{Context, Error, Result};

/// The namespaces made when none are asked for: all but user and time.
pub const DEFAULT_NAMESPACES: [NsType; 6] =
    [NsType::Pid, NsType::Net, NsType::Ipc, NsType::Uts, NsType::Cgroup, NsType::Mnt];

/// Host directories the default root filesystem shows read-only (those that exist; a
/// symlink such as Debian's /bin -> usr/bin is copied as a symlink).
pub const HOST_DIRS: &[&str] =
    &["bin", "sbin", "usr", "lib", "lib32", "lib64", "libx32", "etc", "opt", "home", "root", "srv", "var"];

/// Name of the root-filesystem skeleton kept in a `persist` directory.
pub const PERSIST_ROOTFS: &str = ".rootfs";

/// Which namespaces to make.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NsChoice {
    /// [`DEFAULT_NAMESPACES`], plus user (and time) when options need them.
    #[default]
    Default,
    /// Every type this kernel has.
    All,
    /// Exactly these (mnt is always added: the runtime builds the rootfs in it).
    List(Vec<NsType>),
}

/// One line of a uid or gid map: `count` ids from `inside` in the sandbox are `outside` on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rootfs {
    /// The host's directories, read-only.
    HostRo,
    /// A directory used as the root filesystem (writable as it is).
    Dir(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub readonly: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Monotonic,
    Boottime,
}

impl Clock {
    pub fn name(self) -> &'static str {
        match self {
            Clock::Monotonic => "monotonic",
            Clock::Boottime => "boottime",
        }
    }
}

/// A time namespace offset, as the kernel takes it (nanos in 0..1e9, secs may be negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOffset {
    pub clock: Clock,
    pub secs: i64,
    pub nanos: u32,
}

/// Everything `karton spawn` takes.
#[derive(Debug, Clone)]
pub struct SpawnOptions {
    pub namespaces: NsChoice,
    /// Map sandbox root to the caller's uid and gid.
    pub map_root: bool,
    pub uid_map: Vec<IdRange>,
    pub gid_map: Vec<IdRange>,
    pub hostname: Option<String>,
    pub rootfs: Rootfs,
    pub binds: Vec<Bind>,
    pub time_offsets: Vec<TimeOffset>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    pub pids: Option<i64>,
    /// CPU share as a number of CPUs (quota / period).
    pub cpus: Option<f64>,
    /// Directory for bind mounts of the namespaces.
    pub persist: Option<PathBuf>,
    /// The command.
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Working directory inside; `None`: the caller's when the sandbox shows it, else /.
    pub cwd: Option<PathBuf>,
}

impl SpawnOptions {
    /// Defaults (host-ro root, default namespaces) for `args`, with the caller's environment.
    pub fn new(args: Vec<String>) -> SpawnOptions {
        SpawnOptions {
            namespaces: NsChoice::Default,
            map_root: false,
            uid_map: Vec::new(),
            gid_map: Vec::new(),
            hostname: None,
            rootfs: Rootfs::HostRo,
            binds: Vec::new(),
            time_offsets: Vec::new(),
            memory: None,
            pids: None,
            cpus: None,
            persist: None,
            args,
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some(format!("{}={}", k.into_string().ok()?, v.into_string().ok()?)))
                .collect(),
            cwd: None,
        }
    }
}

fn bad(msg: String) -> Error {
    Error::Config(msg)
}

/// A fresh container id for a sandbox.
pub fn default_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("spawn-{}-{nanos:08x}", std::process::id())
}

// ---- the plan: options checked and completed, no side effects ----

/// The options checked and completed.
#[derive(Debug, Clone)]
pub struct Plan {
    /// New namespaces, in NsType order (always with mnt).
    pub namespaces: Vec<NsType>,
    pub uid_map: Vec<IdRange>,
    pub gid_map: Vec<IdRange>,
    /// Namespaces bind-mounted with `persist` (all new ones but pid: a pid namespace
    /// takes no new process once its init has exited).
    pub persist_types: Vec<NsType>,
    pub cwd: PathBuf,
}

impl Plan {
    pub fn has(&self, t: NsType) -> bool {
        self.namespaces.contains(&t)
    }
}

/// Checks the options against each other and the caller's privileges; touches nothing.
pub fn plan(o: &SpawnOptions) -> Result<Plan> {
    let root = nix::unistd::geteuid().is_root();
    if o.args.is_empty() || o.args[0].is_empty() {
        return Err(bad("no command given: put the command after `--`, e.g. `karton spawn -- sh`".into()));
    }
    let wants_maps = o.map_root || !o.uid_map.is_empty() || !o.gid_map.is_empty();
    let set = namespace_set(o, root, wants_maps)?;
    let user = set.contains(&NsType::User);
    check_id_maps(o, root, user, wants_maps)?;
    let (uid_map, gid_map) = planned_id_maps(o, user);
    check_uts_and_time(o, &set)?;
    check_host_side(o, root)?;
    let namespaces: Vec<NsType> = set.into_iter().collect();
    let persist_types = namespaces.iter().copied().filter(|t| *t != NsType::Pid).collect();
    let cwd = match (&o.cwd, &o.rootfs) {
        (Some(c), _) => c.clone(),
        (None, Rootfs::HostRo) => visible_cwd().unwrap_or_else(|| PathBuf::from("/")),
        (None, Rootfs::Dir(_)) => PathBuf::from("/"),
    };
    if !cwd.is_absolute() {
        return Err(bad(format!("working directory {}: must be absolute", cwd.display())));
    }
    Ok(Plan { namespaces, uid_map, gid_map, persist_types, cwd })
}

/// The namespaces to create: the defaults (adapted to the options), all, or the list
/// given; always a mount namespace; each one supported by this kernel.
fn namespace_set(o: &SpawnOptions, root: bool, wants_maps: bool) -> Result<BTreeSet<NsType>> {
    let mut set: BTreeSet<NsType> = match &o.namespaces {
        NsChoice::Default => {
            let mut s: BTreeSet<NsType> = DEFAULT_NAMESPACES.iter().copied().collect();
            // Defaults adapt to the options; an explicit list is checked instead.
            if wants_maps || !root {
                s.insert(NsType::User);
            }
            if !o.time_offsets.is_empty() {
                s.insert(NsType::Time);
            }
            s
        }
        NsChoice::All => NsType::supported().into_iter().collect(),
        NsChoice::List(l) => l.iter().copied().collect(),
    };
    set.insert(NsType::Mnt);
    if let Some(t) = set.iter().find(|t| !t.is_supported()) {
        return Err(Error::Unsupported(format!(
            "namespace type {t} is not supported by this kernel (/proc/self/ns/{} does not exist): leave it out",
            t.proc_name()
        )));
    }
    Ok(set)
}

/// Without root a user namespace is needed; id maps need one, and their flags go together.
fn check_id_maps(o: &SpawnOptions, root: bool, user: bool, wants_maps: bool) -> Result<()> {
    if !root && !user {
        return Err(bad(
            "creating namespaces without root needs a user namespace: add user to --ns (with --map-root), or run as root".into(),
        ));
    }
    if wants_maps && !user {
        return Err(
            bad("--map-root, --uid-map and --gid-map need a user namespace: add user to --ns".into()),
        );
    }
    if o.map_root && (!o.uid_map.is_empty() || !o.gid_map.is_empty()) {
        return Err(bad("--map-root and --uid-map/--gid-map exclude each other: use one".into()));
    }
    if o.uid_map.is_empty() != o.gid_map.is_empty() {
        return Err(bad("--uid-map and --gid-map go together: give both (e.g. --uid-map 0:100000:65536 --gid-map 0:100000:65536)".into()));
    }
    for (maps, flag) in [(&o.uid_map, "--uid-map"), (&o.gid_map, "--gid-map")] {
        check_overlaps(maps, flag)?;
    }
    Ok(())
}

/// The uid and gid maps: those given, or (--map-root, and the default for a user
/// namespace) sandbox root = the caller.
fn planned_id_maps(o: &SpawnOptions, user: bool) -> (Vec<IdRange>, Vec<IdRange>) {
    if user && o.uid_map.is_empty() {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        (
            vec![IdRange { inside: 0, outside: uid, count: 1 }],
            vec![IdRange { inside: 0, outside: gid, count: 1 }],
        )
    } else {
        (o.uid_map.clone(), o.gid_map.clone())
    }
}

/// --hostname needs a uts namespace and 1 to 64 characters; --time-offset a time
/// namespace and each clock once.
fn check_uts_and_time(o: &SpawnOptions, set: &BTreeSet<NsType>) -> Result<()> {
    if o.hostname.is_some() && !set.contains(&NsType::Uts) {
        return Err(bad("--hostname needs a uts namespace: add uts to --ns".into()));
    }
    if let Some(h) = &o.hostname {
        if h.is_empty() || h.len() > 64 {
            return Err(bad(format!("--hostname {h:?}: give 1 to 64 characters")));
        }
    }
    if !o.time_offsets.is_empty() && !set.contains(&NsType::Time) {
        return Err(bad("--time-offset needs a time namespace: add time to --ns".into()));
    }
    let mut clocks = BTreeSet::new();
    for t in &o.time_offsets {
        if !clocks.insert(t.clock.name()) {
            return Err(bad(format!(
                "--time-offset {} is given twice: give each clock once",
                t.clock.name()
            )));
        }
    }
    Ok(())
}

/// What touches the host's side: --persist (needs root), --rootfs, --bind destinations.
fn check_host_side(o: &SpawnOptions, root: bool) -> Result<()> {
    if o.persist.is_some() && !root {
        return Err(bad(
            "--persist needs root: the bind mounts are made in the host's mount namespace, which needs CAP_SYS_ADMIN there".into(),
        ));
    }
    if let Rootfs::Dir(d) = &o.rootfs {
        if !d.is_dir() {
            return Err(bad(format!("--rootfs {}: not a directory", d.display())));
        }
    }
    for b in &o.binds {
        if !b.destination.is_absolute() {
            return Err(bad(format!(
                "--bind destination {}: must be an absolute path",
                b.destination.display()
            )));
        }
    }
    Ok(())
}

fn check_overlaps(maps: &[IdRange], flag: &str) -> Result<()> {
    for (i, a) in maps.iter().enumerate() {
        for b in &maps[i + 1..] {
            let overlap = |x: u32, y: u32| x <= y + (b.count - 1) && y <= x + (a.count - 1);
            if overlap(a.inside, b.inside) || overlap(a.outside, b.outside) {
                return Err(bad(format!(
                    "{flag}: {}:{}:{} and {}:{}:{} overlap: the kernel refuses a map whose ranges overlap",
                    a.inside, a.outside, a.count, b.inside, b.outside, b.count
                )));
            }
        }
    }
    Ok(())
}

/// The caller's directory when it lies in a directory the host-ro root shows.
fn visible_cwd() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    let first = cwd.components().nth(1)?.as_os_str().to_str()?.to_string();
    let meta = std::fs::symlink_metadata(Path::new("/").join(&first)).ok()?;
    (HOST_DIRS.contains(&first.as_str()) && meta.is_dir()).then_some(cwd)
}

// ---- the spec ----

/// The capability names of the caller's bounding set: the sandbox gets what the caller
/// could have, as unshare(1) gives (root in a user namespace gets them over it only).
fn bounding_caps() -> Capabilities {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .unwrap_or(0);
    let last = karton_sys::caps::last_cap();
    (0..=last)
        .filter(|c| mask & (1u64 << c) != 0)
        .filter_map(|c| karton_sys::caps::NAMES.get(c as usize))
        // Only names this oci-spec version knows (as config.json reads them); an unknown
        // one would fail the whole spec.
        .filter_map(|n| {
            Capability::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(n)).ok()
        })
        .collect()
}

fn id_maps(maps: &[IdRange]) -> Vec<LinuxIdMapping> {
    maps.iter().map(|m| crate::defaults::id_mapping(m.inside, m.outside, m.count)).collect()
}

fn mounts(o: &SpawnOptions, p: &Plan, host_dirs: &[String]) -> Vec<Mount> {
    use crate::defaults::mount;
    let user = p.has(NsType::User);
    let mut v = Vec::new();
    for d in host_dirs {
        v.push(mount(format!("/{d}"), "bind", format!("/{d}"), &["rbind", "rro"]));
    }
    if user && !p.has(NsType::Pid) {
        // A user namespace may mount procfs only for a pid namespace it owns.
        v.push(mount("/proc", "bind", "/proc", &["rbind"]));
    } else {
        v.push(mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]));
    }
    v.push(mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]));
    // gid 5 (tty) exists only where the host's ids are.
    let mut pts = mount("/dev/pts", "devpts", "devpts", &[]);
    pts.set_options(Some(crate::defaults::devpts_options(!user)));
    v.push(pts);
    v.push(mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]));
    if p.has(NsType::Ipc) {
        v.push(mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]));
    }
    if p.has(NsType::Net) {
        v.push(mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]));
        if !user {
            v.push(mount(
                "/sys/fs/cgroup",
                "cgroup",
                "cgroup",
                &["nosuid", "noexec", "nodev", "relatime", "ro"],
            ));
        }
    } else {
        // sysfs shows the network devices of the mounter's network namespace: without a
        // new one, a fresh sysfs is refused; show the host's read-only.
        v.push(mount("/sys", "bind", "/sys", &["rbind", "rro", "nosuid", "noexec", "nodev"]));
    }
    if o.rootfs == Rootfs::HostRo {
        v.push(mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=1777"]));
        v.push(mount("/run", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=755"]));
    }
    for b in &o.binds {
        let opts: &[&str] = if b.readonly { &["rbind", "rro"] } else { &["rbind"] };
        v.push(mount(&b.destination, "bind", &b.source, opts));
    }
    v
}

/// The OCI spec of a sandbox whose root filesystem is `rootfs` (for the host-ro root, the
/// skeleton made by [`make_skeleton`], whose directories are listed in `host_dirs`).
pub fn build_spec(o: &SpawnOptions, p: &Plan, rootfs: &Path, host_dirs: &[String]) -> Result<Spec> {
    let err = spec_error;
    let mut linux = LinuxBuilder::default()
        .namespaces(
            p.namespaces
                .iter()
                .map(|t| crate::defaults::namespace(crate::config::oci_ns_type(*t)))
                .collect::<Vec<_>>(),
        )
        .masked_paths(crate::defaults::strings(crate::defaults::MASKED_PATHS))
        .readonly_paths(crate::defaults::strings(crate::defaults::READONLY_PATHS))
        // Private, not slave: nothing mounted on the host later (e.g. the --persist bind
        // mounts) may propagate into the sandbox, and nothing from it to the host.
        .rootfs_propagation("private");
    if p.has(NsType::User) {
        linux = linux.uid_mappings(id_maps(&p.uid_map)).gid_mappings(id_maps(&p.gid_map));
    }
    if !o.time_offsets.is_empty() {
        let mut m = std::collections::HashMap::new();
        for t in &o.time_offsets {
            m.insert(
                t.clock.name().to_string(),
                LinuxTimeOffsetBuilder::default().secs(t.secs).nanosecs(t.nanos).build().map_err(err)?,
            );
        }
        linux = linux.time_offsets(m);
    }
    let mut linux = linux.build().map_err(err)?;
    // Unset fields of a builder take the type's Default, which has resources.
    linux.set_resources(sandbox_resources(o)?);

    let process = sandbox_process(o, p)?;
    let mut spec = SpecBuilder::default()
        .version(OCI_VERSION)
        .process(process)
        .root(RootBuilder::default().path(rootfs).readonly(o.rootfs == Rootfs::HostRo).build().map_err(err)?)
        .mounts(mounts(o, p, host_dirs))
        .linux(linux)
        .build()
        .map_err(err)?;
    spec.set_hostname(o.hostname.clone());
    spec.set_annotations(None);
    Ok(spec)
}

fn spec_error(e: oci_spec::OciSpecError) -> Error {
    Error::Config(format!("building the sandbox's spec: {e}"))
}

/// `linux.resources` of the sandbox: the default device rules (as root), and the limits
/// --memory, --pids and --cpus ask for; `None` when there is nothing to set.
fn sandbox_resources(o: &SpawnOptions) -> Result<Option<LinuxResources>> {
    let err = spec_error;
    let mut res = LinuxResourcesBuilder::default();
    let mut any_res = false;
    if nix::unistd::geteuid().is_root() {
        // Device access: the default devices only, as any container.
        res = res.devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .map_err(err)?]);
        any_res = true;
    }
    if let Some(m) = o.memory {
        res = res.memory(LinuxMemoryBuilder::default().limit(m).build().map_err(err)?);
        any_res = true;
    }
    if let Some(n) = o.pids {
        res = res.pids(LinuxPidsBuilder::default().limit(n).build().map_err(err)?);
        any_res = true;
    }
    if let Some(c) = o.cpus {
        let period: u64 = 100_000;
        let quota = (c * period as f64).round() as i64;
        res = res.cpu(LinuxCpuBuilder::default().quota(quota).period(period).build().map_err(err)?);
        any_res = true;
    }
    Ok(if any_res { Some(res.build().map_err(err)?) } else { None })
}

/// The sandbox's process: the command as root of the sandbox, with the bounding set's
/// capabilities, no rlimits of its own.
fn sandbox_process(o: &SpawnOptions, p: &Plan) -> Result<Process> {
    let err = spec_error;
    let caps = bounding_caps();
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build().map_err(err)?)
        .args(o.args.clone())
        .env(o.env.clone())
        .cwd(p.cwd.clone())
        .capabilities(crate::defaults::capabilities(caps))
        .no_new_privileges(false)
        .build()
        .map_err(err)?;
    process.set_rlimits(None);
    Ok(process)
}

// ---- side effects: skeleton, persistence, run ----

/// The host-ro root: an empty directory with a mount point per host directory (and the
/// host's symlinks, e.g. bin -> usr/bin). Returns the directories to bind.
pub fn make_skeleton(dir: &Path) -> Result<Vec<String>> {
    let mkdir = |p: &Path| match std::fs::DirBuilder::new().mode(0o755).create(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists && p.is_dir() => Ok(()),
        Err(e) => Err(e).ctx(|| format!("creating {}", p.display())),
    };
    mkdir(dir)?;
    // The umask may have narrowed it; users inside must be able to traverse it.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .ctx(|| format!("chmod {}", dir.display()))?;
    let mut binds = Vec::new();
    for d in HOST_DIRS {
        let host = Path::new("/").join(d);
        let Ok(meta) = std::fs::symlink_metadata(&host) else { continue };
        let here = dir.join(d);
        if meta.file_type().is_symlink() {
            let target =
                std::fs::read_link(&host).ctx(|| format!("reading the symlink {}", host.display()))?;
            match std::os::unix::fs::symlink(&target, &here) {
                Ok(()) => {}
                Err(e)
                    if e.kind() == ErrorKind::AlreadyExists
                        && std::fs::read_link(&here).ok().as_ref() == Some(&target) => {}
                Err(e) => return Err(e).ctx(|| format!("creating the symlink {}", here.display())),
            }
        } else if meta.is_dir() {
            mkdir(&here)?;
            binds.push(d.to_string());
        }
    }
    Ok(binds)
}

/// Files in a `persist` directory, bind mounts of the sandbox's namespaces.
struct Persist {
    dir: PathBuf,
    types: Vec<NsType>,
    mounted: Vec<PathBuf>,
    created_dir: bool,
}

impl Persist {
    /// Checks (and creates) the directory before anything runs: refuses one that still
    /// holds namespaces, or whose names are not plain files.
    fn prepare(dir: &Path, types: &[NsType]) -> Result<Persist> {
        let created_dir = !dir.exists();
        if created_dir {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .ctx(|| format!("--persist: creating {}", dir.display()))?;
        }
        let p = Persist { dir: dir.to_path_buf(), types: types.to_vec(), mounted: Vec::new(), created_dir };
        let dmeta = std::fs::metadata(dir).ctx(|| format!("--persist {}", dir.display()))?;
        if !dmeta.is_dir() {
            return Err(bad(format!("--persist {}: not a directory", dir.display())));
        }
        for t in NsType::ALL {
            let f = dir.join(t.proc_name());
            let meta = match std::fs::symlink_metadata(&f) {
                Ok(m) => m,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e).ctx(|| format!("--persist: {}", f.display())),
            };
            if meta.dev() != dmeta.dev() {
                return Err(bad(format!(
                    "--persist: {} still holds a namespace (a bind mount): release it with `umount {}/*`, or pick another directory",
                    f.display(),
                    dir.display()
                )));
            }
            if !meta.is_file() || meta.len() != 0 {
                return Err(bad(format!(
                    "--persist: {} exists and is not an empty file: pick an empty directory",
                    f.display()
                )));
            }
        }
        Ok(p)
    }

    /// Bind-mounts /proc/PID/ns/* onto DIR/*, by fd: the target is a file opened without
    /// following symlinks, so the mount cannot land anywhere but in DIR.
    fn bind(&mut self, pid: i32) -> Result<()> {
        for t in NsType::ALL {
            let f = self.dir.join(t.proc_name());
            if !self.types.contains(&t) {
                // A leftover empty file from an earlier run would look like a namespace
                // that `ns enter` cannot open.
                if f.exists() {
                    std::fs::remove_file(&f)
                        .ctx(|| format!("--persist: removing the stale {}", f.display()))?;
                }
                continue;
            }
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o444)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&f)
                .ctx(|| format!("--persist: creating {}", f.display()))?;
            drop(file);
            let target: OwnedFd =
                nix::fcntl::open(&f, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                    .ctx(|| format!("--persist: opening {}", f.display()))?;
            let tree = crate::mounts::clone_tree(&t.proc_path(pid), false)?;
            crate::mounts::attach(&tree, &target, &f)?;
            self.mounted.push(f);
        }
        Ok(())
    }

    /// Undoes everything (after a failure).
    fn undo(&mut self) {
        for f in self.mounted.drain(..) {
            let _ = nix::mount::umount2(
                &f,
                nix::mount::MntFlags::MNT_DETACH | nix::mount::MntFlags::UMOUNT_NOFOLLOW,
            );
        }
        for t in &self.types {
            let f = self.dir.join(t.proc_name());
            if std::fs::metadata(&f).is_ok_and(|m| m.is_file() && m.len() == 0) {
                let _ = std::fs::remove_file(&f);
            }
        }
        let _ = std::fs::remove_dir_all(self.dir.join(PERSIST_ROOTFS));
        if self.created_dir {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// A directory removed on drop unless kept.
struct TempRoot {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if !self.keep {
            // Only directories and symlinks: the mounts on them were in the sandbox's
            // mount namespace, gone with it.
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Creates, persists (optionally), starts and waits for a sandbox; returns the
/// command's exit status as a shell reports it (code, or 128 + signal). The container
/// is deleted afterwards; with `persist` its namespaces stay bind-mounted in that
/// directory (and the host-ro skeleton in `DIR/.rootfs`).
///
/// Call it from a single-threaded process (the runtime uses a raw clone3).
pub fn run(rt: &Runtime, id: &str, o: &SpawnOptions) -> Result<i32> {
    crate::util::require_single_thread("spawn")?;
    let p = plan(o)?;
    crate::state::validate_id(id)?;
    if rt.store().dir(id).exists() {
        return Err(Error::Exists(id.into()));
    }
    let mut persist = match &o.persist {
        Some(d) => Some(Persist::prepare(d, &p.persist_types)?),
        None => None,
    };
    let result = run_planned(rt, id, o, &p, persist.as_mut());
    if result.is_err() {
        if let Some(pe) = persist.as_mut() {
            pe.undo();
        }
    }
    result
}

/// The sandbox's root: the --rootfs directory, or the host-ro skeleton (with the host
/// directories it lists, and the guard that removes it). The skeleton is kept with
/// --persist, as the persisted mount namespace has its mounts on these directories
/// (removing one would detach them there).
fn sandbox_root(
    o: &SpawnOptions,
    id: &str,
    persist: Option<&Persist>,
) -> Result<(PathBuf, Vec<String>, Option<TempRoot>)> {
    Ok(match &o.rootfs {
        Rootfs::Dir(d) => {
            (std::fs::canonicalize(d).ctx(|| format!("--rootfs {}", d.display()))?, Vec::new(), None)
        }
        Rootfs::HostRo => {
            let path = match persist {
                Some(pe) => pe.dir.join(PERSIST_ROOTFS),
                None => std::env::temp_dir().join(format!("karton-{id}")),
            };
            let guard = TempRoot { path: path.clone(), keep: false };
            let dirs = make_skeleton(&path)?;
            (std::fs::canonicalize(&path).ctx(|| format!("{}", path.display()))?, dirs, Some(guard))
        }
    })
}

fn run_planned(
    rt: &Runtime,
    id: &str,
    o: &SpawnOptions,
    p: &Plan,
    persist: Option<&mut Persist>,
) -> Result<i32> {
    let (rootfs, host_dirs, mut temp) = sandbox_root(o, id, persist.as_deref())?;
    let spec = build_spec(o, p, &rootfs, &host_dirs)?;
    let cfg = Config::from_spec(spec, format!("karton spawn {id}"));
    let opts = CreateOpts { bundle: rootfs.clone(), ..Default::default() };

    // As `run`: the init must come back to us even if a second fork makes it.
    let _ = karton_sys::process::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0);
    let sigs = crate::signals::Forwarder::block()?;
    let created = rt.create_from(id, cfg, &opts)?;
    let pid = created.pid;
    let pidfd = created.pidfd.try_clone().ctx(|| "dup pidfd".into());
    // The lock must go before `start` takes it again.
    drop(created);
    let started = pidfd.and_then(|fd| {
        if let Some(pe) = persist {
            pe.bind(pid)?;
        }
        rt.start(id)?;
        Ok(fd)
    });
    let pidfd = match started {
        Ok(fd) => fd,
        Err(e) => {
            if let Err(d) = rt.delete(id, true) {
                tracing::warn!("removing sandbox {id} after a failed start: {d}");
            }
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            return Err(e);
        }
    };
    let status = sigs.second_term_kills(p.has(NsType::Pid)).forward_until_exit(&pidfd);
    if let Err(e) = rt.delete(id, true) {
        tracing::warn!("deleting sandbox {id} after it exited: {e}");
    }
    if o.persist.is_some() {
        if let Some(t) = temp.as_mut() {
            t.keep = true;
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_id_ranges() {
        let a = IdRange { inside: 0, outside: 100, count: 10 };
        let b = IdRange { inside: 5, outside: 200, count: 10 };
        assert!(check_overlaps(&[a, b], "--uid-map").is_err());
        let c = IdRange { inside: 10, outside: 110, count: 1 };
        assert!(check_overlaps(&[a, c], "--uid-map").is_ok());
    }

    #[test]
    fn plan_rules() {
        let mut o = SpawnOptions::new(vec!["true".into()]);
        o.env.clear();
        let root = nix::unistd::geteuid().is_root();
        let p = plan(&o).expect("test value");
        if root {
            assert_eq!(
                p.namespaces,
                vec![NsType::Pid, NsType::Net, NsType::Ipc, NsType::Uts, NsType::Cgroup, NsType::Mnt]
            );
        }
        assert!(!p.persist_types.contains(&NsType::Pid));
        o.namespaces = NsChoice::List(vec![NsType::Pid]);
        if root {
            assert_eq!(plan(&o).expect("test value").namespaces, vec![NsType::Pid, NsType::Mnt]);
        }
        o.hostname = Some("h".into());
        assert!(plan(&o).expect_err("test error").to_string().contains("uts"));
        o.hostname = None;
        o.time_offsets = vec![TimeOffset { clock: Clock::Monotonic, secs: 1, nanos: 0 }];
        assert!(plan(&o).expect_err("test error").to_string().contains("time"));
        o.namespaces = NsChoice::Default;
        assert!(plan(&o).expect("test value").namespaces.contains(&NsType::Time));
        o.map_root = true;
        let p = plan(&o).expect("test value");
        assert!(p.namespaces.contains(&NsType::User));
        assert_eq!(p.uid_map.len(), 1);
        o.uid_map = vec![IdRange { inside: 0, outside: 1, count: 1 }];
        assert!(plan(&o).is_err());
        o.map_root = false;
        assert!(plan(&o).expect_err("test error").to_string().contains("--gid-map"));
        o.args.clear();
        assert!(plan(&o).expect_err("test error").to_string().contains("no command"));
    }

    #[test]
    fn spec_builds() {
        let mut o = SpawnOptions::new(vec!["sh".into()]);
        o.env = vec!["PATH=/usr/bin:/bin".into()];
        o.namespaces = NsChoice::List(vec![NsType::Pid, NsType::Uts, NsType::User, NsType::Time]);
        o.hostname = Some("box".into());
        o.time_offsets = vec![TimeOffset { clock: Clock::Boottime, secs: -2, nanos: 5 }];
        o.memory = Some(1 << 20);
        o.cpus = Some(0.5);
        let p = plan(&o).expect("test value");
        let spec = build_spec(&o, &p, Path::new("/tmp/x"), &["usr".into()]).expect("test value");
        let v = serde_json::to_value(&spec).expect("test value");
        assert_eq!(v["hostname"], "box");
        assert_eq!(v["linux"]["timeOffsets"]["boottime"]["secs"], -2);
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50000);
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], 1 << 20);
        assert_eq!(v["linux"]["rootfsPropagation"], "private");
        let mounts = v["mounts"].as_array().expect("test value");
        assert!(mounts.iter().any(|m| m["destination"] == "/usr" && m["options"][1] == "rro"));
        // user without net: the host's /sys, read-only.
        assert!(mounts.iter().any(|m| m["destination"] == "/sys" && m["type"] == "bind"));
        let cfg = Config::from_spec(spec, "test");
        crate::config::validate(&cfg, &crate::config::HostSupport::default()).expect("test value");
    }
}
