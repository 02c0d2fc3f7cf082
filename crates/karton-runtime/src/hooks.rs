//! OCI hooks: run with the container state on stdin, the hook's env and args, and its
//! timeout. The caller decides what a failure means (abort or warn).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};

/// Runs every hook in order whatever each one does, logging failures as warnings (the
/// spec's rule for poststart and poststop: "the runtime MUST log a warning, but the
/// remaining hooks and lifecycle continue").
pub fn run_all_warn(kind: &str, hooks: &[Hook], state_json: &str) {
    for (i, h) in hooks.iter().enumerate() {
        if let Err(e) = run_one(kind, i, h, state_json) {
            tracing::warn!("{e}");
        }
    }
}

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

/// The last `max` bytes a hook wrote to its stderr file, for the error message.
fn tail(f: &mut std::fs::File, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(max);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_ok() {
        let _ = f.take(max).read_to_end(&mut buf);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    if from > 0 {
        format!("…{text}")
    } else {
        text
    }
}

fn run_one(kind: &str, index: usize, h: &Hook, state_json: &str) -> Result<()> {
    let name = format!("{kind} hook {index} ({})", h.path().display());
    let mut cmd = hook_command(h);
    // The state comes from a memory file, not a pipe: a hook that exits without reading
    // its stdin can then neither block us nor kill us with SIGPIPE. Its stderr goes to a
    // memory file too: a hook may write any amount without ever blocking on us.
    let mut stderr = state_file("").map_err(|e| Error::Hook(format!("{name}: preparing its stderr: {e}")))?;
    let stderr_for_child =
        stderr.try_clone().map_err(|e| Error::Hook(format!("{name}: preparing its stderr: {e}")))?;
    cmd.stdin(Stdio::from(
        state_file(state_json).map_err(|e| Error::Hook(format!("{name}: preparing its stdin: {e}")))?,
    ))
    .stdout(Stdio::inherit())
    .stderr(Stdio::from(stderr_for_child));
    let child =
        cmd.spawn().map_err(|e| Error::Hook(format!("{name}: cannot start: {e}: check the hook path")))?;
    wait_hook(child, &mut stderr, &name, h.timeout())
}

/// The hook's command: its path, argv (args[0] as argv[0]) and only its own env.
fn hook_command(h: &Hook) -> Command {
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(h.path());
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
    cmd
}

/// Waits for the hook to exit, killing it at its timeout (seconds; none if not > 0). A
/// failure quotes the end of what it wrote to `stderr`.
fn wait_hook(mut child: Child, stderr: &mut std::fs::File, name: &str, timeout: Option<i64>) -> Result<()> {
    let deadline = timeout.filter(|t| *t > 0).map(|t| Instant::now() + Duration::from_secs(t as u64));
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if status.success() {
                    return Ok(());
                }
                let err = tail(stderr, 4096);
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
                timeout.unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_command_has_only_the_hooks_args_and_env() {
        let h: Hook = serde_json::from_str(
            r#"{"path": "/bin/hook", "args": ["hook", "-x"], "env": ["A=1", "BROKEN"]}"#,
        )
        .unwrap_or_else(|e| panic!("test hook does not parse: {e}"));
        let cmd = hook_command(&h);
        assert_eq!(cmd.get_program(), "/bin/hook");
        assert_eq!(cmd.get_args().collect::<Vec<_>>(), ["-x"]);
        let envs: Vec<_> = cmd.get_envs().filter_map(|(k, v)| Some((k.to_str()?, v?.to_str()?))).collect();
        assert_eq!(envs, [("A", "1")]);
    }
}
