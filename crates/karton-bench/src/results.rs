//! The results of a bench run: schema `karton.bench/v1` (documented in docs/bench.md).
//!
//! These types are all that readers of results (karton-report, `karton bench compare`)
//! need; they carry no runner code.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::BenchError;

/// The value of the `schema` field of every results file.
pub const SCHEMA: &str = "karton.bench/v1";

/// One results file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BenchResults {
    pub schema: String,
    /// Version of the karton that produced the file.
    pub karton_version: String,
    /// Profile name: quick, full, or custom.
    pub profile: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub finished_at: Option<String>,
    /// False while the run goes on, or when it was interrupted (Ctrl-C): every row in the
    /// file is nevertheless finished.
    pub complete: bool,
    pub interrupted: bool,
    pub machine: Machine,
    pub method: Method,
    pub configurations: Vec<ConfigInfo>,
    /// One series per (workload, metric).
    pub series: Vec<Series>,
    /// Namespace create + destroy, per type and number of concurrent workers.
    pub ns_create: Vec<NsCreateCell>,
    /// Many containers at once: start N sleeping containers with P in parallel, per runtime.
    /// Absent in files written before the density benchmark existed.
    #[serde(default)]
    pub density: Vec<DensityCell>,
    /// The separate instrumented pass (karton-probe), when it ran.
    pub instrumented: Option<Instrumented>,
    /// The eBPF breakdown of the application rows (one probed run per configuration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<AppBreakdown>,
    /// Bench-level notes (what was skipped and why, substitutions).
    pub notes: Vec<String>,
}

/// The machine a result was measured on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Machine {
    pub hostname: String,
    pub kernel: String,
    pub arch: String,
    pub cpu_model: String,
    pub cpus: u32,
    pub mem_total_kib: u64,
    /// "v1", "v2" or "hybrid", with details.
    pub cgroup_layout: String,
    /// Content of /sys/kernel/security/lockdown, or null when unreadable.
    pub lockdown: Option<String>,
    /// Instruments available for the instrumented pass (BTF, tracepoints, probe status).
    pub instruments: Vec<String>,
    /// Other runtimes found (name and version line).
    pub runtimes: Vec<String>,
    pub os: String,
}

/// How the figures were obtained.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Method {
    pub warmups: u32,
    pub min_rounds: u32,
    pub max_rounds: u32,
    /// Stop once the 95% bootstrap CI of every row's median is within ± this percent.
    pub target_ci_pct: f64,
    pub confidence: f64,
    pub bootstrap_resamples: u32,
    pub seed: u64,
    /// "round-robin": every round runs every configuration once, in a rotated order.
    pub interleaving: String,
    /// Outlier rule.
    pub outliers: String,
    /// Which configuration the ratios are against.
    pub baseline: String,
}

/// A configuration of the namespace matrix.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigInfo {
    pub name: String,
    pub description: String,
    /// "bare" (host process), "karton", "runc", "crun".
    pub runtime: String,
    pub namespaces: Vec<String>,
    pub cgroup_limits: bool,
    pub seccomp: bool,
    pub user_mapping: Option<String>,
}

/// One metric of one workload across configurations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Series {
    /// "primes/time", "fileio-rootfs/seq-write", "lifecycle/run".
    pub id: String,
    pub workload: String,
    pub metric: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub description: String,
    /// The workload's command line inside the container (after `karton workload`).
    pub args: Vec<String>,
    /// Configuration the ratios are against (normally "bare").
    pub baseline: Option<String>,
    pub rounds: u32,
    /// Every non-skipped row reached the CI target.
    pub converged: bool,
    pub rows: Vec<Row>,
}

/// One configuration of one series.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    pub config: String,
    pub status: RowStatus,
    pub reason: Option<String>,
    /// Measured values, by round.
    pub samples: Vec<Sample>,
    pub summary: Option<Summary>,
    /// Cost relative to the baseline, pair by pair within a round: for lower-is-better
    /// metrics value/baseline, for higher-is-better baseline/value. > 1 means slower.
    pub ratio: Option<Ratio>,
    pub failures: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RowStatus {
    Ok,
    Skipped,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Sample {
    pub round: u32,
    pub value: f64,
}

/// Median with its bootstrap CI and the usual companions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Summary {
    pub n: u32,
    pub median: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// Half-width of the CI relative to the median, in percent.
    pub ci_pct: f64,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
    /// Indices (into samples) of values flagged as outliers (kept in all figures).
    pub outliers: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ratio {
    pub baseline: String,
    pub pairs: u32,
    pub median: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

/// Namespace create + destroy for one type and one number of concurrent workers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NsCreateCell {
    pub ns: String,
    pub workers: u32,
    pub status: RowStatus,
    pub reason: Option<String>,
    /// Latency of one unshare(CLONE_NEW*) call in µs, every call of every round pooled.
    pub unshare_us: Option<Summary>,
    /// fork → unshare → exit → reap, per namespace, in µs (pooled).
    pub cycle_us: Option<Summary>,
    /// Namespaces created and destroyed per second, all workers together (one per round).
    pub throughput: Option<Summary>,
}

/// One density measurement: `N` containers of one runtime started with `parallel`
/// concurrent `run --detach` calls, left idle, then force-deleted with the same parallelism.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DensityCell {
    /// "karton", "crun", "runc".
    pub runtime: String,
    /// Where every runtime ran: "prepared" (one prepared layout, no wrapper) or "wrapper"
    /// (the per-command wrapper; also what files without this field used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    pub n: u32,
    pub parallel: u32,
    /// Repetition of this (runtime, n, parallel) cell, from 0.
    pub rep: u32,
    pub status: RowStatus,
    pub reason: Option<String>,
    /// Seconds from the first start to all N running (every `run --detach` returned).
    pub start_s: f64,
    /// Containers started per second (n / start_s).
    pub start_rate: f64,
    /// Seconds to force-delete all N.
    pub delete_s: f64,
    /// CPU seconds (user + system) of the runtime processes, start phase, all N together.
    pub start_cpu_s: f64,
    /// Runs that failed (their containers are not in the figures).
    pub failures: u32,
    /// Host memory per idle container, KiB: the kernel's (slab, page tables, kernel
    /// stacks: deltas of /proc/meminfo over the N containers) and the processes' (PSS of
    /// every process left behind: the containers' own and any runtime leftovers).
    pub mem: Option<DensityMem>,
}

/// Host memory per idle container, KiB (delta over N containers, divided by N).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DensityMem {
    pub slab_kib: f64,
    pub page_tables_kib: f64,
    pub kernel_stack_kib: f64,
    /// PSS of the processes left running (container processes + runtime leftovers).
    pub processes_pss_kib: f64,
    /// Processes left running per container (1 = the container's own process only).
    pub processes: f64,
    /// slab + page tables + kernel stacks + processes.
    pub total_kib: f64,
    /// MemTotal - MemAvailable delta per container: everything, including page cache
    /// and noise from other work on the machine (a cross-check, not the headline).
    pub used_kib: f64,
}

/// The separate instrumented pass: karton-probe on one run per configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Instrumented {
    pub workload: String,
    pub args: Vec<String>,
    /// Instruments and the mechanism that produced their figures.
    pub instruments: Vec<String>,
    pub runs: Vec<InstrumentedRun>,
    /// The probe's own cost: the workload's figure with and without the probe attached.
    pub overhead: Vec<ProbeOverhead>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstrumentedRun {
    pub config: String,
    pub syscalls: Vec<SyscallFigure>,
    /// Run-queue latency: log2 histogram, bucket i counts waits in [2^i, 2^(i+1)) ns.
    pub runq_hist: Vec<u64>,
    pub context_switches: u64,
    pub page_faults: u64,
    pub peak_rss_kib: u64,
    /// Kernel footprint approximation: distinct tracepoints / kernel functions seen.
    pub footprint_functions: Option<u64>,
}

/// Where an application row's time goes: karton-probe on the server during one client run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppBreakdown {
    /// The application benchmark ("redis-p1") and configuration ("net-veth").
    pub bench: String,
    pub config: String,
    /// Instruments and the mechanism behind each figure.
    pub instruments: Vec<String>,
    /// The server's network, readiness and lock system calls with latency histograms.
    pub syscalls: Vec<SyscallFigure>,
    /// Run-queue latency of the server's tasks: log2 histogram (bucket i: [2^i, 2^(i+1)) ns).
    pub runq_hist: Vec<u64>,
    pub context_switches: u64,
    /// The instrument's own cost: the client's first figure without and with the probe.
    pub metric: String,
    pub unit: String,
    pub without_probe: f64,
    pub with_probe: f64,
    /// Requests the probed client run made (turns counts into per-request figures).
    pub requests: f64,
    /// NET_RX and NET_TX softirq time during the probed run, on every CPU: system-wide, so
    /// the client's packets are in it too (softirqs run in whatever task a CPU was in).
    /// Empty in files written before karton-probe had the softirq instrument.
    #[serde(default)]
    pub softirq: Vec<SoftirqFigure>,
    pub notes: Vec<String>,
}

impl AppBreakdown {
    /// NET_RX + NET_TX softirq ns per request of the probed run; `None` when the row has no
    /// softirq figures (an older file) or the run counted no requests.
    pub fn net_softirq_ns_per_request(&self) -> Option<f64> {
        let total: u64 = self
            .softirq
            .iter()
            .filter(|f| f.name == "NET_RX" || f.name == "NET_TX")
            .map(|f| f.total_ns)
            .sum();
        (!self.softirq.is_empty() && self.requests > 0.0).then(|| total as f64 / self.requests)
    }
}

/// One softirq vector's time during a probed run, on every CPU.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SoftirqFigure {
    /// The vector: "NET_RX" or "NET_TX".
    pub name: String,
    /// Softirqs of this vector that ran to completion during the run.
    pub count: u64,
    pub total_ns: u64,
    /// `total_ns` / the run's requests; null when the run counted no requests.
    pub ns_per_request: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyscallFigure {
    pub name: String,
    pub count: u64,
    pub errors: u64,
    pub mean_ns: f64,
    /// log2 latency histogram, bucket i counts calls in [2^i, 2^(i+1)) ns.
    pub hist: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeOverhead {
    pub config: String,
    pub metric: String,
    pub unit: String,
    pub without_probe: f64,
    pub with_probe: f64,
}

/// What a workload prints (one JSON line with `--json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkloadOutput {
    pub workload: String,
    pub metrics: Vec<Metric>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    pub name: String,
    pub unit: String,
    pub value: f64,
    pub higher_is_better: bool,
    /// Raw per-operation values when the workload keeps them (ns-create).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<f64>,
}

impl WorkloadOutput {
    /// Human-readable lines.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for m in &self.metrics {
            s.push_str(&format!(
                "{:<10} {:<24} {:>14} {}\n",
                self.workload,
                m.name,
                fmt_value(m.value),
                m.unit
            ));
        }
        s
    }
}

/// A figure with a sensible number of digits.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

impl BenchResults {
    pub fn config(&self, name: &str) -> Option<&ConfigInfo> {
        self.configurations.iter().find(|c| c.name == name)
    }

    /// Reads and checks a results file (schema field and structure).
    pub fn load(path: &Path) -> Result<Self, BenchError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| BenchError::Io { what: format!("reading {}", path.display()), source })?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| BenchError::BadResults { path: path.display().to_string(), why: e.to_string() })?;
        let schema = v.get("schema").and_then(|s| s.as_str()).unwrap_or("");
        if schema != SCHEMA {
            return Err(BenchError::BadResults {
                path: path.display().to_string(),
                why: format!("schema is {schema:?}, this karton reads {SCHEMA:?}"),
            });
        }
        serde_json::from_value(v)
            .map_err(|e| BenchError::BadResults { path: path.display().to_string(), why: e.to_string() })
    }

    /// Writes compact JSON atomically (temp file in the same directory, fsync, rename): a
    /// reader never sees half a file.
    pub fn save_json(&self, path: &Path) -> Result<(), BenchError> {
        let mut text = serde_json::to_string(self).map_err(|e| BenchError::Encode(e.to_string()))?;
        text.push('\n');
        write_file(path, text.as_bytes())
    }

    /// Writes the CSV form atomically: one line per (series, configuration).
    pub fn save_csv(&self, path: &Path) -> Result<(), BenchError> {
        write_file(path, self.to_csv().as_bytes())
    }

    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "series,workload,metric,unit,higher_is_better,config,status,n,median,ci_low,ci_high,ci_pct,mean,stddev,min,max,outliers,ratio,ratio_ci_low,ratio_ci_high,reason\n",
        );
        let f = |x: Option<f64>| x.map(|v| format!("{v}")).unwrap_or_default();
        for s in &self.series {
            for r in &s.rows {
                let sm = r.summary.as_ref();
                out.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                    csv(&s.id),
                    csv(&s.workload),
                    csv(&s.metric),
                    csv(&s.unit),
                    s.higher_is_better,
                    csv(&r.config),
                    if r.status == RowStatus::Ok { "ok" } else { "skipped" },
                    sm.map(|x| x.n).unwrap_or(0),
                    f(sm.map(|x| x.median)),
                    f(sm.map(|x| x.ci_low)),
                    f(sm.map(|x| x.ci_high)),
                    f(sm.map(|x| x.ci_pct)),
                    f(sm.map(|x| x.mean)),
                    f(sm.map(|x| x.stddev)),
                    f(sm.map(|x| x.min)),
                    f(sm.map(|x| x.max)),
                    sm.map(|x| x.outliers.len()).unwrap_or(0),
                    f(r.ratio.as_ref().map(|x| x.median)),
                    f(r.ratio.as_ref().map(|x| x.ci_low)),
                    f(r.ratio.as_ref().map(|x| x.ci_high)),
                    csv(r.reason.as_deref().unwrap_or("")),
                ));
            }
        }
        for c in &self.ns_create {
            let sm = c.unshare_us.as_ref();
            out.push_str(&format!(
                "ns-create/{}/unshare,ns-create,unshare,us,false,workers={},{},{},{},{},{},{},{},{},{},{},{},,,,{}\n",
                c.ns,
                c.workers,
                if c.status == RowStatus::Ok { "ok" } else { "skipped" },
                sm.map(|x| x.n).unwrap_or(0),
                f(sm.map(|x| x.median)),
                f(sm.map(|x| x.ci_low)),
                f(sm.map(|x| x.ci_high)),
                f(sm.map(|x| x.ci_pct)),
                f(sm.map(|x| x.mean)),
                f(sm.map(|x| x.stddev)),
                f(sm.map(|x| x.min)),
                f(sm.map(|x| x.max)),
                sm.map(|x| x.outliers.len()).unwrap_or(0),
                csv(c.reason.as_deref().unwrap_or("")),
            ));
        }
        out
    }
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Writes a results or report file atomically and fsynced (the rule: karton_sys::atomic).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), BenchError> {
    karton_sys::atomic::write_atomic(path, bytes, karton_sys::atomic::Durability::Fsync)
        .map_err(BenchError::io(format!("writing {}", path.display())))
}

/// RFC 3339 UTC time of `t` (the runner stamps its results with it).
#[cfg(feature = "runner")]
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    karton_runtime::util::rfc3339_seconds(secs as i64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[cfg(feature = "runner")]
    #[test]
    fn rfc3339_known_dates() {
        let t = |s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
        assert_eq!(rfc3339(t(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(t(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(t(1_700_000_000)), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(csv("a,b"), "\"a,b\"");
        assert_eq!(csv("x\"y"), "\"x\"\"y\"");
        assert_eq!(csv("plain"), "plain");
    }
}
