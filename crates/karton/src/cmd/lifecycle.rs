//! The runc-compatible lifecycle commands.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use karton_runtime::{CreateOpts, Runtime, Store};

use crate::Global;

#[derive(Debug, Args)]
pub struct IdArg {
    /// Container ID
    pub id: String,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Container ID
    pub id: String,
    /// Bundle directory (holds config.json and the rootfs)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the init's pid to this file
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (for a rootfs on ramfs)
    #[arg(long)]
    pub no_pivot: bool,
    /// Do not give the container a new session keyring
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Pass N extra fds (3 .. 3+N-1) to the container's process
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return once the container has started
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container's state after it exits
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Container ID
    pub id: String,
    /// Signal name (TERM, SIGKILL) or number
    #[arg(default_value = "TERM")]
    pub signal: String,
    /// Signal every process in the container, not only its init
    #[arg(short, long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Container ID
    pub id: String,
    /// Kill the container's processes first if it is not stopped
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Directory to write config.json into
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// A config for an unprivileged user: user namespace mapping your ids
    #[arg(long)]
    pub rootless: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Print only the IDs
    #[arg(short, long)]
    pub quiet: bool,
}

/// The runtime for the global flags, after checking the flags that select a mode.
pub fn runtime(g: &Global) -> anyhow::Result<Runtime> {
    match g.rootless.as_str() {
        "true" | "false" | "auto" => {}
        other => bail!("--rootless {other:?}: use true, false or auto"),
    }
    if g.rootless == "false" && !nix::unistd::geteuid().is_root() {
        bail!("--rootless=false: karton is not running as root: run it as root or use --rootless=auto");
    }
    Ok(Runtime::new(g.root.clone().unwrap_or_else(Store::default_root)).with_systemd_cgroup(g.systemd_cgroup))
}

fn opts(a: &CreateArgs) -> CreateOpts {
    CreateOpts {
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
    }
}

pub fn create(a: CreateArgs, g: &Global) -> anyhow::Result<i32> {
    let rt = runtime(g)?;
    rt.create(&a.id, &opts(&a))?;
    Ok(0)
}

pub fn start(a: IdArg, g: &Global) -> anyhow::Result<i32> {
    runtime(g)?.start(&a.id)?;
    Ok(0)
}

pub fn state(a: IdArg, g: &Global) -> anyhow::Result<i32> {
    let rec = runtime(g)?.state(&a.id)?;
    println!("{}", serde_json::to_string_pretty(&rec.oci())?);
    Ok(0)
}

pub fn kill(a: KillArgs, g: &Global) -> anyhow::Result<i32> {
    let sig = karton_runtime::signals::parse(&a.signal)?;
    runtime(g)?.kill(&a.id, sig, a.all)?;
    Ok(0)
}

pub fn delete(a: DeleteArgs, g: &Global) -> anyhow::Result<i32> {
    runtime(g)?.delete(&a.id, a.force)?;
    Ok(0)
}

pub fn run(a: RunArgs, g: &Global) -> anyhow::Result<i32> {
    let rt = runtime(g)?;
    Ok(rt.run(&a.create.id, &opts(&a.create), a.detach, a.keep)?)
}

pub fn spec(a: SpecArgs, _g: &Global) -> anyhow::Result<i32> {
    let path = a.bundle.join("config.json");
    if path.exists() {
        bail!("{}: already exists: remove it first, or pass another --bundle", path.display());
    }
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    let spec = karton_runtime::defaults::default_spec(a.rootless, uid, gid);
    let text = serde_json::to_string_pretty(&spec)? + "\n";
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(0)
}

pub fn list(a: ListArgs, g: &Global) -> anyhow::Result<i32> {
    let recs = runtime(g)?.list()?;
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in &recs {
            writeln!(out, "{}", r.id)?;
        }
        return Ok(0);
    }
    match a.format {
        ListFormat::Json => {
            let states: Vec<_> = recs.iter().map(|r| r.oci()).collect();
            writeln!(out, "{}", serde_json::to_string(&states)?)?;
        }
        ListFormat::Table => {
            let rows: Vec<[String; 6]> = recs
                .iter()
                .map(|r| {
                    [
                        r.id.clone(),
                        r.pid.to_string(),
                        r.status.to_string(),
                        r.bundle.display().to_string(),
                        r.created.clone(),
                        owner_name(&r.owner),
                    ]
                })
                .collect();
            let head = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            let mut w = [0usize; 6];
            for row in std::iter::once(&head).chain(rows.iter()) {
                for (i, c) in row.iter().enumerate() {
                    w[i] = w[i].max(c.len());
                }
            }
            for row in std::iter::once(&head).chain(rows.iter()) {
                let line: Vec<String> =
                    row.iter().enumerate().map(|(i, c)| format!("{:<width$}", c, width = w[i])).collect();
                writeln!(out, "{}", line.join("   ").trim_end())?;
            }
        }
    }
    Ok(0)
}

fn owner_name(uid: &str) -> String {
    uid.parse::<u32>()
        .ok()
        .and_then(|u| nix::unistd::User::from_uid(u.into()).ok().flatten())
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

pub fn features(_g: &Global) -> anyhow::Result<i32> {
    println!("{}", serde_json::to_string_pretty(&karton_runtime::defaults::features())?);
    Ok(0)
}
