//! The container lifecycle: create, start, state, kill, delete, run.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use karton_cgroup::Cgroup;
use karton_ns::NsType;
use karton_sys::{clone as kclone, ns as kns, process as kproc};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::channel::{self, Channel, Msg};
use crate::config::{self, Config, HostSupport};
use crate::error::{Context, Error, Result};
use crate::init::{self, InitPlan};
use crate::plan::NsPlan;
use crate::state::{Locked, Record, Status, Store, CONFIG_FILE, EXEC_FIFO};
use karton_sys::atomic::{write_atomic, Durability};

pub const OCI_VERSION: &str = "1.2.1";

/// How long delete waits for an init that is already exiting (SIGKILL queued, PF_EXITING).
const DYING_WAIT: Duration = Duration::from_secs(5);

/// Options of `create` (and `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
}

/// A container just created by this process: its init is our child.
pub struct Created {
    pub pid: i32,
    pub pidfd: OwnedFd,
    lock: Locked,
}

/// The runtime: a state root and how to reach the host's facilities.
pub struct Runtime {
    store: Store,
    /// New containers get a systemd scope as their cgroup (`--systemd-cgroup`).
    systemd_cgroup: bool,
}

/// Undoes a half-made container when create fails at any point.
struct Cleanup {
    dir: Option<PathBuf>,
    cgroup: Option<Cgroup>,
    child: Option<(i32, OwnedFd)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((pid, fd)) = self.child.take() {
            let _ = kproc::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.kill_all(libc::SIGKILL);
            if let Err(e) = cg.delete() {
                tracing::warn!("cleaning up after a failed create: {e}");
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Cleanup {
    fn disarm(mut self) {
        self.dir = None;
        self.cgroup = None;
        self.child = None;
    }
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime { store: Store::new(root), systemd_cgroup: false }
    }

    /// Containers created from now on get a transient systemd scope as their cgroup
    /// (`--systemd-cgroup`); the others keep the driver recorded in their state.
    pub fn with_systemd_cgroup(mut self, on: bool) -> Runtime {
        self.systemd_cgroup = on;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Creates a container: its init waits on exec.fifo until `start`.
    pub fn create(&self, id: &str, opts: &CreateOpts) -> Result<Created> {
        crate::state::validate_id(id)?;
        let cfg = config::load(&opts.bundle)?;
        self.create_from(id, cfg, opts)
    }

    /// Creates a container from a config already in memory (e.g. `karton spawn`);
    /// `opts.bundle` is still the directory that relative paths (root.path, bind sources)
    /// are resolved against.
    ///
    /// Like every entry point that starts a container, call it from a single-threaded
    /// process: the init is made with a raw clone3.
    pub fn create_from(&self, id: &str, cfg: Config, opts: &CreateOpts) -> Result<Created> {
        crate::util::require_single_thread("create")?;
        crate::state::validate_id(id)?;
        let (bundle, rootfs) = check_request(&cfg, opts)?;
        let lock = self.store.create(id)?;
        let mut cleanup = Cleanup { dir: Some(lock.dir.clone()), cgroup: None, child: None };
        let mut rec = first_record(id, &cfg, bundle.clone(), rootfs.clone());
        let (pid, pidfd) = Launch {
            id,
            cfg: &cfg,
            bundle: &bundle,
            rootfs: &rootfs,
            opts,
            lock: &lock,
            rec: &mut rec,
            cleanup: &mut cleanup,
            systemd_cgroup: self.systemd_cgroup,
        }
        .spawn_init()?;
        rec.status = Status::Created;
        lock.save(&rec)?;
        if let Some(p) = &opts.pid_file {
            write_atomic(p, pid.to_string().as_bytes(), Durability::NoFsync)
                .ctx(|| format!("writing --pid-file {}", p.display()))?;
        }
        cleanup.disarm();
        Ok(Created { pid, pidfd, lock })
    }

    /// The record with its status checked against the kernel.
    pub fn state(&self, id: &str) -> Result<Record> {
        let mut rec = self.store.load(id)?;
        rec.status = self.live_status(&rec);
        Ok(rec)
    }

    /// All containers, with live status.
    pub fn list(&self) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for id in self.store.ids()? {
            match self.state(&id) {
                Ok(r) => out.push(r),
                Err(Error::NotFound(_)) => {}
                Err(e) => tracing::warn!("container {id}: {e}"),
            }
        }
        Ok(out)
    }

    fn live_status(&self, rec: &Record) -> Status {
        if rec.pid <= 0 {
            return if rec.status == Status::Creating { Status::Creating } else { Status::Stopped };
        }
        if !crate::procfs::is_alive(rec.pid, rec.init_start_time) {
            return Status::Stopped;
        }
        if rec.status == Status::Creating {
            return Status::Creating;
        }
        if self.store.dir(&rec.id).join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if rec.cgroup.as_ref().is_some_and(|c| c.is_frozen().unwrap_or(false)) {
            return Status::Paused;
        }
        Status::Running
    }

    /// Releases a created container's process to execve.
    pub fn start(&self, id: &str) -> Result<()> {
        let lock = self.store.lock(id)?;
        self.start_locked(&lock, None)
    }

    fn start_locked(&self, lock: &Locked, pidfd: Option<&OwnedFd>) -> Result<()> {
        let mut rec = lock.load()?;
        let status = self.live_status(&rec);
        if status != Status::Created {
            return Err(Error::State {
                id: rec.id.clone(),
                status: status.to_string(),
                reason: "start needs a container in the created state: create a new one".into(),
            });
        }
        let owned;
        let pidfd = match pidfd {
            Some(p) => p,
            None => {
                owned = self.open_init(&rec)?;
                &owned
            }
        };
        let fifo_path = lock.dir.join(EXEC_FIFO);
        let fifo = nix::fcntl::open(
            &fifo_path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening {}", fifo_path.display()))?;
        wait_fifo(&fifo, pidfd, &rec.id)?;
        let _ = std::fs::remove_file(&fifo_path);
        rec.status = Status::Running;
        lock.save(&rec)?;
        if let Some(list) = saved_hooks(&lock.dir).and_then(|h| h.poststart().clone()) {
            crate::hooks::run_all_warn("poststart", &list, &rec.hook_state_json());
        }
        Ok(())
    }

    /// A pidfd for the init, refusing a pid that now belongs to another process.
    fn open_init(&self, rec: &Record) -> Result<OwnedFd> {
        if rec.pid <= 0 {
            // The pid is recorded once the init is set up; until then `create` is running
            // (or died before it got there).
            return Err(Error::State {
                id: rec.id.clone(),
                status: "creating".into(),
                reason: format!(
                    "its init is still being set up, so it has no process to use yet: wait for `karton create` to finish, \
                     or if that create was interrupted, remove the container with `karton delete --force {}`",
                    rec.id
                ),
            });
        }
        let fd = kproc::pidfd_open(rec.pid).map_err(|_| Error::State {
            id: rec.id.clone(),
            status: "stopped".into(),
            reason: "its process has exited".into(),
        })?;
        // Checked after opening: from here the fd cannot move to a new process.
        if !crate::procfs::is_alive(rec.pid, rec.init_start_time) {
            return Err(Error::State {
                id: rec.id.clone(),
                status: "stopped".into(),
                reason: "its process has exited".into(),
            });
        }
        Ok(fd)
    }

    /// Sends `sig` to the init, or with `all` to every process of the container.
    pub fn kill(&self, id: &str, sig: i32, all: bool) -> Result<()> {
        let rec = self.store.load(id)?;
        let status = self.live_status(&rec);
        if all {
            if let Some(cg) = &rec.cgroup {
                return Ok(cg.kill_all(sig)?);
            }
        }
        if status == Status::Stopped {
            return Err(Error::State {
                id: id.into(),
                status: status.to_string(),
                reason: "there is no process to signal".into(),
            });
        }
        let fd = self.open_init(&rec)?;
        kproc::pidfd_send_signal(fd.as_fd(), sig).ctx(|| format!("sending signal {sig} to container {id:?}"))
    }

    /// Deletes a container: processes (with `force`), cgroups, state.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let lock = match if force { self.store.lock_breaking_orphans(id) } else { self.store.lock(id) } {
            Ok(l) => l,
            Err(Error::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let rec = match lock.load() {
            Ok(r) => r,
            // A crash before the first state write: nothing but the directory exists.
            Err(_) if force => {
                remove_leftover_cgroup(&lock.dir, id)?;
                return lock.remove();
            }
            Err(e) => return Err(e),
        };
        let status = self.settled_status(&rec);
        self.stop_for_delete(id, &rec, status, force)?;
        if let Some(cg) = &rec.cgroup {
            cg.delete()?;
        } else if force {
            remove_leftover_cgroup(&lock.dir, id)?;
        }
        let hooks = saved_hooks(&lock.dir);
        let state = {
            let mut r = rec.clone();
            r.status = Status::Stopped;
            r.hook_state_json()
        };
        lock.remove()?;
        if let Some(list) = hooks.and_then(|h| h.poststop().clone()) {
            crate::hooks::run_all_warn("poststop", &list, &state);
        }
        Ok(())
    }

    /// The status, once an init that is already dying has finished: `kill ID 9` returns
    /// once the signal is queued; the init still reads as alive until it has exited (an
    /// init of a pid namespace first waits for the rest of its namespace). Let it finish
    /// rather than refuse a container that is stopping.
    fn settled_status(&self, rec: &Record) -> Status {
        let status = self.live_status(rec);
        if status == Status::Stopped || !crate::procfs::is_dying(rec.pid) {
            return status;
        }
        if let Ok(fd) = self.open_init(rec) {
            wait_exit(&fd, DYING_WAIT);
        }
        self.live_status(rec)
    }

    /// Makes sure no process of the container is left before its cgroups and state go:
    /// refuses without `force`, kills with it.
    fn stop_for_delete(&self, id: &str, rec: &Record, status: Status, force: bool) -> Result<()> {
        if status != Status::Stopped {
            if !force {
                return Err(Error::State {
                    id: id.into(),
                    status: status.to_string(),
                    reason: "delete needs a stopped container: stop it with `karton kill`, or use --force"
                        .into(),
                });
            }
            return self.kill_everything(rec);
        }
        let Some(cg) = &rec.cgroup else { return Ok(()) };
        // The init is gone; without a pid namespace its children may still run.
        if !rec.own_pid_ns && !cg.pids().unwrap_or_default().is_empty() {
            if !force {
                return Err(Error::State {
                    id: id.into(),
                    status: "stopped".into(),
                    reason: "its init exited but other processes remain in its cgroup: use --force".into(),
                });
            }
            cg.kill_all(libc::SIGKILL)?;
        }
        Ok(())
    }

    fn kill_everything(&self, rec: &Record) -> Result<()> {
        let init = self.open_init(rec).ok();
        if let Some(cg) = &rec.cgroup {
            if let Err(e) = cg.kill_all(libc::SIGKILL) {
                tracing::warn!("killing container {}: {e}", rec.id);
            }
        }
        if let Some(fd) = &init {
            let _ = kproc::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
            wait_exit(fd, Duration::from_secs(10));
        }
        if let Some(cg) = &rec.cgroup {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !cg.pids().unwrap_or_default().is_empty() && Instant::now() < deadline {
                let _ = cg.kill_all(libc::SIGKILL);
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    /// create + start, then (unless `detach`) wait for the process and return its exit
    /// status as a shell reports it (code, or 128 + signal).
    pub fn run(&self, id: &str, opts: &CreateOpts, detach: bool, keep: bool) -> Result<i32> {
        let cfg = config::load(&opts.bundle)?;
        self.run_from(id, cfg, opts, detach, keep)
    }

    /// `run` of a config already in memory (see [`Runtime::create_from`]).
    pub fn run_from(
        &self,
        id: &str,
        cfg: Config,
        opts: &CreateOpts,
        detach: bool,
        keep: bool,
    ) -> Result<i32> {
        crate::util::require_single_thread("run")?;
        if !detach {
            // If a second fork makes the init, it must still be reparented to us.
            let _ = kproc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0);
        }
        let sigs = if detach { None } else { Some(crate::signals::Forwarder::block()?) };
        let created = self.create_from(id, cfg, opts)?;
        if let Err(e) = self.start_locked(&created.lock, Some(&created.pidfd)) {
            let _ = kproc::pidfd_send_signal(created.pidfd.as_fd(), libc::SIGKILL);
            drop(created.lock);
            let _ = self.delete(id, true);
            return Err(e);
        }
        if detach {
            return Ok(0);
        }
        let Created { pidfd, lock, .. } = created;
        drop(lock);
        let status = match sigs {
            Some(f) => f.forward_until_exit(&pidfd)?,
            None => 0,
        };
        if !keep {
            if let Err(e) = self.delete(id, true) {
                tracing::warn!("deleting container {id:?} after it exited: {e}");
            }
        }
        Ok(status)
    }
}

/// One `create` on its way to a running init: what it was asked for, and the bookkeeping
/// (state record, undo list) each step updates.
struct Launch<'a> {
    id: &'a str,
    cfg: &'a Config,
    bundle: &'a Path,
    rootfs: &'a Path,
    opts: &'a CreateOpts,
    lock: &'a Locked,
    rec: &'a mut Record,
    cleanup: &'a mut Cleanup,
    /// The cgroup is a systemd scope (`--systemd-cgroup`).
    systemd_cgroup: bool,
}

/// The namespace files of linux.namespaces, opened and type-checked before anything runs
/// in them, split by who enters them (see [`crate::plan`]).
struct NsFiles {
    /// Entered by the runtime just for the clone.
    parent: Vec<(NsType, OwnedFd)>,
    /// Entered by the init itself, in `NsPlan::join_in_child` order.
    child: Vec<(NsType, OwnedFd)>,
}

impl Launch<'_> {
    /// Makes the container's init: namespaces planned by [`crate::plan`], cgroups first,
    /// one clone3, then the runtime's half of the conversation with the init (maps,
    /// hooks) until it reports Ready. Returns the init's pid and pidfd.
    fn spawn_init(&mut self) -> Result<(i32, OwnedFd)> {
        let nss = config::namespaces(&self.cfg.spec);
        let ns = crate::plan::plan(&nss, self.has_time_offsets());
        // Nothing of ours may sit at a number the container inherits (--preserve-fds).
        let keep = crate::fds::first_free(self.opts.preserve_fds);
        self.plan_cgroup()?;
        prepare_state_dir(self.lock, self.rec, self.cfg)?;
        let files = open_namespaces(&nss, &ns, keep)?;
        self.make_cgroup()?;
        let plan = self.init_plan(ns.clone(), files.child, keep)?;
        let (chan, child_end) = channel::pair()?;
        let child_end = child_end.relocate(keep)?;
        let cgroup_fd = self.cgroup_v2_fd(keep)?;

        let joined = JoinedForClone::enter(&files.parent, keep)?;
        let parent_end = chan.fd().as_raw_fd();
        let cloned = clone_init(ns.clone_flags, cgroup_fd.as_ref(), move || {
            // The runtime's end is not the init's to hold: it would hide the runtime's exit.
            let _ = nix::unistd::close(parent_end);
            init::main(plan, child_end)
        });
        // Back in the runtime's own namespaces before anything else runs (hooks included).
        joined.leave()?;
        let (first, pidfd, into_cgroup) = cloned.ctx(|| clone_hint(ns.clone_flags))?;
        self.cleanup.child = Some((first, pidfd.try_clone().ctx(|| "dup pidfd".into())?));
        if self.rec.cgroup.as_ref().is_some_and(|c| c.systemd_unit().is_some()) {
            self.start_systemd_scope(first)?;
        }

        self.settle_child(first, into_cgroup, &ns)?;
        chan.proceed()?;
        self.wait_for_ready(&chan, first, &pidfd, &ns)
    }

    fn has_time_offsets(&self) -> bool {
        let linux = self.cfg.spec.linux().as_ref();
        linux.and_then(|l| l.time_offsets().as_ref()).is_some_and(|o| !o.is_empty())
    }

    /// Everything the init needs, decided here before clone3; every fd in it sits at or
    /// above `keep`.
    fn init_plan(&self, ns: NsPlan, join_in_child: Vec<(NsType, OwnedFd)>, keep: i32) -> Result<InitPlan> {
        let spec = &self.cfg.spec;
        let cgroup_dirs = self.rec.cgroup.as_ref().map(cgroup_mount_dirs).transpose()?.unwrap_or_default();
        let console_socket = self.connect_console(keep)?;
        let state_dir = nix::fcntl::open(
            &self.lock.dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("opening {}", self.lock.dir.display()))?;
        let runtime_hooks = spec.hooks().as_ref().is_some_and(|h| {
            h.prestart().as_ref().is_some_and(|v| !v.is_empty())
                || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
        });
        Ok(InitPlan {
            spec: spec.clone(),
            bundle: self.bundle.to_path_buf(),
            rootfs: self.rootfs.to_path_buf(),
            state_dir: crate::fds::relocate(state_dir, keep)?,
            lock_fd: self.lock.raw_fd(),
            runtime: crate::fds::relocate(
                kproc::pidfd_open(nix::unistd::getpid().as_raw())
                    .ctx(|| "pidfd_open on the runtime itself".into())?,
                keep,
            )?,
            ns,
            join_in_child,
            console_socket,
            no_pivot: self.opts.no_pivot,
            no_new_keyring: self.opts.no_new_keyring,
            preserve_fds: self.opts.preserve_fds,
            cgroup_dirs,
            cgroup_join: self.cgroup_join_files(keep)?,
            runtime_hooks,
            rootless: !nix::unistd::geteuid().is_root(),
        })
    }

    /// The v1 `tasks` files the init joins its cgroup through. None with the systemd
    /// driver: its directories exist only once the scope is started, after the clone.
    fn cgroup_join_files(&self, keep: i32) -> Result<Vec<(PathBuf, OwnedFd)>> {
        v1_join_files(self.rec.cgroup.as_ref().filter(|c| c.systemd_unit().is_none()), keep)
    }

    /// The --console-socket connection the init sends its pty master over (terminal only).
    fn connect_console(&self, keep: i32) -> Result<Option<OwnedFd>> {
        let terminal = self.cfg.spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
        let (Some(path), true) = (&self.opts.console_socket, terminal) else { return Ok(None) };
        let sock = std::os::unix::net::UnixStream::connect(path)
            .ctx(|| format!("connecting to --console-socket {}", path.display()))?;
        Ok(Some(crate::fds::relocate(OwnedFd::from(sock), keep)?))
    }

    /// The container's cgroup2 directory for CLONE_INTO_CGROUP, if it has one (an open
    /// failure only costs the clone that flag: cgroup.procs is written instead).
    fn cgroup_v2_fd(&self, keep: i32) -> Result<Option<OwnedFd>> {
        let Some(dir) = self.rec.cgroup.as_ref().and_then(|c| c.v2_dir()) else { return Ok(None) };
        nix::fcntl::open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .ok()
            .map(|fd| crate::fds::relocate(fd, keep))
            .transpose()
    }

    /// What the runtime does to the first child before it may go on: its cgroups (where
    /// clone3 could not place it), its id maps, its oom_score_adj.
    fn settle_child(&self, first: i32, into_cgroup: bool, ns: &NsPlan) -> Result<()> {
        let spec = &self.cfg.spec;
        match &self.rec.cgroup {
            // systemd made the directories after the clone (start_systemd_scope).
            Some(cg) if cg.systemd_unit().is_some() => cg.add_pid(first, into_cgroup)?,
            // The init joins the v1 hierarchies itself (InitPlan::cgroup_join).
            Some(cg) if !into_cgroup => cg.add_pid_v2(first)?,
            _ => {}
        }
        if ns.maps_from_parent {
            if let Some(l) = spec.linux() {
                crate::idmap::write_maps(first, l)?;
            }
        }
        if let Some(adj) = spec.process().as_ref().and_then(|p| p.oom_score_adj()) {
            std::fs::write(format!("/proc/{first}/oom_score_adj"), adj.to_string())
                .ctx(|| format!("process.oomScoreAdj {adj}"))?;
        }
        Ok(())
    }

    /// The runtime's half of the conversation, until the init reports Ready. One loop for
    /// every message: which process is the init comes from the kernel (the sender of
    /// Hello), so an intermediate's exit and the init's messages can arrive in any order.
    fn wait_for_ready(
        &mut self,
        chan: &Channel,
        first: i32,
        pidfd: &OwnedFd,
        ns: &NsPlan,
    ) -> Result<(i32, OwnedFd)> {
        let mut init: Option<(i32, OwnedFd)> = None;
        loop {
            let Some(received) = chan.recv_from()? else {
                return Err(Error::Init("the container process exited during setup".into()));
            };
            match received.msg {
                Msg::Hello => init = Some(self.welcome(chan, received.sender, first, pidfd, ns)?),
                Msg::RunRuntimeHooks => self.run_runtime_hooks(chan)?,
                Msg::Ready => break,
                Msg::Error(e) => return Err(Error::Init(e)),
                other => return Err(Error::Init(format!("unexpected message {other:?}"))),
            }
        }
        init.ok_or_else(|| Error::Init("the container init reported ready before saying hello".into()))
    }

    /// Hello came from the process that will execve: record it and answer with its pid
    /// and the container's state.
    fn welcome(
        &mut self,
        chan: &Channel,
        sender: Option<i32>,
        first: i32,
        pidfd: &OwnedFd,
        ns: &NsPlan,
    ) -> Result<(i32, OwnedFd)> {
        let pid = sender.filter(|p| *p > 0).ok_or_else(|| {
            Error::Init("the container init's pid is not visible from the runtime's pid namespace".into())
        })?;
        let fd = if pid == first {
            pidfd.try_clone().ctx(|| "dup pidfd".into())?
        } else {
            // A second fork made the init; the intermediate exits on its own.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(first), None);
            kproc::pidfd_open(pid).ctx(|| "pidfd_open on the init".into())?
        };
        self.cleanup.child = Some((pid, fd.try_clone().ctx(|| "dup pidfd".into())?));
        self.rec.pid = pid;
        self.rec.own_pid_ns = ns.new_flags() & kclone::CLONE_NEWPID != 0;
        // The init goes on with its root while we record it: a `delete --force` after a
        // crash of this process finds it (and should we die first, PDEATHSIG ends it).
        chan.send(&Msg::Welcome { pid, state: self.rec.hook_state_json() })?;
        self.rec.init_start_time = crate::procfs::start_time(pid).unwrap_or(0);
        self.lock.save(self.rec)?;
        Ok((pid, fd))
    }

    /// prestart and createRuntime hooks, in the runtime's namespaces; a failure is also
    /// told to the init, which stops there.
    fn run_runtime_hooks(&self, chan: &Channel) -> Result<()> {
        if let Some(h) = self.cfg.spec.hooks() {
            let state = self.rec.hook_state_json();
            let mut res = Ok(());
            if let Some(list) = h.prestart() {
                res = crate::hooks::run_all("prestart", list, &state);
            }
            if res.is_ok() {
                if let Some(list) = h.create_runtime() {
                    res = crate::hooks::run_all("createRuntime", list, &state);
                }
            }
            if let Err(e) = res {
                let _ = chan.send(&Msg::Error(e.to_string()));
                return Err(e);
            }
        }
        chan.send(&Msg::HooksDone)
    }

    /// The container's cgroup, planned (nothing made yet) and put in the record, which
    /// [`prepare_state_dir`] writes *before* the first directory is made: a `create` killed
    /// at any moment leaves a record that `delete --force` uses to remove them.
    fn plan_cgroup(&mut self) -> Result<()> {
        let linux = self.cfg.spec.linux().as_ref();
        let rootless = rootless_for_cgroups();
        if rootless && self.systemd_cgroup {
            return Err(Error::Unsupported(
                "--systemd-cgroup: rootless containers would need the user's systemd (systemdUser), which karton does not drive: drop --systemd-cgroup".into(),
            ));
        }
        if rootless
            && linux.and_then(|l| l.resources().as_ref()).filter(|r| **r != Default::default()).is_none()
            && linux.and_then(|l| l.cgroups_path().as_ref()).is_none()
        {
            tracing::debug!("rootless without cgroupsPath or resources: no cgroup");
            return Ok(());
        }
        let host = karton_cgroup::Host::detect()?;
        let cgroups_path =
            linux.and_then(|l| l.cgroups_path().as_ref()).map(|p| p.to_string_lossy().into_owned());
        if self.systemd_cgroup {
            // The scope needs the init's pid: recorded now, started after the clone.
            let cg = Cgroup::plan_systemd(&host, cgroups_path.as_deref(), self.id)?;
            self.rec.cgroup = Some(cg.clone());
            self.cleanup.cgroup = Some(cg);
            return Ok(());
        }
        let cg =
            Cgroup::plan(&host, cgroups_path.as_deref(), self.id).map_err(|e| rootless_hint(rootless, e))?;
        self.rec.cgroup = Some(cg);
        Ok(())
    }

    /// Makes the planned cgroup (cgroupfs driver) and applies linux.resources.
    fn make_cgroup(&mut self) -> Result<()> {
        let Some(mut cg) = self.rec.cgroup.clone().filter(|c| c.systemd_unit().is_none()) else {
            return Ok(());
        };
        cg.make().map_err(|e| rootless_hint(rootless_for_cgroups(), e))?;
        self.cleanup.cgroup = Some(cg.clone());
        if self.rec.cgroup.as_ref() != Some(&cg) {
            // A directory appeared or vanished since the plan: record what make did.
            self.rec.cgroup = Some(cg.clone());
            self.lock.save(self.rec)?;
        }
        let linux = self.cfg.spec.linux().as_ref();
        if let Some(res) = linux.and_then(|l| l.resources().as_ref()) {
            cg.apply(&with_default_device_rules(res, linux))?;
        }
        Ok(())
    }

    /// The systemd driver's second half: the scope with `pid` in it, then the directories
    /// systemd leaves to us and every limit through cgroupfs.
    fn start_systemd_scope(&mut self, pid: i32) -> Result<()> {
        let linux = self.cfg.spec.linux().as_ref();
        let Some(cg) = self.rec.cgroup.as_mut() else { return Ok(()) };
        let res = linux.and_then(|l| l.resources().as_ref());
        let started = cg.start_unit(pid, res);
        // Whatever start made (unit, directories) is recorded for delete, even on failure.
        self.cleanup.cgroup = Some(cg.clone());
        self.lock.save(self.rec)?;
        started?;
        if let (Some(res), Some(cg)) = (res, &self.rec.cgroup) {
            cg.apply(&with_default_device_rules(res, linux))?;
        }
        Ok(())
    }
}

/// Opens the namespace files of linux.namespaces (see [`NsFiles`]) above `keep`.
fn open_namespaces(nss: &[config::NsRequest], ns: &NsPlan, keep: i32) -> Result<NsFiles> {
    let mut files = NsFiles { parent: Vec::new(), child: Vec::new() };
    for n in nss {
        let Some(p) = n.path.as_deref() else { continue };
        let fd = crate::fds::relocate(open_ns(p, n.kind)?, keep)?;
        if ns.join_in_child.contains(&n.kind) {
            files.child.push((n.kind, fd));
        } else {
            files.parent.push((n.kind, fd));
        }
    }
    files.child.sort_by_key(|(k, _)| *k);
    Ok(files)
}

/// clone3 with `flags`, into the cgroup2 directory `cgroup` if given; the child runs
/// `child` and exits from it (youki's fork pattern). In the parent, `child` (and
/// what it owns) is dropped. Returns the child's pid and pidfd, and whether the clone put
/// it in the cgroup.
fn clone_init(
    flags: u64,
    cgroup: Option<&OwnedFd>,
    child: impl FnOnce(),
) -> std::result::Result<(i32, OwnedFd, bool), karton_sys::SysError> {
    let cloned = match kclone::clone3_single_threaded(flags, cgroup.map(|f| f.as_fd())) {
        Ok(f) => Ok((f, cgroup.is_some())),
        // Some layouts refuse CLONE_INTO_CGROUP (e.g. a v2 cgroup with controllers in
        // "threaded" mode): fall back to writing cgroup.procs.
        Err(e)
            if cgroup.is_some()
                && matches!(
                    e.errno,
                    nix::errno::Errno::EBUSY | nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::EINVAL
                ) =>
        {
            kclone::clone3_single_threaded(flags, None).map(|f| (f, false))
        }
        Err(e) => Err(e),
    };
    match cloned? {
        (kclone::Forked::Child, _) => {
            child();
            // Not reached: the init execs or exits. Never back into the runtime's code.
            kclone::exit_now(1)
        }
        (kclone::Forked::Parent { pid, pidfd }, into_cgroup) => Ok((pid, pidfd, into_cgroup)),
    }
}

/// Root of a user namespace other than the initial one (rootless podman's) is no root
/// for cgroups.
fn rootless_for_cgroups() -> bool {
    !nix::unistd::geteuid().is_root() || crate::state::in_user_namespace()
}

/// A cgroup error, explained for a rootless runtime.
fn rootless_hint(rootless: bool, e: karton_cgroup::Error) -> Error {
    if rootless {
        Error::Unsupported(format!(
            "rootless: linux.resources and linux.cgroupsPath need a cgroup this user may write (a delegated subtree), and there is none: {e}: drop them from config.json, or run as root"
        ))
    } else {
        Error::from(e)
    }
}

/// The v1 `tasks` files of `cgroup` (see `Cgroup::v1_task_files`), at or above `keep`.
pub(crate) fn v1_join_files(cgroup: Option<&Cgroup>, keep: i32) -> Result<Vec<(PathBuf, OwnedFd)>> {
    let mut out = Vec::new();
    for (path, f) in cgroup.map(Cgroup::v1_task_files).transpose()?.unwrap_or_default() {
        out.push((path, crate::fds::relocate(OwnedFd::from(f), keep)?));
    }
    Ok(out)
}

/// Everything about a create request that can be checked before anything exists: the
/// config, its seccomp profile, the bundle and rootfs (returned canonical), the console.
fn check_request(cfg: &Config, opts: &CreateOpts) -> Result<(PathBuf, PathBuf)> {
    config::validate(cfg, &HostSupport::detect())?;
    if let Some(sc) = cfg.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        crate::seccomp::check(sc)?;
    }
    let bundle = std::fs::canonicalize(&opts.bundle).ctx(|| format!("bundle {}", opts.bundle.display()))?;
    let root_path = cfg.spec.root().as_ref().map(|r| r.path().clone()).unwrap_or_default();
    let rootfs = std::fs::canonicalize(bundle.join(&root_path)).map_err(|e| {
        Error::Config(format!(
            "{}: root.path {:?}: {e}: point it at the rootfs directory inside the bundle",
            cfg.path.display(),
            root_path
        ))
    })?;
    let terminal = cfg.spec.process().as_ref().and_then(|p| p.terminal()).unwrap_or(false);
    if terminal && opts.console_socket.is_none() {
        return Err(Error::Config(format!(
            "{}: process.terminal is true but no --console-socket was given: pass one, or set terminal to false",
            cfg.path.display()
        )));
    }
    Ok((bundle, rootfs))
}

/// The state record of a container being created: no pid, no cgroup yet.
fn first_record(id: &str, cfg: &Config, bundle: PathBuf, rootfs: PathBuf) -> Record {
    Record {
        oci_version: OCI_VERSION.to_string(),
        id: id.to_string(),
        status: Status::Creating,
        pid: 0,
        bundle,
        rootfs,
        created: crate::util::rfc3339_now(),
        owner: nix::unistd::geteuid().as_raw().to_string(),
        annotations: cfg.spec.annotations().clone().unwrap_or_default().into_iter().collect(),
        init_start_time: 0,
        cgroup: None,
        own_pid_ns: false,
    }
}

/// state.json ("creating", with the planned cgroup), the config as created, and exec.fifo.
fn prepare_state_dir(lock: &Locked, rec: &Record, cfg: &Config) -> Result<()> {
    lock.save(rec)?;
    std::fs::write(lock.dir.join(CONFIG_FILE), &cfg.text)
        .ctx(|| "saving config.json in the state directory".into())?;
    let fifo = lock.dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622))
        .ctx(|| format!("mkfifo {}", fifo.display()))?;
    // mkfifo honours the umask; start must be able to open it whatever the umask was.
    let _ = std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o622));
    Ok(())
}

/// Namespaces the runtime enters only for the clone3 that makes the init (see
/// [`crate::plan`]), with its own to return to.
struct JoinedForClone {
    own: Vec<(NsType, OwnedFd)>,
}

impl JoinedForClone {
    fn enter(joins: &[(NsType, OwnedFd)], keep: i32) -> Result<JoinedForClone> {
        let mut own = Vec::new();
        for (k, _) in joins {
            let path = format!(
                "/proc/thread-self/ns/{}",
                if *k == NsType::Pid || *k == NsType::Time {
                    format!("{}_for_children", k.proc_name())
                } else {
                    k.proc_name().to_string()
                }
            );
            let fd = nix::fcntl::open(path.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                .ctx(|| format!("opening the runtime's own {} namespace ({path})", k.oci_name()))?;
            own.push((*k, crate::fds::relocate(fd, keep)?));
        }
        let me = JoinedForClone { own };
        for (k, fd) in joins {
            kns::setns(fd.as_fd(), k.clone_flag())
                .ctx(|| format!("joining the {} namespace given in linux.namespaces", k.oci_name()))?;
        }
        Ok(me)
    }

    /// Returns to the runtime's namespaces. A failure leaves this process in the
    /// container's, so it must abort the create.
    fn leave(mut self) -> Result<()> {
        for (k, fd) in self.own.drain(..) {
            kns::setns(fd.as_fd(), k.clone_flag())
                .ctx(|| format!("returning to the runtime's own {} namespace", k.oci_name()))?;
        }
        Ok(())
    }
}

impl Drop for JoinedForClone {
    fn drop(&mut self) {
        // An early error between enter and leave: still go back.
        for (k, fd) in self.own.drain(..) {
            let _ = kns::setns(fd.as_fd(), k.clone_flag());
        }
    }
}

fn clone_hint(flags: u64) -> String {
    let names: Vec<&str> =
        NsType::ALL.iter().filter(|t| flags & t.clone_flag() != 0).map(|t| t.proc_name()).collect();
    format!(
        "clone3 with new namespaces [{}]: check that this kernel and user may create them",
        names.join(" ")
    )
}

/// Opens a namespace file and checks that it is of the declared type.
fn open_ns(path: &Path, kind: NsType) -> Result<OwnedFd> {
    let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("linux.namespaces: {} path {}", kind.oci_name(), path.display()))?;
    match kns::ns_get_nstype(fd.as_fd()) {
        Ok(t) if t == kind.clone_flag() => Ok(fd),
        Ok(t) => {
            let actual = NsType::from_clone_flag(t).map(|t| t.oci_name()).unwrap_or("unknown");
            Err(Error::Config(format!(
                "linux.namespaces: {} is a {actual} namespace, not a {} namespace: point the {} entry at /proc/PID/ns/{} or a bind mount of it",
                path.display(),
                kind.oci_name(),
                kind.oci_name(),
                kind.proc_name()
            )))
        }
        Err(_) => Err(Error::Config(format!(
            "linux.namespaces: {} is not a namespace file: point the {} entry at /proc/PID/ns/{} or a bind mount of it",
            path.display(),
            kind.oci_name(),
            kind.proc_name()
        ))),
    }
}

/// Waits for the init's byte on exec.fifo, or notices that the init died first.
fn wait_fifo(fifo: &OwnedFd, pidfd: &OwnedFd, id: &str) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        let mut fds =
            [PollFd::new(fifo.as_fd(), PollFlags::POLLIN), PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).ctx(|| "waiting on exec.fifo".into()),
        }
        let fifo_ready = fds[0].revents().is_some_and(|r| r.intersects(PollFlags::POLLIN));
        let died = fds[1].revents().is_some_and(|r| !r.is_empty());
        if fifo_ready {
            let mut b = [0u8; 1];
            match nix::unistd::read(fifo.as_fd(), &mut b) {
                Ok(1) if b[0] == b'0' => return Ok(()),
                // The init's startContainer hooks failed: the reason follows the byte.
                Ok(1) => {
                    let reason = read_rest(fifo);
                    stop_after_failed_hook(pidfd);
                    return Err(Error::Hook(reason));
                }
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => return Err(e).ctx(|| "reading exec.fifo".into()),
            }
        }
        if died {
            return Err(Error::State {
                id: id.into(),
                status: "stopped".into(),
                reason: "its process exited before start".into(),
            });
        }
    }
}

/// runtime.md: a failed startContainer hook MUST stop the container. The init exits right
/// after its failure byte, but may still be on its way when the reason arrives: wait for
/// it (killing it if it lingers), so that `state` says stopped once `start` has returned.
fn stop_after_failed_hook(pidfd: &OwnedFd) {
    if !wait_exit(pidfd, Duration::from_secs(2)) {
        let _ = kproc::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
        wait_exit(pidfd, Duration::from_secs(10));
    }
}

/// What the init wrote after its failure byte: the byte and the reason go in one
/// write(2), so the reason is in the fifo already.
fn read_rest(fifo: &OwnedFd) -> String {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = nix::unistd::read(fifo.as_fd(), &mut buf) {
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Waits up to `timeout` for the process behind `pidfd` to exit.
pub(crate) fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    matches!(poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::NONE)), Ok(n) if n > 0)
}

/// Removes the cgroup a container made but never recorded (see [`Cgroup::leftover`]).
fn remove_leftover_cgroup(dir: &Path, id: &str) -> Result<()> {
    let spec = load_saved_spec(dir);
    let cgroups_path = spec
        .as_ref()
        .and_then(|s| s.linux().as_ref())
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    // Best effort up to the removal itself: a host without cgroups has nothing to leak.
    let found =
        karton_cgroup::Host::detect().and_then(|host| Cgroup::leftover(&host, cgroups_path.as_deref(), id));
    let cg = match found {
        Ok(cg) => cg,
        Err(e) => {
            tracing::warn!("container {id}: looking for a cgroup it left unrecorded: {e}");
            None
        }
    };
    if let Some(cg) = cg {
        tracing::debug!("container {id}: removing the unrecorded cgroup {}", cg.path());
        cg.delete()?;
    }
    Ok(())
}

/// The hooks of the config saved at create (start and delete run poststart and poststop
/// from it). Most configs have none, and a text without the key needs no parse.
fn saved_hooks(dir: &Path) -> Option<oci_spec::runtime::Hooks> {
    #[derive(serde::Deserialize)]
    struct WithHooks {
        hooks: Option<oci_spec::runtime::Hooks>,
    }
    let text = std::fs::read_to_string(dir.join(CONFIG_FILE)).ok()?;
    if !text.contains("\"hooks\"") {
        return None;
    }
    serde_json::from_str::<WithHooks>(&text).ok()?.hooks
}

fn load_saved_spec(dir: &Path) -> Option<oci_spec::runtime::Spec> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    config::parse_spec(&text, &path).ok()
}

/// The device rules the container needs whatever its config says, appended to the
/// config's as runc does: mknod of anything, the default devices, ptys and the
/// config's own linux.devices.
pub(crate) fn with_default_device_rules(
    res: &oci_spec::runtime::LinuxResources,
    linux: Option<&oci_spec::runtime::Linux>,
) -> oci_spec::runtime::LinuxResources {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType as T};
    let Some(rules) = res.devices().as_ref() else { return res.clone() };
    let rule = |typ: T, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    let mut all = rules.clone();
    all.push(rule(T::C, None, None, "m"));
    all.push(rule(T::B, None, None, "m"));
    for (major, minor) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (10, 200)] {
        all.push(rule(T::C, Some(major), Some(minor), "rwm"));
    }
    all.push(rule(T::C, Some(136), None, "rwm"));
    for d in linux.and_then(|l| l.devices().as_ref()).into_iter().flatten() {
        let typ = if d.typ() == oci_spec::runtime::LinuxDeviceType::U { T::C } else { d.typ() };
        all.push(rule(typ, Some(d.major()), Some(d.minor()), "rwm"));
    }
    let mut out = res.clone();
    out.set_devices(Some(all));
    out
}

/// For each host cgroup mount, the container's directory in it (for "cgroup" mounts).
fn cgroup_mount_dirs(cg: &Cgroup) -> Result<Vec<(PathBuf, PathBuf)>> {
    let mounts = crate::mounts::host_cgroup_mounts()?;
    let mut out = Vec::new();
    for d in cg.dirs() {
        let best = mounts
            .iter()
            .filter(|m| d.starts_with(&m.mount_point))
            .max_by_key(|m| m.mount_point.as_os_str().len());
        if let Some(m) = best {
            out.push((m.mount_point.clone(), d.to_path_buf()));
        }
    }
    Ok(out)
}
