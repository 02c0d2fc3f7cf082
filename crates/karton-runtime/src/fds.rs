//! The descriptors a container's process inherits: 0-2, and with `--preserve-fds N` the
//! caller's fds 3 … 3+N-1, exactly those and nothing of karton's.
//!
//! The rule that makes "exactly the caller's" true: every one of those numbers must be
//! open in the caller before karton opens anything (checked first thing by the CLI, see
//! [`check_preserved`]); then no descriptor karton opens can land on them, and the ones
//! that the init holds while it sets up are moved above the range ([`relocate`]) as a
//! second line of defence for library callers. runc passes whatever sits at those numbers;
//! karton refuses a range the caller does not hold (CVE-2024-21626 class: a leaked
//! directory fd is a way out of the container's root).

use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Context, Error, Result};

/// The first number above the preserved range.
pub fn first_free(preserve_fds: u32) -> i32 {
    3i32.saturating_add(preserve_fds.min(i32::MAX as u32 - 3) as i32)
}

/// Refuses `--preserve-fds N` unless each of the fds 3 … 3+N-1 is open in this process.
/// Call it before opening any descriptor.
pub fn check_preserved(preserve_fds: u32) -> Result<()> {
    let end = first_free(preserve_fds);
    let missing: Vec<i32> = (3..end).filter(|fd| !karton_sys::process::fd_is_open(*fd)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = missing.iter().take(8).map(i32::to_string).collect();
    let more = if missing.len() > 8 { format!(" and {} more", missing.len() - 8) } else { String::new() };
    Err(Error::Config(format!(
        "--preserve-fds {preserve_fds}: fd {}{more} {} not open in the calling process, so the container would get \
         whatever karton opened there: open fds 3 to {} before calling karton, or pass a smaller --preserve-fds",
        shown.join(", "),
        if missing.len() == 1 { "is" } else { "are" },
        end - 1
    )))
}

/// Moves `fd` to a number ≥ `min` (close-on-exec), unless it is there already.
pub fn relocate(fd: OwnedFd, min: i32) -> Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    if fd.as_raw_fd() >= min {
        return Ok(fd);
    }
    let raw = nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min))
        .ctx(|| format!("moving a descriptor above the --preserve-fds range (to {min} or higher)"))?;
    // The new descriptor is ours alone: wrap it so it closes with its owner.
    let new = karton_sys::process::inherited_fd(raw)
        .ok_or_else(|| Error::Init(format!("fcntl(F_DUPFD_CLOEXEC) returned fd {raw}, which is not open")))?;
    drop(fd);
    Ok(new)
}

/// In the container's process, right before execve: the preserved fds survive execve,
/// everything else above 2 is close-on-exec.
pub fn seal(preserve_fds: u32) -> Result<()> {
    let end = first_free(preserve_fds);
    for fd in 3..end {
        karton_sys::process::set_inheritable(fd)
            .ctx(|| format!("--preserve-fds: keeping fd {fd} open for the container"))?;
    }
    karton_sys::process::close_range(end as u32, u32::MAX, karton_sys::process::CLOSE_RANGE_CLOEXEC)
        .ctx(|| "close_range: marking karton's descriptors close-on-exec".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_bounds() {
        assert_eq!(first_free(0), 3);
        assert_eq!(first_free(5), 8);
        assert!(first_free(u32::MAX) > 3);
    }

    #[test]
    fn unheld_numbers_are_refused_with_their_numbers() {
        // Far above anything the test harness holds.
        let err = check_preserved(100_000).unwrap_err().to_string();
        assert!(err.contains("--preserve-fds 100000"), "{err}");
        assert!(err.contains("and "), "{err}");
        assert!(check_preserved(0).is_ok());
    }
}
