//! Signal names and numbers, and forwarding signals from `karton run` to the container.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::error::{Context, Error, Result};

/// Parses "TERM", "SIGTERM", "term", "15", "RTMIN+3".
pub fn parse(s: &str) -> Result<i32> {
    let bad = || Error::Config(format!("unknown signal {s:?}: use a name such as TERM, KILL or HUP, or a number from 1 to 64"));
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) { Ok(n) } else { Err(bad()) };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off: i32 = if rest.is_empty() { 0 } else { rest.strip_prefix('+').and_then(|r| r.parse().ok()).ok_or_else(bad)? };
        let n = libc::SIGRTMIN() + off;
        return if n <= libc::SIGRTMAX() { Ok(n) } else { Err(bad()) };
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off: i32 = if rest.is_empty() { 0 } else { rest.strip_prefix('-').and_then(|r| r.parse().ok()).ok_or_else(bad)? };
        let n = libc::SIGRTMAX() - off;
        return if n >= libc::SIGRTMIN() { Ok(n) } else { Err(bad()) };
    }
    format!("SIG{name}").parse::<Signal>().map(|s| s as i32).map_err(|_| bad())
}

/// The signals `karton run` passes on to the container's process.
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM, Signal::SIGUSR1, Signal::SIGUSR2,
    Signal::SIGWINCH, Signal::SIGCONT, Signal::SIGTSTP,
];

/// Blocks the forwarded signals (before the container exists, so none is lost) and
/// relays them once the container runs.
pub struct Forwarder {
    sfd: SignalFd,
}

impl Forwarder {
    pub fn block() -> Result<Forwarder> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(*s);
        }
        set.thread_block().ctx(|| "blocking signals".into())?;
        let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).ctx(|| "signalfd".into())?;
        Ok(Forwarder { sfd })
    }

    /// Relays signals to the process behind `pidfd` until it exits; returns its status
    /// as a shell reports it.
    pub fn forward_until_exit(self, pidfd: &OwnedFd) -> Result<i32> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            let mut fds = [PollFd::new(self.sfd.as_fd(), PollFlags::POLLIN), PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).ctx(|| "waiting for the container".into()),
            }
            if fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
                if let Ok(Some(info)) = self.sfd.read_signal() {
                    let _ = karton_sys::process::pidfd_send_signal(pidfd.as_fd(), info.ssi_signo as i32);
                }
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                let status = karton_sys::process::wait_pidfd(pidfd.as_fd()).ctx(|| "reaping the container process".into())?;
                let code = if status & 0x7f == 0 { (status >> 8) & 0xff } else { 128 + (status & 0x7f) };
                return Ok(code);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("TERM").unwrap(), 15);
        assert_eq!(parse("SIGKILL").unwrap(), 9);
        assert_eq!(parse("hup").unwrap(), 1);
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse("NOPE").is_err());
        assert!(parse("0").is_err());
        assert!(parse("65").is_err());
    }
}
