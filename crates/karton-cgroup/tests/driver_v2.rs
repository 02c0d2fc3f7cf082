//! Driver tests against a directory tree, for the cgroup2 controllers this host lacks
//! (memory, cpu, cpuset, io, pids on cgroup2): the tree stands in for a pure-v2
//! /sys/fs/cgroup, and the test checks what the driver writes where.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::fs;
use std::path::{Path, PathBuf};

use karton_cgroup::{Cgroup, Error, Host, Layout, V1Mount, V2Mount};

struct Tree(PathBuf);

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const FILES: &[(&str, &str)] = &[
    ("cgroup.procs", ""),
    ("cgroup.subtree_control", ""),
    ("memory.max", "max"),
    ("memory.low", "0"),
    ("memory.high", "max"),
    ("memory.swap.max", "max"),
    ("memory.current", "1000"),
    ("memory.events", "low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n"),
    ("memory.stat", "anon 10\nfile 20\n"),
    ("cpu.weight", "100"),
    ("cpu.max", "max 100000"),
    ("cpu.max.burst", "0"),
    ("cpu.idle", "0"),
    (
        "cpu.stat",
        "usage_usec 5\nuser_usec 3\nsystem_usec 2\nnr_periods 7\nnr_throttled 4\nthrottled_usec 9\n",
    ),
    ("cpuset.cpus", ""),
    ("cpuset.mems", ""),
    ("pids.max", "max"),
    ("pids.current", "2"),
    ("io.weight", "default 100"),
    ("io.max", ""),
    ("io.stat", "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"),
    ("hugetlb.2MB.max", "max"),
    ("hugetlb.2MB.rsvd.max", "max"),
    ("hugetlb.2MB.current", "0"),
    ("hugetlb.2MB.events", "max 0\n"),
];

fn tree(tag: &str) -> (Tree, Host) {
    let root = std::env::temp_dir().join(format!("karton-test-drv-{}-{tag}", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).expect("mkdir tree");
    fs::write(root.join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids\n").expect("controllers");
    fs::write(root.join("cgroup.subtree_control"), "").expect("subtree_control");
    let host = Host::new(
        Layout::V2,
        vec![],
        Some(V2Mount {
            mount_point: root.clone(),
            root: "/".into(),
            controllers: ["cpuset", "cpu", "io", "memory", "hugetlb", "pids"].map(String::from).to_vec(),
        }),
    );
    (Tree(root), host)
}

/// Fills every created directory with the interface files a kernel would show.
fn populate(cg: &Cgroup) {
    for d in cg.created() {
        for (f, v) in FILES {
            fs::write(d.join(f), v).expect("populate");
        }
    }
}

/// What the kernel does at rmdir: interface files go with the directory.
fn unpopulate(cg: &Cgroup) {
    for d in cg.created() {
        for (f, _) in FILES {
            let _ = fs::remove_file(d.join(f));
        }
    }
}

fn read(d: &Path, f: &str) -> String {
    fs::read_to_string(d.join(f)).unwrap_or_default().trim().to_string()
}

fn res(json: &str) -> oci_spec::runtime::LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

#[test]
fn v2_resources_map_to_files() {
    let (t, host) = tree("map");
    let cg = Cgroup::create(&host, None, "c1").expect("create");
    assert_eq!(cg.v2_dir(), Some(t.0.join("karton/c1").as_path()));
    assert_eq!(cg.created(), &[t.0.join("karton"), t.0.join("karton/c1")]);
    populate(&cg);
    let d = cg.v2_dir().expect("v2");
    cg.apply(&res(r#"{"memory": {"limit": 67108864, "swap": 134217728, "reservation": 33554432},
            "cpu": {"shares": 1024, "quota": 50000, "burst": 1000, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 32},
            "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 10}],
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "unified": {"memory.high": "50000000"}}"#))
        .expect("apply");
    assert_eq!(read(d, "memory.max"), "67108864");
    // OCI swap is memory+swap; cgroup2 swap.max is swap alone.
    assert_eq!(read(d, "memory.swap.max"), "67108864");
    assert_eq!(read(d, "memory.low"), "33554432");
    assert_eq!(read(d, "memory.high"), "50000000");
    assert_eq!(read(d, "cpu.weight"), "39");
    // Period not given: the current one is kept.
    assert_eq!(read(d, "cpu.max"), "50000 100000");
    assert_eq!(read(d, "cpu.max.burst"), "1000");
    assert_eq!(read(d, "cpuset.cpus"), "0-1");
    assert_eq!(read(d, "pids.max"), "32");
    // The tree's files are plain files: each write replaces the content, so io.weight shows
    // the last write (the per-device weight), io.max the last throttle line.
    assert_eq!(read(d, "io.weight"), "8:0 1");
    assert_eq!(read(d, "io.max"), "8:0 rbps=1048576");
    assert_eq!(read(d, "hugetlb.2MB.max"), "4194304");
    assert_eq!(read(d, "hugetlb.2MB.rsvd.max"), "4194304");
    // Controllers were enabled in the ancestors' subtree_control ("+ctrl" writes).
    assert!(read(&t.0, "cgroup.subtree_control").starts_with('+'));
    assert!(read(&t.0.join("karton"), "cgroup.subtree_control").starts_with('+'));

    let st = cg.stats().expect("stats");
    assert_eq!(st.memory.oom_kill, 1);
    assert_eq!(st.memory.oom, 2);
    assert_eq!(st.memory.usage.failcnt, 3);
    assert_eq!(st.cpu.usage.total, 5000);
    assert_eq!(st.cpu.throttling.throttled_periods, 4);
    assert_eq!(st.pids.current, 2);
    assert_eq!(st.blkio.io_service_bytes_recursive.len(), 2);
    let ev = cg.oom_events().expect("oom");
    assert_eq!((ev.oom, ev.oom_kill), (2, 1));

    // Keys cgroup2 cannot express: clear errors naming them.
    for (json, key) in [
        (r#"{"memory": {"swappiness": 10}}"#, "memory.swappiness"),
        (r#"{"memory": {"disableOOMKiller": true}}"#, "memory.disableOOMKiller"),
        (r#"{"memory": {"kernel": 1048576}}"#, "memory.kernel"),
        (r#"{"cpu": {"realtimeRuntime": 1000}}"#, "cpu.realtimeRuntime"),
        (r#"{"blockIO": {"leafWeight": 100}}"#, "blockIO.leafWeight"),
        (r#"{"network": {"classID": 5}}"#, "network.classID"),
        (r#"{"unified": {"rdma.max": "x"}}"#, "unified[\"rdma.max\"]"),
    ] {
        match cg.apply(&res(json)) {
            Err(e @ Error::Unsupported { .. }) => assert!(e.to_string().contains(key), "{e}"),
            other => panic!("{json}: {other:?}"),
        }
    }
    // Defaults are not errors.
    cg.apply(&res(r#"{"memory": {"disableOOMKiller": false, "kernel": 0}, "cpu": {"realtimeRuntime": 0}}"#))
        .expect("defaults");
    let e = cg.apply(&res(r#"{"memory": {"swap": 1000}}"#)).expect_err("swap without limit");
    assert!(e.to_string().contains("memory.swap"), "{e}");
    // No processes in a directory tree: delete removes both levels.
    unpopulate(&cg);
    cg.delete().expect("delete");
    assert!(!t.0.join("karton").exists());
}

#[test]
fn v2_update_rolls_back() {
    let (t, host) = tree("upd");
    let cg = Cgroup::create(&host, Some("/pod/c2"), "c2").expect("create");
    populate(&cg);
    let d = cg.v2_dir().expect("v2").to_path_buf();
    cg.apply(&res(r#"{"memory": {"limit": 1000000}, "pids": {"limit": 10}}"#)).expect("apply");
    // io.max that reads but cannot be written (a link to /proc/version): the write fails
    // after memory and pids were written, so both must come back.
    fs::remove_file(d.join("io.max")).expect("rm io.max");
    std::os::unix::fs::symlink("/proc/version", d.join("io.max")).expect("symlink io.max");
    let e = cg
        .update(&res(r#"{"memory": {"limit": 2000000}, "pids": {"limit": 20},
                        "blockIO": {"throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 5}]}}"#))
        .expect_err("update");
    assert!(matches!(e, Error::RolledBack(_)), "{e}");
    assert_eq!(read(&d, "memory.max"), "1000000");
    assert_eq!(read(&d, "pids.max"), "10");
    fs::remove_file(d.join("io.max")).expect("rm io.max link");
    fs::write(d.join("io.max"), "").expect("io.max");
    cg.update(&res(r#"{"pids": {"limit": 20}, "cpu": {"period": 50000}}"#)).expect("update");
    assert_eq!(read(&d, "pids.max"), "20");
    assert_eq!(read(&d, "cpu.max"), "max 50000");
    unpopulate(&cg);
    cg.delete().expect("delete");
    drop(t);
}

#[test]
fn pure_v1_rejects_unified_and_hybrid_named_only() {
    let root = std::env::temp_dir().join(format!("karton-test-drv-{}-v1", std::process::id()));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("pids")).expect("mkdir");
    let t = Tree(root.clone());
    let host = Host::new(
        Layout::V1,
        vec![V1Mount { mount_point: root.join("pids"), root: "/".into(), controllers: vec!["pids".into()] }],
        None,
    );
    let cg = Cgroup::create(&host, Some("x"), "x").expect("create");
    assert_eq!(cg.path(), "/karton/x");
    assert!(cg.v2_dir().is_none());
    match cg.apply(&res(r#"{"unified": {"pids.max": "5"}}"#)) {
        Err(e @ Error::Unsupported { .. }) => {
            assert!(e.to_string().contains("linux.resources.unified"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    match cg.apply(&res(r#"{"memory": {"limit": 5000000}}"#)) {
        Err(e @ Error::Unsupported { .. }) => {
            assert!(e.to_string().contains("linux.resources.memory.limit"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    cg.delete().expect("delete");
    drop(t);
}

#[test]
fn leftover_under_karton_is_adopted_elsewhere_not() {
    let (t, host) = tree("adopt");
    fs::create_dir_all(t.0.join("karton/left")).expect("leftover");
    fs::create_dir_all(t.0.join("karton/other")).expect("another container");
    fs::create_dir_all(t.0.join("theirs/x")).expect("foreign");
    let a = Cgroup::create(&host, None, "left").expect("create");
    assert_eq!(a.created(), &[t.0.join("karton/left")]);
    a.delete().expect("delete");
    assert!(!t.0.join("karton/left").exists());
    assert!(t.0.join("karton").exists(), "the shared /karton parent stays while it holds containers");
    fs::remove_dir(t.0.join("karton/other")).expect("rmdir other");
    let c = Cgroup::create(&host, None, "last").expect("create");
    c.delete().expect("delete");
    assert!(!t.0.join("karton").exists(), "the last container out removes the empty shared /karton parent");
    let b = Cgroup::create(&host, Some("/theirs/x"), "x").expect("create");
    assert!(b.created().is_empty());
    b.delete().expect("delete");
    assert!(t.0.join("theirs/x").exists(), "removed a cgroup it did not create");
}
