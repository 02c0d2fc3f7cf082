//! The instruments, one BPF object each, and how each fared at load and attach.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// The instruments, one BPF object each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Instrument {
    Syscalls,
    Sched,
    Faults,
    Nsops,
    Timeline,
    Footprint,
    /// Footprint, part 2: distinct tracepoints hit.
    Tracepoints,
    /// Softirq time per vector, system-wide (not filtered by target).
    Softirq,
}

impl Instrument {
    pub const ALL: [Instrument; 8] = [
        Instrument::Syscalls,
        Instrument::Sched,
        Instrument::Faults,
        Instrument::Nsops,
        Instrument::Timeline,
        Instrument::Footprint,
        Instrument::Tracepoints,
        Instrument::Softirq,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Instrument::Syscalls => "syscalls",
            Instrument::Sched => "sched",
            Instrument::Faults => "faults",
            Instrument::Nsops => "nsops",
            Instrument::Timeline => "timeline",
            Instrument::Footprint => "footprint",
            Instrument::Tracepoints => "tracepoints",
            Instrument::Softirq => "softirq",
        }
    }

    pub(crate) fn object(self) -> &'static [u8] {
        match self {
            Instrument::Syscalls => include_bytes!(concat!(env!("OUT_DIR"), "/syscalls.bpf.o")),
            Instrument::Sched => include_bytes!(concat!(env!("OUT_DIR"), "/sched.bpf.o")),
            Instrument::Faults => include_bytes!(concat!(env!("OUT_DIR"), "/faults.bpf.o")),
            Instrument::Nsops => include_bytes!(concat!(env!("OUT_DIR"), "/nsops.bpf.o")),
            Instrument::Timeline => include_bytes!(concat!(env!("OUT_DIR"), "/timeline.bpf.o")),
            Instrument::Footprint => include_bytes!(concat!(env!("OUT_DIR"), "/footprint.bpf.o")),
            Instrument::Tracepoints => {
                include_bytes!(concat!(env!("OUT_DIR"), "/tracepoints.bpf.o"))
            }
            Instrument::Softirq => include_bytes!(concat!(env!("OUT_DIR"), "/softirq.bpf.o")),
        }
    }

    /// The kernel mechanism behind the instrument's figures, as printed beside them.
    pub fn mechanism(self, syscall_latency: bool) -> &'static str {
        match self {
            Instrument::Syscalls if syscall_latency => "tp_btf:sys_enter+sys_exit (raw_syscalls), entry time in task storage, per-CPU arrays",
            Instrument::Syscalls => "tp_btf:sys_exit (raw_syscalls), per-CPU arrays",
            Instrument::Sched => "tp_btf:sched_wakeup+sched_wakeup_new+sched_switch",
            Instrument::Faults => "tp_btf:page_fault_user (exceptions); peak RSS: tp_btf:sched_process_exit + procfs VmHWM",
            Instrument::Nsops if tracefs_syscall_events() => "tp:syscalls/sys_{enter,exit}_{unshare,setns,clone,clone3}",
            Instrument::Nsops => "tp_btf:sys_enter+sys_exit filtered to unshare,setns,clone,clone3 (no tracefs for syscalls:* events)",
            Instrument::Timeline => "tp_btf:sched_process_fork+exec+exit, ring buffer",
            Instrument::Footprint => "perf:cpu-clock sampling -> BPF perf_event, /proc/kallsyms (APPROXIMATION of kernel footprint)",
            Instrument::Tracepoints => "raw_tp on every vmlinux-BTF tracepoint, cookie per tracepoint (APPROXIMATION of kernel footprint; heavy)",
            Instrument::Softirq => "tp_btf:softirq_entry+softirq_exit (irq), per-CPU arrays, system-wide (every CPU, whatever task was interrupted)",
        }
    }

    /// Whether the instrument takes the target filter (common.h's config and task state).
    /// Softirqs run in whatever task context a CPU is in, so that one measures the host.
    pub fn filtered(self) -> bool {
        self != Instrument::Softirq
    }
}

/// How an instrument fared.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum InstrumentState {
    Active,
    /// `stage` is "open", "load" (verifier) or "attach".
    Failed {
        stage: String,
        error: String,
        verifier_log: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct InstrumentStatus {
    pub instrument: Instrument,
    pub mechanism: String,
    #[serde(flatten)]
    pub state: InstrumentState,
}

/// Whether libbpf can find the syscalls:* tracepoint ids (tracefs mounted, events built in).
pub(crate) fn tracefs_syscall_events() -> bool {
    [
        "/sys/kernel/tracing/events/syscalls/sys_enter_unshare/id",
        "/sys/kernel/debug/tracing/events/syscalls/sys_enter_unshare/id",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}
