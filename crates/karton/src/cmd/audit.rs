//! `karton audit` (placeholder until its owner fills it in).

use clap::Args;

#[derive(Debug, Args)]
pub struct AuditArgs {}

pub fn run(_args: AuditArgs, _g: &crate::Global) -> anyhow::Result<i32> {
    anyhow::bail!("karton audit: not built yet")
}
