//! Noninterference: a victim container beside a stressor container, with only the audit's
//! safety ceilings and with cgroup limits on the stressor; the victim's loss in percent.
//!
//! Order per block: victim alone (baseline), then stressor started + warm-up + victim
//! beside it, stressor stopped, victim alone again (A B A, both A pooled). Blocks are
//! repeated in full profiles so drift hits both alike.

use std::time::Duration;

use serde_json::{json, Value};

use crate::results::{Estimate, Noninterference, NoninterferenceRow};
use crate::runner::{default_namespaces, excerpt, Config, Karton};
use crate::stats;
use crate::workloads::{stressor_unit, victim_unit, STRESSORS, VICTIMS};
use crate::AuditError;

/// What one noninterference pass does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub victim_seconds: f64,
    pub interval_ms: u64,
    pub repetitions: u32,
    pub warmup: Duration,
    pub stressors: Vec<String>,
    pub victims: Vec<String>,
    /// Memory hog target (MiB) — below the ceiling, so it is not the ceiling that stops it.
    pub mem_hog_mib: u64,
}

impl Plan {
    pub fn quick() -> Self {
        Self {
            victim_seconds: 2.0,
            interval_ms: 100,
            repetitions: 1,
            warmup: Duration::from_millis(700),
            stressors: STRESSORS.iter().map(|s| s.to_string()).collect(),
            victims: VICTIMS.iter().map(|s| s.to_string()).collect(),
            mem_hog_mib: 1024,
        }
    }
    pub fn full() -> Self {
        Self {
            victim_seconds: 5.0,
            repetitions: 3,
            warmup: Duration::from_millis(1500),
            mem_hog_mib: 1536,
            ..Self::quick()
        }
    }
}

/// Ceilings every stressor gets, limited or not: the audit can never take the host down.
pub fn ceilings() -> Value {
    json!({"memory": {"limit": 2i64 << 30}, "pids": {"limit": 512}})
}

/// The cgroup limits of the "with limits" runs.
pub fn limits() -> Value {
    json!({
        "cpu": {"quota": 50000, "period": 100000, "shares": 256},
        "memory": {"limit": 256i64 << 20},
        "pids": {"limit": 64},
        "blockIO": {"weight": 100}
    })
}

fn victim_config(k: &Karton, rootfs: &std::path::Path, kind: &str, secs: f64, interval_ms: u64) -> Config {
    let cmd = format!("ip link set lo up; exec /karton audit victim {kind} {secs} {interval_ms}");
    let args = vec!["/bin/sh".to_string(), "-c".into(), cmd];
    let mut c = Config::new(rootfs, &default_namespaces(), &args);
    c.bind(&k.exe, "/karton", true).add_caps(&["CAP_NET_ADMIN"]);
    c
}

fn stressor_config(
    k: &Karton,
    rootfs: &std::path::Path,
    disk_dir: &std::path::Path,
    kind: &str,
    secs: f64,
    mem_mib: u64,
    limited: bool,
) -> Config {
    let cmd = format!("ip link set lo up; exec /karton audit stress {kind} {secs} {mem_mib} /audit/disk");
    let args = vec!["/bin/sh".to_string(), "-c".into(), cmd];
    let mut c = Config::new(rootfs, &default_namespaces(), &args);
    c.bind(&k.exe, "/karton", true).bind(disk_dir, "/audit/disk", false).add_caps(&["CAP_NET_ADMIN"]);
    c.resources(if limited { limits() } else { ceilings() });
    c
}

/// Runs one victim container; returns its per-interval rates.
fn run_victim(k: &Karton, rootfs: &std::path::Path, kind: &str, plan: &Plan) -> Result<Vec<f64>, AuditError> {
    let id = k.new_id(&format!("victim-{kind}"));
    let cfg = victim_config(k, rootfs, kind, plan.victim_seconds, plan.interval_ms);
    let limit = Duration::from_secs_f64(plan.victim_seconds + 30.0);
    let out = k.run(&id, &cfg, limit, &[])?;
    let line = out
        .stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|v| v.get("samples").is_some()));
    match line {
        Some(v) => {
            let mut s: Vec<f64> = v["samples"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                .unwrap_or_default();
            // The first interval carries start-up; drop it.
            if s.len() > 2 {
                s.remove(0);
            }
            Ok(s)
        }
        None => Err(AuditError::Host(format!(
            "victim {kind}: no samples ({}): {}",
            out.describe_status(),
            excerpt(&out.stderr)
        ))),
    }
}

/// The stressor's mean progress rate over the lines printed between `from` and `to`
/// seconds after its start, and the last total.
fn stressor_rate(stdout: &str, from: f64, to: f64) -> f64 {
    let pts: Vec<(f64, f64)> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| Some((v.get("t")?.as_f64()?, v.get("total")?.as_f64()?)))
        .collect();
    let inside: Vec<&(f64, f64)> = pts.iter().filter(|(t, _)| *t >= from && *t <= to + 0.3).collect();
    match (inside.first(), inside.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) / (b.0 - a.0),
        _ => pts.last().map(|(t, tot)| if *t > 0.0 { tot / t } else { 0.0 }).unwrap_or(0.0),
    }
}

/// Runs the plan; `log` receives one line per block.
pub fn run(
    k: &Karton,
    rootfs: &std::path::Path,
    work: &std::path::Path,
    plan: &Plan,
    interrupted: &dyn Fn() -> bool,
    log: &mut dyn FnMut(&str),
) -> Noninterference {
    let disk_dir = work.join("disk");
    let _ = std::fs::create_dir_all(&disk_dir);
    let mut base: std::collections::BTreeMap<(String, bool, String), Vec<f64>> = Default::default();
    let mut stressed: std::collections::BTreeMap<(String, bool, String), Vec<f64>> = Default::default();
    let mut progress: std::collections::BTreeMap<(String, bool), (Vec<f64>, String)> = Default::default();
    let mut skipped = Vec::new();
    'outer: for rep in 0..plan.repetitions {
        for s in &plan.stressors {
            for limited in [false, true] {
                if interrupted() {
                    break 'outer;
                }
                // A: the victims alone.
                for v in &plan.victims {
                    if interrupted() {
                        break 'outer;
                    }
                    match run_victim(k, rootfs, v, plan) {
                        Ok(x) => base.entry((s.clone(), limited, v.clone())).or_default().extend(x),
                        Err(e) => skipped.push(format!("baseline {v} before {s}: {e}")),
                    }
                }
                // B: the victims beside the stressor.
                let secs =
                    plan.warmup.as_secs_f64() + (plan.victim_seconds + 1.5) * plan.victims.len() as f64 + 5.0;
                let cid = k.new_id(&format!("stress-{s}"));
                let cfg = stressor_config(k, rootfs, &disk_dir, s, secs, plan.mem_hog_mib, limited);
                let mut bg = match k.start(&cid, &cfg) {
                    Ok(b) => b,
                    Err(e) => {
                        skipped.push(format!("stressor {s}: {e}"));
                        continue;
                    }
                };
                std::thread::sleep(plan.warmup);
                let t_from = bg.started.elapsed().as_secs_f64();
                let early = bg.exited();
                for v in &plan.victims {
                    if interrupted() {
                        // Dropping the handle kills and deletes the stressor.
                        break 'outer;
                    }
                    match run_victim(k, rootfs, v, plan) {
                        Ok(x) => stressed.entry((s.clone(), limited, v.clone())).or_default().extend(x),
                        Err(e) => skipped.push(format!("victim {v} beside {s}: {e}")),
                    }
                }
                let t_to = bg.started.elapsed().as_secs_f64();
                let ended_early = bg.exited().or(early);
                let out = bg.stop();
                let end = match ended_early {
                    Some(_) => format!("ended by itself before the audit stopped it ({})", describe(&out)),
                    None => "stopped by the audit (SIGKILL)".to_string(),
                };
                // A again: the victims alone after the stressor, pooled with the first A, so
                // that load drift during the block hits the baseline as it hits B.
                for v in &plan.victims {
                    if interrupted() {
                        break 'outer;
                    }
                    match run_victim(k, rootfs, v, plan) {
                        Ok(x) => base.entry((s.clone(), limited, v.clone())).or_default().extend(x),
                        Err(e) => skipped.push(format!("baseline {v} after {s}: {e}")),
                    }
                }
                let rate = stressor_rate(&out.stdout, t_from, t_to);
                let e = progress.entry((s.clone(), limited)).or_default();
                e.0.push(rate);
                e.1 = end.clone();
                if out.stdout.trim().is_empty() {
                    skipped.push(format!("stressor {s} printed nothing: {}", excerpt(&out.stderr)));
                }
                log(&format!(
                    "  rep {} {:<8} {:<13} stressor {:.1} {} — {end}",
                    rep + 1,
                    s,
                    if limited { "with limits" } else { "ceilings only" },
                    rate,
                    stressor_unit(s)
                ));
            }
        }
    }
    let mut rows = Vec::new();
    for s in &plan.stressors {
        for limited in [false, true] {
            for v in &plan.victims {
                let key = (s.clone(), limited, v.clone());
                let (Some(b), Some(x)) = (base.get(&key), stressed.get(&key)) else { continue };
                if b.is_empty() || x.is_empty() {
                    continue;
                }
                let (pr, end) = progress.get(&(s.clone(), limited)).cloned().unwrap_or_else(|| {
                    (Vec::new(), "not recorded: the audit was interrupted during this block".into())
                });
                let bm = stats::median(b);
                let sm = stats::median(x);
                let (lo, hi) = stats::bootstrap_degradation(b, x, 1000);
                rows.push(NoninterferenceRow {
                    stressor: s.clone(),
                    limited,
                    victim: v.clone(),
                    victim_unit: victim_unit(v).into(),
                    baseline: bm,
                    stressed: sm,
                    degradation_pct: Estimate { value: stats::degradation(bm, sm), ci_low: lo, ci_high: hi },
                    baseline_samples: b.len(),
                    stressed_samples: x.len(),
                    stressor_progress: stats::median(&pr),
                    stressor_unit: stressor_unit(s).into(),
                    stressor_end: end,
                });
            }
        }
    }
    let _ = std::fs::remove_dir_all(&disk_dir);
    Noninterference {
        limits: limits(),
        ceilings: ceilings(),
        victim_seconds: plan.victim_seconds,
        interval_ms: plan.interval_ms,
        repetitions: plan.repetitions,
        method: format!(
            "victim and stressor each in a container with karton's default namespaces ({}), lo brought up inside; per block: victim alone, beside the stressor, alone again (A B A; both A pooled), {} repetition(s); degradation = (1 - median(stressed)/median(alone)) x 100 over {} ms intervals, 95 % CI by bootstrap (1000 resamples); stressors always carry the ceilings (memory 2 GiB, pids 512), the limited runs add cpu quota 50 % of one CPU + shares 256, memory 256 MiB, pids 64, blkio weight 100",
            default_namespaces().join("+"),
            plan.repetitions,
            plan.interval_ms
        ),
        rows,
        skipped,
    }
}

fn describe(out: &crate::runner::RunOutput) -> String {
    let s = out.describe_status();
    if s == "exit 137" || s.contains("signal 9") {
        format!("{s}: killed, e.g. by the OOM killer at its memory limit")
    } else {
        s
    }
}
