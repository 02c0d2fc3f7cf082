//! `karton ns`: list, tree, inspect and enter namespaces (owned by the ns work).

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct NsArgs {
    #[command(subcommand)]
    pub cmd: NsCmd,
}

#[derive(Debug, Subcommand)]
pub enum NsCmd {
    /// Every namespace on the host.
    List,
}

pub fn run(_args: NsArgs, _g: &crate::Global) -> anyhow::Result<i32> {
    anyhow::bail!("karton ns: not built yet")
}
