#![allow(clippy::unwrap_used)]
//! Every workload runs inside a karton container (all eight namespaces, and the minimal
//! one) and returns plausible figures; bad input names the valid choices.

use std::process::Command;

use karton_bench::matrix;
use karton_bench::results::WorkloadOutput;
use karton_testkit as kit;

fn run_in(cfg: &str, workload_args: &[&str]) -> WorkloadOutput {
    let bin = kit::karton_bin().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = matrix::build_rootfs(tmp.path(), &bin).unwrap();
    let c = matrix::select(&matrix::workload_configs(), &[cfg.to_string()]).unwrap().remove(0);
    let mut args = vec!["/karton".to_string(), "workload".to_string()];
    args.extend(workload_args.iter().map(|s| s.to_string()));
    args.push("--json".into());
    let spec = matrix::workload_spec(&c, &rootfs, &args).unwrap();
    let bundle = tmp.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    let root = tmp.path().join("state");
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    // Unique across the tests running in parallel: the cgroup path derives from the id.
    let id = format!(
        "kbt-{}-{}-{}",
        std::process::id(),
        workload_args[0],
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let _guard = kit::Container { bin: &bin, root: &root, id: id.clone() };
    let out = Command::new(&bin)
        .arg("--root")
        .arg(&root)
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .output()
        .unwrap();
    assert!(out.status.success(), "{cfg} {workload_args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line =
        text.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON in {text:?}"));
    serde_json::from_str(line).unwrap()
}

fn check(o: &WorkloadOutput, names: &[&str], lo: f64, hi: f64) {
    for n in names {
        let m = o
            .metrics
            .iter()
            .find(|m| m.name == *n)
            .unwrap_or_else(|| panic!("{} has no {n}: {o:?}", o.workload));
        assert!(
            m.value > lo && m.value < hi,
            "{}/{n} = {} {} outside ({lo}, {hi})",
            o.workload,
            m.value,
            m.unit
        );
    }
}

#[test]
fn every_workload_runs_in_a_container_with_plausible_figures() {
    if let Some(why) = kit::karton_skip_reason() {
        return kit::skip(why);
    }
    for cfg in ["all", "mnt"] {
        check(&run_in(cfg, &["primes", "--limit", "50000"]), &["time", "cpu"], 0.01, 60_000.0);
        check(
            &run_in(cfg, &["syscall", "--iterations", "20000"]),
            &["getppid", "getppid-cpu"],
            5.0,
            100_000.0,
        );
        check(&run_in(cfg, &["fork-exec", "--iterations", "5"]), &["cycle"], 50.0, 5_000_000.0);
        check(
            &run_in(cfg, &["mmap", "--total-mib", "4"]),
            &["4k", "16k", "64k", "256k", "1m"],
            1.0,
            1_000_000.0,
        );
        check(
            &run_in(cfg, &["fileio", "--dir", "/var/tmp", "--total-mib", "4", "--iterations", "32"]),
            &["seq-write", "seq-read", "rand-write", "rand-read"],
            0.1,
            1e9,
        );
        check(
            &run_in(cfg, &["fileio", "--dir", "/tmp", "--total-mib", "4", "--iterations", "32"]),
            &["seq-write", "seq-read"],
            1.0,
            1e9,
        );
        // In "all" the network namespace's loopback starts down: the workload brings it up.
        check(&run_in(cfg, &["tcp", "--iterations", "200", "--total-mib", "8"]), &["rr", "stream"], 0.1, 1e6);
        check(
            &run_in(cfg, &["ipc", "--iterations", "200"]),
            &["pipe", "unix", "sysv-msg", "posix-mq"],
            0.1,
            1e6,
        );
        if karton_bench::machine::has("sysbench") {
            // The rootfs gets sysbench and its libraries when the host has it.
            check(
                &run_in(cfg, &["sysbench", "--iterations", "50", "--total-mib", "32"]),
                &["cpu", "memory", "threads"],
                0.1,
                1e9,
            );
        } else {
            eprintln!("sysbench not installed: its container check is skipped");
        }
    }
}

#[test]
fn rootless_and_seccomp_shapes_run_or_say_why() {
    if let Some(why) = kit::karton_skip_reason() {
        return kit::skip(why);
    }
    check(&run_in("rootless", &["syscall", "--iterations", "20000"]), &["getppid"], 5.0, 100_000.0);
    check(&run_in("+user", &["primes", "--limit", "20000"]), &["time"], 0.01, 60_000.0);
}

#[test]
fn namespace_creation_of_every_type_is_measured() {
    if let Some(why) = kit::karton_skip_reason() {
        return kit::skip(why);
    }
    let bin = kit::karton_bin().unwrap();
    for (ns, _) in karton_bench::workloads::NS_TYPES {
        for w in ["1", "2"] {
            let out = Command::new(&bin)
                .args(["workload", "ns-create", "--ns", ns, "--workers", w, "--iterations", "4", "--json"])
                .output()
                .unwrap();
            assert!(out.status.success(), "{ns}: {}", String::from_utf8_lossy(&out.stderr));
            let o: WorkloadOutput = serde_json::from_slice(&out.stdout).unwrap();
            let un = o.metrics.iter().find(|m| m.name == "unshare").unwrap();
            assert_eq!(un.samples.len(), 4 * w.parse::<usize>().unwrap(), "{ns}");
            assert!(un.value > 0.0 && un.value < 1e6, "{ns}: {}", un.value);
        }
    }
}

#[test]
fn unknown_workload_and_namespace_name_the_valid_ones() {
    let Some(bin) = kit::karton_bin() else {
        return kit::skip("no karton binary: run `cargo build -p karton` first (or set KARTON_BIN)");
    };
    let out = Command::new(&bin).args(["workload", "nosuch"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("primes") && err.contains("ns-create"), "{err}");
    let out = Command::new(&bin).args(["workload", "ns-create", "--ns", "bogus"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("network"));
    let out =
        Command::new(&bin).args(["bench", "--configs", "nosuch", "--only", "primes", "-q"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("all+cg") || err.contains("needs root"), "{err}");
}
