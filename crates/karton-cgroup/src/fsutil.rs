//! Small helpers for cgroup files: one read or one write(2) per call, errors naming the file.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::Error;

pub(crate) fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))
}

/// Reads a file that may be absent: `Ok(None)` on ENOENT.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, Error> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path, e)),
    }
}

/// Writes `value` with a single write(2): cgroup files parse each write as one command,
/// so the value must not be split (std's `fs::write` would also do one write for short
/// values, but being explicit keeps it so). No O_CREAT: a missing file is an error.
/// O_TRUNC as runc: cgroupfs ignores it, a plain file (driver tests) needs it.
pub(crate) fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).truncate(true).open(path)?;
    let n = f.write(value.as_bytes())?;
    if n != value.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write to a cgroup file"));
    }
    Ok(())
}

pub(crate) fn write(key: &str, path: &Path, value: &str) -> Result<(), Error> {
    write_raw(path, value).map_err(|source| Error::Write {
        key: key.to_string(),
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Parses a single unsigned number; "max" (v2) reads as `u64::MAX`.
pub(crate) fn parse_u64(path: &Path, s: &str) -> Result<u64, Error> {
    let t = s.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse::<u64>().map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        content: t.to_string(),
        reason: e.to_string(),
    })
}

pub(crate) fn read_u64(path: &Path) -> Result<u64, Error> {
    parse_u64(path, &read(path)?)
}

/// Reads a number from a file that may be absent (0 when absent), as stats do.
pub(crate) fn read_u64_opt(path: &Path) -> Result<u64, Error> {
    match read_opt(path)? {
        Some(s) => parse_u64(path, &s),
        None => Ok(0),
    }
}

/// `key value` lines (memory.stat, cpu.stat, memory.events, oom_control) as pairs.
pub(crate) fn flat_keyed(s: &str) -> Vec<(String, u64)> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?;
            let v = if v == "max" { u64::MAX } else { v.parse().ok()? };
            Some((k.to_string(), v))
        })
        .collect()
}

pub(crate) fn keyed_value(s: &str, key: &str) -> Option<u64> {
    flat_keyed(s).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// The pids listed in a `cgroup.procs` file.
pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>, Error> {
    match read_opt(path)? {
        Some(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        None => Ok(Vec::new()),
    }
}
