//! Typed errors of karton-ns. Every message names the thing, the reason and, where there
//! is one, the fix, so that the CLI can print it as one line.

use std::path::PathBuf;

use karton_sys::{Errno, SysError};

use crate::NsType;

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("no process with pid {pid} (/proc/{pid} does not exist): check the pid with `ps`, or pass a running container's id")]
    NoSuchProcess { pid: i32 },

    #[error("process {pid} exited while karton was reading it: try again with a running process")]
    Vanished { pid: i32 },

    #[error("permission denied reading {path}: run karton as root or as the owner of process {pid} (the kernel requires ptrace-read access; an LSM such as Landlock or Yama may deny it even to root)")]
    PermissionDenied { pid: i32, path: PathBuf },

    #[error("namespace type {ty} is not supported by this kernel ({path} does not exist): leave out `{ty}`")]
    Unsupported { ty: NsType, path: PathBuf },

    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },

    #[error("{path}: cannot parse {line:?}: {reason}")]
    Parse { path: PathBuf, line: String, reason: String },

    #[error("{what}: {error}")]
    Sys { what: String, error: SysError },

    #[error("{path} is not a namespace file (no nsfs inode): pass /proc/PID/ns/TYPE or a bind mount of one")]
    NotNamespace { path: PathBuf },

    #[error("entering the namespaces of {target} failed at {stage}: {errno}{hint}", errno = errno.desc())]
    Enter { target: String, stage: String, errno: Errno, hint: String, exit_code: i32 },

    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, NsError>;

impl NsError {
    /// Maps an error met while reading `/proc/<pid>/...` to the error a user can act on.
    /// ENOENT/ESRCH on a file of a process that was there a moment ago mean it exited.
    pub(crate) fn from_proc_io(pid: i32, path: impl Into<PathBuf>, error: std::io::Error) -> NsError {
        let path = path.into();
        match error.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => NsError::PermissionDenied { pid, path },
            Some(libc::ENOENT) | Some(libc::ESRCH) => {
                if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    // The process exists but the file does not: a zombie (no namespaces
                    // left) or a file this kernel lacks. Callers that know which decide.
                    NsError::Vanished { pid }
                } else {
                    NsError::NoSuchProcess { pid }
                }
            }
            _ => NsError::Io { path, error },
        }
    }

    pub(crate) fn sys(what: impl Into<String>, error: SysError) -> NsError {
        NsError::Sys { what: what.into(), error }
    }

    /// True when the error means "the process is gone", which scans skip silently.
    pub fn is_gone(&self) -> bool {
        matches!(self, NsError::NoSuchProcess { .. } | NsError::Vanished { .. })
    }

    /// The exit code a command-line tool should end with: 127 when the command to run
    /// was not found, 126 when it could not be executed (the shell's convention), else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            NsError::Enter { exit_code, .. } => *exit_code,
            _ => 1,
        }
    }

    pub fn is_permission(&self) -> bool {
        matches!(self, NsError::PermissionDenied { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_thing_reason_fix() {
        let e = NsError::Unsupported { ty: NsType::Time, path: "/proc/self/ns/time".into() };
        assert_eq!(
            e.to_string(),
            "namespace type time is not supported by this kernel (/proc/self/ns/time does not exist): leave out `time`"
        );
        let e = NsError::PermissionDenied { pid: 1, path: "/proc/1/ns/user".into() };
        assert!(e.to_string().starts_with("permission denied reading /proc/1/ns/user: run karton as root"));
        assert!(e.is_permission() && !e.is_gone());
        assert!(NsError::Vanished { pid: 3 }.is_gone());
        assert_eq!(NsError::NoSuchProcess { pid: 3 }.exit_code(), 1);
    }
}
