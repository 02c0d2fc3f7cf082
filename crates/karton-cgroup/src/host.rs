//! Which cgroup layout the host has, and where each controller is mounted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{fsutil, Error};

/// The cgroup layout of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only v1 hierarchies.
    V1,
    /// Only the cgroup2 hierarchy (usually at /sys/fs/cgroup).
    V2,
    /// v1 hierarchies plus a cgroup2 mount (usually /sys/fs/cgroup/unified).
    Hybrid,
}

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Mount {
    pub mount_point: PathBuf,
    /// The hierarchy path mounted there ("/" unless inside a cgroup namespace or a bind mount).
    pub root: String,
    /// Controllers co-mounted in this hierarchy ("name=systemd" for named hierarchies).
    pub controllers: Vec<String>,
}

/// The cgroup2 mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V2Mount {
    pub mount_point: PathBuf,
    pub root: String,
    /// Controllers the hierarchy has (its root's cgroup.controllers).
    pub controllers: Vec<String>,
}

/// The detected layout: mount points per controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    layout: Layout,
    /// Controller name → its hierarchy (co-mounted controllers share one entry's value).
    v1: BTreeMap<String, V1Mount>,
    v2: Option<V2Mount>,
}

/// v1 controllers the kernel may have; anything else in a cgroup mount's super options is
/// a mount option (rw, relatime, clone_children, ...), except `name=...`.
const V1_CONTROLLERS: &[&str] = &[
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
];

impl Host {
    /// Reads /proc/self/mountinfo.
    pub fn detect() -> Result<Host, Error> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fsutil::read(path)?;
        Host::from_mountinfo(&text)
    }

    /// Builds the layout from mountinfo text; reads each cgroup2 mount's cgroup.controllers.
    pub fn from_mountinfo(text: &str) -> Result<Host, Error> {
        let mut v1: BTreeMap<String, V1Mount> = BTreeMap::new();
        let mut v2: Option<V2Mount> = None;
        let mounts = karton_sys::mountinfo::parse_from(Path::new("/proc/self/mountinfo"), text).map_err(
            |e| match e {
                karton_sys::mountinfo::MountInfoError::Parse { path, text, reason, .. } => {
                    Error::Parse { path, content: text, reason: reason.to_string() }
                }
                karton_sys::mountinfo::MountInfoError::Read { path, source } => {
                    Error::io("reading", path, source)
                }
            },
        )?;
        for mi in mounts {
            let root = mi.root.to_string_lossy().into_owned();
            let mount_point = mi.mount_point.clone();
            match mi.fstype.as_str() {
                "cgroup2" if v2.is_none() => {
                    let controllers = fsutil::read_opt(&mount_point.join("cgroup.controllers"))?
                        .map(|s| s.split_whitespace().map(str::to_string).collect())
                        .unwrap_or_default();
                    v2 = Some(V2Mount { mount_point, root, controllers });
                }
                "cgroup" => {
                    let controllers: Vec<String> = mi
                        .super_opts()
                        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                        .map(str::to_string)
                        .collect();
                    let m = V1Mount { mount_point, root, controllers: controllers.clone() };
                    for c in controllers {
                        // The first mount of a hierarchy wins; later ones are bind mounts.
                        v1.entry(c).or_insert_with(|| m.clone());
                    }
                }
                _ => {}
            }
        }
        // A named hierarchy alone (name=systemd beside cgroup2) still makes a hybrid host:
        // processes must join it too, while every controller lives in cgroup2.
        let layout = match (!v1.is_empty(), v2.is_some()) {
            (true, true) => Layout::Hybrid,
            (true, false) => Layout::V1,
            (false, true) => Layout::V2,
            (false, false) => return Err(Error::NoCgroupFs),
        };
        Ok(Host { layout, v1, v2 })
    }

    /// A host with the given mounts, for tests and callers that know better than mountinfo.
    pub fn new(layout: Layout, v1: Vec<V1Mount>, v2: Option<V2Mount>) -> Host {
        let mut map = BTreeMap::new();
        for m in v1 {
            for c in &m.controllers {
                map.entry(c.clone()).or_insert_with(|| m.clone());
            }
        }
        Host { layout, v1: map, v2 }
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The v1 hierarchy that has `controller` (e.g. "memory", "name=systemd").
    pub fn v1_mount(&self, controller: &str) -> Option<&V1Mount> {
        self.v1.get(controller)
    }

    /// All v1 controllers mounted, by name.
    pub fn v1_controllers(&self) -> impl Iterator<Item = (&str, &V1Mount)> {
        self.v1.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn v2_mount(&self) -> Option<&V2Mount> {
        self.v2.as_ref()
    }

    /// The mount point of `controller`: its v1 hierarchy, else cgroup2 when it has it.
    pub fn mount_point(&self, controller: &str) -> Option<&Path> {
        if let Some(m) = self.v1.get(controller) {
            return Some(&m.mount_point);
        }
        self.v2
            .as_ref()
            .filter(|m| m.controllers.iter().any(|c| c == controller))
            .map(|m| m.mount_point.as_path())
    }
}

/// The directory of cgroup `path` (absolute, e.g. "/karton/x") in a hierarchy mounted at
/// `mount_point` whose mounted root is `root`.
pub(crate) fn dir_in(mount_point: &Path, root: &str, path: &str) -> PathBuf {
    let rel = if root != "/" {
        // Inside a cgroup namespace or a bind mount of a sub-tree: the mount shows `root`.
        path.strip_prefix(root).filter(|r| r.is_empty() || r.starts_with('/')).unwrap_or(path)
    } else {
        path
    };
    mount_point.join(rel.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /nonexistent/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_hybrid() {
        let h = Host::from_mountinfo(HYBRID).expect("parse");
        assert_eq!(h.layout(), Layout::Hybrid);
        assert_eq!(h.mount_point("memory"), Some(Path::new("/sys/fs/cgroup/memory")));
        assert!(h.v1_mount("name=systemd").is_some());
        assert!(h.v1_mount("xattr").is_none());
        assert_eq!(h.v2_mount().map(|m| m.mount_point.clone()), Some(PathBuf::from("/nonexistent/unified")));
    }

    #[test]
    fn parses_v1_comounted_and_v2_only() {
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n";
        let h = Host::from_mountinfo(v1).expect("parse");
        assert_eq!(h.layout(), Layout::V1);
        assert_eq!(h.mount_point("cpuacct"), Some(Path::new("/sys/fs/cgroup/cpu,cpuacct")));
        let v2 = "30 23 0:27 / /nonexistent/cg rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(Host::from_mountinfo(v2).expect("parse").layout(), Layout::V2);
        assert!(matches!(
            Host::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw\n"),
            Err(Error::NoCgroupFs)
        ));
    }

    #[test]
    fn unescapes_and_maps_dirs() {
        // A hierarchy whose mount point has a space: mountinfo shows it as \040.
        let h = Host::from_mountinfo(
            "32 31 0:29 /sub\\040dir /sys/fs/cgroup/mem\\040ory rw - cgroup cgroup rw,memory\n",
        )
        .expect("parse");
        let m = h.v1_mount("memory").expect("memory");
        assert_eq!(m.mount_point, Path::new("/sys/fs/cgroup/mem ory"));
        assert_eq!(m.root, "/sub dir");
        // A line that is not mountinfo is an error, not skipped.
        assert!(matches!(
            Host::from_mountinfo("32 31 0:29 / /x rw cgroup cgroup rw,memory\n"),
            Err(Error::Parse { .. })
        ));
        assert_eq!(dir_in(Path::new("/m"), "/", "/karton/x"), PathBuf::from("/m/karton/x"));
        assert_eq!(dir_in(Path::new("/m"), "/outer", "/outer/karton/x"), PathBuf::from("/m/karton/x"));
        assert_eq!(dir_in(Path::new("/m"), "/outer", "/karton/x"), PathBuf::from("/m/karton/x"));
    }
}
