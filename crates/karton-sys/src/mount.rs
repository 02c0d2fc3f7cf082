//! The new mount API (open_tree, move_mount, mount_setattr, fsopen/fsconfig/fsmount).
//!
//! The classic mount(2), umount2(2) and pivot_root(2) are safe in `nix` and used from there.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::{check, Result};

pub const OPEN_TREE_CLONE: u32 = 0x1;
pub const OPEN_TREE_CLOEXEC: u32 = libc::O_CLOEXEC as u32;
pub const AT_RECURSIVE: u32 = 0x8000;
pub const AT_EMPTY_PATH: u32 = libc::AT_EMPTY_PATH as u32;
pub const AT_SYMLINK_NOFOLLOW: u32 = libc::AT_SYMLINK_NOFOLLOW as u32;
pub const MOVE_MOUNT_F_EMPTY_PATH: u32 = 0x4;
pub const MOVE_MOUNT_T_EMPTY_PATH: u32 = 0x40;

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

/// open_tree(2): a file descriptor for the mount (or a detached clone of it) at `path`.
pub fn open_tree(dirfd: BorrowedFd<'_>, path: &CStr, flags: u32) -> Result<OwnedFd> {
    // SAFETY: `path` is a NUL-terminated string valid for the call; the return is a new fd.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, dirfd.as_raw_fd(), path.as_ptr(), flags) };
    let fd = check("open_tree", ret)?;
    // SAFETY: on success the kernel returned a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// move_mount(2): attach the detached mount `from` onto the object `to` (an O_PATH fd).
pub fn move_mount_fd(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<()> {
    let empty = c"";
    // SAFETY: both fds are valid; the empty paths are NUL-terminated statics.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            empty.as_ptr(),
            to.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    check("move_mount", ret).map(drop)
}

/// mount_setattr(2) on the mount at `dirfd` (+ `path`); AT_RECURSIVE applies to the subtree.
pub fn mount_setattr(dirfd: BorrowedFd<'_>, path: &CStr, flags: u32, attr: &MountAttr) -> Result<()> {
    // SAFETY: `attr` points to a valid mount_attr of the size given; `path` is NUL-terminated.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd.as_raw_fd(),
            path.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check("mount_setattr", ret).map(drop)
}

const FSCONFIG_SET_FLAG: u32 = 0;
const FSCONFIG_SET_STRING: u32 = 1;
const FSCONFIG_CMD_CREATE: u32 = 6;

/// fsopen(2): a filesystem context for `fstype` ("tmpfs", "proc", ...).
pub fn fsopen(fstype: &CStr) -> Result<OwnedFd> {
    const FSOPEN_CLOEXEC: u32 = 1;
    // SAFETY: `fstype` is NUL-terminated; the return is a new fd.
    let ret = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    let fd = check("fsopen", ret)?;
    // SAFETY: on success the kernel returned a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// fsconfig(FSCONFIG_SET_STRING, key, value).
pub fn fsconfig_set_string(fs: BorrowedFd<'_>, key: &CStr, value: &CStr) -> Result<()> {
    // SAFETY: key and value are NUL-terminated strings valid for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        )
    };
    check("fsconfig", ret).map(drop)
}

/// fsconfig(FSCONFIG_SET_FLAG, key).
pub fn fsconfig_set_flag(fs: BorrowedFd<'_>, key: &CStr) -> Result<()> {
    // SAFETY: key is NUL-terminated; value must be NULL for flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_FLAG,
            key.as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    check("fsconfig", ret).map(drop)
}

/// fsconfig(FSCONFIG_CMD_CREATE): make the superblock.
pub fn fsconfig_create(fs: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: no pointers are passed for this command.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    check("fsconfig(CREATE)", ret).map(drop)
}

/// fsmount(2): a detached mount of the created filesystem, with MOUNT_ATTR_* `attrs`.
pub fn fsmount(fs: BorrowedFd<'_>, attrs: u64) -> Result<OwnedFd> {
    const FSMOUNT_CLOEXEC: u32 = 1;
    // SAFETY: integers only; the return is a new fd.
    let ret = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs as u32) };
    let fd = check("fsmount", ret)?;
    // SAFETY: on success the kernel returned a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The messages the kernel logged on a filesystem context (why fsconfig failed),
/// read from the fsopen fd; empty when there are none.
pub fn fs_context_log(fs: BorrowedFd<'_>) -> String {
    let mut out = String::new();
    let mut buf = [0u8; 512];
    for _ in 0..8 {
        // SAFETY: reads into a buffer we own of the given length.
        let n = unsafe { libc::read(fs.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf[..n as usize]);
        // Lines start with "e ", "w " or "i " for error, warning, info.
        let text = line.get(2..).unwrap_or(&line).trim().to_string();
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(&text);
    }
    out
}
