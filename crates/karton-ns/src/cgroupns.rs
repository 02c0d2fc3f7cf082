//! Cgroup namespace roots.
//!
//! /proc/PID/cgroup prints paths relative to the cgroup namespace of the *reader*. The
//! root of a process's cgroup namespace is therefore found by reading its cgroup file
//! twice: once from here (full path) and once from a thread that has joined the
//! process's cgroup namespace (path below the namespace root); the root is the full path
//! minus that suffix. Works on v1, v2 and hybrid hosts, one line per hierarchy.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{NsError, Result};
use crate::handle::NsHandle;
use crate::NsType;

/// One line of /proc/PID/cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupLine {
    /// Hierarchy id: 0 is the cgroup v2 hierarchy.
    pub hierarchy: u32,
    /// Controllers bound to the hierarchy (`name=systemd` style names included); empty on v2.
    pub controllers: Vec<String>,
    pub path: String,
}

pub fn parse(text: &str, path: &Path) -> Result<Vec<CgroupLine>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut f = line.splitn(3, ':');
            let (Some(h), Some(c), Some(p)) = (f.next(), f.next(), f.next()) else {
                return Err(NsError::Parse {
                    path: path.into(),
                    line: line.into(),
                    reason: "expected id:controllers:path".into(),
                });
            };
            let hierarchy = h.parse().map_err(|_| NsError::Parse {
                path: path.into(),
                line: line.into(),
                reason: "hierarchy id is not a number".into(),
            })?;
            let controllers = c.split(',').filter(|s| !s.is_empty()).map(String::from).collect();
            Ok(CgroupLine { hierarchy, controllers, path: p.to_string() })
        })
        .collect()
}

pub fn of_pid(pid: i32) -> Result<Vec<CgroupLine>> {
    let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
    let text = std::fs::read_to_string(&path).map_err(|e| NsError::from_proc_io(pid, &path, e))?;
    parse(&text, &path)
}

/// A hierarchy as the process sees it: its cgroup, its namespace root, the path inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupNsView {
    pub hierarchy: u32,
    pub controllers: Vec<String>,
    /// The process's cgroup as the caller sees it.
    pub path: String,
    /// The cgroup namespace root as the caller sees it; `None` when it cannot be derived
    /// (the process sits outside its namespace root, or the namespace could not be joined).
    pub ns_root: Option<String>,
    /// The process's cgroup as the process itself sees it; `None` if not readable.
    pub path_in_ns: Option<String>,
}

/// The cgroup namespace view of `pid`.
///
/// Joining the namespace happens on a short-lived thread (cgroup namespaces are per
/// thread, and joining one needs no single-threaded process), so the caller is unchanged.
/// Needs CAP_SYS_ADMIN over the namespace; without it `ns_root` stays `None`.
pub fn view(pid: i32) -> Result<Vec<CgroupNsView>> {
    let outer = of_pid(pid)?;
    let same = crate::procfs::ns_id(pid, NsType::Cgroup)?
        == crate::procfs::ns_id(std::process::id() as i32, NsType::Cgroup)?;
    let inner: Option<Vec<CgroupLine>> = if same {
        Some(outer.clone())
    } else {
        let handle = NsHandle::of_pid(pid, NsType::Cgroup)?;
        std::thread::scope(|s| {
            s.spawn(|| {
                karton_sys::ns::setns(handle.file().as_fd(), NsType::Cgroup.clone_flag()).ok()?;
                of_pid(pid).ok()
            })
            .join()
            .ok()
            .flatten()
        })
    };
    Ok(outer
        .into_iter()
        .map(|o| {
            let path_in_ns = inner
                .as_ref()
                .and_then(|v| v.iter().find(|i| i.hierarchy == o.hierarchy && i.controllers == o.controllers))
                .map(|i| i.path.clone());
            let ns_root = path_in_ns.as_deref().and_then(|p| root_from(&o.path, p));
            CgroupNsView {
                hierarchy: o.hierarchy,
                controllers: o.controllers,
                path: o.path,
                ns_root,
                path_in_ns,
            }
        })
        .collect())
}

/// `full` minus the suffix `inner`; `None` when `inner` climbs out of the root (`/..`).
pub fn root_from(full: &str, inner: &str) -> Option<String> {
    if inner.split('/').any(|c| c == "..") {
        return None;
    }
    if inner == "/" {
        return Some(full.to_string());
    }
    let root = full.strip_suffix(inner)?;
    Some(if root.is_empty() { "/".to_string() } else { root.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_hybrid() {
        let v = parse("9:name=systemd:/\n4:memory:/a/b\n0::/\n", Path::new("t")).expect("test value");
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].controllers, vec!["name=systemd"]);
        assert_eq!(v[2].hierarchy, 0);
        assert!(v[2].controllers.is_empty());
        assert!(parse("x", Path::new("t")).is_err());
    }

    #[test]
    fn roots() {
        assert_eq!(root_from("/a/b/c", "/c").as_deref(), Some("/a/b"));
        assert_eq!(root_from("/a/b", "/").as_deref(), Some("/a/b"));
        assert_eq!(root_from("/a", "/a").as_deref(), Some("/"));
        assert_eq!(root_from("/a/b", "/../x"), None);
        assert_eq!(root_from("/a/b", "/zz"), None);
    }
}
