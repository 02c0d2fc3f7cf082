//! Mount options through the real kernel: every option of config.json `mounts[i].options`
//! is either honoured (checked in /proc/self/mountinfo inside the container) or refused
//! before anything is created.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use karton_sys::mountinfo::MountInfo;
use serde_json::{json, Value};

/// Runs the bundle with `cat /proc/self/mountinfo` and parses what the container sees.
fn container_mounts(k: &Karton, b: &mut Bundle) -> Vec<MountInfo> {
    b.sh("cat /proc/self/mountinfo");
    let out = k.stdout_of(b);
    karton_sys::mountinfo::parse(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn at<'a>(mounts: &'a [MountInfo], path: &str) -> &'a MountInfo {
    // The last mount on a path is the visible one.
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == Path::new(path))
        .unwrap_or_else(|| panic!("no mount at {path} in {mounts:#?}"))
}

/// The atime mode mountinfo shows: "noatime", "relatime" or (neither) "strictatime".
fn atime(m: &MountInfo) -> &'static str {
    if m.has_mount_opt("noatime") {
        "noatime"
    } else if m.has_mount_opt("relatime") {
        "relatime"
    } else {
        "strictatime"
    }
}

/// The 1-based line of the `nth` (0-based) line of the written config.json holding `needle`.
fn line_of(b: &Bundle, needle: &str, nth: usize) -> usize {
    let text = std::fs::read_to_string(b.path().join("config.json")).unwrap();
    text.lines().enumerate().filter(|(_, l)| l.contains(needle)).nth(nth).map(|(i, _)| i + 1).unwrap()
}

fn push_mount(b: &mut Bundle, m: Value) -> usize {
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(m);
    mounts.len() - 1
}

/// A host directory with two submounts, made inside a private mount namespace so that
/// nothing is ever mounted on the host: `karton` runs in that namespace too.
///   SRC            (a directory of the host's /tmp: relatime)
///   SRC/sub        tmpfs, strictatime
///   SRC/sub/deep   tmpfs, noatime,nodiratime
/// Each test's atime option changes at least one of the three.
struct Nested {
    src: TempDir,
}

impl Nested {
    fn new() -> Nested {
        let src = TempDir::new("karton-test-nested");
        std::fs::create_dir_all(src.path().join("sub")).unwrap();
        Nested { src }
    }

    /// `karton run` of the bundle inside a private mount namespace that has the submounts.
    fn run(&self, k: &Karton, b: &Bundle) -> (i32, String, String) {
        b.write();
        let id = unique("nested");
        let s = self.src.path().display();
        let script = format!(
            "set -e; mount -t tmpfs -o strictatime,size=1m tmpfs '{s}/sub'; mkdir '{s}/sub/deep'; \
             mount -t tmpfs -o noatime,nodiratime,size=1m tmpfs '{s}/sub/deep'; \
             exec \"$0\" --root \"$1\" run --bundle \"$2\" \"$3\""
        );
        let out = k.run_cmd(
            Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]).args([
                Path::new(KARTON),
                k.root.path(),
                b.path(),
                Path::new(&id),
            ]),
        );
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The container's mounts at /data, /data/sub, /data/sub/deep with `options` on the rbind.
    fn mounts(&self, k: &Karton, options: &[&str]) -> [MountInfo; 3] {
        let mut b = Bundle::new();
        let mut opts = vec!["rbind"];
        opts.extend_from_slice(options);
        push_mount(
            &mut b,
            json!({"destination": "/data", "type": "bind", "source": self.src.path(), "options": opts}),
        );
        b.sh("cat /proc/self/mountinfo");
        let (code, out, err) = self.run(k, &b);
        assert_eq!(code, 0, "{options:?}: stdout={out} stderr={err}");
        let mi = karton_sys::mountinfo::parse(&out).unwrap();
        [at(&mi, "/data").clone(), at(&mi, "/data/sub").clone(), at(&mi, "/data/sub/deep").clone()]
    }
}

// runtime-spec runtime.md, "create": a property of config.json the runtime cannot apply
// as configured must produce an error, and no container may be created. A misspelt
// `nosuid` that silently leaves a mount suid is such a property (config.md, mounts.options).
#[test]
fn misspelt_option_is_refused_before_anything_is_created() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let src = TempDir::new("karton-test-bindsrc");
    let mut b = Bundle::new();
    let i = push_mount(
        &mut b,
        json!({"destination": "/data", "type": "bind", "source": src.path(), "options": ["rbind", "nosiud", "nodev"]}),
    );
    b.write();
    let id = unique("typo");
    let out = k.run(&["run", "--bundle", b.path().to_str().unwrap(), &id]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a typo must be refused");
    let want = format!("mounts[{i}] (/data) (line {}): ", line_of(&b, "\"nosiud\"", 0));
    assert!(err.contains(&want), "{err:?} should name {want:?}");
    assert!(err.contains(r#"unknown option "nosiud": did you mean "nosuid"?"#), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err:?}");
    assert_eq!(std::fs::read_dir(k.root.path()).unwrap().count(), 0, "state left under --root");
    assert!(cgroup_dirs_named(&id).is_empty(), "a cgroup was created");

    // Filesystem data on a bind mount would be dropped by the kernel: refused too.
    // "mode=755" is also in /dev's options: the line named is the one of this mount.
    b.config["mounts"][i]["options"] = json!(["rbind", "mode=755"]);
    let (code, _, err) = k.run_bundle(&b);
    assert_ne!(code, 0);
    let want = format!("mounts[{i}] (/data) (line {}): ", line_of(&b, "\"mode=755\"", 1));
    assert!(err.contains(&want) && err.contains("takes no filesystem data"), "{err:?} should name {want:?}");
    // An option karton cannot honour is refused by name, not ignored.
    b.config["mounts"][i]["options"] = json!(["rbind", "idmap"]);
    let (code, _, err) = k.run_bundle(&b);
    assert_ne!(code, 0);
    assert!(err.contains(r#""idmap" is not supported"#), "{err}");
    // A bare word a tmpfs does not take.
    let mut b = Bundle::new();
    let i = push_mount(
        &mut b,
        json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["noexce"]}),
    );
    let (code, _, err) = k.run_bundle(&b);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("mounts[{i}] (/t)")) && err.contains(r#"did you mean "noexec""#), "{err}");
    assert_eq!(std::fs::read_dir(k.root.path()).unwrap().count(), 0, "state left under --root");
}

// config.md, mounts.options: "ro", "nosuid", "nodev", "noexec" (mount(8) filesystem-
// independent options) must take effect on the mount, for a bind and for a new filesystem.
#[test]
fn flags_take_effect() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let src = TempDir::new("karton-test-bindsrc");
    let mut b = Bundle::new();
    push_mount(
        &mut b,
        json!({"destination": "/bound", "type": "bind", "source": src.path(), "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/fresh", "type": "tmpfs", "source": "tmpfs", "options": ["ro", "nosuid", "nodev", "noexec"]}),
    );
    push_mount(
        &mut b,
        json!({"destination": "/plain", "type": "bind", "source": src.path(), "options": ["bind", "rw", "suid", "dev", "exec"]}),
    );
    // Space, tab and backslash in both paths: mountinfo escapes them, the parser undoes it.
    let odd = src.path().join("a dir\twith\\odd name");
    std::fs::create_dir_all(&odd).unwrap();
    push_mount(
        &mut b,
        json!({"destination": "/odd \t\\dest", "type": "bind", "source": odd, "options": ["bind", "nosuid"]}),
    );
    let mi = container_mounts(&k, &mut b);
    let m = at(&mi, "/odd \t\\dest");
    assert!(m.has_mount_opt("nosuid"), "{}", m.options);
    assert!(m.root.ends_with("a dir\twith\\odd name"), "root {:?}", m.root);
    for p in ["/bound", "/fresh"] {
        let m = at(&mi, p);
        for o in ["ro", "nosuid", "nodev", "noexec"] {
            assert!(m.has_mount_opt(o), "{p}: {o} missing in {}", m.options);
        }
    }
    let plain = at(&mi, "/plain");
    assert!(plain.has_mount_opt("rw"), "{}", plain.options);
    for o in ["nosuid", "nodev", "noexec"] {
        assert!(!plain.has_mount_opt(o), "/plain: {o} set in {}", plain.options);
    }
}

// config.md, mounts.options: "relatime", "noatime", "strictatime", "norelatime", "atime",
// "nodiratime" (mount(8)) set the atime mode of the mount itself; on an rbind they do not
// reach the submounts (only the "r"-prefixed ones do).
#[test]
fn atime_options_on_the_mount_itself() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let n = Nested::new();
    for (opt, want) in [
        ("noatime", "noatime"),
        ("strictatime", "strictatime"),
        ("norelatime", "strictatime"),
        ("relatime", "relatime"),
        ("atime", "relatime"),
    ] {
        let [top, sub, deep] = n.mounts(&k, &[opt]);
        assert_eq!(atime(&top), want, "{opt}: /data is {}", top.options);
        assert_eq!(atime(&sub), "strictatime", "{opt}: /data/sub changed: {}", sub.options);
        assert_eq!(atime(&deep), "noatime", "{opt}: /data/sub/deep changed: {}", deep.options);
    }
    let [top, sub, _] = n.mounts(&k, &["nodiratime"]);
    assert!(
        top.has_mount_opt("nodiratime") && !sub.has_mount_opt("nodiratime"),
        "{} / {}",
        top.options,
        sub.options
    );

    // A new filesystem gets its atime mode at fsmount.
    let mut b = Bundle::new();
    for (i, o) in ["noatime", "strictatime", "relatime", "nodiratime"].iter().enumerate() {
        push_mount(
            &mut b,
            json!({"destination": format!("/t{i}"), "type": "tmpfs", "source": "tmpfs", "options": [o]}),
        );
    }
    let mi = container_mounts(&k, &mut b);
    assert_eq!(atime(at(&mi, "/t0")), "noatime");
    assert_eq!(atime(at(&mi, "/t1")), "strictatime");
    assert_eq!(atime(at(&mi, "/t2")), "relatime");
    assert!(at(&mi, "/t3").has_mount_opt("nodiratime"));
}

// config.md, mounts.options (Linux): rro, rrw, rnosuid, rsuid, rnodev, rdev, rnoexec, rexec,
// rnodiratime, rdiratime, rrelatime, rnorelatime, rnoatime, ratime, rstrictatime,
// rnostrictatime, rnosymfollow, rsymfollow are recursive mount attributes, applied with
// mount_setattr(2) AT_RECURSIVE: every submount must end in the mode the option asks for.
#[test]
fn recursive_atime_reaches_every_submount() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let n = Nested::new();
    for (opt, want) in [
        ("rnoatime", "noatime"),
        ("rstrictatime", "strictatime"),
        ("rnorelatime", "strictatime"),
        ("rrelatime", "relatime"),
        ("ratime", "relatime"),
        ("rnostrictatime", "relatime"),
    ] {
        let mounts = n.mounts(&k, &[opt]);
        for m in &mounts {
            assert_eq!(atime(m), want, "{opt}: {} is {}", m.mount_point.display(), m.options);
        }
    }
    // nodiratime is a separate bit: the atime modes stay as they were.
    let [top, sub, deep] = n.mounts(&k, &["rnodiratime"]);
    for m in [&top, &sub, &deep] {
        assert!(m.has_mount_opt("nodiratime"), "rnodiratime: {} is {}", m.mount_point.display(), m.options);
    }
    assert_eq!((atime(&top), atime(&sub), atime(&deep)), ("relatime", "strictatime", "noatime"));
    let mounts = n.mounts(&k, &["rdiratime"]);
    for m in &mounts {
        assert!(!m.has_mount_opt("nodiratime"), "rdiratime: {} is {}", m.mount_point.display(), m.options);
    }
    // The same for the other recursive attributes, and a later option wins.
    let mounts = n.mounts(&k, &["rro", "rnosuid", "rnodev", "rnoexec", "rnosymfollow"]);
    for m in &mounts {
        for o in ["ro", "nosuid", "nodev", "noexec", "nosymfollow"] {
            assert!(m.has_mount_opt(o), "{o}: {} is {}", m.mount_point.display(), m.options);
        }
    }
    let mounts = n.mounts(&k, &["rnoatime", "rstrictatime"]);
    for m in &mounts {
        assert_eq!(
            atime(m),
            "strictatime",
            "rnoatime then rstrictatime: {} is {}",
            m.mount_point.display(),
            m.options
        );
    }
}

// config.md, mounts.options: options that are not mount(8) flags are "filesystem-specific
// data" passed to the filesystem (runc spec's tmpfs "mode=755", "size=65536k"; devpts
// "newinstance", "ptmxmode=0666", "mode=0620", "gid=5").
#[test]
fn filesystem_data_reaches_the_filesystem() {
    if !can_run() {
        return;
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    push_mount(
        &mut b,
        json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m", "mode=710", "nr_inodes=64", "noswap"]}),
    );
    let mi = container_mounts(&k, &mut b);
    let s = at(&mi, "/scratch");
    for o in ["size=1024k", "mode=710", "nr_inodes=64", "noswap"] {
        assert!(s.super_opts().any(|x| x == o), "/scratch: {o} missing in {}", s.super_options);
    }
    let pts = at(&mi, "/dev/pts");
    for o in ["gid=5", "mode=620", "ptmxmode=666"] {
        assert!(pts.super_opts().any(|x| x == o), "/dev/pts: {o} missing in {}", pts.super_options);
    }
    let dev = at(&mi, "/dev");
    assert!(
        dev.super_opts().any(|x| x == "size=65536k") && dev.super_opts().any(|x| x == "mode=755"),
        "{}",
        dev.super_options
    );
    assert_eq!(atime(dev), "strictatime", "{}", dev.options);
}

// proc_pid_mountinfo(5): "mount point ... escaped (\040 for space)". The runtime reads the
// host's cgroup mounts from mountinfo to bind the container's cgroups at /sys/fs/cgroup
// (config.md "cgroup" mounts / runtime-spec linux.md "cgroups"); a hierarchy whose mount
// point has a space must still be found. The test puts one there inside a private mount
// namespace: the host's hierarchies, bound again under new names, no new hierarchy.
#[test]
fn cgroup_hierarchy_with_a_space_in_its_mount_point() {
    if !can_run() {
        return;
    }
    if !Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        return karton_testkit::skip("needs the cgroup v1 memory hierarchy at /sys/fs/cgroup/memory");
    }
    let k = Karton::new();
    let mut b = Bundle::new();
    // Without a cgroup namespace the runtime binds the container's own cgroup directory of
    // each hierarchy, found by matching mountinfo's mount points.
    b.config["linux"]["namespaces"] =
        json!([{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]);
    b.config["linux"]["resources"]["memory"] = json!({"limit": 33554432});
    b.sh("ls /sys/fs/cgroup; cat '/sys/fs/cgroup/mem ory/memory.limit_in_bytes'");
    b.write();
    let scratch = TempDir::new("karton-test-cgscratch");
    let id = unique("cgspace");
    let script = "set -e; S=\"$4\"; mount -t tmpfs -o size=1m,mode=755 tmpfs \"$S\"; \
        for d in /sys/fs/cgroup/*; do n=${d##*/}; [ \"$n\" = memory ] && n='mem ory'; \
        if mountpoint -q \"$d\"; then mkdir \"$S/$n\"; mount --bind \"$d\" \"$S/$n\"; fi; done; \
        umount -R /sys/fs/cgroup; mount --move \"$S\" /sys/fs/cgroup; \
        exec \"$0\" --root \"$1\" run --bundle \"$2\" \"$3\"";
    let out = k.run_cmd(
        Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", script]).args([
            PathBuf::from(KARTON),
            k.root.path().to_path_buf(),
            b.path().to_path_buf(),
            PathBuf::from(&id),
            scratch.path().to_path_buf(),
        ]),
    );
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "stdout={stdout} stderr={stderr}");
    assert!(stdout.lines().any(|l| l == "mem ory"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "33554432"), "the container's own memory cgroup is bound: {stdout}");
    assert!(cgroup_dirs_named(&id).is_empty(), "cgroups removed");
}
