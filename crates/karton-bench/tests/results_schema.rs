#![allow(clippy::unwrap_used)]
//! Results files: schema validation, atomic writes, CSV, compare with known answers.

use karton_bench::results::*;
use karton_bench::{compare, schema, stats};

pub fn synthetic(shift: f64) -> BenchResults {
    let row = |config: &str, base: f64| {
        let samples: Vec<Sample> =
            (0..12).map(|r| Sample { round: r, value: base + (r % 3) as f64 * 0.1 }).collect();
        let xs: Vec<f64> = samples.iter().map(|s| s.value).collect();
        Row {
            config: config.into(),
            status: RowStatus::Ok,
            reason: None,
            summary: stats::summarize(&xs, 0.95, 200, 1),
            ratio: (config != "bare").then(|| Ratio {
                baseline: "bare".into(),
                pairs: 12,
                median: base / 10.0,
                ci_low: base / 10.0 - 0.01,
                ci_high: base / 10.0 + 0.01,
            }),
            samples,
            failures: 0,
        }
    };
    BenchResults {
        schema: SCHEMA.into(),
        karton_version: "0.1.0".into(),
        profile: "quick".into(),
        started_at: "2026-11-29T09:00:00Z".into(),
        finished_at: Some("2026-11-29T09:04:00Z".into()),
        complete: true,
        interrupted: false,
        machine: Machine { cpus: 2, kernel: "6.18".into(), ..Default::default() },
        method: Method {
            warmups: 1,
            min_rounds: 5,
            max_rounds: 40,
            target_ci_pct: 2.0,
            confidence: 0.95,
            bootstrap_resamples: 200,
            seed: 1,
            interleaving: "round-robin".into(),
            outliers: "mad".into(),
            baseline: "bare".into(),
        },
        configurations: vec![],
        series: vec![Series {
            id: "primes/time".into(),
            workload: "primes".into(),
            metric: "time".into(),
            unit: "ms".into(),
            higher_is_better: false,
            description: "d".into(),
            args: vec![],
            baseline: Some("bare".into()),
            rounds: 12,
            converged: true,
            rows: vec![
                row("bare", 10.0),
                row("all", 10.0 + shift),
                Row {
                    config: "all+cg+seccomp".into(),
                    status: RowStatus::Skipped,
                    reason: Some("seccomp: not supported".into()),
                    samples: vec![],
                    summary: None,
                    ratio: None,
                    failures: 0,
                },
            ],
        }],
        ns_create: vec![NsCreateCell {
            ns: "network".into(),
            workers: 1,
            status: RowStatus::Ok,
            reason: None,
            unshare_us: stats::summarize(&[600.0, 700.0, 690.0], 0.95, 100, 1),
            cycle_us: stats::summarize(&[900.0, 950.0], 0.95, 100, 1),
            throughput: stats::summarize(&[1000.0], 0.95, 100, 1),
        }],
        density: vec![DensityCell {
            runtime: "karton".into(),
            layout: Some("prepared".into()),
            n: 10,
            parallel: 2,
            rep: 0,
            status: RowStatus::Ok,
            reason: None,
            start_s: 0.2,
            start_rate: 50.0,
            delete_s: 0.1,
            start_cpu_s: 0.15,
            failures: 0,
            mem: Some(DensityMem {
                slab_kib: 100.0,
                page_tables_kib: 20.0,
                kernel_stack_kib: 16.0,
                processes_pss_kib: 60.0,
                processes: 1.0,
                total_kib: 196.0,
                used_kib: 250.0,
            }),
        }],
        instrumented: None,
        apps: vec![],
        notes: vec![],
    }
}

#[test]
fn synthetic_results_validate_and_round_trip_through_an_atomic_write() {
    let r = synthetic(1.0);
    let v = serde_json::to_value(&r).unwrap();
    schema::validate(&v).unwrap();
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("r.json");
    r.save_json(&p).unwrap();
    assert_eq!(BenchResults::load(&p).unwrap(), r);
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1, "temp file left behind");
    let csv = r.to_csv();
    assert_eq!(csv.lines().count(), 1 + 3 + 1);
    assert!(csv.contains("all+cg+seccomp,skipped"));
}

#[test]
fn schema_rejects_broken_files() {
    let mut v = serde_json::to_value(synthetic(0.0)).unwrap();
    v["series"][0]["rows"][0]["status"] = "maybe".into();
    v["machine"]["cpus"] = 0.into();
    v.as_object_mut().unwrap().remove("notes");
    let errs = schema::validate(&v).unwrap_err();
    assert_eq!(errs.len(), 3, "{errs:#?}");
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("bad.json");
    std::fs::write(&p, r#"{"schema": "other/v9"}"#).unwrap();
    assert!(BenchResults::load(&p).unwrap_err().to_string().contains("karton.bench/v1"));
}

#[test]
fn compare_flags_a_real_shift_and_not_noise() {
    let a = synthetic(0.0);
    let same = compare::compare(&a, &synthetic(0.0));
    assert!(same.iter().all(|c| !c.significant && c.verdict == "same"), "{same:?}");
    let slower = compare::compare(&a, &synthetic(2.0));
    let all = slower.iter().find(|c| c.config == "all").unwrap();
    assert!(all.significant && all.verdict == "slower", "{all:?}");
    assert!((all.change_pct - 200.0 / 10.1).abs() < 0.5, "{}", all.change_pct);
    assert!(compare::to_text(&slower).contains("1 significant"));
}

#[test]
fn committed_results_validate_against_the_schema() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/results/bench");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return karton_testkit::skip(format!("no {}", dir.display()));
    };
    let mut n = 0;
    for p in rd.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        if let Err(errs) = schema::validate(&v) {
            panic!("{}: {errs:#?}", p.display());
        }
        BenchResults::load(&p).unwrap();
        n += 1;
    }
    assert!(n > 0);
}

fn breakdown(softirq: Vec<SoftirqFigure>) -> AppBreakdown {
    AppBreakdown {
        bench: "redis-p1".into(),
        config: "net-bridge-nat".into(),
        instruments: vec!["softirq: tp_btf:softirq_entry+softirq_exit (Active)".into()],
        syscalls: vec![],
        runq_hist: vec![0, 3],
        context_switches: 3,
        metric: "get-rps".into(),
        unit: "req/s".into(),
        without_probe: 100.0,
        with_probe: 98.0,
        requests: 1000.0,
        softirq,
        notes: vec![],
    }
}

#[test]
fn app_softirq_figures_validate_and_files_without_them_still_load() {
    let fig = |name: &str, total_ns: u64| SoftirqFigure {
        name: name.into(),
        count: 10,
        total_ns,
        ns_per_request: Some(total_ns as f64 / 1000.0),
    };
    let mut r = synthetic(0.0);
    r.apps = vec![breakdown(vec![fig("NET_RX", 3_000_000), fig("NET_TX", 500_000)])];
    let v = serde_json::to_value(&r).unwrap();
    schema::validate(&v).unwrap();
    assert_eq!(r.apps[0].net_softirq_ns_per_request(), Some(3500.0));
    // A run that counted no requests: null per request, still valid.
    let mut none = v.clone();
    none["apps"][0]["softirq"][0]["ns_per_request"] = serde_json::Value::Null;
    schema::validate(&none).unwrap();
    // A results file from before the softirq instrument: no field at all.
    let mut old = v;
    old["apps"][0].as_object_mut().unwrap().remove("softirq");
    schema::validate(&old).unwrap();
    let back: BenchResults = serde_json::from_value(old).unwrap();
    assert!(back.apps[0].softirq.is_empty());
    assert_eq!(back.apps[0].net_softirq_ns_per_request(), None);
}
