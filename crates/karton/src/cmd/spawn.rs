//! `karton spawn`: an ad-hoc sandbox from options, run by the runtime library
//! (karton_runtime::spawn builds the spec; this module only parses and dispatches).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::Args;
use karton_runtime::spawn::{self, NsChoice, Rootfs, SpawnOptions};

use crate::Global;

#[derive(Debug, Args)]
#[command(after_help = "\
Namespace files with --persist: DIR/user, DIR/net, ... (every new namespace but pid: a pid \
namespace takes no new process once its init has exited). Join them with \
`karton ns enter --target DIR -- CMD`; release them with `umount DIR/*` (then `rm -r DIR`, \
which also removes the root-filesystem skeleton DIR/.rootfs).")]
pub struct SpawnArgs {
    /// Namespaces to create, a comma list of user,pid,net,ipc,uts,mnt,cgroup,time (mnt is
    /// always added: the rootfs is built in it) [default: all but user and time; plus user
    /// when not root or with --map-root/--uid-map, plus time with --time-offset]
    #[arg(long, value_name = "TYPES", conflicts_with = "all")]
    pub ns: Vec<String>,
    /// Create every namespace type this kernel has
    #[arg(long)]
    pub all: bool,
    /// Map root in the sandbox to your uid and gid (the default for a user namespace)
    #[arg(long)]
    pub map_root: bool,
    /// A uid map line INSIDE:OUTSIDE:COUNT (repeatable; needs --gid-map)
    #[arg(long, value_name = "C:H:N")]
    pub uid_map: Vec<String>,
    /// A gid map line INSIDE:OUTSIDE:COUNT (repeatable; needs --uid-map)
    #[arg(long, value_name = "C:H:N")]
    pub gid_map: Vec<String>,
    /// Hostname in the new uts namespace
    #[arg(long, value_name = "H")]
    pub hostname: Option<String>,
    /// Use DIR as the root filesystem (writable as it is)
    #[arg(long, value_name = "DIR", conflicts_with = "host_ro")]
    pub rootfs: Option<PathBuf>,
    /// Root filesystem of the host's directories, read-only, with fresh /proc /dev /sys /tmp /run [default]
    #[arg(long)]
    pub host_ro: bool,
    /// Bind-mount SRC (recursively) at DST; `:ro` makes it read-only (repeatable)
    #[arg(long, value_name = "SRC:DST[:ro]")]
    pub bind: Vec<String>,
    /// Offset of a clock in the new time namespace: monotonic=SECS or boottime=SECS (repeatable)
    #[arg(long, value_name = "CLOCK=SECS", allow_hyphen_values = true)]
    pub time_offset: Vec<String>,
    /// Memory limit, bytes or with k/m/g suffix
    #[arg(long, value_name = "M")]
    pub memory: Option<String>,
    /// Maximum number of processes
    #[arg(long, value_name = "N")]
    pub pids: Option<String>,
    /// CPU limit as a number of CPUs (e.g. 0.5)
    #[arg(long, value_name = "F")]
    pub cpus: Option<String>,
    /// Keep the namespaces after the command exits, as bind mounts in DIR (needs root)
    #[arg(long, value_name = "DIR")]
    pub persist: Option<PathBuf>,
    /// Container id under --root [default: spawn-PID-NONCE]
    #[arg(long)]
    pub id: Option<String>,
    /// The command and its arguments (after `--`)
    #[arg(value_name = "CMD", num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<OsString>,
}

pub fn run(a: SpawnArgs, g: &Global) -> anyhow::Result<i32> {
    if a.cmd.is_empty() {
        bail!("no command given: put the command after `--`, e.g. `karton spawn -- sh`");
    }
    let args = a
        .cmd
        .into_iter()
        .map(|s| s.into_string().map_err(|s| anyhow::anyhow!("argument {s:?} is not valid UTF-8")))
        .collect::<anyhow::Result<Vec<String>>>()?;
    let mut o = SpawnOptions::new(args);
    o.namespaces = if a.all {
        NsChoice::All
    } else if a.ns.is_empty() {
        NsChoice::Default
    } else {
        let mut list = Vec::new();
        for s in &a.ns {
            list.extend(spawn::parse_ns_list(s)?);
        }
        NsChoice::List(list)
    };
    o.map_root = a.map_root;
    o.uid_map = a.uid_map.iter().map(|s| spawn::parse_id_range(s, "--uid-map")).collect::<Result<_, _>>()?;
    o.gid_map = a.gid_map.iter().map(|s| spawn::parse_id_range(s, "--gid-map")).collect::<Result<_, _>>()?;
    o.hostname = a.hostname;
    o.rootfs = match a.rootfs {
        Some(d) => Rootfs::Dir(d),
        None => Rootfs::HostRo,
    };
    o.binds = a.bind.iter().map(|s| spawn::parse_bind(s)).collect::<Result<_, _>>()?;
    o.time_offsets = a.time_offset.iter().map(|s| spawn::parse_time_offset(s)).collect::<Result<_, _>>()?;
    o.memory = a.memory.as_deref().map(|s| spawn::parse_size(s, "--memory")).transpose()?;
    o.pids = a.pids.as_deref().map(spawn::parse_pids).transpose()?;
    o.cpus = a.cpus.as_deref().map(spawn::parse_cpus).transpose()?;
    o.persist = a.persist;
    // All input is checked before the state root is touched.
    spawn::plan(&o)?;
    let rt = super::lifecycle::runtime(g)?;
    let id = a.id.unwrap_or_else(spawn::default_id);
    let code = spawn::run(&rt, &id, &o).with_context(|| format!("spawn {id}"))?;
    Ok(code)
}
