//! linux.seccomp through the real kernel: each test forks a child, installs a profile in it
//! with `karton_runtime::seccomp::install`, runs syscalls and reports what the kernel did
//! (errno values, SIGSYS deaths, notifications). Needs root (CAP_SYS_ADMIN for the
//! capability cases). Children are always reaped, or killed after a deadline.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use karton_runtime::seccomp;
use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags, ScmpSyscall};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxSeccomp;

/// fork(2) from a multi-threaded test binary is only sound while no other test thread is
/// in the middle of something the child would inherit half-done: fork one at a time.
static FORK: Mutex<()> = Mutex::new(());

const STATE: &str =
    r#"{"ociVersion":"1.2.0","id":"seccomp-test","status":"creating","pid":1,"bundle":"/tmp"}"#;

fn profile(json: &str) -> LinuxSeccomp {
    match serde_json::from_str(json) {
        Ok(p) => p,
        Err(e) => panic!("test profile does not parse: {e}: {json}"),
    }
}

fn errno_of<T>(r: nix::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e as i32,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Privilege {
    /// prctl(PR_SET_NO_NEW_PRIVS) before install, as the init does when the config asks.
    NoNewPrivs,
    /// Keep CAP_SYS_ADMIN (root) and no no_new_privs.
    CapSysAdmin,
    /// Neither: drop CAP_SYS_ADMIN from the effective set first.
    Neither,
}

/// What became of the child.
#[derive(Debug)]
enum Outcome {
    /// The probe's results: one errno per call, 0 for success.
    Ran(Vec<i32>),
    /// install() returned this error.
    InstallFailed(String),
    /// The child died of this signal.
    Killed(Signal),
    /// Anything else; read through Debug in failure messages.
    #[allow(dead_code)]
    Other(String),
}

const EXIT_RAN: i32 = 0;
const EXIT_INSTALL_FAILED: i32 = 100;

struct Child {
    pid: Pid,
    report: std::fs::File,
}

/// Forks; the child sets up `privilege`, installs `profile`, runs `probe` and writes its
/// results to a pipe.
fn spawn(profile: &LinuxSeccomp, privilege: Privilege, probe: &dyn Fn() -> Vec<i32>) -> Child {
    spawn_with(profile, privilege, &|| None, &|_| probe())
}

/// [`spawn`] with a `before` step that runs in the child before install; what it returns
/// is handed to the probe.
fn spawn_with(
    profile: &LinuxSeccomp,
    privilege: Privilege,
    before: &dyn Fn() -> Option<Worker>,
    probe: &dyn Fn(Option<Worker>) -> Vec<i32>,
) -> Child {
    spawn_custom(&|report| {
        let worker = before();
        child_main(profile, privilege, worker, probe, report)
    })
}

/// Forks and runs `child` in the child, which writes its report to the fd it is given;
/// its return value is the exit code.
fn spawn_custom(child: &dyn Fn(&OwnedFd) -> i32) -> Child {
    let (r, w) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => panic!("pipe: {e}"),
    };
    let _one_at_a_time = FORK.lock().unwrap_or_else(|e| e.into_inner());
    match karton_sys::clone::fork_single_threaded() {
        Err(e) => panic!("fork: {e}"),
        Ok(Some(pid)) => {
            drop(w);
            Child { pid: Pid::from_raw(pid), report: std::fs::File::from(r) }
        }
        Ok(None) => {
            drop(r);
            let code = child(&w);
            karton_sys::clone::exit_now(code)
        }
    }
}

/// A thread started before install: it calls uname when told to and sends the result back.
struct Worker {
    go: std::sync::mpsc::Sender<()>,
    result: std::sync::mpsc::Receiver<i32>,
}

fn start_worker() -> Option<Worker> {
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    let (res_tx, result) = std::sync::mpsc::channel::<i32>();
    std::thread::spawn(move || {
        if go_rx.recv().is_ok() {
            let _ = res_tx.send(uname());
        }
    });
    Some(Worker { go, result })
}

fn child_main(
    profile: &LinuxSeccomp,
    privilege: Privilege,
    worker: Option<Worker>,
    probe: &dyn Fn(Option<Worker>) -> Vec<i32>,
    report: &OwnedFd,
) -> i32 {
    let prepared = match privilege {
        Privilege::NoNewPrivs => karton_sys::process::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).map(drop),
        Privilege::CapSysAdmin => Ok(()),
        Privilege::Neither => karton_sys::caps::get().and_then(|mut c| {
            c.effective &= !(1u64 << 21);
            karton_sys::caps::set(&c)
        }),
    };
    if let Err(e) = prepared {
        let _ = nix::unistd::write(report, format!("setup: {e}").as_bytes());
        return EXIT_INSTALL_FAILED;
    }
    if let Err(e) = seccomp::install(profile, std::process::id() as i32, &|| STATE.to_string()) {
        let _ = nix::unistd::write(report, e.to_string().as_bytes());
        return EXIT_INSTALL_FAILED;
    }
    let results = probe(worker);
    let text: Vec<String> = results.iter().map(|r| r.to_string()).collect();
    let _ = nix::unistd::write(report, text.join(" ").as_bytes());
    EXIT_RAN
}

impl Child {
    /// Waits up to 20 s, then kills; always reaps.
    fn wait(mut self) -> Outcome {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(WaitStatus::StillAlive) => {
                    let _ = kill(self.pid, Signal::SIGKILL);
                    let _ = waitpid(self.pid, None);
                    return Outcome::Other("child hung and was killed".into());
                }
                Ok(s) => break s,
                Err(Errno::EINTR) => continue,
                Err(e) => return Outcome::Other(format!("waitpid: {e}")),
            }
        };
        let mut text = String::new();
        let _ = self.report.read_to_string(&mut text);
        match status {
            WaitStatus::Exited(_, EXIT_RAN) => {
                Outcome::Ran(text.split_whitespace().map(|t| t.parse().unwrap_or(-1)).collect())
            }
            WaitStatus::Exited(_, EXIT_INSTALL_FAILED) => Outcome::InstallFailed(text),
            WaitStatus::Signaled(_, sig, _) => Outcome::Killed(sig),
            other => Outcome::Other(format!("{other:?}: {text}")),
        }
    }
}

fn run(profile: &LinuxSeccomp, probe: &dyn Fn() -> Vec<i32>) -> Outcome {
    spawn(profile, Privilege::NoNewPrivs, probe).wait()
}

fn ran(outcome: Outcome) -> Vec<i32> {
    match outcome {
        Outcome::Ran(v) => v,
        other => panic!("child did not run its probe: {other:?}"),
    }
}

fn uname() -> i32 {
    errno_of(nix::sys::utsname::uname())
}

fn getcwd() -> i32 {
    errno_of(nix::unistd::getcwd())
}

fn personality(v: i32) -> i32 {
    errno_of(nix::sys::personality::set(nix::sys::personality::Persona::from_bits_retain(v)))
}

fn errno_rule_returns_its_errno_and_leaves_other_calls_alone() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["uname"],"action":"SCMP_ACT_ERRNO","errnoRet":95},
            {"names":["getppid","getcwd"],"action":"SCMP_ACT_ERRNO"}]}"#,
    );
    let got = ran(run(&p, &|| vec![uname(), getcwd(), errno_of(nix::unistd::getcwd().map(drop)), 0]));
    assert_eq!(got, vec![libc::EOPNOTSUPP, libc::EPERM, libc::EPERM, 0]);
}

fn default_errno_ret_answers_unlisted_syscalls() {
    // An allow-list just wide enough for the child to report and exit.
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":13,"syscalls":[
            {"names":["write","exit","exit_group","brk","mmap","munmap","mremap","madvise","futex",
                       "rt_sigprocmask","rt_sigreturn","sigaltstack","close"],"action":"SCMP_ACT_ALLOW"}]}"#,
    );
    let got = ran(run(&p, &|| vec![uname(), getcwd()]));
    assert_eq!(got, vec![libc::EACCES, libc::EACCES]);
}

fn kill_process_kills_with_sigsys() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_KILL_PROCESS"}]}"#,
    );
    match run(&p, &|| vec![uname()]) {
        Outcome::Killed(sig) => assert_eq!(sig, Signal::SIGSYS),
        other => panic!("expected death by SIGSYS, got {other:?}"),
    }
}

fn kill_thread_and_kill_end_a_single_threaded_child_with_sigsys() {
    for action in ["SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL"] {
        let p = profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["uname"],"action":"{action}"}}]}}"#
        ));
        match run(&p, &|| vec![uname()]) {
            Outcome::Killed(sig) => assert_eq!(sig, Signal::SIGSYS, "{action}"),
            other => panic!("{action}: expected death by SIGSYS, got {other:?}"),
        }
    }
}

fn trap_raises_sigsys() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_TRAP"}]}"#,
    );
    match run(&p, &|| vec![uname()]) {
        Outcome::Killed(sig) => assert_eq!(sig, Signal::SIGSYS),
        other => panic!("expected SIGSYS, got {other:?}"),
    }
}

fn trace_without_a_tracer_fails_with_enosys() {
    // seccomp(2): with no tracer attached, SECCOMP_RET_TRACE makes the call fail with ENOSYS.
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_TRACE","errnoRet":5}]}"#,
    );
    assert_eq!(ran(run(&p, &|| vec![uname()])), vec![libc::ENOSYS]);
}

fn log_lets_the_call_through_and_the_log_flag_logs_errno() {
    // SCMP_ACT_LOG is always logged; an errno action only with SECCOMP_FILTER_FLAG_LOG. The
    // record carries the action without its data (code=0x50000 for any errno).
    // Without auditd the kernel prints audit records (type=1326) to the kernel log.
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls":[{"names":["uname"],"action":"SCMP_ACT_LOG"},{"names":["getppid"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    );
    let nr = |name: &str| ScmpSyscall::from_name(name).map(i32::from).unwrap_or(-1);
    let want = [(nr("uname"), "code=0x7ffc0000"), (nr("getppid"), "code=0x50000")];
    // printk rate-limits audit records (10 per 5 s): other tests' SIGSYS deaths may use the
    // budget up, so try again after the window.
    let mut last = String::new();
    for attempt in 0..4 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(5));
        }
        let child = spawn(&p, Privilege::NoNewPrivs, &|| {
            let _ = nix::unistd::getppid();
            vec![uname(), getcwd()]
        });
        let pid = child.pid;
        assert_eq!(ran(child.wait()), vec![0, 0]);
        let log = kernel_log();
        let found = want.iter().all(|(nr, code)| {
            log.lines().any(|l| {
                l.contains("type=1326")
                    && l.contains(&format!(" pid={pid} "))
                    && l.contains(&format!(" syscall={nr} "))
                    && l.contains(code)
            })
        });
        if found {
            return;
        }
        last = log.lines().filter(|l| l.contains("type=1326")).map(|l| format!("{l}\n")).collect();
    }
    panic!("no audit records for uname (log) and getppid (errno + LOG flag); seccomp records seen:\n{last}");
}

/// The kernel log as /dev/kmsg has it now (needs root).
fn kernel_log() -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let mut out = String::new();
    let Ok(mut kmsg) =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg")
    else {
        return out;
    };
    let mut buf = vec![0u8; 16384];
    loop {
        match kmsg.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.push_str(&String::from_utf8_lossy(&buf[..n]));
                if !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            // EPIPE: a record was overwritten while we read; go on with the next one.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    out
}

fn masked_eq_matches_by_mask() {
    // Deny any persona with ADDR_NO_RANDOMIZE (0x0040000) set, whatever the other bits.
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":95,
            "args":[{"index":0,"value":262144,"valueTwo":262144,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
    );
    let got = ran(run(&p, &|| {
        vec![personality(0x0040000), personality(0x0440000), personality(0x0400000), personality(0)]
    }));
    assert_eq!(got, vec![95, 95, 0, 0]);
}

fn every_operator_compares_the_argument() {
    let m = libc::EOPNOTSUPP;
    let cases = [
        ("SCMP_CMP_NE", [m, 0, m]),
        ("SCMP_CMP_LT", [m, 0, 0]),
        ("SCMP_CMP_LE", [m, m, 0]),
        ("SCMP_CMP_EQ", [0, m, 0]),
        ("SCMP_CMP_GE", [0, m, m]),
        ("SCMP_CMP_GT", [0, 0, m]),
    ];
    for (op, want) in cases {
        let p = profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":95,
                "args":[{{"index":0,"value":5,"op":"{op}"}}]}}]}}"#
        ));
        let got = ran(run(&p, &|| vec![personality(4), personality(5), personality(6)]));
        assert_eq!(got, want.to_vec(), "{op}");
    }
}

fn conditions_on_one_argument_twice_match_either() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":95,
            "args":[{"index":0,"value":4,"op":"SCMP_CMP_EQ"},{"index":0,"value":6,"op":"SCMP_CMP_EQ"}]}]}"#,
    );
    let got = ran(run(&p, &|| vec![personality(4), personality(5), personality(6)]));
    assert_eq!(got, vec![95, 0, 95]);
}

fn unknown_syscall_name_is_skipped() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["karton_no_such_syscall","uname"],"action":"SCMP_ACT_ERRNO","errnoRet":95}]}"#,
    );
    assert_eq!(ran(run(&p, &|| vec![uname()])), vec![95]);
}

fn install_needs_no_new_privs_or_cap_sys_admin() {
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_ERRNO","errnoRet":95}]}"#,
    );
    assert_eq!(ran(spawn(&p, Privilege::CapSysAdmin, &|| vec![uname()]).wait()), vec![95]);
    match spawn(&p, Privilege::Neither, &|| vec![uname()]).wait() {
        Outcome::InstallFailed(msg) => {
            assert!(msg.contains("noNewPrivileges") && msg.contains("CAP_SYS_ADMIN"), "{msg}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn tsync_puts_the_filter_on_every_thread() {
    // A thread that exists before install is filtered only with TSYNC.
    let probe = |worker: Option<Worker>| {
        let from_worker = match worker {
            Some(w) if w.go.send(()).is_ok() => w.result.recv_timeout(Duration::from_secs(5)).unwrap_or(-1),
            _ => -1,
        };
        vec![from_worker, uname()]
    };
    for (flags, want) in [(r#"["SECCOMP_FILTER_FLAG_TSYNC"]"#, vec![95, 95]), ("[]", vec![0, 95])] {
        let p = profile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","flags":{flags},
                "syscalls":[{{"names":["uname"],"action":"SCMP_ACT_ERRNO","errnoRet":95}}]}}"#
        ));
        let got = ran(spawn_with(&p, Privilege::NoNewPrivs, &start_worker, &probe).wait());
        assert_eq!(got, want, "flags {flags}");
    }
}

fn default_profile_allows_ordinary_calls_and_denies_the_rest() {
    let p = seccomp::default_profile();
    let got = ran(run(&p, &|| {
        use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
        let clone3 = match karton_sys::clone::clone3_single_threaded(0, None) {
            Ok(karton_sys::clone::Forked::Child) => karton_sys::clone::exit_now(0),
            Ok(karton_sys::clone::Forked::Parent { .. }) => 0,
            Err(e) => e.errno as i32,
        };
        vec![
            uname(),
            getcwd(),
            personality(0),
            personality(0x0040000),
            errno_of(nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS)),
            errno_of(socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)),
            errno_of(socket(AddressFamily::Vsock, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)),
            clone3,
        ]
    }));
    assert_eq!(got, vec![0, 0, 0, libc::EPERM, libc::EPERM, 0, libc::EPERM, libc::ENOSYS]);
}

fn notify_sends_the_listener_fd_and_state_and_the_agent_answers() {
    notify_round_trip(false);
}

fn notify_works_when_prepared_before_the_root_changes() {
    // As in the init: connect to the host's listenerPath before pivot_root (here: chroot
    // into an empty directory), install at the end.
    notify_round_trip(true);
}

fn notify_round_trip(change_root: bool) {
    let dir = std::env::temp_dir().join(format!("karton-seccomp-test-{}-{change_root}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let empty_root = dir.join("root");
    if let Err(e) = std::fs::create_dir_all(&empty_root) {
        panic!("{}: {e}", empty_root.display());
    }
    let sock_path = dir.join("agent.sock");
    let listener = match UnixListener::bind(&sock_path) {
        Ok(l) => l,
        Err(e) => panic!("bind {}: {e}", sock_path.display()),
    };
    let _ = listener.set_nonblocking(true);
    let p = profile(&format!(
        r#"{{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"{}","listenerMetadata":"karton-test",
            "flags":["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV","SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls":[{{"names":["uname"],"action":"SCMP_ACT_NOTIFY"}}]}}"#,
        sock_path.display()
    ));
    let child = if change_root {
        spawn_custom(&|report| {
            let fail = |msg: String| {
                let _ = nix::unistd::write(report, msg.as_bytes());
                EXIT_INSTALL_FAILED
            };
            if let Err(e) = karton_sys::process::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0) {
                return fail(format!("no_new_privs: {e}"));
            }
            let prepared = match seccomp::prepare(&p) {
                Ok(prepared) => prepared,
                Err(e) => return fail(e.to_string()),
            };
            if let Err(e) = nix::unistd::chroot(&empty_root).and_then(|_| nix::unistd::chdir("/")) {
                return fail(format!("chroot: {e}"));
            }
            if let Err(e) = prepared.install(std::process::id() as i32, &|| STATE.to_string()) {
                return fail(e.to_string());
            }
            let _ = nix::unistd::write(report, format!("{} {}", uname(), getcwd()).as_bytes());
            EXIT_RAN
        })
    } else {
        spawn(&p, Privilege::NoNewPrivs, &|| vec![uname(), getcwd()])
    };
    let result = agent(&listener, child.pid);
    let outcome = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let (message, notified_pid) = match result {
        Ok(v) => v,
        Err(e) => panic!("agent: {e}; child: {outcome:?}"),
    };
    assert_eq!(ran(outcome), vec![libc::EHOSTDOWN, 0]);
    let v: serde_json::Value = serde_json::from_slice(&message).unwrap_or_default();
    assert_eq!(v["ociVersion"], "1.2.0", "{v}");
    assert_eq!(v["fds"], serde_json::json!(["seccompFd"]));
    assert_eq!(v["pid"].as_i64(), Some(i64::from(notified_pid)));
    assert_eq!(v["metadata"], "karton-test");
    assert_eq!(v["state"]["id"], "seccomp-test");
}

/// A minimal seccomp agent: accepts one connection, takes the listener fd and the state,
/// answers the first notification (uname) with EHOSTDOWN. Returns the message and the pid
/// the notification came from.
fn agent(listener: &UnixListener, child: Pid) -> Result<(Vec<u8>, i32), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = vec![0u8; 4096];
    let (n, fd) = karton_sys::seccomp::recv_fd(stream.as_fd(), &mut buf).map_err(|e| e.to_string())?;
    let fd = fd.ok_or("no fd came with the message")?;
    let mut message = buf[..n].to_vec();
    let mut stream = stream;
    stream.read_to_end(&mut message).map_err(|e| format!("reading the state: {e}"))?;
    let req = ScmpNotifReq::receive(fd.as_raw_fd()).map_err(|e| format!("receive: {e}"))?;
    let uname = ScmpSyscall::from_name("uname").map_err(|e| e.to_string())?;
    if req.data.syscall != uname {
        return Err(format!("notified of syscall {:?}, wanted uname", req.data.syscall));
    }
    if req.pid as i32 != child.as_raw() {
        return Err(format!("notification from pid {}, wanted {child}", req.pid));
    }
    ScmpNotifResp::new_error(req.id, -libc::EHOSTDOWN, ScmpNotifRespFlags::empty())
        .respond(fd.as_raw_fd())
        .map_err(|e| format!("respond: {e}"))?;
    Ok((message, child.as_raw()))
}

fn overlapping_rules_resolve_as_in_runc() {
    // libseccomp's rules, which runc and crun share: of two unconditional rules for one
    // syscall the first wins; an unconditional rule overrides conditional ones.
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_ERRNO","errnoRet":95},{"names":["uname"],"action":"SCMP_ACT_KILL_PROCESS"}]}"#,
    );
    assert_eq!(ran(run(&p, &|| vec![uname()])), vec![95]);
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["uname"],"action":"SCMP_ACT_KILL_PROCESS"},{"names":["uname"],"action":"SCMP_ACT_ERRNO","errnoRet":95}]}"#,
    );
    match run(&p, &|| vec![uname()]) {
        Outcome::Killed(sig) => assert_eq!(sig, Signal::SIGSYS),
        other => panic!("expected SIGSYS, got {other:?}"),
    }
    let p = profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":95,"args":[{"index":0,"value":4,"op":"SCMP_CMP_EQ"}]},{"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":13}]}"#,
    );
    assert_eq!(ran(run(&p, &|| vec![personality(4), personality(5)])), vec![13, 13]);
}

fn main() {
    karton_testkit::single_thread::run(&[
        (
            "errno_rule_returns_its_errno_and_leaves_other_calls_alone",
            errno_rule_returns_its_errno_and_leaves_other_calls_alone,
        ),
        ("default_errno_ret_answers_unlisted_syscalls", default_errno_ret_answers_unlisted_syscalls),
        ("kill_process_kills_with_sigsys", kill_process_kills_with_sigsys),
        (
            "kill_thread_and_kill_end_a_single_threaded_child_with_sigsys",
            kill_thread_and_kill_end_a_single_threaded_child_with_sigsys,
        ),
        ("trap_raises_sigsys", trap_raises_sigsys),
        ("trace_without_a_tracer_fails_with_enosys", trace_without_a_tracer_fails_with_enosys),
        (
            "log_lets_the_call_through_and_the_log_flag_logs_errno",
            log_lets_the_call_through_and_the_log_flag_logs_errno,
        ),
        ("masked_eq_matches_by_mask", masked_eq_matches_by_mask),
        ("every_operator_compares_the_argument", every_operator_compares_the_argument),
        ("conditions_on_one_argument_twice_match_either", conditions_on_one_argument_twice_match_either),
        ("unknown_syscall_name_is_skipped", unknown_syscall_name_is_skipped),
        ("install_needs_no_new_privs_or_cap_sys_admin", install_needs_no_new_privs_or_cap_sys_admin),
        ("tsync_puts_the_filter_on_every_thread", tsync_puts_the_filter_on_every_thread),
        (
            "default_profile_allows_ordinary_calls_and_denies_the_rest",
            default_profile_allows_ordinary_calls_and_denies_the_rest,
        ),
        (
            "notify_sends_the_listener_fd_and_state_and_the_agent_answers",
            notify_sends_the_listener_fd_and_state_and_the_agent_answers,
        ),
        (
            "notify_works_when_prepared_before_the_root_changes",
            notify_works_when_prepared_before_the_root_changes,
        ),
        ("overlapping_rules_resolve_as_in_runc", overlapping_rules_resolve_as_in_runc),
    ]);
}
