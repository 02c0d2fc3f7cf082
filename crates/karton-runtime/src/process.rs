//! Applying an OCI `process` to the calling process: shared by the container's init and
//! by `exec`. Everything that can fail runs before the caller reports success, so a bad
//! command or user is an error of `create`/`exec`, not a silent exit later.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use karton_sys::{caps, process as kproc};
use nix::sys::stat::Mode;
use oci_spec::runtime::Process;

use crate::error::{Context, Error, Result};

/// A process ready for execve: everything that can fail with a reason has been done or
/// checked, and what remains ([`Prepared::launch`]) is the short tail the seccomp filter
/// must allow: capset and execve.
pub struct Prepared {
    pub exe: PathBuf,
    c_exe: CString,
    c_args: Vec<CString>,
    c_env: Vec<CString>,
    /// The capability sets the process execve's with.
    caps: caps::CapSets,
    /// The sets in force now: `caps`, plus CAP_SYS_ADMIN while a filter without
    /// no_new_privs is still to be installed (the kernel demands it).
    staged: caps::CapSets,
}

/// How [`Prepared::launch`] failed. After the filter is in place nothing may allocate, so
/// that case carries only static text and the errno.
#[derive(Debug)]
pub enum LaunchError {
    Setup(Error),
    AfterFilter { step: &'static str, errno: nix::errno::Errno },
}

impl LaunchError {
    /// Reports the failure on `fd` (the container's stderr, or the runtime channel's
    /// socket) with write(2) only, and returns the exit code that goes with it: 126 for a
    /// permission problem, 127 otherwise (a shell's "cannot execute" codes).
    pub fn report(&self, fd: std::os::fd::BorrowedFd<'_>) -> i32 {
        let put = |b: &[u8]| {
            let _ = nix::unistd::write(fd, b);
        };
        let errno = match self {
            LaunchError::Setup(e) => {
                put(format!("karton: container init: {e}\n").as_bytes());
                return 127;
            }
            LaunchError::AfterFilter { step, errno } => {
                put(b"karton: container init: ");
                put(step.as_bytes());
                put(b": ");
                put(errno.desc().as_bytes());
                put(b" (after the seccomp filter was installed: the profile must allow it)\n");
                *errno
            }
        };
        if matches!(errno, nix::errno::Errno::EPERM | nix::errno::Errno::EACCES) {
            126
        } else {
            127
        }
    }
}

impl Prepared {
    /// The last steps, the only ones that run under the container's seccomp filter:
    /// installs `filter` (unless it is already in place), sets the final capabilities and
    /// execve's. Returns only on failure.
    ///
    /// With no_new_privs (set by [`prepare`]) the filter needs no privilege and goes on
    /// last, with only execve after it. Without it the kernel accepts a filter only while
    /// CAP_SYS_ADMIN is effective, so [`prepare`] kept it, and a capset drops it after the
    /// filter.
    pub fn launch(self, filter: Option<crate::seccomp::Prepared>, pid: i32, state: &str) -> LaunchError {
        let mut filtered = false;
        if let Some(f) = filter {
            if let Err(e) = f.install(pid, &|| state.to_string()) {
                return LaunchError::Setup(e);
            }
            filtered = true;
        }
        self.finish(filtered)
    }

    /// Capset (if the staged sets differ) and execve. `filtered`: a filter is in place,
    /// so failures must not allocate.
    pub fn finish(self, filtered: bool) -> LaunchError {
        if self.staged != self.caps {
            if let Err(e) = caps::set(&self.caps) {
                if filtered {
                    return LaunchError::AfterFilter { step: "capset", errno: e.errno };
                }
                return LaunchError::Setup(Error::Sys {
                    context: "setting process.capabilities".into(),
                    err: e,
                });
            }
        }
        let errno = nix::unistd::execve(&self.c_exe, &self.c_args, &self.c_env)
            .err()
            .unwrap_or(nix::errno::Errno::EINVAL);
        if filtered {
            return LaunchError::AfterFilter { step: "execve", errno };
        }
        LaunchError::Setup(Error::Config(format!("execve {}: {}", self.exe.display(), errno.desc())))
    }
}

/// Applies rlimits, scheduler, I/O priority, cwd, user, capabilities (staged, see
/// [`Prepared`]), no_new_privs and umask, marks every fd above 2 + `preserve_fds`
/// close-on-exec, and resolves the command. `filter_pending`: a seccomp filter will be
/// installed after this.
pub fn prepare(process: &Process, preserve_fds: u32, filter_pending: bool) -> Result<Prepared> {
    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    let arg0 =
        args.first().ok_or_else(|| Error::Config("process.args is empty: set the command to run".into()))?;
    let cwd = process.cwd();
    enter_cwd(cwd)?;
    let exe = find_executable(arg0, &env, cwd)?;
    for r in process.rlimits().iter().flatten() {
        let res = rlimit_number(&r.typ().to_string());
        kproc::setrlimit(res, r.soft(), r.hard()).ctx(|| {
            format!(
                "process.rlimits {}: soft {} hard {}: the hard limit may not exceed the runtime's own (this host's bounding set lacks CAP_SYS_RESOURCE)",
                r.typ(),
                r.soft(),
                r.hard()
            )
        })?;
    }
    if let Some(s) = process.scheduler() {
        set_scheduler(s)?;
    }
    if let Some(io) = process.io_priority() {
        let class = match io.class() {
            oci_spec::runtime::IOPriorityClass::IoprioClassRt => 1,
            oci_spec::runtime::IOPriorityClass::IoprioClassBe => 2,
            oci_spec::runtime::IOPriorityClass::IoprioClassIdle => 3,
        };
        kproc::ioprio_set_self(class, io.priority() as u32).ctx(|| "process.ioPriority".into())?;
    }
    let env = with_home(env, process.user().uid());
    let nnp = process.no_new_privileges().unwrap_or(false);
    let (caps, staged) = set_user_and_caps(process, filter_pending && !nnp)?;
    if nnp {
        kproc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).ctx(|| "prctl(PR_SET_NO_NEW_PRIVS)".into())?;
    }
    nix::sys::stat::umask(Mode::from_bits_truncate(process.user().umask().unwrap_or(0o022)));
    // Only fds 0-2 and the preserved ones may reach the container's process (CVE-2016-9962).
    crate::fds::seal(preserve_fds)?;
    Ok(Prepared {
        c_exe: cstring(exe.as_os_str())?,
        c_args: args.iter().map(cstring).collect::<Result<_>>()?,
        c_env: env.iter().map(cstring).collect::<Result<_>>()?,
        exe,
        caps,
        staged,
    })
}

fn cstring(s: impl AsRef<std::ffi::OsStr>) -> Result<CString> {
    CString::new(s.as_ref().as_bytes())
        .map_err(|_| Error::Config(format!("{:?} contains a NUL byte", s.as_ref())))
}

/// Enters process.cwd, resolved inside the container's root (openat2 RESOLVE_IN_ROOT and
/// no magic links, creating what is missing), so a cwd such as /proc/self/fd/N cannot
/// reach a directory fd the runtime still holds (CVE-2024-21626); then checks that the
/// kernel sees the new cwd as reachable from the root.
fn enter_cwd(cwd: &Path) -> Result<()> {
    use std::os::fd::AsFd;
    let root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "opening the container root".into())?;
    let dir = crate::mounts::make_target(root.as_fd(), cwd, false).map_err(|e| {
        Error::Config(format!(
            "process.cwd {}: {e}: it must be a directory inside the container (no /proc magic links)",
            cwd.display()
        ))
    })?;
    nix::unistd::fchdir(&dir).ctx(|| format!("process.cwd {}", cwd.display()))?;
    // getcwd fails (the kernel says "(unreachable)") when the cwd is outside the root.
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(Error::Config(format!(
            "process.cwd {}: resolves outside the container's root: refused",
            cwd.display()
        ))),
    }
}

/// Resolves args[0] as execvp would, with the container's PATH, so a missing command is
/// reported by `create` rather than lost after the runtime has gone.
fn find_executable(arg0: &str, env: &[String], cwd: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    };
    if arg0.contains('/') {
        let p = if Path::new(arg0).is_absolute() { PathBuf::from(arg0) } else { cwd.join(arg0) };
        if is_exec(&p) {
            return Ok(p);
        }
        return Err(Error::Config(format!(
            "process.args[0] {arg0:?}: {}: check the command and the image",
            not_executable(arg0, &p)
        )));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut unusable = Vec::new();
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(arg0);
        if is_exec(&p) {
            return Ok(p);
        }
        if std::fs::symlink_metadata(&p).is_ok() {
            unusable.push(p.display().to_string());
        }
    }
    // execvp-style lookup skips what it cannot run (as Go's LookPath, which runc uses):
    // still "not found", but name what was skipped.
    let skipped = if unusable.is_empty() {
        String::new()
    } else {
        format!("; skipped, not executable files: {}", unusable.join(", "))
    };
    Err(Error::Config(format!(
        "process.args[0] {arg0:?}: executable file not found in $PATH ({path}) inside the container{skipped}: check the command and the image"
    )))
}

/// Why `p` (args[0] as given) cannot be executed, in words engines map to exit codes:
/// podman and CRI-O take "no such file or directory" for 127 and "permission denied" for
/// 126, so each case uses the one execve would return, and never both.
fn not_executable(arg0: &str, p: &Path) -> String {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let errno =
        |e: &std::io::Error| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)).desc().to_lowercase();
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => format!("{arg0} is a directory, not a program: execve would fail with permission denied"),
        Ok(m) if m.is_file() => format!(
            "{arg0} is a file without execute permission (mode {:04o}): execve would fail with permission denied; make it executable in the image",
            m.permissions().mode() & 0o7777
        ),
        Ok(m) => {
            let t = m.file_type();
            let kind = if t.is_fifo() {
                "a fifo"
            } else if t.is_socket() {
                "a socket"
            } else if t.is_char_device() {
                "a character device"
            } else if t.is_block_device() {
                "a block device"
            } else {
                "not a regular file"
            };
            format!("{arg0} is {kind}, not a program: execve would fail with permission denied")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::read_link(p) {
            Ok(target) => format!(
                "no such executable file inside the container: {arg0} is a symbolic link to {}, which does not exist (stat {arg0}: no such file or directory)",
                target.display()
            ),
            Err(_) => format!("no such executable file inside the container (stat {arg0}: no such file or directory)"),
        },
        Err(e) => format!("cannot be executed inside the container (stat {arg0}: {})", errno(&e)),
    }
}

/// Adds HOME from the container's /etc/passwd when the config does not set it.
fn with_home(mut env: Vec<String>, uid: u32) -> Vec<String> {
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return env;
    }
    let home = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
            })
        })
        .unwrap_or_else(|| "/".to_string());
    env.push(format!("HOME={home}"));
    env
}

pub(crate) fn rlimit_number(name: &str) -> u32 {
    match name {
        "RLIMIT_CPU" => 0,
        "RLIMIT_FSIZE" => 1,
        "RLIMIT_DATA" => 2,
        "RLIMIT_STACK" => 3,
        "RLIMIT_CORE" => 4,
        "RLIMIT_RSS" => 5,
        "RLIMIT_NPROC" => 6,
        "RLIMIT_NOFILE" => 7,
        "RLIMIT_MEMLOCK" => 8,
        "RLIMIT_AS" => 9,
        "RLIMIT_LOCKS" => 10,
        "RLIMIT_SIGPENDING" => 11,
        "RLIMIT_MSGQUEUE" => 12,
        "RLIMIT_NICE" => 13,
        "RLIMIT_RTPRIO" => 14,
        _ => 15, // RLIMIT_RTTIME
    }
}

fn set_scheduler(s: &oci_spec::runtime::Scheduler) -> Result<()> {
    use oci_spec::runtime::{LinuxSchedulerFlag as F, LinuxSchedulerPolicy as P};
    let policy = match s.policy() {
        P::SchedOther => 0,
        P::SchedFifo => 1,
        P::SchedRr => 2,
        P::SchedBatch => 3,
        P::SchedIso => 4,
        P::SchedIdle => 5,
        P::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    let attr = kproc::SchedAttr {
        sched_policy: policy,
        sched_flags: flags,
        sched_nice: s.nice().unwrap_or(0),
        sched_priority: s.priority().unwrap_or(0) as u32,
        sched_runtime: s.runtime().unwrap_or(0),
        sched_deadline: s.deadline().unwrap_or(0),
        sched_period: s.period().unwrap_or(0),
        ..Default::default()
    };
    kproc::sched_setattr_self(&attr).ctx(|| "process.scheduler".into())
}

fn cap_mask(set: Option<&oci_spec::runtime::Capabilities>) -> u64 {
    set.into_iter()
        .flatten()
        .filter_map(|c| caps::from_name(&format!("CAP_{c}")))
        .fold(0u64, |m, n| m | 1u64 << n)
}

/// capability(7) number of CAP_SYS_ADMIN.
const CAP_SYS_ADMIN: u32 = 21;

/// Switches to process.user and sets the five capability sets, in the order that keeps the
/// needed privileges until the last step. Returns (final sets, sets in force now): with
/// `keep_sys_admin` CAP_SYS_ADMIN stays effective for a seccomp filter still to come,
/// and [`Prepared::finish`] drops it.
pub(crate) fn set_user_and_caps(
    process: &Process,
    keep_sys_admin: bool,
) -> Result<(caps::CapSets, caps::CapSets)> {
    let c = process.capabilities().as_ref();
    let wanted = CapRequest {
        bounding: cap_mask(c.and_then(|c| c.bounding().as_ref())),
        effective: cap_mask(c.and_then(|c| c.effective().as_ref())),
        permitted: cap_mask(c.and_then(|c| c.permitted().as_ref())),
        inheritable: cap_mask(c.and_then(|c| c.inheritable().as_ref())),
        ambient: cap_mask(c.and_then(|c| c.ambient().as_ref())),
    };
    let last = caps::last_cap();
    let held = caps::get().ctx(|| "reading the capabilities".into())?;
    let mut held_bounding = 0u64;
    for cap in 0..=last {
        if caps::in_bounding(cap).unwrap_or(false) {
            held_bounding |= 1 << cap;
        }
    }
    let (granted, missing) = wanted.fit(&held, held_bounding);
    for (set, mask) in missing {
        let names: Vec<&str> = (0..=last)
            .filter(|c| mask & (1 << c) != 0)
            .map(|c| caps::NAMES.get(c as usize).copied().unwrap_or("?"))
            .collect();
        tracing::warn!("process.capabilities.{set}: {} cannot be granted here (not held by the runtime or not in this host's bounding set): left out", names.join(", "));
    }
    drop_bounding(granted.bounding, last)?;
    switch_user(process.user())?;
    set_caps(&granted, &held, keep_sys_admin, last)
}

/// The capability sets of process.capabilities, as masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CapRequest {
    bounding: u64,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: u64,
}

impl CapRequest {
    /// What of the request this process can grant, given what it holds, and per set what
    /// is left out: a warning, not an error (config.md: "If the runtime cannot grant a
    /// capability ... runtimes SHOULD NOT fail" and "MUST log a warning").
    fn fit(self, held: &caps::CapSets, held_bounding: u64) -> (CapRequest, Vec<(&'static str, u64)>) {
        let grantable = held.permitted & held_bounding;
        let mut missing = Vec::new();
        let mut check = |set: &'static str, wanted: u64, allowed: u64| {
            if wanted & !allowed != 0 {
                missing.push((set, wanted & !allowed));
            }
        };
        check("bounding", self.bounding, held_bounding);
        check("permitted", self.permitted, grantable);
        check("effective", self.effective & self.permitted, grantable);
        let permitted = self.permitted & grantable;
        let effective = self.effective & self.permitted & grantable;
        let allowed = (held.inheritable | held.permitted) & held_bounding & self.bounding;
        check("inheritable", self.inheritable, allowed);
        let inheritable = self.inheritable & allowed;
        // Ambient needs each capability in both permitted and inheritable.
        check("ambient", self.ambient, permitted & inheritable);
        let ambient = self.ambient & permitted & inheritable;
        (CapRequest { bounding: self.bounding, effective, permitted, inheritable, ambient }, missing)
    }
}

/// Drops from the bounding set every capability not in `bounding` (EINVAL: one this
/// kernel does not have).
fn drop_bounding(bounding: u64, last: u32) -> Result<()> {
    for cap in (0..=last).filter(|c| bounding & (1 << c) == 0) {
        match caps::drop_bounding(cap) {
            Ok(()) => {}
            Err(e) if e.errno == nix::errno::Errno::EINVAL => {}
            Err(e) => {
                return Err(e).ctx(|| {
                    format!(
                        "dropping {} from the bounding set",
                        caps::NAMES.get(cap as usize).unwrap_or(&"?")
                    )
                })
            }
        }
    }
    Ok(())
}

/// process.user: groups, gid, uid, keeping the permitted capabilities across the change.
fn switch_user(user: &oci_spec::runtime::User) -> Result<()> {
    kproc::prctl(libc::PR_SET_KEEPCAPS, 1, 0).ctx(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    let gids: Vec<libc::gid_t> = user.additional_gids().clone().unwrap_or_default();
    match kproc::setgroups(&gids) {
        Ok(()) => {}
        // With setgroups denied (unprivileged user namespace) only an empty list is moot.
        Err(e) if gids.is_empty() && e.errno == nix::errno::Errno::EPERM => {}
        Err(e) => return Err(e).ctx(|| format!("process.user.additionalGids {gids:?}")),
    }
    kproc::setresgid(user.gid())
        .ctx(|| format!("process.user.gid {}: is it mapped in the user namespace?", user.gid()))?;
    kproc::setresuid(user.uid())
        .ctx(|| format!("process.user.uid {}: is it mapped in the user namespace?", user.uid()))?;
    kproc::prctl(libc::PR_SET_KEEPCAPS, 0, 0).ctx(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    Ok(())
}

/// Sets the granted sets (with CAP_SYS_ADMIN staged in, for a filter installed later
/// without noNewPrivileges) and the ambient set. Returns (final sets, staged sets).
fn set_caps(
    granted: &CapRequest,
    held: &caps::CapSets,
    keep_sys_admin: bool,
    last: u32,
) -> Result<(caps::CapSets, caps::CapSets)> {
    let wanted = caps::CapSets {
        effective: granted.effective,
        permitted: granted.permitted,
        inheritable: granted.inheritable,
    };
    let mut staged = wanted;
    // KEEPCAPS kept the permitted set across setresuid: it is still `held`'s.
    if keep_sys_admin && held.permitted & (1 << CAP_SYS_ADMIN) != 0 {
        staged.permitted |= 1 << CAP_SYS_ADMIN;
        staged.effective |= 1 << CAP_SYS_ADMIN;
    }
    caps::set(&staged).ctx(|| "setting process.capabilities (effective must be within permitted)".into())?;
    caps::clear_ambient().ctx(|| "clearing the ambient capabilities".into())?;
    for cap in (0..=last).filter(|c| granted.ambient & (1 << c) != 0) {
        caps::raise_ambient(cap).ctx(|| {
            format!(
                "raising ambient {}: it must also be in permitted and inheritable",
                caps::NAMES.get(cap as usize).unwrap_or(&"?")
            )
        })?;
    }
    Ok((wanted, staged))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod find_executable_tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Exit code podman derives from a runtime error (libpod's getOCIRuntimeError):
    /// "permission denied" first, then "executable file not found in" / "no such file or
    /// directory", else a generic 126.
    fn podman_code(msg: &str) -> i32 {
        let m = msg.to_lowercase();
        if m.contains("permission denied") || m.contains("operation not permitted") {
            126
        } else if m.contains("executable file not found in") || m.contains("no such file or directory") {
            127
        } else {
            126
        }
    }

    #[test]
    fn each_case_says_what_it_is() {
        let dir = std::env::temp_dir().join(format!("karton-findexe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin/subdir")).unwrap();
        std::fs::write(dir.join("bin/data"), "x").unwrap();
        std::fs::set_permissions(dir.join("bin/data"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(dir.join("bin/prog"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(dir.join("bin/prog"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("gone", dir.join("bin/dangling")).unwrap();
        let at = |n: &str| dir.join("bin").join(n).display().to_string();
        let err = |n: &str| find_executable(&at(n), &[], Path::new("/")).unwrap_err().to_string();
        let path_env = vec![format!("PATH={}", dir.join("bin").display())];

        let missing = err("missing");
        assert!(
            missing.contains("no such executable file") && missing.contains("no such file or directory"),
            "{missing}"
        );
        assert_eq!(podman_code(&missing), 127, "{missing}");

        let dangling = err("dangling");
        assert!(dangling.contains("symbolic link to gone, which does not exist"), "{dangling}");
        assert!(!dangling.contains("permission denied"), "{dangling}");
        assert_eq!(podman_code(&dangling), 127, "{dangling}");

        let d = err("subdir");
        assert!(d.contains("is a directory") && !d.contains("no such"), "{d}");
        assert_eq!(podman_code(&d), 126, "{d}");

        let f = err("data");
        assert!(f.contains("without execute permission (mode 0644)") && !f.contains("no such"), "{f}");
        assert_eq!(podman_code(&f), 126, "{f}");

        assert_eq!(find_executable(&at("prog"), &[], Path::new("/")).unwrap(), dir.join("bin/prog"));
        assert_eq!(find_executable("prog", &path_env, Path::new("/")).unwrap(), dir.join("bin/prog"));
        let p = find_executable("data", &path_env, Path::new("/")).unwrap_err().to_string();
        assert!(
            p.contains("executable file not found in $PATH") && p.contains("skipped, not executable files"),
            "{p}"
        );
        assert_eq!(podman_code(&p), 127, "{p}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod cap_tests {
    use super::*;

    #[test]
    fn capabilities_fit_what_the_runtime_holds_and_say_what_is_left_out() {
        let bit = |c: u32| 1u64 << c;
        let (chown, kill, net_admin) = (bit(0), bit(5), bit(12));
        let held = caps::CapSets { effective: chown | kill, permitted: chown | kill, inheritable: 0 };
        let wanted = CapRequest {
            bounding: chown | kill | net_admin,
            effective: chown | net_admin,
            permitted: chown | net_admin,
            inheritable: chown,
            ambient: chown | kill,
        };
        let (granted, missing) = wanted.fit(&held, chown | kill);
        assert_eq!(
            granted,
            CapRequest {
                bounding: chown | kill | net_admin,
                effective: chown,
                permitted: chown,
                inheritable: chown,
                ambient: chown
            }
        );
        assert_eq!(
            missing,
            vec![
                ("bounding", net_admin),
                ("permitted", net_admin),
                ("effective", net_admin),
                ("ambient", kill)
            ]
        );
        let everything =
            CapRequest { bounding: chown, effective: chown, permitted: chown, inheritable: 0, ambient: 0 };
        assert_eq!(everything.fit(&held, chown | kill), (everything, vec![]));
    }
}
