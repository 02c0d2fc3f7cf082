//! karton-probe on the real kernel. Needs root and BTF; when BPF cannot be loaded here, each
//! test returns through `karton_testkit::skip` (printed, and counted by `make test`).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

use karton_probe::{pidns_of, Probe, ProbeBuilder, ProbeError, Snapshot, StoppedCommand, Target};

const WL: &str = env!("CARGO_BIN_EXE_karton-probe-workload");
const NR_GETPPID: u32 = 110;

/// Runs `argv` stopped, attaches `b` to its process tree, lets it run to the end and
/// returns the snapshot — or None after recording the skip when BPF is unavailable (the
/// test returns at once).
fn measure(b: ProbeBuilder, argv: &[&str]) -> Option<(Snapshot, u32)> {
    let mut cmd = match StoppedCommand::spawn(argv) {
        Ok(c) => c,
        Err(e) => panic!("spawn {argv:?}: {e}"),
    };
    let pid = cmd.pid();
    let mut probe = match b.target(Target::Tgid(pid)).attach() {
        Ok(p) => p,
        Err(e @ (ProbeError::NotRoot(_) | ProbeError::NoBtf)) => {
            karton_testkit::skip(e);
            return None;
        }
        Err(e) => panic!("attach: {e}"),
    };
    for s in probe.status() {
        assert!(matches!(s.state, karton_probe::InstrumentState::Active), "instrument failed: {s:?}");
    }
    cmd.release().expect("release");
    let st = cmd.wait().expect("wait");
    assert!(st.success(), "{argv:?} failed: {st}");
    let snap = probe.snapshot().expect("snapshot");
    Some((snap, pid))
}

fn strace_getppid_calls(argv: &[&str]) -> Option<u64> {
    let out = Command::new("strace")
        .args(["-c", "-f", "-e", "trace=getppid", "-o", "/dev/stderr"])
        .args(argv)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.trim_end().ends_with(" getppid"))?;
    // % time, seconds, usecs/call, calls, [errors,] syscall
    line.split_whitespace().nth(3)?.parse().ok()
}

#[test]
fn getppid_counted_exactly_and_only_under_its_own_key() {
    let argv = [WL, "nested", "1000", "3000"];
    let Some((snap, _pid)) = measure(Probe::builder().syscalls(true), &argv) else {
        return;
    };
    let host = pidns_of(std::process::id()).expect("own pid ns");
    let rows: Vec<_> =
        snap.syscalls.expect("syscalls section").rows.into_iter().filter(|r| r.nr == NR_GETPPID).collect();
    assert_eq!(rows.len(), 2, "getppid under exactly two keys (host ns, nested ns): {rows:?}");
    let outer = rows.iter().find(|r| r.key == host).expect("host-ns key");
    let inner = rows.iter().find(|r| r.key != host).expect("nested-ns key");
    assert_eq!(outer.count, 1000, "host-ns getppid count");
    assert_eq!(inner.count, 3000, "nested-ns getppid count");
    assert_eq!(outer.errors + inner.errors, 0);
    match strace_getppid_calls(&argv) {
        Some(n) => assert_eq!(n, outer.count + inner.count, "strace -c -f disagrees"),
        // The BPF counts above were checked; only the cross-check with strace is skipped.
        None => karton_testkit::skip("the strace cross-check: strace not usable here"),
    }
}

/// A process in a new pid namespace, held on its stdin until the probe is attached:
/// (unshare child, pid-ns inode of the held process).
fn held_in_new_pidns(script: &str) -> (std::process::Child, u64) {
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child", "sh", "-c"])
        .arg(format!("read _; {script}"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("unshare");
    let outer = pidns_of(std::process::id()).expect("own ns");
    let start = std::time::Instant::now();
    loop {
        let tree = karton_probe::process_tree(child.id());
        if let Some(ns) = tree.iter().filter_map(|p| pidns_of(*p).ok()).find(|n| *n != outer) {
            return (child, ns);
        }
        assert!(start.elapsed().as_secs() < 10, "no process in a new pid ns");
        let _ = child.try_wait();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn container_key_counts_exactly_with_the_storage_free_path() {
    container_key_counts_exactly(false);
}

#[test]
fn container_key_counts_exactly_with_latency() {
    container_key_counts_exactly(true);
}

fn container_key_counts_exactly(latency: bool) {
    // Creating the pid namespace needs root as much as BPF does.
    if !nix::unistd::geteuid().is_root() {
        return karton_testkit::skip("needs root (a new pid namespace, eBPF)");
    }
    let (mut child, ns) = held_in_new_pidns(&format!("exec {WL} getppid 4321"));
    let b = Probe::builder().syscalls(true).syscall_latency(latency).target(Target::PidNs(ns));
    let mut probe = match b.attach() {
        Ok(p) => p,
        Err(e @ (ProbeError::NotRoot(_) | ProbeError::NoBtf)) => {
            let _ = child.kill();
            let _ = child.wait();
            return karton_testkit::skip(e);
        }
        Err(e) => panic!("attach: {e}"),
    };
    // Let it go, and make host-side getppid noise that must not be counted.
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("release");
    }
    for _ in 0..500 {
        let _ = nix::unistd::getppid();
    }
    assert!(child.wait().expect("wait").success());
    let rows = probe.snapshot().expect("snapshot").syscalls.expect("syscalls").rows;
    assert!(rows.iter().all(|r| r.key == ns), "only the target's key: {rows:?}");
    let g = rows.iter().find(|r| r.nr == NR_GETPPID).expect("getppid row");
    assert_eq!(g.count, 4321);
    if latency {
        assert_eq!(g.latency.as_ref().map(|h| h.count), Some(4321), "{g:?}");
    }
}

#[test]
fn keys_beyond_the_fast_path_slots_count_exactly_too() {
    // One slot: the first key seen takes it, the other goes through the fallback hash.
    let b = Probe::builder().syscall_latency(true).syscall_slots(1);
    let Some((snap, _)) = measure(b, &[WL, "nested", "2000", "700"]) else {
        return;
    };
    let host = pidns_of(std::process::id()).expect("own pid ns");
    let rows: Vec<_> =
        snap.syscalls.expect("syscalls").rows.into_iter().filter(|r| r.nr == NR_GETPPID).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        let want = if r.key == host { 2000 } else { 700 };
        assert_eq!(r.count, want, "{r:?}");
        assert_eq!(r.latency.as_ref().map(|h| h.count), Some(want));
    }
}

#[test]
fn syscall_latency_histogram_counts_every_call() {
    let Some((snap, _)) = measure(Probe::builder().syscall_latency(true), &[WL, "getppid", "5000"]) else {
        return;
    };
    let r =
        snap.syscalls.expect("syscalls").rows.into_iter().find(|r| r.nr == NR_GETPPID).expect("getppid row");
    assert_eq!(r.count, 5000);
    let h = r.latency.expect("latency histogram");
    assert_eq!(h.count, 5000);
    assert_eq!(h.buckets.iter().sum::<u64>(), 5000);
    assert!(h.mean_ns() > 0.0);
}

#[test]
fn touching_n_fresh_pages_yields_at_least_n_faults() {
    let n = 5000;
    let Some((snap, _)) = measure(Probe::builder().faults(true), &[WL, "pages", "5000"]) else {
        return;
    };
    let total: u64 = snap.faults.expect("faults").rows.iter().map(|r| r.faults).sum();
    assert!(total >= n, "{total} faults < {n} pages");
}

#[test]
fn peak_rss_at_exit_covers_the_touched_pages() {
    let pages = 20000u64; // 78 MiB
    let Some((snap, pid)) = measure(Probe::builder().faults(true), &[WL, "pages", "20000"]) else {
        return;
    };
    let rss = snap.peak_rss.expect("peak_rss section").rows;
    let me = rss.iter().find(|r| r.pid == pid).unwrap_or_else(|| panic!("no row for {pid}: {rss:?}"));
    assert!(me.peak_rss_kib >= pages * 4, "{} KiB < {} KiB touched", me.peak_rss_kib, pages * 4);
    assert!(me.peak_rss_kib < pages * 4 + 64 * 1024, "{} KiB: far above what was touched", me.peak_rss_kib);
}

#[test]
fn container_faults_count_the_touched_pages() {
    if !nix::unistd::geteuid().is_root() {
        return karton_testkit::skip("needs root (a new pid namespace, eBPF)");
    }
    let (mut child, ns) = held_in_new_pidns(&format!("exec {WL} pages 5000"));
    let mut probe = match Probe::builder().faults(true).target(Target::PidNs(ns)).attach() {
        Ok(p) => p,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            if matches!(e, ProbeError::NotRoot(_) | ProbeError::NoBtf) {
                return karton_testkit::skip(e);
            }
            panic!("attach: {e}");
        }
    };
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"go\n").expect("release");
    }
    assert!(child.wait().expect("wait").success());
    let rows = probe.snapshot().expect("snapshot").faults.expect("faults").rows;
    assert!(rows.iter().all(|r| r.key == ns), "only the target's key: {rows:?}");
    let n: u64 = rows.iter().map(|r| r.faults).sum();
    assert!(n >= 5000, "{n} faults < 5000 pages");
}

#[test]
fn unshare_net_costs_more_than_unshare_uts() {
    let script = format!("{WL} unshare uts 5 && {WL} unshare net 5");
    let Some((snap, _)) = measure(Probe::builder().nsops(true), &["sh", "-c", &script]) else {
        return;
    };
    let rows = snap.nsops.expect("nsops").rows;
    let get = |ns: &str| {
        rows.iter()
            .find(|r| r.call == "unshare" && r.namespaces == [ns.to_string()])
            .unwrap_or_else(|| panic!("no unshare({ns}) row in {rows:?}"))
            .clone()
    };
    let (net, uts) = (get("net"), get("uts"));
    assert_eq!(net.latency.count, 5);
    assert_eq!(uts.latency.count, 5);
    assert!(
        net.latency.mean_ns() > uts.latency.mean_ns(),
        "net {} ns <= uts {} ns",
        net.latency.mean_ns(),
        uts.latency.mean_ns()
    );
}

#[test]
fn timeline_has_fork_before_exec_before_exit() {
    let Some((snap, pid)) = measure(Probe::builder().timeline(true), &[WL, "spawn", "/bin/true"]) else {
        return;
    };
    let ev = snap.timeline.expect("timeline").rows;
    let fork = ev.iter().find(|e| e.kind == "fork" && e.ppid == pid && !e.thread).expect("fork of the child");
    let child = fork.pid;
    let exec = ev.iter().find(|e| e.kind == "exec" && e.pid == child).expect("exec by the child");
    let exit = ev.iter().find(|e| e.kind == "exit" && e.pid == child).expect("exit of the child");
    assert_eq!(exec.file, "/bin/true");
    assert!(fork.ts_ns < exec.ts_ns && exec.ts_ns < exit.ts_ns, "{fork:?} {exec:?} {exit:?}");
    // The command itself: exec of the workload (held before exec until attach), then exit.
    assert!(ev.iter().any(|e| e.kind == "exec" && e.pid == pid));
    assert!(ev.iter().any(|e| e.kind == "exit" && e.pid == pid));
}

#[test]
fn sched_sees_switches_and_cpu_time() {
    let Some((snap, _)) = measure(Probe::builder().sched(true), &["sh", "-c", "sleep 0.05; sleep 0.05"])
    else {
        return;
    };
    let rows = snap.sched.expect("sched").rows;
    let switches: u64 = rows.iter().map(|r| r.switches).sum();
    let runq: u64 = rows.iter().map(|r| r.runq.count).sum();
    assert!(switches >= 2, "switches {switches}");
    assert!(runq >= 2, "run-queue samples {runq}");
    assert!(rows.iter().map(|r| r.oncpu_ns).sum::<u64>() > 0);
}

#[test]
fn footprint_sees_kernel_functions() {
    let Some((snap, _)) =
        measure(Probe::builder().footprint(true).sample_hz(4999), &[WL, "getppid", "3000000"])
    else {
        return;
    };
    let fp = snap.footprint.expect("footprint");
    assert!(fp.instrument.contains("APPROXIMATION"));
    let kernel: u64 = fp.rows.iter().map(|r| r.kernel_samples).sum();
    assert!(kernel > 0, "no kernel samples");
    assert!(
        fp.rows.iter().flat_map(|r| &r.functions).any(|f| !f.function.starts_with("0x")),
        "nothing symbolized"
    );
    let tp = snap.tracepoints.expect("tracepoints section");
    assert!(tp.instrument.contains("APPROXIMATION"));
    let row = tp.rows.first().expect("a key with tracepoints hit");
    assert!(row.attached > 100 && row.attached <= row.listed, "{} of {}", row.attached, row.listed);
    let names: Vec<&str> =
        tp.rows.iter().flat_map(|r| r.tracepoints.iter().map(|t| t.name.as_str())).collect();
    for want in ["sys_enter", "sys_exit", "sched_process_exit"] {
        assert!(names.contains(&want), "{want} not among {names:?}");
    }
}

/// Sends `bytes` over a loopback TCP connection inside this process; returns what arrived.
fn loopback_tcp(bytes: usize) -> usize {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got += n,
                Err(e) => panic!("read: {e}"),
            }
        }
    });
    let mut c = std::net::TcpStream::connect(addr).expect("connect");
    let chunk = vec![0x5au8; 16 * 1024];
    let mut sent = 0;
    while sent < bytes {
        c.write_all(&chunk).expect("write");
        sent += chunk.len();
    }
    drop(c);
    reader.join().expect("reader thread")
}

#[test]
fn softirq_sees_net_rx_time_of_loopback_tcp() {
    // System-wide: the target does not filter softirqs.
    let mut probe = match Probe::builder().softirq(true).attach() {
        Ok(p) => p,
        Err(e @ (ProbeError::NotRoot(_) | ProbeError::NoBtf)) => return karton_testkit::skip(e),
        Err(e) => panic!("attach: {e}"),
    };
    for s in probe.status() {
        assert!(matches!(s.state, karton_probe::InstrumentState::Active), "instrument failed: {s:?}");
    }
    let bytes = 8 << 20;
    assert_eq!(loopback_tcp(bytes), bytes);
    let sec = probe.snapshot().expect("snapshot").softirq.expect("softirq section");
    assert_eq!(sec.rows.len(), karton_probe::SOFTIRQ_NAMES.len(), "one row per vector: {:?}", sec.rows);
    let rx = sec.rows.iter().find(|r| r.name == "NET_RX").expect("NET_RX row");
    // Loopback delivery is a NET_RX softirq per packet batch (netif_rx -> backlog).
    assert!(rx.count > 0 && rx.total_ns > 0, "{rx:?}");
    eprintln!("softirq over {bytes} bytes of loopback TCP: {:?}", sec.rows);
}
