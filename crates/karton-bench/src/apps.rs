//! Application benchmarks: real servers (redis, nginx) from the host's packages inside
//! karton containers whose root is the host's directories read-only (the `karton spawn`
//! shape), reached by clients outside over each network mode of [`crate::netmode`].
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
use karton_runtime::spawn::{self, Bind, NsChoice, SpawnOptions};

use crate::netmode::{Endpoint, NetMode, Plumbing};
use crate::results::{AppBreakdown, ConfigInfo, Metric, Row, RowStatus, Sample, Series, SyscallFigure};
use crate::stats;
use crate::BenchError;

/// A server application and how its client drives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// redis-server + redis-benchmark (GET and SET, 50 clients) with this pipeline depth.
    Redis { pipeline: u32 },
    /// nginx serving a file of this many KiB to wrk over keep-alive connections.
    Nginx { kib: u32 },
}

impl App {
    fn server(self) -> Server {
        match self {
            App::Redis { .. } => Server::Redis,
            App::Nginx { .. } => Server::Nginx,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Server {
    Redis,
    Nginx,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Redis => "redis",
            Server::Nginx => "nginx",
        }
    }
    /// Programs it needs, each with its Debian package.
    fn needs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Server::Redis => &[("redis-server", "redis-server"), ("redis-benchmark", "redis-tools")],
            Server::Nginx => &[("nginx", "nginx-light"), ("wrk", "wrk")],
        }
    }
    /// The port inside a namespace of its own.
    fn port(self) -> u16 {
        match self {
            Server::Redis => 6379,
            Server::Nginx => 8080,
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
    for m in NetMode::ALL {
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
    Ok(AppPlan {
        benches: vec![
            b("redis-p1", App::Redis { pipeline: 1 }, "redis GET/SET, 50 clients, no pipelining"),
            b("redis-p16", App::Redis { pipeline: 16 }, "redis GET/SET, 50 clients, pipeline depth 16"),
            b("nginx-1k", App::Nginx { kib: 1 }, "nginx static 1 KiB file, wrk, 16 keep-alive connections"),
            b(
                "nginx-1m",
                App::Nginx { kib: 1024 },
                "nginx static 1 MiB file, wrk, 16 keep-alive connections",
            ),
        ],
        configs,
        warmups: if full { 2 } else { 1 },
        rounds: if full { 15 } else { 5 },
        redis_requests: if full { 100_000 } else { 20_000 },
        wrk_seconds: if full { 10 } else { 2 },
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

/// A missing program → the skip reason with the apt-get line.
pub fn missing_programs(server: &str) -> Option<String> {
    let s = match server {
        "redis" => Server::Redis,
        _ => Server::Nginx,
    };
    missing(s)
}

fn missing(s: Server) -> Option<String> {
    let absent: Vec<&(&str, &str)> = s.needs().iter().filter(|(p, _)| which(p).is_none()).collect();
    if absent.is_empty() {
        return None;
    }
    let progs: Vec<&str> = absent.iter().map(|(p, _)| *p).collect();
    let pkgs: Vec<&str> = absent.iter().map(|(_, k)| *k).collect();
    Some(format!("{} not installed: apt-get install {} (or `make deps`)", progs.join(", "), pkgs.join(" ")))
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
    _plumbing: Option<Plumbing>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(id) = &self.container {
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
    let mut running: Vec<Running> = Vec::new();
    let mut skipped: HashMap<String, String> = HashMap::new();
    for (slot, c) in plan.configs.iter().enumerate() {
        if ctx.stop.load(Ordering::SeqCst) {
            break;
        }
        // Slots (addresses, link names, forwarded ports) differ between servers too: the
        // session's nft table keeps every server's forward until the run ends.
        let slot = server as usize * 32 + slot;
        match start(ctx, server, c, slot as u8, dir) {
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
    if plan.probe && !ctx.stop.load(Ordering::SeqCst) {
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
    Ok(())
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

/// The server's command line; `www` and `tmp` as the server sees them.
fn server_argv(server: Server, bind: &str, port: u16, conf: &Path) -> Vec<String> {
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

fn start(
    ctx: &AppContext,
    server: Server,
    c: &AppConfig,
    slot: u8,
    dir: &Path,
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
    match c.mode {
        None => {
            let tmp = dir.join(format!("tmp-{name}"));
            std::fs::create_dir_all(&tmp).map_err(BenchError::io(format!("creating {}", tmp.display())))?;
            let conf = dir.join(format!("srv/nginx-{name}.conf"));
            std::fs::write(&conf, nginx_conf(bind, port, &dir.join("srv/www"), &tmp))
                .map_err(BenchError::io("writing nginx.conf"))?;
            let mut argv = server_argv(server, bind, port, &conf);
            if server == Server::Redis {
                // --dir: the host's /tmp is shared; the scratch directory is ours.
                if let Some(i) = argv.iter().position(|a| a == "/tmp") {
                    argv[i] = tmp.display().to_string();
                }
            }
            let child = Command::new(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(logf()?)
                .stderr(logf()?)
                .process_group(0)
                .spawn()
                .map_err(BenchError::io(format!("starting {}", argv[0])))?;
            let pid = child.id();
            let endpoint = Endpoint { ip: std::net::Ipv4Addr::LOCALHOST, port };
            let r = Running {
                config: c.name.clone(),
                child: Some(child),
                container: None,
                state_root: ctx.state_root.to_path_buf(),
                exe: ctx.exe.to_path_buf(),
                pid,
                endpoint,
                client_netns_of: None,
                _plumbing: None,
            };
            wait_ready(None, endpoint, &log)?;
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
            let argv = server_argv(server, bind, port, &Path::new("/karton-bench").join(&conf_name));
            let bundle = dir.join(format!("bundle-{}-{name}", server.name()));
            write_bundle(c, &argv, &bundle, &dir.join("srv"))?;
            let id = format!("kba{}-{}-{name}", std::process::id(), server.name());
            let pid_file = bundle.join("pid");
            let mut r = Running {
                config: c.name.clone(),
                child: None,
                container: Some(id.clone()),
                state_root: ctx.state_root.to_path_buf(),
                exe: ctx.exe.to_path_buf(),
                pid: 0,
                endpoint: Endpoint { ip: std::net::Ipv4Addr::LOCALHOST, port },
                client_netns_of: None,
                _plumbing: None,
            };
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
            let ns = r.client_netns_of.map(|p| PathBuf::from(format!("/proc/{p}/ns/net")));
            wait_ready(ns.as_deref(), r.endpoint, &log)?;
            Ok(r)
        }
    }
}

/// The server container's config.json: the `karton spawn` shape (host directories
/// read-only, fresh /proc, /dev, /tmp), the configuration's namespaces, the server files
/// bound read-only at /karton-bench.
fn write_bundle(c: &AppConfig, argv: &[String], bundle: &Path, srv: &Path) -> Result<(), BenchError> {
    let mut o = SpawnOptions::new(argv.to_vec());
    let mut ns = c.namespaces.clone();
    if c.mode.is_some_and(|m| m.own_netns()) {
        ns.push(NsType::Net);
    }
    o.namespaces = NsChoice::List(ns);
    o.map_root = c.namespaces.contains(&NsType::User);
    o.cwd = Some(PathBuf::from("/"));
    o.binds.push(Bind { source: srv.to_path_buf(), destination: "/karton-bench".into(), readonly: true });
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
    let mp = rootfs.join("karton-bench");
    std::fs::create_dir_all(&mp).map_err(BenchError::io(format!("creating {}", mp.display())))?;
    let mut spec = spawn::build_spec(&o, &p, &rootfs, &host_dirs).map_err(setup)?;
    if c.seccomp {
        if let Some(linux) = spec.linux_mut() {
            linux.set_seccomp(Some(karton_runtime::seccomp::default_profile()));
        }
    }
    let text = serde_json::to_string_pretty(&spec).map_err(|e| BenchError::Encode(e.to_string()))?;
    std::fs::write(bundle.join("config.json"), text)
        .map_err(BenchError::io(format!("writing {}/config.json", bundle.display())))
}

/// Waits (10 s at most) until the server accepts a TCP connection from where its client
/// will run.
fn wait_ready(netns: Option<&Path>, ep: Endpoint, log: &Path) -> Result<(), BenchError> {
    let probe = move || -> Result<(), BenchError> {
        let addr = SocketAddr::from((ep.ip, ep.port));
        let t = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err(BenchError::Setup(format!("nothing accepts connections at {addr} after 10 s")));
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

/// The client's command line for one run of `b` against `r`.
fn client_argv(ctx: &AppContext, plan: &AppPlan, b: &AppBench, r: &Running) -> Vec<String> {
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
    }
    argv
}

/// One client run: its figures.
fn client_once(ctx: &AppContext, plan: &AppPlan, b: &AppBench, r: &Running) -> Result<Vec<Metric>, String> {
    let argv = client_argv(ctx, plan, b, r);
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
    }
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
            // One retry: a single failed warm-up under load does not condemn a configuration.
            if let Err(why) = client_once(ctx, plan, b, r).or_else(|_| client_once(ctx, plan, b, r)) {
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
];

/// One probed client run against `r` with karton-probe on the server's process tree;
/// the client's figure without the probe (the timed rounds' median) beside it.
fn breakdown(ctx: &AppContext, plan: &AppPlan, b: &AppBench, r: &Running) -> Result<AppBreakdown, String> {
    let without = client_once(ctx, plan, b, r)?;
    let mut probe = karton_probe::Probe::builder()
        .syscall_latency(true)
        .sched(true)
        .target(karton_probe::target::Target::Tgid(r.pid))
        .log_dir(std::env::temp_dir())
        .attach()
        .map_err(|e| e.to_string())?;
    let instruments: Vec<String> = probe
        .status()
        .iter()
        .map(|s| format!("{}: {} ({:?})", s.instrument.name(), s.mechanism, s.state))
        .collect();
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
    };
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
        notes: vec![
            "one client run with karton-probe on the server's process tree (tracepoints); the figure without the probe is the run just before it".into(),
            "softirq time (irq:softirq_entry/exit NET_RX/NET_TX) is not measured yet: karton-probe has no softirq program".into(),
        ],
    })
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
        assert!(plan("medium").is_err());
    }
}
