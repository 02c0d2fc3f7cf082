//! The probe: a builder that loads the selected instruments, and the attached instruments
//! that snapshots read.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use libbpf_rs::{MapCore, Object, RingBuffer};

use crate::load::{build_ring, load_one, Loaded};
use crate::{kallsyms, maps, read, Instrument, InstrumentState, InstrumentStatus, ProbeError};
use crate::{peak_rss_kib, pidns_of, process_tree, Footprint, ProcEvent, RssStat, Section, Snapshot, Target};

/// Builder for [`Probe`]; nothing is selected by default.
#[derive(Debug, Clone)]
pub struct ProbeBuilder {
    pub(crate) selected: Vec<Instrument>,
    pub(crate) syscall_latency: bool,
    pub(crate) target: Target,
    pub(crate) sample_hz: u64,
    pub(crate) log_dir: PathBuf,
    pub(crate) calibration: bool,
    pub(crate) slots: Option<u32>,
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
    /// Softirq time per vector (NET_RX, NET_TX, TIMER…), system-wide whatever the target.
    pub fn softirq(self, on: bool) -> Self {
        self.set(Instrument::Softirq, on)
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
        self.check_usable()?;
        let (loaded, status) = self.load_selected();
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

    /// Whether BPF can work at all here, and something is selected.
    fn check_usable(&self) -> Result<(), ProbeError> {
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
        Ok(())
    }

    /// Loads each selected instrument in a fixed order: those that loaded, and the status
    /// of every one.
    fn load_selected(&self) -> (Vec<Loaded>, Vec<InstrumentStatus>) {
        let seeds = match self.target {
            Target::Tgid(pid) => process_tree(pid),
            _ => Vec::new(),
        };
        let mut selected = self.selected.clone();
        selected.sort();
        let mut loaded = Vec::new();
        let mut status = Vec::new();
        for i in selected {
            let mechanism = self.mechanism(i);
            match load_one(i, self, &seeds) {
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
        (loaded, status)
    }

    /// The mechanism of instrument `i` with these options and this target.
    fn mechanism(&self, i: Instrument) -> String {
        let mut mechanism = i.mechanism(self.syscall_latency).to_string();
        if i == Instrument::Syscalls && self.calibration {
            mechanism = "tp_btf:sys_exit EMPTY program (calibration: records nothing)".into();
        } else if i == Instrument::Syscalls {
            mechanism.push_str(match self.target {
                Target::PidNs(_) => ", pid-ns filter by direct BTF reads",
                _ => ", filter cached in task storage",
            });
        }
        mechanism
    }
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

impl Probe {
    pub fn builder() -> ProbeBuilder {
        ProbeBuilder::default()
    }

    /// Each selected instrument: active, or failed with why (and the verifier log file).
    pub fn status(&self) -> &[InstrumentStatus] {
        &self.status
    }

    /// One line per instrument, "name: mechanism (state)", as results files record them.
    pub fn status_lines(&self) -> Vec<String> {
        self.status
            .iter()
            .map(|s| format!("{}: {} ({:?})", s.instrument.name(), s.mechanism, s.state))
            .collect()
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
        let latency = self.syscall_latency;
        let syscalls = self.section(Instrument::Syscalls, |l| read::syscalls(&l.obj, latency))?;
        let sched = self.section(Instrument::Sched, |l| read::sched(&l.obj))?;
        let faults = self.section(Instrument::Faults, |l| read::faults(&l.obj))?;
        let peak_rss = self.peak_rss_section()?;
        let nsops = self.section(Instrument::Nsops, |l| read::nsops(&l.obj))?;
        let timeline = self.section(Instrument::Timeline, |_| {
            let mut rows = self.events.lock().map(|g| g.clone()).unwrap_or_default();
            rows.sort_by_key(|e| e.ts_ns);
            Ok(rows)
        })?;
        let footprint = self.footprint_section()?;
        let tracepoints = self.section(Instrument::Tracepoints, read::tracepoints)?;
        let softirq = self.section(Instrument::Softirq, |l| read::softirq(&l.obj))?;
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
            softirq,
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
            self.note_rss(pid, kib, comm);
        }
    }

    /// The section of instrument `i` read by `read`, if `i` is loaded.
    fn section<T>(
        &self,
        i: Instrument,
        read: impl FnOnce(&Loaded) -> Result<Vec<T>, ProbeError>,
    ) -> Result<Option<Section<T>>, ProbeError> {
        match self.loaded.iter().find(|l| l.which == i) {
            Some(l) => Ok(Some(Section { instrument: self.mech(i), rows: read(l)? })),
            None => Ok(None),
        }
    }

    /// Peak RSS per process, with the faults instrument: sampled now, and at exits.
    fn peak_rss_section(&mut self) -> Result<Option<Section<RssStat>>, ProbeError> {
        if self.obj(Instrument::Faults).is_none() {
            return Ok(None);
        }
        self.sample_rss();
        self.read_rss_at_exit()?;
        Ok(Some(Section {
            instrument: "tp_btf:sched_process_exit mm hiwater/rss (at exit), procfs:/proc/PID/status VmHWM (live, sampled)".into(),
            rows: self.rss.values().cloned().collect(),
        }))
    }

    /// Peak RSS recorded by the faults object when processes exited.
    fn read_rss_at_exit(&mut self) -> Result<(), ProbeError> {
        let Some(o) = self.obj(Instrument::Faults) else {
            return Ok(());
        };
        for (pid, kib, comm) in read::rss_at_exit(o)? {
            self.note_rss(pid, kib, comm);
        }
        Ok(())
    }

    /// Keeps the highest peak RSS seen for `pid`, with the comm it had then.
    fn note_rss(&mut self, pid: u32, kib: u64, comm: String) {
        let e = self.rss.entry(pid).or_insert(RssStat { pid, comm: comm.clone(), peak_rss_kib: 0 });
        if kib >= e.peak_rss_kib {
            e.peak_rss_kib = kib;
            e.comm = comm;
        }
    }

    /// Kernel functions sampled, with the footprint instrument; kallsyms is read once.
    fn footprint_section(&mut self) -> Result<Option<Section<Footprint>>, ProbeError> {
        if self.obj(Instrument::Footprint).is_none() {
            return Ok(None);
        }
        if self.kallsyms.is_none() {
            self.kallsyms = Some(kallsyms::Kallsyms::load().map_err(|e| e.to_string()));
        }
        let ks = match &self.kallsyms {
            Some(Ok(k)) => Some(k),
            _ => None,
        };
        self.section(Instrument::Footprint, |l| read::footprint(&l.obj, ks))
    }
}
