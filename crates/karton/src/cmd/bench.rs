//! `karton bench`: the namespace matrix, measured (docs/bench.md), and `karton bench compare`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use karton_bench::{compare, profile, runner, BenchResults};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Show what changed between two results files, with significance
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The earlier results (A)
    pub a: PathBuf,
    /// The later results (B)
    pub b: PathBuf,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// quick (≤ 5 minutes on 2 cores) or full (thesis-grade)
    #[arg(long, default_value = "quick")]
    pub profile: String,
    /// Directory for the results (JSON + CSV)
    #[arg(short, long, default_value = "results", value_name = "DIR")]
    pub output: PathBuf,
    /// Only these benchmarks (comma-separated: primes, syscall, ..., ns-create, lifecycle, density)
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub only: Vec<String>,
    /// Only these configurations (comma-separated; bare is always kept as the baseline)
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub configs: Vec<String>,
    /// Override the profile's rounds: minimum and maximum
    #[arg(long, value_name = "N")]
    pub min_rounds: Option<u32>,
    #[arg(long, value_name = "N")]
    pub max_rounds: Option<u32>,
    /// Scale every benchmark's time budget by this factor
    #[arg(long, value_name = "F")]
    pub budget_scale: Option<f64>,
    /// Density benchmark: numbers of containers (comma-separated; default: the profile's)
    #[arg(long, value_delimiter = ',', value_name = "N")]
    pub density_n: Vec<u32>,
    /// Density benchmark: how many start in parallel (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "P")]
    pub density_parallel: Vec<u32>,
    /// Density benchmark: the start-rate cell as N,P,REPS (default: 200,8 with the profile's repetitions)
    #[arg(long, value_delimiter = ',', value_name = "N,P,REPS")]
    pub density_rate: Vec<u32>,
    /// Skip the instrumented pass (karton-probe)
    #[arg(long)]
    pub no_probe: bool,
    /// Scratch directory (default: a new directory under $TMPDIR, removed afterwards)
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// No progress bar
    #[arg(short, long)]
    pub quiet: bool,
    /// Seed of the bootstrap resampling
    #[arg(long, default_value_t = 0x6b61_7274_6f6e)]
    pub seed: u64,
}

pub fn run(args: BenchArgs, _g: &crate::Global) -> anyhow::Result<i32> {
    if let Some(BenchCommand::Compare(c)) = args.command {
        let a = BenchResults::load(&c.a)?;
        let b = BenchResults::load(&c.b)?;
        let changes = compare::compare(&a, &b);
        if c.json {
            println!("{}", serde_json::to_string_pretty(&changes)?);
        } else {
            print!("{}", compare::to_text(&changes));
        }
        return Ok(0);
    }
    let a = args.run;
    let mut p = profile::by_name(&a.profile)?;
    if let Some(n) = a.min_rounds {
        p.min_rounds = n.max(1);
    }
    if let Some(n) = a.max_rounds {
        p.max_rounds = n.max(1);
        p.lifecycle_rounds = p.lifecycle_rounds.min(p.max_rounds);
        p.ns_rounds = p.ns_rounds.min(p.max_rounds);
    }
    p.min_rounds = p.min_rounds.min(p.max_rounds);
    if let Some(f) = a.budget_scale {
        for b in &mut p.benches {
            b.budget_s *= f;
        }
        p.lifecycle_budget_s *= f;
    }
    if !a.density_n.is_empty() {
        p.density_n = a.density_n.iter().map(|n| (*n).max(1)).collect();
    }
    if !a.density_parallel.is_empty() {
        p.density_parallel = a.density_parallel.iter().map(|n| (*n).max(1)).collect();
    }
    match a.density_rate[..] {
        [] => {}
        [n, par, reps] => p.density_rate = (n.max(1), par.max(1), reps),
        _ => anyhow::bail!(
            "--density-rate takes three numbers, N,P,REPS (e.g. 200,8,5); REPS 0 skips the cell"
        ),
    }
    if a.no_probe {
        p.instrumented = false;
    }
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!(
            "karton bench needs root (containers with every namespace, cgroup limits, unshare of each type)"
        );
    }
    let stop = runner::interrupt_flag()?;
    let opts = runner::Options {
        profile: p,
        out_dir: a.output,
        exe: std::env::current_exe().context("finding the karton executable")?,
        workdir: a.workdir,
        only_benches: a.only,
        only_configs: a.configs,
        skip_ns_create: false,
        skip_lifecycle: false,
        progress: !a.quiet,
        seed: a.seed,
    };
    let (results, path) = runner::run(opts, stop)?;
    eprintln!(
        "{} series, {} namespace cells{}",
        results.series.len(),
        results.ns_create.len(),
        if results.interrupted { " (interrupted: finished rows kept)" } else { "" }
    );
    println!("{}", path.display());
    println!("{}", path.with_extension("csv").display());
    Ok(if results.interrupted { 130 } else { 0 })
}
