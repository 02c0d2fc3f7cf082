//! karton-probe: eBPF instruments keyed per container (pid-namespace inode) or per process
//! tree, for `karton trace`, the benchmarks and the audits.
//!
//! ```no_run
//! use karton_probe::{Probe, Target};
//! let mut probe = Probe::builder().syscalls(true).syscall_latency(true)
//!     .target(Target::Tgid(1234)).attach()?;
//! for st in probe.status() { println!("{}: {:?}", st.mechanism, st.state); }
//! let snap = probe.snapshot()?;
//! println!("{}", serde_json::to_string(&snap).unwrap_or_default());
//! # Ok::<(), karton_probe::ProbeError>(())
//! ```
//!
//! Every instrument is its own BPF object with its own maps: one that fails to load or
//! attach is reported in [`Probe::status`] (with the verifier log saved to a file) and the
//! others run. Each section of a [`Snapshot`] names the mechanism that produced it.

mod instrument;
mod kallsyms;
mod load;
mod maps;
mod names;
mod probe;
mod read;
pub mod session;
mod snapshot;
pub mod target;

pub use instrument::{Instrument, InstrumentState, InstrumentStatus};
pub use names::{ns_names, softirq_name, syscall_name, SOFTIRQ_NAMES};
pub use probe::{Probe, ProbeBuilder};
pub use snapshot::{
    FaultStat, Footprint, FunctionSamples, Hist, NameCount, NsOpStat, ProcEvent, RssStat, SchedStat, Section,
    Snapshot, SoftirqStat, SyscallStat, TracepointHits,
};
pub use target::{peak_rss_kib, pidns_of, process_tree, StoppedCommand, Target};

/// Number of log2 buckets of every histogram: bucket i counts values in [2^i, 2^(i+1)) ns
/// (bucket 0 also holds 0 ns; the last bucket holds everything above).
pub const HIST_SLOTS: usize = 40;

/// Syscall numbers below this use the per-CPU array fast path (syscalls.bpf.c NR_MAX).
const SC_NR_MAX: u32 = 512;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("eBPF instruments need root (CAP_BPF, CAP_PERFMON); this process runs as uid {0}")]
    NotRoot(u32),
    #[error("no kernel BTF at /sys/kernel/btf/vmlinux: CO-RE programs cannot be relocated on this kernel")]
    NoBtf,
    #[error("no instrument selected")]
    NothingSelected,
    #[error("no instrument could be loaded: {}", summary(.0))]
    AllFailed(Vec<InstrumentStatus>),
    #[error("reading BPF map {map}: {source}")]
    Map { map: String, source: libbpf_rs::Error },
    #[error("/proc/kallsyms shows no addresses to this process (kptr_restrict)")]
    Kallsyms,
    #[error("starting the command: {0}")]
    Spawn(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

fn summary(v: &[InstrumentStatus]) -> String {
    v.iter()
        .map(|s| match &s.state {
            InstrumentState::Failed { error, verifier_log, .. } => match verifier_log {
                Some(p) => format!("{}: {error} (verifier log: {})", s.instrument.name(), p.display()),
                None => format!("{}: {error}", s.instrument.name()),
            },
            _ => format!("{}: {:?}", s.instrument.name(), s.state),
        })
        .collect::<Vec<_>>()
        .join("; ")
}
