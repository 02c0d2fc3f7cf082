//! linux.seccomp: compile the profile and install it as the last step before execve.
//!
//! libseccomp (through the `libseccomp` crate) turns the profile into classic BPF: it owns
//! the syscall tables of every architecture, the multi-arch dispatch and the 64-bit argument
//! comparisons, the parts a hand-written compiler gets wrong. karton loads the exported
//! program itself with seccomp(2) (karton_sys::seccomp) rather than `seccomp_load`, as runc
//! does, so that every filter flag works even where the installed libseccomp is older than
//! the flag (WAIT_KILLABLE_RECV needs libseccomp 2.6; Debian 12 has 2.5.4), and the
//! listener fd comes straight from the kernel.
//!
//! Overlapping rules resolve as in runc and crun, which use libseccomp too: for one
//! syscall, a rule without conditions overrides rules with conditions, and of two rules
//! without conditions the first wins (reported with `tracing::debug!`).

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use karton_sys::seccomp as sys;
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};

use crate::error::{Error, Result};

/// The highest errno the kernel passes through (MAX_ERRNO); larger values are clamped.
const MAX_ERRNO: u32 = 4095;
/// The kernel's limit on the instructions of one classic BPF program (BPF_MAXINSNS).
pub const BPF_MAXINSNS: usize = 4096;
/// capability(7) number of CAP_SYS_ADMIN.
const CAP_SYS_ADMIN: u32 = 21;
/// Syscall arguments are numbered 0 to 5.
const MAX_ARG_INDEX: usize = 5;
/// The runtime calls these after the filter is installed and before the agent has the
/// listener fd: a notify rule on them would block the container forever.
const NEEDED_AFTER_INSTALL: &[&str] = &["sendmsg", "socketcall"];

/// A profile compiled for this machine: the BPF program and the seccomp(2) flags.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub program: Vec<sys::SockFilter>,
    /// Flags for seccomp(SECCOMP_SET_MODE_FILTER), NEW_LISTENER included when needed.
    pub flags: u32,
    /// Some rule uses SCMP_ACT_NOTIFY: the listener fd goes to `listenerPath`.
    pub notify: bool,
    /// Syscall names this libseccomp/architecture does not know; left out of the filter.
    pub skipped: Vec<String>,
}

/// Checks at create time that the profile can be installed: the rules compile, and the
/// kernel knows every action and flag the profile uses.
///
/// Unknown action, architecture, operator and flag names are refused earlier, when
/// config.json is parsed (oci-spec's enums), with the JSON path of the field.
pub fn check(seccomp: &LinuxSeccomp) -> Result<()> {
    let compiled = compile(seccomp)?;
    check_kernel(seccomp, &compiled)
}

/// Installs the filter on the calling thread; for SCMP_ACT_NOTIFY rules, connects to
/// `linux.seccomp.listenerPath` first and sends it the listener fd with the container
/// process state (see [`process_state`]).
///
/// The path is resolved in the caller's mount namespace: an init that has already pivoted
/// into the rootfs should call [`prepare`] before pivot_root and [`Prepared::install`] at
/// the end.
pub fn install(seccomp: &LinuxSeccomp, pid: i32, state_json: &dyn Fn() -> String) -> Result<()> {
    prepare(seccomp)?.install(pid, state_json)
}

/// A profile ready to install: compiled, and connected to the seccomp agent if it has
/// SCMP_ACT_NOTIFY rules.
#[derive(Debug)]
pub struct Prepared {
    compiled: Compiled,
    agent: Option<UnixStream>,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
}

/// The first half of [`install`]: compiles the profile and connects to `listenerPath` while
/// the host's paths are still reachable (before pivot_root). The agent sees the connection
/// now and the listener fd and state when [`Prepared::install`] runs.
pub fn prepare(seccomp: &LinuxSeccomp) -> Result<Prepared> {
    let compiled = compile(seccomp)?;
    let agent = if compiled.notify {
        let path = listener_path(seccomp)?;
        let sock = UnixStream::connect(path).map_err(|e| Error::Io {
            context: format!(
                "linux.seccomp.listenerPath {}: cannot connect to the seccomp agent (is it listening, and is the \
                 path visible from this mount namespace?)",
                path.display()
            ),
            err: e,
        })?;
        Some(sock)
    } else {
        None
    };
    Ok(Prepared {
        compiled,
        agent,
        listener_path: seccomp.listener_path().clone(),
        listener_metadata: seccomp.listener_metadata().clone(),
    })
}

impl Prepared {
    /// What was compiled.
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    /// The second half of [`install`]: installs the filter on the calling thread and hands
    /// the listener fd to the agent. `pid` is the container process as the host sees it.
    pub fn install(self, pid: i32, state_json: &dyn Fn() -> String) -> Result<()> {
        // Everything that allocates or talks to anyone happens before the filter is in
        // place: afterwards only seccomp(2), sendmsg(2) and close(2) run until execve.
        let message = match &self.agent {
            Some(_) => Some(process_state(self.listener_metadata.as_deref(), pid, &state_json())?),
            None => None,
        };
        ensure_privilege()?;
        let fd = sys::set_mode_filter(&self.compiled.program, self.compiled.flags).map_err(|source| {
            if source.errno == karton_sys::Errno::EACCES {
                Error::Config(NEED_PRIVILEGE.into())
            } else {
                Error::Sys { context: "linux.seccomp: installing the filter".into(), err: source }
            }
        })?;
        if let (Some(sock), Some(message), Some(fd)) = (&self.agent, message, fd) {
            let path = self.listener_path.as_deref().unwrap_or(Path::new(""));
            sys::send_fd(sock.as_fd(), fd.as_fd(), message.as_bytes()).map_err(|source| Error::Sys {
                context: format!("linux.seccomp.listenerPath {}: sending the listener fd", path.display()),
                err: source,
            })?;
            // `fd` and the socket close on return: the agent holds its own copy now.
        }
        Ok(())
    }
}

const NEED_PRIVILEGE: &str = "linux.seccomp: installing a filter needs process.noNewPrivileges: true or \
     CAP_SYS_ADMIN in process.capabilities.effective, and the container process has neither";

/// The kernel accepts a filter only from a thread with no_new_privs or CAP_SYS_ADMIN.
fn ensure_privilege() -> Result<()> {
    let nnp = karton_sys::process::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0).map_err(|source| Error::Sys {
        context: "linux.seccomp: reading no_new_privs".into(),
        err: source,
    })?;
    if nnp == 1 {
        return Ok(());
    }
    let caps = karton_sys::caps::get().map_err(|source| Error::Sys {
        context: "linux.seccomp: reading capabilities".into(),
        err: source,
    })?;
    if caps.effective & (1u64 << CAP_SYS_ADMIN) != 0 {
        return Ok(());
    }
    Err(Error::Config(NEED_PRIVILEGE.into()))
}

/// The runtime-spec "container process state" that goes with the listener fd:
/// `{"ociVersion", "fds": ["seccompFd"], "pid", "metadata", "state"}`.
pub fn process_state(metadata: Option<&str>, pid: i32, state_json: &str) -> Result<String> {
    let state: serde_json::Value = serde_json::from_str(state_json).map_err(|e| {
        Error::Config(format!("linux.seccomp: the container state for the seccomp agent is not JSON: {e}"))
    })?;
    let version = state
        .get("ociVersion")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| oci_spec::runtime::VERSION.to_string());
    let mut msg = serde_json::json!({
        "ociVersion": version,
        "fds": ["seccompFd"],
        "pid": pid,
        "state": state,
    });
    if let (Some(meta), Some(obj)) = (metadata, msg.as_object_mut()) {
        obj.insert("metadata".into(), serde_json::Value::String(meta.to_string()));
    }
    serde_json::to_string(&msg)
        .map_err(|e| Error::Config(format!("linux.seccomp: encoding the container process state: {e}")))
}

fn uses_notify(seccomp: &LinuxSeccomp) -> bool {
    seccomp.default_action() == LinuxSeccompAction::ScmpActNotify
        || seccomp.syscalls().iter().flatten().any(|s| s.action() == LinuxSeccompAction::ScmpActNotify)
}

fn listener_path(seccomp: &LinuxSeccomp) -> Result<&Path> {
    match seccomp.listener_path().as_deref() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p),
        _ => Err(Error::Config(
            "linux.seccomp.listenerPath: required when a rule uses SCMP_ACT_NOTIFY: set it to the unix socket of \
             the seccomp agent"
                .into(),
        )),
    }
}

/// Compiles the profile with libseccomp for this machine, without touching the kernel's
/// filter state. Syscall names nobody here knows are skipped (as runc does) and reported
/// through `tracing::debug!`.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Compiled> {
    validate(seccomp)?;
    let default =
        scmp_action(seccomp.default_action(), seccomp.default_errno_ret(), "linux.seccomp.defaultAction")?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| {
        Error::Config(format!(
            "linux.seccomp.defaultAction \"{}\": libseccomp refused it: {e}",
            seccomp.default_action()
        ))
    })?;
    add_arches(&mut ctx, seccomp)?;
    let skipped = add_rules(&mut ctx, seccomp, default)?;
    let program = export(&ctx)?;
    let notify = uses_notify(seccomp);
    let flags = filter_flags(seccomp, notify);
    Ok(Compiled { program, flags, notify, skipped })
}

fn add_arches(ctx: &mut ScmpFilterContext, seccomp: &LinuxSeccomp) -> Result<()> {
    for (i, arch) in seccomp.architectures().iter().flatten().enumerate() {
        let a = scmp_arch(*arch);
        let present = ctx.is_arch_present(a).unwrap_or(false);
        if !present {
            ctx.add_arch(a).map_err(|e| {
                Error::Unsupported(format!(
                    "linux.seccomp.architectures[{i}] \"{arch}\": the installed libseccomp cannot filter this \
                     architecture ({e}): remove it from the list"
                ))
            })?;
        }
    }
    Ok(())
}

/// Adds every rule; returns the syscall names libseccomp does not know here (skipped).
fn add_rules(
    ctx: &mut ScmpFilterContext,
    seccomp: &LinuxSeccomp,
    default: ScmpAction,
) -> Result<Vec<String>> {
    let mut skipped = Vec::new();
    // Which rule first decided a syscall unconditionally: libseccomp silently keeps that
    // one, so say so when a later rule is overridden.
    let mut decided: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        let path = format!("linux.seccomp.syscalls[{i}]");
        let action = scmp_action(rule.action(), rule.errno_ret(), &format!("{path}.action"))?;
        if action == default {
            // libseccomp refuses a rule that repeats the default action; it changes nothing.
            tracing::debug!("seccomp: {path}: action equals the default action, rule skipped");
            continue;
        }
        let groups = conditions(rule, &path)?;
        for (j, name) in rule.names().iter().enumerate() {
            let syscall = match ScmpSyscall::from_name(name) {
                Ok(s) => s,
                Err(_) => {
                    tracing::debug!("seccomp: {path}.names[{j}] {name:?}: unknown to libseccomp on this architecture, skipped");
                    skipped.push(name.clone());
                    continue;
                }
            };
            note_decided(
                &mut decided,
                name,
                groups.iter().all(|g| g.is_empty()),
                i,
                &format!("{path}.names[{j}]"),
            );
            for group in &groups {
                ctx.add_rule_conditional(action, syscall, group).map_err(|e| {
                    Error::Config(format!("{path}.names[{j}] {name:?}: libseccomp refused the rule: {e}"))
                })?;
            }
        }
    }
    Ok(skipped)
}

/// Records rule `i` as deciding `name` if it does so unconditionally and is the first to;
/// says so when an earlier rule already did (this one then has no effect).
fn note_decided<'a>(
    decided: &mut std::collections::HashMap<&'a str, usize>,
    name: &'a str,
    unconditional: bool,
    i: usize,
    at: &str,
) {
    match decided.get(name) {
        Some(first) => tracing::debug!(
            "seccomp: {at} {name:?}: syscalls[{first}] already decides this syscall without \
             conditions, so this rule has no effect"
        ),
        None if unconditional => {
            decided.insert(name, i);
        }
        None => {}
    }
}

/// The seccomp(2) flags for the profile's `flags`, plus what a notify rule needs (pure).
fn filter_flags(seccomp: &LinuxSeccomp, notify: bool) -> u32 {
    let mut flags = 0;
    for flag in seccomp.flags().iter().flatten() {
        flags |= match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => sys::FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => sys::FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => sys::FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => sys::FLAG_WAIT_KILLABLE_RECV,
        };
    }
    if notify {
        flags |= sys::FLAG_NEW_LISTENER;
        if flags & sys::FLAG_TSYNC != 0 {
            // The kernel refuses TSYNC with NEW_LISTENER unless a sync failure is reported as
            // ESRCH (the return value is the listener fd, not a thread id).
            flags |= sys::FLAG_TSYNC_ESRCH;
        }
    }
    flags
}

/// Writes the BPF program through a memfd: libseccomp 2.5 exports only to a file descriptor.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<sys::SockFilter>> {
    let memfd =
        nix::sys::memfd::memfd_create(c"karton-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).map_err(
            |e| Error::Io { context: "linux.seccomp: memfd for the BPF program".into(), err: e.into() },
        )?;
    ctx.export_bpf(&memfd).map_err(|e| {
        Error::Config(format!("linux.seccomp: libseccomp could not generate the filter: {e}"))
    })?;
    let mut file = std::fs::File::from(memfd);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| Error::Io { context: "linux.seccomp: reading the BPF program".into(), err: e })?;
    let program = sys::parse_program(&bytes).ok_or_else(|| {
        Error::Config(format!(
            "linux.seccomp: libseccomp produced {} bytes, not whole BPF instructions",
            bytes.len()
        ))
    })?;
    // The kernel refuses a longer program with EINVAL (seccomp_prepare_filter); the u16
    // length field would allow 65535, which is why this used to pass `create`.
    if program.len() > BPF_MAXINSNS {
        return Err(Error::Config(format!(
            "linux.seccomp: the profile compiles to {} BPF instructions, more than the kernel's limit of {BPF_MAXINSNS} \
             per filter (BPF_MAXINSNS), so it could not be installed: shorten it (merge syscalls that share an action \
             and arguments into one rule's names, drop argument conditions, or choose a defaultAction that covers most \
             syscalls)",
            program.len()
        )));
    }
    Ok(program)
}

/// Refusals that need no kernel: each names its JSON path and says what to do.
fn validate(seccomp: &LinuxSeccomp) -> Result<()> {
    let default = seccomp.default_action();
    if default == LinuxSeccompAction::ScmpActNotify {
        return Err(Error::Config(
            "linux.seccomp.defaultAction \"SCMP_ACT_NOTIFY\": not allowed as the default action (the runtime's own \
             last calls would wait for an agent that has no listener fd yet): notify for named syscalls instead"
                .into(),
        ));
    }
    errno_ret_fits(default, seccomp.default_errno_ret(), "linux.seccomp.defaultErrnoRet")?;
    let notify = uses_notify(seccomp);
    if notify {
        listener_path(seccomp)?;
    }
    for (k, flag) in seccomp.flags().iter().flatten().enumerate() {
        if *flag == LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv && !notify {
            return Err(Error::Config(format!(
                "linux.seccomp.flags[{k}] \"{flag}\": applies only to filters with SCMP_ACT_NOTIFY rules (the kernel \
                 refuses it otherwise): remove it"
            )));
        }
    }
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        let path = format!("linux.seccomp.syscalls[{i}]");
        errno_ret_fits(rule.action(), rule.errno_ret(), &format!("{path}.errnoRet"))?;
        if rule.names().is_empty() {
            // config-linux.md: "names MUST contain at least one entry".
            return Err(Error::Config(format!(
                "{path}.names is empty: list at least one syscall, or remove the rule"
            )));
        }
        if rule.action() == LinuxSeccompAction::ScmpActNotify {
            for (j, name) in rule.names().iter().enumerate() {
                if NEEDED_AFTER_INSTALL.contains(&name.as_str()) {
                    return Err(Error::Config(format!(
                        "{path}.names[{j}] {name:?}: SCMP_ACT_NOTIFY cannot apply to {name}: the runtime sends the \
                         listener fd to the agent with it after the filter is installed"
                    )));
                }
            }
        }
        for (k, arg) in rule.args().iter().flatten().enumerate() {
            if arg.index() > MAX_ARG_INDEX {
                return Err(Error::Config(format!(
                    "{path}.args[{k}].index {}: syscalls have arguments 0 to {MAX_ARG_INDEX}",
                    arg.index()
                )));
            }
        }
    }
    Ok(())
}

fn errno_ret_fits(action: LinuxSeccompAction, ret: Option<u32>, path: &str) -> Result<()> {
    let Some(v) = ret else { return Ok(()) };
    match action {
        LinuxSeccompAction::ScmpActErrno if v > MAX_ERRNO => {
            Err(Error::Config(format!("{path} {v}: errno values go up to {MAX_ERRNO}")))
        }
        LinuxSeccompAction::ScmpActTrace if v > u32::from(u16::MAX) => {
            Err(Error::Config(format!("{path} {v}: SCMP_ACT_TRACE passes a 16-bit value to the tracer")))
        }
        LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace => Ok(()),
        other => Err(Error::Config(format!(
            "{path} {v}: only SCMP_ACT_ERRNO and SCMP_ACT_TRACE take a return value, not \"{other}\": remove it"
        ))),
    }
}

/// The libseccomp action; errno and trace default to EPERM as in runc.
fn scmp_action(action: LinuxSeccompAction, ret: Option<u32>, path: &str) -> Result<ScmpAction> {
    let value = || {
        i32::try_from(ret.unwrap_or(libc::EPERM as u32))
            .map_err(|_| Error::Config(format!("{path}: return value {ret:?} out of range")))
    };
    Ok(match action {
        // SCMP_ACT_KILL is the historical name of kill-thread.
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => ScmpAction::KillThread,
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(value()?),
        LinuxSeccompAction::ScmpActTrace => {
            let v = u16::try_from(value()?)
                .map_err(|_| Error::Config(format!("{path}: trace value out of range")))?;
            ScmpAction::Trace(v)
        }
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
    })
}

/// The filter return value the kernel must know for `action` (SECCOMP_GET_ACTION_AVAIL).
fn kernel_action(action: LinuxSeccompAction) -> u32 {
    match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => sys::RET_KILL_THREAD,
        LinuxSeccompAction::ScmpActKillProcess => sys::RET_KILL_PROCESS,
        LinuxSeccompAction::ScmpActTrap => sys::RET_TRAP,
        LinuxSeccompAction::ScmpActErrno => sys::RET_ERRNO,
        LinuxSeccompAction::ScmpActNotify => sys::RET_USER_NOTIF,
        LinuxSeccompAction::ScmpActTrace => sys::RET_TRACE,
        LinuxSeccompAction::ScmpActLog => sys::RET_LOG,
        LinuxSeccompAction::ScmpActAllow => sys::RET_ALLOW,
    }
}

fn scmp_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn compare(arg: &LinuxSeccompArg) -> ScmpArgCompare {
    let index = arg.index() as u32;
    match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpArgCompare::new(index, ScmpCompareOp::NotEqual, arg.value()),
        LinuxSeccompOperator::ScmpCmpLt => ScmpArgCompare::new(index, ScmpCompareOp::Less, arg.value()),
        LinuxSeccompOperator::ScmpCmpLe => {
            ScmpArgCompare::new(index, ScmpCompareOp::LessOrEqual, arg.value())
        }
        LinuxSeccompOperator::ScmpCmpEq => ScmpArgCompare::new(index, ScmpCompareOp::Equal, arg.value()),
        LinuxSeccompOperator::ScmpCmpGe => {
            ScmpArgCompare::new(index, ScmpCompareOp::GreaterEqual, arg.value())
        }
        LinuxSeccompOperator::ScmpCmpGt => ScmpArgCompare::new(index, ScmpCompareOp::Greater, arg.value()),
        // OCI (like libseccomp): `value` is the mask, `valueTwo` the value the masked
        // argument must equal.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            ScmpArgCompare::new(index, ScmpCompareOp::MaskedEqual(arg.value()), arg.value_two().unwrap_or(0))
        }
    }
}

/// The rule's conditions as libseccomp rules. Conditions on distinct arguments are AND'ed in
/// one rule; libseccomp allows one condition per argument per rule, so a rule that tests an
/// argument twice becomes one rule per condition (OR), as runc and crun do.
fn conditions(rule: &LinuxSyscall, path: &str) -> Result<Vec<Vec<ScmpArgCompare>>> {
    let args = rule.args().as_deref().unwrap_or(&[]);
    if args.is_empty() {
        return Ok(vec![Vec::new()]);
    }
    let mut seen = [false; MAX_ARG_INDEX + 1];
    let mut repeated = false;
    for arg in args {
        let slot = seen.get_mut(arg.index()).ok_or_else(|| {
            Error::Config(format!("{path}.args: argument index {} out of range", arg.index()))
        })?;
        repeated |= *slot;
        *slot = true;
    }
    let all: Vec<ScmpArgCompare> = args.iter().map(compare).collect();
    if repeated {
        tracing::debug!("seccomp: {path}: an argument is tested more than once: one rule per condition (OR)");
        Ok(all.into_iter().map(|c| vec![c]).collect())
    } else {
        Ok(vec![all])
    }
}

/// Kernel support for the actions and flags the profile uses.
fn check_kernel(seccomp: &LinuxSeccomp, compiled: &Compiled) -> Result<()> {
    let mut used = vec![("linux.seccomp.defaultAction".to_string(), seccomp.default_action())];
    for (i, rule) in seccomp.syscalls().iter().flatten().enumerate() {
        used.push((format!("linux.seccomp.syscalls[{i}].action"), rule.action()));
    }
    let mut probed: Vec<LinuxSeccompAction> = Vec::new();
    for (path, action) in used {
        if probed.contains(&action) {
            continue;
        }
        probed.push(action);
        let known = sys::action_available(kernel_action(action)).map_err(|source| Error::Sys {
            context: format!("{path}: asking the kernel about \"{action}\""),
            err: source,
        })?;
        if !known {
            return Err(Error::Unsupported(format!(
                "{path} \"{action}\": this kernel does not support the action"
            )));
        }
    }
    let ok = sys::flags_supported(compiled.flags).map_err(|source| Error::Sys {
        context: "linux.seccomp.flags: asking the kernel".into(),
        err: source,
    })?;
    if !ok {
        for (k, flag) in seccomp.flags().iter().flatten().enumerate() {
            let bits = match flag {
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => sys::FLAG_LOG,
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => sys::FLAG_TSYNC,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => sys::FLAG_SPEC_ALLOW,
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    sys::FLAG_WAIT_KILLABLE_RECV | sys::FLAG_NEW_LISTENER
                }
            };
            if !sys::flags_supported(bits).unwrap_or(false) {
                return Err(Error::Unsupported(format!(
                    "linux.seccomp.flags[{k}] \"{flag}\": this kernel does not support the flag: remove it"
                )));
            }
        }
        return Err(Error::Unsupported(format!(
            "linux.seccomp: this kernel refuses the filter flags {:#x}{}",
            compiled.flags,
            if compiled.notify {
                " (with SCMP_ACT_NOTIFY: user notification needs Linux 5.0, with TSYNC 5.7)"
            } else {
                ""
            }
        )));
    }
    Ok(())
}

/// The `linux.seccomp` object of `karton features` (runtime-spec features.md): what this
/// build and this kernel can do. Long only because of its constant tables (actions,
/// operators, architectures, flags), one entry per line.
pub fn features() -> serde_json::Value {
    const ACTIONS: [LinuxSeccompAction; 9] = [
        LinuxSeccompAction::ScmpActAllow,
        LinuxSeccompAction::ScmpActErrno,
        LinuxSeccompAction::ScmpActKill,
        LinuxSeccompAction::ScmpActKillProcess,
        LinuxSeccompAction::ScmpActKillThread,
        LinuxSeccompAction::ScmpActLog,
        LinuxSeccompAction::ScmpActNotify,
        LinuxSeccompAction::ScmpActTrace,
        LinuxSeccompAction::ScmpActTrap,
    ];
    const ARCHS: [Arch; 23] = [
        Arch::ScmpArchX86,
        Arch::ScmpArchX86_64,
        Arch::ScmpArchX32,
        Arch::ScmpArchArm,
        Arch::ScmpArchAarch64,
        Arch::ScmpArchMips,
        Arch::ScmpArchMips64,
        Arch::ScmpArchMips64n32,
        Arch::ScmpArchMipsel,
        Arch::ScmpArchMipsel64,
        Arch::ScmpArchMipsel64n32,
        Arch::ScmpArchPpc,
        Arch::ScmpArchPpc64,
        Arch::ScmpArchPpc64le,
        Arch::ScmpArchS390,
        Arch::ScmpArchS390x,
        Arch::ScmpArchParisc,
        Arch::ScmpArchParisc64,
        Arch::ScmpArchRiscv64,
        Arch::ScmpArchLoongarch64,
        Arch::ScmpArchM68k,
        Arch::ScmpArchSh,
        Arch::ScmpArchSheb,
    ];
    const FLAGS: [(LinuxSeccompFilterFlag, u32); 4] = [
        (LinuxSeccompFilterFlag::SeccompFilterFlagTsync, sys::FLAG_TSYNC),
        (LinuxSeccompFilterFlag::SeccompFilterFlagLog, sys::FLAG_LOG),
        (LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow, sys::FLAG_SPEC_ALLOW),
        (
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
            sys::FLAG_WAIT_KILLABLE_RECV | sys::FLAG_NEW_LISTENER,
        ),
    ];
    let actions: Vec<String> = ACTIONS
        .iter()
        .filter(|a| sys::action_available(kernel_action(**a)).unwrap_or(false))
        .map(|a| a.to_string())
        .collect();
    let operators = [
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ];
    // An architecture counts if libseccomp can put it in a filter.
    let archs: Vec<String> = match ScmpFilterContext::new(ScmpAction::Allow) {
        Ok(mut ctx) => ARCHS
            .iter()
            .filter(|a| {
                let s = scmp_arch(**a);
                ctx.is_arch_present(s).unwrap_or(false) || ctx.add_arch(s).is_ok()
            })
            .map(|a| a.to_string())
            .collect(),
        Err(_) => Vec::new(),
    };
    let known: Vec<String> = FLAGS.iter().map(|(f, _)| f.to_string()).collect();
    let supported: Vec<String> = FLAGS
        .iter()
        .filter(|(_, bits)| sys::flags_supported(*bits).unwrap_or(false))
        .map(|(f, _)| f.to_string())
        .collect();
    serde_json::json!({
        "enabled": !actions.is_empty() && !archs.is_empty(),
        "actions": actions,
        "operators": operators,
        "archs": archs,
        "knownFlags": known,
        "supportedFlags": supported,
    })
}

/// The default profile of today's engines, for `karton spec`: moby's
/// profiles/seccomp/default.json (also containers/common's, which derives from it),
/// rendered for this build's architecture and the engines' default capability set (no
/// CAP_SYS_ADMIN, CAP_SYS_PTRACE, ...; CAP_SYS_CHROOT granted): default action
/// SCMP_ACT_ERRNO with EPERM, an allow-list, and the conditional rules for socket,
/// personality, clone and clone3.
pub fn default_profile() -> LinuxSeccomp {
    let mut syscalls = Vec::new();
    let mut allow: Vec<&str> = DEFAULT_ALLOW.to_vec();
    // Allowed from Linux 4.8, whose ptrace can no longer bypass seccomp.
    allow.extend(["process_vm_readv", "process_vm_writev", "ptrace"]);
    // CAP_SYS_CHROOT is among the engines' default capabilities.
    allow.push("chroot");
    allow.extend(arch_specific_allow());
    syscalls.push(rule(&allow, LinuxSeccompAction::ScmpActAllow, None, vec![]));
    // Every address family but AF_VSOCK (40).
    syscalls.push(rule(
        &["socket"],
        LinuxSeccompAction::ScmpActAllow,
        None,
        vec![arg(0, 40, None, LinuxSeccompOperator::ScmpCmpNe)],
    ));
    // personality: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query.
    for persona in [0u64, 8, 0x20000, 0x20008, 0xffff_ffff] {
        syscalls.push(rule(
            &["personality"],
            LinuxSeccompAction::ScmpActAllow,
            None,
            vec![arg(0, persona, None, LinuxSeccompOperator::ScmpCmpEq)],
        ));
    }
    // clone without any CLONE_NEW* flag (mask 0x7E020000); s390 has flags in argument 1.
    let clone_flags_arg = if cfg!(target_arch = "s390x") { 1 } else { 0 };
    syscalls.push(rule(
        &["clone"],
        LinuxSeccompAction::ScmpActAllow,
        None,
        vec![arg(clone_flags_arg, 0x7E02_0000, Some(0), LinuxSeccompOperator::ScmpCmpMaskedEq)],
    ));
    // clone3's flags sit in memory BPF cannot read: ENOSYS makes libc fall back to clone.
    syscalls.push(rule(&["clone3"], LinuxSeccompAction::ScmpActErrno, Some(libc::ENOSYS as u32), vec![]));

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(libc::EPERM as u32))
        .set_architectures(Some(default_architectures()))
        .set_syscalls(Some(syscalls));
    profile
}

fn rule(
    names: &[&str],
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Vec<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut r = LinuxSyscall::default();
    r.set_names(names.iter().map(|s| s.to_string()).collect())
        .set_action(action)
        .set_errno_ret(errno_ret)
        .set_args(if args.is_empty() { None } else { Some(args) });
    r
}

fn arg(index: usize, value: u64, value_two: Option<u64>, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default().index(index).value(value).op(op);
    let b = match value_two {
        Some(v) => b.value_two(v),
        None => b,
    };
    // Every field has a default, so the builder cannot fail.
    b.build().expect("LinuxSeccompArg builder with all fields set")
}

/// moby's archMap: the native architecture and the ones its kernel can also run.
fn default_architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else if cfg!(target_arch = "s390x") {
        vec![Arch::ScmpArchS390x, Arch::ScmpArchS390]
    } else if cfg!(target_arch = "riscv64") {
        vec![Arch::ScmpArchRiscv64]
    } else if cfg!(target_arch = "powerpc64") {
        vec![Arch::ScmpArchPpc64le]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

/// moby's per-architecture additions.
fn arch_specific_allow() -> Vec<&'static str> {
    if cfg!(target_arch = "x86_64") || cfg!(target_arch = "x86") {
        vec!["arch_prctl", "modify_ldt"]
    } else if cfg!(target_arch = "aarch64") || cfg!(target_arch = "arm") {
        vec![
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ]
    } else if cfg!(target_arch = "s390x") {
        vec!["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"]
    } else if cfg!(target_arch = "riscv64") {
        vec!["riscv_flush_icache"]
    } else if cfg!(target_arch = "powerpc64") {
        vec!["sync_file_range2", "swapcontext"]
    } else {
        vec![]
    }
}

/// moby's unconditional allow-list (profiles/seccomp/default.json, first rule). Names of
/// other architectures (the *32 and *64 variants, socketcall, ...) are kept: libseccomp
/// places them on the sub-architectures (x86, x32) the profile also lists.
const DEFAULT_ALLOW: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> std::result::Result<LinuxSeccomp, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(&mut de).map_err(|e| format!("{}: {}", e.path(), e.inner()))
    }

    fn profile(json: &str) -> LinuxSeccomp {
        match parse(json) {
            Ok(p) => p,
            Err(e) => panic!("test profile does not parse: {e}"),
        }
    }

    fn config_error(r: Result<Compiled>) -> String {
        match r {
            Err(Error::Config(m)) => m,
            Err(other) => panic!("expected a config error, got {other}"),
            Ok(_) => panic!("expected a config error, got a filter"),
        }
    }

    #[test]
    fn unknown_names_are_refused_at_parse_time_with_their_path() {
        let e = parse(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_ALLOW"},{"names":["uname"],"action":"SCMP_ACT_FOO"}]}"#)
            .err()
            .unwrap_or_default();
        assert!(e.contains("syscalls[1].action") && e.contains("SCMP_ACT_FOO"), "{e}");
        let e = parse(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_VAX"]}"#)
            .err()
            .unwrap_or_default();
        assert!(e.contains("architectures[0]") && e.contains("SCMP_ARCH_VAX"), "{e}");
        let e = parse(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_XX"}]}]}"#)
            .err()
            .unwrap_or_default();
        assert!(e.contains("syscalls[0].args[0].op") && e.contains("SCMP_CMP_XX"), "{e}");
    }

    #[test]
    fn compiles_every_action_operator_and_flag() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
            "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
            "flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW","SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "listenerPath":"/run/agent.sock",
            "syscalls":[
              {"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
              {"names":["uname"],"action":"SCMP_ACT_KILL"},
              {"names":["getppid"],"action":"SCMP_ACT_KILL_THREAD"},
              {"names":["getpgrp"],"action":"SCMP_ACT_KILL_PROCESS"},
              {"names":["getsid"],"action":"SCMP_ACT_TRAP"},
              {"names":["getpgid"],"action":"SCMP_ACT_TRACE","errnoRet":7},
              {"names":["getcwd"],"action":"SCMP_ACT_LOG"},
              {"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"},
              {"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":95,"args":[
                {"index":0,"value":1,"op":"SCMP_CMP_NE"},{"index":1,"value":2,"op":"SCMP_CMP_LT"},
                {"index":2,"value":3,"op":"SCMP_CMP_LE"},{"index":3,"value":4,"op":"SCMP_CMP_EQ"},
                {"index":4,"value":5,"op":"SCMP_CMP_GE"},{"index":5,"value":255,"valueTwo":6,"op":"SCMP_CMP_MASKED_EQ"}]},
              {"names":["dup3"],"action":"SCMP_ACT_ERRNO","args":[
                {"index":2,"value":1,"op":"SCMP_CMP_GT"},{"index":2,"value":100,"op":"SCMP_CMP_LT"}]}
            ]}"#,
        );
        let c = match compile(&p) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert!(c.notify);
        assert!(c.program.len() > 20);
        let want = sys::FLAG_LOG
            | sys::FLAG_SPEC_ALLOW
            | sys::FLAG_TSYNC
            | sys::FLAG_WAIT_KILLABLE_RECV
            | sys::FLAG_NEW_LISTENER
            | sys::FLAG_TSYNC_ESRCH;
        assert_eq!(c.flags, want);
        assert!(c.skipped.is_empty());
        if let Err(e) = check_kernel(&p, &c) {
            panic!("kernel 6.x should take every action and flag: {e}");
        }
    }

    /// A profile of `n` conditional rules over six syscalls, two argument checks each
    /// (about 8 instructions per rule: 700 rules make ~5,600, under the old u16 limit).
    fn many_conditional_rules(n: usize) -> LinuxSeccomp {
        let rules: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"names":["{}"],"action":"SCMP_ACT_ERRNO","args":[{{"index":0,"value":{},"op":"SCMP_CMP_EQ"}},{{"index":1,"value":{},"op":"SCMP_CMP_MASKED_EQ","valueTwo":1}}]}}"#,
                    ["write", "read", "openat", "close", "fcntl", "ioctl"][i % 6],
                    i + 1000,
                    0xffff_0000u64 + i as u64
                )
            })
            .collect();
        profile(&format!(r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{}]}}"#, rules.join(",")))
    }

    #[test]
    fn programs_over_bpf_maxinsns_are_refused_with_count_limit_and_fix() {
        // The kernel's limit is 4096 instructions per filter; the check used the u16
        // length field (65535), so such profiles passed `create` and failed at start.
        let e = config_error(compile(&many_conditional_rules(700)));
        assert!(e.contains("BPF instructions") && e.contains("4096") && e.contains("merge"), "{e}");
        let count: usize = e
            .split("compiles to ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(count > BPF_MAXINSNS && count <= usize::from(u16::MAX), "{e}");
        // A profile under the limit still compiles.
        let small = compile(&many_conditional_rules(100)).map_err(|e| e.to_string());
        assert!(
            small.as_ref().is_ok_and(|c| c.program.len() <= BPF_MAXINSNS),
            "{:?}",
            small.map(|c| c.program.len())
        );
    }

    #[test]
    fn unknown_syscall_names_are_skipped() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["karton_no_such_call","uname"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        let c = compile(&p).map_err(|e| e.to_string());
        assert_eq!(c.map(|c| c.skipped), Ok(vec!["karton_no_such_call".to_string()]));
    }

    #[test]
    fn refusals_name_their_json_path() {
        let cases = [
            (r#"{"defaultAction":"SCMP_ACT_NOTIFY","listenerPath":"/a"}"#, "linux.seccomp.defaultAction"),
            (r#"{"defaultAction":"SCMP_ACT_ALLOW","defaultErrnoRet":3}"#, "linux.seccomp.defaultErrnoRet 3"),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_NOTIFY"}]}"#,
                "linux.seccomp.listenerPath",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/a","syscalls":[{"names":["sendmsg"],"action":"SCMP_ACT_NOTIFY"}]}"#,
                "linux.seccomp.syscalls[0].names[0] \"sendmsg\"",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_KILL","errnoRet":1}]}"#,
                "linux.seccomp.syscalls[0].errnoRet 1",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_ERRNO","errnoRet":70000}]}"#,
                "linux.seccomp.syscalls[0].errnoRet 70000",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
                "linux.seccomp.syscalls[0].args[0].index 6",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}"#,
                "linux.seccomp.flags[0]",
            ),
        ];
        for (json, want) in cases {
            let msg = config_error(compile(&profile(json)));
            assert!(msg.starts_with(want), "{json}: {msg}");
        }
    }

    #[test]
    fn overlapping_rules_compile() {
        // libseccomp keeps the first rule without conditions (tests/seccomp.rs checks it in
        // the kernel); karton reports the overridden one with tracing::debug!.
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_ERRNO"},{"names":["getpid","uname"],"action":"SCMP_ACT_KILL"}]}"#,
        );
        assert!(compile(&p).is_ok());
    }

    #[test]
    fn rule_equal_to_default_is_skipped() {
        let p = profile(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        assert!(compile(&p).is_ok());
    }

    #[test]
    fn process_state_wraps_the_oci_state() {
        let msg = process_state(
            Some("meta"),
            42,
            r#"{"ociVersion":"1.2.0","id":"c1","status":"creating","pid":42,"bundle":"/b"}"#,
        )
        .map_err(|e| e.to_string());
        let v: serde_json::Value = serde_json::from_str(&msg.unwrap_or_default()).unwrap_or_default();
        assert_eq!(v["ociVersion"], "1.2.0");
        assert_eq!(v["fds"], serde_json::json!(["seccompFd"]));
        assert_eq!(v["pid"], 42);
        assert_eq!(v["metadata"], "meta");
        assert_eq!(v["state"]["id"], "c1");
        assert!(process_state(None, 1, "not json").is_err());
        let v: serde_json::Value =
            serde_json::from_str(&process_state(None, 1, "{}").unwrap_or_default()).unwrap_or_default();
        assert_eq!(v["ociVersion"], oci_spec::runtime::VERSION);
        assert!(v.get("metadata").is_none());
    }

    #[test]
    fn features_lists_what_works_here() {
        let f = features();
        assert_eq!(f["enabled"], true);
        assert_eq!(f["actions"].as_array().map(Vec::len), Some(9), "{f}");
        assert_eq!(f["operators"].as_array().map(Vec::len), Some(7));
        let archs = f["archs"].as_array().cloned().unwrap_or_default();
        assert!(archs.contains(&serde_json::json!("SCMP_ARCH_X86_64")), "{f}");
        assert_eq!(f["supportedFlags"].as_array().map(Vec::len), Some(4), "{f}");
    }

    #[test]
    fn default_profile_compiles_and_round_trips() {
        let p = default_profile();
        let json = serde_json::to_string(&p).unwrap_or_default();
        assert_eq!(parse(&json).ok().as_ref(), Some(&p));
        let c = match compile(&p) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert!(!c.notify);
        assert_eq!(p.default_errno_ret(), Some(1));
        let names: usize = p.syscalls().iter().flatten().map(|s| s.names().len()).sum();
        assert!(names > 350, "{names}");
        // Names libseccomp 2.5 predates may be skipped, nothing else.
        assert!(c.skipped.len() < 10, "{:?}", c.skipped);
        if let Err(e) = check(&p) {
            panic!("{e}");
        }
    }
    #[test]
    fn filter_flags_add_what_a_listener_needs() {
        let p = profile(r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG"]}"#);
        assert_eq!(filter_flags(&p, false), sys::FLAG_LOG);
        assert_eq!(filter_flags(&p, true), sys::FLAG_LOG | sys::FLAG_NEW_LISTENER);
        let p = profile(r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_TSYNC"]}"#);
        assert_eq!(filter_flags(&p, false), sys::FLAG_TSYNC);
        assert_eq!(filter_flags(&p, true), sys::FLAG_TSYNC | sys::FLAG_NEW_LISTENER | sys::FLAG_TSYNC_ESRCH);
    }

    #[test]
    fn the_first_unconditional_rule_decides_a_syscall() {
        let mut decided = std::collections::HashMap::new();
        note_decided(&mut decided, "uname", false, 0, "syscalls[0].names[0]");
        assert_eq!(decided.get("uname"), None);
        note_decided(&mut decided, "uname", true, 1, "syscalls[1].names[0]");
        note_decided(&mut decided, "uname", true, 2, "syscalls[2].names[0]");
        assert_eq!(decided.get("uname"), Some(&1));
    }
}
