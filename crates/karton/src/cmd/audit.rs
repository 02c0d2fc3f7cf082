//! `karton audit`: isolation and noninterference of each namespace (karton-audit), and the
//! hidden helpers that run inside the audit's containers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub helper: Option<Helper>,
    /// quick (≤ 5 min on 2 cores) or full
    #[arg(long, value_enum, default_value_t = ProfileArg::Quick)]
    pub profile: ProfileArg,
    /// Write the results JSON here (atomically)
    #[arg(short, long, value_name = "FILE", default_value = "audit.json")]
    pub output: PathBuf,
    /// Only probes whose id starts with one of these (e.g. pid, net.bind_host_port, kernel)
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Only these stressors (cpu,memory,fork,disk,net-send,net-recv)
    #[arg(long, value_delimiter = ',')]
    pub stressors: Vec<String>,
    /// Skip the isolation probes
    #[arg(long)]
    pub no_isolation: bool,
    /// Skip the noninterference experiments
    #[arg(long)]
    pub no_noninterference: bool,
    /// Skip the kernel footprint
    #[arg(long)]
    pub no_footprint: bool,
    /// Keep rootfs, bundles and state in DIR (default: a temp dir, removed afterwards)
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Print the results JSON on stdout as well
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProfileArg {
    Quick,
    Full,
}

/// Helpers the audit runs inside its containers (or beside them); not for people.
#[derive(Debug, Subcommand)]
pub enum Helper {
    /// Run one isolation probe and print its JSON verdict line
    #[command(hide = true)]
    Probe { id: String, params: String },
    /// A victim workload: primes or tcp-rr, for SECS seconds, sampled every INTERVAL_MS
    #[command(hide = true)]
    Victim {
        kind: String,
        secs: f64,
        interval_ms: u64,
        /// Print nothing (when only the kernel's view of the run matters)
        #[arg(long)]
        quiet: bool,
    },
    /// A stressor: cpu, memory, fork, disk, net-send, net-recv
    #[command(hide = true)]
    Stress { kind: String, secs: f64, mem_mib: u64, dir: String },
    /// A process of the audit's own that probes may signal, trace or re-limit
    #[command(hide = true)]
    Sacrificial { token: String },
    /// Run CMD in a scratch uts namespace and print that namespace's hostname afterwards
    #[command(hide = true)]
    UtsParent {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// List the probe ids
    ListProbes,
}

pub fn run(args: AuditArgs, g: &crate::Global) -> anyhow::Result<i32> {
    if let Some(h) = args.helper {
        return helper(h);
    }
    // The audit keeps its containers' state in its own work dir, not under --root.
    let _ = g;
    let exe = std::env::current_exe().context("locating the karton binary")?;
    let opts = karton_audit::Options {
        profile: match args.profile {
            ProfileArg::Quick => karton_audit::Profile::Quick,
            ProfileArg::Full => karton_audit::Profile::Full,
        },
        exe,
        out: Some(args.output.clone()),
        only: args.only.clone(),
        isolation: !args.no_isolation,
        noninterference: !args.no_noninterference && args.only.is_empty(),
        footprint: !args.no_footprint && args.only.is_empty(),
        stressors: args.stressors.clone(),
        work_dir: args.work_dir.clone(),
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_signals(interrupted.clone())?;
    let mut log = |l: &str| eprintln!("{l}");
    let r = karton_audit::run(&opts, interrupted.clone(), &mut log);
    if interrupted.load(Ordering::Relaxed) {
        eprintln!(
            "karton audit: interrupted; containers killed and deleted; partial results in {}",
            args.output.display()
        );
        return Ok(130);
    }
    let r = r?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    let shown = r.isolation.iter().filter(|x| x.demonstrated).count();
    eprintln!(
        "karton audit: {} isolation rows ({} show leak without / containment with), {} noninterference rows; results in {} ({:.0} s)",
        r.isolation.len(),
        shown,
        r.noninterference.as_ref().map(|n| n.rows.len()).unwrap_or(0),
        args.output.display(),
        r.duration_s
    );
    Ok(0)
}

/// SIGINT/SIGTERM set `flag`; the audit stops after its current step and cleans up. (A
/// handler, not a blocked mask: children must not inherit blocked signals.)
fn watch_signals(flag: Arc<AtomicBool>) -> anyhow::Result<()> {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).context("installing the SIGINT/SIGTERM handler")?;
    }
    Ok(())
}

fn helper(h: Helper) -> anyhow::Result<i32> {
    match h {
        Helper::Probe { id, params } => Ok(karton_audit::probe_main(&id, &params)),
        Helper::Victim { kind, secs, interval_ms, quiet } => {
            karton_audit::workloads::victim_main(&kind, secs, interval_ms, quiet)?;
            Ok(0)
        }
        Helper::Stress { kind, secs, mem_mib, dir } => {
            karton_audit::workloads::stress_main(&kind, secs, mem_mib, &dir)?;
            Ok(0)
        }
        Helper::Sacrificial { token: _ } => {
            karton_audit::isolation::sacrificial_main()?;
            Ok(0)
        }
        Helper::UtsParent { cmd } => Ok(karton_audit::isolation::uts_parent_main(&cmd)?),
        Helper::ListProbes => {
            for p in karton_audit::probes::PROBES {
                println!("{p}");
            }
            Ok(0)
        }
    }
}
