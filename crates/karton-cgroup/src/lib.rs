//! cgroup drivers for karton: cgroup v1, v2 and hybrid hosts.
//!
//! [`Host::detect`] reads `/proc/self/mountinfo` and records where every controller is
//! mounted. [`Cgroup::create`] makes a container's cgroup in every hierarchy and remembers
//! which directories it made, so [`Cgroup::delete`] removes those and nothing else. A
//! [`Cgroup`] is plain data (paths), so it round-trips through the container's
//! `state.json` and works in any later `karton` process.
//!
//! With `--systemd-cgroup` the cgroup is a transient systemd scope ([`systemd`]): systemd
//! makes it and owns the limits it knows; the rest goes through the same cgroupfs code.
//!
//! On a hybrid host a controller is driven where it is mounted: v1 when a v1 hierarchy has
//! it, otherwise the cgroup2 (unified) hierarchy. Processes always join both.

mod cgroup;
pub mod devices;
mod error;
mod fsutil;
mod host;
mod resources;
mod stats;
pub mod systemd;

pub use cgroup::{join_v1_self, Cgroup, OomEvents, DEFAULT_PARENT};
pub use error::Error;
pub use host::{Host, Layout, V1Mount, V2Mount};
pub use resources::{blkio_weight_to_io, shares_to_weight};
pub use stats::{
    BlkioEntry, BlkioStats, CpuStats, CpuUsage, CpusetStats, HugetlbStats, MemoryEntry, MemoryStats,
    PidsStats, Stats, Throttling,
};

/// The root of the cgroup filesystems on a standard host.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
