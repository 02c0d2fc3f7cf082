//! The container's init: the code the child of clone3 runs until it execve's the user's
//! process. It reports every failure to the runtime over the channel, so errors surface in
//! `karton create` with their cause, and it stays non-dumpable until execve.

use std::convert::Infallible;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use karton_ns::NsType;
use karton_sys::{clone as kclone, ns as kns, process as kproc};
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxDeviceType, Process, Spec};

use crate::channel::{Channel, Msg};
use crate::error::{Context, Error, Result};
use crate::mounts::{self, MountSpec, Mounter};
use crate::plan::{MountMode, NsPlan};

/// Everything the init needs, decided by the runtime before clone3.
pub(crate) struct InitPlan {
    pub spec: Spec,
    /// Relative bind-mount sources are resolved against it.
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// O_PATH fd of the container's state directory: exec.fifo is opened through it after
    /// pivot_root, when the path is no longer reachable.
    pub state_dir: OwnedFd,
    /// The runtime's lock on the state directory, inherited by the clone: closed first
    /// thing, so an init whose runtime was killed can never hold the container's lock.
    pub lock_fd: RawFd,
    /// A pidfd of the runtime: the parent-death signal is armed only after the fork, so
    /// the init checks through it that the runtime has not died in between (getppid
    /// cannot tell: it reads 0 in a new pid namespace).
    pub runtime: OwnedFd,
    pub ns: NsPlan,
    /// Namespaces the init joins itself, in `ns.join_in_child` order.
    pub join_in_child: Vec<(NsType, OwnedFd)>,
    pub console_socket: Option<OwnedFd>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub cgroup_dirs: Vec<(PathBuf, PathBuf)>,
    /// The `tasks` file of each v1 directory of the container's cgroup, opened by the
    /// runtime: the init joins them itself, first thing (see `Cgroup::v1_task_files`).
    pub cgroup_join: Vec<(PathBuf, OwnedFd)>,
    pub runtime_hooks: bool,
    /// The runtime is unprivileged (decided by the parent: once our maps are written,
    /// geteuid() in here says 0).
    pub rootless: bool,
}

/// Runs the init; never returns.
pub(crate) fn main(plan: InitPlan, chan: Channel) -> ! {
    match run(plan, &chan) {
        Ok(never) => match never {},
        Err(e) => {
            let _ = chan.send(&Msg::Error(e.to_string()));
            kclone::exit_now(1)
        }
    }
}

/// The container's state with `status`, and with `pid` as seen from inside (runtime.md:
/// "For hooks executed in the container namespace, it is the pid as seen by the
/// container") when `inside`; a seccomp agent runs on the host and keeps the host's.
fn state_with_status(state: &str, status: &str, inside: bool) -> String {
    match serde_json::from_str::<serde_json::Value>(state) {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.insert("status".into(), serde_json::Value::String(status.into()));
                if inside {
                    o.insert("pid".into(), serde_json::Value::from(nix::unistd::getpid().as_raw()));
                }
            }
            v.to_string()
        }
        Err(_) => state.to_string(),
    }
}

/// The init's steps, in order; each names what it does and stops at the first error,
/// which [`main`] sends to the runtime. After Ready, failures go to the container's
/// stderr instead (see [`fail_after_ready`]).
fn run(mut plan: InitPlan, chan: &Channel) -> Result<Infallible> {
    detach_from_runtime(&plan)?;
    karton_cgroup::join_v1_self(&std::mem::take(&mut plan.cgroup_join))?;
    chan.wait_for_proceed()?;
    shed_runtime_state(&plan)?;
    let rootfs_before = enter_namespaces(&mut plan)?;
    if plan.ns.fork_again {
        fork_into_new_namespaces(&plan)?;
    }
    // From the process that will execve: the runtime reads our pid from the kernel (the
    // message's credentials) and answers with it and the container's state.
    chan.send(&Msg::Hello)?;
    let (host_pid, state) = chan.wait_for_welcome()?;
    start_session(&plan)?;
    set_kernel_settings(&plan)?;

    let process = plan.spec.process().as_ref().ok_or_else(|| Error::Config("process is missing".into()))?;
    // Compiled, and connected to its listener socket, while host paths are reachable.
    let seccomp = match plan.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(sc) => Some(crate::seccomp::prepare(sc)?),
        None => None,
    };
    let creating = state_with_status(&state, "creating", false);
    make_root(&plan, chan, process, &state_with_status(&state, "creating", true), rootfs_before.as_ref())?;

    // The LSM label for the program's execve (AppArmor / SELinux), through the
    // container's procfs: it takes effect at execve, so it may be set now.
    crate::lsm::apply_exec_labels(process)?;
    // The process: everything that may fail is done or checked before Ready, so `create`
    // reports it. With noNewPrivileges false, CAP_SYS_ADMIN stays effective for the filter.
    let prepared = crate::process::prepare(process, plan.preserve_fds, seccomp.is_some())?;
    let ready = Msg::Ready.encode()?;
    let mut seccomp = seccomp;
    let mut filtered = false;
    if seccomp.as_ref().is_some_and(|f| f.compiled().notify) {
        // A seccomp agent gets the listener fd during `create`, as it expects (it may hold
        // `start` until it has it). Under the filter from here: write, openat (exec.fifo),
        // the startContainer hooks, capset and execve.
        if let Some(f) = seccomp.take() {
            f.install(host_pid, &|| creating.clone())?;
            filtered = true;
        }
    }

    // Leaving the runtime: from here on nobody reads the channel.
    kproc::prctl(libc::PR_SET_PDEATHSIG, 0, 0).ctx(|| "prctl(PR_SET_PDEATHSIG)".into())?;
    chan.send_raw(&ready)?;
    wait_for_start(&plan, &state);
    drop(plan.state_dir);
    // The filter (unless a notify agent has it already), the final capabilities, execve.
    let err = if filtered { prepared.finish(true) } else { prepared.launch(seccomp, host_pid, &creating) };
    fail_after_ready(err)
}

/// Before Proceed: let go of what is the runtime's, and die with it.
fn detach_from_runtime(plan: &InitPlan) -> Result<()> {
    // Not ours to hold: the runtime's flock on the state directory (see InitPlan).
    let _ = nix::unistd::close(plan.lock_fd);
    // Non-dumpable: no process in the container can ptrace us or open our /proc files
    // (and through them karton's binary or fds) before execve resets it.
    // Rootless, the runtime (same uid, no privilege) must first write our uid/gid maps and
    // oom_score_adj, and a non-dumpable process's /proc files belong to root: stay
    // dumpable until Proceed, while no process of the container exists yet.
    if !plan.rootless {
        kproc::prctl(libc::PR_SET_DUMPABLE, 0, 0).ctx(|| "prctl(PR_SET_DUMPABLE)".into())?;
    }
    arm_parent_death_signal(&plan.runtime)
}

/// Whether this init still has to write its time offsets (rootless, it must stay
/// dumpable until then: /proc/self/timens_offsets is writable only while it is).
fn offsets_pending(plan: &InitPlan) -> bool {
    plan.ns.unshare_in_child & kclone::CLONE_NEWTIME != 0
}

/// After Proceed: non-dumpable (rootless, unless the time offsets still need writing),
/// and none of the signals `karton run` blocks to forward them.
fn shed_runtime_state(plan: &InitPlan) -> Result<()> {
    if plan.rootless && !offsets_pending(plan) {
        kproc::prctl(libc::PR_SET_DUMPABLE, 0, 0).ctx(|| "prctl(PR_SET_DUMPABLE)".into())?;
    }
    kproc::unblock_all_signals().ctx(|| "unblocking signals".into())
}

/// Joins the namespaces the init joins itself (user first, mount last), then unshares
/// what the clone could not make. Returns the rootfs as the runtime's mount table showed
/// it, for a container that joins a mount namespace (see [`enter_shared_root`]).
fn enter_namespaces(plan: &mut InitPlan) -> Result<Option<nix::sys::stat::FileStat>> {
    // The rootfs as the runtime's mount table shows it, before a joined one replaces it.
    let rootfs_before = match plan.ns.mounts {
        MountMode::Joined => {
            Some(nix::sys::stat::stat(&plan.rootfs).ctx(|| format!("root.path {}", plan.rootfs.display()))?)
        }
        _ => None,
    };
    for (kind, fd) in plan.join_in_child.drain(..) {
        kns::setns(fd.as_fd(), kind.clone_flag())
            .ctx(|| format!("joining the {} namespace given in linux.namespaces", kind.oci_name()))?;
    }
    if plan.ns.unshare_in_child != 0 {
        kns::unshare(plan.ns.unshare_in_child).ctx(|| "unshare of the container's new namespaces".into())?;
        if plan.ns.unshare_in_child & kclone::CLONE_NEWTIME != 0 {
            write_time_offsets(&plan.spec, Path::new("/proc/self/timens_offsets"))?;
        }
    }
    if plan.rootless && offsets_pending(plan) {
        // No process of the container exists yet; the forked init inherits the flag.
        kproc::prctl(libc::PR_SET_DUMPABLE, 0, 0).ctx(|| "prctl(PR_SET_DUMPABLE)".into())?;
    }
    Ok(rootfs_before)
}

/// The second fork, where unshared pid/time namespaces apply only to children: the
/// parent exits, the child goes on as the init.
fn fork_into_new_namespaces(plan: &InitPlan) -> Result<()> {
    // CLONE_PARENT: the new init is the runtime's child, as a clone3'd init is, so its
    // parent-death signal watches the runtime and `run` can reap it.
    match kclone::clone3_single_threaded(kclone::CLONE_PARENT, None)
        .ctx(|| "fork into the container's pid/time namespace".into())?
    {
        kclone::Forked::Parent { .. } => kclone::exit_now(0),
        kclone::Forked::Child => arm_parent_death_signal(&plan.runtime),
    }
}

/// Root of the user namespace (its maps are written by now), a session of its own, and
/// lo up in a new network namespace.
fn start_session(plan: &InitPlan) -> Result<()> {
    if plan.ns.userns {
        kproc::setresgid(0).ctx(|| "setresgid(0) in the user namespace: is gid 0 mapped?".into())?;
        let _ = kproc::setgroups(&[]);
        kproc::setresuid(0).ctx(|| "setresuid(0) in the user namespace: is uid 0 mapped?".into())?;
    }
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    // A new network namespace starts with lo down; runc and crun bring it up, engines count on it.
    if plan.ns.new_flags() & kclone::CLONE_NEWNET != 0 {
        kns::loopback_up().ctx(|| "bringing up lo in the container's new network namespace".into())?;
    }
    Ok(())
}

/// The kernel settings of the container's namespaces and of this process: sysctls,
/// hostname, domainname, session keyring, personality, memory policy.
fn set_kernel_settings(plan: &InitPlan) -> Result<()> {
    let spec = &plan.spec;
    // Sysctls first, through the /proc we still see: before the container's own mounts
    // (a read-only /proc/sys among readonlyPaths, no /proc at all, or a mount over it
    // cannot stand in the way). A sysctl file resolves to the writer's namespaces,
    // whichever procfs it is opened through.
    if let Some(linux) = spec.linux() {
        for (k, v) in linux.sysctl().iter().flatten() {
            write_sysctl(k, v)?;
        }
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).ctx(|| format!("setting hostname {h:?}"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        kproc::setdomainname(d).ctx(|| format!("setting domainname {d:?}"))?;
    }
    if !plan.no_new_keyring {
        match kproc::join_new_session_keyring() {
            Ok(()) => {}
            // No keyrings in this kernel, or not allowed here: the container shares none either way.
            Err(e) if matches!(e.errno, nix::errno::Errno::ENOSYS | nix::errno::Errno::EPERM) => {}
            Err(e) => return Err(e).ctx(|| "creating a session keyring".into()),
        }
    }
    let Some(linux) = spec.linux() else { return Ok(()) };
    if let Some(p) = linux.personality() {
        let persona = match p.domain() {
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
            oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
        };
        kproc::personality(persona).ctx(|| "linux.personality".into())?;
    }
    // Inherited by everything this process forks and execs.
    if let Some(policy) = crate::mempolicy::parse(linux.memory_policy().as_ref())? {
        crate::mempolicy::apply(&policy)?;
    }
    Ok(())
}

/// The container's root: a new mount table set up from the rootfs, or a shared one
/// (joined, or the runtime's) entered by chroot. The hooks before the root changes run
/// in either.
fn make_root(
    plan: &InitPlan,
    chan: &Channel,
    process: &Process,
    creating: &str,
    rootfs_before: Option<&nix::sys::stat::FileStat>,
) -> Result<()> {
    if plan.ns.mounts == MountMode::New {
        return setup_rootfs(plan, chan, process, creating);
    }
    run_hooks_before_root(plan, chan, creating)?;
    enter_shared_root(plan, rootfs_before)?;
    if process.terminal().unwrap_or(false) {
        let sock = plan
            .console_socket
            .as_ref()
            .ok_or_else(|| Error::Config("process.terminal is true but there is no console socket".into()))?;
        // Not our mount table: no bind over /dev/console.
        crate::console::setup_tty_in_current_root(sock, process)?;
    }
    Ok(())
}

/// After Ready: blocks until `karton start` opens exec.fifo for reading, runs the
/// startContainer hooks and writes the go-ahead. Failures end the init here.
fn wait_for_start(plan: &InitPlan, state: &str) {
    let fifo = nix::fcntl::openat(
        plan.state_dir.as_fd(),
        "exec.fifo",
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    );
    let fifo = match fifo {
        Ok(f) => f,
        Err(e) => {
            fail_after_ready(crate::process::LaunchError::AfterFilter { step: "opening exec.fifo", errno: e })
        }
    };
    // startContainer hooks are part of `start`, which waits on the fifo: their failure
    // goes back to it ("1" and the reason) instead of the go-ahead "0", and the user's
    // program never runs.
    if let Some(list) = plan.spec.hooks().as_ref().and_then(|h| h.start_container().as_ref()) {
        // runc's status for this hook: the process is not running the user's program yet.
        let created = state_with_status(state, "created", true);
        if let Err(e) = crate::hooks::run_all("startContainer", list, &created) {
            let _ = nix::unistd::write(&fifo, format!("1{e}").as_bytes());
            fail_after_ready(crate::process::LaunchError::Setup(e));
        }
    }
    if let Err(e) = nix::unistd::write(&fifo, b"0") {
        fail_after_ready(crate::process::LaunchError::AfterFilter { step: "writing exec.fifo", errno: e });
    }
}

/// PR_SET_PDEATHSIG, then a check that the runtime is still our parent: had it died
/// between our clone and the prctl, no signal would ever come.
fn arm_parent_death_signal(runtime: &OwnedFd) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    kproc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0)
        .ctx(|| "prctl(PR_SET_PDEATHSIG)".into())?;
    let mut fds = [PollFd::new(runtime.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
        kclone::exit_now(1);
    }
    Ok(())
}

/// Hooks that run before the root changes, for a container without its own mount table.
fn run_hooks_before_root(plan: &InitPlan, chan: &Channel, creating: &str) -> Result<()> {
    if plan.runtime_hooks {
        chan.send(&Msg::RunRuntimeHooks)?;
        chan.wait_for_hooks_done()?;
    }
    if let Some(list) = plan.spec.hooks().as_ref().and_then(|h| h.create_container().as_ref()) {
        crate::hooks::run_all("createContainer", list, creating)?;
    }
    Ok(())
}

/// A container that shares a mount table (joined, or the runtime's own) gets root.path as
/// its root by chroot: karton mounts nothing in a table that is not the container's (the
/// config's mounts, maskedPaths and readonlyPaths are refused at validation).
fn enter_shared_root(plan: &InitPlan, before: Option<&nix::sys::stat::FileStat>) -> Result<()> {
    let same = |a: &nix::sys::stat::FileStat, b: &nix::sys::stat::FileStat| {
        a.st_dev == b.st_dev && a.st_ino == b.st_ino
    };
    let root_now = nix::sys::stat::stat("/").ctx(|| "stat /".into())?;
    let target = match before {
        // Joined: that namespace's root may be the rootfs already (another container's
        // mount namespace with the same rootfs); otherwise root.path must exist there.
        Some(b) if same(b, &root_now) => return Ok(()),
        Some(_) => nix::sys::stat::stat(&plan.rootfs).map_err(|e| {
            Error::Config(format!(
                "root.path {}: {e} in the joined mount namespace: the container's root must exist in the namespace it joins",
                plan.rootfs.display()
            ))
        })?,
        None => nix::sys::stat::stat(&plan.rootfs).ctx(|| format!("root.path {}", plan.rootfs.display()))?,
    };
    if same(&target, &root_now) {
        return Ok(());
    }
    nix::unistd::chdir(&plan.rootfs).ctx(|| format!("chdir to root.path {}", plan.rootfs.display()))?;
    nix::unistd::chroot(".").ctx(|| format!("chroot to root.path {}", plan.rootfs.display()))?;
    nix::unistd::chdir("/").ctx(|| "chdir /".into())
}

/// After Ready the runtime no longer listens: say it on the container's stderr (an fd
/// already open, with write(2) only) and exit with a shell's "cannot execute" code.
fn fail_after_ready(err: crate::process::LaunchError) -> ! {
    let code = err.report(std::io::stderr().as_fd());
    kclone::exit_now(code)
}

pub(crate) fn write_time_offsets(spec: &Spec, path: &Path) -> Result<()> {
    let Some(offsets) = spec.linux().as_ref().and_then(|l| l.time_offsets().as_ref()) else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in offsets {
        text.push_str(&format!("{clock} {} {}\n", off.secs().unwrap_or(0), off.nanosecs().unwrap_or(0)));
    }
    if text.is_empty() {
        return Ok(());
    }
    std::fs::write(path, text).ctx(|| format!("writing linux.timeOffsets to {}", path.display()))
}

/// A new mount table for the container: isolated from the host's, the rootfs with the
/// config's mounts and devices, the hooks before the root changes, the root change, then
/// what is done from inside the new root.
fn setup_rootfs(plan: &InitPlan, chan: &Channel, process: &Process, creating: &str) -> Result<()> {
    let linux = plan.spec.linux().as_ref();
    let prop = linux.and_then(|l| l.rootfs_propagation().clone()).unwrap_or_default();
    stop_propagation_to_host(&prop)?;
    let root = bind_rootfs(&plan.rootfs)?;
    mount_into_rootfs(plan, &root)?;
    run_hooks_before_root(plan, chan, creating)?;
    let root = change_root(plan, root)?;
    if process.terminal().unwrap_or(false) {
        let sock = plan
            .console_socket
            .as_ref()
            .ok_or_else(|| Error::Config("process.terminal is true but there is no console socket".into()))?;
        crate::console::setup_tty(
            sock,
            &root,
            process.console_size().map(|b| (b.height() as u16, b.width() as u16)),
            true,
        )?;
    }
    finish_root(&plan.spec, &root, &prop)
}

/// Before the first mount: nothing we mount may propagate to the host.
fn stop_propagation_to_host(prop: &str) -> Result<()> {
    let root_flags = match prop {
        "private" | "rprivate" => MsFlags::MS_PRIVATE,
        _ => MsFlags::MS_SLAVE,
    };
    nix::mount::mount(None::<&str>, "/", None::<&str>, root_flags | MsFlags::MS_REC, None::<&str>)
        .ctx(|| "making the mount tree private/slave".into())
}

/// The rootfs bound onto itself (pivot_root needs a mount point), opened for the mounts
/// made by fd beneath it.
fn bind_rootfs(rootfs: &Path) -> Result<OwnedFd> {
    nix::mount::mount(Some(rootfs), rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .ctx(|| format!("bind mounting the rootfs {}", rootfs.display()))?;
    nix::fcntl::open(rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("opening the rootfs {}", rootfs.display()))
}

/// The config's mounts, then the devices.
fn mount_into_rootfs(plan: &InitPlan, root: &OwnedFd) -> Result<()> {
    // Also when the runtime itself runs in one (rootless podman's): no mknod, no new sysfs.
    let in_userns = plan.ns.userns || crate::state::in_user_namespace();
    let mounter = Mounter {
        root,
        rootfs: &plan.rootfs,
        in_userns,
        new_cgroupns: plan.ns.new_flags() & kclone::CLONE_NEWCGROUP != 0,
        cgroup_dirs: &plan.cgroup_dirs,
    };
    for m in plan.spec.mounts().iter().flatten() {
        let ms = MountSpec::from_oci(m, &plan.bundle)?;
        mounter.mount(&ms)?;
    }
    create_devices(root, plan.spec.linux().as_ref(), in_userns)
}

/// Makes the rootfs `/` (pivot_root, or with --no-pivot a move and chroot) and returns
/// the new root, opened.
fn change_root(plan: &InitPlan, old: OwnedFd) -> Result<OwnedFd> {
    let rootfs = &plan.rootfs;
    nix::unistd::chdir(rootfs).ctx(|| format!("chdir to {}", rootfs.display()))?;
    if plan.no_pivot {
        nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .ctx(|| "moving the rootfs to / (--no-pivot)".into())?;
        nix::unistd::chroot(".").ctx(|| "chroot (--no-pivot)".into())?;
    } else {
        nix::unistd::pivot_root(".", ".").ctx(|| "pivot_root".into())?;
        // The old root is stacked under the new one: detach it so the host's tree is
        // unreachable, after making sure the unmount cannot propagate to the host.
        nix::mount::mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
            .ctx(|| "making the old root a slave".into())?;
        nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).ctx(|| "detaching the old root".into())?;
    }
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    drop(old);
    nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| "opening the new root".into())
}

/// From inside the new root: masked and read-only paths, the root's propagation, a
/// read-only root.
fn finish_root(spec: &Spec, root: &OwnedFd, prop: &str) -> Result<()> {
    if let Some(l) = spec.linux() {
        for p in l.masked_paths().iter().flatten() {
            mask_path(root, Path::new(p))?;
        }
        for p in l.readonly_paths().iter().flatten() {
            readonly_path(root, Path::new(p))?;
        }
    }
    match prop {
        "shared" | "rshared" | "slave" | "rslave" | "private" | "rprivate" | "unbindable" | "runbindable" => {
            if let Some(mounts::MountOpt::Propagation(p)) = mounts::parse_option(prop) {
                mounts::set_propagation(root, p, Path::new("/"))?;
            }
        }
        "" => {}
        other => {
            return Err(Error::Config(format!(
                "linux.rootfsPropagation {other:?} is not a propagation type: use private, rprivate, slave, rslave, shared, rshared, unbindable or runbindable"
            )))
        }
    }
    if spec.root().as_ref().is_some_and(|r| r.readonly().unwrap_or(false)) {
        let attr = karton_sys::mount::MountAttr {
            attr_set: karton_sys::mount::MOUNT_ATTR_RDONLY,
            ..Default::default()
        };
        mounts::setattr(root, &attr, false, Path::new("/"))?;
    }
    Ok(())
}

/// The devices every container gets (runtime spec "Default Devices").
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// The default devices, the config's linux.devices, and the /dev links.
fn create_devices(root: &OwnedFd, linux: Option<&oci_spec::runtime::Linux>, userns: bool) -> Result<()> {
    for (path, major, minor) in DEFAULT_DEVICES {
        let dev = Device {
            path: Path::new(path),
            kind: SFlagKind::Char,
            major: *major,
            minor: *minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        };
        make_device(root, &dev, userns, false)?;
    }
    for d in linux.and_then(|l| l.devices().as_ref()).into_iter().flatten() {
        make_device(root, &Device::from_oci(d)?, userns, true)?;
    }
    create_dev_links(root)
}

/// The /dev links every program expects, and /dev/ptmx of the container's own devpts.
fn create_dev_links(root: &OwnedFd) -> Result<()> {
    let links = [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ];
    let dev = mounts::make_target(root.as_fd(), Path::new("/dev"), false)?;
    for (target, link) in links {
        let name = &link[5..];
        match nix::unistd::symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e).ctx(|| format!("creating the symlink {link}")),
        }
    }
    // /dev/ptmx must be the container's own devpts instance when /dev/pts is mounted there.
    if mounts::open_in_root(root.as_fd(), Path::new("/dev/pts/ptmx")).is_ok() {
        let _ = nix::unistd::unlinkat(dev.as_fd(), "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir);
        nix::unistd::symlinkat("pts/ptmx", dev.as_fd(), "ptmx").ctx(|| "creating /dev/ptmx".into())?;
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum SFlagKind {
    Char,
    Block,
    Fifo,
}

/// A device node to make in the container's /dev (or wherever its path says).
struct Device<'a> {
    path: &'a Path,
    kind: SFlagKind,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

impl<'a> Device<'a> {
    fn from_oci(d: &'a oci_spec::runtime::LinuxDevice) -> Result<Device<'a>> {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlagKind::Char,
            LinuxDeviceType::B => SFlagKind::Block,
            LinuxDeviceType::P => SFlagKind::Fifo,
            LinuxDeviceType::A => {
                return Err(Error::Config(format!(
                    "linux.devices {}: type \"a\" is for cgroup rules only: use c, b, u or p",
                    d.path().display()
                )))
            }
        };
        Ok(Device {
            path: d.path(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        })
    }
}

/// Makes `dev` under `root`: bound from the host in a user namespace, else mknod.
/// `strict`, for a config's device: an existing file that is not this very device is an
/// error (config-linux.md: "If a file already exists at path that does not match the
/// requested device, the runtime MUST generate an error"). A default device replaces
/// whatever the image has there: the runtime must supply it.
fn make_device(root: &OwnedFd, dev: &Device, userns: bool, strict: bool) -> Result<()> {
    use nix::sys::stat::SFlag;
    let path = dev.path;
    let parent_path = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| Error::Config(format!("device path {} has no name", path.display())))?;
    let parent = mounts::make_target(root.as_fd(), parent_path, false)?;
    if userns {
        return bind_host_device(root, dev);
    }
    let sflag = match dev.kind {
        SFlagKind::Char => SFlag::S_IFCHR,
        SFlagKind::Block => SFlag::S_IFBLK,
        SFlagKind::Fifo => SFlag::S_IFIFO,
    };
    let rdev = nix::sys::stat::makedev(dev.major, dev.minor);
    if strict {
        if let Ok(st) =
            nix::sys::stat::fstatat(parent.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        {
            if st.st_mode & libc::S_IFMT == sflag.bits() && (sflag == SFlag::S_IFIFO || st.st_rdev == rdev) {
                // Already this device: only its mode and owner are set below.
                return set_device_owner(&parent, name, dev);
            }
            return Err(Error::Config(format!(
                "linux.devices {}: a file that is not this device ({}) exists there in the rootfs: remove it from the image or change the device's path",
                path.display(),
                describe_mode(st.st_mode)
            )));
        }
    } else {
        let _ = nix::unistd::unlinkat(parent.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    }
    nix::sys::stat::mknodat(parent.as_fd(), name, sflag, Mode::from_bits_truncate(dev.mode & 0o7777), rdev)
        .ctx(|| format!("creating device {}", path.display()))?;
    set_device_owner(&parent, name, dev)
}

/// mknod is not allowed in a user namespace: bind the host's node instead.
fn bind_host_device(root: &OwnedFd, dev: &Device) -> Result<()> {
    let path = dev.path;
    if matches!(dev.kind, SFlagKind::Fifo) {
        return Err(Error::Unsupported(format!(
            "linux.devices {}: fifos cannot be created in a user namespace",
            path.display()
        )));
    }
    let target = mounts::make_target(root.as_fd(), path, true)?;
    let tree = mounts::clone_tree(path, false).map_err(|_| {
        Error::Unsupported(format!(
            "linux.devices {}: in a user namespace devices are bind-mounted from the host, and the host has no {}",
            path.display(),
            path.display()
        ))
    })?;
    mounts::attach(&tree, &target, path)
}

fn describe_mode(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symlink",
        libc::S_IFCHR => "another character device",
        libc::S_IFBLK => "another block device",
        libc::S_IFIFO => "a fifo",
        libc::S_IFSOCK => "a socket",
        _ => "an unknown file type",
    }
}

fn set_device_owner(parent: &OwnedFd, name: &std::ffi::OsStr, dev: &Device) -> Result<()> {
    let path = dev.path;
    // mknod honours the umask; the config's mode is what the user asked for.
    nix::sys::stat::fchmodat(
        parent.as_fd(),
        name,
        Mode::from_bits_truncate(dev.mode & 0o7777),
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    )
    .or_else(|e| if e == nix::errno::Errno::EOPNOTSUPP { Ok(()) } else { Err(e) })
    .ctx(|| format!("chmod device {}", path.display()))?;
    nix::unistd::fchownat(
        parent.as_fd(),
        name,
        Some(dev.uid.into()),
        Some(dev.gid.into()),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .ctx(|| format!("chown device {}", path.display()))
}

/// Masks a path: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask_path(root: &OwnedFd, path: &Path) -> Result<()> {
    let target = match mounts::open_in_root(root.as_fd(), path) {
        Ok(t) => t,
        Err(_) => return Ok(()), // nothing there to hide
    };
    let st = nix::sys::stat::fstat(target.as_fd()).ctx(|| format!("masking {}", path.display()))?;
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let tree = if is_dir {
        mounts::new_fs("tmpfs", None, &["size=0"], &[], karton_sys::mount::MOUNT_ATTR_RDONLY, path)?
    } else {
        let null = nix::fcntl::open(
            "/dev/null",
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .ctx(|| format!("masking {}: opening /dev/null", path.display()))?;
        if !mounts::is_dev_null(&null) {
            return Err(Error::Config(format!(
                "masking {}: the container's /dev/null is not the null device (1:3): refusing to bind it",
                path.display()
            )));
        }
        mounts::clone_fd(&null, path)?
    };
    mounts::attach(&tree, &target, path)
}

fn readonly_path(root: &OwnedFd, path: &Path) -> Result<()> {
    let Ok(target) = mounts::open_in_root(root.as_fd(), path) else { return Ok(()) };
    let tree = mounts::clone_fd_recursive(&target, path)?;
    let attr = karton_sys::mount::MountAttr {
        attr_set: karton_sys::mount::MOUNT_ATTR_RDONLY
            | karton_sys::mount::MOUNT_ATTR_NOSUID
            | karton_sys::mount::MOUNT_ATTR_NODEV
            | karton_sys::mount::MOUNT_ATTR_NOEXEC,
        ..Default::default()
    };
    mounts::setattr(&tree, &attr, true, path)?;
    mounts::attach(&tree, &target, path)
}

/// Writes a sysctl after checking that /proc/sys is a real procfs (no mount over it can
/// redirect the write elsewhere).
fn write_sysctl(key: &str, value: &str) -> Result<()> {
    let rel = key.replace('.', "/");
    let path = PathBuf::from("/proc/sys").join(&rel);
    let f = nix::fcntl::open(&path, OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("linux.sysctl.{key}: opening {}", path.display()))?;
    let fs = nix::sys::statfs::fstatfs(&f).ctx(|| format!("linux.sysctl.{key}"))?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(Error::Config(format!(
            "linux.sysctl.{key}: {} is not on procfs: refusing to write through a mount over /proc",
            path.display()
        )));
    }
    nix::unistd::write(&f, value.as_bytes()).ctx(|| format!("linux.sysctl.{key} = {value:?}")).map(drop)
}
