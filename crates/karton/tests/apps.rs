//! The application benchmarks' plumbing against the real kernel: veth and bridge + NAT
//! made with netlink carry a TCP connection and leave nothing behind; a redis row runs end
//! to end (server in a karton container per network mode, client outside) with a tiny
//! request count. Needs root; skips visibly when a package is missing. No timing is
//! asserted: the figures only have to exist.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;

use karton_bench::apps;
use karton_bench::netmode::{self, NetMode, Plumbing};
use karton_bench::runlock::{self, RunLock};

use common::{TempDir, KARTON};

/// The run lock of `karton bench`: these tests sweep links of the benchmark's names, so
/// they must never run beside a benchmark (nor beside each other).
fn lock_or_skip() -> Option<RunLock> {
    if !nix::unistd::geteuid().is_root() {
        karton_testkit::skip("needs root (network namespaces, veth, nftables)");
        return None;
    }
    for _ in 0..600 {
        if let Ok(l) = RunLock::acquire(&runlock::default_path()) {
            return Some(l);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the karton bench run lock stayed taken for 60 s");
}

/// A process in a network namespace of its own (the container stand-in).
struct NetnsHolder(Child);

impl NetnsHolder {
    fn new() -> NetnsHolder {
        NetnsHolder(Command::new("unshare").args(["--net", "sleep", "600"]).spawn().unwrap())
    }
    fn pid(&self) -> u32 {
        // unshare execs sleep in the new namespace; wait until it has.
        let mine = std::fs::read_link("/proc/self/ns/net").unwrap();
        for _ in 0..200 {
            if std::fs::read_link(format!("/proc/{}/ns/net", self.0.id())).is_ok_and(|l| l != mine) {
                return self.0.id();
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("unshare --net did not switch namespaces");
    }
}

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A listener inside the namespace of `pid` answers one connection with "pong".
fn echo_in(pid: u32, port: u16) -> std::thread::JoinHandle<()> {
    let ns = format!("/proc/{pid}/ns/net");
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        netmode::in_netns(Path::new(&ns), move || {
            let l = TcpListener::bind(("0.0.0.0", port)).unwrap();
            tx.send(()).unwrap();
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"pong").unwrap();
            Ok(())
        })
        .unwrap();
    });
    rx.recv().unwrap();
    h
}

#[test]
fn veth_and_bridge_nat_carry_tcp_and_leave_nothing() {
    let Some(_lock) = lock_or_skip() else { return };
    if !Path::new("/usr/sbin/nft").exists() {
        karton_testkit::skip("needs nft for the bridge mode (apt-get install nftables)");
        return;
    }
    {
        let _session = netmode::NetSession::open().unwrap();
        for (slot, mode) in [(0u8, NetMode::Veth), (1u8, NetMode::Bridge)] {
            let holder = NetnsHolder::new();
            let pid = holder.pid();
            let (plumbing, ep) = Plumbing::attach(mode, slot, pid, 7000).unwrap();
            let server = echo_in(pid, 7000);
            let mut s = TcpStream::connect(SocketAddr::from((ep.ip, ep.port))).unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).unwrap();
            assert_eq!(got, "pong", "{mode:?} via {ep:?}");
            server.join().unwrap();
            if mode == NetMode::Bridge {
                assert!(netmode::nft_table_exists(), "the port forward's nft table is missing");
            }
            drop(plumbing);
            drop(holder);
        }
    }
    assert_eq!(netmode::leftover_links().unwrap(), Vec::<String>::new());
    assert!(!netmode::nft_table_exists(), "nft table {} left behind", netmode::NFT_TABLE);
}

#[test]
fn a_failed_attach_leaves_nothing() {
    let Some(_lock) = lock_or_skip() else { return };
    {
        let _session = netmode::NetSession::open().unwrap();
        // No such process: the veth is made, moving it fails, the guard removes it.
        let e = Plumbing::attach(NetMode::Veth, 3, u32::MAX - 1, 7000).unwrap_err().to_string();
        assert!(e.contains("/proc/"), "{e}");
    }
    assert_eq!(netmode::leftover_links().unwrap(), Vec::<String>::new());
}

#[test]
fn a_second_run_is_refused() {
    let Some(_lock) = lock_or_skip() else { return };
    let o = Command::new(KARTON)
        .args(["bench", "--profile", "quick", "--only", "redis-p1", "--output", "/nonexistent-karton"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("another karton bench is running"), "{err}");
}

#[test]
fn a_redis_row_runs_end_to_end_in_every_mode() {
    let Some(_lock) = lock_or_skip() else { return };
    if let Some(why) = apps::missing_programs("redis") {
        karton_testkit::skip(&why);
        return;
    }
    let work = TempDir::new("apps");
    let state = work.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut plan = apps::plan("quick").unwrap();
    plan.rounds = 1;
    plan.warmups = 1;
    plan.redis_requests = 500;
    plan.probe = false;
    let stop = AtomicBool::new(false);
    let log = |l: String| eprintln!("{l}");
    let tick = || {};
    let ctx = apps::AppContext {
        exe: Path::new(KARTON),
        work: work.path(),
        state_root: &state,
        stop: &stop,
        seed: 1,
        log: &log,
        tick: &tick,
    };
    let out = apps::run(&ctx, &plan, &["redis-p1".to_string()]).unwrap();
    let rps = out.series.iter().find(|s| s.id == "redis-p1/get-rps").expect("a get-rps series");
    for r in &rps.rows {
        assert!(
            r.summary.as_ref().is_some_and(|s| s.median > 0.0),
            "{}: {:?} {:?}",
            r.config,
            r.status,
            r.reason
        );
    }
    assert_eq!(rps.rows.len(), 5);
    assert_eq!(netmode::leftover_links().unwrap(), Vec::<String>::new());
    assert!(!netmode::nft_table_exists());
    let left = std::fs::read_dir(&state).unwrap().count();
    assert_eq!(left, 0, "containers left in {}", state.display());
}
