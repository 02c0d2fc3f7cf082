//! Process-level calls that `nix` does not wrap (pidfds, close_range, keyrings, I/O
//! priority, scheduler attributes, rlimits by number).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::{check, Result};

/// pidfd_open(2): a file descriptor that refers to the process `pid` for as long as it exists.
pub fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = check("pidfd_open", ret)?;
    // SAFETY: on success the kernel returned a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// pidfd_send_signal(2): signal the process behind a pidfd; cannot hit a recycled pid.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> Result<()> {
    // SAFETY: a null siginfo means "as kill(2)"; the fd is valid for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    check("pidfd_send_signal", ret).map(drop)
}

pub const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;

/// close_range(2) over `[first, last]`; with CLOSE_RANGE_CLOEXEC only marks them close-on-exec.
pub fn close_range(first: u32, last: u32, flags: u32) -> Result<()> {
    // SAFETY: close_range takes integers only. Closing fds that Rust objects still own is
    // the caller's concern: karton calls it right before execve, or with CLOEXEC.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    check("close_range", ret).map(drop)
}

/// keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): a fresh anonymous session keyring, so a
/// container does not share the caller's keys.
pub fn join_new_session_keyring() -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: a null name asks for a new anonymous keyring; no memory is written.
    let ret = unsafe {
        libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, std::ptr::null::<libc::c_char>())
    };
    check("keyctl(JOIN_SESSION_KEYRING)", ret).map(drop)
}

/// ioprio_set(IOPRIO_WHO_PROCESS, 0, class << 13 | level) for the calling process.
pub fn ioprio_set_self(class: u32, level: u32) -> Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    let prio = (class << 13) | (level & 0x1fff);
    // SAFETY: integers only.
    let ret = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) };
    check("ioprio_set", ret).map(drop)
}

/// `struct sched_attr` (SCHED_ATTR_SIZE_VER1).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SchedAttr {
    pub size: u32,
    pub sched_policy: u32,
    pub sched_flags: u64,
    pub sched_nice: i32,
    pub sched_priority: u32,
    pub sched_runtime: u64,
    pub sched_deadline: u64,
    pub sched_period: u64,
    pub sched_util_min: u32,
    pub sched_util_max: u32,
}

/// sched_setattr(2) for the calling thread.
pub fn sched_setattr_self(attr: &SchedAttr) -> Result<()> {
    let mut a = *attr;
    a.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `a` is a valid sched_attr whose size field matches its size.
    let ret = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0) };
    check("sched_setattr", ret).map(drop)
}

/// setrlimit(2) by resource number (RLIMIT_*), as given in an OCI config.
pub fn setrlimit(resource: u32, soft: u64, hard: u64) -> Result<()> {
    let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: `lim` is a valid rlimit read by the kernel.
    let ret = unsafe { libc::setrlimit(resource as _, &lim) };
    check("setrlimit", ret as libc::c_long).map(drop)
}

/// prlimit(2) on another process.
pub fn prlimit(pid: libc::pid_t, resource: u32, soft: u64, hard: u64) -> Result<()> {
    let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: `lim` is valid for reading; old limit pointer is null.
    let ret = unsafe { libc::prlimit(pid, resource as _, &lim, std::ptr::null_mut()) };
    check("prlimit", ret as libc::c_long).map(drop)
}

/// getrlimit(2) by resource number.
pub fn getrlimit(resource: u32) -> Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is valid for writing.
    let ret = unsafe { libc::getrlimit(resource as _, &mut lim) };
    check("getrlimit", ret as libc::c_long).map(|_| (lim.rlim_cur, lim.rlim_max))
}

/// personality(2).
pub fn personality(persona: libc::c_ulong) -> Result<()> {
    // SAFETY: integer argument only.
    let ret = unsafe { libc::personality(persona) };
    check("personality", ret as libc::c_long).map(drop)
}

/// setgroups(2) with the given list (an empty list drops all supplementary groups).
pub fn setgroups(groups: &[libc::gid_t]) -> Result<()> {
    // SAFETY: the slice is valid for `len` gids.
    let ret = unsafe { libc::setgroups(groups.len(), groups.as_ptr()) };
    check("setgroups", ret as libc::c_long).map(drop)
}

/// Raw setresuid/setresgid: bypass glibc's broadcast to other threads (we have none) and
/// keep this a single system call.
pub fn setresgid(gid: libc::gid_t) -> Result<()> {
    // SAFETY: integers only.
    let ret = unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) };
    check("setresgid", ret).map(drop)
}

pub fn setresuid(uid: libc::uid_t) -> Result<()> {
    // SAFETY: integers only.
    let ret = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
    check("setresuid", ret).map(drop)
}

/// prctl(2) with integer arguments.
pub fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<libc::c_int> {
    // SAFETY: every option karton uses takes integer arguments only.
    let ret = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    check("prctl", ret as libc::c_long).map(|r| r as libc::c_int)
}

/// Whether `fd` is an open descriptor of this process (fcntl F_GETFD).
pub fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table; any int is a valid argument.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// Clears FD_CLOEXEC on the descriptor at number `fd`, which the caller does not own (an
/// fd handed down by number, such as `--preserve-fds`): it survives execve.
pub fn set_inheritable(fd: i32) -> Result<()> {
    // SAFETY: F_SETFD with 0 changes only the descriptor's flags; a closed number yields
    // EBADF, reported as an error.
    check("fcntl(F_SETFD)", unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } as libc::c_long).map(drop)
}

/// Wraps an fd that the process inherited by number (e.g. `--preserve-fds`, LISTEN_FDS).
///
/// Returns `None` when the number is not an open descriptor.
pub fn inherited_fd(fd: i32) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only queries the descriptor table.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the fd is open and was handed to us by our parent; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// ioctl(TIOCSCTTY): make the terminal behind `fd` the controlling terminal of this session.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal).
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY as _, 0) };
    check("ioctl(TIOCSCTTY)", ret as libc::c_long).map(drop)
}

/// ioctl(TIOCSWINSZ): set a terminal's window size.
pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize struct from a valid pointer.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ as _, &ws as *const libc::winsize) };
    check("ioctl(TIOCSWINSZ)", ret as libc::c_long).map(drop)
}

/// waitid(P_PIDFD, ..., WEXITED): reaps the child behind `pidfd` and returns its wait
/// status in the classic encoding (exit code << 8, or the signal number).
pub fn wait_pidfd(pidfd: BorrowedFd<'_>) -> Result<i32> {
    loop {
        // SAFETY: siginfo_t is plain data; zeroed is a valid initial value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is valid for writing; P_PIDFD takes the fd as the id.
        let ret =
            unsafe { libc::waitid(libc::P_PIDFD, pidfd.as_raw_fd() as libc::id_t, &mut info, libc::WEXITED) };
        if ret < 0 {
            let e = crate::SysError::last("waitid");
            if e.errno == nix::errno::Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        // SAFETY: after a successful waitid with WEXITED the kernel filled si_status/si_code.
        let (code, status) = unsafe { (info.si_code, info.si_status()) };
        return Ok(if code == libc::CLD_EXITED { (status & 0xff) << 8 } else { status & 0x7f });
    }
}

/// What wait4(2) reports about a reaped child: its status and resource usage (its own
/// and that of the descendants it waited for, as GNU time reports them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildUsage {
    /// Wait status in the classic encoding (exit code << 8, or the signal number).
    pub status: i32,
    pub user_us: u64,
    pub sys_us: u64,
    /// Peak resident set size in KiB (ru_maxrss).
    pub max_rss_kib: u64,
}

/// wait4(pid, 0): reaps child `pid` (blocking) and returns its status and rusage.
pub fn wait4(pid: libc::pid_t) -> Result<ChildUsage> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: rusage is plain data; zeroed is a valid initial value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for writing for the duration of the call.
        let ret = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if ret < 0 {
            let e = crate::SysError::last("wait4");
            if e.errno == nix::errno::Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        let status = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) << 8 } else { status & 0x7f };
        return Ok(ChildUsage {
            status,
            user_us: us(ru.ru_utime),
            sys_us: us(ru.ru_stime),
            max_rss_kib: ru.ru_maxrss.max(0) as u64,
        });
    }
}

/// Resets signal `sig` to its default action (SIG_DFL).
///
/// Rust programs start with SIGPIPE ignored, and an
/// ignored disposition survives execve, so a command karton runs would otherwise
/// not die on a broken pipe as it does from a shell.
pub fn default_signal_disposition(sig: libc::c_int) -> Result<()> {
    // SAFETY: SIG_DFL installs no handler of ours, so no code of this process can be
    // called asynchronously as a result; signal() reads no memory of ours.
    let prev = unsafe { libc::signal(sig, libc::SIG_DFL) };
    if prev == libc::SIG_ERR {
        return Err(crate::SysError::last("signal"));
    }
    Ok(())
}

/// Unblocks every signal of the calling thread (the runtime blocks some while it waits;
/// a blocked mask survives execve).
pub fn unblock_all_signals() -> Result<()> {
    nix::sys::signal::SigSet::empty()
        .thread_set_mask()
        .map_err(|e| crate::SysError::new("pthread_sigmask", e))
}

/// Makes `cmd`'s child start with no signal blocked. A blocked mask survives fork and
/// execve, and a process that reads its stop signals from a signalfd (`karton trace`)
/// blocks them: without this the command it runs could not be stopped with SIGINT or
/// SIGTERM.
pub fn spawn_with_empty_signal_mask(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and execve; it allocates
    // nothing and makes one async-signal-safe call (rt_sigprocmask on an empty set built
    // on the stack).
    unsafe {
        cmd.pre_exec(|| nix::sys::signal::SigSet::empty().thread_set_mask().map_err(std::io::Error::from));
    }
}

/// Makes `cmd`'s child enter the mount namespace `ns` (an open `/proc/PID/ns/mnt`) right
/// before execve, then change to `cwd` there (entering a mount namespace resets the
/// working directory to its root). One process, no wrapper: how `karton bench` runs every
/// runtime in one prepared layout. `ns` must stay open until the command is spawned.
pub fn enter_mount_ns_before_exec(
    cmd: &mut std::process::Command,
    ns: BorrowedFd<'_>,
    cwd: &std::path::Path,
) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let cwd = std::ffi::CString::new(cwd.as_os_str().as_bytes())
        .map_err(|_| crate::SysError::new("chdir", nix::errno::Errno::EINVAL))?;
    let fd = ns.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and execve; it allocates nothing
    // and makes two raw syscalls on values made before the fork (the caller keeps `ns`
    // open until the spawn; the child's copy of the descriptor is open whatever its flags,
    // since close-on-exec acts only at the execve that follows).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNS) != 0 || libc::chdir(cwd.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// setdomainname(2) in the caller's uts namespace (no /proc needed, so it works where
/// /proc/sys is read-only or owned by another user namespace).
pub fn setdomainname(name: &str) -> Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, which the kernel only reads.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    check("setdomainname", ret as libc::c_long).map(drop)
}

/// set_mempolicy(2) for the calling thread (inherited by its children and kept across
/// execve): `mode` is an MPOL_* mode, `flags` MPOL_F_* mode flags, `nodemask` a bitmap
/// of NUMA nodes (bit n of word n/64 = node n; empty for none).
pub fn set_mempolicy(mode: i32, flags: i32, nodemask: &[u64]) -> Result<()> {
    // One zero word beyond the caller's: whether this kernel reads `maxnode` or
    // `maxnode - 1` bits (it changed over time), every bit the caller set is read.
    let mut mask = nodemask.to_vec();
    if !mask.is_empty() {
        mask.push(0);
    }
    let maxnode = (mask.len() * 64) as libc::c_ulong;
    let ptr = if mask.is_empty() { std::ptr::null() } else { mask.as_ptr() };
    // SAFETY: `ptr` is null or points to `mask`, which holds exactly `maxnode` bits and
    // outlives the call; the kernel only reads it.
    let ret = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode | flags, ptr, maxnode) };
    check("set_mempolicy", ret).map(drop)
}

/// The MPOL_F_* flags that set_mempolicy(2) takes in its mode argument.
pub const MPOL_MODE_FLAGS: i32 = (1 << 15) | (1 << 14) | (1 << 13);

/// get_mempolicy(2) of the calling thread: (mode, MPOL_F_* flags, nodemask of up to
/// 1024 nodes).
pub fn get_mempolicy() -> Result<(i32, i32, Vec<u64>)> {
    let mut mode: libc::c_int = 0;
    let mut mask = vec![0u64; 16];
    let maxnode = (mask.len() * 64) as libc::c_ulong;
    // SAFETY: `mode` and `mask` are valid for writing and `mask` holds `maxnode` bits; a
    // null address with flags 0 asks for the thread's policy and reads no memory.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_get_mempolicy,
            &mut mode as *mut libc::c_int,
            mask.as_mut_ptr(),
            maxnode,
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    check("get_mempolicy", ret)?;
    while mask.last() == Some(&0) {
        mask.pop();
    }
    Ok((mode & !MPOL_MODE_FLAGS, mode & MPOL_MODE_FLAGS, mask))
}
