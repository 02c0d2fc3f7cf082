//! Names of the kernel's numbers: system calls, CLONE_NEW* flags and softirq vectors.

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

/// The softirq vectors in number order, as /proc/softirqs and the irq:softirq_entry
/// tracepoint name them (include/linux/interrupt.h, stable since Linux 4.x).
pub const SOFTIRQ_NAMES: [&str; 10] =
    ["HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU"];

/// The name of softirq vector `vec`; `VEC_N` for a number beyond the known ones.
pub fn softirq_name(vec: u32) -> String {
    usize::try_from(vec)
        .ok()
        .and_then(|i| SOFTIRQ_NAMES.get(i))
        .map(|n| n.to_string())
        .unwrap_or_else(|| format!("VEC_{vec}"))
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

    #[test]
    fn softirq_names_follow_the_vector_numbers() {
        assert_eq!(softirq_name(2), "NET_TX");
        assert_eq!(softirq_name(3), "NET_RX");
        assert_eq!(softirq_name(9), "RCU");
        assert_eq!(softirq_name(10), "VEC_10");
    }
}
