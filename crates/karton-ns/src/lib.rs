//! Namespaces as values: the eight kinds, discovery from /proc, the kernel's hierarchy,
//! id maps and time offsets, and entering a process's namespaces.
//!
//! - [`discover::list`] finds every namespace on the host (processes, nsfs bind mounts,
//!   open fds, owner/parent references) with owner, parent, owner uid and holders.
//! - [`tree::build`] arranges a list as the user-namespace and pid-namespace trees.
//! - [`inspect::inspect`] compares one process's namespaces with the host's.
//! - [`enter::run`] runs a command in a process's namespaces (nsenter).
//! - [`idmap`], [`timens`], [`cgroupns`] parse and write the per-namespace /proc files.
//!
//! JSON shapes are versioned by their `schema` field and documented in docs/ns.md.

pub mod cgroupns;
pub mod discover;
pub mod enter;
pub mod error;
pub mod handle;
pub mod idmap;
pub mod inspect;
pub mod kind;
mod kind_ext;
pub mod procfs;
pub mod timens;
pub mod tree;

pub use discover::{list, HeldBy, Namespace, NsList, ScanOptions};
pub use error::{NsError, Result};
pub use handle::{NsHandle, NsId};
pub use idmap::{IdMap, IdMapEntry};
pub use kind::NsType;
pub use procfs::NsSet;
