//! Many containers at once (issue #13): 200 containers, 8 at a time, each created,
//! started, killed and deleted, sharing one read-only busybox rootfs. Every command must
//! succeed and nothing of any container may remain. The wall time and every failure (with
//! its error text) go to stderr.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;

const CONTAINERS: usize = 200;
const PARALLEL: usize = 8;
/// A command still running after this is hung, not slow.
const HANG: Duration = Duration::from_secs(60);

/// Runs one karton command under a watchdog; Err carries what went wrong.
fn step(k: &Karton, id: &str, args: &[&str]) -> Result<String, String> {
    match run_watched(k.cmd().args(args), HANG) {
        Watched::Done(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Watched::Done(o) => Err(format!(
            "{id}: `{}` failed ({}): {}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Watched::Hung { after, stderr } => {
            Err(format!("{id}: `{}` hung (killed after {after:?}): {}", args.join(" "), stderr.trim()))
        }
    }
}

fn lifecycle(k: &Karton, bundle: &str, id: &str) -> Result<(), String> {
    step(k, id, &["create", "--bundle", bundle, id])?;
    step(k, id, &["start", id])?;
    step(k, id, &["kill", id, "KILL"])?;
    // SIGKILL is asynchronous: delete (without --force) wants the container stopped.
    let mut status = String::new();
    for _ in 0..1000 {
        let out = step(k, id, &["state", id])?;
        status = serde_json::from_str::<serde_json::Value>(&out)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_string))
            .unwrap_or_default();
        if status == "stopped" {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if status != "stopped" {
        return Err(format!("{id}: still {status:?} 10 s after kill KILL"));
    }
    step(k, id, &["delete", id])?;
    Ok(())
}

#[test]
fn two_hundred_containers_eight_at_a_time() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    b.config["process"]["args"] = serde_json::json!(["sleep", "100"]);
    b.write();
    let bundle = b.path().to_str().unwrap().to_string();
    let prefix = unique("load");
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= CONTAINERS {
                    break;
                }
                let id = format!("{prefix}-{i}");
                if let Err(e) = lifecycle(&k, &bundle, &id) {
                    failures.lock().unwrap().push(e);
                }
            });
        }
    });
    let wall = start.elapsed();

    let mut leaked = Tally::new("load");
    for i in 0..CONTAINERS {
        let id = format!("{prefix}-{i}");
        let found = leaks(&k, &id, b.path());
        let leaky = !found.is_empty();
        leaked.record(&id, found);
        if leaky {
            scrub(&k, &id, b.path());
        }
    }
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "load: {CONTAINERS} containers, {PARALLEL} in parallel (create, start, kill, delete): wall time {:.1} s, {} failures, {} leaky",
        wall.as_secs_f64(),
        failures.len(),
        leaked.leaky
    );
    let kinds: Vec<String> = leaked.by_kind.iter().map(|(k, n)| format!("{k}={n}")).collect();
    eprintln!(
        "load: leaky containers by kind: {}",
        if kinds.is_empty() { "none".to_string() } else { kinds.join(" ") }
    );
    for f in failures.iter().take(50) {
        eprintln!("  failure: {f}");
    }
    for d in leaked.details.iter().take(50) {
        eprintln!("  leak: {d}");
    }
    assert!(
        failures.is_empty() && leaked.leaky == 0,
        "{} failures, {} leaky containers",
        failures.len(),
        leaked.leaky
    );
}
