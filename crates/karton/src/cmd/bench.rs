//! `karton bench` (placeholder until its owner fills it in).

use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs, _g: &crate::Global) -> anyhow::Result<i32> {
    anyhow::bail!("karton bench: not built yet")
}
