//! `karton workload` (placeholder until its owner fills it in).

use clap::Args;

#[derive(Debug, Args)]
pub struct WorkloadArgs {}

pub fn run(_args: WorkloadArgs, _g: &crate::Global) -> anyhow::Result<i32> {
    anyhow::bail!("karton workload: not built yet")
}
