//! Shared test helpers: a session with the karton binary, or a recorded skip.
//!
//! A test that cannot run here returns through `karton_testkit::skip(reason)` (directly or
//! through `session`), which prints the reason and counts it in `make test`'s summary;
//! never a bare `return`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design
#![allow(dead_code)]

pub use karton_testkit::karton_bin;

/// A session, or None after recording why the test is skipped (the caller returns).
#[track_caller]
pub fn session() -> Option<karton_audit::Session> {
    if let Some(why) = karton_testkit::karton_skip_reason() {
        karton_testkit::skip(why);
        return None;
    }
    if !std::path::Path::new("/bin/busybox").is_file() {
        karton_testkit::skip("no /bin/busybox (apt-get install busybox-static)");
        return None;
    }
    let exe = karton_bin()?;
    match karton_audit::Session::new(&exe, None) {
        Ok(s) => Some(s),
        Err(e) => {
            karton_testkit::skip(e);
            None
        }
    }
}
