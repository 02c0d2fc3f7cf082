//! One benchmark run at a time: a second run would fight the first for the CPUs, skew
//! both, and share its network names and addresses. The lock is an flock on a file that
//! names the holder; the kernel releases it when the holder exits, however it exits.

use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::BenchError;

/// Where the lock lives: /run for root, the temporary directory otherwise.
pub fn default_path() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        PathBuf::from("/run/karton-bench.lock")
    } else {
        std::env::temp_dir().join("karton-bench.lock")
    }
}

/// Held for the whole run; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _lock: Flock<std::fs::File>,
}

impl RunLock {
    /// Takes the lock, or says which process holds it.
    pub fn acquire(path: &Path) -> Result<RunLock, BenchError> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(BenchError::io(format!("opening the run lock {}", path.display())))?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(mut l) => {
                let _ = l.set_len(0);
                let _ = writeln!(&mut *l, "{}", std::process::id());
                Ok(RunLock { _lock: l })
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let holder = std::fs::read_to_string(path).unwrap_or_default();
                Err(BenchError::Invalid(format!(
                    "another karton bench is running (pid {}, lock {}): wait for it to finish, or stop it with Ctrl-C",
                    holder.trim(),
                    path.display()
                )))
            }
            Err((_, e)) => {
                Err(BenchError::Sys { call: format!("flock({})", path.display()), source: e.into() })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_and_the_first_release_frees_it() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("lock");
        let first = RunLock::acquire(&p).unwrap();
        let e = RunLock::acquire(&p).unwrap_err().to_string();
        assert!(
            e.contains("another karton bench is running") && e.contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(first);
        RunLock::acquire(&p).unwrap();
    }
}
