//! Small helpers shared by the runtime and the binary: timestamps.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time as RFC 3339 in UTC with nanoseconds, as runc writes it.
pub fn rfc3339_now() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

/// Formats seconds since the epoch (UTC) as RFC 3339.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Formats seconds since the epoch (UTC) as RFC 3339 without a fraction, for file names
/// and reports.
pub fn rfc3339_seconds(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_795_910_400, 0), "2026-11-29T00:00:00.000000000Z");
    }
}

/// Entry points that fork (create, run, exec, spawn) refuse a multithreaded caller before
/// doing anything: forking one is unsound, and karton_sys would refuse the fork later,
/// after state and cgroups exist.
pub(crate) fn require_single_thread(what: &str) -> crate::error::Result<()> {
    match karton_sys::clone::ensure_single_threaded() {
        Ok(()) => Ok(()),
        Err(_) => {
            let n =
                karton_sys::clone::thread_count().map_or_else(|| "several".to_string(), |n| n.to_string());
            Err(crate::error::Error::Unsupported(format!(
                "{what} needs a single-threaded caller: {n} threads are running: call it from a process that has not \
                 started threads (karton's CLI does)"
            )))
        }
    }
}

#[cfg(test)]
mod thread_tests {
    #[test]
    fn entry_points_refuse_a_threaded_caller_with_the_count() {
        // libtest runs this on a thread of its own: the process has at least two.
        let rt =
            crate::Runtime::new(std::env::temp_dir().join(format!("karton-threads-{}", std::process::id())));
        let cfg = crate::config::Config::from_spec(oci_spec::runtime::Spec::default(), "test");
        let opts = crate::container::CreateOpts { bundle: std::env::temp_dir(), ..Default::default() };
        let err = match rt.create_from("threads", cfg, &opts) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("create_from forked from a threaded process"),
        };
        assert!(
            err.starts_with("create needs a single-threaded caller: ")
                && err.contains(" threads are running"),
            "{err}"
        );
        assert!(!rt.store().dir("threads").exists());
    }
}
