//! OCI hooks: run with the container state on stdin, the hook's env and args, and its
//! timeout. The caller decides what a failure means (abort or warn).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Runs each hook in order; stops at the first failure.
pub fn run_all(kind: &str, hooks: &[Hook], state_json: &str) -> Result<()> {
    for (i, h) in hooks.iter().enumerate() {
        run_one(kind, i, h, state_json)?;
    }
    Ok(())
}

/// A sealed-size anonymous file holding `text`, positioned at its start.
fn state_file(text: &str) -> std::io::Result<std::fs::File> {
    use std::io::{Seek, SeekFrom};
    let fd = nix::sys::memfd::memfd_create(c"karton-hook-state", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(text.as_bytes())?;
    f.seek(SeekFrom::Start(0))?;
    Ok(f)
}

fn run_one(kind: &str, index: usize, h: &Hook, state_json: &str) -> Result<()> {
    let path = h.path();
    let name = format!("{kind} hook {index} ({})", path.display());
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(path);
    if let Some(argv0) = args.first() {
        cmd.arg0(argv0);
    }
    cmd.args(args.iter().skip(1));
    cmd.env_clear();
    for kv in h.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    // The state comes from a memory file, not a pipe: a hook that exits without reading
    // its stdin can then neither block us nor kill us with SIGPIPE.
    cmd.stdin(Stdio::from(state_file(state_json).map_err(|e| Error::Hook(format!("{name}: preparing its stdin: {e}")))?))
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| Error::Hook(format!("{name}: cannot start: {e}: check the hook path")))?;
    let deadline = h.timeout().filter(|t| *t > 0).map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if status.success() {
                    return Ok(());
                }
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let err = err.trim();
                let detail = if err.is_empty() { String::new() } else { format!(": {err}") };
                return Err(Error::Hook(format!("{name} failed with {status}{detail}")));
            }
            Ok(None) => {}
            Err(e) => return Err(Error::Hook(format!("{name}: waiting: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::Hook(format!(
                "{name} timed out after {} s: raise its timeout or fix the hook",
                h.timeout().unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
