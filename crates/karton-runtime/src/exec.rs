//! `exec`: a new process inside a running container — its namespaces (one setns on the
//! init's pidfd), its cgroups, and by default its capabilities, rlimits, no_new_privs and
//! seccomp filter.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use karton_ns::NsType;
use karton_sys::{clone as kclone, ns as kns, process as kproc};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::Process;

use crate::channel::{self, Msg};
use crate::container::Runtime;
use crate::error::{Context, Error, Result};
use crate::state::Status;
use crate::util::write_atomic;

/// How to run an exec'd process.
#[derive(Debug, Clone, Default)]
pub struct ExecOpts {
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    pub ignore_paused: bool,
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

    /// Runs `process` in the container. Returns the exit status (code, or 128 + signal)
    /// or, with `detach`, 0 once the process has started.
    pub fn exec(&self, id: &str, process: &Process, opts: &ExecOpts) -> Result<i32> {
        crate::util::require_single_thread("exec")?;
        let rec = self.state(id)?;
        match rec.status {
            Status::Running | Status::Created => {}
            Status::Paused if opts.ignore_paused => {}
            Status::Paused => {
                return Err(Error::State {
                    id: id.into(),
                    status: "paused".into(),
                    reason: "exec would hang in a frozen cgroup: `karton resume` it first, or pass --ignore-paused".into(),
                })
            }
            other => {
                return Err(Error::State { id: id.into(), status: other.to_string(), reason: "exec needs a running container".into() })
            }
        }
        let file = format!("exec process of {id}");
        crate::config::validate_process(process, &file, &|_| String::new(), &crate::config::HostSupport::detect())?;
        let terminal = process.terminal().unwrap_or(false);
        if terminal && opts.console_socket.is_none() {
            return Err(Error::Config("exec --tty needs --console-socket: pass the socket that receives the terminal".into()));
        }
        let spec = self.saved_spec(id)?;
        let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
        let init = kproc::pidfd_open(rec.pid).ctx(|| format!("container {id}: its init"))?;
        if !crate::procfs::is_alive(rec.pid, rec.init_start_time) {
            return Err(Error::State { id: id.into(), status: "stopped".into(), reason: "its process has exited".into() });
        }
        // The namespaces that differ from ours are the container's own.
        let mut mask = 0u64;
        for t in NsType::ALL {
            let theirs = std::fs::read_link(format!("/proc/{}/ns/{}", rec.pid, t.proc_name()));
            let ours = std::fs::read_link(format!("/proc/self/ns/{}", t.proc_name()));
            if let (Ok(a), Ok(b)) = (theirs, ours) {
                if a != b {
                    mask |= t.clone_flag();
                }
            }
        }
        let console = match (&opts.console_socket, terminal) {
            (Some(p), true) => Some(OwnedFd::from(
                std::os::unix::net::UnixStream::connect(p).ctx(|| format!("connecting to --console-socket {}", p.display()))?,
            )),
            _ => None,
        };
        if !opts.detach {
            let _ = kproc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0);
        }
        let sigs = if opts.detach { None } else { Some(crate::signals::Forwarder::block()?) };
        let (parent_end, child_end) = channel::pair()?;
        let v2 = rec.cgroup.as_ref().and_then(|c| c.v2_dir().map(Path::to_path_buf));
        let v2_fd = v2.as_ref().and_then(|d| nix::fcntl::open(d, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).ok());
        let (forked, into) = match kclone::clone3_single_threaded(0, v2_fd.as_ref().map(|f| f.as_fd())) {
            Ok(f) => (f, v2_fd.is_some()),
            Err(_) if v2_fd.is_some() => (kclone::clone3_single_threaded(0, None).ctx(|| "clone3 for exec".into())?, false),
            Err(e) => return Err(e).ctx(|| "clone3 for exec".into()),
        };
        let (first, first_fd) = match forked {
            kclone::Forked::Child => {
                drop(parent_end);
                exec_child(&child_end, &init, mask, process, seccomp.as_ref(), console, opts.preserve_fds, id)
            }
            kclone::Forked::Parent { pid, pidfd } => (pid, pidfd),
        };
        drop(child_end);
        let kill_first = |e: Error| {
            let _ = kproc::pidfd_send_signal(first_fd.as_fd(), libc::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(first), None);
            e
        };
        if let Some(cg) = &rec.cgroup {
            cg.add_pid(first, into).map_err(|e| kill_first(e.into()))?;
        }
        parent_end.send(&Msg::Proceed).map_err(kill_first)?;
        // InitPid comes from the intermediate and Ready from the process it forked: two
        // senders on one socket, so on a busy machine Ready may arrive first.
        let mut ready = false;
        let pid = loop {
            match parent_end.recv() {
                Ok(Some(Msg::InitPid(p))) => break p,
                Ok(Some(Msg::Ready)) if !ready => ready = true,
                Ok(Some(Msg::Error(e))) => return Err(kill_first(Error::Init(e))),
                Ok(_) => return Err(kill_first(Error::Init("the exec'd process exited during setup".into()))),
                Err(e) => return Err(kill_first(e)),
            }
        };
        // The intermediate process exits once it has forked the real one.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(first), None);
        let pidfd = kproc::pidfd_open(pid).ctx(|| "pidfd_open on the exec'd process".into())?;
        match if ready { Some(Msg::Ready) } else { parent_end.recv()? } {
            Some(Msg::Ready) => {}
            Some(Msg::Error(e)) => {
                let _ = kproc::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
                return Err(Error::Init(e));
            }
            _ => return Err(Error::Init("the exec'd process exited during setup".into())),
        }
        if let Some(p) = &opts.pid_file {
            write_atomic(p, pid.to_string().as_bytes()).ctx(|| format!("writing --pid-file {}", p.display()))?;
        }
        match sigs {
            Some(f) => f.forward_until_exit(&pidfd),
            None => Ok(0),
        }
    }
}

/// The intermediate process: joins the container, forks the process that execs (so a
/// joined pid or time namespace applies), reports its pid, and exits.
#[allow(clippy::too_many_arguments)]
fn exec_child(
    chan: &channel::Channel,
    init: &OwnedFd,
    mask: u64,
    process: &Process,
    seccomp: Option<&oci_spec::runtime::LinuxSeccomp>,
    console: Option<OwnedFd>,
    preserve_fds: u32,
    id: &str,
) -> ! {
    let fail = |e: Error| -> ! {
        let _ = chan.send(&Msg::Error(e.to_string()));
        kclone::exit_now(1)
    };
    if let Err(e) = (|| -> Result<()> {
        kproc::prctl(libc::PR_SET_DUMPABLE, 0, 0).ctx(|| "prctl(PR_SET_DUMPABLE)".into())?;
        kproc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0).ctx(|| "prctl(PR_SET_PDEATHSIG)".into())?;
        chan.expect(&Msg::Proceed)?;
        kproc::unblock_all_signals().ctx(|| "unblocking signals".into())?;
        kns::setns(init.as_fd(), mask).ctx(|| format!("joining the namespaces of container {id}"))
    })() {
        fail(e);
    }
    // CLONE_PARENT: the process becomes the runtime's child, which can wait for it.
    match kclone::clone3_single_threaded(kclone::CLONE_PARENT, None) {
        Err(e) => fail(Error::Sys { context: "fork inside the container".into(), err: e }),
        Ok(kclone::Forked::Parent { pid, .. }) => {
            let _ = chan.send(&Msg::InitPid(pid));
            kclone::exit_now(0)
        }
        Ok(kclone::Forked::Child) => {}
    }
    let pid = nix::unistd::getpid().as_raw();
    let state = || format!("{{\"ociVersion\":\"{}\",\"id\":\"{id}\",\"status\":\"running\",\"pid\":{pid}}}", crate::OCI_VERSION);
    let r = (|| -> Result<(crate::process::Prepared, Option<crate::seccomp::Prepared>)> {
        nix::unistd::setsid().ctx(|| "setsid".into())?;
        // Before seccomp and the capability drop, as runc orders it.
        crate::lsm::apply_exec_labels(process)?;
        if let Some(sock) = &console {
            let root = nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .ctx(|| "opening the container root".into())?;
            crate::console::setup_tty(sock, &root, process.console_size().map(|b| (b.height() as u16, b.width() as u16)), false)?;
        }
        let mut filter = seccomp.map(crate::seccomp::prepare).transpose()?;
        // Without noNewPrivileges the filter needs CAP_SYS_ADMIN: install it before the
        // capabilities drop, as the init does.
        if !process.no_new_privileges().unwrap_or(false) {
            if let Some(f) = filter.take() {
                f.install(pid, &state)?;
            }
        }
        Ok((crate::process::apply(process, preserve_fds)?, filter))
    })();
    let (prepared, filter) = match r {
        Ok(p) => p,
        Err(e) => fail(e),
    };
    let _ = chan.send(&Msg::Ready);
    if let Some(f) = filter {
        if let Err(e) = f.install(pid, &state) {
            eprintln!("karton: exec: {e}");
            kclone::exit_now(127);
        }
    }
    let err = prepared.exec();
    eprintln!("karton: exec: {err}");
    kclone::exit_now(127)
}
