//! The victim and stressor loops that run inside containers (`karton audit victim …`,
//! `karton audit stress …`). Each has its own wall-time limit and prints JSON lines.
//!
//! Victims: `primes` (count primes below 20 000 by trial division, again and again: the
//! compute-bound workload of Anjali et al., VEE'20) and `tcp-rr` (64-byte request/response
//! over TCP on the container's own loopback). Each prints one line with its throughput per
//! interval.
//!
//! Stressors, the six of the Isolation Benchmark Suite (Matthews et al., 2007): `cpu`,
//! `memory`, `fork`, `disk`, `net-send`, `net-recv`. Each prints a progress line every
//! 250 ms, so the last line stands even when the kernel kills the stressor.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::AuditError;

pub const STRESSORS: [&str; 6] = ["cpu", "memory", "fork", "disk", "net-send", "net-recv"];
pub const VICTIMS: [&str; 2] = ["primes", "tcp-rr"];

/// Unit of a victim's throughput.
pub fn victim_unit(kind: &str) -> &'static str {
    match kind {
        "primes" => "prime sweeps (to 20 000) per second",
        _ => "round trips per second",
    }
}

/// Unit of a stressor's progress.
pub fn stressor_unit(kind: &str) -> &'static str {
    match kind {
        "cpu" => "spin iterations/s (millions)",
        "memory" => "MiB allocated or re-touched (one write per page)/s",
        "fork" => "processes started/s",
        "disk" => "MiB written+fsynced/s",
        "net-send" => "UDP datagrams sent/s (thousands)",
        _ => "MiB received/s",
    }
}

fn count_primes(limit: u32) -> u32 {
    let mut c = 0;
    for n in 2..limit {
        let mut p = true;
        let mut d = 2;
        while d * d <= n {
            if n % d == 0 {
                p = false;
                break;
            }
            d += 1;
        }
        if p {
            c += 1;
        }
    }
    c
}

/// Runs victim `kind` for `secs`, sampling its throughput every `interval_ms`; prints
/// `{"victim":…, "interval_ms":…, "samples":[…]}` (rates per second) unless `quiet`.
pub fn victim_main(kind: &str, secs: f64, interval_ms: u64, quiet: bool) -> Result<(), AuditError> {
    let interval = Duration::from_millis(interval_ms.max(10));
    let end = Instant::now() + Duration::from_secs_f64(secs.clamp(0.1, 600.0));
    let mut samples = Vec::new();
    match kind {
        "primes" => {
            let mut t0 = Instant::now();
            let mut ops = 0u64;
            let mut sink = 0u32;
            while Instant::now() < end {
                sink = sink.wrapping_add(count_primes(20_000));
                ops += 1;
                let el = t0.elapsed();
                if el >= interval {
                    samples.push(ops as f64 / el.as_secs_f64());
                    ops = 0;
                    t0 = Instant::now();
                }
            }
            if sink == 0 {
                return Err(AuditError::Host("primes: no primes found".into()));
            }
        }
        "tcp-rr" => {
            let l = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| AuditError::Io {
                what: "tcp-rr: bind 127.0.0.1 (is lo up?)".into(),
                source: e,
            })?;
            let addr = l.local_addr().map_err(|e| AuditError::Io { what: "tcp-rr".into(), source: e })?;
            let server = std::thread::spawn(move || {
                if let Ok((mut s, _)) = l.accept() {
                    let _ = s.set_nodelay(true);
                    let mut buf = [0u8; 64];
                    while s.read_exact(&mut buf).is_ok() {
                        if s.write_all(&buf).is_err() {
                            break;
                        }
                    }
                }
            });
            let mut c = TcpStream::connect(addr)
                .map_err(|e| AuditError::Io { what: "tcp-rr: connect".into(), source: e })?;
            let _ = c.set_nodelay(true);
            let mut buf = [7u8; 64];
            let mut t0 = Instant::now();
            let mut ops = 0u64;
            while Instant::now() < end {
                c.write_all(&buf).map_err(|e| AuditError::Io { what: "tcp-rr: send".into(), source: e })?;
                c.read_exact(&mut buf)
                    .map_err(|e| AuditError::Io { what: "tcp-rr: recv".into(), source: e })?;
                ops += 1;
                let el = t0.elapsed();
                if el >= interval {
                    samples.push(ops as f64 / el.as_secs_f64());
                    ops = 0;
                    t0 = Instant::now();
                }
            }
            drop(c);
            let _ = server.join();
        }
        other => return Err(AuditError::Host(format!("unknown victim {other:?}: use primes or tcp-rr"))),
    }
    if !quiet {
        println!("{}", json!({"victim": kind, "interval_ms": interval_ms, "samples": samples}));
    }
    Ok(())
}

struct Progress {
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// Runs stressor `kind` for at most `secs`. `mem_mib`: memory hog target; `dir`: where the
/// disk writer writes.
pub fn stress_main(kind: &str, secs: f64, mem_mib: u64, dir: &str) -> Result<(), AuditError> {
    let end = Instant::now() + Duration::from_secs_f64(secs.clamp(0.1, 600.0));
    let p = Progress { count: Arc::new(AtomicU64::new(0)), stop: Arc::new(AtomicBool::new(false)) };
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mut threads = Vec::new();
    let scale: f64 = match kind {
        "cpu" => {
            for _ in 0..cpus {
                let (c, s) = (p.count.clone(), p.stop.clone());
                threads.push(std::thread::spawn(move || {
                    let mut x = 1u64;
                    while !s.load(Ordering::Relaxed) {
                        for _ in 0..100_000 {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        }
                        c.fetch_add(100_000, Ordering::Relaxed);
                    }
                    std::hint::black_box(x);
                }));
            }
            1e-6
        }
        "memory" => {
            let (c, s) = (p.count.clone(), p.stop.clone());
            threads.push(std::thread::spawn(move || {
                let chunk = 16usize << 20;
                let mut held: Vec<Vec<u8>> = Vec::new();
                let mut i = 0usize;
                while !s.load(Ordering::Relaxed) {
                    if (held.len() as u64) * 16 < mem_mib {
                        held.push(vec![1u8; chunk]);
                    } else if !held.is_empty() {
                        // Re-touch what is held: keep the pages hot and resident.
                        let k = i % held.len();
                        let v = &mut held[k];
                        let mut j = 0;
                        while j < v.len() {
                            v[j] = v[j].wrapping_add(1);
                            j += 4096;
                        }
                        i += 1;
                    }
                    c.fetch_add(16, Ordering::Relaxed);
                }
            }));
            1.0
        }
        "fork" => {
            let (c, s) = (p.count.clone(), p.stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut kids: Vec<std::process::Child> = Vec::new();
                while !s.load(Ordering::Relaxed) {
                    match std::process::Command::new("/bin/sleep")
                        .arg("1")
                        .stdin(std::process::Stdio::null())
                        .spawn()
                    {
                        Ok(k) => {
                            kids.push(k);
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(1)),
                    }
                    kids.retain_mut(|k| !matches!(k.try_wait(), Ok(Some(_))));
                }
                for mut k in kids {
                    let _ = k.kill();
                    let _ = k.wait();
                }
            }));
            1.0
        }
        "disk" => {
            let (c, s) = (p.count.clone(), p.stop.clone());
            let path = format!("{dir}/stress.dat");
            threads.push(std::thread::spawn(move || {
                let block = vec![0x5au8; 1 << 20];
                let Ok(mut f) = std::fs::File::create(&path) else { return };
                let mut written = 0u64;
                while !s.load(Ordering::Relaxed) {
                    if f.write_all(&block).is_err() {
                        break;
                    }
                    written += 1;
                    if written.is_multiple_of(8) {
                        let _ = f.sync_data();
                        c.fetch_add(8, Ordering::Relaxed);
                    }
                    if written >= 256 {
                        let _ = f.set_len(0);
                        let _ = std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0));
                        written = 0;
                    }
                }
                let _ = std::fs::remove_file(&path);
            }));
            1.0
        }
        "net-send" => {
            let sink = UdpSocket::bind(("127.0.0.1", 0))
                .map_err(|e| AuditError::Io { what: "net-send: bind (is lo up?)".into(), source: e })?;
            let to = sink.local_addr().map_err(|e| AuditError::Io { what: "net-send".into(), source: e })?;
            for _ in 0..cpus {
                let (c, s) = (p.count.clone(), p.stop.clone());
                let tx = UdpSocket::bind(("127.0.0.1", 0))
                    .map_err(|e| AuditError::Io { what: "net-send: bind".into(), source: e })?;
                threads.push(std::thread::spawn(move || {
                    let msg = [0u8; 1400];
                    while !s.load(Ordering::Relaxed) {
                        // The sink never reads: the kernel drops what its buffer cannot hold.
                        let _ = tx.send_to(&msg, to);
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            // Keep the sink open until the end.
            std::mem::forget(sink);
            1e-3
        }
        "net-recv" => {
            let l = TcpListener::bind(("127.0.0.1", 0))
                .map_err(|e| AuditError::Io { what: "net-recv: bind (is lo up?)".into(), source: e })?;
            let addr = l.local_addr().map_err(|e| AuditError::Io { what: "net-recv".into(), source: e })?;
            let s2 = p.stop.clone();
            threads.push(std::thread::spawn(move || {
                if let Ok(mut tx) = TcpStream::connect(addr) {
                    let block = vec![1u8; 64 << 10];
                    while !s2.load(Ordering::Relaxed) {
                        if tx.write_all(&block).is_err() {
                            break;
                        }
                    }
                }
            }));
            let (c, s) = (p.count.clone(), p.stop.clone());
            threads.push(std::thread::spawn(move || {
                if let Ok((mut rx, _)) = l.accept() {
                    let _ = rx.set_read_timeout(Some(Duration::from_millis(200)));
                    let mut buf = [0u8; 4096];
                    while !s.load(Ordering::Relaxed) {
                        match rx.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                c.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(_) => {}
                        }
                    }
                }
            }));
            1.0 / (1u64 << 20) as f64
        }
        other => return Err(AuditError::Host(format!("unknown stressor {other:?}"))),
    };
    let t0 = Instant::now();
    let mut last = (Instant::now(), 0u64);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(250));
        let now = Instant::now();
        let total = p.count.load(Ordering::Relaxed);
        let rate = (total - last.1) as f64 / now.duration_since(last.0).as_secs_f64() * scale;
        last = (now, total);
        println!("{}", json!({"t": t0.elapsed().as_secs_f64(), "total": total as f64 * scale, "rate": rate}));
        let _ = std::io::stdout().flush();
    }
    p.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
