//! `karton trace`: eBPF instruments on a container, a pid or a command (owned by the probe work).

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct TraceArgs {
    #[command(subcommand)]
    pub cmd: TraceCmd,
}

#[derive(Debug, Subcommand)]
pub enum TraceCmd {
    /// Trace.
    List,
}

pub fn run(_args: TraceArgs, _g: &crate::Global) -> anyhow::Result<i32> {
    anyhow::bail!("karton trace: not built yet")
}
