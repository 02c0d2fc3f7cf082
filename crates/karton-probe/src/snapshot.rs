//! What a snapshot holds: the public result types, one section per instrument.

use serde::Serialize;

use crate::{maps, InstrumentStatus, Target};

/// A log2 histogram of nanoseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Hist {
    pub count: u64,
    pub sum_ns: u64,
    /// `buckets[i]` counts values in [2^i, 2^(i+1)) ns.
    pub buckets: Vec<u64>,
}

impl Hist {
    pub fn mean_ns(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ns as f64 / self.count as f64
        }
    }
    pub(crate) fn merge(&mut self, other: &Hist) {
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }
}

/// One section of a snapshot: the mechanism that produced it and its rows.
#[derive(Debug, Clone, Serialize)]
pub struct Section<T> {
    pub instrument: String,
    pub rows: Vec<T>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SyscallStat {
    /// pid-namespace inode of the calling tasks.
    pub key: u64,
    pub nr: u32,
    pub name: String,
    pub count: u64,
    /// Returns in [-4095, -1].
    pub errors: u64,
    /// Present with `syscall_latency`; counts only calls that entered after attach.
    pub latency: Option<Hist>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SchedStat {
    pub key: u64,
    /// Times a measured task was switched out.
    pub switches: u64,
    /// Completed on-CPU slices, ns.
    pub oncpu_ns: u64,
    /// Run-queue latency: wakeup (or preemption) to switch-in.
    pub runq: Hist,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultStat {
    pub key: u64,
    pub faults: u64,
    pub write_faults: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RssStat {
    pub pid: u32,
    pub comm: String,
    /// Highest VmHWM seen for this process, KiB.
    pub peak_rss_kib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NsOpStat {
    pub key: u64,
    /// "unshare", "setns", "clone" or "clone3".
    pub call: String,
    /// The CLONE_NEW* bits asked for.
    pub flags: u32,
    /// The same, as namespace names ("net", "uts"…); empty when none.
    pub namespaces: Vec<String>,
    pub errors: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub latency: Hist,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcEvent {
    /// CLOCK_MONOTONIC ns (bpf_ktime_get_ns).
    pub ts_ns: u64,
    pub key: u64,
    /// "fork", "exec" or "exit".
    pub kind: String,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    /// Thread creation rather than a new process (fork only).
    pub thread: bool,
    pub comm: String,
    /// exec: the file executed.
    pub file: String,
    /// exit: the raw exit code (status << 8 | signal).
    pub exit_code: i32,
}

impl ProcEvent {
    pub(crate) fn parse(d: &[u8]) -> Option<Self> {
        let e: maps::Event = maps::decode(d)?;
        let kind = match e.kind {
            1 => "fork",
            2 => "exec",
            3 => "exit",
            _ => return None,
        };
        Some(Self {
            ts_ns: e.ts,
            key: e.key,
            kind: kind.into(),
            pid: e.pid,
            tgid: e.tgid,
            ppid: e.ppid,
            exit_code: e.exit_code,
            thread: e.is_thread != 0,
            comm: maps::cstr(&e.comm),
            file: maps::cstr(&e.file),
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FunctionSamples {
    pub function: String,
    pub samples: u64,
}

/// APPROXIMATION of the kernel-code footprint: kernel functions seen by cpu-clock sampling
/// while measured tasks ran. Functions that ran briefly are missed; longer runs and higher
/// sampling rates see more.
#[derive(Debug, Clone, Serialize)]
pub struct Footprint {
    pub key: u64,
    pub approximation: &'static str,
    pub kernel_samples: u64,
    pub user_samples: u64,
    pub distinct_ips: u64,
    pub distinct_functions: u64,
    /// Every function seen, most samples first.
    pub functions: Vec<FunctionSamples>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Seconds since attach.
    pub elapsed_s: f64,
    pub target: Target,
    pub instruments: Vec<InstrumentStatus>,
    pub syscalls: Option<Section<SyscallStat>>,
    pub sched: Option<Section<SchedStat>>,
    pub faults: Option<Section<FaultStat>>,
    /// Sampled from /proc at each snapshot (Tgid and PidNs targets).
    pub peak_rss: Option<Section<RssStat>>,
    pub nsops: Option<Section<NsOpStat>>,
    pub timeline: Option<Section<ProcEvent>>,
    pub footprint: Option<Section<Footprint>>,
    pub tracepoints: Option<Section<TracepointHits>>,
    /// System-wide: softirqs are not charged to the target (they run on behalf of anyone).
    pub softirq: Option<Section<SoftirqStat>>,
}

/// Time spent in one softirq vector on every CPU since attach (softirqs that completed).
#[derive(Debug, Clone, Serialize)]
pub struct SoftirqStat {
    /// The vector number (include/linux/interrupt.h: HI_SOFTIRQ = 0 .. RCU_SOFTIRQ = 9).
    pub vec: u32,
    /// "HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU".
    pub name: String,
    pub count: u64,
    pub total_ns: u64,
}

/// APPROXIMATION of the kernel footprint: distinct tracepoints hit by the measured tasks.
#[derive(Debug, Clone, Serialize)]
pub struct TracepointHits {
    pub key: u64,
    pub approximation: &'static str,
    /// Tracepoints attached / listed in vmlinux BTF: the universe this count is out of.
    pub attached: u64,
    pub listed: u64,
    pub distinct_tracepoints: u64,
    /// Every tracepoint hit, most hits first.
    pub tracepoints: Vec<NameCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NameCount {
    pub name: String,
    pub count: u64,
}
