//! The built-in workloads. Each measures itself and returns its figures; `karton workload
//! NAME` runs one (inside a container or bare) and prints them.
//!
//! fork-exec and ns-create fork: they must run in a single-threaded process (the karton
//! binary's main thread), as `karton workload` does.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

use crate::results::{Metric, WorkloadOutput};
use crate::stats::{self, Rng};
use crate::BenchError;

/// Workloads `karton workload` runs: name and what it measures.
pub const WORKLOADS: &[(&str, &str)] = &[
    ("primes", "compute-bound: count primes up to --limit by trial division (after Anjali et al., VEE'20); wall and thread-CPU ms"),
    ("syscall", "getppid loop of --iterations calls; wall and thread-CPU ns per call"),
    ("fork-exec", "fork + execve(self, nop) + exit + wait, --iterations times; µs per cycle"),
    ("mmap", "mmap + touch every page + munmap of --total-mib in all, split evenly over chunk sizes 4 KiB…1 MiB; ns per page"),
    ("fileio", "file I/O in --dir: sequential write (fsync) and read of --total-mib, random 4 KiB writes (fsync) and reads"),
    ("tcp", "loopback TCP: 64-byte request/response (--iterations) and a --total-mib stream"),
    ("ipc", "ping-pong of 64-byte messages over pipe, unix socket, SysV message queue, POSIX mqueue (--iterations)"),
    ("ns-create", "unshare(--ns) in forked children, --workers concurrent workers × --iterations; destroy = exit + reap"),
    ("sysbench", "external, when installed: sysbench cpu (events/s), memory (MiB/s), threads (ms); --iterations events, --total-mib memory"),
    ("nop", "does nothing (the exec target of fork-exec)"),
];

/// Namespace types, as in config.json, with their clone flag.
pub const NS_TYPES: &[(&str, u64)] = &[
    ("uts", libc::CLONE_NEWUTS as u64),
    ("cgroup", libc::CLONE_NEWCGROUP as u64),
    ("time", 0x80),
    ("pid", libc::CLONE_NEWPID as u64),
    ("user", libc::CLONE_NEWUSER as u64),
    ("ipc", libc::CLONE_NEWIPC as u64),
    ("mount", libc::CLONE_NEWNS as u64),
    ("network", libc::CLONE_NEWNET as u64),
];

/// Parameters; every workload uses a few and has defaults for the rest.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub limit: Option<u64>,
    pub iterations: Option<u64>,
    pub total_mib: Option<u64>,
    pub dir: Option<PathBuf>,
    pub ns: Option<String>,
    pub workers: Option<u32>,
}

fn valid_names() -> String {
    WORKLOADS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// Checks a workload name.
pub fn check_name(name: &str) -> Result<(), BenchError> {
    if WORKLOADS.iter().any(|(n, _)| *n == name) {
        Ok(())
    } else {
        Err(BenchError::UnknownWorkload { name: name.into(), valid: valid_names() })
    }
}

/// Runs workload `name`.
pub fn run(name: &str, p: &Params) -> Result<WorkloadOutput, BenchError> {
    check_name(name)?;
    let metrics = match name {
        "primes" => primes(p.limit.unwrap_or(2_000_000)),
        "syscall" => syscall(p.iterations.unwrap_or(2_000_000)),
        "fork-exec" => fork_exec(p.iterations.unwrap_or(200))?,
        "mmap" => mmap(p.total_mib.unwrap_or(1024))?,
        "fileio" => fileio(
            p.dir.as_deref().unwrap_or(Path::new("/tmp")),
            p.total_mib.unwrap_or(256),
            p.iterations.unwrap_or(4096),
        )?,
        "tcp" => tcp(p.iterations.unwrap_or(20_000), p.total_mib.unwrap_or(1024))?,
        "ipc" => ipc(p.iterations.unwrap_or(20_000))?,
        "ns-create" => {
            let ns = p
                .ns
                .as_deref()
                .ok_or_else(|| wl("ns-create", format!("--ns TYPE is required: one of {}", ns_names())))?;
            ns_create(ns, p.workers.unwrap_or(1), p.iterations.unwrap_or(50))?
        }
        "sysbench" => sysbench(p.iterations.unwrap_or(2000), p.total_mib.unwrap_or(1024))?,
        _ => Vec::new(),
    };
    Ok(WorkloadOutput { workload: name.into(), metrics })
}

fn wl(workload: &str, why: impl Into<String>) -> BenchError {
    BenchError::Workload { workload: workload.into(), why: why.into() }
}

fn metric(name: &str, unit: &str, value: f64, higher_is_better: bool) -> Metric {
    Metric { name: name.into(), unit: unit.into(), value, higher_is_better, samples: Vec::new() }
}

fn ns_names() -> String {
    NS_TYPES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}

/// Number of primes ≤ limit, by trial division with odd divisors.
pub fn count_primes(limit: u64) -> u64 {
    if limit < 2 {
        return 0;
    }
    let mut count = 1; // 2
    let mut n = 3;
    while n <= limit {
        let mut prime = true;
        let mut d = 3;
        while d * d <= n {
            if n % d == 0 {
                prime = false;
                break;
            }
            d += 2;
        }
        count += prime as u64;
        n += 2;
    }
    count
}

/// CPU time of the calling thread in ns (user + system): unlike wall time, it does not
/// count the time other processes held the CPU.
fn thread_cpu_ns() -> f64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as f64 * 1e9 + t.tv_nsec() as f64)
        .unwrap_or(f64::NAN)
}

fn primes(limit: u64) -> Vec<Metric> {
    let c0 = thread_cpu_ns();
    let t = Instant::now();
    let c = count_primes(black_box(limit));
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let cpu_ms = (thread_cpu_ns() - c0) / 1e6;
    black_box(c);
    vec![metric("time", "ms", ms, false), metric("cpu", "ms", cpu_ms, false)]
}

fn syscall(n: u64) -> Vec<Metric> {
    let c0 = thread_cpu_ns();
    let t = Instant::now();
    for _ in 0..n {
        black_box(nix::unistd::getppid());
    }
    let wall = t.elapsed().as_nanos() as f64 / n.max(1) as f64;
    let cpu = (thread_cpu_ns() - c0) / n.max(1) as f64;
    vec![metric("getppid", "ns/call", wall, false), metric("getppid-cpu", "ns/call", cpu, false)]
}

fn fork_exec(n: u64) -> Result<Vec<Metric>, BenchError> {
    let exe =
        std::env::current_exe().map_err(BenchError::io("finding the karton executable (/proc/self/exe)"))?;
    let cexe = std::ffi::CString::new(exe.as_os_str().as_encoded_bytes())
        .map_err(|e| wl("fork-exec", e.to_string()))?;
    let args = [cexe.clone(), c"workload".to_owned(), c"nop".to_owned()];
    let t = Instant::now();
    for _ in 0..n {
        match karton_sys::clone::fork_single_threaded().map_err(|e| wl("fork-exec", e.to_string()))? {
            None => {
                let _ = nix::unistd::execv(&cexe, &args);
                karton_sys::clone::exit_now(127);
            }
            Some(pid) => match waitpid(Pid::from_raw(pid), None) {
                Ok(WaitStatus::Exited(_, 0)) => {}
                other => {
                    return Err(wl("fork-exec", format!("child {} ended with {other:?}", exe.display())))
                }
            },
        }
    }
    Ok(vec![metric("cycle", "us", t.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64, false)])
}

/// Chunk sizes of the mmap workload.
pub const MMAP_CHUNKS: &[(usize, &str)] =
    &[(4 << 10, "4k"), (16 << 10, "16k"), (64 << 10, "64k"), (256 << 10, "256k"), (1 << 20, "1m")];

fn mmap(total_mib: u64) -> Result<Vec<Metric>, BenchError> {
    // The total is split evenly across the chunk sizes.
    let total = ((total_mib.max(1) as usize) << 20) / MMAP_CHUNKS.len();
    let mut out = Vec::new();
    for (chunk, label) in MMAP_CHUNKS {
        let maps = (total / chunk).max(1);
        let t = Instant::now();
        for _ in 0..maps {
            let mut m = memmap2::MmapMut::map_anon(*chunk)
                .map_err(BenchError::io(format!("mmap of {chunk} bytes")))?;
            for off in (0..*chunk).step_by(4096) {
                m[off] = 1;
            }
            black_box(&m);
        }
        let pages = (maps * chunk / 4096) as f64;
        out.push(metric(label, "ns/page", t.elapsed().as_nanos() as f64 / pages, false));
    }
    Ok(out)
}

fn fileio(dir: &Path, total_mib: u64, ops: u64) -> Result<Vec<Metric>, BenchError> {
    use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
    let path = dir.join(format!(".karton-fileio-{}", std::process::id()));
    let size = (total_mib.max(1) as usize) << 20;
    let block = vec![0x5au8; 1 << 20];
    let io = |what: &str| BenchError::io(format!("{what} {}", path.display()));
    struct Remove<'a>(&'a Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io("creating"))?;
    let _guard = Remove(&path);
    let drop_cache = |f: &File| {
        let _ = posix_fadvise(f.as_fd(), 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED);
    };
    let mut out = Vec::new();
    let mib = size as f64 / (1 << 20) as f64;

    let t = Instant::now();
    for _ in 0..size / block.len() {
        f.write_all(&block).map_err(io("writing"))?;
    }
    f.sync_all().map_err(io("fsync of"))?;
    out.push(metric("seq-write", "MiB/s", mib / t.elapsed().as_secs_f64(), true));
    drop_cache(&f);

    let mut buf = vec![0u8; 1 << 20];
    let t = Instant::now();
    let mut off = 0u64;
    loop {
        let n = f.read_at(&mut buf, off).map_err(io("reading"))?;
        if n == 0 {
            break;
        }
        off += n as u64;
    }
    out.push(metric("seq-read", "MiB/s", mib / t.elapsed().as_secs_f64(), true));

    let pages = (size / 4096) as u64;
    let mut rng = Rng::new(0x6b61_7274_6f6e);
    let page = vec![0xa5u8; 4096];
    let t = Instant::now();
    for _ in 0..ops {
        let p = rng.below(pages as usize) as u64;
        f.write_all_at(&page, p * 4096).map_err(io("writing"))?;
    }
    f.sync_all().map_err(io("fsync of"))?;
    out.push(metric("rand-write", "IOPS", ops as f64 / t.elapsed().as_secs_f64(), true));
    drop_cache(&f);

    let mut pbuf = vec![0u8; 4096];
    let t = Instant::now();
    for _ in 0..ops {
        let p = rng.below(pages as usize) as u64;
        f.read_exact_at(&mut pbuf, p * 4096).map_err(io("reading"))?;
    }
    out.push(metric("rand-read", "IOPS", ops as f64 / t.elapsed().as_secs_f64(), true));
    f.flush().map_err(io("flushing"))?;
    Ok(out)
}

/// In a fresh network namespace the loopback is down (runc leaves it so too): bring it up
/// once with `ip link set lo up` (needs CAP_NET_ADMIN there).
fn loopback_up(e: &std::io::Error) -> Result<(), BenchError> {
    let st = std::process::Command::new("ip").args(["link", "set", "lo", "up"]).status();
    if matches!(st, Ok(s) if s.success()) {
        Ok(())
    } else {
        Err(wl("tcp", format!("loopback is down and `ip link set lo up` failed ({st:?}): {e}")))
    }
}

fn down(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL) | Some(libc::ENETUNREACH) | Some(libc::ENETDOWN))
}

fn bind_loopback() -> Result<TcpListener, BenchError> {
    match TcpListener::bind("127.0.0.1:0") {
        Ok(l) => Ok(l),
        Err(e) if down(&e) => {
            loopback_up(&e)?;
            TcpListener::bind("127.0.0.1:0").map_err(BenchError::io("binding 127.0.0.1"))
        }
        Err(e) => Err(BenchError::Io { what: "binding 127.0.0.1".into(), source: e }),
    }
}

fn connect_loopback(addr: std::net::SocketAddr) -> Result<TcpStream, BenchError> {
    match TcpStream::connect(addr) {
        Ok(s) => Ok(s),
        Err(e) if down(&e) => {
            loopback_up(&e)?;
            TcpStream::connect(addr).map_err(BenchError::io("connecting over loopback"))
        }
        Err(e) => Err(BenchError::Io { what: "connecting over loopback".into(), source: e }),
    }
}

fn tcp(iterations: u64, total_mib: u64) -> Result<Vec<Metric>, BenchError> {
    let l = bind_loopback()?;
    let addr = l.local_addr().map_err(BenchError::io("local address"))?;
    let server = thread::spawn(move || -> std::io::Result<()> {
        // Request/response connection.
        let (mut s, _) = l.accept()?;
        s.set_nodelay(true)?;
        let mut m = [0u8; 64];
        loop {
            match s.read_exact(&mut m) {
                Ok(()) => s.write_all(&m)?,
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        // Stream connection.
        let (mut s, _) = l.accept()?;
        let mut buf = vec![0u8; 256 << 10];
        while s.read(&mut buf)? > 0 {}
        s.write_all(&[1])?;
        Ok(())
    });
    let io = |w: &'static str| BenchError::io(w);
    let mut c = connect_loopback(addr)?;
    c.set_nodelay(true).map_err(io("TCP_NODELAY"))?;
    let mut m = [7u8; 64];
    let t = Instant::now();
    for _ in 0..iterations {
        c.write_all(&m).map_err(io("tcp send"))?;
        c.read_exact(&mut m).map_err(io("tcp receive"))?;
    }
    let rr = t.elapsed().as_secs_f64() * 1e6 / iterations.max(1) as f64;
    drop(c);
    let mut s = TcpStream::connect(addr).map_err(io("connecting over loopback"))?;
    let chunk = vec![3u8; 128 << 10];
    let total = (total_mib.max(1) as usize) << 20;
    let t = Instant::now();
    for _ in 0..total / chunk.len() {
        s.write_all(&chunk).map_err(io("tcp stream send"))?;
    }
    s.shutdown(Shutdown::Write).map_err(io("tcp shutdown"))?;
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).map_err(io("tcp stream ack"))?;
    let mibs = (total as f64 / (1 << 20) as f64) / t.elapsed().as_secs_f64();
    match server.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(BenchError::Io { what: "tcp server".into(), source: e }),
        Err(_) => return Err(wl("tcp", "server thread panicked")),
    }
    Ok(vec![metric("rr", "us/round-trip", rr, false), metric("stream", "MiB/s", mibs, true)])
}

/// Ping-pong between this thread and an echo thread; `ping` sends and waits for the echo.
fn pingpong<S, C>(n: u64, server: S, mut ping: C) -> Result<f64, BenchError>
where
    S: FnOnce() -> std::io::Result<()> + Send + 'static,
    C: FnMut() -> std::io::Result<()>,
{
    let h = thread::spawn(server);
    let t = Instant::now();
    for _ in 0..n {
        ping().map_err(BenchError::io("ping-pong"))?;
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64;
    h.join().map_err(|_| wl("ipc", "echo thread panicked"))?.map_err(BenchError::io("echo thread"))?;
    Ok(us)
}

fn nix_io(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from(e)
}

fn ipc(n: u64) -> Result<Vec<Metric>, BenchError> {
    let mut out = Vec::new();
    let warn = |what: &str, e: BenchError| eprintln!("karton workload ipc: {what} skipped: {e}");

    // pipe: two pipes, one per direction.
    let r: Result<f64, BenchError> = (|| {
        let (a_r, a_w) = nix::unistd::pipe().map_err(|e| wl("ipc", format!("pipe: {e}")))?;
        let (b_r, b_w) = nix::unistd::pipe().map_err(|e| wl("ipc", format!("pipe: {e}")))?;
        let (mut ar, mut aw, mut br, mut bw) =
            (File::from(a_r), File::from(a_w), File::from(b_r), File::from(b_w));
        let mut m = [1u8; 64];
        pingpong(
            n,
            move || {
                let mut m = [0u8; 64];
                for _ in 0..n {
                    ar.read_exact(&mut m)?;
                    bw.write_all(&m)?;
                }
                Ok(())
            },
            || {
                aw.write_all(&m)?;
                br.read_exact(&mut m)
            },
        )
    })();
    match r {
        Ok(v) => out.push(metric("pipe", "us/round-trip", v, false)),
        Err(e) => warn("pipe", e),
    }

    let r: Result<f64, BenchError> = (|| {
        let (mut a, mut b) = UnixStream::pair().map_err(BenchError::io("socketpair"))?;
        let mut m = [2u8; 64];
        pingpong(
            n,
            move || {
                let mut m = [0u8; 64];
                for _ in 0..n {
                    b.read_exact(&mut m)?;
                    b.write_all(&m)?;
                }
                Ok(())
            },
            || {
                a.write_all(&m)?;
                a.read_exact(&mut m)
            },
        )
    })();
    match r {
        Ok(v) => out.push(metric("unix", "us/round-trip", v, false)),
        Err(e) => warn("unix socket", e),
    }

    let r: Result<f64, BenchError> = (|| {
        let q = Arc::new(karton_sys::ipc::MsgQueue::new_private().map_err(|e| wl("ipc", e.to_string()))?);
        let qs = Arc::clone(&q);
        let mut m = [3u8; 64];
        pingpong(
            n,
            move || {
                let mut m = [0u8; 64];
                for _ in 0..n {
                    qs.recv(1, &mut m).map_err(|e| nix_io(e.errno))?;
                    qs.send(2, &m).map_err(|e| nix_io(e.errno))?;
                }
                Ok(())
            },
            || {
                q.send(1, &m).map_err(|e| nix_io(e.errno))?;
                q.recv(2, &mut m).map(|_| ()).map_err(|e| nix_io(e.errno))
            },
        )
    })();
    match r {
        Ok(v) => out.push(metric("sysv-msg", "us/round-trip", v, false)),
        Err(e) => warn("SysV message queue", e),
    }

    match posix_mq(n) {
        Ok(v) => out.push(metric("posix-mq", "us/round-trip", v, false)),
        Err(e) => warn("POSIX mqueue", e),
    }
    if out.is_empty() {
        return Err(wl("ipc", "no IPC mechanism worked"));
    }
    Ok(out)
}

fn posix_mq(n: u64) -> Result<f64, BenchError> {
    use nix::mqueue::{mq_close, mq_open, mq_receive, mq_send, mq_unlink, MQ_OFlag, MqAttr};
    use nix::sys::stat::Mode;
    let pid = std::process::id();
    let na = format!("/karton-bench-{pid}-a");
    let nb = format!("/karton-bench-{pid}-b");
    let attr = MqAttr::new(0, 8, 64, 0);
    let flags = MQ_OFlag::O_CREAT | MQ_OFlag::O_RDWR;
    let mode = Mode::from_bits_truncate(0o600);
    let mqe = |e: nix::errno::Errno| wl("ipc", format!("mq_open: {e}"));
    let qa = mq_open(na.as_str(), flags, mode, Some(&attr)).map_err(mqe)?;
    let qb = match mq_open(nb.as_str(), flags, mode, Some(&attr)) {
        Ok(q) => q,
        Err(e) => {
            let _ = mq_unlink(na.as_str());
            return Err(mqe(e));
        }
    };
    let (na2, nb2) = (na.clone(), nb.clone());
    let mut m = [4u8; 64];
    let mut prio = 0u32;
    let r = pingpong(
        n,
        move || {
            let ra = mq_open(na2.as_str(), MQ_OFlag::O_RDWR, Mode::empty(), None).map_err(nix_io)?;
            let rb = mq_open(nb2.as_str(), MQ_OFlag::O_RDWR, Mode::empty(), None).map_err(nix_io)?;
            let mut m = [0u8; 64];
            let mut p = 0u32;
            for _ in 0..n {
                mq_receive(&ra, &mut m, &mut p).map_err(nix_io)?;
                mq_send(&rb, &m, 0).map_err(nix_io)?;
            }
            let _ = mq_close(ra);
            let _ = mq_close(rb);
            Ok(())
        },
        || {
            mq_send(&qa, &m, 0).map_err(nix_io)?;
            mq_receive(&qb, &mut m, &mut prio).map(|_| ()).map_err(nix_io)
        },
    );
    let _ = mq_close(qa);
    let _ = mq_close(qb);
    let _ = mq_unlink(na.as_str());
    let _ = mq_unlink(nb.as_str());
    r
}

const REC_UNSHARE: u64 = 1;
const REC_CYCLE: u64 = 2;
const REC_ERROR: u64 = 3;

fn ns_create(ns: &str, workers: u32, iterations: u64) -> Result<Vec<Metric>, BenchError> {
    let flag = NS_TYPES
        .iter()
        .find(|(n, _)| *n == ns || (ns == "mnt" && *n == "mount") || (ns == "net" && *n == "network"))
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            wl("ns-create", format!("unknown namespace type {ns:?}: valid types are {}", ns_names()))
        })?;
    let workers = workers.max(1);
    let sys = |e: nix::errno::Errno| wl("ns-create", format!("pipe: {e}"));
    let (rec_r, rec_w) = nix::unistd::pipe().map_err(sys)?;
    let (go_r, go_w) = nix::unistd::pipe().map_err(sys)?;
    let mut pids = Vec::new();
    for _ in 0..workers {
        match karton_sys::clone::fork_single_threaded().map_err(|e| wl("ns-create", e.to_string()))? {
            None => {
                drop(go_w);
                drop(rec_r);
                worker(flag, iterations, &go_r, &rec_w)
            }
            Some(pid) => pids.push(pid),
        }
    }
    drop(rec_w);
    drop(go_r);
    let start = Instant::now();
    drop(go_w); // EOF on go_r: every worker starts now.
    let mut file = File::from(rec_r);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(BenchError::io("reading worker records"))?;
    for pid in &pids {
        let _ = waitpid(Pid::from_raw(*pid), None);
    }
    let wall = start.elapsed();
    let (mut unshare, mut cycle) = (Vec::new(), Vec::new());
    for rec in bytes.chunks_exact(16) {
        let kind = u64::from_ne_bytes(rec[..8].try_into().unwrap_or_default());
        let val = u64::from_ne_bytes(rec[8..].try_into().unwrap_or_default());
        match kind {
            REC_UNSHARE => unshare.push(val as f64 / 1e3),
            REC_CYCLE => cycle.push(val as f64 / 1e3),
            REC_ERROR => {
                return Err(wl(
                    "ns-create",
                    format!("unshare({ns}): {}", nix::errno::Errno::from_raw(val as i32).desc()),
                ));
            }
            _ => {}
        }
    }
    if unshare.is_empty() {
        return Err(wl("ns-create", "no namespace was created"));
    }
    let ops = unshare.len() as f64;
    Ok(vec![
        Metric {
            name: "unshare".into(),
            unit: "us".into(),
            value: stats::median(&unshare),
            higher_is_better: false,
            samples: unshare,
        },
        Metric {
            name: "cycle".into(),
            unit: "us".into(),
            value: stats::median(&cycle),
            higher_is_better: false,
            samples: cycle,
        },
        metric("throughput", "ns/s", ops / wall.as_secs_f64().max(1e-9), true),
    ])
}

fn put(fd: &OwnedFd, kind: u64, val: u64) {
    let mut rec = [0u8; 16];
    rec[..8].copy_from_slice(&kind.to_ne_bytes());
    rec[8..].copy_from_slice(&val.to_ne_bytes());
    let _ = nix::unistd::write(fd, &rec);
}

/// A forked worker: waits for the start signal, then forks `iterations` children that each
/// unshare once and exit. Never returns.
fn worker(flag: u64, iterations: u64, go: &OwnedFd, rec: &OwnedFd) -> ! {
    let mut b = [0u8; 1];
    let _ = nix::unistd::read(go, &mut b);
    for _ in 0..iterations {
        let t0 = Instant::now();
        match karton_sys::clone::fork_single_threaded() {
            Ok(None) => {
                let t = Instant::now();
                let r = karton_sys::ns::unshare(flag);
                let d = t.elapsed();
                match r {
                    Ok(()) => put(rec, REC_UNSHARE, d.as_nanos() as u64),
                    Err(e) => put(rec, REC_ERROR, e.errno as i32 as u64),
                }
                karton_sys::clone::exit_now(0);
            }
            Ok(Some(pid)) => {
                let _ = waitpid(Pid::from_raw(pid), None);
                put(rec, REC_CYCLE, t0.elapsed().as_nanos() as u64);
            }
            Err(e) => {
                put(rec, REC_ERROR, e.errno as i32 as u64);
                break;
            }
        }
    }
    karton_sys::clone::exit_now(0)
}

/// Runs `sysbench ARGS` and returns its standard output.
fn sysbench_run(args: &[String]) -> Result<String, BenchError> {
    let o = std::process::Command::new("sysbench").args(args).output().map_err(|e| {
        wl(
            "sysbench",
            if e.kind() == ErrorKind::NotFound {
                "sysbench is not installed (apt-get install sysbench)".to_string()
            } else {
                e.to_string()
            },
        )
    })?;
    if !o.status.success() {
        return Err(wl(
            "sysbench",
            format!(
                "sysbench {} exited with {}: {}",
                args.join(" "),
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The number after `key` on its line ("total time:   1.0267s" → 1.0267).
fn sysbench_field(out: &str, key: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.contains(key))?;
    let rest = &line[line.find(key)? + key.len()..];
    rest.trim().trim_start_matches(':').trim().trim_end_matches('s').parse().ok()
}

fn sysbench(events: u64, mem_mib: u64) -> Result<Vec<Metric>, BenchError> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let bad = |what: &str, out: &str| {
        wl("sysbench", format!("no {what:?} in the output of sysbench: {}", out.trim()))
    };
    let cpu = sysbench_run(
        &[
            s(&["cpu", "--cpu-max-prime=10000", "--threads=1", "--time=0"]),
            vec![format!("--events={}", events.max(1))],
            s(&["run"]),
        ]
        .concat(),
    )?;
    let eps = sysbench_field(&cpu, "events per second").ok_or_else(|| bad("events per second", &cpu))?;
    let mem = sysbench_run(
        &[
            s(&["memory", "--threads=1", "--time=0"]),
            vec![format!("--memory-total-size={}M", mem_mib.max(1))],
            s(&["run"]),
        ]
        .concat(),
    )?;
    let mibs = mem
        .lines()
        .find(|l| l.contains("MiB transferred ("))
        .and_then(|l| l.split('(').nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| bad("MiB transferred", &mem))?;
    let thr = sysbench_run(
        &[
            s(&["threads", "--threads=2", "--time=0"]),
            vec![format!("--events={}", (events / 10).max(1))],
            s(&["run"]),
        ]
        .concat(),
    )?;
    let secs = sysbench_field(&thr, "total time").ok_or_else(|| bad("total time", &thr))?;
    Ok(vec![
        metric("cpu", "events/s", eps, true),
        metric("memory", "MiB/s", mibs, true),
        metric("threads", "ms", secs * 1e3, false),
    ])
}

/// Plausibility window for a figure (used by tests and by the runner's sanity checks).
pub fn plausible(m: &Metric) -> bool {
    m.value.is_finite() && m.value > 0.0 && m.value < 1e12
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sysbench_output_is_parsed() {
        let out = "General statistics:\n    total time:                          1.0267s\n    events per second:  1946.68\n";
        assert_eq!(sysbench_field(out, "total time"), Some(1.0267));
        assert_eq!(sysbench_field(out, "events per second"), Some(1946.68));
        assert_eq!(sysbench_field(out, "latency"), None);
    }

    #[test]
    fn prime_counts_are_right() {
        assert_eq!(count_primes(1), 0);
        assert_eq!(count_primes(2), 1);
        assert_eq!(count_primes(100), 25);
        assert_eq!(count_primes(100_000), 9592);
    }

    #[test]
    fn unknown_workload_lists_the_valid_names() {
        let e = run("nosuch", &Params::default()).unwrap_err().to_string();
        assert!(e.contains("primes") && e.contains("ns-create"), "{e}");
    }

    #[test]
    fn in_process_workloads_give_plausible_figures() {
        let o = run("primes", &Params { limit: Some(20_000), ..Default::default() }).unwrap();
        assert!(o.metrics.iter().all(plausible));
        let o = run("syscall", &Params { iterations: Some(10_000), ..Default::default() }).unwrap();
        assert!(o.metrics[0].value > 1.0 && o.metrics[0].value < 1e6, "{o:?}");
        let o = run("mmap", &Params { total_mib: Some(4), ..Default::default() }).unwrap();
        assert_eq!(o.metrics.len(), MMAP_CHUNKS.len());
        assert!(o.metrics.iter().all(plausible));
        let d = tempfile::tempdir().unwrap();
        let o = run(
            "fileio",
            &Params {
                dir: Some(d.path().into()),
                total_mib: Some(4),
                iterations: Some(64),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(o.metrics.len(), 4);
        assert!(o.metrics.iter().all(plausible), "{o:?}");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "fileio left its file behind");
        let o = run("ipc", &Params { iterations: Some(500), ..Default::default() }).unwrap();
        assert!(o.metrics.len() >= 2 && o.metrics.iter().all(plausible), "{o:?}");
        let o =
            run("tcp", &Params { iterations: Some(200), total_mib: Some(8), ..Default::default() }).unwrap();
        assert_eq!(o.metrics.len(), 2);
        assert!(o.metrics.iter().all(plausible), "{o:?}");
    }
}
