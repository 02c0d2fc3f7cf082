//! `exec`: a new process inside a running container — its namespaces (one setns on the
//! init's pidfd), its cgroups, and by default its capabilities, rlimits, no_new_privs and
//! seccomp filter.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use karton_cgroup::Cgroup;
use karton_ns::NsType;
use karton_sys::{clone as kclone, ns as kns, process as kproc};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::{Capability, Process};

use crate::channel::{self, Msg};
use crate::container::Runtime;
use crate::error::{Context, Error, Result};
use crate::state::{Record, Status};
use karton_sys::atomic::{write_atomic, Durability};

/// How to run an exec'd process.
#[derive(Debug, Clone, Default)]
pub struct ExecOpts {
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    pub ignore_paused: bool,
    /// `--cgroup [CONTROLLER[,CONTROLLER]:]PATH`: run in existing sub-cgroups of the
    /// container's cgroup (see [`karton_cgroup::Cgroup::sub_cgroup`]).
    pub cgroup: Vec<String>,
}

/// A command to exec with the container's own process settings, changed where asked (what
/// `karton exec CMD` takes besides `--process FILE`).
#[derive(Debug, Clone, Default)]
pub struct ExecProcess {
    pub args: Vec<String>,
    pub terminal: bool,
    /// `(NAME, value)` pairs; each replaces a variable of the same name.
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub uid: Option<u32>,
    /// With `uid`: the group; `None` keeps the container's.
    pub gid: Option<u32>,
    pub additional_gids: Vec<u32>,
    /// Added to the bounding, effective and permitted sets.
    pub caps: Vec<Capability>,
    pub no_new_privs: bool,
}

impl ExecProcess {
    /// The container's `process` (from its config) with these changes applied.
    pub fn apply_to(&self, base: Option<Process>) -> Process {
        let mut p = base.unwrap_or_default();
        p.set_args(Some(self.args.clone()));
        p.set_terminal(Some(self.terminal));
        p.set_console_size(None);
        let mut env = p.env().clone().unwrap_or_default();
        for (name, value) in &self.env {
            env.retain(|e| e.split('=').next() != Some(name.as_str()));
            env.push(format!("{name}={value}"));
        }
        p.set_env(Some(env));
        if let Some(c) = &self.cwd {
            p.set_cwd(c.clone());
        }
        if let Some(uid) = self.uid {
            let gid = self.gid.unwrap_or(p.user().gid());
            p.user_mut().set_uid(uid);
            p.user_mut().set_gid(gid);
        }
        if !self.additional_gids.is_empty() {
            p.user_mut().set_additional_gids(Some(self.additional_gids.clone()));
        }
        if !self.caps.is_empty() {
            let mut caps = p.capabilities().clone().unwrap_or_default();
            let add = |s: &Option<oci_spec::runtime::Capabilities>| {
                let mut s = s.clone().unwrap_or_default();
                s.extend(self.caps.iter().copied());
                Some(s)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
            p.set_capabilities(Some(caps));
        }
        if self.no_new_privs {
            p.set_no_new_privileges(Some(true));
        }
        p
    }
}

impl Runtime {
    /// The container's saved config.
    pub fn saved_spec(&self, id: &str) -> Result<oci_spec::runtime::Spec> {
        crate::state::validate_id(id)?;
        let path = self.store().dir(id).join(crate::state::CONFIG_FILE);
        if !self.store().dir(id).is_dir() {
            return Err(Error::NotFound(id.into()));
        }
        let text = std::fs::read_to_string(&path).ctx(|| format!("reading {}", path.display()))?;
        crate::config::parse_spec(&text, &path)
    }

    /// The process `exec` runs for `e`: the container's saved `process` with `e`'s changes.
    pub fn exec_process(&self, id: &str, e: &ExecProcess) -> Result<Process> {
        Ok(e.apply_to(self.saved_spec(id)?.process().clone()))
    }

    /// Runs `process` in the container. Returns the exit status (code, or 128 + signal)
    /// or, with `detach`, 0 once the process has started.
    ///
    /// The steps, as in runc: check the container and the process, open what the process
    /// needs (the init's pidfd, its namespaces, the console, the cgroup), fork an
    /// intermediate into the cgroup, let it join the namespaces and fork the process that
    /// execs, wait for that one to be ready, then wait for it to exit (unless detached).
    pub fn exec(&self, id: &str, process: &Process, opts: &ExecOpts) -> Result<i32> {
        crate::util::require_single_thread("exec")?;
        let rec = self.state(id)?;
        check_exec_status(id, rec.status, opts.ignore_paused)?;
        let terminal = check_exec_process(id, process, opts)?;
        let spec = self.saved_spec(id)?;
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
        // Nothing of ours may sit at a number the process inherits (--preserve-fds).
        let keep = crate::fds::first_free(opts.preserve_fds);
        let init = open_init(id, &rec, keep)?;
        let mask = foreign_namespaces(rec.pid);
        let console = connect_console(opts, terminal, keep)?;
        if !opts.detach {
            let _ = kproc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0);
        }
        let sigs = if opts.detach { None } else { Some(crate::signals::Forwarder::block()?) };
        let cgroup = exec_cgroup(id, rec.cgroup.as_ref(), &opts.cgroup)?;
        let (parent_end, child_end) = channel::pair()?;
        let child_end = child_end.relocate(keep)?;
        let joins = crate::container::v1_join_files(cgroup.as_ref(), keep)?;
        let (forked, into) = fork_into(cgroup.as_ref())?;
        let first = match forked {
            kclone::Forked::Child => {
                drop(parent_end);
                let ctx = ChildCtx { chan: &child_end, cgroup_join: &joins, init: &init, mask, id };
                exec_child(ctx, process, seccomp.as_ref(), console, opts.preserve_fds)
            }
            kclone::Forked::Parent { pid, pidfd } => Intermediate { pid, pidfd },
        };
        drop(child_end);
        drop(joins);
        if let (Some(cg), false) = (&cgroup, into) {
            cg.add_pid_v2(first.pid).map_err(|e| first.kill(e.into()))?;
        }
        parent_end.proceed().map_err(|e| first.kill(e))?;
        let (pid, pidfd) = wait_ready(&parent_end, &first, id, &rec.bundle)?;
        if let Some(p) = &opts.pid_file {
            write_atomic(p, pid.to_string().as_bytes(), Durability::NoFsync)
                .ctx(|| format!("writing --pid-file {}", p.display()))?;
        }
        match sigs {
            Some(f) => f.forward_until_exit(&pidfd),
            None => Ok(0),
        }
    }
}

/// Whether a container in `status` takes an exec (pure).
fn check_exec_status(id: &str, status: Status, ignore_paused: bool) -> Result<()> {
    match status {
        Status::Running | Status::Created => Ok(()),
        Status::Paused if ignore_paused => Ok(()),
        Status::Paused => Err(Error::State {
            id: id.into(),
            status: "paused".into(),
            reason: "exec would hang in a frozen cgroup: `karton resume` it first, or pass --ignore-paused"
                .into(),
        }),
        other => Err(Error::State {
            id: id.into(),
            status: other.to_string(),
            reason: "exec needs a running container".into(),
        }),
    }
}

/// Validates the process as create would; returns whether it wants a terminal.
fn check_exec_process(id: &str, process: &Process, opts: &ExecOpts) -> Result<bool> {
    let file = format!("exec process of {id}");
    crate::config::validate_process(
        process,
        &file,
        &|_| String::new(),
        &crate::config::HostSupport::detect(),
    )?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() {
        return Err(Error::Config(
            "exec --tty needs --console-socket: pass the socket that receives the terminal".into(),
        ));
    }
    Ok(terminal)
}

/// A pidfd on the container's init, at `keep` or above; refuses an init that has exited.
fn open_init(id: &str, rec: &Record, keep: i32) -> Result<OwnedFd> {
    let init =
        crate::fds::relocate(kproc::pidfd_open(rec.pid).ctx(|| format!("container {id}: its init"))?, keep)?;
    if !crate::procfs::is_alive(rec.pid, rec.init_start_time) {
        return Err(Error::State {
            id: id.into(),
            status: "stopped".into(),
            reason: "its process has exited".into(),
        });
    }
    Ok(init)
}

/// The CLONE_NEW* flags of the namespaces of `pid` that differ from ours: the container's
/// own, which the process joins.
fn foreign_namespaces(pid: i32) -> u64 {
    let mut mask = 0u64;
    for t in NsType::ALL {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{}", t.proc_name()));
        let ours = std::fs::read_link(format!("/proc/self/ns/{}", t.proc_name()));
        if let (Ok(a), Ok(b)) = (theirs, ours) {
            if a != b {
                mask |= t.clone_flag();
            }
        }
    }
    mask
}

/// The --console-socket connection, when the process has a terminal.
fn connect_console(opts: &ExecOpts, terminal: bool, keep: i32) -> Result<Option<OwnedFd>> {
    match (&opts.console_socket, terminal) {
        (Some(p), true) => Ok(Some(crate::fds::relocate(
            OwnedFd::from(
                std::os::unix::net::UnixStream::connect(p)
                    .ctx(|| format!("connecting to --console-socket {}", p.display()))?,
            ),
            keep,
        )?)),
        _ => Ok(None),
    }
}

/// The cgroup the process joins: the container's, or the --cgroup sub-cgroups of it.
fn exec_cgroup(id: &str, cg: Option<&Cgroup>, sub: &[String]) -> Result<Option<Cgroup>> {
    match cg {
        Some(cg) => Ok(Some(cg.sub_cgroup(sub)?)),
        None if !sub.is_empty() => Err(Error::Config(format!(
            "exec --cgroup: container {id} has no cgroup to run in: drop --cgroup"
        ))),
        None => Ok(None),
    }
}

/// Forks the intermediate, straight into the cgroup2 directory where clone3 can
/// (CLONE_INTO_CGROUP); says whether it did, so that add_pid skips cgroup2 then.
fn fork_into(cgroup: Option<&Cgroup>) -> Result<(kclone::Forked, bool)> {
    let v2 = cgroup.and_then(|c| c.v2_dir().map(Path::to_path_buf));
    let v2_fd = v2.as_ref().and_then(|d| {
        nix::fcntl::open(d, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).ok()
    });
    match kclone::clone3_single_threaded(0, v2_fd.as_ref().map(|f| f.as_fd())) {
        Ok(f) => Ok((f, v2_fd.is_some())),
        Err(_) if v2_fd.is_some() => {
            Ok((kclone::clone3_single_threaded(0, None).ctx(|| "clone3 for exec".into())?, false))
        }
        Err(e) => Err(e).ctx(|| "clone3 for exec".into()),
    }
}

/// The intermediate process, as the runtime sees it.
struct Intermediate {
    pid: i32,
    pidfd: OwnedFd,
}

impl Intermediate {
    /// Kills and reaps the intermediate after `e`, and returns `e`.
    fn kill(&self, e: Error) -> Error {
        let _ = kproc::pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.pid), None);
        e
    }
}

/// The handshake with the process that execs: its Hello, our Welcome, its Ready. Returns
/// its pid (as we see it) and pidfd.
fn wait_ready(
    chan: &channel::Channel,
    first: &Intermediate,
    id: &str,
    bundle: &Path,
) -> Result<(i32, OwnedFd)> {
    let mut exec_pid: Option<(i32, OwnedFd)> = None;
    loop {
        let received = match chan.recv_from() {
            Ok(Some(r)) => r,
            Ok(None) => {
                let e = Error::Init("the exec'd process exited during setup".into());
                return Err(match &exec_pid {
                    Some((_, fd)) => {
                        let _ = kproc::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
                        e
                    }
                    None => first.kill(e),
                });
            }
            Err(e) => return Err(first.kill(e)),
        };
        match received.msg {
            Msg::Hello => exec_pid = Some(welcome(chan, received.sender, first, id, bundle)?),
            Msg::Ready => break,
            Msg::Error(e) => {
                if let Some((_, fd)) = &exec_pid {
                    let _ = kproc::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
                    return Err(Error::Init(e));
                }
                return Err(first.kill(Error::Init(e)));
            }
            other => return Err(first.kill(Error::Init(format!("unexpected message {other:?}")))),
        }
    }
    exec_pid.ok_or_else(|| {
        first.kill(Error::Init("the exec'd process reported ready before saying hello".into()))
    })
}

/// Answers the Hello of the process that execs. The kernel tells us its pid (`sender`, the
/// message's credentials), so the intermediate's exit cannot be mistaken for it.
fn welcome(
    chan: &channel::Channel,
    sender: Option<i32>,
    first: &Intermediate,
    id: &str,
    bundle: &Path,
) -> Result<(i32, OwnedFd)> {
    let Some(pid) = sender.filter(|p| *p > 0) else {
        return Err(first.kill(Error::Init("the exec'd process's pid is not visible from here".into())));
    };
    // The intermediate process exits once it has forked the real one.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(first.pid), None);
    let fd = kproc::pidfd_open(pid).ctx(|| "pidfd_open on the exec'd process".into())?;
    let state = format!(
        "{{\"ociVersion\":\"{}\",\"id\":{},\"status\":\"running\",\"pid\":{pid},\"bundle\":{}}}",
        crate::OCI_VERSION,
        serde_json::Value::String(id.to_string()),
        serde_json::Value::String(bundle.display().to_string())
    );
    chan.send(&Msg::Welcome { pid, state })?;
    Ok((pid, fd))
}

/// What the intermediate joins: its cgroup's v1 hierarchies (through `tasks` files the
/// runtime opened, see `Cgroup::v1_task_files`), then the init's namespaces.
struct ChildCtx<'a> {
    chan: &'a channel::Channel,
    cgroup_join: &'a [(PathBuf, OwnedFd)],
    init: &'a OwnedFd,
    mask: u64,
    id: &'a str,
}

/// The intermediate process: joins the container, forks the process that execs (so a
/// joined pid or time namespace applies), reports its pid, and exits.
fn exec_child(
    ctx: ChildCtx<'_>,
    process: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    console: Option<OwnedFd>,
    preserve_fds: u32,
) -> ! {
    let chan = ctx.chan;
    let fail = |e: Error| -> ! {
        let _ = chan.send(&Msg::Error(e.to_string()));
        kclone::exit_now(1)
    };
    if let Err(e) = karton_cgroup::join_v1_self(ctx.cgroup_join) {
        fail(e.into());
    }
    if let Err(e) = join_container(chan, ctx.init, ctx.mask, ctx.id) {
        fail(e);
    }
    // CLONE_PARENT: the process becomes the runtime's child, which can wait for it.
    match kclone::clone3_single_threaded(kclone::CLONE_PARENT, None) {
        Err(e) => fail(Error::Sys { context: "fork inside the container".into(), err: e }),
        Ok(kclone::Forked::Parent { .. }) => kclone::exit_now(0),
        Ok(kclone::Forked::Child) => {}
    }
    let (prepared, filter, pid, state) =
        match prepare_exec(chan, process, seccomp, console.as_ref(), preserve_fds) {
            Ok(p) => p,
            Err(e) => fail(e),
        };
    let _ = kproc::prctl(libc::PR_SET_PDEATHSIG, 0, 0);
    let _ = chan.send(&Msg::Ready);
    let err = prepared.launch(filter, pid, &state);
    kclone::exit_now(err.report(std::io::stderr().as_fd()))
}

/// In the intermediate: waits for the runtime's go-ahead, then joins the namespaces of
/// the container's init.
fn join_container(chan: &channel::Channel, init: &OwnedFd, mask: u64, id: &str) -> Result<()> {
    kproc::prctl(libc::PR_SET_DUMPABLE, 0, 0).ctx(|| "prctl(PR_SET_DUMPABLE)".into())?;
    kproc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0)
        .ctx(|| "prctl(PR_SET_PDEATHSIG)".into())?;
    chan.expect(&Msg::Proceed)?;
    kproc::unblock_all_signals().ctx(|| "unblocking signals".into())?;
    kns::setns(init.as_fd(), mask).ctx(|| format!("joining the namespaces of container {id}"))
}

/// What the process that execs has ready before it tells the runtime so: its settings,
/// its seccomp filter, its pid and the container state from the runtime's welcome.
type ExecReady = (crate::process::Prepared, Option<crate::seccomp::Prepared>, i32, String);

/// In the process that execs: the Hello/Welcome exchange, a new session, LSM labels, the
/// terminal, then everything the process needs prepared before execve.
fn prepare_exec(
    chan: &channel::Channel,
    process: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    console: Option<&OwnedFd>,
    preserve_fds: u32,
) -> Result<ExecReady> {
    kproc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0)
        .ctx(|| "prctl(PR_SET_PDEATHSIG)".into())?;
    chan.send(&Msg::Hello)?;
    let (pid, state) = match chan.recv()? {
        Some(Msg::Welcome { pid, state }) => (pid, state),
        other => return Err(Error::Init(format!("expected the runtime's welcome, got {other:?}"))),
    };
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    // Before seccomp and the capability drop, as runc orders it.
    crate::lsm::apply_exec_labels(process)?;
    if let Some(sock) = console {
        crate::console::setup_tty_in_current_root(sock, process)?;
    }
    let filter = seccomp.map(crate::seccomp::prepare).transpose()?;
    let prepared = crate::process::prepare(process, preserve_fds, filter.is_some())?;
    Ok((prepared, filter, pid, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_process_changes_only_what_is_asked() {
        let mut base = Process::default();
        base.set_env(Some(vec!["PATH=/bin".into(), "A=1".into()]));
        let e = ExecProcess {
            args: vec!["sh".into()],
            env: vec![("A".into(), "2".into())],
            uid: Some(7),
            caps: vec![Capability::NetAdmin],
            ..Default::default()
        };
        let p = e.apply_to(Some(base.clone()));
        assert_eq!(p.args().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(p.env().as_deref(), Some(&["PATH=/bin".to_string(), "A=2".to_string()][..]));
        assert_eq!((p.user().uid(), p.user().gid()), (7, base.user().gid()));
        let caps = p.capabilities().clone().expect("test value");
        assert!(caps.bounding().as_ref().is_some_and(|s| s.contains(&Capability::NetAdmin)));
        assert_eq!(p.cwd(), base.cwd());
        assert_eq!(p.no_new_privileges(), base.no_new_privileges());
    }
    #[test]
    fn exec_needs_a_running_or_created_container() {
        assert!(check_exec_status("c", Status::Running, false).is_ok());
        assert!(check_exec_status("c", Status::Created, false).is_ok());
        assert!(check_exec_status("c", Status::Paused, true).is_ok());
        let e =
            check_exec_status("c", Status::Paused, false).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("--ignore-paused"), "{e}");
        for s in [Status::Creating, Status::Stopped] {
            let e = check_exec_status("c", s, true).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("exec needs a running container"), "{s}: {e}");
        }
    }

    #[test]
    fn exec_cgroup_without_a_container_cgroup() {
        assert!(matches!(exec_cgroup("c", None, &[]), Ok(None)));
        let e = exec_cgroup("c", None, &["memory:x".into()]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("has no cgroup to run in"), "{e}");
    }
}
