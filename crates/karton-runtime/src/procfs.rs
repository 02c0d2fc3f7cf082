//! What the runtime reads from /proc about its containers' processes.

/// The start time of `pid` (clock ticks since boot, field 22 of /proc/PID/stat).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The one-letter state of `pid` (R, S, D, Z, T, ...).
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// Whether `pid` is on its way out: a zombie, exiting (PF_EXITING in the stat flags), or
/// with a SIGKILL queued that it has not acted on yet. Between `kill -9` and the zombie
/// state the process still reads as alive (state R/S/D) for a while: an init of a pid
/// namespace first waits for every process of its namespace to die.
pub fn is_dying(pid: i32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let Some(rest) = stat.rfind(')').and_then(|i| stat.get(i + 2..)) else { return false };
    let mut fields = rest.split(' ');
    let state = fields.next().and_then(|s| s.chars().next());
    if matches!(state, Some('Z' | 'X')) {
        return true;
    }
    // Fields after the state: ppid pgrp session tty_nr tpgid flags.
    if fields.nth(5).and_then(|f| f.parse::<u64>().ok()).is_some_and(|f| f & PF_EXITING != 0) {
        return true;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return false };
    let sigkill = 1u64 << (libc::SIGKILL - 1);
    status.lines().any(|l| {
        let mask = l.strip_prefix("SigPnd:").or_else(|| l.strip_prefix("ShdPnd:"));
        mask.and_then(|m| u64::from_str_radix(m.trim(), 16).ok()).is_some_and(|m| m & sigkill != 0)
    })
}

/// Whether `pid` is still the process that started at `start` (0: any), and not a zombie.
pub fn is_alive(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match (proc_state(pid), start_time(pid)) {
        (Some('Z') | Some('X'), _) | (None, _) | (_, None) => false,
        (Some(_), Some(t)) => start == 0 || t == start,
    }
}

/// Who holds the flock on the file `dev`:`ino`: the pid that took it (as /proc/locks
/// names it; that process may be gone) and the processes that hold its open file
/// description now (their /proc/PID/fdinfo lists the lock), which include anything that
/// inherited the descriptor through fork.
pub fn flock_holders(dev: u64, ino: u64) -> (Option<i32>, Vec<i32>) {
    let key = format!("{:02x}:{:02x}:{ino}", nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    // "1: FLOCK  ADVISORY  WRITE 1234 fe:00:5678 0 EOF"; waiters show "1: -> FLOCK ...".
    let granted = |line: &str| -> Option<i32> {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() >= 6 && f[1] == "FLOCK" && f[5] == key).then(|| f[4].parse().ok()).flatten()
    };
    let taker = std::fs::read_to_string("/proc/locks").ok().and_then(|t| t.lines().find_map(granted));
    let me = std::process::id() as i32;
    let mut holders = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let holds = std::fs::read_dir(e.path().join("fdinfo")).into_iter().flatten().flatten().any(|fd| {
            std::fs::read_to_string(fd.path()).is_ok_and(|t| {
                t.lines().filter_map(|l| l.strip_prefix("lock:")).any(|l| granted(l.trim()).is_some())
            })
        });
        if holds {
            holders.push(pid);
        }
    }
    (taker, holders)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn self_is_alive() {
        let me = std::process::id() as i32;
        let t = start_time(me).expect("own start time");
        assert!(is_alive(me, t));
        assert!(!is_alive(me, t + 1), "a different start time means a different process");
        assert!(!is_alive(-1, 0));
        assert!(!is_dying(me));
    }

    #[test]
    fn a_killed_child_is_dying_until_reaped() {
        let mut child = std::process::Command::new("sleep").arg("600").spawn().unwrap();
        let pid = child.id() as i32;
        assert!(!is_dying(pid));
        child.kill().unwrap();
        // Queued, exiting or a zombie: dying from the moment kill returns until reaped.
        for _ in 0..1000 {
            assert!(is_dying(pid));
            if proc_state(pid) == Some('Z') {
                break;
            }
        }
        child.wait().unwrap();
    }

    #[test]
    fn finds_a_flock_and_its_holder() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("karton-flock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let meta = std::fs::metadata(&dir).unwrap();
        // A child process takes the lock (this process is left out of the holders).
        let mut child =
            std::process::Command::new("flock").arg("-x").arg(&dir).args(["sleep", "10"]).spawn().unwrap();
        let pid = child.id() as i32;
        let mut found = (None, Vec::new());
        for _ in 0..500 {
            found = flock_holders(meta.dev(), meta.ino());
            if !found.1.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_dir(&dir);
        // flock(1) takes the lock, then forks sleep, which inherits the descriptor.
        assert_eq!(found.0, Some(pid), "{found:?}");
        assert!(found.1.contains(&pid), "{found:?}");
    }
}
