//! Overhead of each instrument per event, measured on this process.
//!
//! Method: a loop of N getppid(2) calls (or N first-touch page faults, or N one-byte UDP
//! datagrams over loopback to the same socket, each one NET_RX softirq), timed with
//! CLOCK_THREAD_CPUTIME_ID (the loop thread's own CPU time, user + system, so that other
//! load on the machine does not count; BPF programs run in the syscall, on this thread's
//! time), alternating passes without probes (A) and with one instrument attached
//! (B): A B A B … for R rounds. Cost per event = median over rounds of (B - A) / N.
//! Attach and detach happen outside the timed region. Run as root, release build:
//!   cargo run --release -p karton-probe --example overhead [-- N ROUNDS [NAME-FILTER]]

use karton_probe::{Probe, ProbeBuilder, Target};

#[derive(Clone, Copy)]
enum Work {
    Getppid,
    Faults,
    /// send + recv of one byte on a loopback UDP socket connected to itself: the NET_RX
    /// softirq runs at the send's local_bh_enable() on this thread, and this kernel has no
    /// IRQ_TIME_ACCOUNTING, so its time is in the thread's CPU time.
    Udp,
}

fn udp_socket() -> std::net::UdpSocket {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| {
        eprintln!("bind 127.0.0.1: {e}");
        std::process::exit(1)
    });
    let own = s.local_addr().and_then(|a| s.connect(a));
    if let Err(e) = own {
        eprintln!("connecting the UDP socket to itself: {e}");
        std::process::exit(1)
    }
    s
}

fn cpu_ns() -> f64 {
    use nix::time::{clock_gettime, ClockId};
    match clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID) {
        Ok(t) => t.tv_sec() as f64 * 1e9 + t.tv_nsec() as f64,
        Err(e) => {
            eprintln!("clock_gettime(CLOCK_THREAD_CPUTIME_ID): {e}");
            std::process::exit(1)
        }
    }
}

fn run(work: Work, n: u64, udp: &std::net::UdpSocket) -> f64 {
    let t = cpu_ns();
    match work {
        Work::Getppid => {
            for _ in 0..n {
                std::hint::black_box(nix::unistd::getppid());
            }
        }
        Work::Faults => {
            let mut v: Vec<u8> = Vec::with_capacity(n as usize * 4096);
            let spare = v.spare_capacity_mut();
            for i in 0..n as usize {
                spare[i * 4096].write(1);
            }
            std::hint::black_box(&v);
        }
        Work::Udp => {
            let mut buf = [0u8; 1];
            for _ in 0..n {
                if udp.send(&[1]).and_then(|_| udp.recv(&mut buf)).is_err() {
                    eprintln!("loopback UDP send/recv failed");
                    std::process::exit(1)
                }
            }
        }
    }
    cpu_ns() - t
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5_000_000);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(7);
    // Optional third argument: run only the cases whose name contains it.
    let only = args.get(3).cloned().unwrap_or_default();
    let nf = 50_000u64; // page faults per pass (200 MiB)
    let nu = 200_000u64; // loopback datagrams per pass
    let udp = udp_socket();
    let me = std::process::id();
    let own_ns = match karton_probe::pidns_of(me) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    };
    let cases: Vec<(&str, Work, ProbeBuilder)> = vec![
        (
            "floor: empty tp_btf sys_exit program",
            Work::Getppid,
            Probe::builder().syscalls(true).calibration_empty_program(true).target(Target::Tgid(me)),
        ),
        (
            "syscalls counter (sys_exit), target task",
            Work::Getppid,
            Probe::builder().syscalls(true).target(Target::Tgid(me)),
        ),
        (
            "syscalls counter, Target::PidNs (container)",
            Work::Getppid,
            Probe::builder().syscalls(true).target(Target::PidNs(own_ns)),
        ),
        (
            "syscalls counter (sys_exit), non-target task",
            Work::Getppid,
            Probe::builder().syscalls(true).target(Target::Tgid(1)),
        ),
        (
            "syscalls counter, Target::All (pid-ns key)",
            Work::Getppid,
            Probe::builder().syscalls(true).target(Target::All),
        ),
        (
            "syscalls + latency, Target::PidNs (container)",
            Work::Getppid,
            Probe::builder().syscall_latency(true).target(Target::PidNs(own_ns)),
        ),
        (
            "syscalls + latency histogram, target task",
            Work::Getppid,
            Probe::builder().syscall_latency(true).target(Target::Tgid(me)),
        ),
        (
            "nsops, tax on an unrelated syscall",
            Work::Getppid,
            Probe::builder().nsops(true).target(Target::Tgid(me)),
        ),
        ("sched, tax on a syscall", Work::Getppid, Probe::builder().sched(true).target(Target::Tgid(me))),
        (
            "timeline, tax on a syscall",
            Work::Getppid,
            Probe::builder().timeline(true).target(Target::Tgid(me)),
        ),
        (
            "footprint 999 Hz, tax on a syscall",
            Work::Getppid,
            Probe::builder().instrument(karton_probe::Instrument::Footprint, true).target(Target::Tgid(me)),
        ),
        (
            "footprint tracepoints (raw_tp on all), tax on a syscall",
            Work::Getppid,
            Probe::builder().instrument(karton_probe::Instrument::Tracepoints, true).target(Target::Tgid(me)),
        ),
        (
            "faults, Target::PidNs, per user page fault",
            Work::Faults,
            Probe::builder().faults(true).target(Target::PidNs(own_ns)),
        ),
        ("faults, per user page fault", Work::Faults, Probe::builder().faults(true).target(Target::Tgid(me))),
        ("softirq, per loopback UDP datagram (1 NET_RX)", Work::Udp, Probe::builder().softirq(true)),
    ];
    println!("karton-probe overhead: N={n} getppid per pass, {nf} faults per pass, {rounds} rounds A/B interleaved, thread CPU time");
    println!(
        "{:<46} {:>12} {:>12} {:>12}  mechanism",
        "instrument", "base ns/ev", "with ns/ev", "added ns/ev"
    );
    for (name, work, b) in cases.into_iter().filter(|c| c.0.contains(only.as_str())) {
        let n_ev = match work {
            Work::Getppid => n,
            Work::Faults => nf,
            Work::Udp => nu,
        };
        run(work, n_ev / 10, &udp); // warm-up
        let mut base = Vec::new();
        let mut with = Vec::new();
        let mut deltas = Vec::new();
        let mut mech = String::new();
        let mut failed = None;
        for _ in 0..rounds {
            let a = run(work, n_ev, &udp) / n_ev as f64;
            let probe = match b.clone().attach() {
                Ok(p) => p,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            };
            if let Some(s) =
                probe.status().iter().find(|s| !matches!(s.state, karton_probe::InstrumentState::Active))
            {
                failed = Some(format!("{:?}", s.state));
                break;
            }
            mech = probe.status().iter().map(|s| s.mechanism.clone()).collect::<Vec<_>>().join(", ");
            let bb = run(work, n_ev, &udp) / n_ev as f64;
            drop(probe);
            base.push(a);
            with.push(bb);
            deltas.push(bb - a);
        }
        match failed {
            Some(e) => println!("{name:<46} REFUSED: {e}"),
            None => {
                let (ba, wi, d) = (median(base), median(with), median(deltas.clone()));
                println!("{name:<46} {ba:>12.1} {wi:>12.1} {d:>12.1}  {mech}");
                println!(
                    "{}",
                    serde_json::json!({"instrument": name, "events_per_pass": n_ev, "rounds": rounds,
                        "base_ns": ba, "with_ns": wi, "added_ns_median": d, "added_ns_all": deltas, "mechanism": mech})
                );
            }
        }
    }
}
