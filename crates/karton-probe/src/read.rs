//! The map readers: each turns an instrument's BPF maps into snapshot rows.

use std::collections::{BTreeMap, HashMap};

use libbpf_rs::{Map, MapCore, MapFlags, Object};

use crate::load::Loaded;
use crate::{kallsyms, maps, ns_names, softirq_name, syscall_name, ProbeError, HIST_SLOTS, SC_NR_MAX};
use crate::{
    FaultStat, Footprint, FunctionSamples, Hist, NameCount, NsOpStat, SchedStat, SoftirqStat, SyscallStat,
    TracepointHits,
};

fn hist_from(buckets: &[u64], count: u64, sum: u64) -> Hist {
    Hist { count, sum_ns: sum, buckets: buckets.to_vec() }
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

/// Per (key, syscall number): count, errors, latency.
type SyscallAcc = BTreeMap<(u64, u32), (u64, u64, Hist)>;

pub(crate) fn syscalls(o: &Object, latency: bool) -> Result<Vec<SyscallStat>, ProbeError> {
    let mut acc = SyscallAcc::new();
    syscalls_fast_path(o, latency, &mut acc)?;
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

/// Fast path: per-CPU arrays indexed by slot * SC_NR_MAX + nr, for the keys in sc_slots.
fn syscalls_fast_path(o: &Object, latency: bool, acc: &mut SyscallAcc) -> Result<(), ProbeError> {
    let find = |name: &str| o.maps().find(|m| m.name() == name);
    let (Some(slots), Some(cnt)) = (find("sc_slots"), find("sc_cnt")) else {
        return Ok(());
    };
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
            let h = match (&lat, latency) {
                (Some(l), true) => slot_latency(l, &idx),
                _ => Hist::default(),
            };
            let e = acc.entry((key, nr)).or_insert((0, 0, Hist::default()));
            e.0 += c.count;
            e.1 += c.errors;
            e.2.merge(&h);
        }
    }
    Ok(())
}

/// The latency histogram of one sc_lat row; empty when it cannot be read.
fn slot_latency(lat: &Map<'_>, idx: &[u8]) -> Hist {
    match lat.lookup_percpu(idx, MapFlags::ANY) {
        Ok(Some(v)) => match maps::sum_percpu::<maps::ScLat>(&v) {
            Some(l) => hist_from(&l.hist, l.lat_count, l.lat_sum),
            None => Hist::default(),
        },
        _ => Hist::default(),
    }
}

pub(crate) fn tracepoints(l: &Loaded) -> Result<Vec<TracepointHits>, ProbeError> {
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

pub(crate) fn sched(o: &Object) -> Result<Vec<SchedStat>, ProbeError> {
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

/// Every softirq vector, in vector order (zero rows included: "no NET_RX" is a finding too).
pub(crate) fn softirq(o: &Object) -> Result<Vec<SoftirqStat>, ProbeError> {
    let mut rows = Vec::new();
    for (k, v) in percpu_entries(o, "sirq_stats")? {
        let (Some(vec), Some(f)) = (maps::decode::<u32>(&k), maps::sum_percpu::<maps::SirqVal>(&v)) else {
            continue;
        };
        rows.push(SoftirqStat { vec, name: softirq_name(vec), count: f.count, total_ns: f.total_ns });
    }
    rows.sort_by_key(|r| r.vec);
    Ok(rows)
}

pub(crate) fn faults(o: &Object) -> Result<Vec<FaultStat>, ProbeError> {
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

pub(crate) fn nsops(o: &Object) -> Result<Vec<NsOpStat>, ProbeError> {
    let mut rows: Vec<NsOpStat> = Vec::new();
    for (k, v) in percpu_entries(o, "ns_stats")? {
        let t = ns_totals(&v);
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
        h.merge(&Hist { count: t.count, sum_ns: t.sum, buckets: t.hist });
        rows.push(NsOpStat {
            key: k.key,
            call: call.into(),
            flags,
            namespaces: ns_names(flags),
            errors: t.errors,
            min_ns: t.min,
            max_ns: t.max,
            latency: h,
        });
    }
    rows.sort_by(|a, b| a.call.cmp(&b.call).then(a.flags.cmp(&b.flags)).then(a.key.cmp(&b.key)));
    Ok(rows)
}

/// One ns_stats row summed over the CPUs.
struct NsTotals {
    count: u64,
    errors: u64,
    sum: u64,
    min: u64,
    max: u64,
    hist: Vec<u64>,
}

/// struct ns_val: count, errors, sum, min, max, hist[]: min/max merge as min/max.
fn ns_totals(per_cpu: &[Vec<u8>]) -> NsTotals {
    let mut t = NsTotals { count: 0, errors: 0, sum: 0, min: 0, max: 0, hist: vec![0u64; HIST_SLOTS] };
    for cpu in per_cpu.iter().filter_map(|c| maps::decode::<maps::NsVal>(c)) {
        if cpu.count == 0 {
            continue;
        }
        t.count += cpu.count;
        t.errors += cpu.errors;
        t.sum += cpu.sum;
        if t.min == 0 || cpu.min < t.min {
            t.min = cpu.min;
        }
        t.max = t.max.max(cpu.max);
        for (h, c) in t.hist.iter_mut().zip(cpu.hist) {
            *h += c;
        }
    }
    t
}

/// Peak RSS recorded by the faults object when processes exited: (pid, KiB, comm).
pub(crate) fn rss_at_exit(o: &Object) -> Result<Vec<(u32, u64, String)>, ProbeError> {
    let Some(m) = o.maps().find(|m| m.name() == "rss_exit") else {
        return Ok(Vec::new());
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
                if let (Some(pid), Some(r)) = (maps::decode::<u32>(&k), maps::decode::<maps::RssVal>(&v)) {
                    found.push((pid, r.peak_pages * page_kib, maps::cstr(&r.comm)));
                }
            }
            Ok(None) => {}
            Err(source) => return Err(ProbeError::Map { map: "rss_exit".into(), source }),
        }
    }
    Ok(found)
}

/// Kernel functions sampled per key, named through kallsyms when it is readable.
pub(crate) fn footprint(o: &Object, ks: Option<&kallsyms::Kallsyms>) -> Result<Vec<Footprint>, ProbeError> {
    let mut totals: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (k, v) in percpu_entries(o, "fp_totals")? {
        let (Some(key), Some(f)) = (maps::decode::<u64>(&k), maps::sum_percpu::<maps::FpTotals>(&v)) else {
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
