#![allow(clippy::unwrap_used)] // tests fail loudly by design
// Shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The karton binary: $KARTON_BIN, else the newest of target/{debug,release}/karton.
pub fn karton_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KARTON_BIN") {
        return Some(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    ["debug", "release"]
        .iter()
        .map(|p| target.join(p).join("karton"))
        .filter(|p| p.exists())
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

/// Why these tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root: containers with every namespace need root".into());
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
