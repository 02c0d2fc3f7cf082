//! A workload with known system-call behaviour, for karton-probe's tests and overhead
//! benchmark. Usage:
//!   karton-probe-workload getppid N          N getppid(2) calls
//!   karton-probe-workload nested N1 N2       N1 getppid here, then N2 in a child in a new pid ns
//!   karton-probe-workload pages N            touch N fresh pages (one write each)
//!   karton-probe-workload unshare net|uts K  K unshare(CLONE_NEWNET|CLONE_NEWUTS) calls
//!   karton-probe-workload spawn PROG...      run PROG and wait for it

use std::process::{exit, Command};

fn arg_n(args: &[String], i: usize) -> u64 {
    match args.get(i).and_then(|s| s.parse().ok()) {
        Some(n) => n,
        None => {
            eprintln!("karton-probe-workload: argument {i} must be a number");
            exit(2)
        }
    }
}

fn getppids(n: u64) {
    for _ in 0..n {
        std::hint::black_box(nix::unistd::getppid());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("getppid") => getppids(arg_n(&args, 2)),
        Some("nested") => {
            getppids(arg_n(&args, 2));
            if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID) {
                eprintln!("karton-probe-workload: unshare(CLONE_NEWPID): {e}");
                exit(1);
            }
            // The next child is pid 1 of the new pid namespace.
            let st = Command::new(&args[0]).arg("getppid").arg(&args[3]).status();
            match st {
                Ok(s) if s.success() => {}
                other => {
                    eprintln!("karton-probe-workload: nested child: {other:?}");
                    exit(1)
                }
            }
        }
        Some("pages") => {
            let n = arg_n(&args, 2) as usize;
            // Fresh anonymous memory: every page faults on its first write.
            let mut v: Vec<u8> = Vec::with_capacity(n * 4096);
            // Writes go through the spare capacity (MaybeUninit), one byte per page.
            let spare = v.spare_capacity_mut();
            for i in 0..n {
                spare[i * 4096].write(1);
            }
            std::hint::black_box(&v);
        }
        Some("unshare") => {
            let flag = match args.get(2).map(String::as_str) {
                Some("net") => nix::sched::CloneFlags::CLONE_NEWNET,
                Some("uts") => nix::sched::CloneFlags::CLONE_NEWUTS,
                _ => {
                    eprintln!("karton-probe-workload: unshare net|uts K");
                    exit(2)
                }
            };
            for _ in 0..arg_n(&args, 3) {
                if let Err(e) = nix::sched::unshare(flag) {
                    eprintln!("karton-probe-workload: unshare: {e}");
                    exit(1);
                }
            }
        }
        Some("spawn") if args.len() > 2 => match Command::new(&args[2]).args(&args[3..]).status() {
            Ok(s) => exit(s.code().unwrap_or(1)),
            Err(e) => {
                eprintln!("karton-probe-workload: {}: {e}", args[2]);
                exit(1)
            }
        },
        _ => {
            eprintln!("usage: karton-probe-workload getppid N | nested N1 N2 | pages N | unshare net|uts K | spawn PROG...");
            exit(2)
        }
    }
}
