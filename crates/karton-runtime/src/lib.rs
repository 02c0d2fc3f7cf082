//! karton's OCI runtime library: a bundle's config.json becomes a container, built from
//! the kernel's system calls (clone3, setns, unshare, pivot_root, the mount API).
//!
//! Process model and data flow: docs/architecture.md.

pub mod channel;
pub mod config;
pub mod console;
pub mod container;
pub mod defaults;
pub mod error;
pub mod exec;
pub mod fds;
pub mod hooks;
pub mod idmap;
mod init;
pub mod lsm;
pub mod manage;
pub mod mempolicy;
pub mod mounts;
pub mod plan;
pub mod process;
pub mod procfs;
pub mod seccomp;
pub mod signals;
pub mod spawn;
pub mod state;
pub mod util;

pub use config::Config;
pub use container::{CreateOpts, Created, Runtime, OCI_VERSION};
pub use error::{Error, Result};
pub use exec::{ExecOpts, ExecProcess};
pub use state::{Record, Status, Store};
