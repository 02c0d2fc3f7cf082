//! The bpf(2) commands karton-cgroup needs for cgroup v2 device programs: load a
//! BPF_PROG_TYPE_CGROUP_DEVICE program from raw instructions, attach/detach it to a cgroup
//! directory, list what is attached.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::{check, Result};

pub const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
pub const BPF_CGROUP_DEVICE: u32 = 6;
pub const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;

/// `struct bpf_insn`: opcode, dst/src registers (4 bits each), offset, immediate.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Insn {
    pub code: u8,
    /// dst in the low nibble, src in the high nibble.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// The `union bpf_attr` as a zeroed byte block large enough for every command used here;
/// each command writes its own fields at their offsets.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn get_u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        b.copy_from_slice(&self.0[off..off + 4]);
        u32::from_ne_bytes(b)
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr, name: &'static str) -> Result<libc::c_long> {
    // SAFETY: `attr` is a valid, zero-initialised bpf_attr-sized buffer of the size passed;
    // every pointer stored in it (instructions, license, log, id array) is set by the
    // caller to memory that outlives this call.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), attr.0.len() as u32) };
    check(name, ret)
}

/// BPF_PROG_LOAD of a cgroup device program. On a verifier error, the verifier's log is
/// written into `log` (when not empty) so callers can show it.
pub fn load_cgroup_device_prog(insns: &[Insn], license: &std::ffi::CStr, log: &mut [u8]) -> Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, BPF_PROG_TYPE_CGROUP_DEVICE)
        .u32(4, insns.len() as u32)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64);
    if !log.is_empty() {
        a.u32(24, 1).u32(28, log.len() as u32).u64(32, log.as_mut_ptr() as u64);
    }
    let fd = bpf(BPF_PROG_LOAD, &mut a, "bpf(BPF_PROG_LOAD)")?;
    // SAFETY: on success the kernel returned a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// BPF_PROG_ATTACH `prog` to the cgroup directory `cgroup` (an O_DIRECTORY fd).
pub fn prog_attach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>, attach_type: u32, flags: u32) -> Result<()> {
    let mut a = Attr::new();
    a.u32(0, cgroup.as_raw_fd() as u32).u32(4, prog.as_raw_fd() as u32).u32(8, attach_type).u32(12, flags);
    bpf(BPF_PROG_ATTACH, &mut a, "bpf(BPF_PROG_ATTACH)").map(drop)
}

/// BPF_PROG_DETACH `prog` from `cgroup`.
pub fn prog_detach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>, attach_type: u32) -> Result<()> {
    let mut a = Attr::new();
    a.u32(0, cgroup.as_raw_fd() as u32).u32(4, prog.as_raw_fd() as u32).u32(8, attach_type);
    bpf(BPF_PROG_DETACH, &mut a, "bpf(BPF_PROG_DETACH)").map(drop)
}

/// BPF_PROG_QUERY: ids of the programs attached to `cgroup` itself (not inherited).
pub fn prog_query(cgroup: BorrowedFd<'_>, attach_type: u32) -> Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut a = Attr::new();
    a.u32(0, cgroup.as_raw_fd() as u32)
        .u32(4, attach_type)
        .u64(16, ids.as_mut_ptr() as u64)
        .u32(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut a, "bpf(BPF_PROG_QUERY)")?;
    let n = (a.get_u32(24) as usize).min(ids.len());
    ids.truncate(n);
    Ok(ids)
}

/// BPF_PROG_GET_FD_BY_ID.
pub fn prog_fd_by_id(id: u32) -> Result<OwnedFd> {
    let mut a = Attr::new();
    a.u32(0, id);
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut a, "bpf(BPF_PROG_GET_FD_BY_ID)")?;
    // SAFETY: on success the kernel returned a new fd that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
