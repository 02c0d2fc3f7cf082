//! Statistics in the shape of runc's `events --stats` data (runc/types/events.go), plus
//! OOM counters in `memory`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{fsutil, Cgroup, Error};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub cpu: CpuStats,
    pub cpuset: CpusetStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
    pub hugetlb: BTreeMap<String, HugetlbStats>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuUsage {
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Throttling {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpuStats {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CpusetStats {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MemoryStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
    /// Times the OOM path ran for this cgroup (v2 memory.events `oom`; v1: = oomKill).
    #[serde(default)]
    pub oom: u64,
    /// Processes killed by the OOM killer here.
    #[serde(default, rename = "oomKill")]
    pub oom_kill: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PidsStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0 when unlimited.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BlkioEntry {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlkioStats {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HugetlbStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// A limit as the kernel reports it: v1's "unlimited" stays its huge page-rounded number
/// and v2's "max" becomes u64::MAX, as runc reports them.
fn lim(path: &Path) -> Result<u64, Error> {
    fsutil::read_u64_opt(path)
}

pub(crate) fn collect(cg: &Cgroup) -> Result<Stats, Error> {
    let mut s = Stats::default();
    cpu(cg, &mut s)?;
    memory(cg, &mut s)?;
    pids(cg, &mut s)?;
    blkio(cg, &mut s)?;
    hugetlb(cg, &mut s)?;
    if let Some(d) = cg.v1_dir("cpuset").or_else(|| cg.v2_controller_dir("cpuset")) {
        let eff = |f: &str| -> Result<Vec<u16>, Error> {
            Ok(fsutil::read_opt(&d.join(f))?.map(|v| parse_list(&v)).unwrap_or_default())
        };
        let v1 = cg.v1_dir("cpuset").is_some();
        s.cpuset.cpus = eff(if v1 { "cpuset.effective_cpus" } else { "cpuset.cpus.effective" })?;
        s.cpuset.mems = eff(if v1 { "cpuset.effective_mems" } else { "cpuset.mems.effective" })?;
    }
    Ok(s)
}

/// "0-2,4" → [0, 1, 2, 4].
fn parse_list(s: &str) -> Vec<u16> {
    let mut v = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    v.extend(a..=b);
                }
            }
            None => v.extend(part.parse::<u16>().ok()),
        }
    }
    v
}

fn nums(s: &str) -> Vec<u64> {
    s.split_whitespace().filter_map(|x| x.parse().ok()).collect()
}

fn cpu(cg: &Cgroup, s: &mut Stats) -> Result<(), Error> {
    if let Some(d) = cg.v1_dir("cpuacct") {
        let u = &mut s.cpu.usage;
        u.total = fsutil::read_u64_opt(&d.join("cpuacct.usage"))?;
        u.percpu = fsutil::read_opt(&d.join("cpuacct.usage_percpu"))?.map(|v| nums(&v)).unwrap_or_default();
        u.percpu_kernel =
            fsutil::read_opt(&d.join("cpuacct.usage_percpu_sys"))?.map(|v| nums(&v)).unwrap_or_default();
        u.percpu_user =
            fsutil::read_opt(&d.join("cpuacct.usage_percpu_user"))?.map(|v| nums(&v)).unwrap_or_default();
        if let Some(st) = fsutil::read_opt(&d.join("cpuacct.stat"))? {
            // USER_HZ ticks (100 per second on Linux) → ns.
            u.user = fsutil::keyed_value(&st, "user").unwrap_or(0) * 10_000_000;
            u.kernel = fsutil::keyed_value(&st, "system").unwrap_or(0) * 10_000_000;
        }
    } else if let Some(d) = cg.v2_dir() {
        // cpu.stat's usage lines are a core cgroup2 file, present without the controller.
        if let Some(st) = fsutil::read_opt(&d.join("cpu.stat"))? {
            let k = |n| fsutil::keyed_value(&st, n).unwrap_or(0);
            s.cpu.usage.total = k("usage_usec") * 1000;
            s.cpu.usage.user = k("user_usec") * 1000;
            s.cpu.usage.kernel = k("system_usec") * 1000;
        }
    }
    let st = match (cg.v1_dir("cpu"), cg.v2_controller_dir("cpu")) {
        (Some(d), _) => fsutil::read_opt(&d.join("cpu.stat"))?.map(|st| (st, 1)),
        (None, Some(d)) => fsutil::read_opt(&d.join("cpu.stat"))?.map(|st| (st, 1000)),
        _ => None,
    };
    if let Some((st, mul)) = st {
        let k = |n| fsutil::keyed_value(&st, n).unwrap_or(0);
        s.cpu.throttling.periods = k("nr_periods");
        s.cpu.throttling.throttled_periods = k("nr_throttled");
        s.cpu.throttling.throttled_time =
            if mul == 1 { k("throttled_time") } else { k("throttled_usec") * 1000 };
    }
    Ok(())
}

fn entry(d: &Path, prefix: &str) -> Result<MemoryEntry, Error> {
    Ok(MemoryEntry {
        limit: lim(&d.join(format!("{prefix}limit_in_bytes")))?,
        usage: fsutil::read_u64_opt(&d.join(format!("{prefix}usage_in_bytes")))?,
        max: fsutil::read_u64_opt(&d.join(format!("{prefix}max_usage_in_bytes")))?,
        failcnt: fsutil::read_u64_opt(&d.join(format!("{prefix}failcnt")))?,
    })
}

fn memory(cg: &Cgroup, s: &mut Stats) -> Result<(), Error> {
    let m = &mut s.memory;
    if let Some(d) = cg.v1_dir("memory") {
        m.usage = entry(d, "memory.")?;
        m.swap = entry(d, "memory.memsw.")?;
        m.kernel = entry(d, "memory.kmem.")?;
        m.kernel_tcp = entry(d, "memory.kmem.tcp.")?;
        if let Some(st) = fsutil::read_opt(&d.join("memory.stat"))? {
            m.raw = fsutil::flat_keyed(&st).into_iter().collect();
        }
        m.cache = m.raw.get("total_cache").or(m.raw.get("cache")).copied().unwrap_or(0);
        let ev = cg.oom_events()?;
        m.oom = ev.oom;
        m.oom_kill = ev.oom_kill;
    } else if let Some(d) = cg.v2_controller_dir("memory") {
        m.usage = MemoryEntry {
            limit: lim(&d.join("memory.max"))?,
            usage: fsutil::read_u64_opt(&d.join("memory.current"))?,
            max: fsutil::read_u64_opt(&d.join("memory.peak"))?,
            failcnt: 0,
        };
        m.swap = MemoryEntry {
            limit: lim(&d.join("memory.swap.max"))?,
            usage: fsutil::read_u64_opt(&d.join("memory.swap.current"))?,
            max: fsutil::read_u64_opt(&d.join("memory.swap.peak"))?,
            failcnt: 0,
        };
        if let Some(st) = fsutil::read_opt(&d.join("memory.stat"))? {
            m.raw = fsutil::flat_keyed(&st).into_iter().collect();
        }
        m.cache = m.raw.get("file").copied().unwrap_or(0);
        if let Some(ev) = fsutil::read_opt(&d.join("memory.events"))? {
            m.usage.failcnt = fsutil::keyed_value(&ev, "max").unwrap_or(0);
            m.oom = fsutil::keyed_value(&ev, "oom").unwrap_or(0);
            m.oom_kill = fsutil::keyed_value(&ev, "oom_kill").unwrap_or(0);
        }
    }
    Ok(())
}

fn pids(cg: &Cgroup, s: &mut Stats) -> Result<(), Error> {
    if let Some(d) = cg.v1_dir("pids").or_else(|| cg.v2_controller_dir("pids")) {
        s.pids.current = fsutil::read_u64_opt(&d.join("pids.current"))?;
        let l = fsutil::read_u64_opt(&d.join("pids.max"))?;
        s.pids.limit = if l == u64::MAX { 0 } else { l };
    }
    Ok(())
}

/// v1 "8:0 Read 4096" lines (the "Total" line has no device).
fn blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (dev, op, val) = (it.next()?, it.next()?, it.next()?);
            let (ma, mi) = dev.split_once(':')?;
            Some(BlkioEntry {
                major: ma.parse().ok()?,
                minor: mi.parse().ok()?,
                op: op.to_string(),
                value: val.parse().ok()?,
            })
        })
        .collect()
}

fn blkio(cg: &Cgroup, s: &mut Stats) -> Result<(), Error> {
    if let Some(d) = cg.v1_dir("blkio") {
        // BFQ's counters when it is in use, else the throttle layer's (always there).
        for (bytes, ios) in [
            ("blkio.bfq.io_service_bytes_recursive", "blkio.bfq.io_serviced_recursive"),
            ("blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_serviced_recursive"),
        ] {
            let b = fsutil::read_opt(&d.join(bytes))?.map(|t| blkio_v1(&t)).unwrap_or_default();
            if !b.is_empty() || s.blkio.io_service_bytes_recursive.is_empty() {
                s.blkio.io_service_bytes_recursive = b;
                s.blkio.io_serviced_recursive =
                    fsutil::read_opt(&d.join(ios))?.map(|t| blkio_v1(&t)).unwrap_or_default();
            }
            if !s.blkio.io_service_bytes_recursive.is_empty() {
                break;
            }
        }
    } else if let Some(d) = cg.v2_controller_dir("io") {
        for line in fsutil::read_opt(&d.join("io.stat"))?.unwrap_or_default().lines() {
            let mut it = line.split_whitespace();
            let Some((ma, mi)) = it.next().and_then(|dev| dev.split_once(':')) else { continue };
            let (Ok(major), Ok(minor)) = (ma.parse::<u64>(), mi.parse::<u64>()) else { continue };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else { continue };
                let Ok(value) = v.parse::<u64>() else { continue };
                let e = |op: &str| BlkioEntry { major, minor, op: op.into(), value };
                match k {
                    "rbytes" => s.blkio.io_service_bytes_recursive.push(e("Read")),
                    "wbytes" => s.blkio.io_service_bytes_recursive.push(e("Write")),
                    "rios" => s.blkio.io_serviced_recursive.push(e("Read")),
                    "wios" => s.blkio.io_serviced_recursive.push(e("Write")),
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

fn hugetlb(cg: &Cgroup, s: &mut Stats) -> Result<(), Error> {
    if let Some(d) = cg.v1_dir("hugetlb") {
        for size in crate::resources::hugetlb_sizes(d) {
            let f = |x: &str| d.join(format!("hugetlb.{size}.{x}"));
            s.hugetlb.insert(
                size.clone(),
                HugetlbStats {
                    usage: fsutil::read_u64_opt(&f("usage_in_bytes"))?,
                    max: fsutil::read_u64_opt(&f("max_usage_in_bytes"))?,
                    failcnt: fsutil::read_u64_opt(&f("failcnt"))?,
                },
            );
        }
    } else if let Some(d) = cg.v2_controller_dir("hugetlb") {
        for size in crate::resources::hugetlb_sizes(d) {
            let f = |x: &str| d.join(format!("hugetlb.{size}.{x}"));
            let events = fsutil::read_opt(&f("events"))?.unwrap_or_default();
            s.hugetlb.insert(
                size.clone(),
                HugetlbStats {
                    usage: fsutil::read_u64_opt(&f("current"))?,
                    max: 0,
                    failcnt: fsutil::keyed_value(&events, "max").unwrap_or(0),
                },
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_blkio() {
        assert_eq!(parse_list("0-2,4\n"), vec![0, 1, 2, 4]);
        let e = blkio_v1("254:0 Read 4096\n254:0 Write 0\nTotal 4096\n");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].op, "Read");
        assert_eq!(e[0].value, 4096);
    }

    #[test]
    fn serializes_in_runc_shape() {
        let v = serde_json::to_value(Stats::default()).expect("json");
        assert!(v["memory"]["usage"].get("limit").is_some());
        assert!(v["memory"].get("kernelTCP").is_some());
        assert!(v["cpu"]["usage"].get("kernel").is_some());
        assert!(v.get("hugetlb").is_some());
    }
}
