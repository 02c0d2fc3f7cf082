//! A namespace's identity and an open handle on it.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use karton_sys::{ns as sys, Errno};
use serde::{Deserialize, Serialize};

use crate::error::{NsError, Result};
use crate::NsType;

/// A namespace's identity: the device and inode of its nsfs file. The inode alone is what
/// /proc shows, but only the pair is unique (namespaces.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NsId {
    pub dev: u64,
    pub inode: u64,
}

impl NsId {
    /// Identity of the namespace a path refers to (stat follows the /proc magic link).
    pub fn of_path(path: &Path) -> std::io::Result<NsId> {
        let m = std::fs::metadata(path)?;
        Ok(NsId { dev: m.dev(), inode: m.ino() })
    }

    pub fn of_file(f: &File) -> std::io::Result<NsId> {
        let m = f.metadata()?;
        Ok(NsId { dev: m.dev(), inode: m.ino() })
    }
}

impl std::fmt::Display for NsId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.inode)
    }
}

/// An open namespace file: keeps the namespace alive and answers the NS_GET_* ioctls.
#[derive(Debug)]
pub struct NsHandle {
    pub ty: NsType,
    pub id: NsId,
    file: File,
}

impl NsHandle {
    /// Opens a namespace file (/proc/PID/ns/T, a bind mount of one, /proc/PID/fd/N) and
    /// asks the kernel its type, so a wrong file is refused rather than misread.
    pub fn open(path: &Path) -> Result<NsHandle> {
        let file = File::open(path).map_err(|error| NsError::Io { path: path.into(), error })?;
        Self::from_file(file).map_err(|e| match e {
            NsError::Sys { error, .. } if error.errno == Errno::ENOTTY || error.errno == Errno::EINVAL => {
                NsError::NotNamespace { path: path.into() }
            }
            other => other,
        })
    }

    /// Opens `/proc/<pid>/ns/<ty>`.
    pub fn of_pid(pid: i32, ty: NsType) -> Result<NsHandle> {
        let path = ty.proc_path(pid);
        let file = File::open(&path).map_err(|e| NsError::from_proc_io(pid, &path, e))?;
        Self::from_file(file)
    }

    fn from_file(file: File) -> Result<NsHandle> {
        let flag = sys::ns_get_nstype(file.as_fd()).map_err(|e| NsError::sys("ioctl NS_GET_NSTYPE", e))?;
        let ty = NsType::from_clone_flag(flag)
            .ok_or_else(|| NsError::Invalid(format!("kernel reported unknown namespace type {flag:#x}")))?;
        let id = NsId::of_file(&file).map_err(|error| NsError::Io { path: "namespace fd".into(), error })?;
        Ok(NsHandle { ty, id, file })
    }

    fn from_owned(fd: OwnedFd) -> Result<NsHandle> {
        Self::from_file(File::from(fd))
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// The user namespace that owns this one (for a user namespace: its parent).
    /// `None` when the owner lies outside the caller's view (EPERM).
    pub fn owner(&self) -> Result<Option<NsHandle>> {
        match sys::ns_get_userns(self.file.as_fd()) {
            Ok(fd) => Self::from_owned(fd).map(Some),
            Err(e) if e.errno == Errno::EPERM => Ok(None),
            Err(e) => {
                Err(NsError::sys(format!("ioctl NS_GET_USERNS on {} namespace {}", self.ty, self.id), e))
            }
        }
    }

    /// The parent of a pid or user namespace. `None` at the top of the caller's view:
    /// the kernel answers EPERM there, which means "root of the visible tree".
    pub fn parent(&self) -> Result<Option<NsHandle>> {
        if !self.ty.is_hierarchical() {
            return Ok(None);
        }
        match sys::ns_get_parent(self.file.as_fd()) {
            Ok(fd) => Self::from_owned(fd).map(Some),
            Err(e) if e.errno == Errno::EPERM => Ok(None),
            Err(e) => {
                Err(NsError::sys(format!("ioctl NS_GET_PARENT on {} namespace {}", self.ty, self.id), e))
            }
        }
    }

    /// For a user namespace: the uid (in the caller's user namespace) of its creator.
    pub fn owner_uid(&self) -> Result<Option<u32>> {
        if self.ty != NsType::User {
            return Ok(None);
        }
        sys::ns_get_owner_uid(self.file.as_fd())
            .map(Some)
            .map_err(|e| NsError::sys(format!("ioctl NS_GET_OWNER_UID on user namespace {}", self.id), e))
    }

    /// The chain from this pid or user namespace up to the root of the caller's view,
    /// starting with this one.
    pub fn ancestry(self) -> Result<Vec<NsHandle>> {
        let mut chain = vec![self];
        // Nesting is limited to 32 levels by the kernel; the bound guards against a loop.
        for _ in 0..64 {
            let next = match chain.last() {
                Some(last) => last.parent()?,
                None => None,
            };
            match next {
                Some(p) => chain.push(p),
                None => break,
            }
        }
        Ok(chain)
    }
}
