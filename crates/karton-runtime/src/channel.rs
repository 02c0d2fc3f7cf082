//! Typed messages between the runtime and the container's init over a socketpair.
//!
//! SOCK_SEQPACKET keeps message boundaries, so each message is one JSON datagram, and a
//! closed peer reads as end-of-file: a child that dies mid-setup is noticed at once.
//!
//! The runtime's end has SO_PASSCRED: the kernel attaches the sender's pid, translated
//! into the runtime's pid namespace, to every message. Which process is the container's
//! init is therefore read from the kernel, never from what a message says, and messages of
//! an intermediate process and of the init it forked cannot be confused whatever their
//! order.

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{
    recvmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessageOwned, MsgFlags, SockFlag,
    SockType,
};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Msg {
    /// Runtime → init: id maps are written and the init is in its cgroups; go on.
    Proceed,
    /// Init → runtime, first thing from the process that will execve (after any second
    /// fork): its pid comes with the message's credentials.
    Hello,
    /// Runtime → init: the answer to Hello: the init's pid as the host sees it and the
    /// container state (status "creating") that hooks and a seccomp agent receive.
    Welcome { pid: i32, state: String },
    /// Init → runtime: the environment exists; run prestart and createRuntime hooks now.
    RunRuntimeHooks,
    /// Runtime → init: hooks done.
    HooksDone,
    /// Init → runtime: set up, waiting on exec.fifo.
    Ready,
    /// Either way: setup failed; the text says why.
    Error(String),
}

impl Msg {
    /// The datagram for this message. Encoded ahead of time where it must be sent after
    /// the seccomp filter, when allocating may no longer be allowed.
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Init(format!("encoding message: {e}")))
    }
}

pub struct Channel {
    fd: OwnedFd,
}

/// A received message and the pid of the process that sent it (runtime end only).
pub struct Received {
    pub msg: Msg,
    pub sender: Option<i32>,
}

/// The send buffer each end asks for. A datagram must fit the sender's buffer whole, and
/// Welcome carries the container state with the config's annotations, of which Kubernetes
/// allows 256 KiB per pod (CRI copies them into config.json); the default buffer (208 KiB
/// on Debian) would refuse that. The kernel caps the request at net.core.wmem_max and
/// doubles it: 416 KiB at Debian's default maximum.
const SEND_BUFFER: usize = 1 << 20;

/// (runtime end, init end).
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .ctx(|| "creating the runtime/init socketpair".to_string())?;
    setsockopt(&a, sockopt::PassCred, &true).ctx(|| "SO_PASSCRED on the runtime's socket".to_string())?;
    for end in [&a, &b] {
        setsockopt(end, sockopt::SndBuf, &SEND_BUFFER)
            .ctx(|| "SO_SNDBUF on the runtime/init socketpair".to_string())?;
    }
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        self.send_raw(&msg.encode()?)
    }

    /// Sends an encoded message with plain write(2): it is the one call a seccomp profile
    /// that lets the process write anything at all allows, so even an error raised under a
    /// strict filter reaches the runtime.
    pub fn send_raw(&self, buf: &[u8]) -> Result<()> {
        loop {
            match nix::unistd::write(&self.fd, buf) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(e).ctx(|| "sending to the other end of the runtime/init channel".to_string())
                }
            }
        }
    }

    /// Receives one message; `None` when the peer closed its end.
    pub fn recv(&self) -> Result<Option<Msg>> {
        Ok(self.recv_from()?.map(|r| r.msg))
    }

    /// Receives one message with its sender's pid (as the kernel reports it).
    pub fn recv_from(&self) -> Result<Option<Received>> {
        let mut buf = vec![0u8; self.next_len()?.max(1)];
        let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
        loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(self.fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(m) => {
                    let n = m.bytes;
                    if n == 0 {
                        return Ok(None);
                    }
                    let mut sender = None;
                    for c in m.cmsgs().ctx(|| "reading the init's credentials".to_string())? {
                        if let ControlMessageOwned::ScmCredentials(cred) = c {
                            sender = Some(cred.pid());
                        }
                    }
                    let msg = serde_json::from_slice(&buf[..n])
                        .map_err(|e| Error::Init(format!("garbled message from the container init: {e}")))?;
                    return Ok(Some(Received { msg, sender }));
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "receiving from the container init".to_string()),
            }
        }
    }

    /// The length of the next datagram, whole (MSG_TRUNC), without taking it (MSG_PEEK): the
    /// buffer is made to fit, so no message is cut short whatever it carries. 0 at EOF.
    fn next_len(&self) -> Result<usize> {
        loop {
            match nix::sys::socket::recv(
                self.fd.as_raw_fd(),
                &mut [0u8; 1],
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return r.ctx(|| "receiving from the container init".to_string()),
            }
        }
    }

    /// Receives and insists on `want`; an Error message or EOF becomes an error.
    pub fn expect(&self, want: &Msg) -> Result<()> {
        match self.recv()? {
            Some(m) if &m == want => Ok(()),
            Some(Msg::Error(e)) => Err(Error::Init(e)),
            Some(other) => Err(Error::Init(format!("expected {want:?}, got {other:?}"))),
            None => Err(Error::Init("the container process exited during setup".into())),
        }
    }

    /// Runtime side: lets the child go on. A child that failed before it waits (joining
    /// its cgroup, say) has queued its reason and gone: that reason is the error then.
    pub fn proceed(&self) -> Result<()> {
        let buf = Msg::Proceed.encode()?;
        // MSG_NOSIGNAL: to a child that is gone, EPIPE and its queued reason, not SIGPIPE.
        let sent = loop {
            match nix::sys::socket::send(self.fd.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r,
            }
        };
        match sent {
            Ok(_) => Ok(()),
            Err(e) => match self.recv() {
                Ok(Some(Msg::Error(reason))) => Err(Error::Init(reason)),
                _ => Err(e).ctx(|| "sending to the other end of the runtime/init channel".to_string()),
            },
        }
    }

    /// Init side: the runtime has written the maps; the init is in its cgroups.
    pub fn wait_for_proceed(&self) -> Result<()> {
        self.expect(&Msg::Proceed)
    }

    /// Init side: the answer to Hello, the init's pid as the host sees it and the
    /// container's state.
    pub fn wait_for_welcome(&self) -> Result<(i32, String)> {
        match self.recv()? {
            Some(Msg::Welcome { pid, state }) => Ok((pid, state)),
            Some(Msg::Error(e)) => Err(Error::Init(e)),
            other => Err(Error::Init(format!("expected the runtime's welcome, got {other:?}"))),
        }
    }

    /// Init side: the runtime has run the prestart and createRuntime hooks.
    pub fn wait_for_hooks_done(&self) -> Result<()> {
        self.expect(&Msg::HooksDone)
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Moves the socket to a number at or above `min` (see `crate::fds`).
    pub fn relocate(self, min: i32) -> Result<Channel> {
        Ok(Channel { fd: crate::fds::relocate(self.fd, min)? })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn large_messages_arrive_whole() {
        let (runtime, init) = pair().unwrap();
        // More than the old fixed 64 KiB buffer and than the default send buffer.
        let state = format!("{{\"annotations\":{{\"big\":\"{}\"}}}}", "x".repeat(300 * 1024));
        let welcome = Msg::Welcome { pid: 42, state };
        runtime.send(&welcome).unwrap();
        assert_eq!(init.recv().unwrap(), Some(welcome));
        init.send(&Msg::Hello).unwrap();
        let got = runtime.recv_from().unwrap().unwrap();
        assert_eq!(got.msg, Msg::Hello);
        assert_eq!(got.sender, Some(std::process::id() as i32), "credentials still come with it");
        drop(init);
        assert!(runtime.recv().unwrap().is_none(), "a closed peer reads as the end");
    }
}
