//! karton_probe::session on the real kernel: how a session ends and what it hands back.
//! Needs root and BTF; when BPF cannot be loaded here, each test returns through
//! `karton_testkit::skip`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use karton_probe::session::{Clock, Ended, Session, SessionError, StopReason, StopSignals, Subject};
use karton_probe::{Probe, ProbeError};

/// Runs a session on `subject` with the timeline and faults instruments: its end, and
/// how many interval snapshots it gave; None after recording the skip.
fn session(subject: Subject, clock: Clock) -> Option<(Ended, usize)> {
    let signals = StopSignals::block().expect("blocking SIGINT/SIGTERM");
    let b = Probe::builder().timeline(true).faults(true);
    let mut s = match Session::attach(signals, subject, b) {
        Ok(s) => s,
        Err(SessionError::Attach(e @ (ProbeError::NotRoot(_) | ProbeError::NoBtf))) => {
            karton_testkit::skip(e);
            return None;
        }
        Err(e) => panic!("attach: {e}"),
    };
    let mut intervals = 0;
    let end = s.run(clock, |_| intervals += 1).expect("run");
    Some((end, intervals))
}

#[test]
fn a_command_session_ends_with_the_command_and_its_exit_code() {
    let subject = Subject::Command(vec!["sh".into(), "-c".into(), "exit 3".into()]);
    let Some((end, _)) = session(subject, Clock { interval: None, duration: Some(Duration::from_secs(20)) })
    else {
        return;
    };
    assert_eq!(end.stop, StopReason::CommandExited);
    assert_eq!(end.stop.to_string(), "command exited");
    assert_eq!(end.exit_code, 3);
    assert!(end.command_peak_rss_kib.is_some_and(|k| k > 0), "{:?}", end.command_peak_rss_kib);
    let tl = end.snapshot.timeline.expect("timeline section").rows;
    assert!(tl.iter().any(|e| e.kind == "exit"), "{tl:?}");
}

#[test]
fn a_host_session_ends_when_its_duration_is_over_with_interval_snapshots() {
    let clock =
        Clock { interval: Some(Duration::from_millis(150)), duration: Some(Duration::from_millis(700)) };
    let Some((end, intervals)) = session(Subject::All, clock) else {
        return;
    };
    assert_eq!(end.stop, StopReason::DurationOver);
    assert_eq!(end.exit_code, 0);
    assert_eq!(end.command_peak_rss_kib, None);
    assert!((2..=5).contains(&intervals), "{intervals} interval snapshots in 700 ms at 150 ms");
    assert!(end.started.elapsed() >= Duration::from_millis(700));
}

#[test]
fn a_process_session_needs_the_process() {
    let signals = StopSignals::block().expect("blocking SIGINT/SIGTERM");
    let err = Session::attach(signals, Subject::Process(u32::MAX - 1), Probe::builder().sched(true))
        .err()
        .expect("no such process");
    assert_eq!(err.to_string(), format!("no process {}", u32::MAX - 1));
}

#[test]
fn the_command_dies_of_sigterm_although_the_session_blocks_it() {
    // The session reads SIGINT/SIGTERM from a signalfd, so this thread blocks them; the
    // command must not inherit that mask, or `kill -TERM` would not stop it.
    let subject = Subject::Command(vec!["sh".into(), "-c".into(), "kill -TERM $$; exit 7".into()]);
    let Some((end, _)) = session(subject, Clock { interval: None, duration: Some(Duration::from_secs(20)) })
    else {
        return;
    };
    assert_eq!(end.stop, StopReason::CommandExited);
    assert_eq!(end.exit_code, 128 + 15, "the shell survived its own SIGTERM (7 = the signal was blocked)");
}
