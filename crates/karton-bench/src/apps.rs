//! Application benchmarks: real servers (redis, nginx; in the full profile also
//! PostgreSQL) from the host's packages inside karton containers whose root is the host's
//! directories read-only (the `karton spawn` shape), reached by clients outside over each
//! network mode of [`crate::netmode`]; and (full profile) a C build with `make -j2` inside
//! the container, the fork/exec and metadata workload.
//!
//! Per application, every configuration's server is started once; then the client runs
//! round-robin across the configurations (A B C … B C A …) so drift hits all alike, and
//! the figures become ordinary series (ratios against a bare host process, bootstrap CIs).
//! Afterwards one probed client run per configuration gives the server's eBPF breakdown.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use karton_ns::NsType;
use karton_runtime::spawn::{self, Bind, IdRange, NsChoice, SpawnOptions};

use crate::netmode::{Endpoint, NetMode, Plumbing};
use crate::results::{
    AppBreakdown, ConfigInfo, Metric, Row, RowStatus, Sample, Series, SoftirqFigure, SyscallFigure,
};
use crate::stats;
use crate::BenchError;

/// A server application and how its client drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// redis-server + redis-benchmark (GET and SET, 50 clients) with this pipeline depth.
    Redis { pipeline: u32 },
    /// nginx serving a file of this many KiB to wrk over keep-alive connections.
    Nginx { kib: u32 },
    /// PostgreSQL + pgbench over TCP: select-only (-S) or the TPC-B-like default script.
    Pgbench { select_only: bool },
    /// A small C project built with `make -j2` inside the container (no server, no network).
    Build,
}

impl App {
    fn server(self) -> Server {
        match self {
            App::Redis { .. } => Server::Redis,
            App::Nginx { .. } => Server::Nginx,
            App::Pgbench { .. } => Server::Postgres,
            App::Build => Server::Build,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Server {
    Redis,
    Nginx,
    Postgres,
    /// Not a server: a container that idles while builds are exec'd into it.
    Build,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Redis => "redis",
            Server::Nginx => "nginx",
            Server::Postgres => "postgres",
            Server::Build => "build",
        }
    }
    /// Programs it needs on PATH, each with its Debian package (PostgreSQL's live in
    /// /usr/lib/postgresql/VERSION/bin: [`pg_bin`]).
    fn needs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Server::Redis => &[("redis-server", "redis-server"), ("redis-benchmark", "redis-tools")],
            Server::Nginx => &[("nginx", "nginx-light"), ("wrk", "wrk")],
            Server::Postgres => &[],
            Server::Build => &[("make", "make"), ("cc", "gcc")],
        }
    }
    /// The port inside a namespace of its own (the build listens on none).
    fn port(self) -> u16 {
        match self {
            Server::Redis => 6379,
            Server::Nginx => 8080,
            Server::Postgres => 5432,
            Server::Build => 0,
        }
    }
    /// Whether it runs under `c`; the reason when not.
    fn runs_under(self, c: &AppConfig) -> Result<(), String> {
        match (self, c.mode) {
            (Server::Build, Some(NetMode::Private | NetMode::Bridge | NetMode::Slirp)) => Err(
                "the build uses no network: of the network-mode rows it runs under net-host and net-veth only"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AppBench {
    pub id: String,
    pub app: App,
    pub description: String,
}

/// One configuration of an application row.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub name: String,
    pub description: String,
    /// None: the server is a plain host process (the baseline).
    pub mode: Option<NetMode>,
    /// Namespaces besides network (network follows the mode).
    pub namespaces: Vec<NsType>,
    pub cgroup_limits: bool,
    pub seccomp: bool,
}

impl AppConfig {
    pub fn info(&self) -> ConfigInfo {
        let mut ns: Vec<String> = self.namespaces.iter().map(|t| t.oci_name().to_string()).collect();
        if self.mode.is_some_and(|m| m.own_netns()) {
            ns.push("network".into());
        }
        ConfigInfo {
            name: self.name.clone(),
            description: self.description.clone(),
            runtime: if self.mode.is_some() { "karton" } else { "bare" }.into(),
            namespaces: ns,
            cgroup_limits: self.cgroup_limits,
            seccomp: self.seccomp,
            user_mapping: self.namespaces.contains(&NsType::User).then(|| "0→0 size 1 (map-root)".into()),
        }
    }
}

/// What the application part of a profile runs.
#[derive(Debug, Clone)]
pub struct AppPlan {
    pub benches: Vec<AppBench>,
    pub configs: Vec<AppConfig>,
    pub warmups: u32,
    pub rounds: u32,
    /// redis-benchmark -n per test, by pipeline depth 1 (×16 with pipelining).
    pub redis_requests: u64,
    pub wrk_seconds: u32,
    /// pgbench: scale factor (-s), seconds per run (-T), clients (-c; 2 threads).
    pub pg_scale: u32,
    pub pgbench_seconds: u32,
    pub pg_clients: u32,
    /// Source files of the C project the build row compiles.
    pub build_files: u32,
    pub probe: bool,
    pub resamples: u32,
}

/// The container shape of `karton spawn` without its network namespace.
const BASE_NS: [NsType; 5] = [NsType::Pid, NsType::Ipc, NsType::Uts, NsType::Cgroup, NsType::Mnt];

fn cfg(name: &str, description: String, mode: Option<NetMode>, ns: &[NsType]) -> AppConfig {
    AppConfig {
        name: name.into(),
        description,
        mode,
        namespaces: ns.to_vec(),
        cgroup_limits: false,
        seccomp: false,
    }
}

/// The application part of profile `profile` ("quick" or "full").
pub fn plan(profile: &str) -> Result<AppPlan, BenchError> {
    let full = match profile {
        "quick" => false,
        "full" => true,
        other => return Err(BenchError::UnknownProfile { name: other.into() }),
    };
    let mut configs = vec![cfg(
        "bare",
        "the server as a plain host process, client on the host (loopback): the baseline".into(),
        None,
        &[],
    )];
    // Mode 5 (slirp4netns) only in the full profile: the quick one must stay within budget.
    let modes: &[NetMode] = if full {
        &[NetMode::Host, NetMode::Private, NetMode::Veth, NetMode::Bridge, NetMode::Slirp]
    } else {
        &NetMode::ALL
    };
    for &m in modes {
        configs.push(cfg(
            m.config_name(),
            format!("{}; the server in pid, ipc, uts, cgroup and mount namespaces (`karton spawn` shape), root = host dirs read-only", m.description()),
            Some(m),
            &BASE_NS,
        ));
    }
    if full {
        // The other namespaces one at a time, on the veth network a real container gets.
        configs.push(cfg(
            "veth-mnt",
            "mode 3 (veth), mount namespace only besides network".into(),
            Some(NetMode::Veth),
            &[NsType::Mnt],
        ));
        for t in [NsType::Pid, NsType::Ipc, NsType::Uts, NsType::User, NsType::Cgroup, NsType::Time] {
            configs.push(cfg(
                &format!("veth+{}", t.oci_name()),
                format!("mode 3 (veth), mount + {} namespace", t.oci_name()),
                Some(NetMode::Veth),
                &[NsType::Mnt, t],
            ));
        }
        let all =
            [NsType::Pid, NsType::Ipc, NsType::Uts, NsType::User, NsType::Cgroup, NsType::Time, NsType::Mnt];
        configs.push(cfg(
            "veth-all",
            "mode 3 (veth), all eight namespaces".into(),
            Some(NetMode::Veth),
            &all,
        ));
        let mut sc = cfg(
            "veth-all+cg+seccomp",
            "mode 3 (veth), all eight + cgroup limits (memory 4 GiB, 2 CPUs, pids 4096) + the default seccomp profile".into(),
            Some(NetMode::Veth),
            &all,
        );
        sc.cgroup_limits = true;
        sc.seccomp = true;
        configs.push(sc);
    }
    let b = |id: &str, app: App, d: &str| AppBench { id: id.into(), app, description: d.into() };
    let mut benches = vec![
        b("redis-p1", App::Redis { pipeline: 1 }, "redis GET/SET, 50 clients, no pipelining"),
        b("redis-p16", App::Redis { pipeline: 16 }, "redis GET/SET, 50 clients, pipeline depth 16"),
        b("nginx-1k", App::Nginx { kib: 1 }, "nginx static 1 KiB file, wrk, 16 keep-alive connections"),
        b("nginx-1m", App::Nginx { kib: 1024 }, "nginx static 1 MiB file, wrk, 16 keep-alive connections"),
    ];
    if full {
        // The filesystem + IPC server (data directory on the container's side, shared
        // memory between backends) and the fork/exec + metadata build.
        benches.extend([
            b(
                "pg-select",
                App::Pgbench { select_only: true },
                "PostgreSQL select-only (pgbench -S), scale 10, 8 clients, 2 threads",
            ),
            b(
                "pg-tpcb",
                App::Pgbench { select_only: false },
                "PostgreSQL TPC-B-like (pgbench default script), scale 10, 8 clients, 2 threads",
            ),
            b("build-c", App::Build, "C build: 40 small files + Makefile, make -j2 after make clean"),
        ]);
    }
    Ok(AppPlan {
        benches,
        configs,
        warmups: if full { 2 } else { 1 },
        rounds: if full { 15 } else { 5 },
        redis_requests: if full { 100_000 } else { 20_000 },
        wrk_seconds: if full { 10 } else { 2 },
        pg_scale: 10,
        // 2 rows × 15 configurations × 17 runs: 5 s each keeps them near 50 minutes.
        pgbench_seconds: if full { 5 } else { 2 },
        pg_clients: 8,
        build_files: 40,
        probe: true,
        resamples: if full { 2000 } else { 1000 },
    })
}

/// The runner's side of an application run.
pub struct AppContext<'a> {
    pub exe: &'a Path,
    pub work: &'a Path,
    /// karton's --root for the server containers.
    pub state_root: &'a Path,
    pub stop: &'a AtomicBool,
    pub seed: u64,
    pub log: &'a dyn Fn(String),
    /// Bumped once per client run (the progress bar).
    pub tick: &'a dyn Fn(),
}

/// What an application run adds to the results.
#[derive(Debug, Default)]
pub struct AppOutput {
    pub series: Vec<Series>,
    pub configurations: Vec<ConfigInfo>,
    pub breakdown: Vec<AppBreakdown>,
    pub notes: Vec<String>,
}

/// A missing program → the skip reason with the apt-get line (`server`: redis, nginx,
/// postgres or build).
pub fn missing_programs(server: &str) -> Option<String> {
    let s = match server {
        "redis" => Server::Redis,
        "postgres" => Server::Postgres,
        "build" => Server::Build,
        _ => Server::Nginx,
    };
    missing(s)
}

fn missing(s: Server) -> Option<String> {
    if s == Server::Postgres {
        if pg_bin().is_none() {
            return Some(
                "postgres, initdb, pgbench (/usr/lib/postgresql/VERSION/bin) not installed: apt-get install postgresql (or `make deps`)"
                    .into(),
            );
        }
        if pg_user().is_none() {
            return Some(
                "no postgres user in the passwd database: apt-get install postgresql creates it".into(),
            );
        }
        return None;
    }
    let absent: Vec<&(&str, &str)> = s.needs().iter().filter(|(p, _)| which(p).is_none()).collect();
    if absent.is_empty() {
        return None;
    }
    let progs: Vec<&str> = absent.iter().map(|(p, _)| *p).collect();
    let pkgs: Vec<&str> = absent.iter().map(|(_, k)| *k).collect();
    Some(format!("{} not installed: apt-get install {} (or `make deps`)", progs.join(", "), pkgs.join(" ")))
}

/// The newest /usr/lib/postgresql/VERSION/bin holding postgres, initdb and pgbench
/// (Debian's layout; /usr/bin/pgbench is a wrapper that picks a cluster).
fn pg_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            ["postgres", "initdb", "pgbench"].iter().all(|p| bin.join(p).is_file()).then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

/// The uid and gid of the `postgres` user (postgres refuses to run as root).
fn pg_user() -> Option<(u32, u32)> {
    let u = nix::unistd::User::from_name("postgres").ok().flatten()?;
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

fn which(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

/// Runs the applications of `plan` (those in `only`, when not empty).
pub fn run(ctx: &AppContext, plan: &AppPlan, only: &[String]) -> Result<AppOutput, BenchError> {
    let mut out =
        AppOutput { configurations: plan.configs.iter().map(|c| c.info()).collect(), ..Default::default() };
    let benches: Vec<&AppBench> =
        plan.benches.iter().filter(|b| only.is_empty() || only.contains(&b.id)).collect();
    let mut servers: Vec<Server> = Vec::new();
    for b in &benches {
        if !servers.contains(&b.app.server()) {
            servers.push(b.app.server());
        }
    }
    let dir = ctx.work.join("apps");
    std::fs::create_dir_all(dir.join("srv/www"))
        .map_err(BenchError::io(format!("creating {}", dir.display())))?;
    let _net = crate::netmode::NetSession::open()?;
    for server in servers {
        if ctx.stop.load(Ordering::SeqCst) {
            break;
        }
        let mine: Vec<&AppBench> = benches.iter().copied().filter(|b| b.app.server() == server).collect();
        if let Some(why) = missing(server) {
            (ctx.log)(format!("{:<14} skipped: {why}", server.name()));
            out.notes.push(format!("{}: skipped: {why}", server.name()));
            for b in mine {
                out.series.push(skipped_series(b, plan, &why));
            }
            continue;
        }
        run_server(ctx, plan, server, &mine, &dir, &mut out)?;
    }
    Ok(out)
}

fn skipped_series(b: &AppBench, plan: &AppPlan, why: &str) -> Series {
    Series {
        id: format!("{}/skipped", b.id),
        workload: b.id.clone(),
        metric: "skipped".into(),
        unit: String::new(),
        higher_is_better: true,
        description: b.description.clone(),
        args: vec![],
        baseline: Some("bare".into()),
        rounds: 0,
        converged: false,
        rows: plan
            .configs
            .iter()
            .map(|c| Row {
                config: c.name.clone(),
                status: RowStatus::Skipped,
                reason: Some(why.to_string()),
                samples: vec![],
                summary: None,
                ratio: None,
                failures: 0,
            })
            .collect(),
    }
}

/// A running server of one configuration; dropping it stops the server and removes its
/// container and network plumbing.
struct Running {
    config: String,
    server: Server,
    /// The bare server process, or None for a container.
    child: Option<Child>,
    container: Option<String>,
    state_root: PathBuf,
    exe: PathBuf,
    /// The server's pid on the host (the probe's target).
    pid: u32,
    endpoint: Endpoint,
    /// Mode 2: the client joins the network namespace of this pid.
    client_netns_of: Option<u32>,
    /// PostgreSQL's bin directory (pgbench).
    pg_bin: Option<PathBuf>,
    /// The build row: the tree `make` runs in, as the build sees it.
    build_dir: Option<String>,
    _plumbing: Option<Plumbing>,
}

impl Drop for Running {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, killpg, Signal};
        use nix::unistd::Pid;
        if let Some(c) = &mut self.child {
            let pid = Pid::from_raw(c.id() as i32);
            if self.server == Server::Postgres {
                // Fast shutdown: the backends exit and the shared memory goes with them.
                let _ = kill(pid, Signal::SIGINT);
                wait_exit(c.id(), Duration::from_secs(10));
            }
            // The whole process group (it has its own): nginx's worker, postgres's backends.
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(id) = &self.container {
            if self.server == Server::Postgres && self.pid != 0 {
                // As above; a SysV segment would outlive a SIGKILL in configurations
                // without an IPC namespace of their own.
                let _ = Command::new(&self.exe)
                    .arg("--root")
                    .arg(&self.state_root)
                    .args(["kill", id, "INT"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                wait_exit(self.pid, Duration::from_secs(10));
            }
            let _ = Command::new(&self.exe)
                .arg("--root")
                .arg(&self.state_root)
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Waits until `pid` is gone or a zombie (`timeout` at most).
fn wait_exit(pid: u32, timeout: Duration) {
    let t = Instant::now();
    while t.elapsed() < timeout {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // "pid (comm) STATE …": the state follows the last parenthesis.
            Ok(st) if st.rsplit_once(") ").is_some_and(|(_, r)| !r.starts_with('Z')) => {}
            _ => return,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a server's rows share, made once before its configurations start.
#[derive(Default)]
struct Prep {
    pg: Option<Pg>,
}

/// PostgreSQL: the binaries, the postgres user, the initialized and loaded data directory
/// every configuration gets a copy of.
struct Pg {
    bin: PathBuf,
    uid: u32,
    gid: u32,
    template: PathBuf,
}

fn prepare(ctx: &AppContext, plan: &AppPlan, server: Server, dir: &Path) -> Result<Prep, BenchError> {
    match server {
        Server::Postgres => Ok(Prep { pg: Some(pg_prepare(ctx, plan, dir)?) }),
        Server::Build => {
            write_build_project(&dir.join("build/src"), plan.build_files)?;
            Ok(Prep::default())
        }
        Server::Redis | Server::Nginx => Ok(Prep::default()),
    }
}

/// The template's temporary server on the host; stopped when dropped.
struct TemplateServer(Child);

impl TemplateServer {
    /// Fast shutdown (SIGINT); whether it exited cleanly within 60 s.
    fn stop(&mut self) -> bool {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(st)) = self.0.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
        false
    }
}

impl Drop for TemplateServer {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.stop();
        }
    }
}

/// initdb (as the postgres user: postgres refuses root) with trust authentication over
/// TCP from anywhere (the server is only reachable over loopback and our namespaces), then
/// `pgbench -i -s SCALE` against a temporary server on the host, stopped cleanly.
fn pg_prepare(ctx: &AppContext, plan: &AppPlan, dir: &Path) -> Result<Pg, BenchError> {
    let bin = pg_bin().ok_or_else(|| BenchError::Setup("the PostgreSQL binaries are gone".into()))?;
    let (uid, gid) = pg_user().ok_or_else(|| BenchError::Setup("the postgres user is gone".into()))?;
    let base = dir.join("pg");
    if base.exists() {
        std::fs::remove_dir_all(&base).map_err(BenchError::io(format!("removing {}", base.display())))?;
    }
    std::fs::create_dir_all(&base).map_err(BenchError::io(format!("creating {}", base.display())))?;
    std::os::unix::fs::chown(&base, Some(uid), Some(gid))
        .map_err(BenchError::io(format!("chown postgres {}", base.display())))?;
    let template = base.join("template");
    let log = base.join("template.log");
    let logf = || std::fs::File::create(&log).map_err(BenchError::io(format!("creating {}", log.display())));
    let tail = || {
        let t: String = std::fs::read_to_string(&log).unwrap_or_default().chars().rev().take(400).collect();
        t.chars().rev().collect::<String>().trim().to_string()
    };
    (ctx.log)(format!(
        "postgres: initdb + pgbench -i -s {} (the data directory each configuration copies)",
        plan.pg_scale
    ));
    let st = Command::new(bin.join("initdb"))
        .arg("-D")
        .arg(&template)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .uid(uid)
        .gid(gid)
        .current_dir(&base)
        .stdin(Stdio::null())
        .stdout(logf()?)
        .stderr(logf()?)
        .status()
        .map_err(BenchError::io("running initdb"))?;
    if !st.success() {
        return Err(BenchError::Setup(format!("initdb exited with {st}: {}", tail())));
    }
    {
        use std::io::Write;
        let hba = template.join("pg_hba.conf");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&hba)
            .map_err(BenchError::io(format!("opening {}", hba.display())))?;
        // Clients reach a container from the host's veth, bridge or slirp address.
        f.write_all(b"host all all 0.0.0.0/0 trust\n")
            .map_err(BenchError::io(format!("writing {}", hba.display())))?;
    }
    let port: u16 = 24_000;
    let mut server = TemplateServer(
        Command::new(bin.join("postgres"))
            .arg("-D")
            .arg(&template)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ])
            .uid(uid)
            .gid(gid)
            .current_dir(&base)
            .stdin(Stdio::null())
            .stdout(logf()?)
            .stderr(logf()?)
            .process_group(0)
            .spawn()
            .map_err(BenchError::io("starting postgres for the template"))?,
    );
    wait_ready(None, Endpoint { ip: std::net::Ipv4Addr::LOCALHOST, port }, &log, Some(&bin))?;
    let init = || {
        Command::new(bin.join("pgbench"))
            .args(["-i", "-q", "-s", &plan.pg_scale.to_string(), "-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "postgres", "postgres"])
            .stdin(Stdio::null())
            .output()
    };
    let mut o = init().map_err(BenchError::io("running pgbench -i"))?;
    if !o.status.success() {
        // Accepting connections comes a moment before accepting logins.
        std::thread::sleep(Duration::from_secs(1));
        o = init().map_err(BenchError::io("running pgbench -i"))?;
    }
    if !o.status.success() {
        return Err(BenchError::Setup(format!(
            "pgbench -i exited with {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    if !server.stop() || template.join("postmaster.pid").exists() {
        return Err(BenchError::Setup(format!(
            "the template's postgres did not shut down cleanly: {}",
            tail()
        )));
    }
    Ok(Pg { bin, uid, gid, template })
}

/// A copy of `src` at `dst` with owners and modes (`cp -a`), replacing what was there.
fn copy_tree(src: &Path, dst: &Path) -> Result<(), BenchError> {
    if dst.exists() {
        std::fs::remove_dir_all(dst).map_err(BenchError::io(format!("removing {}", dst.display())))?;
    }
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(BenchError::io(format!("creating {}", parent.display())))?;
    }
    let o = Command::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dst)
        .stdin(Stdio::null())
        .output()
        .map_err(BenchError::io("running cp -a"))?;
    if !o.status.success() {
        return Err(BenchError::Setup(format!(
            "cp -a {} {} exited with {}: {}",
            src.display(),
            dst.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(())
}

/// The C project of the build row: `files` small translation units sharing a header, a
/// main, and a Makefile with one rule per object. Each compile is a few fork/execs (cc,
/// cc1, as) on small files: process creation and metadata dominate, not code generation.
fn write_build_project(root: &Path, files: u32) -> Result<(), BenchError> {
    if root.exists() {
        std::fs::remove_dir_all(root).map_err(BenchError::io(format!("removing {}", root.display())))?;
    }
    std::fs::create_dir_all(root).map_err(BenchError::io(format!("creating {}", root.display())))?;
    let write = |name: &str, text: String| {
        let p = root.join(name);
        std::fs::write(&p, text).map_err(BenchError::io(format!("writing {}", p.display())))
    };
    let mut header = String::from("#include <stddef.h>\n#include <stdint.h>\n#include <string.h>\n");
    let mut main =
        String::from("#include <stdio.h>\n#include \"common.h\"\nint main(void) {\n  uint64_t h = 0;\n");
    for i in 0..files {
        header.push_str(&format!("uint64_t unit{i}(uint64_t seed);\n"));
        main.push_str(&format!("  h ^= unit{i}(h + {i});\n"));
        write(
            &format!("unit{i}.c"),
            format!(
                "#include \"common.h\"\n\
                 static const char name[] = \"unit{i}\";\n\
                 struct pair {{ uint64_t a, b; }};\n\
                 static uint64_t mix(uint64_t x) {{ x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; return x ^ (x >> 29); }}\n\
                 uint64_t unit{i}(uint64_t seed) {{\n\
                 \x20 struct pair p[8];\n\
                 \x20 for (size_t k = 0; k < 8; k++) {{ p[k].a = mix(seed + k); p[k].b = strlen(name) + k; }}\n\
                 \x20 uint64_t h = seed;\n\
                 \x20 for (size_t k = 0; k < 8; k++) h = mix(h ^ p[k].a ^ p[k].b);\n\
                 \x20 return h;\n}}\n"
            ),
        )?;
    }
    main.push_str("  printf(\"%llu\\n\", (unsigned long long)h);\n  return 0;\n}\n");
    write("common.h", header)?;
    write("main.c", main)?;
    write(
        "Makefile",
        "CFLAGS = -O2\nOBJS = $(patsubst %.c,%.o,$(wildcard *.c))\n\
         prog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n\
         %.o: %.c common.h\n\t$(CC) $(CFLAGS) -c -o $@ $<\n\
         clean:\n\trm -f *.o prog\n\
         .PHONY: clean\n"
            .to_string(),
    )?;
    chmod_tree(root)
}

/// One timed build in the tree `$1`: `make clean` untimed, then `make -j2` timed from
/// inside (date +%s%N), so neither the exec into the container nor the clean counts. The
/// compilers' temporary files go to the tree too (TMPDIR): /tmp is a tmpfs in the
/// container and the host's disk for bare, which would otherwise differ between rows.
const BUILD_SH: &str = "cd \"$1\" && mkdir -p .tmp && export TMPDIR=\"$PWD/.tmp\" && make -s clean >/dev/null && s=$(date +%s%N) && make -s -j2 >/dev/null && e=$(date +%s%N) && echo \"build-ns $((e - s))\"";

fn run_server(
    ctx: &AppContext,
    plan: &AppPlan,
    server: Server,
    benches: &[&AppBench],
    dir: &Path,
    out: &mut AppOutput,
) -> Result<(), BenchError> {
    if server == Server::Nginx {
        for b in benches {
            if let App::Nginx { kib } = b.app {
                let f = dir.join(format!("srv/www/{kib}k.bin"));
                std::fs::write(&f, vec![b'k'; kib as usize * 1024])
                    .map_err(BenchError::io(format!("writing {}", f.display())))?;
            }
        }
    }
    chmod_tree(&dir.join("srv"))?;
    // A failed preparation (initdb, the data load) skips this application, not the run.
    let prep = match prepare(ctx, plan, server, dir) {
        Ok(p) => p,
        Err(e) => {
            let why = e.to_string();
            (ctx.log)(format!("{:<14} skipped: {why}", server.name()));
            out.notes.push(format!("{}: skipped: {why}", server.name()));
            for b in benches {
                out.series.push(skipped_series(b, plan, &why));
            }
            remove_copies(dir);
            return Ok(());
        }
    };
    if server == Server::Postgres {
        out.notes.push(
            "postgres: in configurations with a user namespace the postgres user is mapped beside root (0→0 and its uid→itself, size 1 each): the server runs as that user".into(),
        );
    }
    let mut running: Vec<Running> = Vec::new();
    let mut skipped: HashMap<String, String> = HashMap::new();
    for (slot, c) in plan.configs.iter().enumerate() {
        if ctx.stop.load(Ordering::SeqCst) {
            break;
        }
        if let Err(why) = server.runs_under(c) {
            skipped.insert(c.name.clone(), why);
            continue;
        }
        // Slots (addresses, link names, forwarded ports) differ between servers too: the
        // session's nft table keeps every server's forward until the run ends.
        let slot = server as usize * 32 + slot;
        match start(ctx, server, c, slot as u8, dir, &prep) {
            Ok(r) => running.push(r),
            Err(e) => {
                (ctx.log)(format!("{} under {}: {e}", server.name(), c.name));
                skipped.insert(c.name.clone(), e.to_string());
            }
        }
    }
    for b in benches {
        if ctx.stop.load(Ordering::SeqCst) {
            break;
        }
        let (series, more_skips) = measure_bench(ctx, plan, b, &running, &skipped);
        for (c, why) in more_skips {
            skipped.entry(c).or_insert(why);
        }
        out.series.extend(series);
    }
    // The build has no server process to probe: its compilers are exec'd into the container.
    if plan.probe && server != Server::Build && !ctx.stop.load(Ordering::SeqCst) {
        if let Some(b) = benches.first() {
            for r in &running {
                if ctx.stop.load(Ordering::SeqCst) || skipped.contains_key(&r.config) {
                    continue;
                }
                match breakdown(ctx, plan, b, r) {
                    Ok(x) => out.breakdown.push(x),
                    Err(e) => out.notes.push(format!("{} under {}: eBPF breakdown: {e}", b.id, r.config)),
                }
            }
        }
    }
    drop(running);
    remove_copies(dir);
    Ok(())
}

/// Every configuration's data directory or build tree (hundreds of MiB for postgres), and
/// the templates they were copied from.
fn remove_copies(dir: &Path) {
    for d in ["pg", "build"] {
        let _ = std::fs::remove_dir_all(dir.join(d));
    }
}

fn chmod_tree(p: &Path) -> Result<(), BenchError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = if p.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(BenchError::io(format!("chmod {}", p.display())))?;
    if p.is_dir() {
        for e in std::fs::read_dir(p).map_err(BenchError::io(format!("reading {}", p.display())))?.flatten() {
            chmod_tree(&e.path())?;
        }
    }
    Ok(())
}

/// The server's command line; `conf` (nginx) and `pg_data` (postgres) as the server sees
/// them.
fn server_argv(
    server: Server,
    bind: &str,
    port: u16,
    conf: &Path,
    pg_data: &Path,
    prep: &Prep,
) -> Vec<String> {
    match server {
        Server::Redis => [
            "redis-server",
            "--bind",
            bind,
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--dir",
            "/tmp",
            "--logfile",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        Server::Nginx => vec![
            "nginx".into(),
            "-e".into(),
            "stderr".into(),
            "-c".into(),
            conf.display().to_string(),
            "-g".into(),
            "daemon off;".into(),
        ],
        // Clients come over TCP only: no unix socket (its default directory, /run/postgresql,
        // is not writable in the container).
        Server::Postgres => vec![
            prep.pg
                .as_ref()
                .map(|p| p.bin.join("postgres"))
                .unwrap_or_else(|| "postgres".into())
                .display()
                .to_string(),
            "-D".into(),
            pg_data.display().to_string(),
            "-p".into(),
            port.to_string(),
            "-c".into(),
            format!("listen_addresses={bind}"),
            "-c".into(),
            "unix_socket_directories=".into(),
        ],
        // The build's container only idles; every build is exec'd into it.
        Server::Build => vec!["sleep".into(), "infinity".into()],
    }
}

/// nginx.conf: one worker (2 cores: one for the server, one for the client), no access
/// log, every writable path under `tmp`.
fn nginx_conf(bind: &str, port: u16, www: &Path, tmp: &Path) -> String {
    let t = tmp.display();
    format!(
        "worker_processes 1;\npid {t}/nginx.pid;\nerror_log stderr warn;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  keepalive_requests 10000000;\n\
         \x20 client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n  fastcgi_temp_path {t}/fastcgi;\n\
         \x20 uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n\
         \x20 server {{ listen {bind}:{port}; root {}; }}\n}}\n",
        www.display()
    )
}

/// A port on the host's loopback must be free before our server takes it: if another
/// process holds it, "ready" would be that process answering, and the client would
/// measure it.
fn port_is_free(port: u16) -> Result<(), BenchError> {
    match std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)) {
        Ok(_) => Ok(()),
        Err(e) => Err(BenchError::Setup(format!(
            "127.0.0.1:{port}: {e}: another process listens there (perhaps a server left by an earlier run): \
             find it with `ss -ltnp 'sport = :{port}'` and stop it"
        ))),
    }
}

fn start(
    ctx: &AppContext,
    server: Server,
    c: &AppConfig,
    slot: u8,
    dir: &Path,
    prep: &Prep,
) -> Result<Running, BenchError> {
    let name = sanitize(&c.name);
    let log = dir.join(format!("{}-{name}.log", server.name()));
    let logf = || std::fs::File::create(&log).map_err(BenchError::io(format!("creating {}", log.display())));
    let own_ns = c.mode.is_some_and(|m| m.own_netns());
    // Host network: ports of our own range, loopback only; own namespace: the usual port.
    let (bind, port) = if own_ns {
        ("0.0.0.0", server.port())
    } else {
        ("127.0.0.1", 21_000 + slot as u16 * 10 + server as u16)
    };
    if !own_ns && server != Server::Build {
        port_is_free(port)?;
    }
    let mut r = Running {
        config: c.name.clone(),
        server,
        child: None,
        container: None,
        state_root: ctx.state_root.to_path_buf(),
        exe: ctx.exe.to_path_buf(),
        pid: 0,
        endpoint: Endpoint { ip: std::net::Ipv4Addr::LOCALHOST, port },
        client_netns_of: None,
        pg_bin: prep.pg.as_ref().map(|p| p.bin.clone()),
        build_dir: None,
        _plumbing: None,
    };
    // What the configuration writes, its own copy: postgres's data directory (the
    // container's writable part of its root), the build tree.
    let rw: Option<PathBuf> = match server {
        Server::Postgres => {
            let pg = prep.pg.as_ref().ok_or_else(|| BenchError::Setup("postgres was not prepared".into()))?;
            let d = dir.join("pg").join(format!("srv-{name}"));
            copy_tree(&pg.template, &d.join("data"))?;
            Some(d)
        }
        Server::Build => {
            let d = dir.join("build").join(&name);
            copy_tree(&dir.join("build/src"), &d)?;
            Some(d)
        }
        Server::Redis | Server::Nginx => None,
    };
    match c.mode {
        None if server == Server::Build => {
            r.build_dir = rw.map(|d| d.display().to_string());
            Ok(r)
        }
        None => {
            let tmp = dir.join(format!("tmp-{name}"));
            std::fs::create_dir_all(&tmp).map_err(BenchError::io(format!("creating {}", tmp.display())))?;
            let conf = dir.join(format!("srv/nginx-{name}.conf"));
            std::fs::write(&conf, nginx_conf(bind, port, &dir.join("srv/www"), &tmp))
                .map_err(BenchError::io("writing nginx.conf"))?;
            let data = rw.as_ref().map(|d| d.join("data")).unwrap_or_default();
            let mut argv = server_argv(server, bind, port, &conf, &data, prep);
            if server == Server::Redis {
                // --dir: the host's /tmp is shared; the scratch directory is ours.
                if let Some(i) = argv.iter().position(|a| a == "/tmp") {
                    argv[i] = tmp.display().to_string();
                }
            }
            let mut cmd = Command::new(&argv[0]);
            cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(logf()?).stderr(logf()?).process_group(0);
            if let (Some(pg), Some(d)) = (&prep.pg, &rw) {
                cmd.uid(pg.uid).gid(pg.gid).current_dir(d);
            }
            let child = cmd.spawn().map_err(BenchError::io(format!("starting {}", argv[0])))?;
            r.pid = child.id();
            r.child = Some(child);
            wait_ready(None, r.endpoint, &log, r.pg_bin.as_deref())?;
            Ok(r)
        }
        Some(mode) => {
            let conf_name = format!("nginx-{name}.conf");
            std::fs::write(
                dir.join("srv").join(&conf_name),
                nginx_conf(bind, port, Path::new("/karton-bench/www"), Path::new("/tmp")),
            )
            .map_err(BenchError::io("writing nginx.conf"))?;
            chmod_tree(&dir.join("srv"))?;
            let argv = server_argv(
                server,
                bind,
                port,
                &Path::new("/karton-bench").join(&conf_name),
                Path::new("/karton-pg/data"),
                prep,
            );
            let bundle = dir.join(format!("bundle-{}-{name}", server.name()));
            let extra = Extra {
                rw: rw.map(|d| (d, if server == Server::Build { "/karton-build" } else { "/karton-pg" })),
                user: prep.pg.as_ref().map(|p| (p.uid, p.gid)),
            };
            write_bundle(c, &argv, &bundle, &dir.join("srv"), &extra)?;
            let id = format!("kba{}-{}-{name}", std::process::id(), server.name());
            let pid_file = bundle.join("pid");
            // Recorded before it exists: a failed create or start still deletes it.
            r.container = Some(id.clone());
            let o = Command::new(ctx.exe)
                .arg("--root")
                .arg(ctx.state_root)
                .args(["create", "--bundle"])
                .arg(&bundle)
                .arg("--pid-file")
                .arg(&pid_file)
                .arg(&id)
                .stdin(Stdio::null())
                .stdout(logf()?)
                .stderr(logf()?)
                .process_group(0)
                .status()
                .map_err(BenchError::io(format!("running {} create", ctx.exe.display())))?;
            if !o.success() {
                return Err(BenchError::Setup(format!(
                    "karton create exited with {o}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default().trim()
                )));
            }
            let pid: u32 = std::fs::read_to_string(&pid_file)
                .map_err(BenchError::io(format!("reading {}", pid_file.display())))?
                .trim()
                .parse()
                .map_err(|e| BenchError::Setup(format!("{}: not a pid: {e}", pid_file.display())))?;
            r.pid = pid;
            let (plumbing, endpoint) = Plumbing::attach(mode, slot, pid, port)?;
            r._plumbing = Some(plumbing);
            r.endpoint = endpoint;
            if mode == NetMode::Private {
                r.client_netns_of = Some(pid);
            }
            let st = Command::new(ctx.exe)
                .arg("--root")
                .arg(ctx.state_root)
                .args(["start", &id])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .map_err(BenchError::io(format!("running {} start", ctx.exe.display())))?;
            if !st.status.success() {
                return Err(BenchError::Setup(format!(
                    "karton start exited with {}: {}",
                    st.status,
                    String::from_utf8_lossy(&st.stderr).trim()
                )));
            }
            if server == Server::Build {
                r.build_dir = Some("/karton-build".into());
                return Ok(r);
            }
            let ns = r.client_netns_of.map(|p| PathBuf::from(format!("/proc/{p}/ns/net")));
            wait_ready(ns.as_deref(), r.endpoint, &log, r.pg_bin.as_deref())?;
            Ok(r)
        }
    }
}

/// What an application adds to its container besides the server files.
#[derive(Default)]
struct Extra {
    /// A host directory bound read-write at this path.
    rw: Option<(PathBuf, &'static str)>,
    /// The uid and gid the process runs as (root when None).
    user: Option<(u32, u32)>,
}

/// The server container's config.json: the `karton spawn` shape (host directories
/// read-only, fresh /proc, /dev, /tmp), the configuration's namespaces, the server files
/// bound read-only at /karton-bench, and `extra`.
fn write_bundle(
    c: &AppConfig,
    argv: &[String],
    bundle: &Path,
    srv: &Path,
    extra: &Extra,
) -> Result<(), BenchError> {
    let mut o = SpawnOptions::new(argv.to_vec());
    let mut ns = c.namespaces.clone();
    if c.mode.is_some_and(|m| m.own_netns()) {
        ns.push(NsType::Net);
    }
    o.namespaces = NsChoice::List(ns);
    o.map_root = c.namespaces.contains(&NsType::User);
    if let (true, Some((uid, gid))) = (o.map_root, extra.user) {
        // root alone is mapped by default; the user the server runs as must exist inside.
        o.map_root = false;
        let (ru, rg) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        o.uid_map = vec![
            IdRange { inside: 0, outside: ru, count: 1 },
            IdRange { inside: uid, outside: uid, count: 1 },
        ];
        o.gid_map = vec![
            IdRange { inside: 0, outside: rg, count: 1 },
            IdRange { inside: gid, outside: gid, count: 1 },
        ];
    }
    o.cwd = Some(PathBuf::from("/"));
    o.binds.push(Bind { source: srv.to_path_buf(), destination: "/karton-bench".into(), readonly: true });
    if let Some((src, dst)) = &extra.rw {
        o.binds.push(Bind { source: src.clone(), destination: dst.into(), readonly: false });
    }
    if c.cgroup_limits {
        o.memory = Some(4 << 30);
        o.cpus = Some(2.0);
        o.pids = Some(4096);
    }
    let setup = |e: karton_runtime::Error| BenchError::Setup(format!("the server container's spec: {e}"));
    let p = spawn::plan(&o).map_err(setup)?;
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(bundle).map_err(BenchError::io(format!("creating {}", bundle.display())))?;
    let host_dirs = spawn::make_skeleton(&rootfs).map_err(setup)?;
    // The root is read-only: the mount point of the server files must exist beforehand.
    let mut points = vec!["karton-bench"];
    if let Some((_, dst)) = &extra.rw {
        points.push(dst.trim_start_matches('/'));
    }
    for d in points {
        let mp = rootfs.join(d);
        std::fs::create_dir_all(&mp).map_err(BenchError::io(format!("creating {}", mp.display())))?;
    }
    let mut spec = spawn::build_spec(&o, &p, &rootfs, &host_dirs).map_err(setup)?;
    if c.seccomp {
        if let Some(linux) = spec.linux_mut() {
            linux.set_seccomp(Some(karton_runtime::seccomp::default_profile()));
        }
    }
    if let Some((uid, gid)) = extra.user {
        let process = spec
            .process_mut()
            .as_mut()
            .ok_or_else(|| BenchError::Setup("the server container's spec has no process".into()))?;
        process.user_mut().set_uid(uid).set_gid(gid);
    }
    let text = serde_json::to_string_pretty(&spec).map_err(|e| BenchError::Encode(e.to_string()))?;
    std::fs::write(bundle.join("config.json"), text)
        .map_err(BenchError::io(format!("writing {}/config.json", bundle.display())))
}

/// Waits (10 s at most) until the server accepts a TCP connection from where its client
/// will run. PostgreSQL (`pg_bin` given) accepts connections while it still starts up and
/// refuses logins then: for it, ready is when `pg_isready` says "accepting connections".
fn wait_ready(
    netns: Option<&Path>,
    ep: Endpoint,
    log: &Path,
    pg_bin: Option<&Path>,
) -> Result<(), BenchError> {
    // Owned: the probe may run on a thread of its own inside the namespace.
    let pg_bin = pg_bin.map(Path::to_path_buf);
    let probe = move || -> Result<(), BenchError> {
        let addr = SocketAddr::from((ep.ip, ep.port));
        let t = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                && pg_bin.as_deref().is_none_or(|bin| pg_isready(bin, ep))
            {
                return Ok(());
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err(BenchError::Setup(format!("{addr} does not accept connections after 10 s")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let r = match netns {
        Some(ns) => crate::netmode::in_netns(ns, probe),
        None => probe(),
    };
    r.map_err(|e| {
        let tail: String = std::fs::read_to_string(log).unwrap_or_default().chars().rev().take(400).collect();
        let tail: String = tail.chars().rev().collect();
        BenchError::Setup(format!("{e}; server log {}: {}", log.display(), tail.trim()))
    })
}

/// `pg_isready` exits 0 once the server takes logins (1: still starting, 2: no answer).
fn pg_isready(bin: &Path, ep: Endpoint) -> bool {
    Command::new(bin.join("pg_isready"))
        .args(["-q", "-t", "1", "-h", &ep.ip.to_string(), "-p", &ep.port.to_string()])
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|st| st.success())
}

/// The client's command line for one run of `b` against `r` (pgbench writes its
/// per-transaction log into `logdir`).
fn client_argv(ctx: &AppContext, plan: &AppPlan, b: &AppBench, r: &Running, logdir: &Path) -> Vec<String> {
    let ep = r.endpoint;
    let mut argv: Vec<String> = Vec::new();
    if let Some(pid) = r.client_netns_of {
        argv.extend([
            ctx.exe.display().to_string(),
            "ns".into(),
            "enter".into(),
            "--target".into(),
            pid.to_string(),
            "--type".into(),
            "net".into(),
            "--".into(),
        ]);
    }
    match b.app {
        App::Redis { pipeline } => argv.extend([
            "redis-benchmark".to_string(),
            "-h".into(),
            ep.ip.to_string(),
            "-p".into(),
            ep.port.to_string(),
            "-c".into(),
            "50".into(),
            "-P".into(),
            pipeline.to_string(),
            "-n".into(),
            // Pipelining answers ~5x more requests per second: 5x the requests, similar time.
            if pipeline > 1 { plan.redis_requests * 5 } else { plan.redis_requests }.to_string(),
            "-t".into(),
            "set,get".into(),
            "--csv".into(),
        ]),
        App::Nginx { kib } => argv.extend([
            "wrk".to_string(),
            "-t".into(),
            "1".into(),
            "-c".into(),
            "16".into(),
            "-d".into(),
            format!("{}s", plan.wrk_seconds),
            "--latency".into(),
            format!("http://{}:{}/{kib}k.bin", ep.ip, ep.port),
        ]),
        App::Pgbench { select_only } => {
            let bin = r.pg_bin.as_ref().map(|d| d.join("pgbench")).unwrap_or_else(|| "pgbench".into());
            argv.extend([
                bin.display().to_string(),
                "-h".into(),
                ep.ip.to_string(),
                "-p".into(),
                ep.port.to_string(),
                "-U".into(),
                "postgres".into(),
                "-c".into(),
                plan.pg_clients.to_string(),
                "-j".into(),
                "2".into(),
                "-T".into(),
                plan.pgbench_seconds.to_string(),
                // Every transaction's latency: the percentiles come from this log.
                "-l".into(),
                format!("--log-prefix={}", logdir.join("log").display()),
            ]);
            if select_only {
                argv.push("-S".into());
            }
            argv.push("postgres".into());
        }
        App::Build => {
            let tree = r.build_dir.clone().unwrap_or_default();
            if let Some(id) = &r.container {
                argv.extend([
                    ctx.exe.display().to_string(),
                    "--root".into(),
                    ctx.state_root.display().to_string(),
                    "exec".into(),
                    id.clone(),
                    "--".into(),
                ]);
            }
            argv.extend(["sh".into(), "-c".into(), BUILD_SH.into(), "sh".into(), tree]);
        }
    }
    argv
}

/// One client run: its figures.
fn client_once(ctx: &AppContext, plan: &AppPlan, b: &AppBench, r: &Running) -> Result<Vec<Metric>, String> {
    let logdir = ctx.work.join("apps").join(format!("pglog-{}", sanitize(&r.config)));
    if matches!(b.app, App::Pgbench { .. }) {
        let _ = std::fs::remove_dir_all(&logdir);
        std::fs::create_dir_all(&logdir).map_err(|e| format!("creating {}: {e}", logdir.display()))?;
    }
    let argv = client_argv(ctx, plan, b, r, &logdir);
    let o = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .process_group(0)
        .output()
        .map_err(|e| format!("running {}: {e}", argv[0]))?;
    if !o.status.success() {
        return Err(format!(
            "{} exited with {}: {}",
            argv[0],
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    match b.app {
        App::Redis { .. } => parse_redis_csv(&text),
        App::Nginx { .. } => parse_wrk(&text),
        App::Pgbench { .. } => {
            let mut m = parse_pgbench(&text)?;
            let lat = read_pgbench_logs(&logdir);
            let _ = std::fs::remove_dir_all(&logdir);
            m.extend(latency_percentiles(lat?)?);
            Ok(m)
        }
        App::Build => parse_build(&text),
    }
}

/// pgbench's summary: "tps = N (without initial connection time)" and "latency average
/// = X ms".
pub fn parse_pgbench(text: &str) -> Result<Vec<Metric>, String> {
    let mut tps = None;
    let mut avg = None;
    for l in text.lines() {
        if let Some(v) = l.trim().strip_prefix("tps = ") {
            tps = v.split_whitespace().next().and_then(|x| x.parse::<f64>().ok());
        } else if let Some(v) = l.trim().strip_prefix("latency average = ") {
            avg = v.strip_suffix(" ms").and_then(|x| x.trim().parse::<f64>().ok());
        }
    }
    match (tps, avg) {
        (Some(t), Some(a)) => Ok(vec![metric("tps", "tx/s", t, true), metric("lat-avg", "ms", a, false)]),
        _ => Err(format!("no tps or latency average in the pgbench output: {}", text.trim())),
    }
}

/// Latencies (µs) of pgbench's per-transaction log (`-l`), one line per transaction:
/// `client_id transaction_no time script_no time_epoch time_us …`, `time` in µs, or
/// "failed"/"skipped" for transactions that did not complete (left out).
pub fn pgbench_log_latencies(text: &str) -> Vec<f64> {
    text.lines().filter_map(|l| l.split_whitespace().nth(2)?.parse::<f64>().ok()).collect()
}

/// Every log file of one pgbench run (one per thread: log.PID, log.PID.1, …).
fn read_pgbench_logs(dir: &Path) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for e in entries.flatten() {
        let text =
            std::fs::read_to_string(e.path()).map_err(|x| format!("reading {}: {x}", e.path().display()))?;
        out.extend(pgbench_log_latencies(&text));
    }
    Ok(out)
}

/// p50 and p99 (ms) of latencies in µs, nearest rank.
pub fn latency_percentiles(mut us: Vec<f64>) -> Result<Vec<Metric>, String> {
    if us.is_empty() {
        return Err("pgbench logged no completed transaction".into());
    }
    us.sort_by(f64::total_cmp);
    let rank = |q: f64| us[((q * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1] / 1000.0;
    Ok(vec![metric("p50", "ms", rank(0.50), false), metric("p99", "ms", rank(0.99), false)])
}

/// The build script's "build-ns N" line: the wall time of `make -j2`.
pub fn parse_build(text: &str) -> Result<Vec<Metric>, String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("build-ns ")?.trim().parse::<f64>().ok())
        .map(|ns| vec![metric("time", "s", ns / 1e9, false)])
        .ok_or_else(|| format!("no build-ns line in the build's output: {}", text.trim()))
}

fn metric(name: &str, unit: &str, value: f64, hib: bool) -> Metric {
    Metric { name: name.into(), unit: unit.into(), value, higher_is_better: hib, samples: vec![] }
}

/// redis-benchmark --csv: a header line, then one line per test.
pub fn parse_redis_csv(text: &str) -> Result<Vec<Metric>, String> {
    let unq = |s: &str| s.trim().trim_matches('"').to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> =
        lines.next().ok_or("redis-benchmark printed nothing")?.split(',').map(unq).collect();
    let col =
        |n: &str| header.iter().position(|h| h == n).ok_or(format!("redis-benchmark CSV has no {n} column"));
    let (rps, p50, p99) = (col("rps")?, col("p50_latency_ms")?, col("p99_latency_ms")?);
    let mut out = Vec::new();
    for l in lines {
        let f: Vec<String> = l.split(',').map(unq).collect();
        let test = f.first().map(|t| t.to_lowercase()).unwrap_or_default();
        let num = |i: usize| {
            f.get(i).and_then(|v| v.parse::<f64>().ok()).ok_or(format!("bad redis-benchmark line {l:?}"))
        };
        out.push(metric(&format!("{test}-rps"), "req/s", num(rps)?, true));
        out.push(metric(&format!("{test}-p50"), "ms", num(p50)?, false));
        out.push(metric(&format!("{test}-p99"), "ms", num(p99)?, false));
    }
    if out.is_empty() {
        return Err(format!("no results in the redis-benchmark output: {}", text.trim()));
    }
    Ok(out)
}

/// wrk --latency: "Requests/sec:" and the "Latency Distribution" percentiles.
pub fn parse_wrk(text: &str) -> Result<Vec<Metric>, String> {
    let dur_ms = |s: &str| -> Option<f64> {
        let s = s.trim();
        let (num, mult) = if let Some(v) = s.strip_suffix("us") {
            (v, 1e-3)
        } else if let Some(v) = s.strip_suffix("ms") {
            (v, 1.0)
        } else if let Some(v) = s.strip_suffix('s') {
            (v, 1e3)
        } else {
            return None;
        };
        num.parse::<f64>().ok().map(|x| x * mult)
    };
    let mut rps = None;
    let (mut p50, mut p99) = (None, None);
    for l in text.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        match w.as_slice() {
            ["Requests/sec:", v] => rps = v.parse::<f64>().ok(),
            ["50%", v] => p50 = dur_ms(v),
            ["99%", v] => p99 = dur_ms(v),
            _ => {}
        }
    }
    // Timeouts under load are part of the figure; refused connections and error responses
    // mean the server is not serving.
    let connect_errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors: connect "))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if connect_errors > 0 || text.contains("Non-2xx") {
        return Err(format!("wrk saw errors: {}", text.trim()));
    }
    match (rps, p50, p99) {
        (Some(r), Some(a), Some(b)) => Ok(vec![
            metric("rps", "req/s", r, true),
            metric("p50", "ms", a, false),
            metric("p99", "ms", b, false),
        ]),
        _ => Err(format!("no requests/s or percentiles in the wrk output: {}", text.trim())),
    }
}

type Samples = HashMap<String, HashMap<String, Vec<(u32, f64)>>>;

/// Warm-up, then rounds across every live configuration; the series of `b`.
fn measure_bench(
    ctx: &AppContext,
    plan: &AppPlan,
    b: &AppBench,
    running: &[Running],
    skipped: &HashMap<String, String>,
) -> (Vec<Series>, HashMap<String, String>) {
    let mut new_skips = HashMap::new();
    for r in running {
        for _ in 0..plan.warmups.max(1) {
            if ctx.stop.load(Ordering::SeqCst) {
                break;
            }
            if let Err(why) = client_once(ctx, plan, b, r) {
                (ctx.log)(format!("{} under {}: {why}", b.id, r.config));
                new_skips.insert(r.config.clone(), why);
                break;
            }
            (ctx.tick)();
        }
    }
    let live: Vec<&Running> = running.iter().filter(|r| !new_skips.contains_key(&r.config)).collect();
    let mut samples: Samples = HashMap::new();
    let mut meta: Vec<(String, String, bool)> = Vec::new();
    let mut failures: HashMap<String, u32> = HashMap::new();
    let mut rounds = 0;
    while rounds < plan.rounds && !ctx.stop.load(Ordering::SeqCst) && !live.is_empty() {
        for k in 0..live.len() {
            if ctx.stop.load(Ordering::SeqCst) {
                break;
            }
            let r = live[(k + rounds as usize) % live.len()];
            match client_once(ctx, plan, b, r) {
                Ok(ms) => {
                    for m in ms {
                        if !meta.iter().any(|(n, _, _)| *n == m.name) {
                            meta.push((m.name.clone(), m.unit.clone(), m.higher_is_better));
                        }
                        samples
                            .entry(r.config.clone())
                            .or_default()
                            .entry(m.name)
                            .or_default()
                            .push((rounds, m.value));
                    }
                }
                Err(why) => {
                    *failures.entry(r.config.clone()).or_default() += 1;
                    (ctx.log)(format!("{} under {}: {why}", b.id, r.config));
                }
            }
            (ctx.tick)();
        }
        if ctx.stop.load(Ordering::SeqCst) {
            break;
        }
        rounds += 1;
    }
    let mut all_skips: HashMap<String, String> = skipped.clone();
    all_skips.extend(new_skips.clone());
    let series = meta
        .iter()
        .map(|(metric, unit, hib)| {
            to_series(plan, ctx.seed, b, metric, unit, *hib, rounds, &samples, &failures, &all_skips)
        })
        .collect();
    (series, new_skips)
}

#[allow(clippy::too_many_arguments)]
fn to_series(
    plan: &AppPlan,
    seed: u64,
    b: &AppBench,
    metric: &str,
    unit: &str,
    hib: bool,
    rounds: u32,
    samples: &Samples,
    failures: &HashMap<String, u32>,
    skipped: &HashMap<String, String>,
) -> Series {
    let id = format!("{}/{metric}", b.id);
    let base: Vec<(u32, f64)> = samples.get("bare").and_then(|s| s.get(metric)).cloned().unwrap_or_default();
    let mut converged = true;
    let rows = plan
        .configs
        .iter()
        .map(|c| {
            if let Some(why) = skipped.get(&c.name) {
                return Row {
                    config: c.name.clone(),
                    status: RowStatus::Skipped,
                    reason: Some(why.clone()),
                    samples: vec![],
                    summary: None,
                    ratio: None,
                    failures: 0,
                };
            }
            let v = samples.get(&c.name).and_then(|s| s.get(metric)).cloned().unwrap_or_default();
            let xs: Vec<f64> = v.iter().map(|x| x.1).collect();
            let s2 = seed ^ fnv(&id) ^ fnv(&c.name);
            let summary = stats::summarize(&xs, 0.95, plan.resamples, s2);
            converged &= summary.as_ref().is_some_and(|s| s.ci_pct <= 2.0);
            let ratio = (c.name != "bare")
                .then(|| {
                    stats::ratio_summary(
                        &stats::paired_ratios(&v, &base, hib),
                        "bare",
                        0.95,
                        plan.resamples,
                        s2,
                    )
                })
                .flatten();
            Row {
                config: c.name.clone(),
                status: RowStatus::Ok,
                reason: None,
                samples: v.iter().map(|(round, value)| Sample { round: *round, value: *value }).collect(),
                summary,
                ratio,
                failures: failures.get(&c.name).copied().unwrap_or(0),
            }
        })
        .collect();
    Series {
        id,
        workload: b.id.clone(),
        metric: metric.into(),
        unit: unit.into(),
        higher_is_better: hib,
        description: b.description.clone(),
        args: vec![],
        baseline: Some("bare".into()),
        rounds,
        converged,
        rows,
    }
}

/// Syscalls of the server that the breakdown keeps: network I/O, readiness, locks.
const BREAKDOWN_SYSCALLS: &[&str] = &[
    "read",
    "write",
    "readv",
    "writev",
    "recvfrom",
    "sendto",
    "recvmsg",
    "sendmsg",
    "sendfile",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_ctl",
    "futex",
    "accept4",
    // postgres: its data files and WAL
    "pread64",
    "pwrite64",
    "fdatasync",
    "fsync",
];

/// One probed client run against `r` with karton-probe on the server's process tree;
/// the client's figure without the probe (the timed rounds' median) beside it.
fn breakdown(ctx: &AppContext, plan: &AppPlan, b: &AppBench, r: &Running) -> Result<AppBreakdown, String> {
    let without = client_once(ctx, plan, b, r)?;
    let mut probe = karton_probe::Probe::builder()
        .syscall_latency(true)
        .sched(true)
        // System-wide (softirqs run in whatever task a CPU is in): client and server packets.
        .softirq(true)
        .target(karton_probe::target::Target::Tgid(r.pid))
        .log_dir(std::env::temp_dir())
        .attach()
        .map_err(|e| e.to_string())?;
    let instruments = probe.status_lines();
    let with = client_once(ctx, plan, b, r)?;
    let snap = probe.snapshot().map_err(|e| e.to_string())?;
    drop(probe);
    (ctx.tick)();
    let mut syscalls: Vec<SyscallFigure> = Vec::new();
    for row in snap.syscalls.iter().flat_map(|s| s.rows.iter()) {
        if !BREAKDOWN_SYSCALLS.contains(&row.name.as_str()) {
            continue;
        }
        let idx = match syscalls.iter().position(|f| f.name == row.name) {
            Some(i) => i,
            None => {
                syscalls.push(SyscallFigure {
                    name: row.name.clone(),
                    count: 0,
                    errors: 0,
                    mean_ns: 0.0,
                    hist: vec![],
                });
                syscalls.len() - 1
            }
        };
        let f = &mut syscalls[idx];
        let prev = f.mean_ns * f.count as f64;
        f.count += row.count;
        f.errors += row.errors;
        if let Some(h) = &row.latency {
            if f.hist.len() < h.buckets.len() {
                f.hist.resize(h.buckets.len(), 0);
            }
            for (a, x) in f.hist.iter_mut().zip(&h.buckets) {
                *a += x;
            }
            f.mean_ns = (prev + h.sum_ns as f64) / f.count.max(1) as f64;
        }
    }
    syscalls.sort_by_key(|s| std::cmp::Reverse(s.count));
    let mut runq: Vec<u64> = Vec::new();
    let mut switches = 0;
    for row in snap.sched.iter().flat_map(|s| s.rows.iter()) {
        switches += row.switches;
        if runq.len() < row.runq.buckets.len() {
            runq.resize(row.runq.buckets.len(), 0);
        }
        for (a, x) in runq.iter_mut().zip(&row.runq.buckets) {
            *a += x;
        }
    }
    let first = |ms: &[Metric]| ms.first().map(|m| (m.name.clone(), m.unit.clone(), m.value));
    let (metric, unit, without_v) = first(&without).ok_or("the client printed no figures")?;
    let with_v = with.iter().find(|m| m.name == metric).map(|m| m.value).ok_or("no figure with the probe")?;
    let requests = match b.app {
        // redis-benchmark runs SET then GET, -n requests each.
        App::Redis { pipeline } => {
            2.0 * if pipeline > 1 { plan.redis_requests * 5 } else { plan.redis_requests } as f64
        }
        App::Nginx { .. } => {
            with.iter().find(|m| m.unit == "req/s").map(|m| m.value).unwrap_or(0.0) * plan.wrk_seconds as f64
        }
        App::Pgbench { .. } => {
            with.iter().find(|m| m.unit == "tx/s").map(|m| m.value).unwrap_or(0.0)
                * plan.pgbench_seconds as f64
        }
        App::Build => 1.0,
    };
    let softirq = net_softirq(&snap, requests);
    Ok(AppBreakdown {
        bench: b.id.clone(),
        config: r.config.clone(),
        instruments,
        syscalls,
        runq_hist: runq,
        context_switches: switches,
        metric,
        unit,
        without_probe: without_v,
        with_probe: with_v,
        requests,
        softirq,
        notes: vec![
            "one client run with karton-probe on the server's process tree (tracepoints); the figure without the probe is the run just before it".into(),
            "softirq time (tp_btf:softirq_entry/exit, NET_RX and NET_TX) is system-wide: every CPU, the client's packets as well as the server's".into(),
        ],
    })
}

/// The NET_RX and NET_TX rows of a snapshot's softirq section, with ns per request.
fn net_softirq(snap: &karton_probe::Snapshot, requests: f64) -> Vec<SoftirqFigure> {
    snap.softirq
        .iter()
        .flat_map(|s| s.rows.iter())
        .filter(|r| r.name == "NET_RX" || r.name == "NET_TX")
        .map(|r| SoftirqFigure {
            name: r.name.clone(),
            count: r.count,
            total_ns: r.total_ns,
            ns_per_request: (requests > 0.0).then(|| r.total_ns as f64 / requests),
        })
        .collect()
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

/// FNV-1a: a seed stable across runs and versions (std's hasher is not).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn redis_csv_parses() {
        let t = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"SET\",\"50000.00\",\"0.5\",\"0.1\",\"0.479\",\"0.8\",\"1.2\",\"3\"\n\"GET\",\"60000.00\",\"0.4\",\"0.1\",\"0.399\",\"0.7\",\"1.0\",\"2\"\n";
        let m = parse_redis_csv(t).unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!(m[0].name, "set-rps");
        assert_eq!(m[0].value, 50000.0);
        assert_eq!(m[5].name, "get-p99");
        assert!(parse_redis_csv("").is_err());
    }

    #[test]
    fn wrk_output_parses() {
        let t = "Running 2s test @ http://127.0.0.1:8080/1k.bin\n  Latency Distribution\n     50%  120.00us\n     75%  200.00us\n     90%  300.00us\n     99%    1.50ms\n  20000 requests in 2.00s, 25.00MB read\nRequests/sec:  10000.50\nTransfer/sec:     12.50MB\n";
        let m = parse_wrk(t).unwrap();
        assert_eq!(m[0].value, 10000.5);
        assert!((m[1].value - 0.12).abs() < 1e-9);
        assert!((m[2].value - 1.5).abs() < 1e-9);
        assert!(parse_wrk("Requests/sec: 5\n").is_err());
    }

    #[test]
    fn plans_have_a_bare_baseline_and_every_mode() {
        let q = plan("quick").unwrap();
        let names: Vec<&str> = q.configs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["bare", "net-host", "net-private", "net-veth", "net-bridge-nat"]);
        let f = plan("full").unwrap();
        assert!(f.configs.len() > q.configs.len());
        let slirp = f.configs.iter().find(|c| c.name == "net-slirp").unwrap();
        assert_eq!(slirp.mode, Some(NetMode::Slirp));
        assert_eq!(slirp.namespaces, BASE_NS);
        assert!(plan("medium").is_err());
    }

    #[test]
    fn the_quick_plan_keeps_redis_and_nginx_only() {
        let q = plan("quick").unwrap();
        let ids: Vec<&str> = q.benches.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["redis-p1", "redis-p16", "nginx-1k", "nginx-1m"]);
        assert!(q.configs.iter().all(|c| c.mode != Some(NetMode::Slirp)));
    }

    #[test]
    fn the_full_plan_adds_postgres_and_the_build() {
        let f = plan("full").unwrap();
        let ids: Vec<&str> = f.benches.iter().map(|b| b.id.as_str()).collect();
        for id in ["redis-p1", "nginx-1m", "pg-select", "pg-tpcb", "build-c"] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
        assert_eq!(f.pg_scale, 10);
        let pg: Vec<&AppBench> = f.benches.iter().filter(|b| b.app.server() == Server::Postgres).collect();
        assert_eq!(pg.len(), 2);
        // The build runs where namespaces differ, not under every network variant.
        let build_runs: Vec<&str> = f
            .configs
            .iter()
            .filter(|c| Server::Build.runs_under(c).is_ok())
            .map(|c| c.name.as_str())
            .collect();
        assert!(build_runs.contains(&"bare") && build_runs.contains(&"net-host"));
        assert!(build_runs.contains(&"veth-all+cg+seccomp"));
        for n in ["net-private", "net-bridge-nat", "net-slirp"] {
            assert!(!build_runs.contains(&n), "{n}");
        }
        assert!(f.configs.iter().all(|c| Server::Postgres.runs_under(c).is_ok()));
    }

    #[test]
    fn pgbench_output_parses() {
        let t = "pgbench (15.18 (Debian 15.18-0+deb12u1))\nstarting vacuum...end.\ntransaction type: <builtin: select only>\nscaling factor: 10\nquery mode: simple\nnumber of clients: 8\nnumber of threads: 2\nmaximum number of tries: 1\nduration: 2 s\nnumber of transactions actually processed: 59726\nnumber of failed transactions: 0 (0.000%)\nlatency average = 0.265 ms\ninitial connection time = 33.036 ms\ntps = 30188.690690 (without initial connection time)\n";
        let m = parse_pgbench(t).unwrap();
        assert_eq!(m[0].name, "tps");
        assert_eq!(m[0].unit, "tx/s");
        assert!((m[0].value - 30188.69069).abs() < 1e-6);
        assert!(m[0].higher_is_better);
        assert_eq!(m[1].name, "lat-avg");
        assert!((m[1].value - 0.265).abs() < 1e-12);
        assert!(parse_pgbench("pgbench: error: connection to server failed\n").is_err());
    }

    #[test]
    fn pgbench_logs_give_percentiles() {
        let log =
            "0 1 1616 0 1796284447 889087\n2 1 1552 0 1796284447 889092\n3 1 failed 0 1796284447 889526\n";
        assert_eq!(pgbench_log_latencies(log), vec![1616.0, 1552.0]);
        // 1..=1000 µs: p50 is the 500th, p99 the 990th value.
        let us: Vec<f64> = (1..=1000).rev().map(f64::from).collect();
        let m = latency_percentiles(us).unwrap();
        assert_eq!((m[0].name.as_str(), m[0].value), ("p50", 0.5));
        assert_eq!((m[1].name.as_str(), m[1].value), ("p99", 0.99));
        assert!(!m[1].higher_is_better);
        let one = latency_percentiles(vec![2000.0]).unwrap();
        assert_eq!(one[1].value, 2.0);
        assert!(latency_percentiles(vec![]).is_err());
    }

    #[test]
    fn build_output_parses() {
        let m = parse_build("build-ns 1234567890\n").unwrap();
        assert_eq!((m[0].name.as_str(), m[0].unit.as_str()), ("time", "s"));
        assert!((m[0].value - 1.23456789).abs() < 1e-12);
        assert!(!m[0].higher_is_better);
        assert!(parse_build("make: *** [Makefile:4: unit1.o] Error 1\n").is_err());
    }

    #[test]
    fn the_build_project_has_its_files() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("src");
        write_build_project(&root, 40).unwrap();
        let c_files = std::fs::read_dir(&root)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "c"))
            .count();
        assert_eq!(c_files, 41);
        let mk = std::fs::read_to_string(root.join("Makefile")).unwrap();
        assert!(mk.contains("\n\t$(CC) $(CFLAGS) -c -o $@ $<\n"), "{mk}");
        assert!(std::fs::read_to_string(root.join("common.h")).unwrap().contains("unit39"));
    }

    #[test]
    fn clients_of_the_new_rows() {
        let f = plan("full").unwrap();
        let stop = AtomicBool::new(false);
        let (log, tick) = (|_: String| {}, || {});
        let ctx = AppContext {
            exe: Path::new("/k"),
            work: Path::new("/w"),
            state_root: Path::new("/s"),
            stop: &stop,
            seed: 1,
            log: &log,
            tick: &tick,
        };
        let r = Running {
            config: "net-veth".into(),
            server: Server::Postgres,
            child: None,
            container: None,
            state_root: "/s".into(),
            exe: "/k".into(),
            pid: 0,
            endpoint: Endpoint { ip: std::net::Ipv4Addr::new(10, 231, 3, 2), port: 5432 },
            client_netns_of: None,
            pg_bin: Some("/usr/lib/postgresql/15/bin".into()),
            build_dir: None,
            _plumbing: None,
        };
        let sel = f.benches.iter().find(|b| b.id == "pg-select").unwrap();
        let a = client_argv(&ctx, &f, sel, &r, Path::new("/w/l")).join(" ");
        assert_eq!(
            a,
            "/usr/lib/postgresql/15/bin/pgbench -h 10.231.3.2 -p 5432 -U postgres -c 8 -j 2 -T 5 -l --log-prefix=/w/l/log -S postgres"
        );
        let build = f.benches.iter().find(|b| b.id == "build-c").unwrap();
        let mut r = r;
        r.container = Some("kba1-build-net-veth".into());
        r.build_dir = Some("/karton-build".into());
        let a = client_argv(&ctx, &f, build, &r, Path::new("/w/l"));
        assert_eq!(a[..6].join(" "), "/k --root /s exec kba1-build-net-veth --");
        assert_eq!(a.last().map(String::as_str), Some("/karton-build"));
        // Dropping it must not run anything: no process or container is behind it.
        r.container = None;
    }

    #[test]
    fn net_softirq_keeps_rx_and_tx_per_request() {
        let row = |vec: u32, count, total_ns| karton_probe::SoftirqStat {
            vec,
            name: karton_probe::softirq_name(vec),
            count,
            total_ns,
        };
        let snap = karton_probe::Snapshot {
            elapsed_s: 1.0,
            target: karton_probe::Target::All,
            instruments: vec![],
            syscalls: None,
            sched: None,
            faults: None,
            peak_rss: None,
            nsops: None,
            timeline: None,
            footprint: None,
            tracepoints: None,
            softirq: Some(karton_probe::Section {
                instrument: "tp_btf".into(),
                rows: vec![row(1, 5, 900), row(2, 4, 400), row(3, 20, 8000)],
            }),
        };
        let f = net_softirq(&snap, 100.0);
        let names: Vec<&str> = f.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["NET_TX", "NET_RX"]);
        assert_eq!(f[1].ns_per_request, Some(80.0));
        assert!(net_softirq(&snap, 0.0).iter().all(|x| x.ns_per_request.is_none()));
    }
}
