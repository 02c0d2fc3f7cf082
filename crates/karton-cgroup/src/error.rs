//! One error type for the crate. Every message names the file or JSON key, the reason,
//! and where possible what to do about it.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no cgroup filesystem found in /proc/self/mountinfo: mount cgroup2 at /sys/fs/cgroup (or v1 hierarchies under it)")]
    NoCgroupFs,

    #[error("{op} {path}: {source}{}", hint_for(source))]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{key}: writing {value:?} to {path}: {source}{}", hint_for(source))]
    Write {
        /// The `linux.resources` JSON key the value came from (or the operation).
        key: String,
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },

    #[error("{path}: cannot parse {content:?}: {reason}")]
    Parse { path: PathBuf, content: String, reason: String },

    #[error("invalid cgroups path {path:?} (linux.cgroupsPath): {reason}")]
    InvalidPath { path: String, reason: String },

    /// A `linux.resources` key this host cannot apply.
    #[error("{key}: cannot be applied on this host: {reason}")]
    Unsupported { key: String, reason: String },

    /// A `linux.resources` value that is wrong whatever the host.
    #[error("{key}: invalid value {value}: {reason}")]
    InvalidValue { key: String, value: String, reason: String },

    /// An `exec --cgroup [controller:]path` argument that cannot be used.
    #[error("exec --cgroup {arg:?}: {reason}")]
    SubCgroup { arg: String, reason: String },

    /// The cgroup (or a sub-cgroup of it) holds processes karton did not put there.
    #[error("linux.cgroupsPath {cgroup}: {path} already holds processes {pids:?}; the cgroup belongs to someone else and its processes would be killed with the container: choose an unused linux.cgroupsPath, or stop those processes and remove the cgroup first")]
    NotEmpty { cgroup: String, path: PathBuf, pids: Vec<i32> },

    #[error("cgroup {path} is still busy after {ms} ms (tasks: {pids:?}); kill them (kill --all) and retry delete")]
    Busy { path: PathBuf, ms: u64, pids: Vec<i32> },

    #[error("freezing {path} did not finish within {ms} ms (state {state:?}); the cgroup was thawed again, retry pause")]
    FreezeTimeout { path: PathBuf, ms: u64, state: String },

    #[error(
        "no freezer: neither a v1 freezer hierarchy nor cgroup2's cgroup.freeze is available for this cgroup"
    )]
    NoFreezer,

    #[error("{op} ({path}): {source}")]
    Sys {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: karton_sys::SysError,
    },

    #[error("{key}: {reason}")]
    Device { key: String, reason: String },

    /// --systemd-cgroup, and systemd cannot be reached over D-Bus.
    #[error("--systemd-cgroup: cannot reach systemd over D-Bus at {socket}: {reason}: start systemd (and dbus), or drop --systemd-cgroup to let karton manage cgroups through cgroupfs")]
    NoSystemd { socket: String, reason: String },

    /// A D-Bus call to systemd failed.
    #[error("systemd: {op}: {reason}")]
    Systemd { op: String, reason: String },

    #[error("update failed and was rolled back: {0}")]
    RolledBack(Box<Error>),

    #[error("update failed: {error}; restoring the previous values failed too: {restore}; the cgroup's limits are now partly updated")]
    RestoreFailed { error: Box<Error>, restore: Box<Error> },
}

/// A short hint for the common errnos of cgroup files.
fn hint_for(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOENT) => {
            " (the file does not exist: the controller is not mounted or not enabled for this cgroup)"
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            " (permission denied: run as root, or the cgroup is delegated to someone else)"
        }
        Some(libc::EINVAL) => {
            " (the kernel rejected the value: out of range, or in conflict with a related limit)"
        }
        Some(libc::EBUSY) => {
            " (busy: e.g. a memory limit below current usage, or tasks/children that prevent this)"
        }
        Some(libc::ERANGE) => " (out of range: e.g. a CPU or memory node this machine does not have)",
        Some(libc::ENODEV) => " (no such device: check major:minor against /sys/block/*/dev)",
        Some(libc::EOPNOTSUPP) => " (not supported by this kernel)",
        Some(libc::ENOSPC) => " (no space: the parent's cpuset or realtime budget does not cover this value)",
        _ => "",
    }
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io { op, path: path.into(), source }
    }

    pub(crate) fn unsupported(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Unsupported { key: key.into(), reason: reason.into() }
    }

    pub(crate) fn invalid(key: impl Into<String>, value: impl ToString, reason: impl Into<String>) -> Self {
        Error::InvalidValue { key: key.into(), value: value.to_string(), reason: reason.into() }
    }

    /// The errno behind this error, if it came from the kernel.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } | Error::Write { source, .. } => source.raw_os_error(),
            Error::Sys { source, .. } => Some(source.errno as i32),
            Error::RolledBack(e) => e.raw_os_error(),
            _ => None,
        }
    }
}
