//! clone3: one call that makes a child in new namespaces, optionally straight into a cgroup.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::{Result, SysError};

pub const CLONE_NEWTIME: u64 = 0x0000_0080;
pub const CLONE_NEWNS: u64 = 0x0002_0000;
pub const CLONE_NEWCGROUP: u64 = 0x0200_0000;
pub const CLONE_NEWUTS: u64 = 0x0400_0000;
pub const CLONE_NEWIPC: u64 = 0x0800_0000;
pub const CLONE_NEWUSER: u64 = 0x1000_0000;
pub const CLONE_NEWPID: u64 = 0x2000_0000;
pub const CLONE_NEWNET: u64 = 0x4000_0000;
pub const CLONE_PIDFD: u64 = 0x0000_1000;
pub const CLONE_PARENT: u64 = 0x0000_8000;
pub const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` as of Linux 5.7 (CLONE_INTO_CGROUP).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Which side of the clone we are on.
#[derive(Debug)]
pub enum Forked {
    Child,
    Parent { pid: libc::pid_t, pidfd: OwnedFd },
}

/// Forks this process with `clone3(2)`, creating the namespaces in `ns_flags` for the child
/// (which may also carry CLONE_PARENT)
/// and, when `cgroup` is given, starting the child in that cgroup v2 directory.
///
/// The child runs on a copy of the caller's stack, as with fork(2). It returns the child's
/// pidfd as well so that signals can never reach a recycled pid.
///
/// Prefer [`clone3_single_threaded`], which checks the precondition.
///
/// # Safety
/// The process must have a single thread. The child gets a copy of the calling thread
/// only: a lock (malloc's, stdio's, any Mutex) that another thread held stays locked
/// forever in the child, so anything but async-signal-safe work there may deadlock or
/// corrupt memory.
pub unsafe fn clone3(ns_flags: u64, cgroup: Option<BorrowedFd<'_>>) -> Result<Forked> {
    let mut pidfd: RawFd = -1;
    let mut args = CloneArgs {
        flags: ns_flags | CLONE_PIDFD,
        pidfd: &mut pidfd as *mut RawFd as u64,
        // With CLONE_PARENT the kernel takes the exit signal from our own parent's.
        exit_signal: if ns_flags & CLONE_PARENT != 0 { 0 } else { libc::SIGCHLD as u64 },
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: `args` is a valid, fully initialised clone_args of the size we pass; stack 0
    // gives fork semantics (the child continues on a copy of this stack), and `pidfd`
    // outlives the call. The caller guarantees the process is single-threaded.
    let ret = unsafe {
        libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>())
    };
    match ret {
        r if r < 0 => Err(SysError::last("clone3")),
        0 => Ok(Forked::Child),
        // SAFETY: with CLONE_PIDFD the kernel stored a new, owned pidfd in `pidfd`.
        pid => Ok(Forked::Parent { pid: pid as libc::pid_t, pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) } }),
    }
}

/// Plain fork(2) for the places that need a second process without new namespaces
/// (joining a pid or time namespace applies to children only).
///
/// Prefer [`fork_single_threaded`], which checks the precondition.
///
/// # Safety
/// As for [`clone3`]: the process must have a single thread.
pub unsafe fn fork() -> Result<Option<libc::pid_t>> {
    // SAFETY: the caller guarantees a single-threaded process, so the child's copy of
    // memory holds no lock owned by a vanished thread.
    match unsafe { libc::fork() } {
        -1 => Err(SysError::last("fork")),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// What [`ensure_single_threaded`] reports when other threads exist.
pub const MULTI_THREADED: &str =
    "fork refused: the calling process has more than one thread (the kernel's check: unshare(CLONE_THREAD|CLONE_VM))";

/// Checks, with the kernel's own test, that the calling process may fork safely: no other
/// thread in its thread group and no other process sharing its memory (as a vfork
/// parent does). unshare(2) with CLONE_THREAD | CLONE_SIGHAND | CLONE_VM succeeds only
/// then, and changes nothing when it succeeds (check_unshare_flags in kernel/fork.c);
/// otherwise it fails with EINVAL. It needs no /proc, so it answers in any mount or pid
/// namespace (the runtime forks again after joining the container's).
pub fn ensure_single_threaded() -> Result<()> {
    let flags = libc::CLONE_THREAD | libc::CLONE_SIGHAND | libc::CLONE_VM;
    // SAFETY: unshare takes flags only and touches no memory of ours; with these flags
    // it either fails or returns without changing anything.
    match unsafe { libc::unshare(flags) } {
        0 => Ok(()),
        _ => match crate::Errno::last() {
            crate::Errno::EINVAL => Err(SysError::new(MULTI_THREADED, crate::Errno::EINVAL)),
            // A seccomp filter may refuse unshare (EPERM, ENOSYS): count the threads in
            // /proc instead.
            e => match thread_count() {
                Some(1) => Ok(()),
                Some(_) => Err(SysError::new(MULTI_THREADED, crate::Errno::EINVAL)),
                None => Err(SysError::new(
                    "unshare(CLONE_THREAD|CLONE_VM) (single-thread check), and no /proc/self/task",
                    e,
                )),
            },
        },
    }
}

/// The number of threads of the calling process (entries of /proc/self/task), for
/// messages; `None` when /proc is not available.
pub fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task").ok().map(|d| d.count())
}

/// [`clone3`] after checking that the process is single-threaded
/// ([`ensure_single_threaded`]); fails with [`MULTI_THREADED`] otherwise.
pub fn clone3_single_threaded(ns_flags: u64, cgroup: Option<BorrowedFd<'_>>) -> Result<Forked> {
    ensure_single_threaded()?;
    // SAFETY: ensure_single_threaded just confirmed, with the kernel, that this process
    // has one thread and shares its memory with no other process; nothing between the
    // check and the call can start a thread (this thread is the only one).
    unsafe { clone3(ns_flags, cgroup) }
}

/// [`fork`] after checking that the process is single-threaded.
pub fn fork_single_threaded() -> Result<Option<libc::pid_t>> {
    ensure_single_threaded()?;
    // SAFETY: as in clone3_single_threaded, the kernel just confirmed a single thread.
    unsafe { fork() }
}

/// Ends the calling process at once, without running atexit handlers or flushing
/// stdio buffers that belong to the parent's copy of memory.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and never returns.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forking_from_a_threaded_process_is_refused() {
        // The test harness runs this test on a thread of its own: at least two threads.
        assert!(thread_count().is_some_and(|n| n > 1), "{:?}", thread_count());
        let e = ensure_single_threaded().err();
        assert_eq!(e.map(|e| e.errno), Some(crate::Errno::EINVAL));
        assert!(matches!(fork_single_threaded(), Err(SysError { call: MULTI_THREADED, .. })));
        assert!(matches!(clone3_single_threaded(0, None), Err(SysError { call: MULTI_THREADED, .. })));
    }
}
