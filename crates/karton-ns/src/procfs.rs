//! Small readers of /proc: process list, command lines, a process's namespace set.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{NsError, Result};
use crate::handle::NsId;
use crate::NsType;

/// The pids of all processes visible in /proc (thread-group leaders, not threads).
pub fn pids() -> Result<Vec<i32>> {
    let dir = std::fs::read_dir("/proc").map_err(|error| NsError::Io { path: "/proc".into(), error })?;
    let mut v: Vec<i32> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// True while /proc/<pid> exists.
pub fn exists(pid: i32) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The command line, arguments joined by spaces; for kernel threads (empty cmdline) the
/// comm in brackets, as ps shows them. `None` when the process is gone.
pub fn command(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        comm(pid).map(|c| format!("[{c}]"))
    } else {
        Some(args.join(" "))
    }
}

pub fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim_end().to_string())
}

/// One field of /proc/<pid>/status, raw.
pub fn status_field(pid: i32, key: &str) -> Result<Option<String>> {
    let path = PathBuf::from(format!("/proc/{pid}/status"));
    let text = std::fs::read_to_string(&path).map_err(|e| NsError::from_proc_io(pid, &path, e))?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(':')).map(|v| v.trim().to_string())))
}

/// The real uid of a process (first number of `Uid:`), as the caller's user ns sees it.
pub fn uid(pid: i32) -> Option<u32> {
    status_field(pid, "Uid").ok().flatten()?.split_whitespace().next()?.parse().ok()
}

/// The process's pid in each pid namespace it belongs to, outermost (the caller's) first
/// (`NSpid:` in /proc/<pid>/status).
pub fn nspids(pid: i32) -> Result<Vec<i32>> {
    Ok(status_field(pid, "NSpid")?
        .map(|v| v.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default())
}

/// A process's namespaces, one per kind this kernel has.
pub type NsSet = BTreeMap<NsType, NsId>;

/// Reads the namespace set of `pid`: all or nothing, so a process that exits half way
/// never yields half a set.
pub fn ns_set(pid: i32) -> Result<NsSet> {
    let mut set = NsSet::new();
    for ty in NsType::supported() {
        let path = ty.proc_path(pid);
        let id = NsId::of_path(&path).map_err(|e| NsError::from_proc_io(pid, &path, e))?;
        set.insert(ty, id);
    }
    if set.is_empty() && !exists(pid) {
        return Err(NsError::NoSuchProcess { pid });
    }
    Ok(set)
}

/// The identity of one namespace of a process, with a clear error for a kind the kernel
/// lacks.
pub fn ns_id(pid: i32, ty: NsType) -> Result<NsId> {
    if !ty.is_supported() {
        return Err(NsError::Unsupported { ty, path: format!("/proc/self/ns/{}", ty.proc_name()).into() });
    }
    let path = ty.proc_path(pid);
    NsId::of_path(&path).map_err(|e| NsError::from_proc_io(pid, &path, e))
}

/// User names from /etc/passwd, for tables (the JSON keeps numbers).
pub fn user_names() -> BTreeMap<u32, String> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// Children of a process (all threads' children), from /proc/<pid>/task/*/children.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.filter_map(|e| e.ok()) {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|n| n.parse::<i32>().ok()));
            }
        }
    }
    out.sort_unstable();
    out
}

/// The host's namespaces and the process they were read from.
///
/// pid 1 by definition; when pid 1 cannot be read (some hosts' init denies ptrace access
/// even to root: on the karton test VMs, pid 1 holds capabilities the caller's bounding
/// set lacks), kthreadd (pid 2 with parent 0), which the kernel keeps in the initial
/// namespaces.
pub fn host_ns_set() -> Option<(i32, NsSet)> {
    if let Ok(s) = ns_set(1) {
        return Some((1, s));
    }
    let kthreadd = comm(2).as_deref() == Some("kthreadd")
        && status_field(2, "PPid").ok().flatten().as_deref() == Some("0");
    if kthreadd {
        if let Ok(s) = ns_set(2) {
            return Some((2, s));
        }
    }
    None
}
