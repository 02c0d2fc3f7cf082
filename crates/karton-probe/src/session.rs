//! A measuring session: the probe on a subject (the host, a container, a process tree or a
//! command started here) for a duration, or until the subject exits, or until SIGINT or
//! SIGTERM; snapshots at an interval and one at the end.
//!
//! ```no_run
//! use karton_probe::session::{Clock, Session, StopSignals, Subject};
//! use karton_probe::Probe;
//! let signals = StopSignals::block()?;
//! let builder = Probe::builder().syscalls(true);
//! let mut session = Session::attach(signals, Subject::Command(vec!["true".into()]), builder)?;
//! let end = session.run(Clock { interval: None, duration: None }, |_snap| {})?;
//! println!("{}: exit code {}", end.stop, end.exit_code);
//! # Ok::<(), karton_probe::session::SessionError>(())
//! ```

use std::fmt;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::{Probe, ProbeBuilder, ProbeError, Snapshot, StoppedCommand, Target};

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("blocking SIGINT/SIGTERM")]
    BlockSignals(#[source] nix::Error),
    #[error("signalfd")]
    SignalFd(#[source] nix::Error),
    #[error("no process {0}")]
    NoProcess(u32),
    #[error("attaching eBPF instruments")]
    Attach(#[source] ProbeError),
    /// Starting or waiting for the command, reading the maps.
    #[error(transparent)]
    Probe(#[from] ProbeError),
}

/// What a session measures.
#[derive(Debug, Clone)]
pub enum Subject {
    /// Every task on the host; the session ends only by the clock or a signal.
    All,
    /// A container: the tasks of pid namespace `ns`. The session ends when `init_pid` exits.
    Container { ns: u64, init_pid: u32 },
    /// A process, its live descendants and every process they fork later. The session
    /// ends when the process exits.
    Process(u32),
    /// A command started here, held before its exec until the probes are attached. The
    /// session ends when it exits, and kills it if it still runs then.
    Command(Vec<String>),
}

/// SIGINT and SIGTERM blocked in this thread and read from a signalfd: they stop the
/// session instead of the process, so that the final snapshot is still taken. Block them
/// before anything else starts. The command of a [`Subject::Command`] starts with an
/// empty mask ([`crate::StoppedCommand::spawn`]), so SIGINT and SIGTERM still stop it.
pub struct StopSignals {
    sfd: SignalFd,
}

impl StopSignals {
    pub fn block() -> Result<Self, SessionError> {
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGINT);
        mask.add(Signal::SIGTERM);
        mask.thread_block().map_err(SessionError::BlockSignals)?;
        let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(SessionError::SignalFd)?;
        Ok(Self { sfd })
    }

    /// Waits up to `ms` milliseconds for a signal: whether one came.
    fn wait(&self, ms: u16) -> bool {
        let mut fds =
            [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&self.sfd), nix::poll::PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
        matches!(self.sfd.read_signal(), Ok(Some(_)))
    }
}

/// When a session prints and stops: snapshots every `interval` (cumulative since attach),
/// and the end after `duration`. Both count from the command's release.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    pub interval: Option<Duration>,
    pub duration: Option<Duration>,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    DurationOver,
    Interrupted,
    CommandExited,
    TargetExited,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::DurationOver => "duration over",
            StopReason::Interrupted => "interrupted",
            StopReason::CommandExited => "command exited",
            StopReason::TargetExited => "target exited",
        })
    }
}

/// How a session ended, with its final snapshot.
#[derive(Debug)]
pub struct Ended {
    pub snapshot: Snapshot,
    pub stop: StopReason,
    /// The command's exit code, 128 + the signal that killed it; 0 when there was no
    /// command or it had not exited.
    pub exit_code: i32,
    /// When the clock started (after the command was released).
    pub started: Instant,
    /// With a command: the largest peak RSS of the processes waited for, KiB
    /// (getrusage(RUSAGE_CHILDREN).ru_maxrss), taken after the command was killed and reaped.
    pub command_peak_rss_kib: Option<i64>,
}

/// The probe attached to a subject; [`Session::run`] runs the clock. Dropping it detaches
/// the probe and kills the command if it still runs.
pub struct Session {
    signals: StopSignals,
    cmd: Option<StoppedCommand>,
    /// Its exit ends the session (a container's init, a process).
    watch_pid: Option<u32>,
    probe: Probe,
}

impl Session {
    /// Starts the subject's command (held before exec) and attaches the probe that
    /// `builder` selects, targeted at the subject.
    pub fn attach(
        signals: StopSignals,
        subject: Subject,
        builder: ProbeBuilder,
    ) -> Result<Self, SessionError> {
        let (target, watch_pid, cmd) = match subject {
            Subject::All => (Target::All, None, None),
            Subject::Container { ns, init_pid } => (Target::PidNs(ns), Some(init_pid), None),
            Subject::Process(pid) => {
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    return Err(SessionError::NoProcess(pid));
                }
                (Target::Tgid(pid), Some(pid), None)
            }
            Subject::Command(argv) => {
                let c = StoppedCommand::spawn(&argv)?;
                (Target::Tgid(c.pid()), None, Some(c))
            }
        };
        let probe = builder.target(target).attach().map_err(SessionError::Attach)?;
        Ok(Self { signals, cmd, watch_pid, probe })
    }

    pub fn probe(&self) -> &Probe {
        &self.probe
    }

    /// The pid of the subject's command, held until [`Session::run`].
    pub fn command_pid(&self) -> Option<u32> {
        self.cmd.as_ref().map(|c| c.pid())
    }

    /// Releases the command and runs until the clock, the subject or a signal stops it;
    /// `on_interval` gets each interval snapshot. Samples peak RSS from /proc every 500 ms
    /// while the processes live. Call it once.
    pub fn run(
        &mut self,
        clock: Clock,
        mut on_interval: impl FnMut(&Snapshot),
    ) -> Result<Ended, SessionError> {
        if let Some(c) = self.cmd.as_mut() {
            c.release()?;
        }
        let start = Instant::now();
        let mut next_print = clock.interval.map(|i| start + i);
        let mut next_rss = start;
        let mut exit_code = 0;
        let mut stop = StopReason::DurationOver;
        loop {
            // Wake at most every 100 ms: signals, the end of the target and the clock.
            if self.signals.wait(100) {
                stop = StopReason::Interrupted;
                break;
            }
            if let Some(code) = self.command_exit()? {
                exit_code = code;
                stop = StopReason::CommandExited;
                break;
            }
            if self.watch_pid.is_some_and(|pid| !alive(pid)) {
                stop = StopReason::TargetExited;
                break;
            }
            let now = Instant::now();
            // Peak RSS comes from /proc: sample it while the processes are alive.
            if now >= next_rss {
                self.probe.sample_rss();
                next_rss = now + Duration::from_millis(500);
            }
            if clock.duration.is_some_and(|d| now >= start + d) {
                break;
            }
            if let (Some(at), Some(iv)) = (next_print, clock.interval) {
                if now >= at {
                    on_interval(&self.probe.snapshot()?);
                    next_print = Some(at + iv);
                }
            }
        }
        let snapshot = self.probe.snapshot()?;
        let command_peak_rss_kib = self.end_command();
        Ok(Ended { snapshot, stop, exit_code, started: start, command_peak_rss_kib })
    }

    /// The command's exit code once it has exited (128 + signal when killed by one).
    fn command_exit(&mut self) -> Result<Option<i32>, SessionError> {
        let Some(c) = self.cmd.as_mut() else {
            return Ok(None);
        };
        Ok(c.try_wait()?.map(|st| {
            st.code().unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(0))
        }))
    }

    /// Kills and reaps the command if it still runs (interrupted, duration over); the peak
    /// RSS of its tree is then the kernel's own maximum over waited-for children.
    fn end_command(&mut self) -> Option<i64> {
        self.cmd.take()?;
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
            .ok()
            .map(|u| u.max_rss())
            .filter(|r| *r > 0)
    }
}

/// Whether process `pid` still exists (signal 0).
fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}
