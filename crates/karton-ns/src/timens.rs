//! Time namespace offsets (/proc/PID/timens_offsets).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{NsError, Result};

/// The offset of one clock in a time namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeOffset {
    /// `monotonic` or `boottime`.
    pub clock: String,
    pub secs: i64,
    pub nanos: i64,
}

/// Parses `<clock> <secs> <nanos>` lines. The kernel prints names; it also accepts the
/// clock ids 1 (monotonic) and 7 (boottime) on write, which are normalised here.
pub fn parse(text: &str, path: &Path) -> Result<Vec<TimeOffset>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let bad = |r: &str| NsError::Parse { path: path.into(), line: line.into(), reason: r.into() };
            let f: Vec<&str> = line.split_whitespace().collect();
            let [clock, secs, nanos] = f[..] else { return Err(bad("expected: clock secs nanos")) };
            let clock = match clock {
                "1" => "monotonic",
                "7" => "boottime",
                c => c,
            };
            Ok(TimeOffset {
                clock: clock.to_string(),
                secs: secs.parse().map_err(|_| bad("seconds are not an integer"))?,
                nanos: nanos.parse().map_err(|_| bad("nanoseconds are not an integer"))?,
            })
        })
        .collect()
}

/// The offsets of the time namespace of `pid`'s children (the file shows
/// time_for_children, which equals the process's own once it has entered it).
pub fn of_pid(pid: i32) -> Result<Vec<TimeOffset>> {
    let path = PathBuf::from(format!("/proc/{pid}/timens_offsets"));
    let text = std::fs::read_to_string(&path).map_err(|e| NsError::from_proc_io(pid, &path, e))?;
    parse(&text, &path)
}

/// The text to write into /proc/PID/timens_offsets before the first process enters the
/// namespace.
pub fn to_proc_string(offsets: &[TimeOffset]) -> String {
    offsets.iter().map(|o| format!("{} {} {}\n", o.clock, o.secs, o.nanos)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_offsets() {
        let v = parse("monotonic           0         0\nboottime        -5    100\n", Path::new("t"))
            .expect("test value");
        assert_eq!(v[1], TimeOffset { clock: "boottime".into(), secs: -5, nanos: 100 });
        assert_eq!(to_proc_string(&v), "monotonic 0 0\nboottime -5 100\n");
        assert!(parse("monotonic x 0", Path::new("t")).is_err());
        assert_eq!(parse("1 3 0", Path::new("t")).expect("test value")[0].clock, "monotonic");
    }
}
