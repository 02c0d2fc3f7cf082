//! The audit's result document (`"schema": "karton.audit/v1"`) and its atomic write.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::AuditError;

/// Schema tag of [`AuditResults`].
pub const SCHEMA: &str = "karton.audit/v1";
/// Schema tag of the one JSON line a probe prints inside a container.
pub const PROBE_SCHEMA: &str = "karton.audit.probe/v1";

/// What a probe concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The host's resource stayed out of reach.
    Contained,
    /// The probe saw or changed the host's resource.
    Leaked,
    /// The host cannot run this probe; `evidence` says why.
    Skipped,
    /// The probe could not run to a conclusion (container failed, timeout).
    Error,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Contained => "contained",
            Verdict::Leaked => "leaked",
            Verdict::Skipped => "skipped",
            Verdict::Error => "error",
        }
    }
}

/// The line a probe prints inside the container (or on the host for the mnt "without" run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeReport {
    pub schema: String,
    pub probe: String,
    pub verdict: Verdict,
    pub evidence: String,
    /// Raw observations the host may combine with its own (e.g. clock readings).
    #[serde(default)]
    pub facts: BTreeMap<String, serde_json::Value>,
}

impl ProbeReport {
    pub fn new(probe: &str, verdict: Verdict, evidence: impl Into<String>) -> Self {
        Self {
            schema: PROBE_SCHEMA.into(),
            probe: probe.into(),
            verdict,
            evidence: evidence.into(),
            facts: BTreeMap::new(),
        }
    }
    pub fn fact(mut self, k: &str, v: impl Into<serde_json::Value>) -> Self {
        self.facts.insert(k.into(), v.into());
        self
    }
}

/// One run of one probe in one configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub verdict: Verdict,
    /// One line a reader can check: what was tried and what the kernel answered.
    pub evidence: String,
    /// The configuration: namespaces of the container (or "host process").
    pub config: String,
    pub elapsed_ms: f64,
}

/// A row of the isolation matrix: one probe, run without and with its protection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsolationRow {
    /// e.g. "pid.signal_host".
    pub id: String,
    /// The namespace under test ("pid", …) or "none" for the rows no namespace protects.
    pub namespace: String,
    pub probe: String,
    /// What protects the resource: "pid namespace", "capabilities (CAP_SYSLOG)", …
    pub protection: String,
    /// How the two runs differ.
    pub method: String,
    pub without: Outcome,
    pub with: Outcome,
    /// Rows no namespace protects: the outcome under karton's default config.json and
    /// whether that config applies the protecting mechanism.
    pub default_config: Option<DefaultConfig>,
    /// True when the probe leaked without the protection and was contained with it: the
    /// row shows what the protection buys.
    pub demonstrated: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefaultConfig {
    pub applies_mechanism: bool,
    pub outcome: Outcome,
    /// Why the default config is what it is when it leaves the resource reachable, e.g.
    /// "runc-compatible default, not contained".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Reads a number that may have been written as `null` (serde_json writes NaN so).
pub fn nan_or_f64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Median and bootstrap 95 % confidence interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Estimate {
    #[serde(deserialize_with = "nan_or_f64")]
    pub value: f64,
    #[serde(deserialize_with = "nan_or_f64")]
    pub ci_low: f64,
    #[serde(deserialize_with = "nan_or_f64")]
    pub ci_high: f64,
}

/// Victim throughput beside one stressor, with or without limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NoninterferenceRow {
    /// "cpu", "memory", "fork", "disk", "net-send", "net-recv".
    pub stressor: String,
    /// false: only the audit's safety ceilings; true: the cgroup limits of `limits`.
    pub limited: bool,
    /// "primes" or "tcp-rr".
    pub victim: String,
    pub victim_unit: String,
    /// Median victim throughput per interval, alone.
    #[serde(deserialize_with = "nan_or_f64")]
    pub baseline: f64,
    /// Median victim throughput per interval, beside the stressor.
    #[serde(deserialize_with = "nan_or_f64")]
    pub stressed: f64,
    /// (1 - stressed/baseline) × 100; positive = the victim lost throughput.
    pub degradation_pct: Estimate,
    pub baseline_samples: usize,
    pub stressed_samples: usize,
    /// The stressor's own progress while the victim ran.
    #[serde(deserialize_with = "nan_or_f64")]
    pub stressor_progress: f64,
    pub stressor_unit: String,
    /// How the stressor ended ("stopped by the audit", "exit 137 (OOM-killed)", …).
    pub stressor_end: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Noninterference {
    /// Limits given to the stressor in the limited runs (linux.resources JSON).
    pub limits: serde_json::Value,
    /// Ceilings the audit always applies to stressors, limited or not.
    pub ceilings: serde_json::Value,
    pub victim_seconds: f64,
    pub interval_ms: u64,
    pub repetitions: u32,
    pub method: String,
    pub rows: Vec<NoninterferenceRow>,
    /// Stressors that could not run, with why.
    pub skipped: Vec<String>,
}

/// Kernel footprint of one configuration (APPROXIMATION: cpu-clock sampling).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FootprintRow {
    pub config: String,
    pub workload: String,
    pub kernel_samples: u64,
    pub user_samples: u64,
    pub distinct_functions: u64,
    pub top_functions: Vec<(String, u64)>,
    /// Set when this configuration could not be measured.
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FootprintSection {
    pub instrument: String,
    pub approximation: String,
    pub rows: Vec<FootprintRow>,
    pub skipped: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub kernel: String,
    pub cpus: usize,
    pub memory_kib: u64,
    pub cgroup_layout: String,
    pub lockdown: String,
    pub karton_version: String,
}

impl Machine {
    pub fn detect() -> Self {
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let memory_kib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0);
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let unified = Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists();
        let cgroup_layout = match (v2, unified) {
            (true, _) => "v2 (unified)",
            (false, true) => "hybrid (v1 controllers + v2 at /sys/fs/cgroup/unified)",
            _ => "v1",
        }
        .to_string();
        let lockdown = fs::read_to_string("/sys/kernel/security/lockdown")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown (securityfs not mounted)".into());
        Self {
            kernel,
            cpus,
            memory_kib,
            cgroup_layout,
            lockdown,
            karton_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The whole audit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditResults {
    pub schema: String,
    pub profile: String,
    /// Seconds since the Unix epoch when the audit started.
    pub started_unix: u64,
    pub duration_s: f64,
    pub machine: Machine,
    pub isolation: Vec<IsolationRow>,
    pub noninterference: Option<Noninterference>,
    pub footprint: Option<FootprintSection>,
    pub notes: Vec<String>,
}

/// Writes `value` as pretty JSON to `path`, atomically and fsynced (the rule:
/// karton_sys::atomic), creating its directory.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), AuditError> {
    let io = |what: &str, e: std::io::Error| AuditError::Io {
        what: format!("{what} {}", path.display()),
        source: e,
    };
    let mut text = serde_json::to_string_pretty(value).map_err(|e| AuditError::Json(e.to_string()))?;
    text.push('\n');
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
    karton_sys::atomic::write_atomic(path, text.as_bytes(), karton_sys::atomic::Durability::Fsync)
        .map_err(|e| io("writing", e))
}

/// Reads an audit result file and checks its schema tag.
pub fn read(path: &Path) -> Result<AuditResults, AuditError> {
    let text = fs::read_to_string(path)
        .map_err(|e| AuditError::Io { what: format!("reading {}", path.display()), source: e })?;
    let r: AuditResults =
        serde_json::from_str(&text).map_err(|e| AuditError::Json(format!("{}: {e}", path.display())))?;
    if r.schema != SCHEMA {
        return Err(AuditError::Json(format!(
            "{}: schema {:?}, expected {SCHEMA:?}",
            path.display(),
            r.schema
        )));
    }
    Ok(r)
}
