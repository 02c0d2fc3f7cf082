//! Signal names and numbers, and forwarding signals from `karton run` to the container.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::error::{Context, Error, Result};

/// Parses what `runc kill` takes: a number ("15"), a name with or without "SIG" in any
/// case ("TERM", "SIGTERM", "term"), "RTMIN", "RTMIN+N" and "RTMAX-N". Every result is a
/// signal this system has: 1 to SIGRTMAX, real-time ones within SIGRTMIN..=SIGRTMAX.
pub fn parse(s: &str) -> Result<i32> {
    let (rtmin, rtmax) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let bad = || {
        Error::Config(format!(
            "unknown signal {s:?}: use a name such as TERM, KILL or HUP, RTMIN+N or RTMAX-N, or a number from 1 to {rtmax}"
        ))
    };
    if let Ok(n) = s.parse::<i64>() {
        return if (1..=i64::from(rtmax)).contains(&n) {
            Ok(n as i32)
        } else {
            Err(Error::Config(format!("signal {s:?} is out of range: signals are numbered 1 to {rtmax}")))
        };
    }
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let span = rtmax - rtmin;
    // The offset is plain digits: "+-40" or "++5" would otherwise parse as numbers.
    let offset = |rest: &str, sign: char, form: &str| -> Result<i32> {
        if rest.is_empty() {
            return Ok(0);
        }
        let digits =
            rest.strip_prefix(sign).filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
        match digits.map(|d| d.parse::<i32>()) {
            Some(Ok(n)) if n <= span => Ok(n),
            _ => Err(Error::Config(format!(
                "signal {s:?}: {form} takes N from 0 to {span} (real-time signals are SIGRTMIN={rtmin} to SIGRTMAX={rtmax} here): write e.g. RTMIN+3"
            ))),
        }
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return Ok(rtmin + offset(rest, '+', "RTMIN+N")?);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return Ok(rtmax - offset(rest, '-', "RTMAX-N")?);
    }
    format!("SIG{name}").parse::<Signal>().map(|s| s as i32).map_err(|_| bad())
}

/// The signals `karton run` passes on to the container's process.
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGTSTP,
];

/// Blocks the forwarded signals (before the container exists, so none is lost) and
/// relays them once the container runs: `karton run`, `exec` and `spawn` share it.
pub struct Forwarder {
    sfd: SignalFd,
    second_term_kills: bool,
}

impl Forwarder {
    pub fn block() -> Result<Forwarder> {
        let mut set = SigSet::empty();
        for s in FORWARDED {
            set.add(*s);
        }
        set.thread_block().ctx(|| "blocking signals".into())?;
        let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).ctx(|| "signalfd".into())?;
        Ok(Forwarder { sfd, second_term_kills: false })
    }

    /// With `yes`, a second SIGINT, SIGTERM, SIGHUP or SIGQUIT is sent as SIGKILL: the init
    /// of a pid namespace ignores every signal it has no handler for (`sleep` ignores
    /// SIGTERM as pid 1), and Ctrl-C twice must still end it.
    pub fn second_term_kills(mut self, yes: bool) -> Self {
        self.second_term_kills = yes;
        self
    }

    /// Relays signals to the process behind `pidfd` until it exits; returns its status
    /// as a shell reports it.
    pub fn forward_until_exit(self, pidfd: &OwnedFd) -> Result<i32> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let mut terminating = 0;
        loop {
            let mut fds = [
                PollFd::new(self.sfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).ctx(|| "waiting for the container".into()),
            }
            if fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
                if let Ok(Some(info)) = self.sfd.read_signal() {
                    let sig = info.ssi_signo as i32;
                    let mut send = sig;
                    if self.second_term_kills
                        && [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT].contains(&sig)
                    {
                        terminating += 1;
                        if terminating > 1 {
                            send = libc::SIGKILL;
                        }
                    }
                    let _ = karton_sys::process::pidfd_send_signal(pidfd.as_fd(), send);
                }
            }
            if fds[1].revents().is_some_and(|r| !r.is_empty()) {
                let status = karton_sys::process::wait_pidfd(pidfd.as_fd())
                    .ctx(|| "reaping the container process".into())?;
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

    #[test]
    fn runc_forms_are_accepted() {
        for (s, n) in [
            ("KILL", 9),
            ("kill", 9),
            ("SIGKILL", 9),
            ("sigkill", 9),
            ("Kill", 9),
            ("9", 9),
            ("64", libc::SIGRTMAX()),
        ] {
            assert_eq!(parse(s).unwrap(), n, "{s}");
        }
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        assert_eq!(parse("RTMIN").unwrap(), min);
        assert_eq!(parse("SIGRTMIN+3").unwrap(), min + 3);
        assert_eq!(parse("rtmin+3").unwrap(), min + 3);
        assert_eq!(parse("RTMIN+0").unwrap(), min);
        assert_eq!(parse(&format!("RTMIN+{}", max - min)).unwrap(), max);
        assert_eq!(parse("RTMAX").unwrap(), max);
        assert_eq!(parse("RTMAX-1").unwrap(), max - 1);
        assert_eq!(parse(&format!("RTMAX-{}", max - min)).unwrap(), min);
    }

    #[test]
    fn real_time_offsets_outside_the_range_are_refused() {
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        let too_far = (max - min + 1).to_string();
        for s in [
            "RTMIN+-40".to_string(),
            "RTMIN+-5".to_string(),
            "RTMIN++5".to_string(),
            "RTMIN+".to_string(),
            "RTMIN-3".to_string(),
            "RTMIN+99999999999".to_string(),
            format!("RTMIN+{too_far}"),
            "RTMAX-+5".to_string(),
            "RTMAX--5".to_string(),
            "RTMAX+1".to_string(),
            format!("RTMAX-{too_far}"),
        ] {
            let e = parse(&s).unwrap_err().to_string();
            assert!(e.contains(&format!("{s:?}")) && e.contains("takes N from 0 to"), "{s}: {e}");
        }
        for s in ["-5", "0", "99999999999", "-40"] {
            let e = parse(s).unwrap_err().to_string();
            assert!(e.contains("out of range"), "{s}: {e}");
        }
    }
}
