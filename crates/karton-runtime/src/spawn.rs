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
use serde_json::{json, Map, Value};

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

// ---- parsing of the command-line forms ----

/// Parses a comma list such as `pid,net,uts` (OCI names `network`, `mount` accepted).
pub fn parse_ns_list(s: &str) -> Result<Vec<NsType>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let t: NsType = part.parse().map_err(|e: String| bad(format!("--ns: {e}")))?;
        if !t.is_supported() {
            return Err(Error::Unsupported(format!(
                "--ns: namespace type {t} is not supported by this kernel (/proc/self/ns/{} does not exist): leave it out",
                t.proc_name()
            )));
        }
        out.push(t);
    }
    if out.is_empty() {
        return Err(bad(format!(
            "--ns {s:?}: no namespace type given: use a comma list such as pid,net,uts, or --all"
        )));
    }
    Ok(out)
}

/// Parses `INSIDE:OUTSIDE:COUNT` (`flag` names the option in messages).
pub fn parse_id_range(s: &str, flag: &str) -> Result<IdRange> {
    let parts: Vec<&str> = s.split(':').collect();
    let err = || {
        bad(format!("{flag} {s:?}: expected INSIDE:OUTSIDE:COUNT with non-negative integers and COUNT > 0, e.g. 0:100000:65536"))
    };
    if parts.len() != 3 {
        return Err(err());
    }
    let n = |p: &str| p.trim().parse::<u32>().map_err(|_| err());
    let r = IdRange { inside: n(parts[0])?, outside: n(parts[1])?, count: n(parts[2])? };
    if r.count == 0
        || r.inside.checked_add(r.count - 1).is_none()
        || r.outside.checked_add(r.count - 1).is_none()
    {
        return Err(err());
    }
    Ok(r)
}

/// Parses `SRC:DST[:ro]`; a relative SRC is taken from the current directory.
pub fn parse_bind(s: &str) -> Result<Bind> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        _ => {
            return Err(bad(format!(
                "--bind {s:?}: expected SRC:DST or SRC:DST:ro (DST an absolute path inside the sandbox)"
            )))
        }
    };
    if src.is_empty() || !dst.starts_with('/') {
        return Err(bad(format!(
            "--bind {s:?}: expected SRC:DST or SRC:DST:ro (DST an absolute path inside the sandbox)"
        )));
    }
    let source = std::fs::canonicalize(src).map_err(|e| bad(format!("--bind {s:?}: source {src}: {e}")))?;
    Ok(Bind { source, destination: PathBuf::from(dst), readonly: ro })
}

/// Parses `monotonic=SECS` or `boottime=SECS` (SECS may be negative and have a fraction).
pub fn parse_time_offset(s: &str) -> Result<TimeOffset> {
    let err = || {
        bad(format!("--time-offset {s:?}: expected monotonic=SECS or boottime=SECS, e.g. monotonic=86400 or boottime=-1.5"))
    };
    let (clock, val) = s.split_once('=').ok_or_else(err)?;
    let clock = match clock.trim() {
        "monotonic" => Clock::Monotonic,
        "boottime" => Clock::Boottime,
        _ => return Err(err()),
    };
    let val = val.trim();
    let (neg, digits) = match val.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, val.strip_prefix('+').unwrap_or(val)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || frac.len() > 9
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(err());
    }
    let secs: i64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| err())? };
    let nanos: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().map_err(|_| err())? };
    // The kernel wants nanos in [0, 1e9): -1.5 s is -2 s + 0.5e9 ns.
    let (secs, nanos) = match (neg, nanos) {
        (false, n) => (secs, n),
        (true, 0) => (-secs, 0),
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    };
    Ok(TimeOffset { clock, secs, nanos })
}

/// Parses a size: bytes, or a number with k, m, g or t (powers of 1024; `b`/`ib` allowed).
pub fn parse_size(s: &str, flag: &str) -> Result<i64> {
    let err =
        || bad(format!("{flag} {s:?}: expected a size in bytes, optionally with k, m, g or t, e.g. 512m"));
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.strip_suffix("ib").or_else(|| lower.strip_suffix('b')).unwrap_or(&lower);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v = if num.contains('.') {
        let f: f64 = num.parse().map_err(|_| err())?;
        if !f.is_finite() || f <= 0.0 {
            return Err(err());
        }
        (f * mult as f64) as i64
    } else {
        num.parse::<i64>().map_err(|_| err())?.checked_mul(mult).ok_or_else(err)?
    };
    if v <= 0 {
        return Err(err());
    }
    Ok(v)
}

/// Parses a positive process count.
pub fn parse_pids(s: &str) -> Result<i64> {
    match s.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(bad(format!("--pids {s:?}: expected a positive number of processes"))),
    }
}

/// Parses a number of CPUs (0.01 or more).
pub fn parse_cpus(s: &str) -> Result<f64> {
    match s.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.01 => Ok(f),
        _ => Err(bad(format!("--cpus {s:?}: expected a number of CPUs of 0.01 or more, e.g. 0.5"))),
    }
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
    let user = set.contains(&NsType::User);
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
    let (uid_map, gid_map) = if user && o.uid_map.is_empty() {
        // --map-root, and the default for a user namespace: sandbox root is the caller.
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        (
            vec![IdRange { inside: 0, outside: uid, count: 1 }],
            vec![IdRange { inside: 0, outside: gid, count: 1 }],
        )
    } else {
        (o.uid_map.clone(), o.gid_map.clone())
    };
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
fn bounding_caps() -> Vec<String> {
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
        // Only names this oci-spec version knows; an unknown one would fail the whole spec.
        .filter(|n| serde_json::from_value::<oci_spec::runtime::Capability>(json!(n)).is_ok())
        .map(|n| n.to_string())
        .collect()
}

fn id_maps(maps: &[IdRange]) -> Value {
    Value::Array(
        maps.iter().map(|m| json!({"containerID": m.inside, "hostID": m.outside, "size": m.count})).collect(),
    )
}

fn mounts(o: &SpawnOptions, p: &Plan, host_dirs: &[String]) -> Vec<Value> {
    let user = p.has(NsType::User);
    let mut v = Vec::new();
    for d in host_dirs {
        v.push(json!({"destination": format!("/{d}"), "type": "bind", "source": format!("/{d}"), "options": ["rbind", "rro"]}));
    }
    if user && !p.has(NsType::Pid) {
        // A user namespace may mount procfs only for a pid namespace it owns.
        v.push(json!({"destination": "/proc", "type": "bind", "source": "/proc", "options": ["rbind"]}));
    } else {
        v.push(json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}));
    }
    v.push(json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}));
    let mut pts = vec!["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"];
    if !user {
        // gid 5 (tty) exists only where the host's ids are.
        pts.push("gid=5");
    }
    v.push(json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": pts}));
    v.push(json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}));
    if p.has(NsType::Ipc) {
        v.push(json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}));
    }
    if p.has(NsType::Net) {
        v.push(json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}));
        if !user {
            v.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
        }
    } else {
        // sysfs shows the network devices of the mounter's network namespace: without a
        // new one, a fresh sysfs is refused; show the host's read-only.
        v.push(json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "rro", "nosuid", "noexec", "nodev"]}));
    }
    if o.rootfs == Rootfs::HostRo {
        v.push(json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}));
        v.push(json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=755"]}));
    }
    for b in &o.binds {
        let mut opts = vec!["rbind"];
        if b.readonly {
            opts.push("rro");
        }
        v.push(json!({"destination": b.destination, "type": "bind", "source": b.source, "options": opts}));
    }
    v
}

/// The OCI spec of a sandbox whose root filesystem is `rootfs` (for the host-ro root, the
/// skeleton made by [`make_skeleton`], whose directories are listed in `host_dirs`).
pub fn build_spec(
    o: &SpawnOptions,
    p: &Plan,
    rootfs: &Path,
    host_dirs: &[String],
) -> Result<oci_spec::runtime::Spec> {
    let defaults = crate::defaults::default_spec(false, 0, 0);
    let caps = bounding_caps();
    let mut linux = Map::new();
    linux.insert(
        "namespaces".into(),
        Value::Array(p.namespaces.iter().map(|t| json!({"type": t.oci_name()})).collect()),
    );
    if p.has(NsType::User) {
        linux.insert("uidMappings".into(), id_maps(&p.uid_map));
        linux.insert("gidMappings".into(), id_maps(&p.gid_map));
    }
    if !o.time_offsets.is_empty() {
        let mut m = Map::new();
        for t in &o.time_offsets {
            m.insert(t.clock.name().into(), json!({"secs": t.secs, "nanosecs": t.nanos}));
        }
        linux.insert("timeOffsets".into(), Value::Object(m));
    }
    let mut res = Map::new();
    if nix::unistd::geteuid().is_root() {
        // Device access: the default devices only, as any container.
        res.insert("devices".into(), json!([{"allow": false, "access": "rwm"}]));
    }
    if let Some(m) = o.memory {
        res.insert("memory".into(), json!({"limit": m}));
    }
    if let Some(n) = o.pids {
        res.insert("pids".into(), json!({"limit": n}));
    }
    if let Some(c) = o.cpus {
        let period: u64 = 100_000;
        res.insert("cpu".into(), json!({"quota": (c * period as f64).round() as i64, "period": period}));
    }
    if !res.is_empty() {
        linux.insert("resources".into(), Value::Object(res));
    }
    linux.insert("maskedPaths".into(), defaults["linux"]["maskedPaths"].clone());
    linux.insert("readonlyPaths".into(), defaults["linux"]["readonlyPaths"].clone());
    // Private, not slave: nothing mounted on the host later (e.g. the --persist bind
    // mounts) may propagate into the sandbox, and nothing from it to the host.
    linux.insert("rootfsPropagation".into(), json!("private"));

    let mut spec = json!({
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": o.args,
            "env": o.env,
            "cwd": p.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": false
        },
        "root": {"path": rootfs, "readonly": o.rootfs == Rootfs::HostRo},
        "mounts": mounts(o, p, host_dirs),
        "linux": Value::Object(linux),
    });
    if let Some(h) = &o.hostname {
        spec["hostname"] = json!(h);
    }
    serde_json::from_value(spec).map_err(|e| Error::Config(format!("building the sandbox's spec: {e}")))
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

fn run_planned(
    rt: &Runtime,
    id: &str,
    o: &SpawnOptions,
    p: &Plan,
    persist: Option<&mut Persist>,
) -> Result<i32> {
    // The host-ro skeleton; kept with --persist, as the persisted mount namespace has its
    // mounts on these directories (removing one would detach them there).
    let (rootfs, host_dirs, mut temp) = match &o.rootfs {
        Rootfs::Dir(d) => {
            (std::fs::canonicalize(d).ctx(|| format!("--rootfs {}", d.display()))?, Vec::new(), None)
        }
        Rootfs::HostRo => {
            let path = match persist.as_ref() {
                Some(pe) => pe.dir.join(PERSIST_ROOTFS),
                None => std::env::temp_dir().join(format!("karton-{id}")),
            };
            let guard = TempRoot { path: path.clone(), keep: false };
            let dirs = make_skeleton(&path)?;
            (std::fs::canonicalize(&path).ctx(|| format!("{}", path.display()))?, dirs, Some(guard))
        }
    };
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
    fn ns_list() {
        assert_eq!(parse_ns_list("pid,net").expect("test value"), vec![NsType::Pid, NsType::Net]);
        assert_eq!(parse_ns_list("network,mount").expect("test value"), vec![NsType::Net, NsType::Mnt]);
        let e = parse_ns_list("pid,bogus").expect_err("test error").to_string();
        assert!(e.contains("bogus") && !e.contains('\n'), "{e}");
        assert!(parse_ns_list(",").is_err());
    }

    #[test]
    fn id_ranges() {
        assert_eq!(
            parse_id_range("0:1000:1", "--uid-map").expect("test value"),
            IdRange { inside: 0, outside: 1000, count: 1 }
        );
        for b in ["0:1000", "a:b:c", "0:1:0", "0:1:1:1", "4294967295:0:2"] {
            assert!(parse_id_range(b, "--uid-map").is_err(), "{b}");
        }
        let a = IdRange { inside: 0, outside: 100, count: 10 };
        let b = IdRange { inside: 5, outside: 200, count: 10 };
        assert!(check_overlaps(&[a, b], "--uid-map").is_err());
        let c = IdRange { inside: 10, outside: 110, count: 1 };
        assert!(check_overlaps(&[a, c], "--uid-map").is_ok());
    }

    #[test]
    fn time_offsets() {
        assert_eq!(
            parse_time_offset("monotonic=10").expect("test value"),
            TimeOffset { clock: Clock::Monotonic, secs: 10, nanos: 0 }
        );
        assert_eq!(
            parse_time_offset("boottime=-1.5").expect("test value"),
            TimeOffset { clock: Clock::Boottime, secs: -2, nanos: 500_000_000 }
        );
        assert_eq!(
            parse_time_offset("boottime=-3").expect("test value"),
            TimeOffset { clock: Clock::Boottime, secs: -3, nanos: 0 }
        );
        for b in ["realtime=1", "monotonic", "monotonic=x", "monotonic=1.0000000001", "monotonic="] {
            assert!(parse_time_offset(b).is_err(), "{b}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512m", "--memory").expect("test value"), 512 << 20);
        assert_eq!(parse_size("1G", "--memory").expect("test value"), 1 << 30);
        assert_eq!(parse_size("4096", "--memory").expect("test value"), 4096);
        assert_eq!(parse_size("64kb", "--memory").expect("test value"), 64 << 10);
        assert_eq!(parse_size("1.5k", "--memory").expect("test value"), 1536);
        for b in ["", "m", "-1", "0", "12x", "99999999999999999999"] {
            assert!(parse_size(b, "--memory").is_err(), "{b}");
        }
        assert!(parse_pids("0").is_err());
        assert!(parse_cpus("0.001").is_err());
        assert_eq!(parse_cpus("0.5").expect("test value"), 0.5);
    }

    #[test]
    fn binds() {
        let b = parse_bind("/etc:/mnt/etc:ro").expect("test value");
        assert!(b.readonly && b.destination == Path::new("/mnt/etc"));
        assert!(parse_bind("/etc:relative").is_err());
        assert!(parse_bind("/does/not/exist:/x").is_err());
        assert!(parse_bind("/etc:/x:rx").is_err());
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
