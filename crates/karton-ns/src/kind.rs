//! The eight namespace kinds and their names in each vocabulary (OCI, /proc, CLONE_NEW*).

use std::fmt;
use std::str::FromStr;

use karton_sys::clone as c;
use serde::{Deserialize, Serialize};

/// A namespace type. The order is the order in which a runtime joins namespaces:
/// user first (it grants the capabilities needed for the rest), mount last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NsType {
    User,
    Pid,
    Net,
    Ipc,
    Uts,
    Cgroup,
    Time,
    Mnt,
}

impl NsType {
    pub const ALL: [NsType; 8] = [
        NsType::User,
        NsType::Pid,
        NsType::Net,
        NsType::Ipc,
        NsType::Uts,
        NsType::Cgroup,
        NsType::Time,
        NsType::Mnt,
    ];

    /// The CLONE_NEW* flag.
    pub fn clone_flag(self) -> u64 {
        match self {
            NsType::User => c::CLONE_NEWUSER,
            NsType::Pid => c::CLONE_NEWPID,
            NsType::Net => c::CLONE_NEWNET,
            NsType::Ipc => c::CLONE_NEWIPC,
            NsType::Uts => c::CLONE_NEWUTS,
            NsType::Cgroup => c::CLONE_NEWCGROUP,
            NsType::Time => c::CLONE_NEWTIME,
            NsType::Mnt => c::CLONE_NEWNS,
        }
    }

    pub fn from_clone_flag(flag: u64) -> Option<NsType> {
        NsType::ALL.into_iter().find(|t| t.clone_flag() == flag)
    }

    /// The file name under /proc/PID/ns/.
    pub fn proc_name(self) -> &'static str {
        match self {
            NsType::User => "user",
            NsType::Pid => "pid",
            NsType::Net => "net",
            NsType::Ipc => "ipc",
            NsType::Uts => "uts",
            NsType::Cgroup => "cgroup",
            NsType::Time => "time",
            NsType::Mnt => "mnt",
        }
    }

    /// The name in an OCI config's `linux.namespaces[].type`.
    pub fn oci_name(self) -> &'static str {
        match self {
            NsType::Net => "network",
            NsType::Mnt => "mount",
            other => other.proc_name(),
        }
    }
}

impl fmt::Display for NsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.proc_name())
    }
}

/// Parses any of the names: `net`, `network`, `mnt`, `mount`, `user`, ...
impl FromStr for NsType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        NsType::ALL.into_iter().find(|t| t.proc_name() == lower || t.oci_name() == lower).ok_or_else(|| {
            format!("unknown namespace type {s:?}: use one of user, pid, net, ipc, uts, cgroup, time, mnt")
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in NsType::ALL {
            assert_eq!(t.proc_name().parse::<NsType>(), Ok(t));
            assert_eq!(t.oci_name().parse::<NsType>(), Ok(t));
            assert_eq!(NsType::from_clone_flag(t.clone_flag()), Some(t));
        }
        assert!("bogus".parse::<NsType>().is_err());
    }
}
