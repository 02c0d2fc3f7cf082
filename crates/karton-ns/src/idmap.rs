//! User and group id maps (/proc/PID/uid_map, gid_map, setgroups): parse, format, write.
//!
//! The `outside` column is shown relative to the user namespace of the reader when the
//! reader is in the target's parent user namespace (user_namespaces.7), so a host-side
//! reader sees host ids.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{NsError, Result};

/// One line of an id map: ids `inside..inside+count` map to `outside..outside+count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapEntry {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// A whole uid or gid map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdMap(pub Vec<IdMapEntry>);

/// The kernel limits a map to 340 lines (since 4.15).
pub const MAX_LINES: usize = 340;

impl IdMap {
    /// Parses the /proc format: three whitespace-separated numbers per line.
    pub fn parse(text: &str, path: &Path) -> Result<IdMap> {
        let mut v = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let bad =
                |reason: &str| NsError::Parse { path: path.into(), line: line.into(), reason: reason.into() };
            let nums: Vec<u32> = line
                .split_whitespace()
                .map(|n| n.parse::<u32>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| bad("expected three unsigned numbers"))?;
            let [inside, outside, count] = nums[..] else {
                return Err(bad("expected three numbers: inside outside count"));
            };
            v.push(IdMapEntry { inside, outside, count });
        }
        Ok(IdMap(v))
    }

    /// The map of a process: `/proc/<pid>/uid_map` (`gid = false`) or `gid_map`.
    pub fn of_pid(pid: i32, gid: bool) -> Result<IdMap> {
        let path = PathBuf::from(format!("/proc/{pid}/{}", if gid { "gid_map" } else { "uid_map" }));
        let text = std::fs::read_to_string(&path).map_err(|e| NsError::from_proc_io(pid, &path, e))?;
        Self::parse(&text, &path)
    }

    /// The text to write into a map file: one `inside outside count` line per entry.
    pub fn to_proc_string(&self) -> String {
        self.0.iter().map(|e| format!("{} {} {}\n", e.inside, e.outside, e.count)).collect()
    }

    /// The identity map of all ids (what the initial user namespace shows).
    pub fn is_identity_full(&self) -> bool {
        self.0 == [IdMapEntry { inside: 0, outside: 0, count: u32::MAX }]
    }

    /// Maps an id from inside to outside; `None` when unmapped.
    pub fn to_outside(&self, id: u32) -> Option<u32> {
        self.0.iter().find_map(|e| {
            let off = id.checked_sub(e.inside)?;
            (off < e.count).then(|| e.outside + off)
        })
    }

    /// Maps an id from outside to inside; `None` when unmapped.
    pub fn to_inside(&self, id: u32) -> Option<u32> {
        self.0.iter().find_map(|e| {
            let off = id.checked_sub(e.outside)?;
            (off < e.count).then(|| e.inside + off)
        })
    }

    /// Checks what the kernel would refuse: too many lines, empty ranges, overflowing
    /// ranges, overlaps on either side.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(NsError::Invalid(m));
        if self.0.len() > MAX_LINES {
            return invalid(format!("id map has {} lines, the kernel allows {MAX_LINES}", self.0.len()));
        }
        for (i, a) in self.0.iter().enumerate() {
            if a.count == 0 {
                return invalid(format!("id map line {} has count 0", i + 1));
            }
            if u64::from(a.inside) + u64::from(a.count) > 1 << 32
                || u64::from(a.outside) + u64::from(a.count) > 1 << 32
            {
                return invalid(format!("id map line {} runs past 2^32", i + 1));
            }
            for b in &self.0[i + 1..] {
                let ov = |x: u32, y: u32| {
                    u64::from(x) < u64::from(y) + u64::from(b.count)
                        && u64::from(y) < u64::from(x) + u64::from(a.count)
                };
                if ov(a.inside, b.inside) || ov(a.outside, b.outside) {
                    return invalid(format!("id map line {} overlaps a later line", i + 1));
                }
            }
        }
        Ok(())
    }
}

/// `/proc/<pid>/setgroups`: whether setgroups(2) is allowed in the process's user ns.
pub fn setgroups_allowed(pid: i32) -> Result<bool> {
    let path = PathBuf::from(format!("/proc/{pid}/setgroups"));
    let text = std::fs::read_to_string(&path).map_err(|e| NsError::from_proc_io(pid, &path, e))?;
    match text.trim() {
        "allow" => Ok(true),
        "deny" => Ok(false),
        other => Err(NsError::Parse { path, line: other.into(), reason: "expected allow or deny".into() }),
    }
}

/// Writes the maps of a process in a fresh user namespace, in the order the kernel needs:
/// `setgroups` (deny is required before an unprivileged gid_map), then gid, then uid.
pub fn write_maps(pid: i32, uid: &IdMap, gid: &IdMap, deny_setgroups: bool) -> Result<()> {
    uid.validate()?;
    gid.validate()?;
    let write = |name: &str, text: &str| {
        let path = PathBuf::from(format!("/proc/{pid}/{name}"));
        std::fs::write(&path, text).map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) => NsError::Invalid(format!(
                "writing {}: permission denied: a map can be written once, by a process with CAP_SETUID/CAP_SETGID over the parent user namespace; without it, map only your own id and deny setgroups",
                path.display()
            )),
            _ => NsError::from_proc_io(pid, &path, e),
        })
    };
    if deny_setgroups {
        write("setgroups", "deny")?;
    }
    write("gid_map", &gid.to_proc_string())?;
    write("uid_map", &uid.to_proc_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_map() {
        let m = IdMap::parse(
            "         0       1000          1\n         1     100000      65536\n",
            Path::new("t"),
        )
        .expect("test value");
        assert_eq!(m.0.len(), 2);
        assert_eq!(m.to_outside(0), Some(1000));
        assert_eq!(m.to_outside(5), Some(100004));
        assert_eq!(m.to_outside(70000), None);
        assert_eq!(m.to_inside(100004), Some(5));
        assert_eq!(m.to_proc_string(), "0 1000 1\n1 100000 65536\n");
        m.validate().expect("test value");
        let host = IdMap::parse("0 0 4294967295", Path::new("t")).expect("test value");
        assert!(host.is_identity_full());
        assert!(IdMap::parse("0 0", Path::new("t")).is_err());
        assert!(IdMap::parse("a b c", Path::new("t")).is_err());
        let ov = IdMap(vec![
            IdMapEntry { inside: 0, outside: 0, count: 10 },
            IdMapEntry { inside: 5, outside: 100, count: 1 },
        ]);
        assert!(ov.validate().is_err());
    }

    #[test]
    fn own_maps_parse() {
        let pid = std::process::id() as i32;
        let m = IdMap::of_pid(pid, false).expect("test value");
        assert!(!m.0.is_empty());
        assert!(IdMap::of_pid(pid, true).is_ok());
        assert!(setgroups_allowed(pid).is_ok());
    }
}
