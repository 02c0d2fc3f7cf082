//! Loading one instrument: open its BPF object, configure it, load it (the verifier log
//! captured from libbpf) and attach its programs.

use std::fs;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::{Arc, Mutex};

use libbpf_rs::{
    Link, MapCore, MapFlags, Object, ObjectBuilder, OpenObject, PrintLevel, ProgramMut, RingBuffer,
    RingBufferBuilder,
};

use crate::instrument::tracefs_syscall_events;
use crate::{maps, Instrument, InstrumentState, ProbeBuilder, ProcEvent, Target, SC_NR_MAX};

/// One loaded instrument. Field order is drop order: links detach before the object goes.
pub(crate) struct Loaded {
    pub(crate) which: Instrument,
    _links: Vec<Link>,
    pub(crate) obj: Object,
    /// Tracepoints instrument: names by cookie, and how many were attached.
    pub(crate) tp_names: Option<TpNames>,
}

/// Tracepoint names by cookie, and how many of them were attached.
pub(crate) type TpNames = (Vec<String>, usize);

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

/// Loads one instrument and attaches its programs: each step below fails with its own
/// stage ("open", "load" with the verifier log, "attach"), and the instrument with it.
pub(crate) fn load_one(i: Instrument, b: &ProbeBuilder, seeds: &[u32]) -> Result<Loaded, InstrumentState> {
    let _guard = LOAD_LOCK.lock().map_err(|_| failed("open", "load lock poisoned"))?;
    let mut open = ObjectBuilder::default().open_memory(i.object()).map_err(|e| failed("open", e))?;
    // An unfiltered object has no config to write (see Instrument::filtered).
    if i.filtered() {
        configure(&mut open, b)?;
    }
    set_autoload(&mut open, i, b);
    let obj = load_logged(open, i, b)?;
    // Seed the tracked tgids before any program runs, so the target's first event counts.
    if let Target::Tgid(_) = b.target {
        seed_tracked(&obj, seeds)?;
    }
    if let (Instrument::Syscalls, Target::PidNs(ns)) = (i, b.target) {
        seed_container_slot(&obj, ns)?;
    }
    let (links, tp_names) = attach_programs(&obj, b.sample_hz)?;
    Ok(Loaded { which: i, _links: links, obj, tp_names })
}

/// Keys with a syscall fast-path slot: few for a container or a tree, more for the host.
fn syscall_slots(b: &ProbeBuilder) -> u32 {
    b.slots.unwrap_or(match b.target {
        Target::All => 32,
        _ => 8,
    })
}

/// Writes the config into .rodata and sizes the syscall fast-path arrays (stage "open").
fn configure(open: &mut OpenObject, b: &ProbeBuilder) -> Result<(), InstrumentState> {
    let (mode, ns) = match b.target {
        Target::All => (0u32, 0u64),
        Target::PidNs(n) => (1, n),
        Target::Tgid(_) => (2, 0),
    };
    let slots = syscall_slots(b);
    let cfg = maps::Config {
        target_ns: ns,
        filter_mode: mode,
        want_latency: u32::from(b.syscall_latency),
        slots,
        cfg_pad: 0,
    }
    .to_bytes();
    let wrote = write_rodata(open, &cfg)?;
    size_syscall_arrays(open, slots, b.syscall_latency)?;
    if !wrote {
        return Err(failed("open", "no .rodata config in the BPF object"));
    }
    Ok(())
}

/// The config struct is the only .rodata object (see common.h): offset 0. Whether a
/// .rodata map took it.
fn write_rodata(open: &mut OpenObject, cfg: &[u8]) -> Result<bool, InstrumentState> {
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
        buf[..cfg.len()].copy_from_slice(cfg);
        wrote = true;
    }
    Ok(wrote)
}

/// The syscall fast-path arrays: slots * SC_NR_MAX rows each; no latency rows if unused.
fn size_syscall_arrays(open: &mut OpenObject, slots: u32, latency: bool) -> Result<(), InstrumentState> {
    for mut m in open.maps_mut() {
        let name = m.name().to_string_lossy().into_owned();
        let rows = match name.as_str() {
            "sc_cnt" => slots * SC_NR_MAX,
            "sc_lat" if latency => slots * SC_NR_MAX,
            "sc_lat" => 1,
            _ => continue,
        };
        m.set_max_entries(rows).map_err(|e| failed("open", format!("sizing {name}: {e}")))?;
    }
    Ok(())
}

/// Which programs of the object load: those the options and the host call for.
fn set_autoload(open: &mut OpenObject, i: Instrument, b: &ProbeBuilder) {
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
}

/// Loads the object (the verifier runs), capturing libbpf's messages: on failure they are
/// saved to the verifier log file named in the state (stage "load").
fn load_logged(open: OpenObject, i: Instrument, b: &ProbeBuilder) -> Result<Object, InstrumentState> {
    if let Ok(mut g) = LIBBPF_LOG.lock() {
        *g = Some(String::new());
    }
    libbpf_rs::set_print(Some((PrintLevel::Info, libbpf_print)));
    let loaded = open.load();
    libbpf_rs::set_print(None);
    let log = LIBBPF_LOG.lock().ok().and_then(|mut g| g.take()).unwrap_or_default();
    loaded.map_err(|e| {
        let path = b.log_dir.join(format!("karton-probe-{}-{}.verifier.log", i.name(), std::process::id()));
        let saved = fs::write(&path, &log).is_ok();
        InstrumentState::Failed {
            stage: "load".into(),
            error: e.to_string(),
            verifier_log: saved.then_some(path),
        }
    })
}

/// Marks the target's tgids as tracked (stage "attach").
fn seed_tracked(obj: &Object, seeds: &[u32]) -> Result<(), InstrumentState> {
    let one = [1u8];
    for m in obj.maps() {
        if m.name() == "tracked" {
            for pid in seeds {
                m.update(&pid.to_ne_bytes(), &one, MapFlags::ANY).map_err(|e| failed("attach", e))?;
            }
        }
    }
    Ok(())
}

/// One container: its key owns syscall slot 0, which the storage-free fast path uses.
fn seed_container_slot(obj: &Object, ns: u64) -> Result<(), InstrumentState> {
    for m in obj.maps() {
        let r = match &*m.name().to_string_lossy() {
            "sc_slots" => m.update(&ns.to_ne_bytes(), &0u32.to_ne_bytes(), MapFlags::ANY),
            "sc_next" => m.update(&0u32.to_ne_bytes(), &1u32.to_ne_bytes(), MapFlags::ANY),
            _ => Ok(()),
        };
        r.map_err(|e| failed("attach", format!("seeding {}: {e}", m.name().to_string_lossy())))?;
    }
    Ok(())
}

/// Links of every loaded program, and the tracepoint names by cookie when there are any.
type Attached = (Vec<Link>, Option<TpNames>);

/// Attaches every program that loaded (stage "attach"): tp_hit to every tracepoint,
/// fp_sample to a cpu-clock sampler per CPU, the others where their section says.
fn attach_programs(obj: &Object, sample_hz: u64) -> Result<Attached, InstrumentState> {
    let mut links = Vec::new();
    let mut tp_names = None;
    for p in obj.progs_mut() {
        if !p.autoload() {
            continue;
        }
        if p.name() == "tp_hit" {
            let (mut l, names) = attach_tracepoints(&p)?;
            links.append(&mut l);
            tp_names = Some(names);
        } else if p.name() == "fp_sample" {
            links.append(&mut attach_samplers(&p, sample_hz)?);
        } else {
            links.push(
                p.attach().map_err(|e| failed("attach", format!("{}: {e}", p.name().to_string_lossy())))?,
            );
        }
    }
    Ok((links, tp_names))
}

/// tp_hit on every vmlinux-BTF tracepoint, its index as cookie: the links, and the names
/// with how many attached.
fn attach_tracepoints(p: &ProgramMut<'_>) -> Result<(Vec<Link>, TpNames), InstrumentState> {
    let names = tracepoint_names()
        .map_err(|e| failed("attach", format!("listing tracepoints from vmlinux BTF: {e}")))?;
    let mut links = Vec::new();
    for (idx, name) in names.iter().enumerate() {
        let opts = libbpf_rs::RawTracepointOpts { cookie: idx as u64, ..Default::default() };
        // Some BTF-listed tracepoints are not attachable (compiled out, writable):
        // they are counted as missing, not fatal.
        if let Ok(l) = p.attach_raw_tracepoint_with_opts(name, opts) {
            links.push(l);
        }
    }
    if links.is_empty() {
        return Err(failed("attach", "no tracepoint could be attached"));
    }
    let attached = links.len();
    Ok((links, (names, attached)))
}

/// fp_sample on a cpu-clock perf event of every online CPU.
fn attach_samplers(p: &ProgramMut<'_>, sample_hz: u64) -> Result<Vec<Link>, InstrumentState> {
    let mut links = Vec::new();
    for cpu in online_cpus() {
        let fd = karton_sys::perf::cpu_clock_sampler(cpu, sample_hz)
            .map_err(|e| failed("attach", format!("perf cpu-clock on cpu {cpu}: {e}")))?;
        links.push(p.attach_perf_event(fd.as_raw_fd()).map_err(|e| failed("attach", e))?);
        // The perf link closes the event fd when it is destroyed: hand it over.
        let _ = fd.into_raw_fd();
    }
    Ok(links)
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

pub(crate) fn build_ring(
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
