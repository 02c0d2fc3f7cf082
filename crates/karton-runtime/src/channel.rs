//! Typed messages between the runtime and the container's init over a socketpair.
//!
//! SOCK_SEQPACKET keeps message boundaries, so each message is one JSON datagram, and a
//! closed peer reads as end-of-file: a child that dies mid-setup is noticed at once.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Msg {
    /// Runtime → init: id maps are written and the init is in its cgroups; go on.
    Proceed,
    /// Init → runtime: the init pid, when a second fork made it (joined pid/time ns).
    InitPid(i32),
    /// Init → runtime: the environment exists; run prestart and createRuntime hooks now.
    RunRuntimeHooks,
    /// Runtime → init: hooks done.
    HooksDone,
    /// Init → runtime: set up, waiting on exec.fifo.
    Ready,
    /// Either way: setup failed; the text says why.
    Error(String),
}

pub struct Channel {
    fd: OwnedFd,
}

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .ctx(|| "creating the runtime/init socketpair".to_string())?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        let buf = serde_json::to_vec(msg).map_err(|e| Error::Init(format!("encoding message: {e}")))?;
        nix::sys::socket::send(self.fd.as_raw_fd(), &buf, nix::sys::socket::MsgFlags::MSG_NOSIGNAL)
            .ctx(|| "sending to the container init".to_string())
            .map(drop)
    }

    /// Receives one message; `None` when the peer closed its end.
    pub fn recv(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match nix::sys::socket::recv(self.fd.as_raw_fd(), &mut buf, nix::sys::socket::MsgFlags::empty()) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return serde_json::from_slice(&buf[..n])
                        .map(Some)
                        .map_err(|e| Error::Init(format!("garbled message from the container init: {e}")))
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).ctx(|| "receiving from the container init".to_string()),
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

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
