#![allow(clippy::unwrap_used)]
//! A seconds-long bench produces JSON that validates against the schema, and the report
//! has one `<svg>` per chart.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use karton_bench::profile::{self, BenchSpec};
use karton_bench::results::{BenchResults, RowStatus};
use karton_bench::{runner, schema};

fn tiny_profile() -> profile::Profile {
    let mut p = profile::by_name("quick").unwrap();
    p.warmups = 1;
    p.min_rounds = 2;
    p.max_rounds = 2;
    p.resamples = 200;
    let cfgs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    p.benches = vec![
        BenchSpec {
            id: "primes".into(),
            workload: "primes".into(),
            args: cfgs(&["--limit", "20000"]),
            bare_args: cfgs(&["--limit", "20000"]),
            configs: cfgs(&["bare", "bare-2", "mnt", "all", "all+cg+seccomp"]),
            budget_s: 30.0,
            description: "tiny primes".into(),
        },
        BenchSpec {
            id: "ipc".into(),
            workload: "ipc".into(),
            args: cfgs(&["--iterations", "100"]),
            bare_args: cfgs(&["--iterations", "100"]),
            configs: cfgs(&["bare", "+ipc"]),
            budget_s: 30.0,
            description: "tiny ipc".into(),
        },
    ];
    p.ns_types = cfgs(&["uts", "network"]);
    p.ns_workers = vec![1, 2];
    p.ns_iterations = 3;
    p.ns_rounds = 2;
    p.lifecycle_rounds = 2;
    p.lifecycle_rss_rounds = 1;
    p.density_n = vec![1, 2];
    p.density_parallel = vec![2];
    p.density_reps = 1;
    p.density_rate = (2, 2, 1);
    p.instrumented = false;
    // The application rows have their own test (crates/karton/tests/apps.rs).
    p.apps = None;
    p
}

#[test]
fn short_bench_gives_valid_json_and_a_report_with_one_svg_per_chart() {
    if let Some(why) = karton_testkit::karton_skip_reason() {
        return karton_testkit::skip(why);
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("results");
    let opts = runner::Options {
        profile: tiny_profile(),
        out_dir: out.clone(),
        exe: karton_testkit::karton_bin().unwrap(),
        workdir: Some(tmp.path().join("work")),
        only_benches: vec![],
        only_configs: vec![],
        skip_ns_create: false,
        skip_lifecycle: false,
        progress: false,
        seed: 1,
    };
    let (res, path) = runner::run(opts, Arc::new(AtomicBool::new(false))).unwrap();
    assert!(res.complete && !res.interrupted);

    // The file validates against the published schema and reads back identically.
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    if let Err(errs) = schema::validate(&v) {
        panic!("schema violations: {errs:#?}");
    }
    assert_eq!(BenchResults::load(&path).unwrap(), res);
    assert!(path.with_extension("csv").exists());
    // No temp files left behind (atomic writes).
    for e in std::fs::read_dir(&out).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.starts_with('.'), "leftover {n}");
    }
    // No container state left behind.
    let state = tmp.path().join("work/state");
    assert_eq!(std::fs::read_dir(&state).map(|d| d.count()).unwrap_or(0), 0);

    let primes = res.series.iter().find(|s| s.id == "primes/time").unwrap();
    let bare2 = primes.rows.iter().find(|r| r.config == "bare-2").unwrap();
    assert_eq!(bare2.samples.len(), 2);
    assert!(bare2.ratio.as_ref().unwrap().pairs == 2);
    let seccomp = primes.rows.iter().find(|r| r.config == "all+cg+seccomp").unwrap();
    assert!(seccomp.summary.is_some() || seccomp.reason.is_some(), "a skipped row says why");
    assert_eq!(res.ns_create.len(), 4);
    assert!(res.ns_create.iter().all(|c| c.unshare_us.is_some()), "{:?}", res.ns_create);
    let life = res.series.iter().find(|s| s.id == "lifecycle/run").unwrap();
    assert!(life.rows.iter().any(|r| r.config == "karton" && r.summary.is_some()));
    let cpu = res.series.iter().find(|s| s.id == "lifecycle/cpu").unwrap();
    assert!(cpu.rows.iter().any(|r| r.config == "karton" && r.summary.is_some()));
    // Density: every runtime of every cell either measured or skipped with its reason.
    assert!(
        res.density.iter().any(|c| c.runtime == "karton" && c.n == 2 && c.mem.is_some()),
        "{:?}",
        res.density
    );
    assert!(res.density.iter().all(|c| c.status == RowStatus::Ok || c.reason.is_some()));
    for dir in ["state-density-karton", "state-karton"] {
        let d = tmp.path().join("work").join(dir);
        assert_eq!(std::fs::read_dir(&d).map(|d| d.count()).unwrap_or(0), 0, "{dir} left behind");
    }

    // Report: one <svg> per chart, self-contained (no external references).
    let inputs = karton_report::load(&[path.clone(), path.clone()]).unwrap();
    let w = karton_report::write(&inputs, &tmp.path().join("report")).unwrap();
    let html = std::fs::read_to_string(&w.html).unwrap();
    let svgs = html.matches("<svg").count();
    let figures = html.matches("<figure class=\"chart\">").count();
    assert_eq!(svgs, figures);
    assert_eq!(svgs, w.charts);
    // Per input: one ratio chart per workload series + ns (3) + lifecycle (wall, CPU, RSS
    // when GNU time is installed) + the density curve (1).
    let workload_series = res.series.iter().filter(|s| s.workload != "lifecycle").count();
    assert_eq!(workload_series, 2 + 4, "primes time+cpu, ipc ×4");
    let lifecycle_charts = res
        .series
        .iter()
        .filter(|s| s.workload == "lifecycle" && s.rows.iter().any(|r| r.summary.is_some()))
        .count();
    assert_eq!(w.charts, 2 * (workload_series + 3 + lifecycle_charts + 1));
    assert!(!html.contains("<script") && !html.contains("src=\"http"));
    let md = std::fs::read_to_string(&w.markdown).unwrap();
    assert!(md.contains("primes/time") && md.contains("Run to run"));
}
