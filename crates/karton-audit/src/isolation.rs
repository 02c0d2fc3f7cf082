//! Isolation: every probe run twice — without and with the namespace (or mechanism) under
//! test, all else equal — with the host resources each probe aims at created here, by the
//! audit, and removed afterwards.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::results::{DefaultConfig, IsolationRow, Outcome, ProbeReport, Verdict};
use crate::runner::{default_namespaces, excerpt, host_caps, parse_report, Config, Karton};
use crate::AuditError;

/// Sets an outcome's verdict and evidence (the evidence is computed first, so it may read
/// the old evidence).
macro_rules! set {
    ($o:ident, $v:expr, $e:expr) => {{
        let e: String = $e;
        $o.verdict = $v;
        $o.evidence = e;
    }};
}

/// Wall-time limit of one probe container.
const PROBE_LIMIT: Duration = Duration::from_secs(20);
/// Monotonic/boottime offset given to the time namespace (seven days).
const TIME_OFFSET_S: i64 = 7 * 24 * 3600;

/// What the probes need from the host: the karton binary, a rootfs, a private work dir.
pub struct Env {
    pub karton: Karton,
    pub rootfs: PathBuf,
    pub work: PathBuf,
}

impl Env {
    fn token(&self, tag: &str) -> String {
        format!("karton-audit-{}-{tag}", self.karton.run_id)
    }
}

fn ns_ino(pid: &str, kind: &str) -> u64 {
    fs::metadata(format!("/proc/{pid}/ns/{kind}")).map(|m| m.ino()).unwrap_or(0)
}

fn minus(list: &[String], ns: &str) -> Vec<String> {
    list.iter().filter(|n| *n != ns).cloned().collect()
}

fn plus(list: &[String], ns: &str) -> Vec<String> {
    let mut v = list.to_vec();
    if !v.iter().any(|n| n == ns) {
        v.push(ns.to_string());
    }
    v
}

/// A process of the audit's own that probes may signal, trace and re-limit: it drops every
/// capability (so an unprivileged same-uid tracer may ptrace it), lowers its own
/// RLIMIT_NOFILE soft limit, and exits by itself after two minutes.
pub struct Sacrificial {
    child: Child,
    pub token: String,
}

impl Sacrificial {
    pub fn spawn(exe: &Path, token: &str) -> Result<Self, AuditError> {
        let mut child = Command::new(exe)
            .args(["audit", "sacrificial", token])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| AuditError::Io { what: "starting the sacrificial process".into(), source: e })?;
        // Wait for its "ready" line (capabilities dropped, limit lowered).
        if let Some(out) = child.stdout.take() {
            use std::io::BufRead;
            let mut line = String::new();
            let _ = std::io::BufReader::new(out).read_line(&mut line);
        }
        Ok(Self { child, token: token.to_string() })
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Some(signal) if it has been killed by a signal, None if still running.
    pub fn ended_by(&mut self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                use std::os::unix::process::ExitStatusExt;
                return Some(match st.signal() {
                    Some(s) => format!("signal {s}"),
                    None => format!("exit {}", st.code().unwrap_or(-1)),
                });
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    pub fn nofile_soft(&self) -> Option<u64> {
        karton_sys::audit_sys::getrlimit_pid(self.child.id() as i32, libc::RLIMIT_NOFILE).ok().map(|(s, _)| s)
    }
}

impl Drop for Sacrificial {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of `karton audit sacrificial TOKEN`.
pub fn sacrificial_main() -> Result<(), AuditError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| AuditError::Host(format!("getrlimit: {e}")))?;
    let soft = 64.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard)
        .map_err(|e| AuditError::Host(format!("setrlimit: {e}")))?;
    karton_sys::caps::set(&karton_sys::caps::CapSets { effective: 0, permitted: 0, inheritable: 0 })
        .map_err(|e| AuditError::Host(format!("dropping capabilities: {e}")))?;
    println!("ready");
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(120));
    Ok(())
}

/// A TCP listener on the host's loopback that answers every connection with a token.
struct Listener {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn start(token: &str) -> Result<Self, AuditError> {
        let l = TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| AuditError::Io { what: "binding the host listener".into(), source: e })?;
        let port = l.local_addr().map(|a| a.port()).unwrap_or(0);
        l.set_nonblocking(true).map_err(|e| AuditError::Io { what: "host listener".into(), source: e })?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let token = token.to_string();
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.write_all(token.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Self { port, stop, thread: Some(thread) })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// SysV and POSIX IPC objects created on the host, removed on drop.
struct IpcObjects {
    key: i32,
    shm: Option<i32>,
    msg: Option<i32>,
    sem: Option<i32>,
    mq: Option<CString>,
    mq_error: String,
}

impl IpcObjects {
    fn create(token: &str, mq_name: &str) -> Self {
        use karton_sys::audit_sys as a;
        let key = 0x4b41_0000 | (std::process::id() as i32 & 0xffff);
        let flags = libc::IPC_CREAT | libc::IPC_EXCL | 0o600;
        let shm = a::shmget(key, 4096, flags).ok();
        if let Some(id) = shm {
            let _ = a::shm_rw(id, 0, Some(token.as_bytes()));
        }
        let msg = a::msgget(key, flags).ok();
        if let Some(q) = msg {
            let _ = a::msg_send(q, token.as_bytes());
        }
        let sem = a::semget(key, flags).ok();
        if let Some(s) = sem {
            let _ = a::sem_setval(s, 42);
        }
        let mut mq_error = String::new();
        let mq = CString::new(mq_name).ok().and_then(|c| {
            use nix::mqueue::{mq_close, mq_open, mq_send, MQ_OFlag};
            let mode = nix::sys::stat::Mode::from_bits_truncate(0o600);
            let attr = nix::mqueue::MqAttr::new(0, 4, 128, 0);
            let q = match mq_open(
                c.as_c_str(),
                MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_WRONLY,
                mode,
                Some(&attr),
            ) {
                Ok(q) => q,
                Err(e) => {
                    mq_error = format!("mq_open({mq_name}, O_CREAT): {e}");
                    return None;
                }
            };
            let _ = mq_send(&q, token.as_bytes(), 0);
            let _ = mq_close(q);
            Some(c)
        });
        Self { key, shm, msg, sem, mq, mq_error }
    }
}

impl Drop for IpcObjects {
    fn drop(&mut self) {
        use karton_sys::audit_sys as a;
        if let Some(id) = self.shm {
            let _ = a::shm_remove(id);
        }
        if let Some(id) = self.msg {
            let _ = a::msg_remove(id);
        }
        if let Some(id) = self.sem {
            let _ = a::sem_remove(id);
        }
        if let Some(c) = &self.mq {
            let _ = nix::mqueue::mq_unlink(c.as_c_str());
        }
    }
}

/// A tmpfs the audit mounts in its own temp dir, unmounted on drop.
struct TmpMount {
    path: PathBuf,
}

impl TmpMount {
    fn mount(path: &Path, source: &str) -> Result<Self, AuditError> {
        use nix::mount::{mount, MsFlags};
        fs::create_dir_all(path)
            .map_err(|e| AuditError::Io { what: format!("creating {}", path.display()), source: e })?;
        mount(Some(source), path, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("size=64k"))
            .map_err(|e| AuditError::Host(format!("mounting a tmpfs on {}: {e}", path.display())))?;
        Ok(Self { path: path.to_path_buf() })
    }
}

impl Drop for TmpMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The source of the mount at `path` in the audit's (the host's) mount namespace, if any.
fn host_mount_at(path: &Path) -> Result<Option<String>, karton_sys::mountinfo::MountInfoError> {
    Ok(karton_sys::mountinfo::read_self()?.into_iter().find(|m| m.mount_point == path).map(|m| m.source))
}

/// A key in the root user's keyring (@u), unlinked on drop.
struct HostKey {
    serial: Option<i32>,
}

impl HostKey {
    fn add(desc: &str, token: &str) -> Self {
        use karton_sys::audit_sys as a;
        let serial = CString::new(desc)
            .ok()
            .and_then(|c| a::add_user_key(&c, token.as_bytes(), a::KEY_SPEC_USER_KEYRING).ok());
        if let Some(s) = serial {
            // Possessor: everything; same uid: view, read, search (as a key shared by uid is).
            let _ = a::set_key_perm(s, 0x3f0b_0000);
        }
        Self { serial }
    }
}

impl Drop for HostKey {
    fn drop(&mut self) {
        if let Some(s) = self.serial {
            let _ = karton_sys::audit_sys::unlink_key(s, karton_sys::audit_sys::KEY_SPEC_USER_KEYRING);
        }
    }
}

fn clock_now(c: nix::time::ClockId) -> f64 {
    nix::time::clock_gettime(c).map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9).unwrap_or(-1.0)
}

/// A container config that runs probe `id` with `params`, with the karton binary bound in.
fn probe_config(env: &Env, namespaces: &[String], id: &str, params: &Value) -> Config {
    let args = vec!["/karton".to_string(), "audit".into(), "probe".into(), id.into(), params.to_string()];
    let mut c = Config::new(&env.rootfs, namespaces, &args);
    c.bind(&env.karton.exe, "/karton", true);
    c
}

/// Runs one probe container and turns its output into an outcome (and the raw report).
fn run_container(
    env: &Env,
    cfg: &Config,
    id: &str,
    wrapper: &[String],
) -> (Outcome, Option<ProbeReport>, String) {
    let cid = env.karton.new_id(id);
    let started = Instant::now();
    let config = cfg.describe();
    match env.karton.run(&cid, cfg, PROBE_LIMIT, wrapper) {
        Err(e) => (
            Outcome { verdict: Verdict::Error, evidence: e.to_string(), config, elapsed_ms: ms(started) },
            None,
            String::new(),
        ),
        Ok(out) => match parse_report(&out.stdout) {
            Some(r) => (
                Outcome { verdict: r.verdict, evidence: r.evidence.clone(), config, elapsed_ms: ms(started) },
                Some(r),
                out.stdout,
            ),
            None => (
                Outcome {
                    verdict: Verdict::Error,
                    evidence: format!(
                        "no probe report ({}): {}",
                        out.describe_status(),
                        excerpt(&out.stderr)
                    ),
                    config,
                    elapsed_ms: ms(started),
                },
                None,
                out.stdout,
            ),
        },
    }
}

/// Runs probe `id` as a plain host process (the mnt "without" case).
fn run_host_process(env: &Env, id: &str, params: &Value) -> (Outcome, Option<ProbeReport>) {
    let started = Instant::now();
    let config =
        "host process (karton always creates a mount namespace: the host's own view is the baseline)"
            .to_string();
    let out = Command::new(&env.karton.exe)
        .args(["audit", "probe", id, &params.to_string()])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) => match parse_report(&String::from_utf8_lossy(&o.stdout)) {
            Some(r) => (
                Outcome { verdict: r.verdict, evidence: r.evidence.clone(), config, elapsed_ms: ms(started) },
                Some(r),
            ),
            None => (
                Outcome {
                    verdict: Verdict::Error,
                    evidence: excerpt(&String::from_utf8_lossy(&o.stderr)),
                    config,
                    elapsed_ms: ms(started),
                },
                None,
            ),
        },
        Err(e) => (
            Outcome { verdict: Verdict::Error, evidence: e.to_string(), config, elapsed_ms: ms(started) },
            None,
        ),
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn row(
    id: &str,
    ns: &str,
    probe: &str,
    protection: &str,
    method: &str,
    without: Outcome,
    with: Outcome,
) -> IsolationRow {
    let demonstrated = without.verdict == Verdict::Leaked && with.verdict == Verdict::Contained;
    IsolationRow {
        id: id.into(),
        namespace: ns.into(),
        probe: probe.into(),
        protection: protection.into(),
        method: method.into(),
        without,
        with,
        default_config: None,
        demonstrated,
    }
}

/// Runs the isolation probes whose id starts with one of `only` (all when empty).
pub fn run_all(
    env: &Env,
    only: &[String],
    interrupted: &dyn Fn() -> bool,
    log: &mut dyn FnMut(&str),
) -> Vec<IsolationRow> {
    let mut rows = Vec::new();
    let want =
        |fam: &str| only.is_empty() || only.iter().any(|o| fam.starts_with(o.as_str()) || o.starts_with(fam));
    type Family = fn(&Env) -> Vec<IsolationRow>;
    let families: [(&str, Family); 9] = [
        ("pid", pid_rows),
        ("mnt", mnt_rows),
        ("net", net_rows),
        ("ipc", ipc_rows),
        ("uts", uts_rows),
        ("user", user_rows),
        ("cgroup", cgroup_rows),
        ("time", time_rows),
        ("kernel", kernel_rows),
    ];
    for (fam, f) in families {
        if !want(fam) {
            continue;
        }
        if interrupted() {
            break;
        }
        for r in f(env) {
            if only.is_empty() || only.iter().any(|o| r.id.starts_with(o.as_str())) {
                log(&format!(
                    "  {:<26} without: {:<9} with: {:<9} {}",
                    r.id,
                    r.without.verdict.as_str(),
                    r.with.verdict.as_str(),
                    if r.demonstrated { "(shown)" } else { "" }
                ));
                rows.push(r);
            }
        }
    }
    rows
}

fn pid_rows(env: &Env) -> Vec<IsolationRow> {
    let d = default_namespaces();
    let method = "container with karton's default namespaces minus pid, then with them (pid included); a sacrificial host process of the audit's own is the target";
    let mut out = Vec::new();
    for (id, title) in [
        ("pid.see_host_pids", "see host pids"),
        ("pid.signal_host", "signal a host process"),
        ("pid.ptrace_host", "ptrace a host process"),
    ] {
        let mut runs = Vec::new();
        for ns in [minus(&d, "pid"), plus(&d, "pid")] {
            let token = env.token(&format!("sacrificial-{}", id.replace('.', "-")));
            let sac = match Sacrificial::spawn(&env.karton.exe, &token) {
                Ok(s) => s,
                Err(e) => {
                    runs.push(Outcome {
                        verdict: Verdict::Error,
                        evidence: e.to_string(),
                        config: String::new(),
                        elapsed_ms: 0.0,
                    });
                    continue;
                }
            };
            let mut sac = sac;
            let params = json!({"pid": sac.pid(), "token": token});
            let cfg = probe_config(env, &ns, id, &params);
            let (mut o, rep, _) = run_container(env, &cfg, id, &[]);
            if id == "pid.signal_host" {
                let signalled = rep
                    .as_ref()
                    .and_then(|r| r.facts.get("signalled"))
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                match sac.ended_by(Duration::from_secs(2)) {
                    Some(how) if signalled => set!(
                        o,
                        Verdict::Leaked,
                        format!("{}; the host saw its process {} end by {how}", o.evidence, sac.pid())
                    ),
                    Some(how) => set!(
                        o,
                        Verdict::Leaked,
                        format!(
                            "the host's process ended by {how} although the probe reports no signal: {}",
                            o.evidence
                        )
                    ),
                    None if o.verdict == Verdict::Leaked => set!(
                        o,
                        Verdict::Contained,
                        format!("{}; but the host's process is still running", o.evidence)
                    ),
                    None => {}
                }
            }
            runs.push(o);
        }
        let with = runs.pop();
        let without = runs.pop();
        if let (Some(wo), Some(w)) = (without, with) {
            out.push(row(id, "pid", title, "pid namespace", method, wo, w));
        }
    }
    out
}

fn mnt_rows(env: &Env) -> Vec<IsolationRow> {
    let d = default_namespaces();
    let method = "the host's own mount namespace (a host process; karton always creates a mount namespace) against a container with karton's default namespaces and every capability";
    let caps = host_caps();
    let shared = env.work.join("shared");
    let mut out = Vec::new();

    // see host mounts
    let marker = env.work.join("marker");
    let marker_mount = TmpMount::mount(&marker, &env.token("marker"));
    let id = "mnt.see_host_mounts";
    let params = json!({"marker": marker.to_string_lossy()});
    let (wo, _) = run_host_process(env, id, &params);
    let mut cfg = probe_config(env, &d, id, &params);
    cfg.caps(&caps);
    let (w, _, _) = run_container(env, &cfg, id, &[]);
    let (wo, w) = match &marker_mount {
        Ok(_) => (wo, w),
        Err(e) => (skip_outcome(&e.to_string()), skip_outcome(&e.to_string())),
    };
    out.push(row(id, "mnt", "see host mounts", "mount namespace", method, wo, w));
    drop(marker_mount);

    // a mount inside propagating to the host
    let id = "mnt.propagate_to_host";
    let sub = shared.join("sub");
    let _ = fs::create_dir_all(&sub);
    let source = env.token("propagated");
    let mut runs = Vec::new();
    for host in [true, false] {
        let (mut o, rep) = if host {
            run_host_process(env, id, &json!({"dir": sub.to_string_lossy(), "source": source}))
        } else {
            let mut cfg = probe_config(env, &d, id, &json!({"dir": "/audit/shared/sub", "source": source}));
            cfg.caps(&caps).bind(&shared, "/audit/shared", false);
            let (o, r, _) = run_container(env, &cfg, id, &[]);
            (o, r)
        };
        let mounted =
            rep.as_ref().and_then(|r| r.facts.get("mounted")).and_then(|v| v.as_bool()).unwrap_or(false);
        match host_mount_at(&sub) {
            Err(e) => set!(o, Verdict::Error, format!("{}; {e}", o.evidence)),
            Ok(Some(src)) => {
                set!(
                    o,
                    Verdict::Leaked,
                    format!("{}; the host's mount table now has {src} on {}", o.evidence, sub.display())
                );
                let _ = nix::mount::umount2(&sub, nix::mount::MntFlags::MNT_DETACH);
            }
            Ok(None) if mounted => set!(
                o,
                Verdict::Contained,
                format!("{}; the host's mount table has nothing on {}", o.evidence, sub.display())
            ),
            Ok(None) => {
                if o.verdict != Verdict::Error {
                    o.verdict = Verdict::Error;
                }
            }
        }
        runs.push(o);
    }
    if let (Some(w), Some(wo)) = (runs.pop(), runs.pop()) {
        out.push(row(
            id,
            "mnt",
            "a mount inside propagating to the host",
            "mount namespace (+ private propagation of the container's mounts)",
            method,
            wo,
            w,
        ));
    }

    // unmounting a host mount
    let id = "mnt.umount_host_mount";
    let victim = shared.join("victim");
    let vsource = env.token("victim");
    let mut runs = Vec::new();
    for host in [true, false] {
        let m = match TmpMount::mount(&victim, &vsource) {
            Ok(m) => m,
            Err(e) => {
                runs.push(skip_outcome(&e.to_string()));
                continue;
            }
        };
        let (mut o, rep) = if host {
            run_host_process(env, id, &json!({"path": victim.to_string_lossy(), "source": vsource}))
        } else {
            let mut cfg =
                probe_config(env, &d, id, &json!({"path": "/audit/shared/victim", "source": vsource}));
            cfg.caps(&caps).bind(&shared, "/audit/shared", false);
            let (o, r, _) = run_container(env, &cfg, id, &[]);
            (o, r)
        };
        let unmounted =
            rep.as_ref().and_then(|r| r.facts.get("unmounted")).and_then(|v| v.as_bool()).unwrap_or(false);
        match host_mount_at(&victim) {
            Err(e) => set!(o, Verdict::Error, format!("{}; {e}", o.evidence)),
            Ok(None) => set!(
                o,
                Verdict::Leaked,
                format!("{}; the host's tmpfs on {} is gone", o.evidence, victim.display())
            ),
            Ok(Some(_)) if unmounted => set!(
                o,
                Verdict::Contained,
                format!("{}; the host still has its tmpfs on {}", o.evidence, victim.display())
            ),
            Ok(Some(_)) => {}
        }
        drop(m);
        runs.push(o);
    }
    if let (Some(w), Some(wo)) = (runs.pop(), runs.pop()) {
        out.push(row(id, "mnt", "unmount a host mount", "mount namespace", method, wo, w));
    }
    out
}

fn skip_outcome(why: &str) -> Outcome {
    Outcome { verdict: Verdict::Skipped, evidence: why.to_string(), config: String::new(), elapsed_ms: 0.0 }
}

fn net_rows(env: &Env) -> Vec<IsolationRow> {
    let d = default_namespaces();
    let method = "container with karton's default namespaces minus net, then with them; CAP_NET_ADMIN in both (to bring up its own lo); the listener is the audit's own on 127.0.0.1";
    let host_netns = ns_ino("self", "net");
    let host_ifaces: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let token = env.token("listener");
    let listener = Listener::start(&token);
    let mut out = Vec::new();
    for (id, title) in [
        ("net.see_host_interfaces", "see host interfaces"),
        ("net.bind_host_port", "bind a port the host uses"),
        ("net.reach_host_loopback", "reach a listener bound only on the host's loopback"),
    ] {
        if id == "net.see_host_interfaces" && !host_ifaces.iter().any(|i| i != "lo") {
            out.push(row(
                id,
                "net",
                title,
                "network namespace",
                method,
                skip_outcome("the host has no interface besides lo"),
                skip_outcome("the host has no interface besides lo"),
            ));
            continue;
        }
        let port = listener.as_ref().map(|l| l.port).unwrap_or(0);
        if id != "net.see_host_interfaces" && port == 0 {
            let why = "could not bind the host listener on 127.0.0.1";
            out.push(row(
                id,
                "net",
                title,
                "network namespace",
                method,
                skip_outcome(why),
                skip_outcome(why),
            ));
            continue;
        }
        let params =
            json!({"host_ifaces": host_ifaces, "host_netns": host_netns, "port": port, "token": token});
        let mut runs = Vec::new();
        for ns in [minus(&d, "net"), plus(&d, "net")] {
            let mut cfg = probe_config(env, &ns, id, &params);
            cfg.add_caps(&["CAP_NET_ADMIN"]);
            runs.push(run_container(env, &cfg, id, &[]).0);
        }
        if let (Some(w), Some(wo)) = (runs.pop(), runs.pop()) {
            out.push(row(id, "net", title, "network namespace", method, wo, w));
        }
    }
    out
}

fn ipc_rows(env: &Env) -> Vec<IsolationRow> {
    let d = default_namespaces();
    let method = "objects created on the host by the audit (root-owned, mode 0600); container with karton's default namespaces minus ipc, then with them";
    let token = env.token("ipc");
    let mq_name = format!("/{}", env.token("mq"));
    let objs = IpcObjects::create(&token, &mq_name);
    let mut out = Vec::new();
    for (id, title, present) in [
        ("ipc.sysv_shm", "SysV shared memory: visible, attachable", objs.shm.is_some()),
        ("ipc.sysv_msg", "SysV message queue: visible", objs.msg.is_some()),
        ("ipc.sysv_sem", "SysV semaphore: visible, readable", objs.sem.is_some()),
        ("ipc.posix_mqueue", "POSIX message queue: openable", objs.mq.is_some()),
    ] {
        if !present {
            let why = if id == "ipc.posix_mqueue" {
                objs.mq_error.clone()
            } else {
                "the host could not create the object (IPC_EXCL clash or no support)".into()
            };
            let why = why.as_str();
            out.push(row(id, "ipc", title, "ipc namespace", method, skip_outcome(why), skip_outcome(why)));
            continue;
        }
        let params = json!({"key": objs.key, "token": token, "name": mq_name, "value": 42});
        let mut runs = Vec::new();
        for ns in [minus(&d, "ipc"), plus(&d, "ipc")] {
            let cfg = probe_config(env, &ns, id, &params);
            runs.push(run_container(env, &cfg, id, &[]).0);
        }
        if let (Some(w), Some(wo)) = (runs.pop(), runs.pop()) {
            out.push(row(id, "ipc", title, "ipc namespace", method, wo, w));
        }
    }
    drop(objs);
    out
}

fn uts_rows(env: &Env) -> Vec<IsolationRow> {
    let d = default_namespaces();
    let id = "uts.hostname_leak";
    let method = "both runs start inside a scratch uts namespace the audit creates (unshare(CLONE_NEWUTS), hostname karton-audit-parent), never the real host's; container with karton's default namespaces minus uts, then with them; CAP_SYS_ADMIN in both; the verdict reads the scratch parent's hostname after the container exits";
    let token = env.token("hn");
    let token: String = token.chars().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
    let params = json!({"token": token, "forbid_uts": ns_ino("self", "uts")});
    let wrapper = vec![env.karton.exe.to_string_lossy().into_owned(), "audit".into(), "uts-parent".into()];
    let mut runs = Vec::new();
    for ns in [minus(&d, "uts"), plus(&d, "uts")] {
        let mut cfg = probe_config(env, &ns, id, &params);
        cfg.add_caps(&["CAP_SYS_ADMIN"]);
        let (mut o, rep, stdout) = run_container(env, &cfg, id, &wrapper);
        let parent = stdout.lines().find_map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .and_then(|v| v.get("uts_parent_hostname").and_then(|h| h.as_str()).map(String::from))
        });
        let set_ok = rep.as_ref().and_then(|r| r.facts.get("set")).and_then(|v| v.as_bool()).unwrap_or(false);
        match parent {
            Some(h) if h == token => set!(
                o,
                Verdict::Leaked,
                format!("{}; the parent uts namespace's hostname became {h}", o.evidence)
            ),
            Some(h) if set_ok => {
                set!(o, Verdict::Contained, format!("{}; the parent uts namespace kept {h}", o.evidence))
            }
            Some(_) => {}
            None if o.verdict != Verdict::Skipped => {
                set!(o, Verdict::Error, format!("the scratch parent reported no hostname: {}", o.evidence))
            }
            None => {}
        }
        runs.push(o);
    }
    let mut out = Vec::new();
    if let (Some(w), Some(wo)) = (runs.pop(), runs.pop()) {
        out.push(row(
            id,
            "uts",
            "hostname change leaking to the parent namespace",
            "uts namespace",
            method,
            wo,
            w,
        ));
    }
    out
}

/// The body of `karton audit uts-parent CMD…`: a scratch uts namespace for `CMD`, whose
/// hostname is printed (as a JSON line) after `CMD` exits.
pub fn uts_parent_main(cmd: &[String]) -> Result<i32, AuditError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS)
        .map_err(|e| AuditError::Host(format!("unshare(CLONE_NEWUTS): {e}")))?;
    nix::unistd::sethostname("karton-audit-parent")
        .map_err(|e| AuditError::Host(format!("sethostname in the scratch namespace: {e}")))?;
    let (first, rest) = cmd.split_first().ok_or_else(|| AuditError::Host("uts-parent: no command".into()))?;
    let st = Command::new(first)
        .args(rest)
        .status()
        .map_err(|e| AuditError::Io { what: format!("running {first}"), source: e })?;
    let h = nix::unistd::gethostname().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    println!("{}", json!({"uts_parent_hostname": h}));
    Ok(st.code().unwrap_or(1))
}

fn user_rows(env: &Env) -> Vec<IsolationRow> {
    // Host processes must be reachable for the rlimit probe: no pid namespace in either run.
    let base = minus(&default_namespaces(), "pid");
    let caps = host_caps();
    let method = "container with karton's default namespaces minus pid (so host processes stay reachable) and every capability the host's bounding set allows, without a user namespace, then with one mapping 0..65535 to host 100000..165535";
    let files = env.work.join("hostfiles");
    let _ = fs::create_dir_all(&files);
    let _ = fs::set_permissions(&files, fs::Permissions::from_mode(0o755));
    let file = files.join("owned.txt");
    let mut out = Vec::new();
    for (id, title) in [
        ("user.write_host_file", "write a host-owned file"),
        ("user.set_clock", "set the clock (permission check only)"),
        ("user.load_module", "load a kernel module (empty image)"),
        ("user.raise_host_rlimit", "raise a host process's rlimit"),
    ] {
        let mut runs = Vec::new();
        for ns in [base.clone(), plus(&base, "user")] {
            let token = env.token("user-sacrificial");
            let _ = fs::write(&file, "host-owned\n");
            let _ = fs::set_permissions(&file, fs::Permissions::from_mode(0o644));
            let sac = if id == "user.raise_host_rlimit" {
                Sacrificial::spawn(&env.karton.exe, &token).ok()
            } else {
                None
            };
            let params = json!({"path": "/hostfiles/owned.txt", "pid": sac.as_ref().map(|s| s.pid()).unwrap_or(0), "token": token});
            let mut cfg = probe_config(env, &ns, id, &params);
            cfg.caps(&caps).bind(&files, "/hostfiles", false);
            let before = sac.as_ref().and_then(|s| s.nofile_soft());
            let (mut o, _, _) = run_container(env, &cfg, id, &[]);
            if id == "user.write_host_file" {
                let text = fs::read_to_string(&file).unwrap_or_default();
                let changed = text.contains("written by the container");
                match (o.verdict, changed) {
                    (Verdict::Leaked, true) => {
                        set!(o, Verdict::Leaked, format!("{}; the host reads the appended line", o.evidence))
                    }
                    (_, true) => set!(o, Verdict::Leaked, format!("the host file changed: {}", o.evidence)),
                    (Verdict::Leaked, false) => set!(
                        o,
                        Verdict::Error,
                        format!("probe claims a write the host cannot see: {}", o.evidence)
                    ),
                    _ => set!(o, Verdict::Contained, format!("{}; the host file is unchanged", o.evidence)),
                }
            }
            if let Some(s) = &sac {
                let after = s.nofile_soft();
                if before != after {
                    set!(
                        o,
                        Verdict::Leaked,
                        format!(
                            "{}; the host reads the process's soft NOFILE {:?} → {:?}",
                            o.evidence, before, after
                        )
                    );
                } else if o.verdict == Verdict::Leaked {
                    set!(
                        o,
                        Verdict::Error,
                        format!("probe claims a change the host cannot see: {}", o.evidence)
                    );
                }
            }
            runs.push(o);
        }
        if let (Some(w), Some(wo)) = (runs.pop(), runs.pop()) {
            out.push(row(
                id,
                "user",
                title,
                "user namespace (capabilities count only in namespaces it owns)",
                method,
                wo,
                w,
            ));
        }
    }
    let _ = fs::remove_dir_all(&files);
    out
}

fn cgroup_rows(env: &Env) -> Vec<IsolationRow> {
    let d = default_namespaces();
    let method = "container with karton's default namespaces minus cgroup, then with them; cgroupsPath /karton-audit/RUN/ID (the parent is the audit's own); CAP_SYS_ADMIN in both, to mount a fresh cgroup2 view inside";
    let prefix = "/karton-audit/";
    let parent = format!("/karton-audit/{}", env.karton.run_id);
    let mut out = Vec::new();
    for (id, title) in [
        ("cgroup.path_visible", "host cgroup path in /proc/self/cgroup"),
        ("cgroup.escape_to_parent", "move itself into the parent cgroup"),
    ] {
        let params = json!({"host_prefix": prefix, "host_parent": parent});
        let mut runs = Vec::new();
        for ns in [minus(&d, "cgroup"), plus(&d, "cgroup")] {
            let mut cfg = probe_config(env, &ns, id, &params);
            cfg.add_caps(&["CAP_SYS_ADMIN"]);
            runs.push(run_container(env, &cfg, id, &[]).0);
        }
        if let (Some(w), Some(wo)) = (runs.pop(), runs.pop()) {
            out.push(row(id, "cgroup", title, "cgroup namespace", method, wo, w));
        }
    }
    out
}

fn time_rows(env: &Env) -> Vec<IsolationRow> {
    let d = default_namespaces();
    let method = "container with karton's default namespaces, then plus a time namespace with monotonic and boottime offsets of +7 days; the host reads its own clocks before and after each run";
    let mut out = Vec::new();
    for (id, title, clock, key) in [
        (
            "time.monotonic_offset",
            "CLOCK_MONOTONIC offset inside, not outside",
            nix::time::ClockId::CLOCK_MONOTONIC,
            "monotonic",
        ),
        (
            "time.boottime_offset",
            "CLOCK_BOOTTIME offset inside, not outside",
            nix::time::ClockId::CLOCK_BOOTTIME,
            "boottime",
        ),
    ] {
        let mut runs = Vec::new();
        for ns in [d.clone(), plus(&d, "time")] {
            let mut cfg = probe_config(env, &ns, id, &json!({}));
            cfg.time_offsets(TIME_OFFSET_S);
            let before = clock_now(clock);
            let (mut o, rep, _) = run_container(env, &cfg, id, &[]);
            let after = clock_now(clock);
            if let Some(inside) = rep.as_ref().and_then(|r| r.facts.get(key)).and_then(|v| v.as_f64()) {
                let off = inside - before;
                let span = after - before;
                if inside >= before - 0.5 && inside <= after + 0.5 {
                    set!(o, Verdict::Leaked, format!("{key} inside {inside:.3} s lies within the host's {before:.3}..{after:.3} s: the host's clock itself, no offset"));
                } else if (off - TIME_OFFSET_S as f64).abs() <= span + 1.0 {
                    set!(o, Verdict::Contained, format!("{key} inside {inside:.3} s vs host {before:.3} s: offset {off:+.1} s (configured {TIME_OFFSET_S:+}); the host's clock went on unshifted ({after:.3} s after)"));
                } else {
                    set!(o, Verdict::Error, format!("{key} inside {inside:.3} s, host {before:.3}..{after:.3}: neither the host clock nor the configured offset"));
                }
            }
            runs.push(o);
        }
        if let (Some(w), Some(wo)) = (runs.pop(), runs.pop()) {
            out.push(row(id, "time", title, "time namespace", method, wo, w));
        }
    }
    out
}

/// What the keyring row says about `karton spec`'s config: like `runc spec`, it has no
/// seccomp profile and no user namespace, so the container's root shares host root's
/// user keyring (@u is per uid); karton keeps runc's default (see docs/security.md).
pub const KEYRING_DEFAULT_NOTE: &str = "runc-compatible default, not contained: `karton spec` (like `runc spec`) has no \
     seccomp profile and no user namespace, so container root shares host root's @u keyring; add a seccomp rule denying \
     keyctl/add_key/request_key (engines' default profiles do) or a user namespace";

fn keyring_default_note(id: &str, default_applies: bool, default_outcome: &Outcome) -> Option<String> {
    (id == "kernel.keyring" && !default_applies && default_outcome.verdict == Verdict::Leaked)
        .then(|| KEYRING_DEFAULT_NOTE.to_string())
}

fn kernel_rows(env: &Env) -> Vec<IsolationRow> {
    let d = default_namespaces();
    let caps = host_caps();
    let desc = env.token("key");
    let token = env.token("key-secret");
    let key = HostKey::add(&desc, &token);
    let params = json!({"desc": desc, "token": token});
    let mut out = Vec::new();
    let spec = karton_runtime::defaults::default_spec(false, 0, 0);
    let default_has_seccomp = !spec["linux"]["seccomp"].is_null();
    // (id, title, mechanism, how "without" differs, how "with" differs, default applies?, default == with?)
    struct K {
        id: &'static str,
        title: &'static str,
        mechanism: &'static str,
        method: &'static str,
        with_kind: u8,
        without_kind: u8,
        default_applies: bool,
    }
    // kinds: 0 default config, 1 every capability, 2 no masked/read-only paths, 3 seccomp deny keyctl family, 4 seccomp deny syslog
    let rows = [
        K { id: "kernel.keyring", title: "read a host key from the user keyring (@u)", mechanism: "seccomp (deny add_key/keyctl/request_key) or a user namespace; /proc/keys masked", method: "karton's default config, then the same plus a seccomp filter denying keyctl, add_key, request_key", with_kind: 3, without_kind: 0, default_applies: default_has_seccomp },
        K { id: "kernel.dmesg", title: "read the kernel log (syslog)", mechanism: "capabilities (no CAP_SYSLOG; kernel.dmesg_restrict=1)", method: "every capability, then karton's default capability set", with_kind: 0, without_kind: 1, default_applies: true },
        K { id: "kernel.proc_sys_write", title: "write a host-wide sysctl (/proc/sys)", mechanism: "readonlyPaths (/proc/sys bound read-only)", method: "no masked or read-only paths, then karton's default config", with_kind: 0, without_kind: 2, default_applies: true },
        K { id: "kernel.sysrq", title: "open /proc/sysrq-trigger for writing (never written)", mechanism: "readonlyPaths (/proc/sysrq-trigger read-only)", method: "no masked or read-only paths, then karton's default config", with_kind: 0, without_kind: 2, default_applies: true },
        K { id: "kernel.modules", title: "load a kernel module (empty image)", mechanism: "capabilities (no CAP_SYS_MODULE)", method: "every capability, then karton's default capability set", with_kind: 0, without_kind: 1, default_applies: true },
    ];
    for k in rows {
        let make = |kind: u8| {
            let mut cfg = probe_config(env, &d, k.id, &params);
            match kind {
                1 => {
                    cfg.caps(&caps);
                }
                2 => {
                    cfg.unmask();
                }
                3 => {
                    cfg.seccomp_deny(&["keyctl", "add_key", "request_key"]);
                }
                4 => {
                    cfg.seccomp_deny(&["syslog"]);
                }
                _ => {}
            }
            cfg
        };
        if k.id == "kernel.keyring" && key.serial.is_none() {
            let why = "add_key on the host failed: no keyring support";
            out.push(row(k.id, "none", k.title, k.mechanism, k.method, skip_outcome(why), skip_outcome(why)));
            continue;
        }
        let wo = run_container(env, &make(k.without_kind), k.id, &[]).0;
        let w = run_container(env, &make(k.with_kind), k.id, &[]).0;
        let default_outcome = if k.with_kind == 0 {
            w.clone()
        } else if k.without_kind == 0 {
            wo.clone()
        } else {
            run_container(env, &make(0), k.id, &[]).0
        };
        let mut r = row(k.id, "none", k.title, k.mechanism, k.method, wo, w);
        let note = keyring_default_note(k.id, k.default_applies, &default_outcome);
        r.default_config =
            Some(DefaultConfig { applies_mechanism: k.default_applies, outcome: default_outcome, note });
        out.push(r);
    }
    drop(key);
    out
}

#[cfg(test)]
mod keyring_note_tests {
    use super::*;

    fn outcome(verdict: Verdict) -> Outcome {
        Outcome { verdict, evidence: String::new(), config: String::new(), elapsed_ms: 0.0 }
    }

    #[test]
    fn keyring_row_says_the_default_is_runc_compatible_and_not_contained() {
        // `karton spec` has no seccomp: the row must not read as if karton contained it.
        let spec = karton_runtime::defaults::default_spec(false, 0, 0);
        let applies = !spec["linux"]["seccomp"].is_null();
        let note = keyring_default_note("kernel.keyring", applies, &outcome(Verdict::Leaked));
        assert!(
            note.as_deref().is_some_and(|n| n.starts_with("runc-compatible default, not contained")),
            "{note:?}"
        );
        assert_eq!(keyring_default_note("kernel.keyring", false, &outcome(Verdict::Contained)), None);
        assert_eq!(keyring_default_note("kernel.dmesg", false, &outcome(Verdict::Leaked)), None);
    }
}
