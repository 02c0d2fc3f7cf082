//! `karton ns`: list, tree, inspect and enter namespaces.
//!
//! Parsing and printing only; the work is in karton-ns. Containers under `--root` come
//! from the runtime library, to name the container that owns a namespace and to accept a
//! container id where a pid is expected.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use karton_ns::discover::{self, HeldBy, Namespace, NsList, ScanOptions};
use karton_ns::enter::{self, EnterOptions, JoinMethod};
use karton_ns::inspect::{self, Inspection};
use karton_ns::tree::{self, NsTree, TreeNode};
use karton_ns::{procfs, NsError, NsType};
use karton_runtime::{Runtime, Status};

#[derive(Debug, Args)]
pub struct NsArgs {
    #[command(subcommand)]
    pub cmd: NsCmd,
}

#[derive(Debug, Subcommand)]
pub enum NsCmd {
    /// Every namespace on the host: owner, parent, holders, container (like lsns, and more)
    List(ListArgs),
    /// The user-namespace and pid-namespace trees, other namespaces under their owner
    Tree(TreeArgs),
    /// A process's or container's namespaces against the host's, with id maps, time
    /// offsets and cgroup namespace roots
    Inspect(InspectArgs),
    /// Run a command in the namespaces of a process or container (like nsenter)
    Enter(EnterArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only namespaces of this type (user, pid, net|network, ipc, uts, cgroup, time, mnt|mount)
    #[arg(long = "type", short = 't', value_name = "TYPE")]
    pub ty: Option<NsType>,
    /// Only the namespaces of this process
    #[arg(long, short = 'p', value_name = "PID")]
    pub pid: Option<i32>,
    /// Only the namespaces of this karton container
    #[arg(long, short = 'c', value_name = "ID")]
    pub container: Option<String>,
    /// Machine-readable output (schema karton.ns.list/v1, see docs/ns.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TreeType {
    User,
    Pid,
}

#[derive(Debug, Args)]
pub struct TreeArgs {
    /// Only this tree [default: both]
    #[arg(long = "type", short = 't', value_enum, value_name = "user|pid")]
    pub ty: Option<TreeType>,
    /// Machine-readable output (schema karton.ns.tree/v1, see docs/ns.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A pid or a karton container id
    #[arg(value_name = "PID|ID")]
    pub target: String,
    /// Machine-readable output (schema karton.ns.inspect/v1, see docs/ns.md)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    Auto,
    Pidfd,
    PerType,
}

#[derive(Debug, Args)]
pub struct EnterArgs {
    /// The process (pid), karton container (id), or directory of namespace files (bind
    /// mounts named user, pid, net, ...) whose namespaces to join
    #[arg(long, short = 't', value_name = "PID|ID|DIR")]
    pub target: String,
    /// Join only these types (repeat or separate with commas) [default: --all]
    #[arg(long = "type", value_name = "TYPE", value_delimiter = ',', conflicts_with = "all")]
    pub types: Vec<NsType>,
    /// Join every namespace of the target that differs from karton's own
    #[arg(long, short = 'a')]
    pub all: bool,
    /// Keep uid, gid and groups when joining a user namespace (default: become 0 in it)
    #[arg(long)]
    pub preserve_credentials: bool,
    /// Working directory of the command, inside the target's mount namespace
    #[arg(long, value_name = "DIR")]
    pub wd: Option<PathBuf>,
    /// How to join: one setns on a pidfd, one setns per type, or pidfd falling back to per-type
    #[arg(long, value_enum, default_value_t = MethodArg::Auto, hide = true)]
    pub method: MethodArg,
    /// The command and its arguments
    #[arg(value_name = "CMD", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<OsString>,
}

pub fn run(args: NsArgs, g: &crate::Global) -> anyhow::Result<i32> {
    let rt = super::lifecycle::runtime(g)?;
    match args.cmd {
        NsCmd::List(a) => list(a, &rt),
        NsCmd::Tree(a) => tree_cmd(a, &rt),
        NsCmd::Inspect(a) => inspect_cmd(a, &rt),
        NsCmd::Enter(a) => enter_cmd(a, &rt),
    }
}

// ---- containers under --root ----

/// Every container with a live init: (id, pid).
fn containers(rt: &Runtime) -> Vec<(String, i32)> {
    rt.list()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.status != Status::Stopped && r.pid > 0)
        .map(|r| (r.id, r.pid))
        .collect()
}

/// A pid, or a container id resolved to its init pid.
fn resolve(target: &str, rt: &Runtime) -> anyhow::Result<i32> {
    if let Ok(pid) = target.parse::<i32>() {
        if pid > 0 && procfs::exists(pid) {
            return Ok(pid);
        }
    }
    if let Ok(rec) = rt.state(target) {
        if rec.status == Status::Stopped {
            bail!(
                "container {target} is not running (status stopped, init pid {} is gone): its namespaces no longer exist",
                rec.pid
            );
        }
        return Ok(rec.pid);
    }
    let root = rt.store().root();
    match target.parse::<i32>() {
        Ok(pid) => Err(NsError::NoSuchProcess { pid }.into()),
        Err(_) => bail!(
            "no karton container {target:?} under {} (no {}/{target}/state.json): list containers with `karton list`, or pass a pid",
            root.display(),
            root.display()
        ),
    }
}

// ---- list ----

fn scan(rt: &Runtime) -> anyhow::Result<NsList> {
    let mut l = discover::list(ScanOptions::default())?;
    let cs = containers(rt);
    l.label_containers(cs.iter().map(|(id, pid)| (id.as_str(), *pid)));
    Ok(l)
}

fn list(a: ListArgs, rt: &Runtime) -> anyhow::Result<i32> {
    if let Some(t) = a.ty {
        if !t.is_supported() {
            return Err(NsError::Unsupported {
                ty: t,
                path: format!("/proc/self/ns/{}", t.proc_name()).into(),
            }
            .into());
        }
    }
    let of_pid = match a.pid {
        Some(p) => Some(procfs::ns_set(p)?),
        None => None,
    };
    if let Some(c) = &a.container {
        resolve_container(c, rt)?;
    }
    let mut l = scan(rt)?;
    l.filter(a.ty, of_pid.as_ref(), a.container.as_deref());
    if a.json {
        print_json(&l)?;
    } else {
        print_list(&l)?;
    }
    report_skipped(&l);
    Ok(0)
}

/// Checks that a container id names a running container (for --container).
fn resolve_container(id: &str, rt: &Runtime) -> anyhow::Result<i32> {
    if let Err(karton_runtime::Error::NotFound(_)) = rt.state(id) {
        bail!(
            "no karton container {id:?} under {}: list containers with `karton list`",
            rt.store().root().display()
        );
    }
    resolve(id, rt)
}

fn report_skipped(l: &NsList) {
    let s = &l.skipped;
    if s.processes > 0 {
        let shown: Vec<String> = s
            .process_pids
            .iter()
            .take(8)
            .map(|p| match procfs::comm(*p) {
                Some(c) => format!("{p} ({c})"),
                None => p.to_string(),
            })
            .collect();
        let more = if s.process_pids.len() > 8 { ", ..." } else { "" };
        eprintln!(
            "karton: skipped {} process(es) the kernel would not let karton read (ptrace-read denied): {}{more}; namespaces only they hold are not listed: run as root (an LSM such as Landlock or Yama may deny even root)",
            s.processes,
            shown.join(", ")
        );
    }
    if s.mountinfo + s.fd_tables > 0 {
        eprintln!(
            "karton: could not read {} mount table(s) and {} fd table(s) for lack of privilege: namespaces kept alive only by bind mounts or open fds there are missing",
            s.mountinfo, s.fd_tables
        );
    }
    if !s.unsupported_types.is_empty() {
        let names: Vec<&str> = s.unsupported_types.iter().map(|t| t.proc_name()).collect();
        eprintln!("karton: this kernel has no {} namespaces", names.join(", "));
    }
}

fn dash<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |x| x.to_string())
}

/// What the COMMAND column shows: the representative's command, or what holds the namespace.
fn holder_text(n: &Namespace) -> String {
    match n.held_by {
        HeldBy::Processes => n.command.clone().unwrap_or_default(),
        HeldBy::BindMount => {
            let paths: Vec<&str> = n.bind_mounts.iter().map(|m| m.path.as_str()).collect();
            format!("(bind mount {})", paths.join(", "))
        }
        HeldBy::OpenFd => {
            let fds: Vec<String> = n
                .open_fds
                .iter()
                .map(|f| {
                    format!("{}/fd/{} {}", f.pid, f.fd, f.command.as_deref().unwrap_or(""))
                        .trim_end()
                        .to_string()
                })
                .collect();
            format!("(open fd {})", fds.join(", "))
        }
        HeldBy::Reference => "(referenced as owner or parent of another namespace)".to_string(),
    }
}

fn print_list(l: &NsList) -> anyhow::Result<()> {
    let users = procfs::user_names();
    let name = |uid: Option<u32>| {
        uid.map_or("-".to_string(), |u| users.get(&u).cloned().unwrap_or_else(|| u.to_string()))
    };
    let header = [
        "NS",
        "TYPE",
        "NPROCS",
        "PID",
        "USER",
        "OWNER",
        "UID",
        "PARENT",
        "LVL",
        "HELD",
        "CONTAINER",
        "COMMAND",
    ];
    let right = [true, false, true, true, false, true, true, true, true, false, false, false];
    let rows: Vec<Vec<String>> = l
        .namespaces
        .iter()
        .map(|n| {
            vec![
                n.id.inode.to_string(),
                n.ty.to_string(),
                n.nprocs.to_string(),
                dash(n.pid),
                name(n.uid),
                dash(n.owner.map(|o| o.inode)),
                dash(n.owner_uid),
                if n.ty.is_hierarchical() { dash(n.parent.map(|p| p.inode)) } else { String::new() },
                dash(n.level),
                n.held_by.as_str().to_string(),
                if n.containers.is_empty() { "-".into() } else { n.containers.join(",") },
                holder_text(n),
            ]
        })
        .collect();
    print_table(&header, &right, &rows)
}

/// Prints aligned columns; the last column is not padded.
fn print_table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: Vec<&str>| -> String {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| match (i == last, right[i]) {
                (true, _) => c.to_string(),
                (false, true) => format!("{c:>width$}", width = w[i]),
                (false, false) => format!("{c:<width$}", width = w[i]),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

// ---- tree ----

fn tree_cmd(a: TreeArgs, rt: &Runtime) -> anyhow::Result<i32> {
    let l = scan(rt)?;
    let only = a.ty.map(|t| match t {
        TreeType::User => NsType::User,
        TreeType::Pid => NsType::Pid,
    });
    let t = tree::build(&l, only);
    if a.json {
        print_json(&t)?;
    } else {
        print_tree(&t)?;
    }
    report_skipped(&l);
    Ok(0)
}

fn node_text(n: &Namespace) -> String {
    let mut s = format!("{} {}", n.ty, n.id.inode);
    if n.ty == NsType::User {
        s += &format!(" uid={}", dash(n.owner_uid));
    }
    s += &format!(" procs={}", n.nprocs);
    if let Some(p) = n.pid {
        s += &format!(" pid={p}");
    }
    if !n.containers.is_empty() {
        s += &format!(" container={}", n.containers.join(","));
    }
    format!("{s}  {}", holder_text(n))
}

fn print_tree(t: &NsTree) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    fn walk(out: &mut impl Write, n: &TreeNode, prefix: &str, last: bool, top: bool) -> std::io::Result<()> {
        let (branch, cont) = match (top, last) {
            (true, _) => ("", ""),
            (false, true) => ("└─ ", "   "),
            (false, false) => ("├─ ", "│  "),
        };
        writeln!(out, "{prefix}{branch}{}", node_text(&n.ns))?;
        let inner = format!("{prefix}{cont}");
        let total = n.owned.len() + n.children.len();
        let mut i = 0;
        for o in &n.owned {
            i += 1;
            let b = if i == total { "└─ " } else { "├─ " };
            writeln!(out, "{inner}{b}· {}", node_text(o))?;
        }
        for c in &n.children {
            i += 1;
            walk(out, c, &inner, i == total, false)?;
        }
        Ok(())
    }
    if let Some(users) = &t.user {
        writeln!(out, "USER NAMESPACES (· marks a namespace owned by the user namespace above)")?;
        for r in users {
            walk(&mut out, r, "", true, true)?;
        }
        for n in &t.unowned {
            writeln!(out, "? {} (owning user namespace not visible)", node_text(n))?;
        }
    }
    if let Some(pids) = &t.pid {
        if t.user.is_some() {
            writeln!(out)?;
        }
        writeln!(out, "PID NAMESPACES")?;
        for r in pids {
            walk(&mut out, r, "", true, true)?;
        }
    }
    Ok(())
}

// ---- inspect ----

fn inspect_cmd(a: InspectArgs, rt: &Runtime) -> anyhow::Result<i32> {
    let pid = resolve(&a.target, rt)?;
    let ins = inspect::inspect(pid)?;
    if a.json {
        print_json(&ins)?;
    } else {
        print_inspection(&ins)?;
    }
    for e in &ins.errors {
        eprintln!("karton: {e}");
    }
    Ok(0)
}

fn print_inspection(i: &Inspection) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "process {}: {}", i.pid, i.command.as_deref().unwrap_or("?"))?;
    if !i.nspid.is_empty() {
        let v: Vec<String> = i.nspid.iter().map(|p| p.to_string()).collect();
        writeln!(out, "pid in each pid namespace (outermost first): {}", v.join(" "))?;
    }
    match i.host_pid {
        Some(1) | None => {}
        Some(p) => writeln!(out, "host namespaces read from pid {p} (pid 1 is not readable)")?,
    }
    writeln!(out)?;
    drop(out);
    let rows: Vec<Vec<String>> = i
        .namespaces
        .iter()
        .map(|c| {
            vec![
                c.ty.to_string(),
                c.id.inode.to_string(),
                dash(c.host.map(|h| h.inode)),
                match c.host {
                    None => "?".into(),
                    Some(_) if c.shared_with_host => "shared".into(),
                    Some(_) => "own".into(),
                },
                dash(c.for_children.map(|f| f.inode)),
            ]
        })
        .collect();
    print_table(
        &["TYPE", "NS", "HOST", "VS-HOST", "FOR-CHILDREN"],
        &[false, true, true, false, true],
        &rows,
    )?;
    let mut out = std::io::stdout().lock();
    let chain = |v: &[inspect::Ancestor]| {
        v.iter()
            .map(|a| match a.owner_uid {
                Some(u) => format!("{} (uid {u})", a.id.inode),
                None => a.id.inode.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" → ")
    };
    writeln!(out)?;
    writeln!(out, "user namespace chain: {}", chain(&i.user_chain))?;
    writeln!(out, "pid namespace chain:  {}", chain(&i.pid_chain))?;
    let map = |m: &Option<karton_ns::IdMap>| match m {
        None => "?".to_string(),
        Some(m) => {
            m.0.iter()
                .map(|e| format!("{}→{} ×{}", e.inside, e.outside, e.count))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    writeln!(out, "uid map (inside→outside ×count): {}", map(&i.uid_map))?;
    writeln!(out, "gid map (inside→outside ×count): {}", map(&i.gid_map))?;
    writeln!(
        out,
        "setgroups: {}",
        match i.setgroups_allowed {
            Some(true) => "allow",
            Some(false) => "deny",
            None => "?",
        }
    )?;
    if let Some(t) = &i.time_offsets {
        let v: Vec<String> = t.iter().map(|o| format!("{} {}s {}ns", o.clock, o.secs, o.nanos)).collect();
        writeln!(out, "time offsets (for children): {}", v.join(", "))?;
    }
    drop(out);
    if let Some(cg) = &i.cgroups {
        println!();
        let rows: Vec<Vec<String>> = cg
            .iter()
            .map(|c| {
                vec![
                    c.hierarchy.to_string(),
                    if c.controllers.is_empty() { "(v2)".into() } else { c.controllers.join(",") },
                    c.path.clone(),
                    dash(c.ns_root.clone()),
                    dash(c.path_in_ns.clone()),
                ]
            })
            .collect();
        print_table(
            &["ID", "CONTROLLERS", "CGROUP", "NS-ROOT", "AS-SEEN-INSIDE"],
            &[true, false, false, false, false],
            &rows,
        )?;
    }
    Ok(())
}

// ---- enter ----

fn enter_cmd(a: EnterArgs, rt: &Runtime) -> anyhow::Result<i32> {
    // Container ids cannot contain '/', so a value with one is a directory.
    let target = if a.target.contains('/') {
        enter::Target::Dir(PathBuf::from(&a.target))
    } else {
        enter::Target::Pid(resolve(&a.target, rt)?)
    };
    for t in &a.types {
        if !t.is_supported() {
            return Err(NsError::Unsupported {
                ty: *t,
                path: format!("/proc/self/ns/{}", t.proc_name()).into(),
            }
            .into());
        }
    }
    let types = if a.all || a.types.is_empty() { None } else { Some(a.types) };
    let plan = enter::plan_target(&target, types.as_deref())?;
    tracing::debug!(target = %plan.target, join = ?plan.join, already_shared = ?plan.already_shared, "ns enter");
    let opts = EnterOptions {
        types,
        preserve_credentials: a.preserve_credentials,
        wd: a.wd,
        method: match a.method {
            MethodArg::Auto => JoinMethod::Auto,
            MethodArg::Pidfd => JoinMethod::Pidfd,
            MethodArg::PerType => JoinMethod::PerType,
        },
        stdout: None,
        stderr: None,
    };
    match enter::run_plan(&plan, opts, &a.cmd) {
        Ok(exit) => Ok(exit.code()),
        // The command could not run: say why, and end as a shell would (127/126).
        Err(e @ NsError::Enter { .. }) => {
            crate::logging::error(&e.to_string());
            Ok(e.exit_code())
        }
        Err(e) => Err(e.into()),
    }
}
