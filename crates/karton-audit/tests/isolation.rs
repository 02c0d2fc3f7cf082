//! Every isolation probe must be able to fail: without its namespace (or mechanism) it shows
//! the leak, with it the containment — or it is skipped, with a reason, because the host
//! cannot run it. Real containers through the karton binary; needs root.

#![allow(clippy::unwrap_used)]

mod common;

use karton_audit::isolation::run_all;
use karton_audit::Verdict;

/// Runs the probes of `family` and checks each row.
fn check_family(family: &str) {
    let Some(session) = common::session() else { return };
    let mut lines = Vec::new();
    let rows =
        run_all(&session.env, &[family.to_string()], &|| false, &mut |l: &str| lines.push(l.to_string()));
    assert!(!rows.is_empty(), "{family}: no rows");
    for r in &rows {
        println!(
            "{}: without {:?} — {}\n    with {:?} — {}",
            r.id, r.without.verdict, r.without.evidence, r.with.verdict, r.with.evidence
        );
        match (r.without.verdict, r.with.verdict) {
            (Verdict::Leaked, Verdict::Contained) => assert!(r.demonstrated),
            (Verdict::Skipped, Verdict::Skipped) => {
                assert!(!r.without.evidence.is_empty() && !r.with.evidence.is_empty(), "{}: skipped without a reason", r.id);
                println!("SKIP: {}: {}", r.id, r.without.evidence);
            }
            (a, b) => panic!("{}: expected leaked without and contained with, got {a:?} / {b:?}\n  without: {}\n  with: {}", r.id, r.without.evidence, r.with.evidence),
        }
        assert!(!r.without.evidence.is_empty() && !r.with.evidence.is_empty());
    }
}

#[test]
fn pid_probes_leak_without_and_contain_with() {
    check_family("pid");
}

#[test]
fn mnt_probes_leak_on_the_host_and_contain_in_a_container() {
    check_family("mnt");
}

#[test]
fn net_probes_leak_without_and_contain_with() {
    check_family("net");
}

#[test]
fn ipc_probes_leak_without_and_contain_with() {
    check_family("ipc");
}

#[test]
fn uts_probe_leaks_into_its_scratch_parent_only_without() {
    let before = nix::unistd::gethostname().ok();
    check_family("uts");
    // The real host's hostname is never touched.
    assert_eq!(nix::unistd::gethostname().ok(), before);
}

#[test]
fn user_probes_leak_without_and_contain_with() {
    check_family("user");
}

#[test]
fn cgroup_probes_leak_without_and_contain_with() {
    check_family("cgroup");
}

#[test]
fn time_probes_show_offsets_only_inside_a_time_namespace() {
    check_family("time");
}

#[test]
fn kernel_rows_leak_without_their_mechanism_and_report_the_default() {
    let Some(session) = common::session() else { return };
    let rows = run_all(&session.env, &["kernel".to_string()], &|| false, &mut |_: &str| {});
    assert_eq!(rows.len(), 5);
    for r in &rows {
        assert_eq!(r.namespace, "none");
        let d = r.default_config.as_ref().expect("kernel rows carry the default-config outcome");
        println!(
            "{}: without {:?} with {:?} default {:?} (applies: {}) — {}",
            r.id, r.without.verdict, r.with.verdict, d.outcome.verdict, d.applies_mechanism, r.protection
        );
        match (r.without.verdict, r.with.verdict) {
            (Verdict::Leaked, Verdict::Contained) => {}
            (Verdict::Skipped, Verdict::Skipped) => println!("SKIP: {}: {}", r.id, r.without.evidence),
            (a, b) => panic!("{}: {a:?} / {b:?}: {} | {}", r.id, r.without.evidence, r.with.evidence),
        }
        // Where karton's default applies the mechanism, the default run is the contained one.
        if d.applies_mechanism && r.with.verdict != Verdict::Skipped {
            assert_eq!(d.outcome.verdict, Verdict::Contained, "{}", r.id);
        }
        // The keyring leak under `karton spec`'s config is runc's default: said so, not
        // left to read as a karton containment.
        if r.id == "kernel.keyring" && !d.applies_mechanism && d.outcome.verdict == Verdict::Leaked {
            let note = d.note.as_deref().unwrap_or("");
            assert!(note.starts_with("runc-compatible default, not contained"), "{note:?}");
        }
    }
}

#[test]
fn probe_reports_unknown_probes_as_errors_and_host_gaps_as_skips() {
    let r = karton_audit::probes::run_probe("no.such_probe", &serde_json::json!({}));
    assert_eq!(r.verdict, Verdict::Error);
    // On the host (root, full capabilities): load_module either passes the capability check
    // (leaked: nothing is loaded, the image is empty) or the kernel has no modules (skipped).
    if nix::unistd::geteuid().is_root() {
        let m = karton_audit::probes::run_probe("user.load_module", &serde_json::json!({}));
        assert!(matches!(m.verdict, Verdict::Leaked | Verdict::Skipped), "{:?}: {}", m.verdict, m.evidence);
        assert!(!m.evidence.is_empty());
    }
}
