//! SIGKILL at any moment (issue #13): `create`, `exec` and `delete` are killed 0–30 ms
//! into their run (further if the command takes longer here), 3 times per millisecond step. After each kill, `delete --force` must
//! finish (a hang is a failure of its own) and nothing of the container may remain: no
//! `list` entry, state directory, cgroup in any hierarchy, host mount or process.
//! The figures (attempts, leaks by kind) go to stderr.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::*;

const STEPS_MS: u64 = 30;
const REPEATS: u64 = 3;
/// A delete still running after this is hung (normal ones take milliseconds).
const HANG: Duration = Duration::from_secs(20);
/// The command an `exec` runs: an argv no other test uses, to find it anywhere on the host.
const EXEC_ARGS: [&str; 2] = ["sleep", "4242"];

fn bundle() -> Bundle {
    let mut b = Bundle::new();
    b.config["process"]["args"] = serde_json::json!(["sleep", "100"]);
    b.write();
    b
}

/// `delete --force` under a watchdog: the failure it reports, if any.
fn force_delete(k: &Karton, id: &str) -> Vec<(&'static str, String)> {
    match run_watched(k.cmd().args(["delete", "--force", id]), HANG) {
        Watched::Done(o) if o.status.success() => vec![],
        Watched::Done(o) => vec![("delete failed", String::from_utf8_lossy(&o.stderr).trim().to_string())],
        Watched::Hung { after, stderr } => {
            vec![("delete hung", format!("killed after {after:?}; stderr: {}", stderr.trim()))]
        }
    }
}

/// Counts an attempt; a leaky one is scrubbed so that the next starts clean.
fn finish(
    k: &Karton,
    b: &Bundle,
    id: &str,
    label: String,
    mut found: Vec<(&'static str, String)>,
    tally: &mut Tally,
) {
    found.extend(leaks(k, id, b.path()));
    let leaky = !found.is_empty();
    tally.record(&label, found);
    if leaky {
        scrub(k, id, b.path());
    }
}

fn conclude(tally: &Tally) {
    eprintln!("{}", tally.report());
    for d in tally.details.iter().take(100) {
        eprintln!("  {d}");
    }
    assert_eq!(tally.leaky, 0, "{}", tally.report());
}

fn ms(t: u64) -> Duration {
    Duration::from_millis(t)
}

/// How far to sweep: 0–30 ms, or further if the command takes longer here (a debug build
/// on a busy machine), so that every moment of it is hit. Not an assertion on speed.
fn span_ms(mut run_once: impl FnMut() -> Duration) -> u64 {
    let mut t: Vec<u64> = (0..3).map(|_| run_once().as_millis() as u64).collect();
    t.sort();
    STEPS_MS.max(t[1] + t[1] / 4)
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = std::time::Instant::now();
    f();
    start.elapsed()
}

fn sweep(span: u64, tally: &mut Tally, mut attempt: impl FnMut(u64, u64, &mut Tally)) {
    tally.name = format!("{} (0-{span} ms)", tally.name);
    for t in 0..=span {
        for rep in 0..REPEATS {
            attempt(t, rep, tally);
        }
    }
}

fn create_started(k: &Karton, b: &Bundle, id: &str) {
    let bp = b.path().to_str().unwrap();
    let out = k.run(&["create", "--bundle", bp, id]);
    assert!(out.status.success(), "create {id}: {}", String::from_utf8_lossy(&out.stderr));
    let out = k.run(&["start", id]);
    assert!(out.status.success(), "start {id}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn create_killed_at_any_moment() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let b = bundle();
    let bp = b.path().to_str().unwrap().to_string();
    let mut tally = Tally::new("kill -9 of create");
    let span = span_ms(|| {
        let id = unique("ks-span");
        let d = timed(|| assert!(k.run(&["create", "--bundle", &bp, &id]).status.success()));
        let _ = k.run(&["delete", "--force", &id]);
        d
    });
    sweep(span, &mut tally, |t, rep, tally| {
        let id = unique("ks-create");
        if !kill_after(&k, &["create", "--bundle", &bp, &id], ms(t)) {
            tally.finished_before_kill += 1;
        }
        let found = force_delete(&k, &id);
        finish(&k, &b, &id, format!("create killed at {t} ms (#{rep})"), found, tally);
    });
    conclude(&tally);
}

/// The exec'd command, its karton intermediate or a forked child that has not exec'd yet
/// (karton's argv): what is left of an `exec` of container `id`.
fn exec_remains(id: &str) -> Vec<ProcInfo> {
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z' && p.state != 'X')
        .filter(|p| {
            p.cmdline == EXEC_ARGS
                || (p.cmdline.first().is_some_and(|a| a == KARTON)
                    && p.cmdline.iter().any(|a| a == "exec")
                    && p.cmdline.iter().any(|a| a == id))
        })
        .collect()
}

#[test]
fn exec_killed_at_any_moment() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let b = bundle();
    let mut tally = Tally::new("kill -9 of exec");
    let span = {
        let id = unique("ks-span");
        create_started(&k, &b, &id);
        let span = span_ms(|| timed(|| assert!(k.run(&["exec", &id, "true"]).status.success())));
        let _ = k.run(&["delete", "--force", &id]);
        span
    };
    sweep(span, &mut tally, |t, rep, tally| {
        let id = unique("ks-exec");
        create_started(&k, &b, &id);
        let mut args = vec!["exec", id.as_str()];
        args.extend(EXEC_ARGS);
        if !kill_after(&k, &args, ms(t)) {
            tally.finished_before_kill += 1;
        }
        let mut found = Vec::new();
        // A karton process of the exec (intermediate, or forked child before execve) must
        // go away on its own once the exec command is dead; the exec'd command itself may
        // run on, but only inside the container.
        let mut stuck = exec_remains(&id);
        for _ in 0..200 {
            stuck.retain(|p| {
                p.cmdline.first().is_some_and(|a| a == KARTON) || !in_container_cgroup(&p.cgroups, &id)
            });
            if stuck.is_empty() {
                break;
            }
            std::thread::sleep(ms(10));
            stuck = exec_remains(&id);
        }
        for p in stuck {
            found.push(("exec leftover", p.to_string()));
        }
        let state = k.run(&["state", &id]);
        let status = serde_json::from_slice::<serde_json::Value>(&state.stdout)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_string));
        if status.as_deref() != Some("running") {
            found.push((
                "container not running",
                format!("{status:?} {}", String::from_utf8_lossy(&state.stderr).trim()),
            ));
        }
        found.extend(force_delete(&k, &id));
        // The exec'd command dies with the container, wherever it ran.
        for p in exec_remains(&id) {
            found.push(("exec leftover", p.to_string()));
        }
        finish(&k, &b, &id, format!("exec killed at {t} ms (#{rep})"), found, tally);
        for p in exec_remains(&id) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), nix::sys::signal::Signal::SIGKILL);
        }
    });
    conclude(&tally);
}

#[test]
fn delete_killed_at_any_moment() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let b = bundle();
    let mut tally = Tally::new("kill -9 of delete --force");
    let span = span_ms(|| {
        let id = unique("ks-span");
        create_started(&k, &b, &id);
        timed(|| assert!(k.run(&["delete", "--force", &id]).status.success()))
    });
    sweep(span, &mut tally, |t, rep, tally| {
        let id = unique("ks-delete");
        create_started(&k, &b, &id);
        if !kill_after(&k, &["delete", "--force", &id], ms(t)) {
            tally.finished_before_kill += 1;
        }
        // A second delete finishes the job.
        let found = force_delete(&k, &id);
        finish(&k, &b, &id, format!("delete killed at {t} ms (#{rep})"), found, tally);
    });
    conclude(&tally);
}

/// The lock of a state directory whose taker is gone but whose descriptor a forked
/// process still holds (what the init of a `create` killed before it closed the
/// descriptor did): `delete --force` kills the holder instead of waiting forever.
#[test]
fn delete_force_breaks_a_lock_held_by_an_orphan() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let b = bundle();
    let id = unique("ks-orphan");
    let out = k.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "create: {}", String::from_utf8_lossy(&out.stderr));
    let dir = k.root.path().join(&id);
    // flock(1) takes the lock on the shell's fd 9 and exits; the shell forks the holder
    // (which inherits fd 9) and exits too.
    let pidfile = k.root.path().join("holder.pid");
    let script = format!(
        "exec 9<'{}'; flock -x 9 || exit 1; sleep 1000 & echo $! > '{}'",
        dir.display(),
        pidfile.display()
    );
    let st = std::process::Command::new("sh")
        .args(["-c", &script])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let holder: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let _ = std::fs::remove_file(&pidfile);
    struct Reap(i32);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGKILL);
        }
    }
    let _reap = Reap(holder);

    let mut found = force_delete(&k, &id);
    found.extend(leaks(&k, &id, b.path()));
    let holder_alive = still_alive(holder);
    if !found.is_empty() {
        scrub(&k, &id, b.path());
    }
    assert!(found.is_empty(), "{found:?}");
    assert!(!holder_alive, "the orphan holding the lock (pid {holder}) is still alive");
}

/// A live command holding the lock is waited for, never killed.
#[test]
fn delete_force_waits_for_a_live_lock_holder() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let b = bundle();
    let id = unique("ks-live");
    let out = k.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "create: {}", String::from_utf8_lossy(&out.stderr));
    let dir = k.root.path().join(&id);
    let mut holder =
        std::process::Command::new("flock").arg("-x").arg(&dir).args(["sleep", "1"]).spawn().unwrap();
    // Wait until it holds the lock.
    while let Ok(l) = nix::fcntl::Flock::lock(
        std::fs::File::open(&dir).unwrap(),
        nix::fcntl::FlockArg::LockExclusiveNonblock,
    ) {
        drop(l);
        std::thread::sleep(ms(5));
    }
    let found = force_delete(&k, &id);
    let st = holder.wait().unwrap();
    let found: Vec<_> = found.into_iter().chain(leaks(&k, &id, b.path())).collect();
    if !found.is_empty() {
        scrub(&k, &id, b.path());
    }
    assert!(found.is_empty(), "{found:?}");
    assert!(st.success(), "the live lock holder was disturbed: {st:?}");
}

/// Whether `pid` is alive and not a zombie after a grace period for a SIGKILL to land.
fn still_alive(pid: i32) -> bool {
    for _ in 0..200 {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let s = state.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
        if s.is_none() || s == Some('Z') {
            return false;
        }
        std::thread::sleep(ms(10));
    }
    true
}

/// A `create` killed after making its cgroups and before recording them in state.json
/// (karton before the cgroup was planned in state.json first): `delete --force` finds the
/// empty cgroup under karton's parent and removes it.
#[test]
fn delete_force_removes_an_unrecorded_cgroup() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let b = bundle();
    let id = unique("ks-unrecorded");
    let out = k.run(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    assert!(out.status.success(), "create: {}", String::from_utf8_lossy(&out.stderr));
    let made = container_cgroups(&id);
    assert!(!made.is_empty(), "create made no cgroup to test with");
    // Empty the cgroup, then make the record what the killed create had written.
    let out = k.run(&["kill", "--all", &id, "KILL"]);
    assert!(out.status.success(), "kill: {}", String::from_utf8_lossy(&out.stderr));
    for _ in 0..1000 {
        if k.status(&id) == "stopped" {
            break;
        }
        std::thread::sleep(ms(10));
    }
    let path = k.root.path().join(&id).join("state.json");
    let mut rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let obj = rec.as_object_mut().unwrap();
    obj.remove("cgroup");
    obj.insert("status".into(), "creating".into());
    obj.insert("pid".into(), 0.into());
    std::fs::write(&path, serde_json::to_vec(&rec).unwrap()).unwrap();

    let mut found = force_delete(&k, &id);
    found.extend(leaks(&k, &id, b.path()));
    if !found.is_empty() {
        scrub(&k, &id, b.path());
    }
    assert!(found.is_empty(), "{found:?}");
}
