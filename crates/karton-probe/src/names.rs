//! Names of the kernel's numbers: system calls and CLONE_NEW* flags.

/// The name of system call `nr` on this machine's architecture, from libseccomp's tables;
/// `syscall_NR` for a number libseccomp does not know.
pub fn syscall_name(nr: u32) -> String {
    i32::try_from(nr)
        .ok()
        .and_then(|n| libseccomp::ScmpSyscall::from(n).get_name_by_arch(libseccomp::ScmpArch::Native).ok())
        .unwrap_or_else(|| format!("syscall_{nr}"))
}

const NS_FLAGS: [(u32, &str); 8] = [
    (0x0002_0000, "mnt"),
    (0x0200_0000, "cgroup"),
    (0x0400_0000, "uts"),
    (0x0800_0000, "ipc"),
    (0x1000_0000, "user"),
    (0x2000_0000, "pid"),
    (0x4000_0000, "net"),
    (0x0000_0080, "time"),
];

/// Namespace names of a CLONE_NEW* mask.
pub fn ns_names(flags: u32) -> Vec<String> {
    NS_FLAGS.iter().filter(|(b, _)| flags & b != 0).map(|(_, n)| n.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_names_come_from_libseccomp_and_unknown_numbers_stay_numbers() {
        let getppid = libseccomp::ScmpSyscall::from_name("getppid").expect("test value");
        assert_eq!(syscall_name(getppid.as_raw_syscall() as u32), "getppid");
        assert_eq!(syscall_name(100_000), "syscall_100000");
        assert_eq!(syscall_name(u32::MAX), "syscall_4294967295");
    }
}
