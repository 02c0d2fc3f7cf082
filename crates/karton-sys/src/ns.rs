//! unshare, setns and the namespace ioctls (NS_GET_*).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::{check, Result, SysError};

// From <linux/nsfs.h>: _IO(0xb7, n).
const NSIO: libc::c_ulong = 0xb7;
const NS_GET_USERNS: libc::c_ulong = NSIO << 8 | 0x1;
const NS_GET_PARENT: libc::c_ulong = NSIO << 8 | 0x2;
const NS_GET_NSTYPE: libc::c_ulong = NSIO << 8 | 0x3;
// <linux/nsfs.h> defines it as _IO(NSIO, 0x4) although it writes a uid_t: the _IOR
// encoding gets ENOTTY (checked on 6.18).
const NS_GET_OWNER_UID: libc::c_ulong = NSIO << 8 | 0x4;

/// unshare(2) with the given CLONE_NEW* flags.
pub fn unshare(flags: u64) -> Result<()> {
    // SAFETY: unshare takes flags only and touches no memory of ours.
    check("unshare", unsafe { libc::unshare(flags as libc::c_int) } as libc::c_long).map(drop)
}

/// setns(2): join the namespace(s) behind `fd` (a namespace file or a pidfd).
/// `nstype` is 0 (any) or the CLONE_NEW* flag(s) expected.
pub fn setns(fd: BorrowedFd<'_>, nstype: u64) -> Result<()> {
    // SAFETY: the fd is valid for the duration of the call; setns reads no memory of ours.
    check("setns", unsafe { libc::setns(fd.as_raw_fd(), nstype as libc::c_int) } as libc::c_long)
        .map(drop)
}

fn ns_ioctl_fd(fd: BorrowedFd<'_>, req: libc::c_ulong, call: &'static str) -> Result<OwnedFd> {
    // SAFETY: these NS_GET_* requests take no argument and return a new fd or -1.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req as _) };
    if ret < 0 {
        return Err(SysError::last(call));
    }
    // SAFETY: on success the kernel returned a new file descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(ret) })
}

/// NS_GET_NSTYPE: the CLONE_NEW* flag of the namespace behind `fd`.
pub fn ns_get_nstype(fd: BorrowedFd<'_>) -> Result<u64> {
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the type or -1.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    check("ioctl(NS_GET_NSTYPE)", ret as libc::c_long).map(|t| t as u64)
}

/// NS_GET_USERNS: the user namespace that owns the namespace behind `fd`.
pub fn ns_get_userns(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    ns_ioctl_fd(fd, NS_GET_USERNS, "ioctl(NS_GET_USERNS)")
}

/// NS_GET_PARENT: the parent of a pid or user namespace.
/// EPERM when the parent lies outside the caller's view (e.g. the initial namespace).
pub fn ns_get_parent(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    ns_ioctl_fd(fd, NS_GET_PARENT, "ioctl(NS_GET_PARENT)")
}

/// NS_GET_OWNER_UID: the uid (in the caller's user namespace) of a user namespace's owner.
pub fn ns_get_owner_uid(fd: BorrowedFd<'_>) -> Result<libc::uid_t> {
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t to the pointer, which is valid.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_OWNER_UID as _, &mut uid as *mut libc::uid_t) };
    check("ioctl(NS_GET_OWNER_UID)", ret as libc::c_long).map(|_| uid)
}
