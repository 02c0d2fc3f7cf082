//! karton's system-call layer.
//!
//! Every `unsafe` block of karton lives in this crate, each with a `// SAFETY:` comment.
//! The wrappers are thin: they translate arguments, call the kernel, and turn `-1/errno`
//! into [`SysError`], which names the call that failed so that callers can build messages
//! that say what went wrong.

pub mod atomic;
pub mod audit_sys;
pub mod bpf;
pub mod caps;
pub mod clone;
pub mod fs;
pub mod ipc;
pub mod mount;
pub mod mountinfo;
pub mod ns;
pub mod perf;
pub mod process;
pub mod seccomp;

use std::fmt;

pub use nix::errno::Errno;

/// A failed system call: which call and the errno the kernel returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct SysError {
    pub call: &'static str,
    pub errno: Errno,
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.call, self.errno.desc())
    }
}

impl SysError {
    pub fn new(call: &'static str, errno: Errno) -> Self {
        Self { call, errno }
    }
    /// The error of the last failed libc call.
    pub fn last(call: &'static str) -> Self {
        Self { call, errno: Errno::last() }
    }
}

pub type Result<T> = std::result::Result<T, SysError>;

/// Turns a raw `-1`-on-error return value into a `Result`.
pub(crate) fn check(call: &'static str, ret: libc::c_long) -> Result<libc::c_long> {
    if ret < 0 {
        Err(SysError::last(call))
    } else {
        Ok(ret)
    }
}
