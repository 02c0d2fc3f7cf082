//! linux.seccomp: compile the profile and install it as the last step before execve.

use oci_spec::runtime::LinuxSeccomp;

use crate::error::{Error, Result};

/// Checks at create time that the profile can be installed.
pub fn check(_seccomp: &LinuxSeccomp) -> Result<()> {
    Err(Error::Unsupported(
        "linux.seccomp: karton cannot install seccomp filters yet: remove linux.seccomp from config.json".into(),
    ))
}

/// Installs the filter on the calling thread.
pub fn install(seccomp: &LinuxSeccomp) -> Result<()> {
    check(seccomp)
}

/// The "seccomp" object of `karton features`.
pub fn features() -> serde_json::Value {
    serde_json::json!({"enabled": false})
}
