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

impl Cli {
    /// The command line, parsed by a parser of just the runtime command it names when it
    /// names one (create, start, run, …: what engines call for every container). Building
    /// clap's parser for every command (the lab's bench, audit, trace … with their many
    /// flags) was a tenth of karton's user time in a `run` of /bin/true, and paged in code
    /// and help texts of commands not run. Whatever that parser rejects (help, version,
    /// lab commands, mistakes) goes to the full one, which answers as it always did.
    fn parse_fast() -> Cli {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        Cli::runtime_command_from(&args).unwrap_or_else(|| Cli::parse_from(&args))
    }

    fn runtime_command_from(args: &[std::ffi::OsString]) -> Option<Cli> {
        use clap::FromArgMatches;
        let m = runtime_command_parser(args)?.try_get_matches_from(args).ok()?;
        let global = Global::from_arg_matches(&m).ok()?;
        let command = RuntimeCommand::from_arg_matches(&m).ok()?;
        Some(Cli { global, command: Command::Runtime(command) })
    }
}

/// A parser of the global flags and the one runtime command `args` names (the first
/// argument that is neither a flag nor a flag's value); None for any other command.
fn runtime_command_parser(args: &[std::ffi::OsString]) -> Option<clap::Command> {
    use clap::Args;
    use cmd::{lifecycle as l, manage as m};
    const TAKES_VALUE: [&str; 4] = ["--root", "--log", "--log-format", "--rootless"];
    let mut rest = args.iter().skip(1).map(|a| a.to_str());
    let name = loop {
        let a = rest.next()??;
        if TAKES_VALUE.contains(&a) {
            rest.next();
        } else if !a.starts_with('-') {
            break a;
        }
    };
    type Augment = fn(clap::Command) -> clap::Command;
    const PARSERS: [(&str, Augment); 15] = [
        ("create", l::CreateArgs::augment_args),
        ("start", l::IdArg::augment_args),
        ("state", l::IdArg::augment_args),
        ("pause", l::IdArg::augment_args),
        ("resume", l::IdArg::augment_args),
        ("kill", l::KillArgs::augment_args),
        ("delete", l::DeleteArgs::augment_args),
        ("run", l::RunArgs::augment_args),
        ("spec", l::SpecArgs::augment_args),
        ("list", l::ListArgs::augment_args),
        ("features", |c| c),
        ("exec", m::ExecArgs::augment_args),
        ("ps", m::PsArgs::augment_args),
        ("events", m::EventsArgs::augment_args),
        ("update", m::UpdateArgs::augment_args),
    ];
    let &(name, augment) = PARSERS.iter().find(|(n, _)| *n == name)?;
    let sub = augment(clap::Command::new(name));
    Some(Global::augment_args(clap::Command::new("karton")).subcommand(sub).subcommand_required(true))
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
    #[command(flatten)]
    Runtime(RuntimeCommand),
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

/// runc's commands (and `list`): the OCI runtime.
#[derive(Debug, Subcommand)]
enum RuntimeCommand {
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
}

fn main() -> ExitCode {
    // Rust starts with SIGPIPE ignored: restore the default so `karton … | head` ends
    // quietly and no container process inherits an ignored SIGPIPE across execve.
    let _ = karton_sys::process::default_signal_disposition(libc::SIGPIPE);
    let cli = Cli::parse_fast();
    // Before karton opens any descriptor (the log file included): the numbers the
    // container inherits must be the caller's, never ours.
    let preserve_fds = match &cli.command {
        Command::Runtime(RuntimeCommand::Create(a)) => a.preserve_fds,
        Command::Runtime(RuntimeCommand::Run(a)) => a.create.preserve_fds,
        Command::Runtime(RuntimeCommand::Exec(a)) => a.preserve_fds,
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
        Command::Runtime(c) => run_runtime_command(c, g),
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

fn run_runtime_command(c: RuntimeCommand, g: &Global) -> anyhow::Result<i32> {
    match c {
        RuntimeCommand::Create(a) => cmd::lifecycle::create(a, g),
        RuntimeCommand::Start(a) => cmd::lifecycle::start(a, g),
        RuntimeCommand::State(a) => cmd::lifecycle::state(a, g),
        RuntimeCommand::Kill(a) => cmd::lifecycle::kill(a, g),
        RuntimeCommand::Delete(a) => cmd::lifecycle::delete(a, g),
        RuntimeCommand::Run(a) => cmd::lifecycle::run(a, g),
        RuntimeCommand::Spec(a) => cmd::lifecycle::spec(a, g),
        RuntimeCommand::List(a) => cmd::lifecycle::list(a, g),
        RuntimeCommand::Features => cmd::lifecycle::features(g),
        RuntimeCommand::Exec(a) => cmd::manage::exec(a, g),
        RuntimeCommand::Pause(a) => cmd::manage::pause(a, g),
        RuntimeCommand::Resume(a) => cmd::manage::resume(a, g),
        RuntimeCommand::Ps(a) => cmd::manage::ps(a, g),
        RuntimeCommand::Events(a) => cmd::manage::events(a, g),
        RuntimeCommand::Update(a) => cmd::manage::update(a, g),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<std::ffi::OsString> {
        line.split_whitespace().map(Into::into).collect()
    }

    /// The one-command parser agrees with the full one on what engines send.
    #[test]
    fn runtime_command_parser_matches_the_full_parser() {
        for line in [
            "karton --root /run/k --log /tmp/l --log-format json --systemd-cgroup create --bundle /b --pid-file /p --console-socket /s c1",
            "karton --root=/run/k create --bundle=/b --no-pivot --preserve-fds 2 c1",
            "karton --root /r start c1",
            "karton --root /r state c1",
            "karton --root /r kill c1 TERM",
            "karton --root /r kill --all c1 9",
            "karton --root /r delete --force c1",
            "karton --debug run --bundle /b -d --pid-file /p c1",
            "karton --rootless true --root /r exec --process /p.json --detach --pid-file /x c1",
            "karton --root /r exec -t --cwd / -e A=B c1 sh -c true",
            "karton --root /r pause c1",
            "karton --root /r resume c1",
            "karton --root /r ps --format json c1",
            "karton --root /r events --stats c1",
            "karton --root /r update --memory 1000000 c1",
            "karton --root /r update -r /dev/stdin c1",
            "karton spec --bundle /b",
            "karton list --format json",
            "karton features",
        ] {
            same_as_the_full_parser(line);
        }
        // podman's own calls, as the engines test records them (tests/engines).
        let recorded = include_str!("../../../tests/engines/podman-argv.expected");
        for call in recorded.lines().filter(|l| !l.trim().is_empty()) {
            let call =
                call.replace("@W@", "/w").replace("<ID>", "c1").replace("<N>", "1").replace("<R>", "x");
            same_as_the_full_parser(&format!("karton --root /run/podman-oci {call}"));
        }
    }

    fn same_as_the_full_parser(line: &str) {
        let a = args(line);
        let full = Cli::try_parse_from(&a).map(|c| format!("{c:?}"));
        let one = Cli::runtime_command_from(&a).map(|c| format!("{c:?}"));
        match full {
            Ok(f) => assert_eq!(one.as_deref(), Some(f.as_str()), "{line}"),
            Err(e) => panic!("{line}: not a valid command line: {e}"),
        }
    }

    /// Help, version, the lab commands and mistakes are the full parser's.
    #[test]
    fn the_rest_goes_to_the_full_parser() {
        for line in [
            "karton",
            "karton --help",
            "karton --version",
            "karton run --help",
            "karton help run",
            "karton bench --only lifecycle",
            "karton ns list",
            "karton run",
            "karton create --bundle /b",
            "karton start a b",
            "karton --root",
        ] {
            assert!(Cli::runtime_command_from(&args(line)).is_none(), "{line}");
        }
    }
}
