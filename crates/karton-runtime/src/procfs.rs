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
    }
}
