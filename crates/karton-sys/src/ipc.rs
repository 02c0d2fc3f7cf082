//! System V message queues (the benchmark's IPC ping-pong; nix has no wrapper).

use crate::{check, Result};

/// A private System V message queue, removed on drop.
#[derive(Debug)]
pub struct MsgQueue {
    id: libc::c_int,
}

/// Largest payload [`MsgQueue::send`] accepts.
pub const MSG_MAX: usize = 256;

#[repr(C)]
struct MsgBuf {
    mtype: libc::c_long,
    mtext: [u8; MSG_MAX],
}

impl MsgQueue {
    /// msgget(IPC_PRIVATE, IPC_CREAT | 0600).
    pub fn new_private() -> Result<Self> {
        // SAFETY: msgget takes plain integers and touches no memory of ours.
        let id = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
        check("msgget", id as libc::c_long)?;
        Ok(Self { id })
    }

    /// Sends `data` (at most [`MSG_MAX`] bytes, longer is cut) with message type `mtype` (> 0).
    pub fn send(&self, mtype: i64, data: &[u8]) -> Result<()> {
        let mut buf = MsgBuf { mtype: mtype as libc::c_long, mtext: [0; MSG_MAX] };
        let n = data.len().min(MSG_MAX);
        buf.mtext[..n].copy_from_slice(&data[..n]);
        // SAFETY: buf is a valid msgbuf (long mtype followed by n bytes of text) that lives
        // across the call; the kernel only reads sizeof(long) + n bytes from it.
        let r = unsafe { libc::msgsnd(self.id, std::ptr::addr_of!(buf).cast(), n, 0) };
        check("msgsnd", r as libc::c_long).map(|_| ())
    }

    /// Receives the next message of type `mtype` into `out`; returns its length.
    pub fn recv(&self, mtype: i64, out: &mut [u8]) -> Result<usize> {
        let mut buf = MsgBuf { mtype: 0, mtext: [0; MSG_MAX] };
        // SAFETY: buf has room for sizeof(long) + MSG_MAX bytes, the size we pass; the
        // kernel writes at most that much.
        let r = unsafe {
            libc::msgrcv(self.id, std::ptr::addr_of_mut!(buf).cast(), MSG_MAX, mtype as libc::c_long, 0)
        };
        let n = check("msgrcv", r as libc::c_long)? as usize;
        let k = n.min(out.len());
        out[..k].copy_from_slice(&buf.mtext[..k]);
        Ok(n)
    }
}

impl Drop for MsgQueue {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID ignores the buffer argument, so a null pointer is fine.
        unsafe { libc::msgctl(self.id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}
