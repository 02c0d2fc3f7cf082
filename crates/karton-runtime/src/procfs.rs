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
}
