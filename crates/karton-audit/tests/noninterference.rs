//! Noninterference and cleanup with real containers (root; karton binary).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use karton_audit::nonint::{run, Plan};
use karton_audit::runner::Config;

#[test]
fn cpu_hog_beside_victims_yields_rows_with_ci_and_progress() {
    let Some(session) = common::session("noninterference") else { return };
    let env = &session.env;
    let plan = Plan {
        victim_seconds: 1.0,
        interval_ms: 100,
        repetitions: 1,
        warmup: Duration::from_millis(400),
        stressors: vec!["cpu".into()],
        victims: vec!["primes".into(), "tcp-rr".into()],
        mem_hog_mib: 64,
    };
    let ni = run(&env.karton, &env.rootfs, &env.work, &plan, &|| false, &mut |l: &str| println!("{l}"));
    assert!(ni.skipped.is_empty(), "skipped: {:?}", ni.skipped);
    assert_eq!(ni.rows.len(), 4, "cpu × {{ceilings, limits}} × {{primes, tcp-rr}}");
    for r in &ni.rows {
        println!(
            "{} limited={} {}: {:.1} → {:.1} ({:.1} % [{:.1}, {:.1}]) stressor {:.1} {}",
            r.stressor,
            r.limited,
            r.victim,
            r.baseline,
            r.stressed,
            r.degradation_pct.value,
            r.degradation_pct.ci_low,
            r.degradation_pct.ci_high,
            r.stressor_progress,
            r.stressor_unit
        );
        assert!(r.baseline > 0.0 && r.stressed > 0.0);
        assert!(r.degradation_pct.value.is_finite());
        assert!(r.degradation_pct.ci_low <= r.degradation_pct.ci_high);
        assert!(r.stressor_progress > 0.0, "the stressor made no progress");
    }
    // The ceilings are always there, even without limits.
    assert_eq!(ni.ceilings["pids"]["limit"], 512);
}

fn cgroup_dirs(run_id: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in rd.flatten() {
            let p = h.path().join("karton-audit").join(run_id);
            if p.exists() {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn dropping_the_session_kills_and_deletes_containers_and_cgroups() {
    let Some(session) = common::session("cleanup") else { return };
    let k = session.karton().clone();
    let run_id = k.run_id.clone();
    let state = k.root.clone();
    let mut cfg = Config::new(
        &session.env.rootfs,
        &["pid".to_string(), "mnt".to_string()],
        &["/bin/sleep".to_string(), "60".to_string()],
    );
    cfg.resources(serde_json::json!({"pids": {"limit": 16}}));
    let id = k.new_id("cleanup");
    let bg = k.start(&id, &cfg).unwrap();
    // Wait until the container runs.
    let mut running = false;
    for _ in 0..200 {
        if state.join(&id).exists() && !cgroup_dirs(&run_id).is_empty() {
            running = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(running, "the container never started");
    // Simulate an interrupted audit: forget the handle, drop the session.
    std::mem::forget(bg);
    drop(session);
    assert!(!state.join(&id).exists(), "container state left behind");
    assert!(cgroup_dirs(&run_id).is_empty(), "cgroups left behind: {:?}", cgroup_dirs(&run_id));
    assert!(!Path::new(&state).exists() || std::fs::read_dir(&state).map(|d| d.count()).unwrap_or(0) == 0);
}

#[test]
fn results_are_written_atomically_and_read_back() {
    let dir = std::env::temp_dir().join(format!("karton-audit-results-{}", std::process::id()));
    let path = dir.join("audit.json");
    let r = karton_audit::AuditResults {
        schema: karton_audit::SCHEMA.into(),
        profile: "quick".into(),
        started_unix: 1,
        duration_s: 0.5,
        machine: karton_audit::results::Machine::detect(),
        isolation: Vec::new(),
        noninterference: None,
        footprint: None,
        notes: vec!["test".into()],
    };
    karton_audit::results::write_json(&path, &r).unwrap();
    let back = karton_audit::results::read(&path).unwrap();
    assert_eq!(back.schema, "karton.audit/v1");
    assert_eq!(back.notes, vec!["test".to_string()]);
    // No temp file is left beside it.
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["audit.json".to_string()]);
    std::fs::write(&path, r#"{"schema":"other"}"#).unwrap();
    assert!(karton_audit::results::read(&path).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
