//! `karton report` (placeholder until its owner fills it in).

use clap::Args;

#[derive(Debug, Args)]
pub struct ReportArgs {}

pub fn run(_args: ReportArgs, _g: &crate::Global) -> anyhow::Result<i32> {
    anyhow::bail!("karton report: not built yet")
}
