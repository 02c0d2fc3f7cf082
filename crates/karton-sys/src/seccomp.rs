//! seccomp(2): load a compiled classic-BPF filter with any filter flags, probe which
//! actions and flags the running kernel accepts, and hand a listener fd to a seccomp agent
//! over a unix socket.
//!
//! The filter itself is compiled elsewhere (karton-runtime uses libseccomp); loading it here
//! instead of through `seccomp_load` lets karton pass flags the installed libseccomp may not
//! know (WAIT_KILLABLE_RECV needs libseccomp 2.6, Debian 12 ships 2.5.4) and get the
//! listener fd straight from the kernel.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::{check, Errno, Result, SysError};

const SECCOMP_SET_MODE_FILTER: libc::c_ulong = 1;
const SECCOMP_GET_ACTION_AVAIL: libc::c_ulong = 2;

pub const FLAG_TSYNC: u32 = 1 << 0;
pub const FLAG_LOG: u32 = 1 << 1;
pub const FLAG_SPEC_ALLOW: u32 = 1 << 2;
pub const FLAG_NEW_LISTENER: u32 = 1 << 3;
pub const FLAG_TSYNC_ESRCH: u32 = 1 << 4;
pub const FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// Filter return values (SECCOMP_RET_*), without their data part.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_KILL_THREAD: u32 = 0x0000_0000;
pub const RET_TRAP: u32 = 0x0003_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;

/// One classic BPF instruction, laid out as `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Splits a program exported by libseccomp (native-endian `struct sock_filter`s) into
/// instructions. `None` if the length is not a whole number of instructions.
pub fn parse_program(bytes: &[u8]) -> Option<Vec<SockFilter>> {
    if bytes.len() % 8 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(8)
            .map(|c| SockFilter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect(),
    )
}

#[repr(C)]
struct SockFprog {
    len: libc::c_ushort,
    filter: *const SockFilter,
}

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog) for the calling thread (all threads with
/// FLAG_TSYNC). Returns the listener fd when `flags` has FLAG_NEW_LISTENER.
///
/// The kernel demands no_new_privs or CAP_SYS_ADMIN in the caller's user namespace and
/// answers EACCES otherwise.
pub fn set_mode_filter(prog: &[SockFilter], flags: u32) -> Result<Option<OwnedFd>> {
    let len = libc::c_ushort::try_from(prog.len()).map_err(|_| SysError::new("seccomp(SET_MODE_FILTER)", Errno::E2BIG))?;
    if len == 0 {
        return Err(SysError::new("seccomp(SET_MODE_FILTER)", Errno::EINVAL));
    }
    let fprog = SockFprog { len, filter: prog.as_ptr() };
    // SAFETY: `fprog` points at `len` valid instructions that outlive the call; the kernel
    // copies the program and keeps no pointer into our memory.
    let ret = unsafe {
        libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags as libc::c_ulong, &fprog as *const SockFprog)
    };
    let ret = check("seccomp(SET_MODE_FILTER)", ret)?;
    if flags & FLAG_NEW_LISTENER != 0 {
        let fd = i32::try_from(ret).map_err(|_| SysError::new("seccomp(SET_MODE_FILTER)", Errno::EBADF))?;
        // SAFETY: with NEW_LISTENER the kernel returns a new fd that nothing else owns.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    if ret > 0 {
        // With TSYNC (and without TSYNC_ESRCH) a positive return value is the id of a thread
        // that could not be synchronized; the filter was not installed.
        return Err(SysError::new("seccomp(SET_MODE_FILTER, TSYNC): a thread could not be synchronized", Errno::ESRCH));
    }
    Ok(None)
}

/// seccomp(SECCOMP_GET_ACTION_AVAIL): whether the kernel knows the filter return `action`.
pub fn action_available(action: u32) -> Result<bool> {
    // SAFETY: the kernel reads one u32 from a pointer that is valid for the call.
    let ret = unsafe { libc::syscall(libc::SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0 as libc::c_ulong, &action as *const u32) };
    match check("seccomp(GET_ACTION_AVAIL)", ret) {
        Ok(_) => Ok(true),
        Err(e) if e.errno == Errno::EOPNOTSUPP => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether the kernel accepts this combination of filter flags.
///
/// Passes a null program: the kernel validates the flags first (EINVAL for unknown or
/// conflicting ones) and only then reads the program (EFAULT), so nothing is installed.
pub fn flags_supported(flags: u32) -> Result<bool> {
    // SAFETY: a null program pointer is never dereferenced by us; the kernel's
    // copy_from_user fails with EFAULT, which is the answer we are after.
    let ret = unsafe {
        libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags as libc::c_ulong, std::ptr::null::<SockFprog>())
    };
    match check("seccomp(SET_MODE_FILTER) flag probe", ret) {
        Err(e) if e.errno == Errno::EFAULT => Ok(true),
        Err(e) if e.errno == Errno::EINVAL => Ok(false),
        Err(e) => Err(e),
        // Cannot install anything from a null pointer; treat as accepted.
        Ok(_) => Ok(true),
    }
}

/// Sends `payload` and the fd `fd` (SCM_RIGHTS, with the first bytes) over the connected
/// unix socket `sock`; sends the rest of the payload if the socket took only part of it.
///
/// Uses only sendmsg(2) and stack memory, so it still works right after a filter was
/// installed whose notify rules would block other calls (such as brk or mmap) until the
/// agent has the listener fd.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>, payload: &[u8]) -> Result<()> {
    // 8-byte aligned room for one cmsghdr carrying one int (CMSG_SPACE(4) is 24 on 64-bit).
    let mut cbuf = [0u64; 4];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as libc::c_uint) } as usize;
    if space > std::mem::size_of_val(&cbuf) || payload.is_empty() {
        return Err(SysError::new("sendmsg(SCM_RIGHTS)", Errno::EINVAL));
    }
    let mut sent = 0usize;
    let mut first = true;
    while sent < payload.len() {
        let rest = &payload[sent..];
        let mut iov = libc::iovec { iov_base: rest.as_ptr() as *mut libc::c_void, iov_len: rest.len() };
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if first {
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            // SAFETY: msg_control points at `space` writable, aligned bytes, enough for one
            // header and one int; CMSG_FIRSTHDR/CMSG_DATA stay inside that buffer.
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(&msg);
                if cmsg.is_null() {
                    return Err(SysError::new("sendmsg(SCM_RIGHTS)", Errno::EINVAL));
                }
                (*cmsg).cmsg_level = libc::SOL_SOCKET;
                (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as libc::c_uint) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd.as_raw_fd());
            }
        }
        // SAFETY: `msg` and everything it points to (iov, payload, cbuf) live across the call.
        let ret = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        match check("sendmsg(SCM_RIGHTS)", ret as libc::c_long) {
            Ok(n) => {
                sent += n as usize;
                first = false;
            }
            Err(e) if e.errno == Errno::EINTR => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_program_splits_instructions() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&0x20u16.to_ne_bytes());
        bytes.extend_from_slice(&[1, 2]);
        bytes.extend_from_slice(&4u32.to_ne_bytes());
        let prog = parse_program(&bytes).unwrap_or_default();
        assert_eq!(prog, vec![SockFilter { code: 0x20, jt: 1, jf: 2, k: 4 }]);
        assert!(parse_program(&bytes[..7]).is_none());
    }

    #[test]
    fn kernel_knows_basic_actions_and_flags() {
        assert_eq!(action_available(RET_ALLOW), Ok(true));
        assert_eq!(action_available(RET_LOG), Ok(true));
        assert_eq!(flags_supported(FLAG_LOG), Ok(true));
        assert_eq!(flags_supported(1 << 30), Ok(false));
        // TSYNC and NEW_LISTENER together need TSYNC_ESRCH.
        assert_eq!(flags_supported(FLAG_TSYNC | FLAG_NEW_LISTENER), Ok(false));
        assert_eq!(flags_supported(FLAG_TSYNC | FLAG_NEW_LISTENER | FLAG_TSYNC_ESRCH), Ok(true));
    }
}
