//! Helpers on [`NsType`] beyond its names (kept apart from `kind.rs`, which is shared).

use std::path::{Path, PathBuf};

use crate::NsType;

impl NsType {
    /// True for the two kinds that form a tree (NS_GET_PARENT answers for them only).
    pub fn is_hierarchical(self) -> bool {
        matches!(self, NsType::User | NsType::Pid)
    }

    /// `/proc/<pid>/ns/<name>`.
    pub fn proc_path(self, pid: i32) -> PathBuf {
        PathBuf::from(format!("/proc/{pid}/ns/{}", self.proc_name()))
    }

    /// Whether this kernel has the namespace kind: each kind has a /proc/self/ns link
    /// exactly when the kernel was built with it.
    pub fn is_supported(self) -> bool {
        Path::new("/proc/self/ns").join(self.proc_name()).exists()
    }

    /// The kinds this kernel has, in join order.
    pub fn supported() -> Vec<NsType> {
        NsType::ALL.into_iter().filter(|t| t.is_supported()).collect()
    }

    /// The CLONE_NEW* mask of several kinds.
    pub fn mask(types: &[NsType]) -> u64 {
        types.iter().fold(0, |m, t| m | t.clone_flag())
    }

    /// Parses the `type:[inode]` form of namespace links, fd links and nsfs mount roots.
    pub fn parse_link(s: &str) -> Option<(NsType, u64)> {
        let (name, rest) = s.split_once(":[")?;
        let ino = rest.strip_suffix(']')?.parse().ok()?;
        // Links name the kinds by their /proc name only, never the OCI one.
        let ty = NsType::ALL.into_iter().find(|t| t.proc_name() == name)?;
        Some((ty, ino))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_links() {
        assert_eq!(NsType::parse_link("uts:[4026531838]"), Some((NsType::Uts, 4026531838)));
        assert_eq!(NsType::parse_link("mnt:[1]"), Some((NsType::Mnt, 1)));
        assert_eq!(NsType::parse_link("anon_inode:[pidfd]"), None);
        assert_eq!(NsType::parse_link("pipe:[123]"), None);
        assert_eq!(NsType::parse_link("/tmp/x"), None);
        assert_eq!(
            NsType::mask(&[NsType::User, NsType::Pid]),
            NsType::User.clone_flag() | NsType::Pid.clone_flag()
        );
    }
}
