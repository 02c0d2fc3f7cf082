//! `karton spec` (runc's default config.json) and `karton features`.

use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilities, LinuxCapabilitiesBuilder,
    LinuxDeviceCgroupBuilder, LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use serde_json::{json, Value};
use std::path::PathBuf;

/// The paths of the default config that read as empty.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// The paths of the default config mounted read-only.
pub const READONLY_PATHS: &[&str] =
    &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The devpts options of the default config; `gid=5` (tty) only where the host's ids are.
pub fn devpts_options(with_tty_gid: bool) -> Vec<String> {
    let mut o = strings(&["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]);
    if with_tty_gid {
        o.push("gid=5".into());
    }
    o
}

pub(crate) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A mount entry; no options when `options` is empty.
pub fn mount(
    destination: impl Into<PathBuf>,
    typ: &str,
    source: impl Into<PathBuf>,
    options: &[&str],
) -> Mount {
    let b = MountBuilder::default().destination(destination.into()).typ(typ).source(source.into());
    let b = if options.is_empty() { b } else { b.options(strings(options)) };
    b.build().expect("Mount builder without id mappings")
}

/// A new namespace of type `typ` (no path).
pub fn namespace(typ: LinuxNamespaceType) -> LinuxNamespace {
    LinuxNamespaceBuilder::default().typ(typ).build().expect("LinuxNamespace builder with its type set")
}

/// One line of a uid or gid map.
pub fn id_mapping(container_id: u32, host_id: u32, size: u32) -> LinuxIdMapping {
    LinuxIdMappingBuilder::default()
        .container_id(container_id)
        .host_id(host_id)
        .size(size)
        .build()
        .expect("LinuxIdMapping builder with all fields set")
}

/// `caps` as the bounding, effective and permitted sets (no inheritable or ambient ones).
pub fn capabilities(caps: Capabilities) -> LinuxCapabilities {
    let mut c = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()
        .expect("LinuxCapabilities builder");
    // Unset fields of a builder take the type's Default, which fills every set.
    c.set_inheritable(None);
    c.set_ambient(None);
    c
}

/// The default config as a typed spec, as `runc spec` writes it; `rootless` maps the
/// caller's ids into a user namespace and drops what an unprivileged user cannot have.
/// Longer than a screen: it is the spec's text as builder calls, in the order `runc spec`
/// writes the fields, and reads best whole beside that file.
pub fn default_oci_spec(rootless: bool, uid: u32, gid: u32) -> Spec {
    use LinuxNamespaceType as Ns;
    let caps: Capabilities =
        [Capability::AuditWrite, Capability::Kill, Capability::NetBindService].into_iter().collect();
    let process = ProcessBuilder::default()
        .terminal(true)
        .user(UserBuilder::default().uid(0u32).gid(0u32).build().expect("User builder"))
        .args(strings(&["sh"]))
        .env(strings(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"]))
        .cwd("/")
        .capabilities(capabilities(caps))
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(1024u64)
            .soft(1024u64)
            .build()
            .expect("PosixRlimit builder")])
        .no_new_privileges(true)
        .build()
        .expect("Process builder");
    let mut devpts = mount("/dev/pts", "devpts", "devpts", &[]);
    devpts.set_options(Some(devpts_options(!rootless)));
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &[]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        devpts,
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
    ];
    if rootless {
        // Without a network namespace sysfs cannot be mounted fresh; bind the host's.
        mounts.push(mount("/sys", "none", "/sys", &["rbind", "nosuid", "noexec", "nodev", "ro"]));
    } else {
        mounts.push(mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]));
        mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ));
    }
    let linux =
        LinuxBuilder::default().masked_paths(strings(MASKED_PATHS)).readonly_paths(strings(READONLY_PATHS));
    let mut linux = if rootless {
        linux
            .uid_mappings(vec![id_mapping(0, uid, 1)])
            .gid_mappings(vec![id_mapping(0, gid, 1)])
            .namespaces([Ns::Pid, Ns::Ipc, Ns::Uts, Ns::Mount, Ns::Cgroup, Ns::User].map(namespace).to_vec())
    } else {
        linux
            .resources(
                LinuxResourcesBuilder::default()
                    .devices(vec![LinuxDeviceCgroupBuilder::default()
                        .allow(false)
                        .access("rwm")
                        .build()
                        .expect("LinuxDeviceCgroup builder")])
                    .build()
                    .expect("LinuxResources builder"),
            )
            .namespaces(
                [Ns::Pid, Ns::Network, Ns::Ipc, Ns::Uts, Ns::Mount, Ns::Cgroup].map(namespace).to_vec(),
            )
    }
    .build()
    .expect("Linux builder");
    if rootless {
        // A builder's unset field takes the type's Default, which has resources.
        linux.set_resources(None);
    }
    let mut spec = SpecBuilder::default()
        .version(crate::container::OCI_VERSION)
        .process(process)
        .root(RootBuilder::default().path("rootfs").readonly(true).build().expect("Root builder"))
        .hostname("karton")
        .mounts(mounts)
        .linux(linux)
        .build()
        .expect("Spec builder");
    // Spec's Default has an empty annotations map; `karton spec` writes none.
    spec.set_annotations(None);
    spec
}

/// [`default_oci_spec`] as JSON (what `karton spec` writes), for callers that adjust it by
/// key. Capability lists are sorted, so the text is the same on every run.
pub fn default_spec(rootless: bool, uid: u32, gid: u32) -> Value {
    let mut v = serde_json::to_value(default_oci_spec(rootless, uid, gid)).expect("a Spec serializes");
    if let Some(caps) = v.pointer_mut("/process/capabilities").and_then(Value::as_object_mut) {
        for set in caps.values_mut() {
            if let Some(list) = set.as_array_mut() {
                list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            }
        }
    }
    v
}

/// What this runtime supports, in the runtime-spec "features" shape. Only what works.
pub fn features() -> Value {
    let caps: Vec<&str> =
        karton_sys::caps::NAMES.iter().take(karton_sys::caps::last_cap() as usize + 1).copied().collect();
    let host = crate::config::HostSupport::detect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::container::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": crate::mounts::KNOWN_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": crate::seccomp::features(),
            // Enabled exactly when a label is applied (crate::lsm: the host has the LSM and
            // the init writes the exec attribute); otherwise validation refuses the field.
            // mountLabel is never applied.
            "apparmor": {"enabled": host.apparmor},
            "selinux": {"enabled": host.selinux},
            "intelRdt": {"enabled": false},
            "memoryPolicy": {
                "modes": ["MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED", "MPOL_PREFERRED_MANY", "MPOL_LOCAL"],
                "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]
            },
            "mountExtensions": {"idmap": {"enabled": false}},
            "netDevices": {"enabled": false}
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "io.github.karton.version": env!("CARGO_PKG_VERSION")
        },
        "potentiallyUnsafeConfigAnnotations": []
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `karton spec` writes exactly this text (it was built as JSON by key before the typed
    /// builders; the files are that output).
    #[test]
    fn default_spec_text_is_pinned() {
        let text = |r, u, g| serde_json::to_string_pretty(&default_spec(r, u, g)).expect("test value") + "\n";
        assert_eq!(text(false, 0, 0), include_str!("testdata/default-spec.json"));
        assert_eq!(text(true, 1000, 1001), include_str!("testdata/default-spec-rootless.json"));
    }
}
