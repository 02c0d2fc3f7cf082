//! Test support shared by karton's crates (a dev-dependency only, never published).
//!
//! **Skips.** A test that cannot run on this host (not root, no busybox, no BTF, no cgroup2
//! mount, …) must not pass silently. It returns through [`skip`]:
//!
//! ```no_run
//! if !karton_testkit::is_root() {
//!     return karton_testkit::skip("needs root");
//! }
//! ```
//!
//! [`skip`] prints `SKIP <test>: <reason>` on stderr past libtest's capture, and appends the
//! test and the reason to the skip log ($KARTON_SKIP_LOG, default `target/test-skips.log`).
//! `make test` empties the log first and ends with `skipped: N` and the reasons
//! (scripts/skip-summary.sh). A bare `return;` at the top of a test is a silent pass: never.
//!
//! Also here: the karton binary for tests of other crates ([`karton_bin`]) and a guard that
//! deletes a container ([`Container`]), and the runner for tests that fork ([`single_thread`]).

#![allow(clippy::unwrap_used)] // test support fails loudly by design

use std::cell::RefCell;
use std::fmt::Display;
use std::io::Write;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::process::Command;

pub mod single_thread;

thread_local! {
    /// The test the single-threaded runner is running (libtest names its threads instead).
    static CURRENT_TEST: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Whether the tests run as root (most of them need real namespaces, cgroups and mounts).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The skip reason for a test that needs root, or None when it runs as root.
pub fn needs_root() -> Option<&'static str> {
    (!is_root()).then_some("needs root")
}

/// Records that the running test is skipped and why; the caller returns right after
/// (`return skip("…");`). Prints `SKIP <test>: <reason>` and appends `<test>\t<reason>` to
/// the skip log. The test is named by libtest's thread name, by the single-threaded runner,
/// or else by the caller's file and line.
#[track_caller]
pub fn skip(reason: impl Display) {
    let test = current_test().unwrap_or_else(|| {
        let at = Location::caller();
        format!("{}:{}", at.file(), at.line())
    });
    let id = format!("{}::{test}", binary_name());
    let reason = reason.to_string().replace(['\n', '\t'], " ");
    // Straight to stderr: libtest captures eprintln! and shows it only for failed tests.
    let _ = writeln!(std::io::stderr().lock(), "SKIP {id}: {reason}");
    let log = skip_log();
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // One write of one short line with O_APPEND: concurrent tests do not interleave.
    let line = format!("{id}\t{reason}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        let _ = writeln!(std::io::stderr().lock(), "SKIP log {}: {e}", log.display());
    }
}

/// The skip log: $KARTON_SKIP_LOG, else `test-skips.log` in the target directory.
pub fn skip_log() -> PathBuf {
    match std::env::var_os("KARTON_SKIP_LOG") {
        Some(p) => PathBuf::from(p),
        None => target_dir().join("test-skips.log"),
    }
}

/// The cargo target directory: $CARGO_TARGET_DIR, else the workspace's `target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

fn current_test() -> Option<String> {
    if let Some(name) = CURRENT_TEST.with(|c| c.borrow().clone()) {
        return Some(name);
    }
    // libtest runs each test on a thread named after it; "main" is no test's name.
    std::thread::current().name().filter(|n| *n != "main").map(str::to_string)
}

/// The test binary, without cargo's hash: `conformance` for target/debug/deps/conformance-1f2e….
fn binary_name() -> String {
    let exe = std::env::current_exe().ok();
    let stem = exe.as_deref().and_then(Path::file_stem).map(|s| s.to_string_lossy().into_owned());
    let stem = stem.unwrap_or_else(|| "?".into());
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => stem,
    }
}

/// The karton binary for tests outside the karton crate: $KARTON_BIN, else the newer of
/// target/{debug,release}/karton. (The karton crate's own tests use CARGO_BIN_EXE_karton.)
pub fn karton_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KARTON_BIN") {
        return Some(PathBuf::from(p));
    }
    let target = target_dir();
    ["debug", "release"]
        .iter()
        .map(|p| target.join(p).join("karton"))
        .filter(|p| p.is_file())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

/// Why tests that run containers with the karton binary cannot run here, if they cannot.
pub fn karton_skip_reason() -> Option<String> {
    if let Some(why) = needs_root() {
        return Some(format!("{why}: containers with every namespace"));
    }
    if karton_bin().is_none() {
        return Some("no karton binary: run `cargo build -p karton` first (or set KARTON_BIN)".into());
    }
    None
}

/// Force-deletes a container when dropped (the test may fail half-way).
pub struct Container<'a> {
    pub bin: &'a Path,
    pub root: &'a Path,
    pub id: String,
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let _ = Command::new(self.bin)
            .arg("--root")
            .arg(self.root)
            .args(["delete", "--force", &self.id])
            .output();
    }
}
