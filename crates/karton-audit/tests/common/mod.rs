//! Shared test helpers: find the karton binary, skip when the host lacks something.

#![allow(clippy::unwrap_used)] // tests fail loudly by design
#![allow(dead_code)]

use std::path::PathBuf;

/// The karton binary: $KARTON_BIN, else the workspace's target/{debug,release}/karton.
pub fn karton_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KARTON_BIN").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../target"));
    ["debug", "release"].iter().map(|p| target.join(p).join("karton")).find(|p| p.is_file())
}

/// A session, or None after printing "SKIP: reason".
pub fn session(test: &str) -> Option<karton_audit::Session> {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIP: {test}: needs root");
        return None;
    }
    let Some(exe) = karton_bin() else {
        println!("SKIP: {test}: no karton binary (build it: cargo build -p karton, or set KARTON_BIN)");
        return None;
    };
    if !std::path::Path::new("/bin/busybox").is_file() {
        println!("SKIP: {test}: no /bin/busybox (apt-get install busybox-static)");
        return None;
    }
    match karton_audit::Session::new(&exe, None) {
        Ok(s) => Some(s),
        Err(e) => {
            println!("SKIP: {test}: {e}");
            None
        }
    }
}
