//! The instrumented pass: the syscall workload under karton-probe (syscall counts and
//! latency histograms, run-queue latency, context switches, faults, peak RSS), once per
//! configuration, separate from the timed passes; and the probe's own overhead (the
//! workload's figure with and without the probe).
//!
//! Target: the process tree of the command (`karton workload …` bare, `karton run …` for a
//! container, so the container rows include the runtime's own system calls before the
//! workload's execve; the workload's getppid dominates the counts either way).

use std::ffi::OsString;
use std::path::Path;

use karton_probe::target::{StoppedCommand, Target};
use karton_probe::Probe;

use crate::results::{InstrumentedRun, SyscallFigure, WorkloadOutput};

/// Runs `argv` (its stdout redirected to `out_file`) with the probe attached before it
/// starts; returns the probe's figures and the workload's output.
pub fn run_probed(
    argv: &[OsString],
    out_file: &Path,
    config: &str,
) -> Result<(InstrumentedRun, WorkloadOutput, Vec<String>), String> {
    // sh execs the command with stdout redirected; the pid stays the same throughout.
    let mut full: Vec<OsString> = vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("exec \"$@\" > '{}'", out_file.display()).into(),
        "sh".into(),
    ];
    full.extend(argv.iter().cloned());
    let mut cmd = StoppedCommand::spawn(&full).map_err(|e| e.to_string())?;
    let mut probe = Probe::builder()
        .syscall_latency(true)
        .sched(true)
        .faults(true)
        .target(Target::Tgid(cmd.pid()))
        .log_dir(std::env::temp_dir())
        .attach()
        .map_err(|e| e.to_string())?;
    let instruments = probe.status_lines();
    cmd.release().map_err(|e| e.to_string())?;
    let st = cmd.wait().map_err(|e| e.to_string())?;
    let snap = probe.snapshot().map_err(|e| e.to_string())?;
    drop(probe);
    if !st.success() {
        return Err(format!("{config}: the instrumented command exited with {st}"));
    }
    let text =
        std::fs::read_to_string(out_file).map_err(|e| format!("reading {}: {e}", out_file.display()))?;
    let _ = std::fs::remove_file(out_file);
    let line =
        text.lines().rev().find(|l| l.starts_with('{')).ok_or_else(|| format!("{config}: no JSON output"))?;
    let w: WorkloadOutput = serde_json::from_str(line).map_err(|e| e.to_string())?;

    let mut syscalls: Vec<SyscallFigure> = Vec::new();
    for r in snap.syscalls.iter().flat_map(|s| s.rows.iter()) {
        let f = match syscalls.iter_mut().find(|f| f.name == r.name) {
            Some(f) => f,
            None => {
                syscalls.push(SyscallFigure {
                    name: r.name.clone(),
                    count: 0,
                    errors: 0,
                    mean_ns: 0.0,
                    hist: Vec::new(),
                });
                let n = syscalls.len() - 1;
                &mut syscalls[n]
            }
        };
        let prev_sum = f.mean_ns * f.count as f64;
        f.count += r.count;
        f.errors += r.errors;
        if let Some(h) = &r.latency {
            if f.hist.len() < h.buckets.len() {
                f.hist.resize(h.buckets.len(), 0);
            }
            for (a, b) in f.hist.iter_mut().zip(&h.buckets) {
                *a += b;
            }
            let n = f.count.max(1) as f64;
            f.mean_ns = (prev_sum + h.sum_ns as f64) / n;
        }
    }
    syscalls.sort_by_key(|s| std::cmp::Reverse(s.count));
    let mut runq = Vec::new();
    let mut switches = 0;
    for r in snap.sched.iter().flat_map(|s| s.rows.iter()) {
        switches += r.switches;
        if runq.len() < r.runq.buckets.len() {
            runq.resize(r.runq.buckets.len(), 0);
        }
        for (a, b) in runq.iter_mut().zip(&r.runq.buckets) {
            *a += b;
        }
    }
    let faults = snap.faults.iter().flat_map(|s| s.rows.iter()).map(|r| r.faults).sum();
    let rss = snap.peak_rss.iter().flat_map(|s| s.rows.iter()).map(|r| r.peak_rss_kib).max().unwrap_or(0);
    Ok((
        InstrumentedRun {
            config: config.into(),
            syscalls,
            runq_hist: runq,
            context_switches: switches,
            page_faults: faults,
            peak_rss_kib: rss,
            footprint_functions: None,
        },
        w,
        instruments,
    ))
}
