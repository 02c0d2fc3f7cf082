//! `karton workload NAME`: one built-in benchmark workload, measured by itself (run it
//! bare, or inside a container as `/karton workload NAME`).

use std::path::PathBuf;

use clap::Args;
use karton_bench::workloads::{self, Params, WORKLOADS};

#[derive(Debug, Args)]
#[command(after_help = workload_help())]
pub struct WorkloadArgs {
    /// Workload name (see the list below)
    pub name: String,
    /// primes: count primes up to N
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Operations (syscall, fork-exec, fileio random ops, tcp round trips, ipc, ns-create per worker)
    #[arg(long, value_name = "N")]
    pub iterations: Option<u64>,
    /// Data volume in MiB (mmap per chunk size, fileio file size, tcp stream)
    #[arg(long, value_name = "MIB")]
    pub total_mib: Option<u64>,
    /// fileio: directory to work in
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// ns-create: namespace type (uts, cgroup, time, pid, user, ipc, mount, network)
    #[arg(long, value_name = "TYPE")]
    pub ns: Option<String>,
    /// ns-create: concurrent worker processes
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    /// Print one JSON line (karton.bench workload output) instead of a table
    #[arg(long)]
    pub json: bool,
}

fn workload_help() -> String {
    let mut s = String::from("Workloads:\n");
    for (n, d) in WORKLOADS.iter().filter(|(n, _)| *n != "nop") {
        s.push_str(&format!("  {n:<10} {d}\n"));
    }
    s
}

pub fn run(args: WorkloadArgs, _g: &crate::Global) -> anyhow::Result<i32> {
    let p = Params {
        limit: args.limit,
        iterations: args.iterations,
        total_mib: args.total_mib,
        dir: args.dir,
        ns: args.ns,
        workers: args.workers,
    };
    let out = workloads::run(&args.name, &p)?;
    if args.name == "nop" {
        return Ok(0);
    }
    if args.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        print!("{}", out.to_text());
    }
    Ok(0)
}
