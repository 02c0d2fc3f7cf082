//! System calls the isolation audit (`karton-audit`) needs and nix does not wrap: SysV IPC,
//! kernel keyrings, syslog(2), adjtimex permission checks, prlimit on another process and
//! an init_module permission check that can never load anything.
//!
//! Every wrapper is written so that it cannot change the host: the clock check writes back
//! the value it just read, the module check passes an empty image, syslog only asks for the
//! buffer size.

use crate::{check, Result, SysError};

/// shmget(2): the id of the segment with `key` (create with `IPC_CREAT|mode` in `flags`).
pub fn shmget(key: i32, size: usize, flags: i32) -> Result<i32> {
    // SAFETY: integers only.
    let ret = unsafe { libc::shmget(key, size, flags) };
    check("shmget", ret as libc::c_long).map(|r| r as i32)
}

/// Attaches segment `id`, copies `len` bytes out of it (or writes `data` into it when
/// given), and detaches. Returns the bytes read.
pub fn shm_rw(id: i32, len: usize, data: Option<&[u8]>) -> Result<Vec<u8>> {
    // SAFETY: shmat with a null address lets the kernel choose where to map; the result is
    // checked against (void*)-1 before use.
    let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    if addr as isize == -1 {
        return Err(SysError::last("shmat"));
    }
    let mut seg = shmid_zero();
    // SAFETY: IPC_STAT fills the shmid_ds we own.
    let st = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut seg) };
    let size = if st == 0 { seg.shm_segsz } else { 0 };
    let n = len.min(size);
    let mut out = vec![0u8; n];
    if let Some(d) = data {
        let m = d.len().min(size);
        // SAFETY: the mapping is at least `size` bytes long and `m <= size`.
        unsafe { std::ptr::copy_nonoverlapping(d.as_ptr(), addr as *mut u8, m) };
    }
    // SAFETY: the mapping is at least `size` bytes long and `n <= size`.
    unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), n) };
    // SAFETY: `addr` came from shmat above and is detached once.
    unsafe { libc::shmdt(addr) };
    Ok(out)
}

fn shmid_zero() -> libc::shmid_ds {
    // SAFETY: shmid_ds is plain old data; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// shmctl(IPC_RMID).
pub fn shm_remove(id: i32) -> Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    let ret = unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    check("shmctl(IPC_RMID)", ret as libc::c_long).map(drop)
}

/// msgget(2).
pub fn msgget(key: i32, flags: i32) -> Result<i32> {
    // SAFETY: integers only.
    let ret = unsafe { libc::msgget(key, flags) };
    check("msgget", ret as libc::c_long).map(|r| r as i32)
}

/// msgctl(IPC_STAT): the number of messages on queue `id`.
pub fn msg_qnum(id: i32) -> Result<u64> {
    // SAFETY: msqid_ds is plain old data; all-zero is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT fills the msqid_ds we own.
    let ret = unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) };
    check("msgctl(IPC_STAT)", ret as libc::c_long)?;
    Ok(ds.msg_qnum as u64)
}

/// msgsnd(2) of one message of type 1 (IPC_NOWAIT).
pub fn msg_send(id: i32, text: &[u8]) -> Result<()> {
    let mut buf = vec![0u8; std::mem::size_of::<libc::c_long>() + text.len()];
    buf[..std::mem::size_of::<libc::c_long>()].copy_from_slice(&(1 as libc::c_long).to_ne_bytes());
    buf[std::mem::size_of::<libc::c_long>()..].copy_from_slice(text);
    // SAFETY: buf holds a long mtype followed by `text.len()` bytes of mtext.
    let ret = unsafe { libc::msgsnd(id, buf.as_ptr() as *const libc::c_void, text.len(), libc::IPC_NOWAIT) };
    check("msgsnd", ret as libc::c_long).map(drop)
}

/// msgctl(IPC_RMID).
pub fn msg_remove(id: i32) -> Result<()> {
    // SAFETY: IPC_RMID takes no buffer.
    let ret = unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    check("msgctl(IPC_RMID)", ret as libc::c_long).map(drop)
}

/// semget(2) of a one-semaphore set.
pub fn semget(key: i32, flags: i32) -> Result<i32> {
    // SAFETY: integers only.
    let ret = unsafe { libc::semget(key, 1, flags) };
    check("semget", ret as libc::c_long).map(|r| r as i32)
}

/// semctl(SETVAL) of semaphore 0.
pub fn sem_setval(id: i32, val: i32) -> Result<()> {
    // SAFETY: SETVAL takes the value as the variadic int argument.
    let ret = unsafe { libc::semctl(id, 0, libc::SETVAL, val) };
    check("semctl(SETVAL)", ret as libc::c_long).map(drop)
}

/// semctl(GETVAL) of semaphore 0.
pub fn sem_getval(id: i32) -> Result<i32> {
    // SAFETY: GETVAL takes no further argument.
    let ret = unsafe { libc::semctl(id, 0, libc::GETVAL) };
    check("semctl(GETVAL)", ret as libc::c_long).map(|r| r as i32)
}

/// semctl(IPC_RMID).
pub fn sem_remove(id: i32) -> Result<()> {
    // SAFETY: IPC_RMID takes no further argument.
    let ret = unsafe { libc::semctl(id, 0, libc::IPC_RMID) };
    check("semctl(IPC_RMID)", ret as libc::c_long).map(drop)
}

/// The user keyring of the caller (KEY_SPEC_USER_KEYRING).
pub const KEY_SPEC_USER_KEYRING: i32 = -4;
const KEYCTL_UNLINK: libc::c_long = 9;
const KEYCTL_SEARCH: libc::c_long = 10;
const KEYCTL_READ: libc::c_long = 11;

/// add_key("user", desc, payload, keyring): the new key's serial.
pub fn add_user_key(desc: &std::ffi::CStr, payload: &[u8], keyring: i32) -> Result<i32> {
    // SAFETY: type and description are NUL-terminated strings, payload a valid slice.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"user".as_ptr(),
            desc.as_ptr(),
            payload.as_ptr() as *const libc::c_void,
            payload.len(),
            keyring as libc::c_long,
        )
    };
    check("add_key", ret).map(|r| r as i32)
}

/// keyctl(KEYCTL_SEARCH, keyring, "user", desc, 0): the serial of a matching key.
pub fn search_user_key(keyring: i32, desc: &std::ffi::CStr) -> Result<i32> {
    // SAFETY: strings are NUL-terminated; destination keyring 0 means "do not link".
    let ret = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_SEARCH,
            keyring as libc::c_long,
            c"user".as_ptr(),
            desc.as_ptr(),
            0 as libc::c_long,
        )
    };
    check("keyctl(SEARCH)", ret).map(|r| r as i32)
}

/// keyctl(KEYCTL_READ): the payload of key `serial` (up to 256 bytes).
pub fn read_key(serial: i32) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    // SAFETY: the buffer is writable for its whole length, which we pass.
    let ret = unsafe {
        libc::syscall(libc::SYS_keyctl, KEYCTL_READ, serial as libc::c_long, buf.as_mut_ptr(), buf.len())
    };
    let n = check("keyctl(READ)", ret)? as usize;
    buf.truncate(n.min(256));
    Ok(buf)
}

/// keyctl(KEYCTL_SETPERM, key, perm).
pub fn set_key_perm(serial: i32, perm: u32) -> Result<()> {
    const KEYCTL_SETPERM: libc::c_long = 5;
    // SAFETY: integers only.
    let ret = unsafe {
        libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, serial as libc::c_long, perm as libc::c_long)
    };
    check("keyctl(SETPERM)", ret).map(drop)
}

/// keyctl(KEYCTL_UNLINK, key, keyring).
pub fn unlink_key(serial: i32, keyring: i32) -> Result<()> {
    // SAFETY: integers only.
    let ret = unsafe {
        libc::syscall(libc::SYS_keyctl, KEYCTL_UNLINK, serial as libc::c_long, keyring as libc::c_long)
    };
    check("keyctl(UNLINK)", ret).map(drop)
}

/// syslog(SYSLOG_ACTION_SIZE_BUFFER): the kernel log buffer's size. Subject to the same
/// permission check as reading the log when kernel.dmesg_restrict is 1; reads no content.
pub fn syslog_size() -> Result<i32> {
    const SYSLOG_ACTION_SIZE_BUFFER: libc::c_int = 10;
    // SAFETY: this action takes no buffer.
    let ret = unsafe { libc::klogctl(SYSLOG_ACTION_SIZE_BUFFER, std::ptr::null_mut(), 0) };
    check("syslog(SIZE_BUFFER)", ret as libc::c_long).map(|r| r as i32)
}

/// The permission check of setting the clock, without changing it: adjtimex reads the
/// current maximum error, then sets ADJ_MAXERROR to that same value. Setting any timex
/// field needs CAP_SYS_TIME in the initial user namespace. Returns the value written back.
pub fn clock_set_check() -> Result<i64> {
    // SAFETY: timex is plain old data; all-zero (modes 0) is a read-only query.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: adjtimex fills the timex we own; modes 0 changes nothing.
    let ret = unsafe { libc::adjtimex(&mut tx) };
    check("adjtimex(read)", ret as libc::c_long)?;
    let maxerror = tx.maxerror;
    // SAFETY: timex is plain old data.
    let mut set: libc::timex = unsafe { std::mem::zeroed() };
    set.modes = libc::ADJ_MAXERROR;
    set.maxerror = maxerror;
    // SAFETY: sets only time_maxerror, to the value just read.
    let ret = unsafe { libc::adjtimex(&mut set) };
    check("adjtimex(ADJ_MAXERROR)", ret as libc::c_long)?;
    Ok(maxerror as i64)
}

/// init_module with an empty image: the kernel checks CAP_SYS_MODULE (and
/// kernel.modules_disabled) first, then rejects the zero-length image with ENOEXEC. Nothing
/// can be loaded. Returns the errno: EPERM = refused, ENOEXEC = the permission check passed,
/// ENOSYS = no module support in this kernel.
pub fn init_module_check() -> nix::errno::Errno {
    let empty: [u8; 0] = [];
    // SAFETY: a zero-length image and an empty NUL-terminated parameter string.
    let ret = unsafe { libc::syscall(libc::SYS_init_module, empty.as_ptr(), 0usize, c"".as_ptr()) };
    if ret == 0 {
        // Cannot happen with an empty image; report it as "passed the check".
        return nix::errno::Errno::UnknownErrno;
    }
    nix::errno::Errno::last()
}

/// prlimit(2) on another process: sets `resource` to (soft, hard) and returns the old pair.
pub fn prlimit_pid(pid: i32, resource: u32, soft: u64, hard: u64) -> Result<(u64, u64)> {
    let new = libc::rlimit64 { rlim_cur: soft, rlim_max: hard };
    let mut old = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: both structs are valid and owned here.
    let ret = unsafe { libc::prlimit64(pid, resource as _, &new, &mut old) };
    check("prlimit", ret as libc::c_long)?;
    Ok((old.rlim_cur, old.rlim_max))
}

/// prlimit(2) read-only on another process.
pub fn getrlimit_pid(pid: i32, resource: u32) -> Result<(u64, u64)> {
    let mut old = libc::rlimit64 { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a null new limit only reads.
    let ret = unsafe { libc::prlimit64(pid, resource as _, std::ptr::null(), &mut old) };
    check("prlimit", ret as libc::c_long)?;
    Ok((old.rlim_cur, old.rlim_max))
}
