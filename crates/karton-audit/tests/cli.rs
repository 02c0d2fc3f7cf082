//! `karton audit` as a command: an interrupt (SIGINT, as Ctrl-C sends) stops it, kills and
//! deletes its containers and cgroups, and leaves the partial results.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Removes the test's work dir also when an assertion fails.
struct RmDir(std::path::PathBuf);

impl Drop for RmDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn sigint_stops_the_audit_and_cleans_up() {
    if let Some(why) = karton_testkit::karton_skip_reason() {
        return karton_testkit::skip(why);
    }
    let Some(exe) = common::karton_bin() else { return karton_testkit::skip("no karton binary") };
    let work = std::env::temp_dir().join(format!("karton-audit-cli-{}", std::process::id()));
    let out = work.join("out.json");
    let _ = std::fs::create_dir_all(&work);
    let _guard = RmDir(work.clone());
    let mut child = Command::new(&exe)
        .args(["audit", "--no-footprint", "--only", "time", "--stressors", "cpu"])
        .arg("--work-dir")
        .arg(&work)
        .arg("-o")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let the isolation probes finish and the stressor start.
    std::thread::sleep(Duration::from_secs(6));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("karton audit did not stop within 60 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    println!("{err}");
    // With --only, noninterference does not run: the audit may have finished already.
    let run_id = err
        .lines()
        .find_map(|l| l.strip_prefix("karton audit: run "))
        .and_then(|l| l.split(',').next())
        .unwrap()
        .to_string();
    assert!(status.code() == Some(130) || status.code() == Some(0), "{status:?}");
    // No container state, no cgroups of this run left.
    let state = work.join("state");
    let left: Vec<_> =
        std::fs::read_dir(&state).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "containers left: {left:?}");
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = h.path().join("karton-audit").join(&run_id);
        assert!(!p.exists(), "{} left behind", p.display());
    }
    assert!(out.exists(), "no (partial) results written");
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn sigint_during_noninterference_exits_130() {
    if let Some(why) = karton_testkit::karton_skip_reason() {
        return karton_testkit::skip(why);
    }
    let Some(exe) = common::karton_bin() else { return karton_testkit::skip("no karton binary") };
    let work = std::env::temp_dir().join(format!("karton-audit-cli2-{}", std::process::id()));
    let out = work.join("out.json");
    let _guard = RmDir(work.clone());
    let mut child = Command::new(&exe)
        .args(["audit", "--no-footprint", "--no-isolation", "--stressors", "cpu,memory"])
        .arg("--work-dir")
        .arg(&work)
        .arg("-o")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(8));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "no stop within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    println!("{err}");
    assert_eq!(status.code(), Some(130), "{err}");
    let run_id = err
        .lines()
        .find_map(|l| l.strip_prefix("karton audit: run "))
        .and_then(|l| l.split(',').next())
        .unwrap()
        .to_string();
    let left: Vec<_> = std::fs::read_dir(work.join("state"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "containers left: {left:?}");
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        assert!(!h.path().join("karton-audit").join(&run_id).exists());
    }
    // Partial results: written atomically, valid JSON of the audit schema.
    let r = karton_audit::results::read(&out).unwrap();
    assert!(r.noninterference.is_some());
    let _ = std::fs::remove_dir_all(&work);
}
