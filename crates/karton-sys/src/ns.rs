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
    check("setns", unsafe { libc::setns(fd.as_raw_fd(), nstype as libc::c_int) } as libc::c_long).map(drop)
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

/// Brings the loopback interface of the caller's network namespace up (SIOCSIFFLAGS on
/// "lo" with IFF_UP), as runc and crun do in a new network namespace: the
/// kernel creates `lo` down, and an engine that gives a container no other network
/// (podman --network none) expects 127.0.0.1 to work. Needs CAP_NET_ADMIN over the
/// namespace.
pub fn loopback_up() -> Result<()> {
    // SAFETY: socket takes integers only; on success we own the returned fd.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(SysError::last("socket(AF_INET, SOCK_DGRAM)"));
    }
    // SAFETY: s is a new fd nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, b) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name and writes ifru_flags of the
    // ifreq we own, which outlives the call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut ifr) };
    check("ioctl(SIOCGIFFLAGS, lo)", ret as libc::c_long)?;
    // SAFETY: the kernel filled the flags member of the union just above.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    let up = libc::IFF_UP as libc::c_short;
    if flags & up != 0 {
        return Ok(());
    }
    ifr.ifr_ifru.ifru_flags = flags | up;
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own, which outlives the call.
    let ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &ifr) };
    check("ioctl(SIOCSIFFLAGS, lo)", ret as libc::c_long).map(drop)
}
