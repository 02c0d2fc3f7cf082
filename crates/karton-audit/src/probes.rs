//! The probes themselves: each runs inside a container (as `/karton audit probe ID PARAMS`)
//! and tries to see or change one host resource. A probe prints one [`ProbeReport`] line.
//! Where only the host can tell whether the attempt reached it (a signal delivered, a mount
//! propagated, a hostname changed in the parent namespace), the probe reports what it did
//! in `facts` and the host decides (see `isolation.rs`).
//!
//! Nothing here can harm the host: signals go only to the audit's own sacrificial process
//! (identified by a token in its command line), mounts only under the audit's temp dir, the
//! clock check writes back the value it read, module loading passes an empty image, the
//! sysrq trigger is opened but never written.

use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use nix::errno::Errno;
use serde_json::Value;

use crate::results::{ProbeReport, Verdict};

/// Every probe id, in matrix order.
pub const PROBES: &[&str] = &[
    "pid.see_host_pids",
    "pid.signal_host",
    "pid.ptrace_host",
    "mnt.see_host_mounts",
    "mnt.propagate_to_host",
    "mnt.umount_host_mount",
    "net.see_host_interfaces",
    "net.bind_host_port",
    "net.reach_host_loopback",
    "ipc.sysv_shm",
    "ipc.sysv_msg",
    "ipc.sysv_sem",
    "ipc.posix_mqueue",
    "uts.hostname_leak",
    "user.write_host_file",
    "user.set_clock",
    "user.load_module",
    "user.raise_host_rlimit",
    "cgroup.path_visible",
    "cgroup.escape_to_parent",
    "time.monotonic_offset",
    "time.boottime_offset",
    "kernel.keyring",
    "kernel.dmesg",
    "kernel.proc_sys_write",
    "kernel.sysrq",
    "kernel.modules",
];

fn s<'a>(p: &'a Value, k: &str) -> &'a str {
    p.get(k).and_then(|v| v.as_str()).unwrap_or("")
}
fn n(p: &Value, k: &str) -> i64 {
    p.get(k).and_then(|v| v.as_i64()).unwrap_or(0)
}

fn errno_of(e: &std::io::Error) -> String {
    e.raw_os_error().map(|c| format!("{}", Errno::from_raw(c))).unwrap_or_else(|| e.to_string())
}

fn ns_ino(kind: &str) -> u64 {
    fs::metadata(format!("/proc/self/ns/{kind}")).map(|m| m.ino()).unwrap_or(0)
}

/// CapEff of this process, hex, for evidence.
pub fn cap_eff() -> String {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("CapEff:")).map(|l| l[7..].trim().to_string()))
        .unwrap_or_else(|| "?".into())
}

/// Runs probe `id` with its parameters (a JSON object from the host).
pub fn run_probe(id: &str, params: &Value) -> ProbeReport {
    let r = match id {
        "pid.see_host_pids" => see_host_pids(id, params),
        "pid.signal_host" => signal_host(id, params),
        "pid.ptrace_host" => ptrace_host(id, params),
        "mnt.see_host_mounts" => see_host_mounts(id, params),
        "mnt.propagate_to_host" => propagate(id, params),
        "mnt.umount_host_mount" => umount_host(id, params),
        "net.see_host_interfaces" => see_interfaces(id, params),
        "net.bind_host_port" => bind_port(id, params),
        "net.reach_host_loopback" => reach_loopback(id, params),
        "ipc.sysv_shm" => sysv_shm(id, params),
        "ipc.sysv_msg" => sysv_msg(id, params),
        "ipc.sysv_sem" => sysv_sem(id, params),
        "ipc.posix_mqueue" => posix_mq(id, params),
        "uts.hostname_leak" => hostname(id, params),
        "user.write_host_file" => write_file(id, params),
        "user.set_clock" => set_clock(id),
        "user.load_module" | "kernel.modules" => load_module(id),
        "user.raise_host_rlimit" => raise_rlimit(id, params),
        "cgroup.path_visible" => cgroup_path(id, params),
        "cgroup.escape_to_parent" => cgroup_escape(id, params),
        "time.monotonic_offset" | "time.boottime_offset" => clocks(id),
        "kernel.keyring" => keyring(id, params),
        "kernel.dmesg" => dmesg(id),
        "kernel.proc_sys_write" => proc_sys(id),
        "kernel.sysrq" => sysrq(id),
        other => ProbeReport::new(other, Verdict::Error, format!("unknown probe {other:?}")),
    };
    r.fact("cap_eff", cap_eff())
}

fn cmdline(pid: i64) -> Option<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim().to_string())
}

fn visible_pids() -> Vec<i64> {
    let mut v: Vec<i64> = fs::read_dir("/proc")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn pid_summary() -> String {
    let v = visible_pids();
    let head: Vec<String> = v.iter().take(6).map(|p| p.to_string()).collect();
    format!("{} pids visible in /proc ({}{})", v.len(), head.join(","), if v.len() > 6 { ",…" } else { "" })
}

/// Is `pid` the host's sacrificial process (its command line carries the token)?
fn is_sacrificial(p: &Value) -> Option<String> {
    let pid = n(p, "pid");
    let token = s(p, "token");
    cmdline(pid).filter(|c| !token.is_empty() && c.contains(token))
}

fn see_host_pids(id: &str, p: &Value) -> ProbeReport {
    let pid = n(p, "pid");
    match is_sacrificial(p) {
        Some(c) => ProbeReport::new(
            id,
            Verdict::Leaked,
            format!("read /proc/{pid}/cmdline of the host's process: \"{c}\"; {}", pid_summary()),
        ),
        None => ProbeReport::new(
            id,
            Verdict::Contained,
            format!("host pid {pid} not visible (no /proc/{pid} of the host's process); {}", pid_summary()),
        ),
    }
}

fn signal_host(id: &str, p: &Value) -> ProbeReport {
    let pid = n(p, "pid") as i32;
    let target = nix::unistd::Pid::from_raw(pid);
    if is_sacrificial(p).is_some() {
        match nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM) {
            Ok(()) => ProbeReport::new(
                id,
                Verdict::Leaked,
                format!("kill({pid}, SIGTERM) on the host's process returned 0"),
            )
            .fact("signalled", true),
            Err(e) => ProbeReport::new(id, Verdict::Contained, format!("kill({pid}, SIGTERM): {e}"))
                .fact("signalled", false),
        }
    } else {
        match nix::sys::signal::kill(target, None) {
            Err(e) => ProbeReport::new(
                id,
                Verdict::Contained,
                format!("kill({pid}, 0): {e} — the host's pid does not exist here"),
            )
            .fact("signalled", false),
            Ok(()) => ProbeReport::new(
                id,
                Verdict::Contained,
                format!("pid {pid} here is not the host's process; not signalled"),
            )
            .fact("signalled", false),
        }
    }
}

fn ptrace_host(id: &str, p: &Value) -> ProbeReport {
    use nix::sys::ptrace;
    let pid = n(p, "pid") as i32;
    let target = nix::unistd::Pid::from_raw(pid);
    if is_sacrificial(p).is_none() {
        return match nix::sys::signal::kill(target, None) {
            Err(e) => ProbeReport::new(
                id,
                Verdict::Contained,
                format!("pid {pid}: kill(…, 0): {e} — the host's process is out of reach for ptrace"),
            ),
            Ok(()) => ProbeReport::new(
                id,
                Verdict::Contained,
                format!("pid {pid} here is not the host's process; not traced"),
            ),
        };
    }
    match ptrace::seize(target, ptrace::Options::empty()) {
        Ok(()) => {
            // Stop it briefly and let it go: proof of control, no change to the tracee.
            let mut how = "PTRACE_SEIZE succeeded".to_string();
            if ptrace::interrupt(target).is_ok() {
                let _ = nix::sys::wait::waitpid(target, None);
                if ptrace::detach(target, None).is_ok() {
                    how.push_str(", PTRACE_INTERRUPT stopped it, PTRACE_DETACH released it");
                }
            }
            ProbeReport::new(id, Verdict::Leaked, format!("{how} on the host's process {pid}"))
        }
        Err(e) => ProbeReport::new(id, Verdict::Contained, format!("ptrace(PTRACE_SEIZE, {pid}): {e}")),
    }
}

fn see_host_mounts(id: &str, p: &Value) -> ProbeReport {
    let marker = s(p, "marker");
    let mounts = match karton_sys::mountinfo::read_self() {
        Ok(m) => m,
        Err(e) => return ProbeReport::new(id, Verdict::Error, e.to_string()),
    };
    let names_marker = |m: &karton_sys::mountinfo::MountInfo| {
        m.mount_point.to_string_lossy().contains(marker)
            || m.root.to_string_lossy().contains(marker)
            || m.source.contains(marker)
    };
    match mounts.iter().find(|m| !marker.is_empty() && names_marker(m)) {
        Some(m) => ProbeReport::new(
            id,
            Verdict::Leaked,
            format!(
                "the host's mount is in /proc/self/mountinfo: {} {} on {}",
                m.fstype,
                m.source,
                m.mount_point.display()
            ),
        ),
        None => ProbeReport::new(
            id,
            Verdict::Contained,
            format!("{} mounts visible, none is the host's {marker}", mounts.len()),
        ),
    }
}

fn propagate(id: &str, p: &Value) -> ProbeReport {
    use nix::mount::{mount, MsFlags};
    let dir = s(p, "dir");
    let src = s(p, "source");
    match mount(Some(src), dir, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("size=64k")) {
        Ok(()) => ProbeReport::new(id, Verdict::Contained, format!("mounted tmpfs {src} on {dir} inside"))
            .fact("mounted", true),
        Err(e) => ProbeReport::new(id, Verdict::Contained, format!("mount tmpfs on {dir}: {e}"))
            .fact("mounted", false),
    }
}

fn umount_host(id: &str, p: &Value) -> ProbeReport {
    let path = s(p, "path");
    let source = s(p, "source");
    // Only ever the audit's own tmpfs: check source and type in mountinfo first.
    let mounts = match karton_sys::mountinfo::read_self() {
        Ok(m) => m,
        Err(e) => return ProbeReport::new(id, Verdict::Error, e.to_string()).fact("unmounted", false),
    };
    let ours = mounts.iter().any(|m| {
        m.mount_point == std::path::Path::new(path) && m.fstype == "tmpfs" && m.source.contains(source)
    });
    if !ours || !path.contains("karton-audit") && !path.starts_with("/audit/") {
        return ProbeReport::new(
            id,
            Verdict::Contained,
            format!("{path} is not the audit's tmpfs here; not unmounted"),
        )
        .fact("unmounted", false);
    }
    match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => ProbeReport::new(id, Verdict::Contained, format!("umount2({path}) succeeded inside"))
            .fact("unmounted", true),
        Err(e) => {
            ProbeReport::new(id, Verdict::Contained, format!("umount2({path}): {e}")).fact("unmounted", false)
        }
    }
}

fn interfaces() -> Vec<String> {
    fs::read_to_string("/proc/net/dev")
        .map(|t| {
            t.lines().skip(2).filter_map(|l| l.split(':').next().map(|s| s.trim().to_string())).collect()
        })
        .unwrap_or_default()
}

/// Brings `lo` up when this process has its own network namespace (never on the host's).
fn lo_up_if_own(p: &Value) {
    let host = p.get("host_netns").and_then(|v| v.as_u64()).unwrap_or(0);
    if host != 0 && ns_ino("net") != host {
        let _ = std::process::Command::new("/bin/ip").args(["link", "set", "lo", "up"]).status();
    }
}

fn see_interfaces(id: &str, p: &Value) -> ProbeReport {
    let host: Vec<String> = p
        .get("host_ifaces")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let mine = interfaces();
    let leaked: Vec<&String> = mine.iter().filter(|i| *i != "lo" && host.contains(i)).collect();
    if leaked.is_empty() {
        ProbeReport::new(
            id,
            Verdict::Contained,
            format!(
                "/proc/net/dev lists only [{}]; the host's [{}] are absent",
                mine.join(","),
                host.join(",")
            ),
        )
    } else {
        ProbeReport::new(
            id,
            Verdict::Leaked,
            format!(
                "/proc/net/dev lists the host's interfaces [{}]",
                leaked.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
            ),
        )
    }
}

fn bind_port(id: &str, p: &Value) -> ProbeReport {
    lo_up_if_own(p);
    let port = n(p, "port") as u16;
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => ProbeReport::new(id, Verdict::Contained, format!("bind(127.0.0.1:{port}) succeeded although the host's listener holds that port: a port space of its own")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => ProbeReport::new(id, Verdict::Leaked, format!("bind(127.0.0.1:{port}): EADDRINUSE — the host's listener holds it: one shared port space")),
        Err(e) => ProbeReport::new(id, Verdict::Error, format!("bind(127.0.0.1:{port}): {}", errno_of(&e))),
    }
}

fn reach_loopback(id: &str, p: &Value) -> ProbeReport {
    lo_up_if_own(p);
    let port = n(p, "port") as u16;
    let token = s(p, "token");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(mut c) => {
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = String::new();
            let _ = c.read_to_string(&mut buf);
            if !token.is_empty() && buf.contains(token) {
                ProbeReport::new(
                    id,
                    Verdict::Leaked,
                    format!("connected to the host-only listener 127.0.0.1:{port} and read its token"),
                )
            } else {
                ProbeReport::new(
                    id,
                    Verdict::Contained,
                    format!(
                        "connected to 127.0.0.1:{port} but it was not the host's listener (read {:?})",
                        buf.chars().take(40).collect::<String>()
                    ),
                )
            }
        }
        Err(e) => {
            ProbeReport::new(id, Verdict::Contained, format!("connect(127.0.0.1:{port}): {}", errno_of(&e)))
        }
    }
}

fn sysv_shm(id: &str, p: &Value) -> ProbeReport {
    use karton_sys::audit_sys as a;
    let key = n(p, "key") as i32;
    let token = s(p, "token");
    match a::shmget(key, 0, 0) {
        Err(e) => ProbeReport::new(id, Verdict::Contained, format!("shmget(key {key:#x}): {}", e.errno)),
        Ok(shm) => match a::shm_rw(shm, 64, None) {
            Ok(b) if String::from_utf8_lossy(&b).contains(token) => ProbeReport::new(id, Verdict::Leaked, format!("shmget(key {key:#x}) found the host's segment {shm}; shmat attached it and read its token")),
            Ok(_) => ProbeReport::new(id, Verdict::Leaked, format!("shmget(key {key:#x}) found segment {shm} (token not read)")),
            Err(e) => ProbeReport::new(id, Verdict::Leaked, format!("shmget(key {key:#x}) found the host's segment {shm}; shmat: {}", e.errno)),
        },
    }
}

fn sysv_msg(id: &str, p: &Value) -> ProbeReport {
    use karton_sys::audit_sys as a;
    let key = n(p, "key") as i32;
    match a::msgget(key, 0) {
        Err(e) => ProbeReport::new(id, Verdict::Contained, format!("msgget(key {key:#x}): {}", e.errno)),
        Ok(q) => match a::msg_qnum(q) {
            Ok(k) => ProbeReport::new(
                id,
                Verdict::Leaked,
                format!(
                    "msgget(key {key:#x}) found the host's queue {q}; IPC_STAT shows {k} message(s) waiting"
                ),
            ),
            Err(e) => ProbeReport::new(
                id,
                Verdict::Leaked,
                format!("msgget(key {key:#x}) found the host's queue {q}; IPC_STAT: {}", e.errno),
            ),
        },
    }
}

fn sysv_sem(id: &str, p: &Value) -> ProbeReport {
    use karton_sys::audit_sys as a;
    let key = n(p, "key") as i32;
    match a::semget(key, 0) {
        Err(e) => ProbeReport::new(id, Verdict::Contained, format!("semget(key {key:#x}): {}", e.errno)),
        Ok(sem) => match a::sem_getval(sem) {
            Ok(v) => ProbeReport::new(
                id,
                Verdict::Leaked,
                format!(
                    "semget(key {key:#x}) found the host's set {sem}; GETVAL = {v} (the host set {})",
                    n(p, "value")
                ),
            ),
            Err(e) => ProbeReport::new(
                id,
                Verdict::Leaked,
                format!("semget(key {key:#x}) found the host's set {sem}; GETVAL: {}", e.errno),
            ),
        },
    }
}

fn posix_mq(id: &str, p: &Value) -> ProbeReport {
    use nix::mqueue::{mq_close, mq_getattr, mq_open, MQ_OFlag};
    let name = s(p, "name");
    let Ok(c) = CString::new(name) else { return ProbeReport::new(id, Verdict::Error, "bad queue name") };
    match mq_open(
        c.as_c_str(),
        MQ_OFlag::O_RDONLY | MQ_OFlag::O_NONBLOCK,
        nix::sys::stat::Mode::empty(),
        None,
    ) {
        Ok(q) => {
            let cur = mq_getattr(&q).map(|a| a.curmsgs()).unwrap_or(-1);
            let _ = mq_close(q);
            ProbeReport::new(
                id,
                Verdict::Leaked,
                format!("mq_open({name}) opened the host's queue; {cur} message(s) waiting"),
            )
        }
        Err(e) => ProbeReport::new(id, Verdict::Contained, format!("mq_open({name}): {e}")),
    }
}

fn hostname(id: &str, p: &Value) -> ProbeReport {
    let token = s(p, "token");
    let forbid = p.get("forbid_uts").and_then(|v| v.as_u64()).unwrap_or(0);
    let mine = ns_ino("uts");
    if mine == 0 || mine == forbid {
        return ProbeReport::new(id, Verdict::Skipped, format!("refusing to set the hostname: this is the audit's own uts namespace ({mine}), i.e. the real host's"));
    }
    match nix::unistd::sethostname(token) {
        Ok(()) => ProbeReport::new(
            id,
            Verdict::Contained,
            format!("sethostname({token}) succeeded inside (uts ns {mine})"),
        )
        .fact("set", true),
        Err(e) => ProbeReport::new(id, Verdict::Contained, format!("sethostname: {e}")).fact("set", false),
    }
}

fn write_file(id: &str, p: &Value) -> ProbeReport {
    let path = s(p, "path");
    let caps = cap_eff();
    match fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(b"written by the container\n"))
    {
        Ok(()) => ProbeReport::new(
            id,
            Verdict::Leaked,
            format!("appended to the host's root-owned 0644 file {path} (CapEff {caps})"),
        ),
        Err(e) => ProbeReport::new(
            id,
            Verdict::Contained,
            format!("open({path}, O_WRONLY): {} (CapEff {caps})", errno_of(&e)),
        ),
    }
}

fn set_clock(id: &str) -> ProbeReport {
    let caps = cap_eff();
    match karton_sys::audit_sys::clock_set_check() {
        Ok(v) => ProbeReport::new(id, Verdict::Leaked, format!("adjtimex(ADJ_MAXERROR={v}) accepted: CAP_SYS_TIME works on the host clock (the value read was written back) (CapEff {caps})")),
        Err(e) => ProbeReport::new(id, Verdict::Contained, format!("{e} (CapEff {caps})")),
    }
}

fn load_module(id: &str) -> ProbeReport {
    let caps = cap_eff();
    match karton_sys::audit_sys::init_module_check() {
        Errno::ENOSYS => ProbeReport::new(id, Verdict::Skipped, "init_module: ENOSYS — this kernel is built without loadable module support (no /proc/modules): nothing to protect"),
        Errno::EPERM => ProbeReport::new(id, Verdict::Contained, format!("init_module(empty image): EPERM — CAP_SYS_MODULE not effective (CapEff {caps})")),
        e => ProbeReport::new(id, Verdict::Leaked, format!("init_module(empty image): {e} — the CAP_SYS_MODULE check passed; only the empty image stopped it (CapEff {caps})")),
    }
}

fn raise_rlimit(id: &str, p: &Value) -> ProbeReport {
    use karton_sys::audit_sys as a;
    let pid = n(p, "pid") as i32;
    let res = libc::RLIMIT_NOFILE;
    if is_sacrificial(p).is_none() {
        return ProbeReport::new(
            id,
            Verdict::Contained,
            format!("host pid {pid} is not visible here; nothing to raise"),
        );
    }
    match a::getrlimit_pid(pid, res) {
        Err(e) => {
            ProbeReport::new(id, Verdict::Contained, format!("prlimit({pid}, NOFILE) read: {}", e.errno))
        }
        Ok((soft, hard)) => match a::prlimit_pid(pid, res, hard, hard) {
            Ok(_) => ProbeReport::new(
                id,
                Verdict::Leaked,
                format!("prlimit({pid}, RLIMIT_NOFILE) raised the host process's soft limit {soft} → {hard}"),
            )
            .fact("raised", true),
            Err(e) => ProbeReport::new(
                id,
                Verdict::Contained,
                format!("prlimit({pid}, RLIMIT_NOFILE {soft}→{hard}): {}", e.errno),
            )
            .fact("raised", false),
        },
    }
}

fn own_cgroup_v2() -> String {
    fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("0::")).map(|l| l[3..].to_string()))
        .unwrap_or_default()
}

fn cgroup_path(id: &str, p: &Value) -> ProbeReport {
    let prefix = s(p, "host_prefix");
    let path = own_cgroup_v2();
    if !prefix.is_empty() && path.starts_with(prefix) {
        ProbeReport::new(id, Verdict::Leaked, format!("/proc/self/cgroup shows the host's path 0::{path}"))
    } else {
        ProbeReport::new(
            id,
            Verdict::Contained,
            format!("/proc/self/cgroup shows 0::{path} (the host's {prefix}… is hidden)"),
        )
    }
}

fn cgroup_escape(id: &str, p: &Value) -> ProbeReport {
    use nix::mount::{mount, MsFlags};
    let mnt = "/tmp";
    if let Err(e) = mount(
        Some("cgroup2"),
        mnt,
        Some("cgroup2"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    ) {
        return ProbeReport::new(id, Verdict::Error, format!("mounting a cgroup2 view inside: {e}"));
    }
    let before = own_cgroup_v2();
    let host_parent = s(p, "host_parent");
    let parent = match before.rfind('/') {
        Some(0) if before.len() > 1 => "/".to_string(),
        Some(i) if i > 0 => before[..i].to_string(),
        _ => String::new(),
    };
    let target = if parent.is_empty() {
        format!("{mnt}{host_parent}/cgroup.procs")
    } else {
        format!("{mnt}{parent}/cgroup.procs")
    };
    let me = std::process::id().to_string();
    let res = fs::OpenOptions::new().write(true).open(&target).and_then(|mut f| f.write_all(me.as_bytes()));
    let after = own_cgroup_v2();
    let _ = nix::mount::umount2(mnt, nix::mount::MntFlags::MNT_DETACH);
    match res {
        Ok(()) if after != before => ProbeReport::new(id, Verdict::Leaked, format!("wrote its pid to {target}: moved itself from 0::{before} to 0::{after}, out of its own cgroup")),
        Ok(()) => ProbeReport::new(id, Verdict::Contained, format!("wrote to {target} but stayed in 0::{before}")),
        Err(e) => ProbeReport::new(
            id,
            Verdict::Contained,
            format!("own cgroup 0::{before} is the root of its view: no parent visible; writing {target}: {}", errno_of(&e)),
        ),
    }
}

fn clock_s(c: nix::time::ClockId) -> f64 {
    nix::time::clock_gettime(c).map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9).unwrap_or(-1.0)
}

fn clocks(id: &str) -> ProbeReport {
    let mono = clock_s(nix::time::ClockId::CLOCK_MONOTONIC);
    let boot = clock_s(nix::time::ClockId::CLOCK_BOOTTIME);
    let offs = fs::read_to_string("/proc/self/timens_offsets").unwrap_or_default().replace('\n', "; ");
    ProbeReport::new(
        id,
        Verdict::Contained,
        format!("CLOCK_MONOTONIC {mono:.3} s, CLOCK_BOOTTIME {boot:.3} s; timens_offsets: {offs}"),
    )
    .fact("monotonic", mono)
    .fact("boottime", boot)
}

fn keyring(id: &str, p: &Value) -> ProbeReport {
    use karton_sys::audit_sys as a;
    let desc = s(p, "desc");
    let token = s(p, "token");
    let Ok(c) = CString::new(desc) else {
        return ProbeReport::new(id, Verdict::Error, "bad key description");
    };
    let proc_keys = fs::read_to_string("/proc/keys")
        .map(|t| if t.contains(desc) { "lists it" } else { "does not list it" })
        .unwrap_or("unreadable");
    match a::search_user_key(a::KEY_SPEC_USER_KEYRING, &c) {
        Ok(serial) => match a::read_key(serial) {
            Ok(b) if String::from_utf8_lossy(&b).contains(token) => ProbeReport::new(id, Verdict::Leaked, format!("keyctl(SEARCH, @u, \"{desc}\") found the host's key {serial} and KEYCTL_READ returned its secret; /proc/keys {proc_keys}")),
            Ok(_) => ProbeReport::new(id, Verdict::Leaked, format!("found the host's key {serial} (payload differs); /proc/keys {proc_keys}")),
            Err(e) => ProbeReport::new(id, Verdict::Leaked, format!("found the host's key {serial}; {e}; /proc/keys {proc_keys}")),
        },
        Err(e) => ProbeReport::new(id, Verdict::Contained, format!("{e}; /proc/keys {proc_keys}")),
    }
}

fn dmesg(id: &str) -> ProbeReport {
    match karton_sys::audit_sys::syslog_size() {
        Ok(n) => ProbeReport::new(
            id,
            Verdict::Leaked,
            format!("syslog(SIZE_BUFFER) = {n}: the host's kernel log is readable (CapEff {})", cap_eff()),
        ),
        Err(e) => ProbeReport::new(
            id,
            Verdict::Contained,
            format!("{e} (kernel.dmesg_restrict=1 needs CAP_SYSLOG; CapEff {})", cap_eff()),
        ),
    }
}

fn proc_sys(id: &str) -> ProbeReport {
    // A host-wide (not namespaced) sysctl; the value read is written back unchanged.
    let path = "/proc/sys/kernel/printk_ratelimit";
    let cur = match fs::read_to_string(path) {
        Ok(v) => v,
        Err(e) => return ProbeReport::new(id, Verdict::Contained, format!("read {path}: {}", errno_of(&e))),
    };
    match fs::OpenOptions::new().write(true).open(path).and_then(|mut f| f.write_all(cur.as_bytes())) {
        Ok(()) => ProbeReport::new(
            id,
            Verdict::Leaked,
            format!("wrote {} back to {path}: a host-wide sysctl is writable", cur.trim()),
        ),
        Err(e) => ProbeReport::new(id, Verdict::Contained, format!("write {path}: {}", errno_of(&e))),
    }
}

fn sysrq(id: &str) -> ProbeReport {
    // Opened for writing only; NOTHING is ever written to it.
    let path = "/proc/sysrq-trigger";
    match fs::OpenOptions::new().write(true).open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !std::path::Path::new("/proc/sysrq").exists() => {
            ProbeReport::new(id, Verdict::Skipped, format!("open({path}): ENOENT — this kernel has no /proc/sysrq-trigger (built without magic SysRq): nothing to protect"))
        }
        Ok(_) => ProbeReport::new(id, Verdict::Leaked, format!("open({path}, O_WRONLY) succeeded: one write would reach the host kernel (nothing was written)")),
        Err(e) => ProbeReport::new(id, Verdict::Contained, format!("open({path}, O_WRONLY): {}", errno_of(&e))),
    }
}
