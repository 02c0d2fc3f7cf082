//! Entering the namespaces of a running process, as nsenter(1) does.
//!
//! The namespaces are joined with one `setns(pidfd, CLONE_NEW*...)` call (Linux 5.8+): the
//! kernel joins them all or none, in the right order. On older kernels, or to say which
//! kind the kernel refused, it falls back to one fd per kind, opened before any join, in
//! nsenter's order: every other kind first, then the user namespace, then those that
//! needed the user namespace's privileges. A joined pid namespace applies only to
//! children, so the command runs in a forked child.
//!
//! The target is a process, or a directory of namespace files (bind mounts named `user`,
//! `pid`, `net`, ... as `/proc/PID/ns` names them), such as a sandbox persisted with
//! `karton spawn --persist DIR`; files are joined one per kind.
//!
//! The calling process is never changed: the joins happen in a child, which reports
//! failures to the caller over a close-on-exec pipe (no bytes = the exec happened).

use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use karton_sys::{clone, ns as sys, process, Errno};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::error::{NsError, Result};
use crate::handle::NsHandle;
use crate::procfs;
use crate::NsType;

/// How to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JoinMethod {
    /// One setns on a pidfd; per-kind fds when that fails.
    #[default]
    Auto,
    /// One setns on a pidfd only.
    Pidfd,
    /// One setns per kind only (what kernels before 5.8 allow).
    PerType,
}

#[derive(Debug, Default)]
pub struct EnterOptions {
    /// Kinds to join; `None`: every kind whose namespace differs from the caller's.
    pub types: Option<Vec<NsType>>,
    /// Keep the caller's uid, gid and groups after joining a user namespace (otherwise
    /// become uid 0 / gid 0 in it, as nsenter does).
    pub preserve_credentials: bool,
    /// Working directory for the command, resolved after the joins (so inside the target's
    /// mount namespace). Without it, joining a mount namespace leaves the command at that
    /// namespace's root directory (the kernel resets cwd and root).
    pub wd: Option<PathBuf>,
    pub method: JoinMethod,
    /// Replacements for the command's stdout and stderr (inherited when `None`).
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Whose namespaces to join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A running process.
    Pid(i32),
    /// A directory holding namespace files named as in /proc/PID/ns (`user`, `net`, ...).
    Dir(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Pid(p) => write!(f, "process {p}"),
            Target::Dir(d) => write!(f, "the namespace files in {}", d.display()),
        }
    }
}

/// Which kinds will be joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnterPlan {
    pub target: Target,
    /// Kinds to join, in join order.
    pub join: Vec<NsType>,
    /// Kinds asked for (or, without a list, all) that the caller already shares with the
    /// target and that are not joined: the user namespace always (the kernel refuses to
    /// re-enter one's own), the others only when no list was given.
    pub already_shared: Vec<NsType>,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell convention: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Decides which namespaces of process `pid` to join.
pub fn plan(pid: i32, types: Option<&[NsType]>) -> Result<EnterPlan> {
    plan_target(&Target::Pid(pid), types)
}

/// Decides which namespaces of a process or a directory of namespace files to join.
pub fn plan_target(target: &Target, types: Option<&[NsType]>) -> Result<EnterPlan> {
    let pid = match target {
        Target::Pid(pid) => *pid,
        Target::Dir(dir) => return plan_dir(dir, types),
    };
    if !procfs::exists(pid) {
        return Err(NsError::NoSuchProcess { pid });
    }
    let me = std::process::id() as i32;
    let mut join = Vec::new();
    let mut already_shared = Vec::new();
    let asked: Vec<NsType> = match types {
        Some(t) => {
            let mut t = t.to_vec();
            t.sort();
            t.dedup();
            t
        }
        None => NsType::supported(),
    };
    for ty in asked {
        let theirs = procfs::ns_id(pid, ty)?;
        let mine = procfs::ns_id(me, ty)?;
        if theirs == mine && (types.is_none() || ty == NsType::User) {
            already_shared.push(ty);
        } else {
            join.push(ty);
        }
    }
    Ok(EnterPlan { target: Target::Pid(pid), join, already_shared })
}

fn plan_dir(dir: &Path, types: Option<&[NsType]>) -> Result<EnterPlan> {
    if !dir.is_dir() {
        return Err(NsError::Invalid(format!(
            "{} is not a directory of namespace files: pass a pid, a container id, or a directory holding files named user, pid, net, ...",
            dir.display()
        )));
    }
    let me = std::process::id() as i32;
    let mut join = Vec::new();
    let mut already_shared = Vec::new();
    let asked: Vec<NsType> = match types {
        Some(t) => {
            let mut t = t.to_vec();
            t.sort();
            t.dedup();
            t
        }
        None => NsType::supported(),
    };
    for ty in asked {
        let path = dir.join(ty.proc_name());
        if !path.exists() {
            if types.is_some() {
                return Err(NsError::Invalid(format!(
                    "{} does not exist: {} holds no {ty} namespace; leave out `{ty}`",
                    path.display(),
                    dir.display()
                )));
            }
            continue;
        }
        let h = NsHandle::open(&path)?;
        if h.ty != ty {
            return Err(NsError::Invalid(format!(
                "{} is a {} namespace, not a {ty} one",
                path.display(),
                h.ty
            )));
        }
        let mine = procfs::ns_id(me, ty)?;
        if h.id == mine && (types.is_none() || ty == NsType::User) {
            already_shared.push(ty);
        } else {
            join.push(ty);
        }
    }
    Ok(EnterPlan { target: Target::Dir(dir.to_path_buf()), join, already_shared })
}

/// Runs `argv` in the namespaces of process `pid` and waits for it.
///
/// The caller must not hold locks that the forked child needs (as for any fork); the
/// child only makes system calls and execs.
pub fn run(pid: i32, opts: EnterOptions, argv: &[OsString]) -> Result<Exit> {
    let plan = plan(pid, opts.types.as_deref())?;
    run_plan(&plan, opts, argv)
}

/// Like [`run`], with a plan made earlier (e.g. to print it first).
pub fn run_plan(plan: &EnterPlan, opts: EnterOptions, argv: &[OsString]) -> Result<Exit> {
    if argv.is_empty() {
        return Err(NsError::Invalid("no command given: put the command after `--`".into()));
    }
    let cstr = |s: &[u8], what: &str| {
        CString::new(s).map_err(|_| NsError::Invalid(format!("{what} contains a NUL byte")))
    };
    let args: Vec<CString> = argv.iter().map(|a| cstr(a.as_bytes(), "an argument")).collect::<Result<_>>()?;
    let wd = opts.wd.as_ref().map(|w| cstr(w.as_os_str().as_bytes(), "the working directory")).transpose()?;

    // Per-kind fds are opened now: after joining a mount namespace, paths may resolve
    // elsewhere.
    let mut fds: Vec<(NsType, File)> = Vec::new();
    let pidfd = match &plan.target {
        Target::Pid(pid) => {
            let pid = *pid;
            let pidfd = process::pidfd_open(pid).map_err(|e| match e.errno {
                Errno::ESRCH => NsError::NoSuchProcess { pid },
                _ => NsError::sys(format!("pidfd_open({pid})"), e),
            })?;
            if opts.method != JoinMethod::Pidfd {
                for &ty in &plan.join {
                    let path = ty.proc_path(pid);
                    let f = File::open(&path).map_err(|e| NsError::from_proc_io(pid, &path, e))?;
                    fds.push((ty, f));
                }
            }
            // The pidfd pins the process; if it is still alive now, the paths above were
            // its own and not those of a process that reused the pid.
            process::pidfd_send_signal(pidfd.as_fd(), 0).map_err(|_| NsError::Vanished { pid })?;
            Some(pidfd)
        }
        Target::Dir(dir) => {
            for &ty in &plan.join {
                let path = dir.join(ty.proc_name());
                let f = File::open(&path).map_err(|error| NsError::Io { path, error })?;
                fds.push((ty, f));
            }
            None
        }
    };

    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| NsError::sys("pipe2", karton_sys::SysError::new("pipe2", e)))?;
    let child = Child {
        plan,
        pidfd: pidfd.as_ref(),
        fds: &fds,
        args: &args,
        wd: wd.as_ref(),
        opts: &opts,
        report: &wr,
    };
    let child_pid = match clone::fork_single_threaded().map_err(|e| NsError::sys("fork", e))? {
        None => child.run(),
        Some(p) => p,
    };
    drop(wr);
    let mut report = Vec::new();
    // EOF comes when the command execs (close-on-exec) or every child has exited.
    let _ = File::from(rd).read_to_end(&mut report);
    let status = wait(child_pid)?;
    if let Some(err) = decode(&plan.target, &report) {
        return Err(err);
    }
    Ok(status)
}

fn wait(pid: i32) -> Result<Exit> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, c)) => return Ok(Exit::Code(c)),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(Exit::Signal(s as i32)),
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                return Err(NsError::sys(format!("waitpid({pid})"), karton_sys::SysError::new("waitpid", e)))
            }
        }
    }
}

// What the child reports: stage, kind (index + 1 into NsType::ALL, 0 = none), errno.
const ST_SETNS_PIDFD: u8 = 1;
const ST_SETNS: u8 = 2;
const ST_FORK: u8 = 3;
const ST_SETGROUPS: u8 = 4;
const ST_SETGID: u8 = 5;
const ST_SETUID: u8 = 6;
const ST_CHDIR: u8 = 7;
const ST_EXEC: u8 = 8;
const ST_STDIO: u8 = 9;
const ST_SIGNALS: u8 = 10;

fn encode(stage: u8, ty: Option<NsType>, errno: Errno) -> [u8; 8] {
    let t = ty.and_then(|t| NsType::ALL.iter().position(|x| *x == t)).map_or(0, |i| i as u8 + 1);
    let e = (errno as i32).to_le_bytes();
    [stage, t, 0, 0, e[0], e[1], e[2], e[3]]
}

fn decode(target: &Target, b: &[u8]) -> Option<NsError> {
    if b.len() < 8 {
        return None;
    }
    let ty = (b[1] as usize).checked_sub(1).and_then(|i| NsType::ALL.get(i).copied());
    let errno = Errno::from_raw(i32::from_le_bytes([b[4], b[5], b[6], b[7]]));
    let tyname = ty.map(|t| t.proc_name()).unwrap_or("?");
    let stage = match b[0] {
        ST_SETNS_PIDFD => "setns(pidfd) joining all namespaces at once".to_string(),
        ST_SETNS => format!("setns({tyname})"),
        ST_FORK => "fork (needed for a joined pid namespace)".to_string(),
        ST_SETGROUPS => "setgroups".to_string(),
        ST_SETGID => "setgid(0) in the joined user namespace".to_string(),
        ST_SETUID => "setuid(0) in the joined user namespace".to_string(),
        ST_CHDIR => "chdir to the --wd directory".to_string(),
        ST_EXEC => "exec of the command".to_string(),
        ST_STDIO => "redirecting stdio".to_string(),
        _ => "resetting signal dispositions".to_string(),
    };
    let hint = match (b[0], errno) {
        (ST_SETNS | ST_SETNS_PIDFD, Errno::EPERM) => {
            ": joining needs CAP_SYS_ADMIN over the target's namespaces: run as root, or join its user namespace too (--type user)"
        }
        (ST_SETNS_PIDFD, Errno::EINVAL) => ": this kernel may predate setns on a pidfd (5.8): retry with the per-kind method",
        (ST_SETGID | ST_SETUID, Errno::EINVAL) => ": id 0 is not mapped in the target's user namespace: use --preserve-credentials",
        (ST_EXEC, Errno::ENOENT) => ": the command was not found in the target's mount namespace (PATH is searched there)",
        (ST_CHDIR, Errno::ENOENT) => ": the directory does not exist in the target's mount namespace",
        _ => "",
    };
    let exit_code = match (b[0], errno) {
        (ST_EXEC, Errno::ENOENT) => 127,
        (ST_EXEC, _) => 126,
        _ => 1,
    };
    Some(NsError::Enter { target: target.to_string(), stage, errno, hint: hint.to_string(), exit_code })
}

/// Dies of `sig` (as the command did), so the caller sees a signal rather than a code.
fn relay_signal(sig: i32) -> ! {
    // No core file from the relay: the command's own dump, if any, is the one that counts.
    let _ = process::setrlimit(libc::RLIMIT_CORE, 0, 0);
    if process::default_signal_disposition(sig).is_ok() {
        if let Ok(s) = nix::sys::signal::Signal::try_from(sig) {
            let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
            let _ = nix::sys::signal::raise(s);
        }
    }
    clone::exit_now(128 + sig)
}

struct Child<'a> {
    plan: &'a EnterPlan,
    pidfd: Option<&'a OwnedFd>,
    fds: &'a [(NsType, File)],
    args: &'a [CString],
    wd: Option<&'a CString>,
    opts: &'a EnterOptions,
    report: &'a OwnedFd,
}

impl Child<'_> {
    /// The forked child: join, fork again if a pid namespace was joined, exec.
    fn run(&self) -> ! {
        if let Err((stage, ty, errno)) = self.join() {
            self.fail(stage, ty, errno, 126);
        }
        if self.plan.join.contains(&NsType::Pid) {
            match clone::fork_single_threaded() {
                Err(e) => self.fail(ST_FORK, None, e.errno, 126),
                Ok(None) => self.exec(),
                Ok(Some(grandchild)) => {
                    // The report pipe stays with the grandchild; this process only relays
                    // how it ended, a signal as the same signal.
                    match wait(grandchild) {
                        Ok(Exit::Signal(sig)) => relay_signal(sig),
                        Ok(Exit::Code(c)) => clone::exit_now(c),
                        Err(_) => clone::exit_now(126),
                    }
                }
            }
        }
        self.exec()
    }

    fn join(&self) -> std::result::Result<(), (u8, Option<NsType>, Errno)> {
        let mask = NsType::mask(&self.plan.join);
        if mask == 0 {
            return Ok(());
        }
        if let (Some(pidfd), true) = (self.pidfd, self.opts.method != JoinMethod::PerType) {
            match sys::setns(pidfd.as_fd(), mask) {
                Ok(()) => return Ok(()),
                Err(e) if self.opts.method == JoinMethod::Pidfd => {
                    return Err((ST_SETNS_PIDFD, None, e.errno))
                }
                // Nothing was joined (the call is all or nothing): the per-kind path works on
                // older kernels and names the kind that is refused.
                Err(_) => {}
            }
        }
        let mut retry = Vec::new();
        for (ty, f) in self.fds.iter().filter(|(t, _)| *t != NsType::User) {
            if sys::setns(f.as_fd(), ty.clone_flag()).is_err() {
                retry.push((ty, f));
            }
        }
        if let Some((_, f)) = self.fds.iter().find(|(t, _)| *t == NsType::User) {
            sys::setns(f.as_fd(), NsType::User.clone_flag())
                .map_err(|e| (ST_SETNS, Some(NsType::User), e.errno))?;
        }
        for (ty, f) in retry {
            sys::setns(f.as_fd(), ty.clone_flag()).map_err(|e| (ST_SETNS, Some(*ty), e.errno))?;
        }
        Ok(())
    }

    fn exec(&self) -> ! {
        for sig in [libc::SIGPIPE, libc::SIGXFSZ] {
            if let Err(e) = process::default_signal_disposition(sig) {
                self.fail(ST_SIGNALS, None, e.errno, 126);
            }
        }
        let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
        if let Some(fd) = &self.opts.stdout {
            if let Err(e) = nix::unistd::dup2_stdout(fd) {
                self.fail(ST_STDIO, None, e, 126);
            }
        }
        if let Some(fd) = &self.opts.stderr {
            if let Err(e) = nix::unistd::dup2_stderr(fd) {
                self.fail(ST_STDIO, None, e, 126);
            }
        }
        if self.plan.join.contains(&NsType::User) && !self.opts.preserve_credentials {
            // Dropping supplementary groups is refused where setgroups is denied; nsenter
            // goes on in that case too.
            if let Err(e) = process::setgroups(&[]) {
                if e.errno != Errno::EPERM {
                    self.fail(ST_SETGROUPS, None, e.errno, 126);
                }
            }
            if let Err(e) = process::setresgid(0) {
                self.fail(ST_SETGID, None, e.errno, 126);
            }
            if let Err(e) = process::setresuid(0) {
                self.fail(ST_SETUID, None, e.errno, 126);
            }
        }
        if let Some(wd) = self.wd {
            if let Err(e) = nix::unistd::chdir(wd.as_c_str()) {
                self.fail(ST_CHDIR, None, e, 126);
            }
        }
        let e = match nix::unistd::execvp(&self.args[0], self.args) {
            Err(e) => e,
            Ok(never) => match never {},
        };
        self.fail(ST_EXEC, None, e, if e == Errno::ENOENT { 127 } else { 126 })
    }

    fn fail(&self, stage: u8, ty: Option<NsType>, errno: Errno, code: i32) -> ! {
        let _ = nix::unistd::write(self.report, &encode(stage, ty, errno));
        clone::exit_now(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_round_trip() {
        let b = encode(ST_SETNS, Some(NsType::Net), Errno::EPERM);
        match decode(&Target::Pid(7), &b) {
            Some(NsError::Enter { target, stage, errno, .. }) => {
                assert_eq!(target, "process 7");
                assert_eq!(stage, "setns(net)");
                assert_eq!(errno, Errno::EPERM);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(decode(&Target::Pid(7), &[]).is_none());
    }

    #[test]
    fn plan_for_self_joins_nothing() {
        let me = std::process::id() as i32;
        let p = plan(me, None).expect("test value");
        assert!(p.join.is_empty());
        let p = plan(me, Some(&[NsType::User, NsType::Uts])).expect("test value");
        assert_eq!(p.join, vec![NsType::Uts]);
        assert_eq!(p.already_shared, vec![NsType::User]);
    }

    #[test]
    fn missing_pid_is_named() {
        let e = plan(999_999_999, None).expect_err("test error");
        assert!(matches!(e, NsError::NoSuchProcess { pid: 999_999_999 }));
        assert!(e.to_string().contains("999999999"));
    }
}
