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
    let chunks = bytes.chunks_exact(8);
    if !chunks.remainder().is_empty() {
        return None;
    }
    Some(
        chunks
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
    let len = libc::c_ushort::try_from(prog.len())
        .map_err(|_| SysError::new("seccomp(SET_MODE_FILTER)", Errno::E2BIG))?;
    if len == 0 {
        return Err(SysError::new("seccomp(SET_MODE_FILTER)", Errno::EINVAL));
    }
    let fprog = SockFprog { len, filter: prog.as_ptr() };
    // SAFETY: `fprog` points at `len` valid instructions that outlive the call; the kernel
    // copies the program and keeps no pointer into our memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_ulong,
            &fprog as *const SockFprog,
        )
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
        return Err(SysError::new(
            "seccomp(SET_MODE_FILTER, TSYNC): a thread could not be synchronized",
            Errno::ESRCH,
        ));
    }
    Ok(None)
}

/// seccomp(SECCOMP_GET_ACTION_AVAIL): whether the kernel knows the filter return `action`.
pub fn action_available(action: u32) -> Result<bool> {
    // SAFETY: the kernel reads one u32 from a pointer that is valid for the call.
    let ret = unsafe {
        libc::syscall(libc::SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0 as libc::c_ulong, &action as *const u32)
    };
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
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags as libc::c_ulong,
            std::ptr::null::<SockFprog>(),
        )
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

/// Receives bytes into `buf` and at most one fd (SCM_RIGHTS, close-on-exec) from the unix
/// socket `sock`: the agent's side of [`send_fd`]. Extra fds in the message are closed.
/// Returns the number of bytes read (0 at end of stream) and the fd, if one came.
pub fn recv_fd(sock: BorrowedFd<'_>, buf: &mut [u8]) -> Result<(usize, Option<OwnedFd>)> {
    // Room for a header and a few ints, 8-byte aligned.
    let mut cbuf = [0u64; 8];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf) as _;
    let n = loop {
        // SAFETY: `msg` points at `buf` and `cbuf`, both writable and alive across the call.
        let ret = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        match check("recvmsg(SCM_RIGHTS)", ret as libc::c_long) {
            Ok(n) => break n as usize,
            Err(e) if e.errno == Errno::EINTR => continue,
            Err(e) => return Err(e),
        }
    };
    let mut fds: Vec<OwnedFd> = Vec::new();
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of cmsgs; the CMSG_*
    // helpers walk only within that length, and every fd in an SCM_RIGHTS payload is a new
    // descriptor installed in this process that nothing else owns.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let header = libc::CMSG_LEN(0) as usize;
                let count =
                    ((*cmsg).cmsg_len as usize).saturating_sub(header) / std::mem::size_of::<libc::c_int>();
                for i in 0..count {
                    let fd = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let first = if fds.is_empty() { None } else { Some(fds.swap_remove(0)) };
    Ok((n, first))
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

    #[test]
    fn fd_and_payload_cross_a_socketpair() {
        use std::io::Read;
        use std::os::fd::AsFd;
        use std::os::unix::net::UnixStream;
        let Ok((a, mut b)) = UnixStream::pair() else { panic!("socketpair") };
        let Ok((r, _w)) = UnixStream::pair() else { panic!("socketpair") };
        assert_eq!(send_fd(a.as_fd(), r.as_fd(), b"hello"), Ok(()));
        drop(a);
        let mut buf = [0u8; 3];
        let Ok((n, fd)) = recv_fd(b.as_fd(), &mut buf) else { panic!("recv_fd") };
        assert_eq!(&buf[..n], b"hel");
        assert!(fd.is_some());
        let mut rest = Vec::new();
        assert!(b.read_to_end(&mut rest).is_ok());
        assert_eq!(rest, b"lo");
    }
}
