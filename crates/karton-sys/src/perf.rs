//! perf_event_open(2) for software sampling events (cpu-clock), used by karton-probe to
//! drive a BPF perf_event program. Hardware counters are not offered: the machines karton
//! is measured on do not support them.

use std::os::fd::{FromRawFd, OwnedFd};

use crate::{check, Result};

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_CPU_CLOCK: u64 = 0;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
/// attr.freq: sample_period holds a frequency in Hz.
const ATTR_FLAG_FREQ: u64 = 1 << 10;

/// The first published layout of `struct perf_event_attr` (PERF_ATTR_SIZE_VER0); the kernel
/// accepts it and zero-fills the newer fields.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttrV0 {
    type_: u32,
    size: u32,
    config: u64,
    sample_period_or_freq: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

/// Opens a cpu-clock sampling event on `cpu` for every task (pid = -1) at `freq_hz`.
/// Needs CAP_PERFMON (or CAP_SYS_ADMIN). The event is enabled at once; the returned fd
/// is what a BPF perf_event program is attached to.
pub fn cpu_clock_sampler(cpu: u32, freq_hz: u64) -> Result<OwnedFd> {
    let attr = PerfEventAttrV0 {
        type_: PERF_TYPE_SOFTWARE,
        size: std::mem::size_of::<PerfEventAttrV0>() as u32,
        config: PERF_COUNT_SW_CPU_CLOCK,
        sample_period_or_freq: freq_hz,
        flags: ATTR_FLAG_FREQ,
        ..Default::default()
    };
    // SAFETY: `attr` is a valid, initialized perf_event_attr of the size it declares and
    // outlives the call; the other arguments are integers. The kernel returns a new fd or -1.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttrV0,
            -1 as libc::pid_t,
            cpu as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    let fd = check("perf_event_open", ret)?;
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
