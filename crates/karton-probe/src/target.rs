//! What to measure: a pid namespace, a process tree, or a command started here, stopped
//! until the probes are attached.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::ProbeError;

/// Which tasks the instruments record. Every figure is keyed by the task's pid-namespace
/// inode whatever the target, so nested pid namespaces show up as separate keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Target {
    /// Every task on the host.
    All,
    /// Tasks whose pid namespace has this inode number (a container).
    PidNs(u64),
    /// This process, its live descendants, and every process forked from them later.
    Tgid(u32),
}

/// The inode number of the pid namespace of `pid` (as `/proc/PID/ns/pid` shows it).
pub fn pidns_of(pid: u32) -> Result<u64, ProbeError> {
    let p = format!("/proc/{pid}/ns/pid");
    fs::metadata(&p)
        .map(|m| m.ino())
        .map_err(|source| ProbeError::Io { what: format!("reading {p}"), source })
}

/// `pid` and its live descendants, read from /proc/*/stat.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(pp) = ppid_of(p) {
                children.entry(pp).or_default().push(p);
            }
        }
    }
    let mut out = vec![pid];
    let mut q = VecDeque::from([pid]);
    while let Some(p) = q.pop_front() {
        for c in children.get(&p).into_iter().flatten() {
            out.push(*c);
            q.push_back(*c);
        }
    }
    out
}

fn ppid_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: the fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident set size (VmHWM) of a live process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A command started by `sh`, held before its `exec` until [`StoppedCommand::release`]:
/// the shell blocks opening a FIFO for reading. The shell's pid is the command's pid (it
/// execs), so the probes can target it with [`Target::Tgid`] before it does anything.
/// Dropping it kills the process if it was not waited for.
pub struct StoppedCommand {
    child: Option<Child>,
    dir: PathBuf,
    fifo: PathBuf,
    released: bool,
}

impl StoppedCommand {
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(argv: &[S]) -> Result<Self, ProbeError> {
        if argv.is_empty() {
            return Err(ProbeError::Spawn("empty command".into()));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("karton-probe-{}-{nanos}", std::process::id()));
        fs::create_dir(&dir)
            .map_err(|source| ProbeError::Io { what: format!("creating {}", dir.display()), source })?;
        let fifo = dir.join("go");
        let mut me = Self { child: None, dir, fifo, released: false };
        nix::unistd::mkfifo(&me.fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| ProbeError::Spawn(format!("mkfifo {}: {e}", me.fifo.display())))?;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(": <\"$0\"; exec \"$@\"").arg(&me.fifo).args(argv);
        // The caller may block SIGINT/SIGTERM to read them from a signalfd; the command
        // must still die of them as it would from a shell.
        karton_sys::process::spawn_with_empty_signal_mask(&mut cmd);
        let child =
            cmd.spawn().map_err(|e| ProbeError::Spawn(format!("starting {:?}: {e}", argv[0].as_ref())))?;
        me.child = Some(child);
        Ok(me)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Lets the command exec. Waits (up to 10 s) for the shell to reach the FIFO.
    pub fn release(&mut self) -> Result<(), ProbeError> {
        let start = Instant::now();
        loop {
            // O_NONBLOCK: opening for writing fails with ENXIO until the reader is there,
            // instead of blocking forever if the shell died.
            match fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(&self.fifo) {
                Ok(f) => {
                    drop(f);
                    self.released = true;
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
                Err(e) => return Err(ProbeError::Spawn(format!("opening {}: {e}", self.fifo.display()))),
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    return Err(ProbeError::Spawn(format!("the command's shell exited early: {st}")));
                }
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(ProbeError::Spawn("the command's shell never opened its FIFO".into()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for the command to end.
    pub fn wait(&mut self) -> Result<ExitStatus, ProbeError> {
        let mut c = self.child.take().ok_or_else(|| ProbeError::Spawn("already waited for".into()))?;
        c.wait().map_err(|source| ProbeError::Io { what: "waiting for the command".into(), source })
    }

    /// Non-blocking wait: Some(status) once the command has ended.
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>, ProbeError> {
        let Some(c) = self.child.as_mut() else {
            return Err(ProbeError::Spawn("already waited for".into()));
        };
        match c.try_wait() {
            Ok(Some(st)) => {
                self.child = None;
                Ok(Some(st))
            }
            Ok(None) => Ok(None),
            Err(source) => Err(ProbeError::Io { what: "waiting for the command".into(), source }),
        }
    }

    pub fn released(&self) -> bool {
        self.released
    }
}

impl Drop for StoppedCommand {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_file(&self.fifo);
        let _ = fs::remove_dir(&self.dir);
    }
}
