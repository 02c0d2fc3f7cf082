//! karton: a Linux container runtime and namespace laboratory.
//!
//! The command line follows runc's, so engines (podman, containerd) can call karton in its
//! place. This binary parses, sets up logging, dispatches and prints; the work is done by
//! the library crates.

mod cmd;
mod logging;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "karton",
    version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: ", "1.2.1"),
    about = "A Linux container runtime (runc-compatible) and namespace laboratory",
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags that every command accepts, as runc's.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// Directory for container state [default: /run/karton, or $XDG_RUNTIME_DIR/karton when not root]
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Write log lines to FILE instead of stderr (errors still reach stderr)
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Format of log lines
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug messages
    #[arg(long, global = true)]
    pub debug: bool,
    /// Manage cgroups through systemd (needs a running systemd)
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Rootless mode: true, false or auto (detect from the caller's uid); before the command
    #[arg(long, value_name = "true|false|auto", default_value = "auto")]
    pub rootless: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a container from a bundle; its process waits for `start`
    Create(cmd::lifecycle::CreateArgs),
    /// Run the user process of a created container
    Start(cmd::lifecycle::IdArg),
    /// Print the state of a container as OCI state JSON
    State(cmd::lifecycle::IdArg),
    /// Send a signal to a container's init process (or all its processes)
    Kill(cmd::lifecycle::KillArgs),
    /// Delete a container's processes, cgroups and state
    Delete(cmd::lifecycle::DeleteArgs),
    /// Create and start a container, then wait for it unless --detach
    Run(cmd::lifecycle::RunArgs),
    /// Write a default config.json into a bundle
    Spec(cmd::lifecycle::SpecArgs),
    /// List the containers under --root
    List(cmd::lifecycle::ListArgs),
    /// Print what this runtime supports (OCI runtime features JSON)
    Features,
    /// Run a process inside a running container
    Exec(cmd::manage::ExecArgs),
    /// Freeze every process of a container
    Pause(cmd::lifecycle::IdArg),
    /// Thaw a paused container
    Resume(cmd::lifecycle::IdArg),
    /// List the processes of a container
    Ps(cmd::manage::PsArgs),
    /// Print resource-usage and OOM events of a container
    Events(cmd::manage::EventsArgs),
    /// Change a running container's resource limits
    Update(cmd::manage::UpdateArgs),
    /// See, inspect and enter namespaces
    Ns(cmd::ns::NsArgs),
    /// Run a command in an ad-hoc sandbox of new namespaces (no bundle needed)
    Spawn(cmd::spawn::SpawnArgs),
    /// Measure a container, a process or a command with eBPF instruments
    Trace(cmd::trace::TraceArgs),
    /// Benchmark how each namespace changes an application's performance
    Bench(cmd::bench::BenchArgs),
    /// Evaluate each namespace for isolation and noninterference
    Audit(cmd::audit::AuditArgs),
    /// Write the HTML and Markdown report from bench and audit results
    Report(cmd::report::ReportArgs),
    /// Run a built-in benchmark workload (inside a container, or bare)
    Workload(cmd::workload::WorkloadArgs),
}

fn main() -> ExitCode {
    // Rust starts with SIGPIPE ignored: restore the default so `karton … | head` ends
    // quietly and no container process inherits an ignored SIGPIPE across execve.
    let _ = karton_sys::process::default_signal_disposition(libc::SIGPIPE);
    let cli = Cli::parse();
    // Before karton opens any descriptor (the log file included): the numbers the
    // container inherits must be the caller's, never ours.
    let preserve_fds = match &cli.command {
        Command::Create(a) => a.preserve_fds,
        Command::Run(a) => a.create.preserve_fds,
        Command::Exec(a) => a.preserve_fds,
        _ => 0,
    };
    if let Err(e) = karton_runtime::fds::check_preserved(preserve_fds) {
        eprintln!("karton: {e}");
        return ExitCode::from(1);
    }
    if let Err(e) = logging::init(&cli.global) {
        eprintln!("karton: {e:#}");
        return ExitCode::from(1);
    }
    let g = &cli.global;
    let result = match cli.command {
        Command::Create(a) => cmd::lifecycle::create(a, g),
        Command::Start(a) => cmd::lifecycle::start(a, g),
        Command::State(a) => cmd::lifecycle::state(a, g),
        Command::Kill(a) => cmd::lifecycle::kill(a, g),
        Command::Delete(a) => cmd::lifecycle::delete(a, g),
        Command::Run(a) => cmd::lifecycle::run(a, g),
        Command::Spec(a) => cmd::lifecycle::spec(a, g),
        Command::List(a) => cmd::lifecycle::list(a, g),
        Command::Features => cmd::lifecycle::features(g),
        Command::Exec(a) => cmd::manage::exec(a, g),
        Command::Pause(a) => cmd::manage::pause(a, g),
        Command::Resume(a) => cmd::manage::resume(a, g),
        Command::Ps(a) => cmd::manage::ps(a, g),
        Command::Events(a) => cmd::manage::events(a, g),
        Command::Update(a) => cmd::manage::update(a, g),
        Command::Ns(a) => cmd::ns::run(a, g),
        Command::Spawn(a) => cmd::spawn::run(a, g),
        Command::Trace(a) => cmd::trace::run(a, g),
        Command::Bench(a) => cmd::bench::run(a, g),
        Command::Audit(a) => cmd::audit::run(a, g),
        Command::Report(a) => cmd::report::run(a, g),
        Command::Workload(a) => cmd::workload::run(a, g),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            logging::error(&format!("{e:#}"));
            ExitCode::from(1)
        }
    }
}
