//! The management commands: exec, pause, resume, ps, events, update.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use karton_runtime::{ExecOpts, ExecProcess};
use oci_spec::runtime::{Capability, LinuxCpu, LinuxPids, LinuxResources, Process};

use super::lifecycle::{runtime, ListFormat};
use crate::Global;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Container ID
    pub id: String,
    /// Command and arguments (unless --process)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// A process.json (the OCI `process` object) describing what to run
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Allocate a terminal (needs --console-socket)
    #[arg(short, long)]
    pub tty: bool,
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Working directory inside the container
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables
    #[arg(short, long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// UID[:GID] to run as
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    #[arg(short = 'g', long = "additional-gids", value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// Add a capability (e.g. CAP_NET_ADMIN) to the process's sets
    #[arg(short, long = "cap", value_name = "CAP")]
    pub caps: Vec<String>,
    /// Set no_new_privs for the process
    #[arg(long)]
    pub no_new_privs: bool,
    /// Return once the process has started
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// Exec even into a paused container (the process starts frozen)
    #[arg(long)]
    pub ignore_paused: bool,
    /// Run the process in an existing sub-cgroup of the container's cgroup:
    /// [CONTROLLER[,CONTROLLER]:]PATH, repeatable (a PATH without controller: applies to all)
    #[arg(long = "cgroup", value_name = "[CONTROLLER:]PATH")]
    pub cgroup: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Container ID
    pub id: String,
    /// Arguments for ps(1) [default: -ef]
    #[arg(last = true)]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print one stats event and exit
    #[arg(long)]
    pub stats: bool,
    /// Interval between stats events (e.g. 5s, 500ms, 1m)
    #[arg(long, default_value = "5s")]
    pub interval: String,
    /// Container ID
    pub id: String,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Container ID
    pub id: String,
    /// linux.resources JSON from FILE, or - for stdin
    #[arg(short, long, value_name = "FILE|-")]
    pub resources: Option<String>,
    /// Memory limit (bytes; k, m, g suffixes)
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Memory + swap limit (-1: unlimited)
    #[arg(long)]
    pub memory_swap: Option<String>,
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    #[arg(long)]
    pub cpu_quota: Option<i64>,
    #[arg(long)]
    pub cpu_period: Option<u64>,
    #[arg(long)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    #[arg(long)]
    pub pids_limit: Option<i64>,
    #[arg(long)]
    pub blkio_weight: Option<u16>,
}

pub fn exec(a: ExecArgs, g: &Global) -> anyhow::Result<i32> {
    let rt = runtime(g)?;
    let process: Process = match &a.process {
        Some(path) => {
            if !a.command.is_empty() {
                bail!("exec: give either --process or a command, not both");
            }
            let text =
                std::fs::read_to_string(path).with_context(|| format!("--process {}", path.display()))?;
            let mut de = serde_json::Deserializer::from_str(&text);
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                anyhow::anyhow!("{}: {}: {} : fix this field", path.display(), e.path(), e.inner())
            })?
        }
        None => {
            if a.command.is_empty() {
                bail!("exec: no command given: pass the command after the container ID, or --process FILE");
            }
            rt.exec_process(&a.id, &exec_process(&a)?)?
        }
    };
    let opts = ExecOpts {
        console_socket: a.console_socket,
        detach: a.detach,
        pid_file: a.pid_file,
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
        cgroup: a.cgroup,
    };
    Ok(rt.exec(&a.id, &process, &opts)?)
}

/// The command-line changes to the container's process, typed.
fn exec_process(a: &ExecArgs) -> anyhow::Result<ExecProcess> {
    let mut env = Vec::new();
    for kv in &a.env {
        let Some((name, value)) = kv.split_once('=') else {
            bail!("--env {kv:?}: write it as NAME=value");
        };
        env.push((name.to_string(), value.to_string()));
    }
    let (uid, gid) = match &a.user {
        None => (None, None),
        Some(u) => {
            let (uid, gid) = match u.split_once(':') {
                Some((u, g)) => (u.parse::<u32>(), g.parse::<u32>().map(Some)),
                None => (u.parse::<u32>(), Ok(None)),
            };
            let (Ok(uid), Ok(gid)) = (uid, gid) else {
                bail!("--user {u:?}: give numeric UID[:GID]");
            };
            (Some(uid), gid)
        }
    };
    let caps = a
        .caps
        .iter()
        .map(|c| {
            serde_json::from_value::<Capability>(serde_json::json!(c)).map_err(|_| {
                anyhow::anyhow!("--cap {c:?}: unknown capability: use a name such as CAP_NET_ADMIN")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(ExecProcess {
        args: a.command.clone(),
        terminal: a.tty,
        env,
        cwd: a.cwd.clone(),
        uid,
        gid,
        additional_gids: a.additional_gids.clone(),
        caps,
        no_new_privs: a.no_new_privs,
    })
}

pub fn pause(a: super::lifecycle::IdArg, g: &Global) -> anyhow::Result<i32> {
    runtime(g)?.pause(&a.id)?;
    Ok(0)
}

pub fn resume(a: super::lifecycle::IdArg, g: &Global) -> anyhow::Result<i32> {
    runtime(g)?.resume(&a.id)?;
    Ok(0)
}

pub fn ps(a: PsArgs, g: &Global) -> anyhow::Result<i32> {
    let pids = runtime(g)?.pids(&a.id)?;
    if a.format == ListFormat::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let args = if a.ps_args.is_empty() { vec!["-ef".to_string()] } else { a.ps_args };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("running ps(1): is procps installed?")?;
    if !out.status.success() {
        bail!("ps {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let col = header.split_whitespace().position(|h| h == "PID").ok_or_else(|| {
        anyhow::anyhow!("ps {}: no PID column in its output: include pid in the format", args.join(" "))
    })?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{header}")?;
    for l in lines {
        if l.split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            writeln!(stdout, "{l}")?;
        }
    }
    Ok(0)
}

fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let bad = || anyhow::anyhow!("--interval {s:?}: write a duration such as 5s, 500ms or 1m");
    let (num, unit) =
        s.find(|c: char| !c.is_ascii_digit() && c != '.').map(|i| s.split_at(i)).unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if secs <= 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn events(a: EventsArgs, g: &Global) -> anyhow::Result<i32> {
    let rt = runtime(g)?;
    let interval = parse_duration(&a.interval)?;
    let event = |kind: &str, data: Option<serde_json::Value>| {
        let mut e = serde_json::json!({"type": kind, "id": a.id});
        if let Some(d) = data {
            e["data"] = d;
        }
        e.to_string()
    };
    if a.stats {
        let s = rt.stats(&a.id)?;
        println!("{}", event("stats", Some(serde_json::to_value(&s)?)));
        return Ok(0);
    }
    let mut last_oom = rt.oom_events(&a.id)?.oom_kill;
    let mut next_stats = std::time::Instant::now();
    loop {
        let st = match rt.state(&a.id) {
            Ok(s) => s.status,
            Err(karton_runtime::Error::NotFound(_)) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        // Read the counter after the status: an OOM kill of the init (the usual victim
        // in a one-process container) stops the container, and must still be reported.
        if let Ok(o) = rt.oom_events(&a.id) {
            if o.oom_kill > last_oom {
                println!("{}", event("oom", None));
                last_oom = o.oom_kill;
            }
        }
        if st == karton_runtime::Status::Stopped {
            let _ = std::io::stdout().flush();
            return Ok(0);
        }
        if std::time::Instant::now() >= next_stats {
            if let Ok(s) = rt.stats(&a.id) {
                println!("{}", event("stats", Some(serde_json::to_value(&s)?)));
            }
            next_stats += interval;
        }
        let _ = std::io::stdout().flush();
        std::thread::sleep(interval.min(Duration::from_millis(200)));
    }
}

/// "512m" → bytes; "-1" → -1 (unlimited).
fn parse_bytes(flag: &str, s: &str) -> anyhow::Result<i64> {
    let bad = || {
        anyhow::anyhow!("--{flag} {s:?}: give bytes, optionally with a k, m or g suffix, or -1 for unlimited")
    };
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (num, mul) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    num.parse::<i64>().ok().and_then(|n| n.checked_mul(mul)).filter(|n| *n >= 0).ok_or_else(bad)
}

pub fn update(a: UpdateArgs, g: &Global) -> anyhow::Result<i32> {
    let rt = runtime(g)?;
    let mut res: LinuxResources = match &a.resources {
        Some(src) => {
            let text = if src == "-" {
                let mut t = String::new();
                std::io::stdin().read_to_string(&mut t).context("reading resources from stdin")?;
                t
            } else {
                std::fs::read_to_string(src)
                    .with_context(|| format!("--resources {src}: cannot read it: pass a JSON file with linux.resources, or - for stdin"))?
            };
            let mut de = serde_json::Deserializer::from_str(&text);
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                anyhow::anyhow!("--resources {src}: {}: {}: nothing was changed", e.path(), e.inner())
            })?
        }
        None => LinuxResources::default(),
    };
    let mut mem = res.memory().unwrap_or_default();
    let mut mem_set = res.memory().is_some();
    if let Some(m) = &a.memory {
        mem.set_limit(Some(parse_bytes("memory", m)?));
        mem_set = true;
    }
    if let Some(m) = &a.memory_reservation {
        mem.set_reservation(Some(parse_bytes("memory-reservation", m)?));
        mem_set = true;
    }
    if let Some(m) = &a.memory_swap {
        mem.set_swap(Some(parse_bytes("memory-swap", m)?));
        mem_set = true;
    }
    if mem_set {
        res.set_memory(Some(mem));
    }
    let mut cpu: LinuxCpu = res.cpu().clone().unwrap_or_default();
    let before = cpu.clone();
    if let Some(v) = a.cpu_shares {
        cpu.set_shares(Some(v));
    }
    if let Some(v) = a.cpu_quota {
        cpu.set_quota(Some(v));
    }
    if let Some(v) = a.cpu_period {
        cpu.set_period(Some(v));
    }
    if let Some(v) = a.cpu_rt_runtime {
        cpu.set_realtime_runtime(Some(v));
    }
    if let Some(v) = a.cpu_rt_period {
        cpu.set_realtime_period(Some(v));
    }
    if let Some(v) = &a.cpuset_cpus {
        cpu.set_cpus(Some(v.clone()));
    }
    if let Some(v) = &a.cpuset_mems {
        cpu.set_mems(Some(v.clone()));
    }
    if cpu != before || res.cpu().is_some() {
        res.set_cpu(Some(cpu));
    }
    if let Some(p) = a.pids_limit {
        let mut pids = LinuxPids::default();
        pids.set_limit(p);
        res.set_pids(Some(pids));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = res.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        res.set_block_io(Some(b));
    }
    rt.update(&a.id, &res)?;
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_durations() {
        assert_eq!(parse_bytes("memory", "512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("memory", "1G").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("memory", "4096").unwrap(), 4096);
        assert_eq!(parse_bytes("memory", "-1").unwrap(), -1);
        assert!(parse_bytes("memory", "lots").is_err());
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("x").is_err());
    }
}
