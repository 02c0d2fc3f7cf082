//! The namespace matrix: configurations and the bundles (config.json) that realize them.
//!
//! karton requires a mount namespace in every container, so "X alone" means mount + X and
//! "mnt" alone is the baseline container; "bare" is a plain host process.

use std::path::{Path, PathBuf};

use karton_runtime::defaults::{capabilities, devpts_options, id_mapping, mount, namespace};
use oci_spec::runtime::{
    Capability, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespace,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResourcesBuilder, RootBuilder, Spec,
};

use crate::results::ConfigInfo;
use crate::BenchError;

/// The eight namespace types, as config.json names them.
pub const ALL_NS: &[&str] = &["mount", "uts", "ipc", "pid", "network", "user", "cgroup", "time"];

/// Host ids the user namespace maps container root to.
pub const MAP_HOST_ID: u32 = 100_000;
pub const MAP_SIZE: u32 = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A host process: `karton workload` run directly.
    Bare,
    Karton,
    Runc,
    Crun,
    /// The lifecycle wrapper alone (unshare -m + umount + sh), no container.
    Wrapper,
    /// The floor: `unshare -pfniuC --mount-proc true`, the namespaces without a runtime.
    Floor,
}

/// One configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub description: String,
    pub kind: Kind,
    pub namespaces: Vec<&'static str>,
    pub cgroup_limits: bool,
    pub seccomp: bool,
    /// The rootless shape: a single-id mapping, no network namespace, no cgroup resources.
    pub rootless: bool,
    /// Lifecycle and density: where the runtime's process runs.
    pub placement: Placement,
}

/// Where a lifecycle or density command runs. Debian's crun 1.8 refuses this host's hybrid
/// cgroup layout, so runtimes are compared either under the same per-command wrapper or
/// all in one layout every runtime accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// On the host as it is (karton drives the hybrid layout).
    Host,
    /// Inside [`WRAPPER`]: a new private mount namespace per command, made by two extra
    /// programs (unshare, sh) that are timed with the runtime.
    Wrapper,
    /// In the prepared layout: one private mount namespace with the cgroup2 mount hidden,
    /// made once per benchmark run; each command's own process enters it right before
    /// execve (setns), so only the runtime is timed.
    Prepared,
}

/// Suffix of the lifecycle configurations in the prepared layout ("karton-nowrap", …).
pub const NOWRAP: &str = "-nowrap";

/// The wrapper every lifecycle and density command runs in: a private mount namespace that
/// hides the cgroup2 mount, because Debian's crun 1.8 refuses a hybrid cgroup layout.
/// Nothing changes on the host. `sh -c` gets the command as "$@" (no quoting issues).
pub const WRAPPER: &[&str] = &[
    "unshare",
    "-m",
    "--propagation",
    "private",
    "sh",
    "-c",
    "umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$@\"",
    "wrapped",
];

impl Config {
    fn new(name: &str, description: String, kind: Kind, namespaces: Vec<&'static str>) -> Self {
        Self {
            name: name.into(),
            description,
            kind,
            namespaces,
            cgroup_limits: false,
            seccomp: false,
            rootless: false,
            placement: Placement::Host,
        }
    }

    fn wrapped(mut self) -> Self {
        self.placement = Placement::Wrapper;
        self
    }

    /// The same configuration in the prepared layout, named with [`NOWRAP`].
    fn unwrapped(&self) -> Self {
        let mut c = self.clone();
        c.name = format!("{}{NOWRAP}", self.name);
        c.description = self.description.replace(
            "in the wrapper",
            "in the prepared layout (no wrapper: the runtime's process enters one private mount namespace without the cgroup2 mount before execve)",
        );
        c.placement = Placement::Prepared;
        c
    }

    pub fn info(&self) -> ConfigInfo {
        let user_mapping = self.namespaces.contains(&"user").then(|| {
            if self.rootless {
                format!("0→{MAP_HOST_ID} size 1")
            } else {
                format!("0→{MAP_HOST_ID} size {MAP_SIZE}")
            }
        });
        ConfigInfo {
            name: self.name.clone(),
            description: self.description.clone(),
            runtime: match self.kind {
                Kind::Bare => "bare",
                Kind::Karton => "karton",
                Kind::Runc => "runc",
                Kind::Crun => "crun",
                Kind::Wrapper => "wrapper",
                Kind::Floor => "unshare",
            }
            .into(),
            namespaces: self.namespaces.iter().map(|s| s.to_string()).collect(),
            cgroup_limits: self.cgroup_limits,
            seccomp: self.seccomp,
            user_mapping,
        }
    }
}

fn short(ns: &str) -> &str {
    match ns {
        "mount" => "mnt",
        "network" => "net",
        other => other,
    }
}

/// Every configuration of the workload matrix, in report order.
pub fn workload_configs() -> Vec<Config> {
    let mut v = vec![
        Config::new(
            "bare",
            "host process, no runtime (the baseline of every ratio)".into(),
            Kind::Bare,
            vec![],
        ),
        Config::new(
            "bare-2",
            "host process again: the bare-vs-bare sanity row (ratio should be 1)".into(),
            Kind::Bare,
            vec![],
        ),
        Config::new(
            "mnt",
            "mount namespace alone: the minimal karton container".into(),
            Kind::Karton,
            vec!["mount"],
        ),
    ];
    for ns in ALL_NS.iter().filter(|n| **n != "mount") {
        v.push(Config::new(
            &format!("+{}", short(ns)),
            format!("mount + {ns} namespace"),
            Kind::Karton,
            vec!["mount", ns],
        ));
    }
    for ns in ALL_NS.iter().filter(|n| **n != "mount") {
        let rest: Vec<&'static str> = ALL_NS.iter().copied().filter(|n| n != ns).collect();
        v.push(Config::new(
            &format!("all-{}", short(ns)),
            format!("all eight namespaces but {ns}"),
            Kind::Karton,
            rest,
        ));
    }
    v.push(Config::new("all", "all eight namespaces".into(), Kind::Karton, ALL_NS.to_vec()));
    let mut cg = Config::new(
        "all+cg",
        "all eight + cgroup limits (memory 4 GiB, cpu quota 2 CPUs, pids 4096)".into(),
        Kind::Karton,
        ALL_NS.to_vec(),
    );
    cg.cgroup_limits = true;
    v.push(cg.clone());
    let mut sc = cg;
    sc.name = "all+cg+seccomp".into();
    sc.description = "all eight + cgroup limits + the default seccomp profile".into();
    sc.seccomp = true;
    v.push(sc);
    let mut rl = Config::new(
        "rootless",
        format!("rootless shape: user namespace mapping only container root (→ {MAP_HOST_ID}), no network namespace, no cgroup limits"),
        Kind::Karton,
        vec!["pid", "ipc", "uts", "mount", "cgroup", "user"],
    );
    rl.rootless = true;
    v.push(rl);
    v
}

/// Configurations of the lifecycle workload (create → start → exit → delete). Every
/// runtime runs inside the same [`WRAPPER`], and again in the prepared layout (the
/// `-nowrap` rows, [`Placement::Prepared`]); `karton-hybrid` is karton on the host as it is
/// (the path that sees the hybrid layout), `wrapper` the wrapper alone and `unshare` the
/// floor.
pub fn lifecycle_configs() -> Vec<Config> {
    let default_ns = vec!["pid", "network", "ipc", "uts", "mount", "cgroup"];
    let mut v = vec![
        Config::new(
            "karton",
            "karton, `karton spec` defaults (pid, net, ipc, uts, mount, cgroup), in the wrapper".into(),
            Kind::Karton,
            default_ns.clone(),
        )
        .wrapped(),
        Config::new("crun", "crun, the same config.json, in the wrapper".into(), Kind::Crun, default_ns.clone())
            .wrapped(),
        Config::new("runc", "runc, the same config.json, in the wrapper".into(), Kind::Runc, default_ns.clone())
            .wrapped(),
        Config::new(
            "unshare",
            "the floor: `unshare -pfniuC --mount-proc true` (the same namespaces, no runtime), in the wrapper"
                .into(),
            Kind::Floor,
            vec![],
        )
        .wrapped(),
    ];
    let unwrapped: Vec<Config> = v.iter().map(Config::unwrapped).collect();
    v.extend(unwrapped);
    v.extend([
        Config::new(
            "wrapper",
            "the wrapper alone: unshare -m + umount of the cgroup2 mount + sh, no container".into(),
            Kind::Wrapper,
            vec![],
        ),
        Config::new(
            "karton-mnt",
            "karton, mount namespace only, in the wrapper".into(),
            Kind::Karton,
            vec!["mount"],
        )
        .wrapped(),
        Config::new(
            "karton-all",
            "karton, all eight namespaces, in the wrapper".into(),
            Kind::Karton,
            ALL_NS.to_vec(),
        )
        .wrapped(),
        Config::new(
            "karton-hybrid",
            "karton without the wrapper: it drives the hybrid layout (v1 + the cgroup2 mount)".into(),
            Kind::Karton,
            default_ns,
        ),
    ]);
    v
}

/// Looks configurations up by name; unknown names → the list of valid ones.
pub fn select(all: &[Config], names: &[String]) -> Result<Vec<Config>, BenchError> {
    names
        .iter()
        .map(|n| {
            all.iter().find(|c| &c.name == n).cloned().ok_or_else(|| BenchError::UnknownConfig {
                name: n.clone(),
                valid: all.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "),
            })
        })
        .collect()
}

fn spec_error(e: oci_spec::OciSpecError) -> BenchError {
    BenchError::Setup(format!("building the config.json: {e}"))
}

/// The configuration's namespaces, as config.json lists them.
fn namespaces(c: &Config) -> Result<Vec<LinuxNamespace>, BenchError> {
    c.namespaces
        .iter()
        .map(|n| Ok(namespace(LinuxNamespaceType::try_from(*n).map_err(spec_error)?)))
        .collect()
}

/// Container root mapped to [`MAP_HOST_ID`] and the [`MAP_SIZE`] ids after it.
fn map_ids(spec: &mut Spec) {
    if let Some(linux) = spec.linux_mut() {
        linux.set_uid_mappings(Some(vec![id_mapping(0, MAP_HOST_ID, MAP_SIZE)]));
        linux.set_gid_mappings(Some(vec![id_mapping(0, MAP_HOST_ID, MAP_SIZE)]));
    }
}

/// The config.json of a workload container: `karton spec` defaults, adjusted to the
/// configuration, running `args` with the karton binary at /karton.
pub fn workload_spec(c: &Config, rootfs: &Path, args: &[String]) -> Result<Spec, BenchError> {
    let mut spec = karton_runtime::defaults::default_oci_spec(c.rootless, MAP_HOST_ID, MAP_HOST_ID);
    let ns = |n: &str| c.namespaces.contains(&n);
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(false));
        process.set_args(Some(args.to_vec()));
        // CAP_NET_ADMIN: the tcp workload brings a new network namespace's loopback up.
        process.set_capabilities(Some(capabilities(
            [Capability::AuditWrite, Capability::Kill, Capability::NetBindService, Capability::NetAdmin]
                .into_iter()
                .collect(),
        )));
    }
    spec.set_root(Some(RootBuilder::default().path(rootfs).readonly(false).build().map_err(spec_error)?));
    if let Some(linux) = spec.linux_mut() {
        linux.set_namespaces(Some(namespaces(c)?));
    }
    drop_hostname_without_uts(&mut spec, c);
    // The workloads need /proc, /dev and a tmpfs; /sys, the cgroup mount and /dev/mqueue
    // are dropped (none is needed, and some cannot be mounted in every configuration).
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.retain(|m| {
        let d = m.destination().to_string_lossy();
        !(d.starts_with("/sys") || d == "/dev/mqueue")
    });
    if ns("user") && !ns("pid") {
        // proc of a pid namespace the user namespace does not own cannot be mounted fresh.
        for m in mounts.iter_mut().filter(|m| m.destination() == Path::new("/proc")) {
            *m = mount("/proc", "none", "/proc", &["rbind", "nosuid", "noexec", "nodev"]);
        }
    }
    if ns("user") && !c.rootless {
        // gid=5 of devpts exists in the 65536-id mapping; the rootless shape maps one id.
    } else if c.rootless {
        for m in mounts.iter_mut().filter(|m| m.destination() == Path::new("/dev/pts")) {
            m.set_options(Some(devpts_options(false)));
        }
    }
    mounts.push(mount("/tmp", "tmpfs", "tmpfs", &["nosuid", "nodev", "mode=1777", "size=2g"]));
    spec.set_mounts(Some(mounts));
    if ns("user") && !c.rootless {
        map_ids(&mut spec);
    }
    if c.cgroup_limits {
        let resources = LinuxResourcesBuilder::default()
            .devices(vec![LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .map_err(spec_error)?])
            .memory(LinuxMemoryBuilder::default().limit(4i64 << 30).build().map_err(spec_error)?)
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(1024u64)
                    .quota(200_000i64)
                    .period(100_000u64)
                    .build()
                    .map_err(spec_error)?,
            )
            .pids(LinuxPidsBuilder::default().limit(4096i64).build().map_err(spec_error)?)
            .build()
            .map_err(spec_error)?;
        if let Some(linux) = spec.linux_mut() {
            linux.set_resources(Some(resources));
        }
    }
    if c.seccomp {
        if let Some(linux) = spec.linux_mut() {
            linux.set_seccomp(Some(karton_runtime::seccomp::default_profile()));
        }
    }
    Ok(spec)
}

/// The config.json of a lifecycle container: `karton spec` defaults running /bin/true,
/// with the configuration's namespaces.
pub fn lifecycle_spec(c: &Config, rootfs: &Path) -> Result<Spec, BenchError> {
    let mut spec = karton_runtime::defaults::default_oci_spec(false, 0, 0);
    // One config.json for every runtime: crun 1.8 rejects newer spec versions.
    spec.set_version("1.0.2".into());
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(false));
        process.set_args(Some(vec!["/bin/true".into()]));
    }
    spec.set_root(Some(RootBuilder::default().path(rootfs).readonly(true).build().map_err(spec_error)?));
    if let Some(linux) = spec.linux_mut() {
        linux.set_namespaces(Some(namespaces(c)?));
    }
    drop_hostname_without_uts(&mut spec, c);
    if c.namespaces.contains(&"user") {
        map_ids(&mut spec);
    }
    if !c.namespaces.contains(&"network") || c.namespaces.contains(&"user") {
        // sysfs needs a network namespace (owned by the container's user namespace).
        let mounts = spec.mounts().clone().unwrap_or_default();
        spec.set_mounts(Some(
            mounts
                .into_iter()
                .filter(|m| m.typ().as_deref() != Some("cgroup"))
                .map(|m| {
                    if m.destination() == Path::new("/sys") {
                        mount("/sys", "none", "/sys", &["rbind", "nosuid", "noexec", "nodev", "ro"])
                    } else {
                        m
                    }
                })
                .collect(),
        ));
    }
    Ok(spec)
}

/// A hostname needs its own uts namespace.
fn drop_hostname_without_uts(spec: &mut Spec, c: &Config) {
    if !c.namespaces.contains(&"uts") {
        spec.set_hostname(None);
    }
}

/// A busybox rootfs with the karton binary at /karton and the shared libraries it needs.
pub fn build_rootfs(dir: &Path, karton: &Path) -> Result<PathBuf, BenchError> {
    let rootfs = dir.join("rootfs");
    let io = |w: String| BenchError::io(w);
    for d in ["bin", "sbin", "usr/bin", "etc", "proc", "sys", "dev", "tmp", "root", "var/tmp"] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(io(format!("creating {}/{d}", rootfs.display())))?;
    }
    use std::os::unix::fs::PermissionsExt;
    for d in ["tmp", "var/tmp"] {
        std::fs::set_permissions(rootfs.join(d), std::fs::Permissions::from_mode(0o1777))
            .map_err(io(format!("chmod {d}")))?;
    }
    // Readable by the mapped root (uid 100000) of user-namespace configurations.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io(format!("chmod {}", dir.display())))?;
    let busybox =
        ["/bin/busybox", "/usr/bin/busybox"].iter().map(Path::new).find(|p| p.exists()).ok_or_else(|| {
            BenchError::Setup(
                "busybox not found: install busybox-static (the container rootfs is built from it)".into(),
            )
        })?;
    copy(busybox, &rootfs.join("bin/busybox"))?;
    for applet in ["sh", "true", "ip", "ls", "cat", "sleep"] {
        let link = rootfs.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link)
                .map_err(io(format!("linking {}", link.display())))?;
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )
    .map_err(io("writing etc/passwd".into()))?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n")
        .map_err(io("writing etc/group".into()))?;
    copy(karton, &rootfs.join("karton"))?;
    let mut bins = vec![karton.to_path_buf(), busybox.to_path_buf()];
    // sysbench, when installed, for the external workload (at the same path inside).
    if let Some(sb) =
        ["/usr/bin/sysbench", "/usr/local/bin/sysbench"].iter().map(Path::new).find(|p| p.exists())
    {
        let dest = rootfs.join(sb.strip_prefix("/").unwrap_or(sb));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
        }
        copy(sb, &dest)?;
        bins.push(sb.to_path_buf());
    }
    for lib in bins.iter().flat_map(|b| shared_libs(b)) {
        let dest = rootfs.join(lib.strip_prefix("/").unwrap_or(&lib));
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
        }
        copy(&lib, &dest)?;
    }
    Ok(rootfs)
}

fn copy(from: &Path, to: &Path) -> Result<(), BenchError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(from, to).map_err(BenchError::io(format!(
        "copying {} to {}",
        from.display(),
        to.display()
    )))?;
    let mode = std::fs::metadata(to).map(|m| m.permissions().mode()).unwrap_or(0o644);
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode | 0o444))
        .map_err(BenchError::io(format!("chmod {}", to.display())))
}

/// The shared libraries (and dynamic loader) a binary needs, from `ldd`; empty when static.
pub fn shared_libs(bin: &Path) -> Vec<PathBuf> {
    let Ok(out) = std::process::Command::new("ldd").arg(bin).output() else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn matrix_has_every_shape() {
        let all = workload_configs();
        let names: Vec<&str> = all.iter().map(|c| c.name.as_str()).collect();
        for n in [
            "bare",
            "bare-2",
            "mnt",
            "+net",
            "+user",
            "+time",
            "all-net",
            "all",
            "all+cg",
            "all+cg+seccomp",
            "rootless",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        assert_eq!(all.iter().filter(|c| c.name.starts_with('+')).count(), 7);
        assert_eq!(all.iter().filter(|c| c.name.starts_with("all-")).count(), 7);
        assert!(all.iter().filter(|c| c.kind == Kind::Karton).all(|c| c.namespaces.contains(&"mount")));
    }

    #[test]
    fn unknown_configuration_lists_valid_names() {
        let e = select(&workload_configs(), &["nope".into()]).unwrap_err().to_string();
        assert!(e.contains("all+cg") && e.contains("bare"), "{e}");
    }

    #[test]
    fn user_namespace_configs_get_mappings_and_limits_get_resources() {
        let all = workload_configs();
        let args = vec!["/karton".to_string()];
        let user = select(&all, &["+user".into()]).unwrap().remove(0);
        let s = serde_json::to_value(workload_spec(&user, Path::new("/r"), &args).unwrap()).unwrap();
        assert_eq!(s["linux"]["uidMappings"][0]["hostID"], MAP_HOST_ID);
        assert!(s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["destination"] == "/proc" && m["type"] == "none"));
        let cg = select(&all, &["all+cg".into()]).unwrap().remove(0);
        let s = serde_json::to_value(workload_spec(&cg, Path::new("/r"), &args).unwrap()).unwrap();
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], 4096);
        assert_eq!(s["linux"]["namespaces"].as_array().unwrap().len(), 8);
        let sc = select(&all, &["all+cg+seccomp".into()]).unwrap().remove(0);
        assert!(serde_json::to_value(workload_spec(&sc, Path::new("/r"), &args).unwrap()).unwrap()["linux"]
            ["seccomp"]
            .is_object());
    }
}
