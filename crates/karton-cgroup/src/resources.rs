//! `linux.resources` → an ordered list of cgroup file writes.
//!
//! Planning validates every key first (a key the host cannot apply fails before anything
//! is written), then the writes run in an order the kernel accepts. For `update`, the
//! current value of every file about to be written is read first, so a failed update can
//! write them back.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxNetwork, LinuxRdma, LinuxResources,
    LinuxThrottleDevice, LinuxWeightDevice,
};

use crate::{devices, fsutil, Cgroup, Error};

const K: &str = "linux.resources";

/// How to put a file back the way it was.
#[derive(Debug, Clone)]
pub(crate) enum Restore {
    /// Write back what was read (line by line if it had several lines).
    Plain,
    /// The file reads as `key value` lines; write back the value of this key.
    Keyed(&'static str),
    /// A per-device (or per-interface) line: write back the line starting with `dev`, or
    /// `reset` when there was none.
    Device { dev: String, reset: String },
}

#[derive(Debug, Clone)]
pub(crate) struct W {
    key: String,
    path: PathBuf,
    value: String,
    restore: Restore,
}

impl W {
    fn new(key: impl Into<String>, dir: &Path, file: &str, value: impl ToString) -> W {
        W { key: key.into(), path: dir.join(file), value: value.to_string(), restore: Restore::Plain }
    }
    fn restore(mut self, r: Restore) -> W {
        self.restore = r;
        self
    }
    fn dev(self, dev: String, reset: String) -> W {
        self.restore(Restore::Device { dev, reset })
    }
    fn run(&self) -> Result<(), Error> {
        fsutil::write(&self.key, &self.path, &self.value)
    }
}

#[derive(Debug)]
pub(crate) enum Op {
    One(W),
    /// Related limits the kernel checks against each other (memory vs memory+swap, quota
    /// vs burst, rt runtime vs period): whichever order works depends on the old values,
    /// so try forwards and, if a write is refused, backwards.
    EitherOrder(Vec<W>),
    /// v1 devices.allow / devices.deny writes, in rule order.
    DevicesV1 {
        dir: PathBuf,
        writes: Vec<W>,
    },
    /// A cgroup2 device program built from the rules (replaces the previous one).
    DevicesV2 {
        dir: PathBuf,
        rules: Vec<LinuxDeviceCgroup>,
    },
}

/// What `restore` needs to undo one op.
#[derive(Debug)]
pub(crate) enum Saved {
    Writes(Vec<W>),
    Either(Vec<W>),
    DevicesV1 { dir: PathBuf, list: String },
    Nothing,
}

/// Where a controller lives for this cgroup.
#[derive(Clone, Copy)]
enum At<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

fn locate<'a>(cg: &'a Cgroup, v1: &str, v2: &str) -> Option<At<'a>> {
    if let Some(d) = cg.v1_dir(v1) {
        return Some(At::V1(d));
    }
    cg.v2_controller_dir(v2).map(At::V2)
}

/// Makes `controller` usable in this cgroup's cgroup2 directory by enabling it in the
/// subtree_control of every ancestor below the mount point, top-down. Only done when a
/// limit needs it; it limits nothing by itself.
fn enable_v2(cg: &Cgroup, controller: &str, key: &str) -> Result<(), Error> {
    let (Some(mount), Some(leaf)) = (cg.v2_mount(), cg.v2_dir()) else { return Ok(()) };
    let mut ancestors: Vec<&Path> = leaf.ancestors().skip(1).take_while(|a| a.starts_with(mount)).collect();
    ancestors.reverse();
    for a in ancestors {
        let sc = a.join("cgroup.subtree_control");
        let cur = fsutil::read(&sc)?;
        if !cur.split_whitespace().any(|c| c == controller) {
            fsutil::write(key, &sc, &format!("+{controller}"))?;
        }
    }
    Ok(())
}

/// The location of a controller, or an "unsupported" error naming `key`.
fn need<'a>(cg: &'a Cgroup, v1: &str, v2: &str, key: &str) -> Result<At<'a>, Error> {
    match locate(cg, v1, v2) {
        Some(at @ At::V2(_)) => {
            enable_v2(cg, v2, key)?;
            Ok(at)
        }
        Some(at) => Ok(at),
        None => Err(Error::unsupported(
            key,
            format!("the {v1} controller is not mounted (neither a v1 hierarchy nor enabled in cgroup2): remove the key or mount the controller"),
        )),
    }
}

fn need_file(dir: &Path, file: &str, key: &str, why: &str) -> Result<(), Error> {
    if dir.join(file).exists() {
        Ok(())
    } else {
        Err(Error::unsupported(key, format!("{} does not exist: {why}", dir.join(file).display())))
    }
}

pub(crate) fn plan(cg: &Cgroup, res: &LinuxResources, for_update: bool) -> Result<Vec<Op>, Error> {
    let mut ops = Vec::new();
    // Order as runc: cpuset before memory (so memory nodes exist), devices early on v1;
    // unified last so its raw values win over converted ones; the v2 device program last
    // of all, as the only step that cannot be rolled back by rewriting a file.
    if let Some(cpu) = res.cpu() {
        plan_cpuset(cg, cpu, &mut ops)?;
    }
    let mut v2_devices = None;
    if let Some(devs) = res.devices().as_ref().filter(|d| !d.is_empty()) {
        v2_devices = plan_devices(cg, devs, &mut ops)?;
    }
    if let Some(m) = res.memory() {
        plan_memory(cg, m, for_update, &mut ops)?;
    }
    if let Some(cpu) = res.cpu() {
        plan_cpu(cg, cpu, &mut ops)?;
    }
    if let Some(p) = res.pids() {
        plan_pids(cg, p.limit(), &mut ops)?;
    }
    if let Some(b) = res.block_io() {
        plan_blkio(cg, b, &mut ops)?;
    }
    if let Some(h) = res.hugepage_limits() {
        plan_hugetlb(cg, h, &mut ops)?;
    }
    if let Some(n) = res.network() {
        plan_network(cg, n, &mut ops)?;
    }
    if let Some(rdma) = res.rdma().as_ref().filter(|r| !r.is_empty()) {
        plan_rdma(cg, rdma, &mut ops)?;
    }
    if let Some(u) = res.unified().as_ref().filter(|u| !u.is_empty()) {
        plan_unified(cg, u, &mut ops)?;
    }
    ops.extend(v2_devices);
    Ok(ops)
}

/// On v1 the allow/deny writes go into `ops` now; on v2 the device program is returned
/// instead, for the caller to run last.
fn plan_devices(cg: &Cgroup, devs: &[LinuxDeviceCgroup], ops: &mut Vec<Op>) -> Result<Option<Op>, Error> {
    match locate(cg, "devices", "devices") {
        Some(At::V1(d)) => {
            ops.push(devices_v1(d, devs)?);
            Ok(None)
        }
        _ => match cg.v2_dir() {
            Some(d) => {
                devices::validate(devs)?;
                Ok(Some(Op::DevicesV2 { dir: d.to_path_buf(), rules: devs.to_vec() }))
            }
            None => {
                Err(Error::unsupported(format!("{K}.devices"), "no devices controller and no cgroup2 mount"))
            }
        },
    }
}

fn plan_pids(cg: &Cgroup, limit: i64, ops: &mut Vec<Op>) -> Result<(), Error> {
    if limit == 0 {
        return Ok(());
    }
    let key = format!("{K}.pids.limit");
    let (At::V1(d) | At::V2(d)) = need(cg, "pids", "pids", &key)?;
    let v = if limit < 0 { "max".to_string() } else { limit.to_string() };
    ops.push(Op::One(W::new(key, d, "pids.max", v)));
    Ok(())
}

/// net_cls and net_prio exist only as v1 hierarchies.
fn plan_network(cg: &Cgroup, n: &LinuxNetwork, ops: &mut Vec<Op>) -> Result<(), Error> {
    if let Some(id) = n.class_id().filter(|c| *c != 0) {
        let key = format!("{K}.network.classID");
        let d = cg.v1_dir("net_cls").ok_or_else(|| {
            Error::unsupported(&key, "the net_cls controller is not mounted on this host (cgroup2 has none)")
        })?;
        ops.push(Op::One(W::new(key, d, "net_cls.classid", id)));
    }
    if let Some(prios) = n.priorities().as_ref().filter(|p| !p.is_empty()) {
        let key = format!("{K}.network.priorities");
        let d = cg.v1_dir("net_prio").ok_or_else(|| {
            Error::unsupported(&key, "the net_prio controller is not mounted on this host (cgroup2 has none)")
        })?;
        for p in prios {
            ops.push(Op::One(
                W::new(&key, d, "net_prio.ifpriomap", format!("{} {}", p.name(), p.priority()))
                    .dev(p.name().clone(), format!("{} 0", p.name())),
            ));
        }
    }
    Ok(())
}

fn plan_rdma(cg: &Cgroup, rdma: &HashMap<String, LinuxRdma>, ops: &mut Vec<Op>) -> Result<(), Error> {
    let key = format!("{K}.rdma");
    let (At::V1(d) | At::V2(d)) = need(cg, "rdma", "rdma", &key)?;
    for (dev, r) in rdma {
        let h = r.hca_handles().map_or("max".to_string(), |v| v.to_string());
        let o = r.hca_objects().map_or("max".to_string(), |v| v.to_string());
        ops.push(Op::One(
            W::new(format!("{key}.{dev}"), d, "rdma.max", format!("{dev} hca_handle={h} hca_object={o}"))
                .dev(dev.clone(), format!("{dev} hca_handle=max hca_object=max")),
        ));
    }
    Ok(())
}

fn plan_cpuset(cg: &Cgroup, cpu: &LinuxCpu, ops: &mut Vec<Op>) -> Result<(), Error> {
    for (name, val) in [("cpus", cpu.cpus()), ("mems", cpu.mems())] {
        if let Some(v) = val.as_deref().filter(|v| !v.trim().is_empty()) {
            let key = format!("{K}.cpu.{name}");
            let (At::V1(d) | At::V2(d)) = need(cg, "cpuset", "cpuset", &key)?;
            ops.push(Op::One(W::new(key, d, &format!("cpuset.{name}"), v.trim())));
        }
    }
    Ok(())
}

/// `linux.resources.memory` once validated, with the values that mean "not set" (0, and
/// -1 for the kernel limits, u64::MAX for swappiness) taken out.
#[derive(Debug, Default, PartialEq)]
struct Memory {
    limit: Option<i64>,
    swap: Option<i64>,
    reservation: Option<i64>,
    swappiness: Option<u64>,
    kernel: Option<i64>,
    kernel_tcp: Option<i64>,
    disable_oom_killer: Option<bool>,
    /// useHierarchy: false, which no current kernel can honour.
    no_hierarchy: bool,
    check_before_update: bool,
}

fn mem_key(f: &str) -> String {
    format!("{K}.memory.{f}")
}

/// The checks that need no host (pure). `None` when there is nothing to write.
#[allow(deprecated)] // memory.kernel: deprecated in the spec, still honoured where the kernel has it.
fn check_memory(m: &LinuxMemory) -> Result<Option<Memory>, Error> {
    let limit = m.limit().filter(|v| *v != 0);
    let swap = m.swap().filter(|v| *v != 0);
    for (name, v) in [("limit", limit), ("swap", swap), ("reservation", m.reservation())] {
        if let Some(v) = v.filter(|v| *v < -1) {
            return Err(Error::invalid(mem_key(name), v, "must be -1 (unlimited) or a number of bytes"));
        }
    }
    if let (Some(l), Some(s)) = (limit, swap) {
        if l > 0 && s > 0 && s < l {
            return Err(Error::invalid(
                mem_key("swap"),
                s,
                format!("memory.swap is memory+swap and must be >= memory.limit ({l})"),
            ));
        }
    }
    let swappiness = m.swappiness().filter(|v| *v != u64::MAX);
    if let Some(s) = swappiness.filter(|s| *s > 100) {
        return Err(Error::invalid(mem_key("swappiness"), s, "must be between 0 and 100"));
    }
    let mem = Memory {
        limit,
        swap,
        reservation: m.reservation(),
        swappiness,
        kernel: m.kernel().filter(|v| *v != 0 && *v != -1),
        kernel_tcp: m.kernel_tcp().filter(|v| *v != 0 && *v != -1),
        disable_oom_killer: m.disable_oom_killer(),
        no_hierarchy: m.use_hierarchy() == Some(false),
        check_before_update: m.check_before_update() == Some(true),
    };
    // disableOOMKiller: false or checkBeforeUpdate alone asks for nothing.
    let any = mem.limit.is_some()
        || mem.swap.is_some()
        || mem.reservation.is_some()
        || mem.swappiness.is_some()
        || mem.kernel.is_some()
        || mem.kernel_tcp.is_some()
        || mem.disable_oom_killer == Some(true)
        || mem.no_hierarchy;
    Ok(any.then_some(mem))
}

fn plan_memory(cg: &Cgroup, m: &LinuxMemory, for_update: bool, ops: &mut Vec<Op>) -> Result<(), Error> {
    let Some(mem) = check_memory(m)? else { return Ok(()) };
    let first_key = if mem.limit.is_some() { mem_key("limit") } else { format!("{K}.memory") };
    match need(cg, "memory", "memory", &first_key)? {
        At::V1(d) => memory_v1(d, &mem, for_update, ops),
        At::V2(d) => memory_v2(d, &mem, for_update, ops),
    }
}

fn memory_v1(d: &Path, mem: &Memory, for_update: bool, ops: &mut Vec<Op>) -> Result<(), Error> {
    if for_update && mem.check_before_update {
        check_usage(d, "memory.usage_in_bytes", mem.limit, &mem_key("limit"))?;
    }
    memory_v1_limits(d, mem, ops)?;
    if let Some(r) = mem.reservation {
        ops.push(Op::One(W::new(mem_key("reservation"), d, "memory.soft_limit_in_bytes", r)));
    }
    if let Some(s) = mem.swappiness {
        ops.push(Op::One(W::new(mem_key("swappiness"), d, "memory.swappiness", s)));
    }
    let kmem = [
        (
            "kernel",
            mem.kernel,
            "memory.kmem.limit_in_bytes",
            "this kernel has no kernel-memory limit (removed in Linux 6.x for v1); remove the key",
        ),
        (
            "kernelTCP",
            mem.kernel_tcp,
            "memory.kmem.tcp.limit_in_bytes",
            "this kernel has no kernel TCP memory limit; remove the key",
        ),
    ];
    for (name, v, file, why) in kmem {
        if let Some(k) = v {
            need_file(d, file, &mem_key(name), why)?;
            ops.push(Op::One(W::new(mem_key(name), d, file, k)));
        }
    }
    if let Some(b) = mem.disable_oom_killer {
        ops.push(Op::One(
            W::new(mem_key("disableOOMKiller"), d, "memory.oom_control", u8::from(b))
                .restore(Restore::Keyed("oom_kill_disable")),
        ));
    }
    if mem.no_hierarchy {
        return Err(Error::unsupported(
            mem_key("useHierarchy"),
            "this kernel always uses hierarchical accounting; remove the key or set it to true",
        ));
    }
    Ok(())
}

/// memory and memory+swap, which the kernel checks against each other.
fn memory_v1_limits(d: &Path, mem: &Memory, ops: &mut Vec<Op>) -> Result<(), Error> {
    let mut pair = Vec::new();
    if let Some(l) = mem.limit {
        pair.push(W::new(mem_key("limit"), d, "memory.limit_in_bytes", l));
    }
    if let Some(s) = mem.swap {
        need_file(
            d,
            "memory.memsw.limit_in_bytes",
            &mem_key("swap"),
            "swap accounting is off in this kernel (boot with swapaccount=1) or remove the key",
        )?;
        pair.push(W::new(mem_key("swap"), d, "memory.memsw.limit_in_bytes", s));
    } else if mem.limit == Some(-1) && d.join("memory.memsw.limit_in_bytes").exists() {
        // "No limit" must lift memory+swap too, or the old memsw keeps limiting (runc
        // does the same).
        pair.push(W::new(mem_key("limit"), d, "memory.memsw.limit_in_bytes", -1));
    }
    if !pair.is_empty() {
        ops.push(Op::EitherOrder(pair));
    }
    Ok(())
}

fn memory_v2(d: &Path, mem: &Memory, for_update: bool, ops: &mut Vec<Op>) -> Result<(), Error> {
    if mem.swappiness.is_some() {
        return Err(Error::unsupported(
            mem_key("swappiness"),
            "cgroup v2 has no per-cgroup swappiness; remove the key",
        ));
    }
    if mem.kernel.is_some() || mem.kernel_tcp.is_some() {
        let k = if mem.kernel.is_some() { "kernel" } else { "kernelTCP" };
        return Err(Error::unsupported(mem_key(k), "cgroup v2 has no separate kernel memory limit (kernel memory counts in memory.max); remove the key"));
    }
    if mem.disable_oom_killer == Some(true) {
        return Err(Error::unsupported(
            mem_key("disableOOMKiller"),
            "cgroup v2 cannot disable the OOM killer for a cgroup; remove the key",
        ));
    }
    if for_update && mem.check_before_update {
        check_usage(d, "memory.current", mem.limit, &mem_key("limit"))?;
    }
    if let Some(s) = mem.swap {
        let v = swap_max_v2(s, mem.limit)?;
        need_file(
            d,
            "memory.swap.max",
            &mem_key("swap"),
            "swap accounting is off in this kernel; remove the key",
        )?;
        ops.push(Op::One(W::new(mem_key("swap"), d, "memory.swap.max", v)));
    }
    if let Some(l) = mem.limit {
        ops.push(Op::One(W::new(mem_key("limit"), d, "memory.max", max_or(l))));
    }
    if let Some(r) = mem.reservation {
        ops.push(Op::One(W::new(mem_key("reservation"), d, "memory.low", max_or(r))));
    }
    Ok(())
}

/// OCI swap is memory+swap; cgroup2's memory.swap.max is swap alone.
fn swap_max_v2(swap: i64, limit: Option<i64>) -> Result<String, Error> {
    match (swap, limit) {
        (-1, _) => Ok("max".to_string()),
        (_, None) | (_, Some(-1)) => Err(Error::invalid(
            mem_key("swap"),
            swap,
            "a swap limit needs memory.limit on cgroup v2 (swap.max = swap - limit)",
        )),
        (s, Some(l)) => Ok((s - l).to_string()),
    }
}

fn max_or(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

fn check_usage(d: &Path, file: &str, limit: Option<i64>, key: &str) -> Result<(), Error> {
    if let Some(l) = limit.filter(|l| *l > 0) {
        let usage = fsutil::read_u64(&d.join(file))?;
        if usage > l as u64 {
            return Err(Error::invalid(key, l, format!("below current usage {usage} (checkBeforeUpdate)")));
        }
    }
    Ok(())
}

/// cgroup v1 cpu.shares [2, 262144] → cgroup v2 cpu.weight [1, 10000]: the linear map of
/// runc ≤ 1.2 and crun < 1.12 (so shares 1024 → weight 39, not the v2 default 100).
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// blkio weight [10, 1000] → io.weight [1, 10000] (runc's linear map).
pub fn blkio_weight_to_io(w: u16) -> u64 {
    let w = u64::from(w.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// `linux.resources.cpu` (bar cpus and mems) once validated, with zeros ("not set") taken
/// out.
#[derive(Debug, Default, PartialEq)]
struct Cpu {
    shares: Option<u64>,
    quota: Option<i64>,
    period: Option<u64>,
    burst: Option<u64>,
    rt_runtime: Option<i64>,
    rt_period: Option<u64>,
    idle: Option<i64>,
}

impl Cpu {
    /// The key a missing controller is reported against: the first limit given.
    fn first_key(&self) -> String {
        [
            ("shares", self.shares.is_some()),
            ("quota", self.quota.is_some()),
            ("period", self.period.is_some()),
        ]
        .iter()
        .find(|(_, s)| *s)
        .map_or(format!("{K}.cpu"), |(n, _)| cpu_key(n))
    }
}

fn cpu_key(f: &str) -> String {
    format!("{K}.cpu.{f}")
}

/// The checks that need no host (pure). `None` when there is nothing to write.
fn check_cpu(cpu: &LinuxCpu) -> Result<Option<Cpu>, Error> {
    let c = Cpu {
        shares: cpu.shares().filter(|v| *v != 0),
        quota: cpu.quota().filter(|v| *v != 0),
        period: cpu.period().filter(|v| *v != 0),
        burst: cpu.burst(),
        rt_runtime: cpu.realtime_runtime().filter(|v| *v != 0),
        rt_period: cpu.realtime_period().filter(|v| *v != 0),
        idle: cpu.idle(),
    };
    if let Some(q) = c.quota.filter(|q| *q < -1) {
        return Err(Error::invalid(cpu_key("quota"), q, "must be -1 (unlimited) or microseconds >= 1000"));
    }
    Ok((c != Cpu::default()).then_some(c))
}

fn plan_cpu(cg: &Cgroup, cpu: &LinuxCpu, ops: &mut Vec<Op>) -> Result<(), Error> {
    let Some(c) = check_cpu(cpu)? else { return Ok(()) };
    match need(cg, "cpu", "cpu", &c.first_key())? {
        At::V1(d) => cpu_v1(cg, d, &c, ops),
        At::V2(d) => cpu_v2(d, &c, ops),
    }
}

fn cpu_v1(cg: &Cgroup, d: &Path, c: &Cpu, ops: &mut Vec<Op>) -> Result<(), Error> {
    if let Some(s) = c.shares {
        ops.push(Op::One(W::new(cpu_key("shares"), d, "cpu.shares", s)));
    }
    let mut group = Vec::new();
    if let Some(p) = c.period {
        group.push(W::new(cpu_key("period"), d, "cpu.cfs_period_us", p));
    }
    if let Some(q) = c.quota {
        group.push(W::new(cpu_key("quota"), d, "cpu.cfs_quota_us", q));
    }
    if let Some(b) = c.burst {
        need_file(d, "cpu.cfs_burst_us", &cpu_key("burst"), "this kernel has no CFS burst; remove the key")?;
        group.push(W::new(cpu_key("burst"), d, "cpu.cfs_burst_us", b));
    }
    if !group.is_empty() {
        ops.push(Op::EitherOrder(group));
    }
    cpu_v1_realtime(cg, d, c, ops)?;
    cpu_idle(d, c.idle, ops)
}

fn cpu_v1_realtime(cg: &Cgroup, d: &Path, c: &Cpu, ops: &mut Vec<Op>) -> Result<(), Error> {
    if let Some(r) = c.rt_runtime.filter(|r| *r > 0) {
        plan_rt_ancestors(cg, d, r, c.rt_period, ops)?;
    }
    let why = "kernel built without CONFIG_RT_GROUP_SCHED";
    let mut rt = Vec::new();
    if let Some(p) = c.rt_period {
        need_file(d, "cpu.rt_period_us", &cpu_key("realtimePeriod"), why)?;
        rt.push(W::new(cpu_key("realtimePeriod"), d, "cpu.rt_period_us", p));
    }
    if let Some(r) = c.rt_runtime {
        need_file(d, "cpu.rt_runtime_us", &cpu_key("realtimeRuntime"), why)?;
        rt.push(W::new(cpu_key("realtimeRuntime"), d, "cpu.rt_runtime_us", r));
    }
    if !rt.is_empty() {
        ops.push(Op::EitherOrder(rt));
    }
    Ok(())
}

/// cpu.idle has the same name and meaning in v1 and v2.
fn cpu_idle(d: &Path, idle: Option<i64>, ops: &mut Vec<Op>) -> Result<(), Error> {
    if let Some(i) = idle {
        need_file(d, "cpu.idle", &cpu_key("idle"), "this kernel has no SCHED_IDLE cgroups; remove the key")?;
        ops.push(Op::One(W::new(cpu_key("idle"), d, "cpu.idle", i)));
    }
    Ok(())
}

fn cpu_v2(d: &Path, c: &Cpu, ops: &mut Vec<Op>) -> Result<(), Error> {
    if c.rt_runtime.is_some() || c.rt_period.is_some() {
        let k = if c.rt_runtime.is_some() { "realtimeRuntime" } else { "realtimePeriod" };
        return Err(Error::unsupported(
            cpu_key(k),
            "cgroup v2 has no realtime bandwidth control; remove the key",
        ));
    }
    if let Some(s) = c.shares {
        ops.push(Op::One(W::new(cpu_key("shares"), d, "cpu.weight", shares_to_weight(s))));
    }
    let mut group = Vec::new();
    if c.quota.is_some() || c.period.is_some() {
        let cur = fsutil::read_opt(&d.join("cpu.max"))?;
        let k = if c.quota.is_some() { cpu_key("quota") } else { cpu_key("period") };
        group.push(W::new(k, d, "cpu.max", cpu_max(cur.as_deref(), c.quota, c.period)));
    }
    if let Some(b) = c.burst {
        need_file(d, "cpu.max.burst", &cpu_key("burst"), "this kernel has no CFS burst; remove the key")?;
        group.push(W::new(cpu_key("burst"), d, "cpu.max.burst", b));
    }
    if !group.is_empty() {
        ops.push(Op::EitherOrder(group));
    }
    cpu_idle(d, c.idle, ops)
}

/// The new cpu.max line from the current one (`None`: the kernel default): cpu.max holds
/// both quota and period, so keep the half that was not given.
fn cpu_max(cur: Option<&str>, quota: Option<i64>, period: Option<u64>) -> String {
    let mut it = cur.unwrap_or("max 100000").split_whitespace();
    let cur_q = it.next().unwrap_or("max").to_string();
    let cur_p = it.next().unwrap_or("100000").to_string();
    let q = quota.map_or(cur_q, max_or);
    let p = period.map_or(cur_p, |p| p.to_string());
    format!("{q} {p}")
}

/// A v1 realtime budget must fit in the parent's. The parents this cgroup created start
/// with none (rt_runtime_us 0): give each, top-down, enough for the child's share
/// (runtime/period), never touching a parent it did not create.
fn plan_rt_ancestors(
    cg: &Cgroup,
    leaf: &Path,
    runtime: i64,
    period: Option<u64>,
    ops: &mut Vec<Op>,
) -> Result<(), Error> {
    let key = format!("{K}.cpu.realtimeRuntime");
    let child_period = match period {
        Some(p) => p,
        None => fsutil::read_u64(&leaf.join("cpu.rt_period_us"))?,
    };
    if child_period == 0 {
        return Ok(());
    }
    let created: Vec<&Path> =
        cg.created().iter().map(PathBuf::as_path).filter(|d| leaf.starts_with(d) && *d != leaf).collect();
    for d in created {
        let pp = fsutil::read_u64(&d.join("cpu.rt_period_us"))?;
        let have = fsutil::read(&d.join("cpu.rt_runtime_us"))?.trim().parse::<i64>().unwrap_or(0);
        let need = ((runtime as u128 * pp as u128).div_ceil(child_period as u128)).min(pp as u128) as i64;
        if have >= 0 && have < need {
            ops.push(Op::One(W::new(&key, d, "cpu.rt_runtime_us", need)));
        }
    }
    Ok(())
}

/// One throttle kind: its OCI key, its devices, the v1 file suffix and the v2 io.max key.
type Throttle<'a> = (&'static str, &'a Option<Vec<LinuxThrottleDevice>>, &'static str, &'static str);

/// `linux.resources.blockIO` once validated, with zero weights ("not set") taken out.
struct Blkio<'a> {
    weight: Option<u16>,
    leaf: Option<u16>,
    wdev: &'a [LinuxWeightDevice],
    throttles: [Throttle<'a>; 4],
}

fn blkio_key(f: &str) -> String {
    format!("{K}.blockIO.{f}")
}

/// The checks that need no host (pure). `None` when there is nothing to write.
fn check_blkio(b: &LinuxBlockIo) -> Result<Option<Blkio<'_>>, Error> {
    let io = Blkio {
        weight: b.weight().filter(|w| *w != 0),
        leaf: b.leaf_weight().filter(|w| *w != 0),
        wdev: b.weight_device().as_deref().unwrap_or_default(),
        throttles: [
            ("throttleReadBpsDevice", b.throttle_read_bps_device(), "read_bps_device", "rbps"),
            ("throttleWriteBpsDevice", b.throttle_write_bps_device(), "write_bps_device", "wbps"),
            ("throttleReadIOPSDevice", b.throttle_read_iops_device(), "read_iops_device", "riops"),
            ("throttleWriteIOPSDevice", b.throttle_write_iops_device(), "write_iops_device", "wiops"),
        ],
    };
    let any_throttle = io.throttles.iter().any(|t| t.1.as_ref().is_some_and(|v| !v.is_empty()));
    if io.weight.is_none() && io.leaf.is_none() && io.wdev.is_empty() && !any_throttle {
        return Ok(None);
    }
    for (name, w) in [("weight", io.weight), ("leafWeight", io.leaf)] {
        if let Some(w) = w.filter(|w| !(10..=1000).contains(w)) {
            return Err(Error::invalid(blkio_key(name), w, "must be between 10 and 1000"));
        }
    }
    Ok(Some(io))
}

fn plan_blkio(cg: &Cgroup, b: &LinuxBlockIo, ops: &mut Vec<Op>) -> Result<(), Error> {
    let Some(io) = check_blkio(b)? else { return Ok(()) };
    match need(cg, "blkio", "io", &format!("{K}.blockIO"))? {
        At::V1(d) => blkio_v1(d, &io, ops),
        At::V2(d) => blkio_v2(d, &io, ops),
    }
}

fn blkio_v1(d: &Path, io: &Blkio, ops: &mut Vec<Op>) -> Result<(), Error> {
    // CFQ's blkio.weight is gone from modern kernels; BFQ has blkio.bfq.weight.
    let wfile = if d.join("blkio.weight").exists() { "blkio.weight" } else { "blkio.bfq.weight" };
    let wdfile = if d.join("blkio.weight_device").exists() {
        "blkio.weight_device"
    } else {
        "blkio.bfq.weight_device"
    };
    if let Some(w) = io.weight {
        need_file(
            d,
            wfile,
            &blkio_key("weight"),
            "no proportional-weight I/O policy (CFQ or BFQ) in this kernel",
        )?;
        ops.push(Op::One(W::new(blkio_key("weight"), d, wfile, w)));
    }
    if let Some(w) = io.leaf {
        need_file(
            d,
            "blkio.leaf_weight",
            &blkio_key("leafWeight"),
            "leaf weights existed only with the CFQ scheduler, which this kernel lacks; remove the key",
        )?;
        ops.push(Op::One(W::new(blkio_key("leafWeight"), d, "blkio.leaf_weight", w)));
    }
    blkio_v1_weight_devices(d, wdfile, io.wdev, ops)?;
    for (name, list, file, _) in &io.throttles {
        for (i, t) in list.iter().flatten().enumerate() {
            let dev = format!("{}:{}", t.major(), t.minor());
            let f = format!("blkio.throttle.{file}");
            let k = format!("{}[{i}]", blkio_key(name));
            need_file(d, &f, &k, "this kernel has no blkio throttling (CONFIG_BLK_DEV_THROTTLING)")?;
            ops.push(Op::One(
                W::new(k, d, &f, format!("{dev} {}", t.rate())).dev(dev.clone(), format!("{dev} 0")),
            ));
        }
    }
    Ok(())
}

fn blkio_v1_weight_devices(
    d: &Path,
    wdfile: &str,
    wdev: &[LinuxWeightDevice],
    ops: &mut Vec<Op>,
) -> Result<(), Error> {
    for (i, wd) in wdev.iter().enumerate() {
        let dev = format!("{}:{}", wd.major(), wd.minor());
        if let Some(w) = wd.weight() {
            let k = format!("{}[{i}].weight", blkio_key("weightDevice"));
            need_file(d, wdfile, &k, "no proportional-weight I/O policy in this kernel")?;
            ops.push(Op::One(
                W::new(k, d, wdfile, format!("{dev} {w}")).dev(dev.clone(), format!("{dev} 0")),
            ));
        }
        if let Some(w) = wd.leaf_weight() {
            let k = format!("{}[{i}].leafWeight", blkio_key("weightDevice"));
            need_file(
                d,
                "blkio.leaf_weight_device",
                &k,
                "leaf weights existed only with CFQ; remove the key",
            )?;
            ops.push(Op::One(
                W::new(k, d, "blkio.leaf_weight_device", format!("{dev} {w}"))
                    .dev(dev.clone(), format!("{dev} 0")),
            ));
        }
    }
    Ok(())
}

fn blkio_v2(d: &Path, io: &Blkio, ops: &mut Vec<Op>) -> Result<(), Error> {
    if io.leaf.is_some() || io.wdev.iter().any(|w| w.leaf_weight().is_some()) {
        return Err(Error::unsupported(
            blkio_key("leafWeight"),
            "cgroup v2 has no leaf weights; remove the key",
        ));
    }
    let bfq = d.join("io.bfq.weight").exists();
    if let Some(w) = io.weight {
        if bfq {
            ops.push(Op::One(
                W::new(blkio_key("weight"), d, "io.bfq.weight", w).restore(Restore::Keyed("default")),
            ));
        } else {
            need_file(
                d,
                "io.weight",
                &blkio_key("weight"),
                "no io.weight (io.cost) or io.bfq.weight in this kernel",
            )?;
            ops.push(Op::One(
                W::new(blkio_key("weight"), d, "io.weight", format!("default {}", blkio_weight_to_io(w)))
                    .restore(Restore::Keyed("default")),
            ));
        }
    }
    for (i, wd) in io.wdev.iter().enumerate() {
        let dev = format!("{}:{}", wd.major(), wd.minor());
        if let Some(w) = wd.weight() {
            let k = format!("{}[{i}].weight", blkio_key("weightDevice"));
            let (file, val) =
                if bfq { ("io.bfq.weight", u64::from(w)) } else { ("io.weight", blkio_weight_to_io(w)) };
            need_file(d, file, &k, "no per-device I/O weights in this kernel")?;
            ops.push(Op::One(
                W::new(k, d, file, format!("{dev} {val}")).dev(dev.clone(), format!("{dev} default")),
            ));
        }
    }
    blkio_v2_throttles(d, &io.throttles, ops)
}

fn blkio_v2_throttles(d: &Path, throttles: &[Throttle], ops: &mut Vec<Op>) -> Result<(), Error> {
    for (name, list, _, v2key) in throttles {
        for (i, t) in list.iter().flatten().enumerate() {
            let dev = format!("{}:{}", t.major(), t.minor());
            let k = format!("{}[{i}]", blkio_key(name));
            need_file(d, "io.max", &k, "this kernel has no io.max throttling")?;
            // 0 means "no limit" in the OCI/v1 sense.
            let rate = if t.rate() == 0 { "max".to_string() } else { t.rate().to_string() };
            ops.push(Op::One(
                W::new(k, d, "io.max", format!("{dev} {v2key}={rate}"))
                    .dev(dev.clone(), format!("{dev} rbps=max wbps=max riops=max wiops=max")),
            ));
        }
    }
    Ok(())
}

fn plan_hugetlb(
    cg: &Cgroup,
    limits: &[oci_spec::runtime::LinuxHugepageLimit],
    ops: &mut Vec<Op>,
) -> Result<(), Error> {
    if limits.is_empty() {
        return Ok(());
    }
    let base = format!("{K}.hugepageLimits");
    let at = need(cg, "hugetlb", "hugetlb", &base)?;
    for (i, h) in limits.iter().enumerate() {
        let key = format!("{base}[{i}] (pageSize {:?})", h.page_size());
        let size = h.page_size();
        if size.is_empty() || size.contains('/') || size.contains('.') {
            return Err(Error::invalid(key, size, "expected a page size such as \"2MB\" or \"1GB\""));
        }
        let (d, file, rsvd, value) = match at {
            At::V1(d) => (
                d,
                format!("hugetlb.{size}.limit_in_bytes"),
                format!("hugetlb.{size}.rsvd.limit_in_bytes"),
                h.limit().to_string(),
            ),
            At::V2(d) => {
                (d, format!("hugetlb.{size}.max"), format!("hugetlb.{size}.rsvd.max"), max_or(h.limit()))
            }
        };
        if !d.join(&file).exists() {
            let avail = hugetlb_sizes(d);
            return Err(Error::unsupported(
                key,
                format!("no hugetlb page size {size} here (available: {})", avail.join(", ")),
            ));
        }
        ops.push(Op::One(W::new(&key, d, &file, &value)));
        // Reservations too where the kernel has them, so a reserved-but-unfaulted mapping
        // cannot exceed the limit either (runc does the same).
        if d.join(&rsvd).exists() {
            ops.push(Op::One(W::new(&key, d, &rsvd, &value)));
        }
    }
    Ok(())
}

pub(crate) fn hugetlb_sizes(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .map(|it| {
            it.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let rest = n.strip_prefix("hugetlb.")?;
                    let (size, tail) = rest.split_once('.')?;
                    (tail == "limit_in_bytes" || tail == "max").then(|| size.to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.dedup();
    v
}

fn plan_unified(
    cg: &Cgroup,
    u: &std::collections::HashMap<String, String>,
    ops: &mut Vec<Op>,
) -> Result<(), Error> {
    let Some(d) = cg.v2_dir() else {
        return Err(Error::unsupported(
            format!("{K}.unified"),
            "this host has no cgroup2 hierarchy (pure cgroup v1); remove the key",
        ));
    };
    // Sorted so that the write order does not depend on HashMap order.
    let sorted: BTreeMap<&String, &String> = u.iter().collect();
    for (k, v) in sorted {
        let key = format!("{K}.unified[{k:?}]");
        if k.is_empty() || k.contains('/') || k.starts_with('.') || !k.contains('.') {
            return Err(Error::invalid(key, k, "expected a cgroup2 file name such as \"memory.high\""));
        }
        let ctrl = k.split('.').next().unwrap_or_default();
        if ctrl != "cgroup" {
            if cg.v2_controllers().iter().any(|c| c == ctrl) {
                enable_v2(cg, ctrl, &key)?;
            } else if !d.join(k).exists() {
                let why = if cg.v1_dir(ctrl).is_some() {
                    format!("the {ctrl} controller is bound to a cgroup v1 hierarchy on this host, not to cgroup2")
                } else {
                    format!(
                        "cgroup2 here has no {ctrl} controller (available: {})",
                        cg.v2_controllers().join(" ")
                    )
                };
                return Err(Error::unsupported(key, why));
            }
        }
        need_file(d, k, &key, "no such cgroup2 interface file in this kernel")?;
        ops.push(Op::One(W::new(key, d, k, v)));
    }
    Ok(())
}

fn devices_v1(d: &Path, devs: &[LinuxDeviceCgroup]) -> Result<Op, Error> {
    // Deny everything first: access is allowed only by a rule (as runc, and as the v2
    // program does), not inherited from the parent's allow-all.
    let mut writes = vec![W::new(format!("{K}.devices"), d, "devices.deny", "a")];
    for (i, r) in devs.iter().enumerate() {
        let Some(lines) = devices::v1_rule(i, r)? else { continue };
        let file = if r.allow() { "devices.allow" } else { "devices.deny" };
        for line in lines {
            writes.push(W::new(format!("{K}.devices[{i}]"), d, file, line));
        }
    }
    Ok(Op::DevicesV1 { dir: d.to_path_buf(), writes })
}

pub(crate) fn execute(ops: &[Op]) -> Result<(), Error> {
    execute_upto(ops).map_err(|(_, e)| e)
}

/// Runs the ops; on failure says which op failed (ops before it have been applied).
pub(crate) fn execute_upto(ops: &[Op]) -> Result<(), (usize, Error)> {
    for (i, op) in ops.iter().enumerate() {
        let r = match op {
            Op::One(w) => w.run(),
            Op::EitherOrder(ws) => run_either(ws),
            Op::DevicesV1 { writes, .. } => writes.iter().try_for_each(W::run),
            Op::DevicesV2 { dir, rules } => devices::apply_v2(dir, rules),
        };
        r.map_err(|e| (i, e))?;
    }
    Ok(())
}

/// The saved values to write back after op `failed` failed: every op before it, and the
/// failed one itself when it is several writes of which some may have landed.
pub(crate) fn to_restore<'a>(ops: &[Op], saved: &'a [Saved], failed: usize) -> &'a [Saved] {
    let partial = matches!(ops.get(failed), Some(Op::EitherOrder(_) | Op::DevicesV1 { .. }));
    let end = if partial { failed + 1 } else { failed };
    &saved[..end.min(saved.len())]
}

fn run_either(ws: &[W]) -> Result<(), Error> {
    match ws.iter().try_for_each(W::run) {
        Ok(()) => Ok(()),
        Err(first) => {
            // The kernel refused a value against a related old one: the other order works
            // if the new values are consistent among themselves.
            if ws.iter().rev().try_for_each(W::run).is_ok() {
                Ok(())
            } else {
                Err(first)
            }
        }
    }
}

/// Reads the current value of everything `ops` will write.
pub(crate) fn snapshot(ops: &[Op]) -> Result<Vec<Saved>, Error> {
    let mut out = Vec::new();
    for op in ops {
        out.push(match op {
            Op::One(w) => Saved::Writes(restore_writes(w)?),
            Op::EitherOrder(ws) => {
                let mut v = Vec::new();
                for w in ws {
                    v.extend(restore_writes(w)?);
                }
                Saved::Either(v)
            }
            Op::DevicesV1 { dir, .. } => {
                Saved::DevicesV1 { dir: dir.clone(), list: fsutil::read(&dir.join("devices.list"))? }
            }
            // Last op, and it replaces the old program only once the new one is attached.
            Op::DevicesV2 { .. } => Saved::Nothing,
        });
    }
    Ok(out)
}

fn restore_writes(w: &W) -> Result<Vec<W>, Error> {
    let old = fsutil::read(&w.path)?;
    let mk = |v: &str| W {
        key: format!("{} (restore)", w.key),
        path: w.path.clone(),
        value: v.to_string(),
        restore: Restore::Plain,
    };
    Ok(match &w.restore {
        Restore::Plain => old.lines().map(str::trim).filter(|l| !l.is_empty()).map(mk).collect(),
        Restore::Keyed(k) => fsutil::keyed_value(&old, k).map(|v| mk(&v.to_string())).into_iter().collect(),
        Restore::Device { dev, reset } => {
            let line = old.lines().find(|l| l.split_whitespace().next() == Some(dev.as_str()));
            vec![mk(line.unwrap_or(reset))]
        }
    })
}

/// Writes back what `snapshot` read, last op first. Keeps going after a failure so that as
/// much as possible is restored, and reports the first failure.
pub(crate) fn restore(saved: &[Saved]) -> Result<(), Error> {
    let mut first_err = None;
    for s in saved.iter().rev() {
        let r = match s {
            Saved::Writes(ws) => ws.iter().try_for_each(W::run),
            Saved::Either(ws) => run_either(ws),
            Saved::DevicesV1 { dir, list } => restore_devices_v1(dir, list),
            Saved::Nothing => Ok(()),
        };
        if let Err(e) = r {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

fn restore_devices_v1(dir: &Path, list: &str) -> Result<(), Error> {
    fsutil::write("devices (restore)", &dir.join("devices.deny"), "a")?;
    for l in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        fsutil::write("devices (restore)", &dir.join("devices.allow"), l)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(1000), 10_000);
    }

    fn json<T: serde::de::DeserializeOwned>(s: &str) -> T {
        serde_json::from_str(s).expect("test JSON parses")
    }

    /// The key an `InvalidValue` error names, or a panic naming what came instead.
    fn invalid_key<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
        match r {
            Err(Error::InvalidValue { key, .. }) => key,
            other => panic!("expected an invalid value, got {other:?}"),
        }
    }

    #[test]
    fn check_memory_validates_and_drops_unset_values() {
        let m = |s| check_memory(&json(s));
        assert_eq!(m("{}").ok(), Some(None));
        // Zero means "not set"; disableOOMKiller false and checkBeforeUpdate ask for nothing.
        assert_eq!(
            m(r#"{"limit": 0, "disableOOMKiller": false, "checkBeforeUpdate": true}"#).ok(),
            Some(None)
        );
        assert_eq!(m(r#"{"kernel": -1, "swappiness": 18446744073709551615}"#).ok(), Some(None));
        let got = m(r#"{"limit": 1048576, "swap": 2097152, "useHierarchy": false}"#).ok().flatten();
        let want =
            Memory { limit: Some(1_048_576), swap: Some(2_097_152), no_hierarchy: true, ..Memory::default() };
        assert_eq!(got, Some(want));
        assert_eq!(invalid_key(m(r#"{"reservation": -2}"#)), "linux.resources.memory.reservation");
        assert_eq!(invalid_key(m(r#"{"limit": 200, "swap": 100}"#)), "linux.resources.memory.swap");
        assert_eq!(invalid_key(m(r#"{"swappiness": 101}"#)), "linux.resources.memory.swappiness");
    }

    #[test]
    fn v2_swap_is_swap_minus_memory() {
        assert_eq!(swap_max_v2(-1, None).ok().as_deref(), Some("max"));
        assert_eq!(swap_max_v2(300, Some(100)).ok().as_deref(), Some("200"));
        assert_eq!(invalid_key(swap_max_v2(300, None)), "linux.resources.memory.swap");
        assert_eq!(invalid_key(swap_max_v2(300, Some(-1))), "linux.resources.memory.swap");
    }

    #[test]
    fn check_cpu_validates_and_names_the_first_key() {
        let c = |s| check_cpu(&json(s));
        assert_eq!(c(r#"{"shares": 0, "quota": 0, "cpus": "0-1"}"#).ok(), Some(None));
        assert_eq!(invalid_key(c(r#"{"quota": -2}"#)), "linux.resources.cpu.quota");
        let got = c(r#"{"quota": 50000, "period": 100000}"#).ok().flatten();
        assert_eq!(got.as_ref().map(Cpu::first_key).as_deref(), Some("linux.resources.cpu.quota"));
        let got = c(r#"{"idle": 1}"#).ok().flatten();
        assert_eq!(got.as_ref().map(Cpu::first_key).as_deref(), Some("linux.resources.cpu"));
    }

    #[test]
    fn cpu_max_keeps_the_half_not_given() {
        assert_eq!(cpu_max(None, Some(50_000), None), "50000 100000");
        assert_eq!(cpu_max(Some("20000 200000\n"), None, Some(50_000)), "20000 50000");
        assert_eq!(cpu_max(Some("20000 200000"), Some(-1), None), "max 200000");
    }

    #[test]
    fn check_blkio_validates_weights() {
        let b = |s| check_blkio(&json(s)).map(|io| io.is_some());
        assert_eq!(b(r#"{"weight": 0}"#).ok(), Some(false));
        assert_eq!(b(r#"{"throttleReadBpsDevice": []}"#).ok(), Some(false));
        assert_eq!(b(r#"{"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1}]}"#).ok(), Some(true));
        assert_eq!(invalid_key(b(r#"{"weight": 5}"#)), "linux.resources.blockIO.weight");
        assert_eq!(invalid_key(b(r#"{"leafWeight": 1001}"#)), "linux.resources.blockIO.leafWeight");
    }
}
