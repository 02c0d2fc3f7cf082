//! The runtime's typed errors. Every message names the thing, the reason and, where there
//! is one, the fix.

use karton_sys::SysError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// config.json (or a process.json) cannot be used as it is.
    #[error("{0}")]
    Config(String),
    /// A container ID that is not acceptable.
    #[error("container ID {id:?}: {reason}")]
    InvalidId { id: String, reason: String },
    #[error("container {0:?} does not exist: `karton list` shows the containers under this --root")]
    NotFound(String),
    #[error("container ID {0:?} is already in use: pick another ID or `karton delete` the old container")]
    Exists(String),
    /// An operation that the container's current status does not allow.
    #[error("container {id:?} is {status}: {reason}")]
    State { id: String, status: String, reason: String },
    /// Setting up a container process (the init or an exec) failed; the message comes
    /// from inside the container.
    #[error("container process: {0}")]
    Init(String),
    #[error("{0}")]
    Hook(String),
    // The cause is part of the message (not an error `source`), so that printing the
    // chain does not repeat it.
    #[error("{context}: {err}")]
    Io { context: String, err: std::io::Error },
    #[error("{context}: {err}")]
    Sys { context: String, err: SysError },
    #[error(transparent)]
    Cgroup(#[from] karton_cgroup::Error),
    #[error(transparent)]
    MountInfo(#[from] karton_sys::mountinfo::MountInfoError),
    #[error("{0}")]
    Unsupported(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Adds a description of what was being done to low-level errors.
pub trait Context<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|err| Error::Io { context: context(), err })
    }
}

impl<T> Context<T> for std::result::Result<T, SysError> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|err| Error::Sys { context: context(), err })
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Io { context: context(), err: std::io::Error::from(e) })
    }
}
