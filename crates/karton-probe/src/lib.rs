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

mod kallsyms;
mod maps;
pub mod target;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use libbpf_rs::{Link, MapCore, MapFlags, Object, ObjectBuilder, PrintLevel, RingBuffer, RingBufferBuilder};
use serde::Serialize;

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
}

impl Instrument {
    pub const ALL: [Instrument; 7] = [
        Instrument::Syscalls,
        Instrument::Sched,
        Instrument::Faults,
        Instrument::Nsops,
        Instrument::Timeline,
        Instrument::Footprint,
        Instrument::Tracepoints,
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
        }
    }

    fn object(self) -> &'static [u8] {
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
        }
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

/// Builder for [`Probe`]; nothing is selected by default.
#[derive(Debug, Clone)]
pub struct ProbeBuilder {
    selected: Vec<Instrument>,
    syscall_latency: bool,
    target: Target,
    sample_hz: u64,
    log_dir: PathBuf,
    calibration: bool,
    slots: Option<u32>,
}

impl Default for ProbeBuilder {
    fn default() -> Self {
        Self {
            selected: Vec::new(),
            syscall_latency: false,
            target: Target::All,
            sample_hz: 999,
            log_dir: std::env::temp_dir(),
            calibration: false,
            slots: None,
        }
    }
}

impl ProbeBuilder {
    fn set(mut self, i: Instrument, on: bool) -> Self {
        self.selected.retain(|x| *x != i);
        if on {
            self.selected.push(i);
        }
        self
    }
    /// Per-syscall counts and errors (sys_exit only: the cheapest instrument).
    pub fn syscalls(self, on: bool) -> Self {
        self.set(Instrument::Syscalls, on)
    }
    /// Adds sys_enter and latency histograms to the syscall instrument (implies `syscalls`).
    pub fn syscall_latency(mut self, on: bool) -> Self {
        self.syscall_latency = on;
        if on {
            self = self.set(Instrument::Syscalls, true);
        }
        self
    }
    pub fn sched(self, on: bool) -> Self {
        self.set(Instrument::Sched, on)
    }
    pub fn faults(self, on: bool) -> Self {
        self.set(Instrument::Faults, on)
    }
    pub fn nsops(self, on: bool) -> Self {
        self.set(Instrument::Nsops, on)
    }
    pub fn timeline(self, on: bool) -> Self {
        self.set(Instrument::Timeline, on)
    }
    /// Both footprint approximations: cpu-clock sampling and distinct tracepoints hit.
    pub fn footprint(self, on: bool) -> Self {
        self.set(Instrument::Footprint, on).set(Instrument::Tracepoints, on)
    }
    pub fn instrument(self, i: Instrument, on: bool) -> Self {
        self.set(i, on)
    }
    pub fn target(mut self, t: Target) -> Self {
        self.target = t;
        self
    }
    /// cpu-clock sampling frequency of the footprint instrument (default 999 Hz).
    pub fn sample_hz(mut self, hz: u64) -> Self {
        self.sample_hz = hz.max(1);
        self
    }
    /// Overhead calibration: the syscall instrument attaches an EMPTY sys_exit program
    /// instead of the counter (it records nothing). Measures the floor of the mechanism.
    pub fn calibration_empty_program(mut self, on: bool) -> Self {
        self.calibration = on;
        self
    }
    /// Keys (pid namespaces) that get the syscall instrument's array fast path (default 8,
    /// 32 with `Target::All`); more keys still count, through a slower per-CPU hash. Each slot
    /// costs 8 KiB per CPU, 172 KiB per CPU with latency.
    pub fn syscall_slots(mut self, n: u32) -> Self {
        self.slots = Some(n.clamp(1, 1024));
        self
    }
    /// Where verifier logs of failed loads are written (default: the temp dir).
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_dir = dir.into();
        self
    }

    /// Loads and attaches the selected instruments. Fails only if BPF cannot work at all
    /// (not root, no BTF) or if no instrument could be loaded; otherwise failures are in
    /// [`Probe::status`].
    pub fn attach(self) -> Result<Probe, ProbeError> {
        let uid = nix::unistd::geteuid().as_raw();
        if uid != 0 {
            return Err(ProbeError::NotRoot(uid));
        }
        if !Path::new("/sys/kernel/btf/vmlinux").exists() {
            return Err(ProbeError::NoBtf);
        }
        if self.selected.is_empty() {
            return Err(ProbeError::NothingSelected);
        }
        let seeds = match self.target {
            Target::Tgid(pid) => process_tree(pid),
            _ => Vec::new(),
        };
        let mut selected = self.selected.clone();
        selected.sort();
        let mut loaded = Vec::new();
        let mut status = Vec::new();
        for i in selected {
            let mut mechanism = i.mechanism(self.syscall_latency).to_string();
            if i == Instrument::Syscalls && self.calibration {
                mechanism = "tp_btf:sys_exit EMPTY program (calibration: records nothing)".into();
            } else if i == Instrument::Syscalls {
                mechanism.push_str(match self.target {
                    Target::PidNs(_) => ", pid-ns filter by direct BTF reads",
                    _ => ", filter cached in task storage",
                });
            }
            match load_one(i, &self, &seeds) {
                Ok(l) => {
                    loaded.push(l);
                    status.push(InstrumentStatus {
                        instrument: i,
                        mechanism,
                        state: InstrumentState::Active,
                    });
                }
                Err(state) => status.push(InstrumentStatus { instrument: i, mechanism, state }),
            }
        }
        if loaded.is_empty() {
            return Err(ProbeError::AllFailed(status));
        }
        let events = Arc::new(Mutex::new(Vec::new()));
        let mut ring = None;
        if let Some(tl) = loaded.iter().find(|l| l.which == Instrument::Timeline) {
            ring = build_ring(&tl.obj, events.clone()).ok();
        }
        Ok(Probe {
            ring,
            loaded,
            status,
            target: self.target,
            syscall_latency: self.syscall_latency,
            events,
            started: Instant::now(),
            rss: BTreeMap::new(),
            kallsyms: None,
        })
    }
}

/// One loaded instrument. Field order is drop order: links detach before the object goes.
struct Loaded {
    which: Instrument,
    _links: Vec<Link>,
    obj: Object,
    /// Tracepoints instrument: names by cookie, and how many were attached.
    tp_names: Option<(Vec<String>, usize)>,
}

/// Captures libbpf's messages (the verifier log among them) while one object loads.
static LIBBPF_LOG: Mutex<Option<String>> = Mutex::new(None);
/// Loads are serialized so that each failure gets its own log.
static LOAD_LOCK: Mutex<()> = Mutex::new(());

fn libbpf_print(_level: PrintLevel, msg: String) {
    if let Ok(mut g) = LIBBPF_LOG.lock() {
        if let Some(buf) = g.as_mut() {
            buf.push_str(&msg);
        }
    }
}

fn failed(stage: &str, error: impl std::fmt::Display) -> InstrumentState {
    InstrumentState::Failed { stage: stage.into(), error: error.to_string(), verifier_log: None }
}

fn load_one(i: Instrument, b: &ProbeBuilder, seeds: &[u32]) -> Result<Loaded, InstrumentState> {
    let _guard = LOAD_LOCK.lock().map_err(|_| failed("open", "load lock poisoned"))?;
    let mut open = ObjectBuilder::default().open_memory(i.object()).map_err(|e| failed("open", e))?;

    // The config struct is the only .rodata object (see common.h): offset 0.
    let (mode, ns) = match b.target {
        Target::All => (0u32, 0u64),
        Target::PidNs(n) => (1, n),
        Target::Tgid(_) => (2, 0),
    };
    // Keys with a syscall fast-path slot: few for a container or a tree, more for the host.
    let slots: u32 = b.slots.unwrap_or(match b.target {
        Target::All => 32,
        _ => 8,
    });
    let cfg = maps::Config {
        target_ns: ns,
        filter_mode: mode,
        want_latency: u32::from(b.syscall_latency),
        slots,
        cfg_pad: 0,
    }
    .to_bytes();
    let mut wrote = false;
    for mut m in open.maps_mut() {
        if !m.name().to_string_lossy().ends_with(".rodata") {
            continue;
        }
        let Some(buf) = m.initial_value_mut() else {
            continue;
        };
        if buf.len() < cfg.len() {
            return Err(failed(
                "open",
                format!(".rodata is {} bytes, expected the {}-byte config", buf.len(), cfg.len()),
            ));
        }
        buf[..cfg.len()].copy_from_slice(&cfg);
        wrote = true;
    }
    // The syscall fast-path arrays: slots * SC_NR_MAX rows each; no latency rows if unused.
    for mut m in open.maps_mut() {
        let name = m.name().to_string_lossy().into_owned();
        let rows = match name.as_str() {
            "sc_cnt" => slots * SC_NR_MAX,
            "sc_lat" if b.syscall_latency => slots * SC_NR_MAX,
            "sc_lat" => 1,
            _ => continue,
        };
        m.set_max_entries(rows).map_err(|e| failed("open", format!("sizing {name}: {e}")))?;
    }
    if !wrote {
        return Err(failed("open", "no .rodata config in the BPF object"));
    }
    for mut p in open.progs_mut() {
        // Counting alone needs only sys_exit; sys_enter doubles the cost.
        if p.name() == "sc_enter" && (!b.syscall_latency || b.calibration) {
            p.set_autoload(false);
        }
        if p.name() == "sc_exit" && b.calibration {
            p.set_autoload(false);
        }
        if p.name() == "sc_null" {
            p.set_autoload(b.calibration);
        }
        // nsops: the per-syscall tracepoints when tracefs lists them, else raw_syscalls.
        let name = p.name().to_string_lossy().into_owned();
        if i == Instrument::Nsops && name != "track_fork_prog" {
            let raw = name.starts_with("ns_raw_");
            p.set_autoload(raw != tracefs_syscall_events());
        }
    }

    if let Ok(mut g) = LIBBPF_LOG.lock() {
        *g = Some(String::new());
    }
    libbpf_rs::set_print(Some((PrintLevel::Info, libbpf_print)));
    let loaded = open.load();
    libbpf_rs::set_print(None);
    let log = LIBBPF_LOG.lock().ok().and_then(|mut g| g.take()).unwrap_or_default();
    let obj = match loaded {
        Ok(o) => o,
        Err(e) => {
            let path =
                b.log_dir.join(format!("karton-probe-{}-{}.verifier.log", i.name(), std::process::id()));
            let saved = fs::write(&path, &log).is_ok();
            return Err(InstrumentState::Failed {
                stage: "load".into(),
                error: e.to_string(),
                verifier_log: saved.then_some(path),
            });
        }
    };

    // Seed the tracked tgids before any program runs, so the target's first event counts.
    if let Target::Tgid(_) = b.target {
        let one = [1u8];
        for m in obj.maps() {
            if m.name() == "tracked" {
                for pid in seeds {
                    m.update(&pid.to_ne_bytes(), &one, MapFlags::ANY).map_err(|e| failed("attach", e))?;
                }
            }
        }
    }

    // One container: its key owns syscall slot 0, which the storage-free fast path uses.
    if let (Instrument::Syscalls, Target::PidNs(ns)) = (i, b.target) {
        for m in obj.maps() {
            let r = match &*m.name().to_string_lossy() {
                "sc_slots" => m.update(&ns.to_ne_bytes(), &0u32.to_ne_bytes(), MapFlags::ANY),
                "sc_next" => m.update(&0u32.to_ne_bytes(), &1u32.to_ne_bytes(), MapFlags::ANY),
                _ => Ok(()),
            };
            r.map_err(|e| failed("attach", format!("seeding {}: {e}", m.name().to_string_lossy())))?;
        }
    }

    let mut links = Vec::new();
    let mut tp_names = None;
    for p in obj.progs_mut() {
        if !p.autoload() {
            continue;
        }
        if p.name() == "tp_hit" {
            let names = tracepoint_names()
                .map_err(|e| failed("attach", format!("listing tracepoints from vmlinux BTF: {e}")))?;
            let mut attached = 0usize;
            for (idx, name) in names.iter().enumerate() {
                let opts = libbpf_rs::RawTracepointOpts { cookie: idx as u64, ..Default::default() };
                // Some BTF-listed tracepoints are not attachable (compiled out, writable):
                // they are counted as missing, not fatal.
                if let Ok(l) = p.attach_raw_tracepoint_with_opts(name, opts) {
                    links.push(l);
                    attached += 1;
                }
            }
            if attached == 0 {
                return Err(failed("attach", "no tracepoint could be attached"));
            }
            tp_names = Some((names, attached));
        } else if p.name() == "fp_sample" {
            for cpu in online_cpus() {
                let fd = karton_sys::perf::cpu_clock_sampler(cpu, b.sample_hz)
                    .map_err(|e| failed("attach", format!("perf cpu-clock on cpu {cpu}: {e}")))?;
                links.push(p.attach_perf_event(fd.as_raw_fd()).map_err(|e| failed("attach", e))?);
                // The perf link closes the event fd when it is destroyed: hand it over.
                let _ = fd.into_raw_fd();
            }
        } else {
            links.push(
                p.attach().map_err(|e| failed("attach", format!("{}: {e}", p.name().to_string_lossy())))?,
            );
        }
    }
    Ok(Loaded { which: i, _links: links, obj, tp_names })
}

/// Every tracepoint of the running kernel, from the btf_trace_<name> typedefs of vmlinux BTF
/// (tracefs, which lists them too, is not mounted on every host).
fn tracepoint_names() -> Result<Vec<String>, libbpf_rs::Error> {
    let btf = libbpf_rs::btf::Btf::from_vmlinux()?;
    let mut names: Vec<String> = btf
        .type_by_kind::<libbpf_rs::btf::types::Typedef<'_>>()
        .filter_map(|t| {
            t.name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("btf_trace_")).map(str::to_string)
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Whether libbpf can find the syscalls:* tracepoint ids (tracefs mounted, events built in).
fn tracefs_syscall_events() -> bool {
    [
        "/sys/kernel/tracing/events/syscalls/sys_enter_unshare/id",
        "/sys/kernel/debug/tracing/events/syscalls/sys_enter_unshare/id",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
}

fn online_cpus() -> Vec<u32> {
    let text = fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_else(|_| "0".into());
    let mut out = Vec::new();
    for part in text.trim().split(',') {
        let mut it = part.splitn(2, '-');
        let a = it.next().and_then(|s| s.parse::<u32>().ok());
        let b = it.next().and_then(|s| s.parse::<u32>().ok());
        match (a, b) {
            (Some(a), Some(b)) => out.extend(a..=b),
            (Some(a), None) => out.push(a),
            _ => {}
        }
    }
    out
}

fn build_ring(
    obj: &Object,
    events: Arc<Mutex<Vec<ProcEvent>>>,
) -> Result<RingBuffer<'static>, libbpf_rs::Error> {
    let maps: Vec<_> = obj.maps().filter(|m| m.name() == "events").collect();
    let mut rb = RingBufferBuilder::new();
    for m in &maps {
        {
            let ev = events.clone();
            rb.add(m, move |data: &[u8]| {
                if let Some(e) = ProcEvent::parse(data) {
                    if let Ok(mut g) = ev.lock() {
                        g.push(e);
                    }
                }
                0
            })?;
        }
    }
    rb.build()
}

/// Attached instruments. Dropping it detaches everything.
pub struct Probe {
    ring: Option<RingBuffer<'static>>,
    loaded: Vec<Loaded>,
    status: Vec<InstrumentStatus>,
    target: Target,
    syscall_latency: bool,
    events: Arc<Mutex<Vec<ProcEvent>>>,
    started: Instant,
    rss: BTreeMap<u32, RssStat>,
    kallsyms: Option<Result<kallsyms::Kallsyms, String>>,
}

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
    fn merge(&mut self, other: &Hist) {
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
    fn parse(d: &[u8]) -> Option<Self> {
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

fn hist_from(buckets: &[u64], count: u64, sum: u64) -> Hist {
    Hist { count, sum_ns: sum, buckets: buckets.to_vec() }
}

/// The name of system call `nr` on this machine's architecture, from libseccomp's tables;
/// `syscall_NR` for a number libseccomp does not know.
pub fn syscall_name(nr: u32) -> String {
    i32::try_from(nr)
        .ok()
        .and_then(|n| libseccomp::ScmpSyscall::from(n).get_name_by_arch(libseccomp::ScmpArch::Native).ok())
        .unwrap_or_else(|| format!("syscall_{nr}"))
}

const NS_FLAGS: [(u32, &str); 8] = [
    (0x0002_0000, "mnt"),
    (0x0200_0000, "cgroup"),
    (0x0400_0000, "uts"),
    (0x0800_0000, "ipc"),
    (0x1000_0000, "user"),
    (0x2000_0000, "pid"),
    (0x4000_0000, "net"),
    (0x0000_0080, "time"),
];

/// Namespace names of a CLONE_NEW* mask.
pub fn ns_names(flags: u32) -> Vec<String> {
    NS_FLAGS.iter().filter(|(b, _)| flags & b != 0).map(|(_, n)| n.to_string()).collect()
}

impl Probe {
    pub fn builder() -> ProbeBuilder {
        ProbeBuilder::default()
    }

    /// Each selected instrument: active, or failed with why (and the verifier log file).
    pub fn status(&self) -> &[InstrumentStatus] {
        &self.status
    }

    pub fn target(&self) -> Target {
        self.target
    }

    fn obj(&self, i: Instrument) -> Option<&Object> {
        self.loaded.iter().find(|l| l.which == i).map(|l| &l.obj)
    }

    fn mech(&self, i: Instrument) -> String {
        self.status
            .iter()
            .find(|s| s.instrument == i)
            .map(|s| s.mechanism.clone())
            .unwrap_or_else(|| i.mechanism(self.syscall_latency).to_string())
    }

    /// Reads every active instrument's maps: cumulative figures since attach.
    pub fn snapshot(&mut self) -> Result<Snapshot, ProbeError> {
        if let Some(r) = &self.ring {
            // Errors here only mean a callback failed; the events gathered so far stand.
            let _ = r.consume();
        }
        let syscalls = match self.obj(Instrument::Syscalls) {
            Some(o) => Some(Section {
                instrument: self.mech(Instrument::Syscalls),
                rows: read_syscalls(o, self.syscall_latency)?,
            }),
            None => None,
        };
        let sched = match self.obj(Instrument::Sched) {
            Some(o) => Some(Section { instrument: self.mech(Instrument::Sched), rows: read_sched(o)? }),
            None => None,
        };
        let faults = match self.obj(Instrument::Faults) {
            Some(o) => Some(Section { instrument: self.mech(Instrument::Faults), rows: read_faults(o)? }),
            None => None,
        };
        let peak_rss = if self.obj(Instrument::Faults).is_some() {
            self.sample_rss();
            self.read_rss_at_exit()?;
            Some(Section {
                instrument: "tp_btf:sched_process_exit mm hiwater/rss (at exit), procfs:/proc/PID/status VmHWM (live, sampled)".into(),
                rows: self.rss.values().cloned().collect(),
            })
        } else {
            None
        };
        let nsops = match self.obj(Instrument::Nsops) {
            Some(o) => Some(Section { instrument: self.mech(Instrument::Nsops), rows: read_nsops(o)? }),
            None => None,
        };
        let timeline = if self.obj(Instrument::Timeline).is_some() {
            let mut rows = self.events.lock().map(|g| g.clone()).unwrap_or_default();
            rows.sort_by_key(|e| e.ts_ns);
            Some(Section { instrument: self.mech(Instrument::Timeline), rows })
        } else {
            None
        };
        let footprint = if self.obj(Instrument::Footprint).is_some() {
            Some(Section { instrument: self.mech(Instrument::Footprint), rows: self.read_footprint()? })
        } else {
            None
        };
        let tracepoints = match self.loaded.iter().find(|l| l.which == Instrument::Tracepoints) {
            Some(l) => {
                Some(Section { instrument: self.mech(Instrument::Tracepoints), rows: read_tracepoints(l)? })
            }
            None => None,
        };
        Ok(Snapshot {
            elapsed_s: self.started.elapsed().as_secs_f64(),
            target: self.target,
            instruments: self.status.clone(),
            syscalls,
            sched,
            faults,
            peak_rss,
            nsops,
            timeline,
            footprint,
            tracepoints,
        })
    }

    /// Samples the peak RSS (VmHWM) of the target's live processes now; snapshots include the
    /// highest value seen per process. Call it periodically to catch short-lived processes.
    /// Does nothing without the faults instrument or with `Target::All`.
    pub fn sample_rss(&mut self) {
        if self.obj(Instrument::Faults).is_none() {
            return;
        }
        let pids: Vec<u32> = match self.target {
            Target::All => Vec::new(),
            Target::Tgid(_) => self
                .obj(Instrument::Faults)
                .and_then(|o| {
                    o.maps()
                        .find(|m| m.name() == "tracked")
                        .map(|m| m.keys().filter_map(|k| maps::decode::<u32>(&k)).collect())
                })
                .unwrap_or_default(),
            Target::PidNs(ns) => fs::read_dir("/proc")
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
                        .filter(|p| pidns_of(*p).map(|n| n == ns).unwrap_or(false))
                        .collect()
                })
                .unwrap_or_default(),
        };
        for pid in pids {
            let Some(kib) = peak_rss_kib(pid) else {
                continue;
            };
            let comm = fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            let e = self.rss.entry(pid).or_insert(RssStat { pid, comm: comm.clone(), peak_rss_kib: 0 });
            if kib >= e.peak_rss_kib {
                e.peak_rss_kib = kib;
                e.comm = comm;
            }
        }
    }

    /// Peak RSS recorded by the faults object when processes exited.
    fn read_rss_at_exit(&mut self) -> Result<(), ProbeError> {
        let Some(o) = self.obj(Instrument::Faults) else {
            return Ok(());
        };
        let Some(m) = o.maps().find(|m| m.name() == "rss_exit") else {
            return Ok(());
        };
        let page_kib = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map(|p| p as u64 / 1024)
            .unwrap_or(4);
        let mut found = Vec::new();
        for k in m.keys() {
            match m.lookup(&k, MapFlags::ANY) {
                Ok(Some(v)) => {
                    if let (Some(pid), Some(r)) = (maps::decode::<u32>(&k), maps::decode::<maps::RssVal>(&v))
                    {
                        found.push((pid, r.peak_pages * page_kib, maps::cstr(&r.comm)));
                    }
                }
                Ok(None) => {}
                Err(source) => return Err(ProbeError::Map { map: "rss_exit".into(), source }),
            }
        }
        for (pid, kib, comm) in found {
            let e = self.rss.entry(pid).or_insert(RssStat { pid, comm: comm.clone(), peak_rss_kib: 0 });
            if kib >= e.peak_rss_kib {
                e.peak_rss_kib = kib;
                e.comm = comm;
            }
        }
        Ok(())
    }

    fn read_footprint(&mut self) -> Result<Vec<Footprint>, ProbeError> {
        if self.kallsyms.is_none() {
            self.kallsyms = Some(kallsyms::Kallsyms::load().map_err(|e| e.to_string()));
        }
        let Some(o) = self.obj(Instrument::Footprint) else {
            return Ok(Vec::new());
        };
        let mut totals: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for (k, v) in percpu_entries(o, "fp_totals")? {
            let (Some(key), Some(f)) = (maps::decode::<u64>(&k), maps::sum_percpu::<maps::FpTotals>(&v))
            else {
                continue;
            };
            let e = totals.entry(key).or_default();
            e.0 += f.kernel;
            e.1 += f.user;
        }
        let mut ips: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
        for (k, v) in percpu_entries(o, "fp_ips")? {
            let (Some(k), Some(n)) = (maps::decode::<maps::FpKey>(&k), maps::sum_percpu::<u64>(&v)) else {
                continue;
            };
            ips.entry(k.key).or_default().push((k.ip, n));
        }
        let ks = match &self.kallsyms {
            Some(Ok(k)) => Some(k),
            _ => None,
        };
        let mut out = Vec::new();
        for (key, (kernel, user)) in totals {
            let list = ips.remove(&key).unwrap_or_default();
            let mut funcs: HashMap<String, u64> = HashMap::new();
            for (ip, n) in &list {
                let name =
                    ks.and_then(|k| k.resolve(*ip)).map(str::to_string).unwrap_or_else(|| format!("{ip:#x}"));
                *funcs.entry(name).or_default() += n;
            }
            let mut functions: Vec<FunctionSamples> =
                funcs.into_iter().map(|(function, samples)| FunctionSamples { function, samples }).collect();
            functions.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.function.cmp(&b.function)));
            out.push(Footprint {
                key,
                approximation: "kernel functions seen by cpu-clock sampling: a lower bound of the code executed, not a coverage measure",
                kernel_samples: kernel,
                user_samples: user,
                distinct_ips: list.len() as u64,
                distinct_functions: functions.len() as u64,
                functions,
            });
        }
        Ok(out)
    }
}

/// A map key and its value on each CPU, as raw bytes.
type PercpuEntry = (Vec<u8>, Vec<Vec<u8>>);

/// Every (key, per-CPU values) of a per-CPU map.
fn percpu_entries(o: &Object, name: &str) -> Result<Vec<PercpuEntry>, ProbeError> {
    let Some(m) = o.maps().find(|m| m.name() == name) else {
        return Err(ProbeError::Map {
            map: name.into(),
            source: libbpf_rs::Error::from(std::io::Error::from(std::io::ErrorKind::NotFound)),
        });
    };
    let mut out = Vec::new();
    for k in m.keys() {
        match m.lookup_percpu(&k, MapFlags::ANY) {
            Ok(Some(v)) => out.push((k, v)),
            Ok(None) => {} // deleted between keys() and lookup
            Err(source) => return Err(ProbeError::Map { map: name.into(), source }),
        }
    }
    Ok(out)
}

fn read_syscalls(o: &Object, latency: bool) -> Result<Vec<SyscallStat>, ProbeError> {
    // (key, nr) -> (count, errors, latency)
    let mut acc: BTreeMap<(u64, u32), (u64, u64, Hist)> = BTreeMap::new();
    let find = |name: &str| o.maps().find(|m| m.name() == name);
    // Fast path: per-CPU arrays indexed by slot * SC_NR_MAX + nr.
    if let (Some(slots), Some(cnt)) = (find("sc_slots"), find("sc_cnt")) {
        let lat = find("sc_lat");
        for k in slots.keys() {
            let Some(key) = maps::decode::<u64>(&k) else {
                continue;
            };
            let slot = match slots.lookup(&k, MapFlags::ANY) {
                Ok(Some(v)) => match maps::decode::<u32>(&v) {
                    Some(s) => s,
                    None => continue,
                },
                Ok(None) => continue,
                Err(source) => return Err(ProbeError::Map { map: "sc_slots".into(), source }),
            };
            for nr in 0..SC_NR_MAX {
                let idx = (slot * SC_NR_MAX + nr).to_ne_bytes();
                let c = match cnt.lookup_percpu(&idx, MapFlags::ANY) {
                    Ok(Some(v)) => maps::sum_percpu::<maps::ScCnt>(&v),
                    Ok(None) => continue,
                    Err(source) => return Err(ProbeError::Map { map: "sc_cnt".into(), source }),
                };
                let Some(c) = c.filter(|c| c.count != 0) else {
                    continue;
                };
                let mut h = Hist::default();
                if latency {
                    if let Some(Ok(Some(v))) = lat.as_ref().map(|l| l.lookup_percpu(&idx, MapFlags::ANY)) {
                        if let Some(l) = maps::sum_percpu::<maps::ScLat>(&v) {
                            h = hist_from(&l.hist, l.lat_count, l.lat_sum);
                        }
                    }
                }
                let e = acc.entry((key, nr)).or_insert((0, 0, Hist::default()));
                e.0 += c.count;
                e.1 += c.errors;
                e.2.merge(&h);
            }
        }
    }
    // Fallback hash: keys beyond the slots, numbers beyond SC_NR_MAX.
    for (k, v) in percpu_entries(o, "sc_stats")? {
        let (Some(k), Some(f)) = (maps::decode::<maps::ScKey>(&k), maps::sum_percpu::<maps::ScVal>(&v))
        else {
            continue;
        };
        let e = acc.entry((k.key, k.nr)).or_insert((0, 0, Hist::default()));
        e.0 += f.count;
        e.1 += f.errors;
        e.2.merge(&hist_from(&f.hist, f.lat_count, f.lat_sum));
    }
    let mut rows: Vec<SyscallStat> = acc
        .into_iter()
        .map(|((key, nr), (count, errors, h))| SyscallStat {
            key,
            nr,
            name: syscall_name(nr),
            count,
            errors,
            latency: latency.then(|| {
                let mut h = h;
                h.buckets.resize(HIST_SLOTS, 0);
                h
            }),
        })
        .collect();
    rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.key.cmp(&b.key)).then(a.nr.cmp(&b.nr)));
    Ok(rows)
}

fn read_tracepoints(l: &Loaded) -> Result<Vec<TracepointHits>, ProbeError> {
    let (names, attached) = match &l.tp_names {
        Some((n, a)) => (n.as_slice(), *a),
        None => (&[][..], 0),
    };
    let mut per_key: BTreeMap<u64, Vec<NameCount>> = BTreeMap::new();
    for (k, v) in percpu_entries(&l.obj, "tp_hits")? {
        let Some(k) = maps::decode::<maps::TpKey>(&k) else {
            continue;
        };
        let idx = k.idx as usize;
        let name = names.get(idx).cloned().unwrap_or_else(|| format!("#{idx}"));
        let count = maps::sum_percpu::<u64>(&v).unwrap_or(0);
        per_key.entry(k.key).or_default().push(NameCount { name, count });
    }
    Ok(per_key
        .into_iter()
        .map(|(key, mut tps)| {
            tps.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(&b.name)));
            TracepointHits {
                key,
                approximation: "tracepoints hit while measured tasks ran (interrupts charged to the interrupted task); tracepoints mark only some kernel paths",
                attached: attached as u64,
                listed: names.len() as u64,
                distinct_tracepoints: tps.len() as u64,
                tracepoints: tps,
            }
        })
        .collect())
}

fn read_sched(o: &Object) -> Result<Vec<SchedStat>, ProbeError> {
    let mut rows = Vec::new();
    for (k, v) in percpu_entries(o, "sched_stats")? {
        let (Some(key), Some(f)) = (maps::decode::<u64>(&k), maps::sum_percpu::<maps::SchedVal>(&v)) else {
            continue;
        };
        rows.push(SchedStat {
            key,
            switches: f.switches,
            oncpu_ns: f.oncpu_ns,
            runq: hist_from(&f.hist, f.runq_count, f.runq_sum),
        });
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.oncpu_ns));
    Ok(rows)
}

fn read_faults(o: &Object) -> Result<Vec<FaultStat>, ProbeError> {
    let mut rows = Vec::new();
    for (k, v) in percpu_entries(o, "fault_stats")? {
        let (Some(key), Some(f)) = (maps::decode::<u64>(&k), maps::sum_percpu::<maps::FaultVal>(&v)) else {
            continue;
        };
        rows.push(FaultStat { key, faults: f.faults, write_faults: f.write_faults });
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.faults));
    Ok(rows)
}

fn read_nsops(o: &Object) -> Result<Vec<NsOpStat>, ProbeError> {
    let mut rows: Vec<NsOpStat> = Vec::new();
    for (k, v) in percpu_entries(o, "ns_stats")? {
        // struct ns_val: count, errors, sum, min, max, hist[]: min/max merge as min/max.
        let mut count = 0;
        let mut errors = 0;
        let mut sum = 0;
        let mut min = 0u64;
        let mut max = 0u64;
        let mut hist = vec![0u64; HIST_SLOTS];
        for cpu in v.iter().filter_map(|c| maps::decode::<maps::NsVal>(c)) {
            if cpu.count == 0 {
                continue;
            }
            count += cpu.count;
            errors += cpu.errors;
            sum += cpu.sum;
            if min == 0 || cpu.min < min {
                min = cpu.min;
            }
            max = max.max(cpu.max);
            for (h, c) in hist.iter_mut().zip(cpu.hist) {
                *h += c;
            }
        }
        let Some(k) = maps::decode::<maps::NsKey>(&k) else {
            continue;
        };
        let flags = k.flags;
        let call = match k.op {
            1 => "unshare",
            2 => "setns",
            3 => "clone",
            4 => "clone3",
            _ => "?",
        };
        let mut h = Hist::default();
        h.merge(&Hist { count, sum_ns: sum, buckets: hist });
        rows.push(NsOpStat {
            key: k.key,
            call: call.into(),
            flags,
            namespaces: ns_names(flags),
            errors,
            min_ns: min,
            max_ns: max,
            latency: h,
        });
    }
    rows.sort_by(|a, b| a.call.cmp(&b.call).then(a.flags.cmp(&b.flags)).then(a.key.cmp(&b.key)));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_names_come_from_libseccomp_and_unknown_numbers_stay_numbers() {
        let getppid = libseccomp::ScmpSyscall::from_name("getppid").expect("test value");
        assert_eq!(syscall_name(getppid.as_raw_syscall() as u32), "getppid");
        assert_eq!(syscall_name(100_000), "syscall_100000");
        assert_eq!(syscall_name(u32::MAX), "syscall_4294967295");
    }
}
