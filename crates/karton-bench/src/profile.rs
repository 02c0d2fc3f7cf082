//! Profiles: what runs and how long. `quick` fits in 5 minutes on a 2-core VM; `full` is
//! the thesis-grade run.

use crate::matrix;
use crate::BenchError;

/// One benchmark: a workload invocation measured across configurations.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    /// Series prefix: "primes", "fileio-rootfs".
    pub id: String,
    pub workload: String,
    /// Arguments after `karton workload` inside a container.
    pub args: Vec<String>,
    /// The same for a bare run (paths differ: the host sees the rootfs from outside).
    pub bare_args: Vec<String>,
    pub configs: Vec<String>,
    /// Stop adding rounds after this many seconds (once min_rounds are done).
    pub budget_s: f64,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub warmups: u32,
    pub min_rounds: u32,
    pub max_rounds: u32,
    pub target_ci_pct: f64,
    pub resamples: u32,
    pub benches: Vec<BenchSpec>,
    pub ns_types: Vec<String>,
    pub ns_workers: Vec<u32>,
    pub ns_iterations: u64,
    pub ns_rounds: u32,
    pub lifecycle_rounds: u32,
    pub lifecycle_budget_s: f64,
    /// Rounds of the `create` peak-RSS measurement (each runtime once per round).
    pub lifecycle_rss_rounds: u32,
    /// Density: numbers of containers, and how many start in parallel.
    pub density_n: Vec<u32>,
    pub density_parallel: Vec<u32>,
    /// Repetitions of every density cell.
    pub density_reps: u32,
    /// The start-rate cell (N, parallel, repetitions): karton vs crun at scale.
    pub density_rate: (u32, u32, u32),
    /// Run the instrumented pass (karton-probe) after the timed passes.
    pub instrumented: bool,
    /// The application rows (servers in containers, clients outside); `None` runs none.
    pub apps: Option<crate::apps::AppPlan>,
}

/// Placeholder in args for the rootfs-side directory of the fileio workload.
pub const ROOTFS_DIR: &str = "{rootfs}";

/// The ladder: bare, sanity, the minimal container, all eight, + cgroup limits, + seccomp, rootless.
fn ladder() -> Vec<String> {
    ["bare", "bare-2", "mnt", "all", "all+cg", "all+cg+seccomp", "rootless"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn every() -> Vec<String> {
    matrix::workload_configs().into_iter().map(|c| c.name).collect()
}

fn with(mut v: Vec<String>, extra: &[&str]) -> Vec<String> {
    for e in extra {
        if !v.iter().any(|x| x == e) {
            v.insert(3, e.to_string());
        }
    }
    v
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

struct Sizes {
    primes: u64,
    syscall: u64,
    fork: u64,
    mmap_mib: u64,
    file_mib: u64,
    file_ops: u64,
    tcp_rr: u64,
    tcp_mib: u64,
    ipc: u64,
    sysbench_events: u64,
    sysbench_mib: u64,
}

fn benches(z: &Sizes, full: bool, budget: f64) -> Vec<BenchSpec> {
    let matrix = |quick: Vec<String>| if full { every() } else { quick };
    let b = |id: &str,
             workload: &str,
             args: Vec<String>,
             bare: Vec<String>,
             configs: Vec<String>,
             share: f64,
             d: &str| BenchSpec {
        id: id.into(),
        workload: workload.into(),
        args,
        bare_args: bare,
        configs,
        budget_s: budget * share,
        description: d.into(),
    };
    let n = |x: u64| x.to_string();
    vec![
        b(
            "primes",
            "primes",
            s(&["--limit", &n(z.primes)]),
            s(&["--limit", &n(z.primes)]),
            every(),
            3.0,
            "compute-bound prime counting (Anjali et al., VEE'20)",
        ),
        b(
            "syscall",
            "syscall",
            s(&["--iterations", &n(z.syscall)]),
            s(&["--iterations", &n(z.syscall)]),
            matrix(with(ladder(), &["+user", "+pid"])),
            1.0,
            "getppid loop",
        ),
        b(
            "fork-exec",
            "fork-exec",
            s(&["--iterations", &n(z.fork)]),
            s(&["--iterations", &n(z.fork)]),
            matrix(with(ladder(), &["+pid"])),
            1.0,
            "fork + exec + exit + wait",
        ),
        b(
            "mmap",
            "mmap",
            s(&["--total-mib", &n(z.mmap_mib)]),
            s(&["--total-mib", &n(z.mmap_mib)]),
            matrix(ladder()),
            1.0,
            "mmap + touch + munmap per chunk size",
        ),
        b(
            "fileio-rootfs",
            "fileio",
            s(&["--dir", "/var/tmp", "--total-mib", &n(z.file_mib), "--iterations", &n(z.file_ops)]),
            s(&["--dir", ROOTFS_DIR, "--total-mib", &n(z.file_mib), "--iterations", &n(z.file_ops)]),
            matrix(ladder()),
            0.8,
            "file I/O on the container's rootfs (ext4 here), fsync'd",
        ),
        b(
            "fileio-tmpfs",
            "fileio",
            s(&["--dir", "/tmp", "--total-mib", &n(z.file_mib), "--iterations", &n(z.file_ops)]),
            s(&["--dir", "/dev/shm", "--total-mib", &n(z.file_mib), "--iterations", &n(z.file_ops)]),
            matrix(ladder()),
            0.6,
            "file I/O on tmpfs",
        ),
        b(
            "tcp",
            "tcp",
            s(&["--iterations", &n(z.tcp_rr), "--total-mib", &n(z.tcp_mib)]),
            s(&["--iterations", &n(z.tcp_rr), "--total-mib", &n(z.tcp_mib)]),
            matrix(with(ladder(), &["+net"])),
            1.0,
            "loopback TCP request/response and stream",
        ),
        b(
            "ipc",
            "ipc",
            s(&["--iterations", &n(z.ipc)]),
            s(&["--iterations", &n(z.ipc)]),
            matrix(with(ladder(), &["+ipc"])),
            1.0,
            "IPC ping-pong: pipe, unix socket, SysV msg, POSIX mqueue",
        ),
        b(
            "sysbench",
            "sysbench",
            s(&["--iterations", &n(z.sysbench_events), "--total-mib", &n(z.sysbench_mib)]),
            s(&["--iterations", &n(z.sysbench_events), "--total-mib", &n(z.sysbench_mib)]),
            matrix(ladder()),
            0.8,
            "external workload: sysbench 1.0 cpu, memory and threads",
        ),
    ]
}

/// A profile by name.
pub fn by_name(name: &str) -> Result<Profile, BenchError> {
    let ns_types: Vec<String> = crate::workloads::NS_TYPES.iter().map(|(n, _)| n.to_string()).collect();
    match name {
        "quick" => Ok(Profile {
            name: "quick".into(),
            warmups: 1,
            min_rounds: 5,
            max_rounds: 40,
            target_ci_pct: 2.0,
            resamples: 1000,
            benches: benches(
                &Sizes {
                    primes: 1_000_000,
                    syscall: 300_000,
                    fork: 30,
                    mmap_mib: 128,
                    file_mib: 16,
                    file_ops: 256,
                    tcp_rr: 3000,
                    tcp_mib: 64,
                    ipc: 3000,
                    sysbench_events: 200,
                    sysbench_mib: 256,
                },
                false,
                15.0,
            ),
            ns_types,
            ns_workers: vec![1, 2, 4, 8],
            ns_iterations: 16,
            ns_rounds: 3,
            lifecycle_rounds: 10,
            lifecycle_budget_s: 15.0,
            lifecycle_rss_rounds: 3,
            density_n: vec![1, 10, 50],
            density_parallel: vec![1, 2, 8],
            density_reps: 1,
            density_rate: (200, 8, 1),
            instrumented: true,
            apps: Some(crate::apps::plan(name)?),
        }),
        "full" => Ok(Profile {
            name: "full".into(),
            warmups: 2,
            min_rounds: 10,
            max_rounds: 100,
            target_ci_pct: 2.0,
            resamples: 2000,
            benches: benches(
                &Sizes {
                    primes: 2_000_000,
                    syscall: 2_000_000,
                    fork: 200,
                    mmap_mib: 1024,
                    file_mib: 256,
                    file_ops: 4096,
                    tcp_rr: 20_000,
                    tcp_mib: 1024,
                    ipc: 20_000,
                    sysbench_events: 2000,
                    sysbench_mib: 1024,
                },
                true,
                300.0,
            ),
            ns_types,
            ns_workers: vec![1, 2, 4, 8],
            ns_iterations: 100,
            ns_rounds: 10,
            lifecycle_rounds: 50,
            lifecycle_budget_s: 120.0,
            lifecycle_rss_rounds: 10,
            density_n: vec![1, 10, 100, 1000],
            density_parallel: vec![1, 2, 8],
            density_reps: 1,
            density_rate: (200, 8, 5),
            instrumented: true,
            apps: Some(crate::apps::plan(name)?),
        }),
        other => Err(BenchError::UnknownProfile { name: other.into() }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn profiles_name_only_known_configurations() {
        let all = matrix::workload_configs();
        for p in ["quick", "full"] {
            let p = by_name(p).unwrap();
            for b in &p.benches {
                matrix::select(&all, &b.configs).unwrap();
                assert!(b.configs.iter().any(|c| c == "bare"));
                crate::workloads::check_name(&b.workload).unwrap();
            }
        }
        assert!(by_name("medium").is_err());
    }
}
