//! `karton spawn`: an ad-hoc sandbox from options, run by the runtime library
//! (karton_runtime::spawn builds the spec from typed options; this module parses the
//! command-line forms into them and dispatches).

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use karton_ns::NsType;
use karton_runtime::spawn::{self, Bind, Clock, IdRange, NsChoice, Rootfs, SpawnOptions, TimeOffset};

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
            list.extend(parse_ns_list(s)?);
        }
        NsChoice::List(list)
    };
    o.map_root = a.map_root;
    o.uid_map = a.uid_map.iter().map(|s| parse_id_range(s, "--uid-map")).collect::<Result<_, _>>()?;
    o.gid_map = a.gid_map.iter().map(|s| parse_id_range(s, "--gid-map")).collect::<Result<_, _>>()?;
    o.hostname = a.hostname;
    o.rootfs = match a.rootfs {
        Some(d) => Rootfs::Dir(d),
        None => Rootfs::HostRo,
    };
    o.binds = a.bind.iter().map(|s| parse_bind(s)).collect::<Result<_, _>>()?;
    o.time_offsets = a.time_offset.iter().map(|s| parse_time_offset(s)).collect::<Result<_, _>>()?;
    o.memory = a.memory.as_deref().map(|s| parse_size(s, "--memory")).transpose()?;
    o.pids = a.pids.as_deref().map(parse_pids).transpose()?;
    o.cpus = a.cpus.as_deref().map(parse_cpus).transpose()?;
    o.persist = a.persist;
    // All input is checked before the state root is touched.
    spawn::plan(&o)?;
    let rt = super::lifecycle::runtime(g)?;
    let id = a.id.unwrap_or_else(spawn::default_id);
    let code = spawn::run(&rt, &id, &o).with_context(|| format!("spawn {id}"))?;
    Ok(code)
}

// ---- the command-line forms of the options ----

/// Parses a comma list such as `pid,net,uts` (OCI names `network`, `mount` accepted).
fn parse_ns_list(s: &str) -> anyhow::Result<Vec<NsType>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let t: NsType = part.parse().map_err(|e: String| anyhow!("--ns: {e}"))?;
        if !t.is_supported() {
            bail!(
                "--ns: namespace type {t} is not supported by this kernel (/proc/self/ns/{} does not exist): leave it out",
                t.proc_name()
            );
        }
        out.push(t);
    }
    if out.is_empty() {
        return Err(anyhow!(
            "--ns {s:?}: no namespace type given: use a comma list such as pid,net,uts, or --all"
        ));
    }
    Ok(out)
}

/// Parses `INSIDE:OUTSIDE:COUNT` (`flag` names the option in messages).
fn parse_id_range(s: &str, flag: &str) -> anyhow::Result<IdRange> {
    let parts: Vec<&str> = s.split(':').collect();
    let err = || {
        anyhow!("{flag} {s:?}: expected INSIDE:OUTSIDE:COUNT with non-negative integers and COUNT > 0, e.g. 0:100000:65536")
    };
    if parts.len() != 3 {
        return Err(err());
    }
    let n = |p: &str| p.trim().parse::<u32>().map_err(|_| err());
    let r = IdRange { inside: n(parts[0])?, outside: n(parts[1])?, count: n(parts[2])? };
    if r.count == 0
        || r.inside.checked_add(r.count - 1).is_none()
        || r.outside.checked_add(r.count - 1).is_none()
    {
        return Err(err());
    }
    Ok(r)
}

/// Parses `SRC:DST[:ro]`; a relative SRC is taken from the current directory.
fn parse_bind(s: &str) -> anyhow::Result<Bind> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        _ => {
            return Err(anyhow!(
                "--bind {s:?}: expected SRC:DST or SRC:DST:ro (DST an absolute path inside the sandbox)"
            ))
        }
    };
    if src.is_empty() || !dst.starts_with('/') {
        return Err(anyhow!(
            "--bind {s:?}: expected SRC:DST or SRC:DST:ro (DST an absolute path inside the sandbox)"
        ));
    }
    let source = std::fs::canonicalize(src).map_err(|e| anyhow!("--bind {s:?}: source {src}: {e}"))?;
    Ok(Bind { source, destination: PathBuf::from(dst), readonly: ro })
}

/// Parses `monotonic=SECS` or `boottime=SECS` (SECS may be negative and have a fraction).
fn parse_time_offset(s: &str) -> anyhow::Result<TimeOffset> {
    let err = || {
        anyhow!("--time-offset {s:?}: expected monotonic=SECS or boottime=SECS, e.g. monotonic=86400 or boottime=-1.5")
    };
    let (clock, val) = s.split_once('=').ok_or_else(err)?;
    let clock = match clock.trim() {
        "monotonic" => Clock::Monotonic,
        "boottime" => Clock::Boottime,
        _ => return Err(err()),
    };
    let val = val.trim();
    let (neg, digits) = match val.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, val.strip_prefix('+').unwrap_or(val)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty()
        || frac.len() > 9
        || !int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())
    {
        return Err(err());
    }
    let secs: i64 = if int.is_empty() { 0 } else { int.parse().map_err(|_| err())? };
    let nanos: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().map_err(|_| err())? };
    // The kernel wants nanos in [0, 1e9): -1.5 s is -2 s + 0.5e9 ns.
    let (secs, nanos) = match (neg, nanos) {
        (false, n) => (secs, n),
        (true, 0) => (-secs, 0),
        (true, n) => (-secs - 1, 1_000_000_000 - n),
    };
    Ok(TimeOffset { clock, secs, nanos })
}

/// Parses a size: bytes, or a number with k, m, g or t (powers of 1024; `b`/`ib` allowed).
fn parse_size(s: &str, flag: &str) -> anyhow::Result<i64> {
    let err = || anyhow!("{flag} {s:?}: expected a size in bytes, optionally with k, m, g or t, e.g. 512m");
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.strip_suffix("ib").or_else(|| lower.strip_suffix('b')).unwrap_or(&lower);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v = if num.contains('.') {
        let f: f64 = num.parse().map_err(|_| err())?;
        if !f.is_finite() || f <= 0.0 {
            return Err(err());
        }
        (f * mult as f64) as i64
    } else {
        num.parse::<i64>().map_err(|_| err())?.checked_mul(mult).ok_or_else(err)?
    };
    if v <= 0 {
        return Err(err());
    }
    Ok(v)
}

/// Parses a positive process count.
fn parse_pids(s: &str) -> anyhow::Result<i64> {
    match s.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(anyhow!("--pids {s:?}: expected a positive number of processes")),
    }
}

/// Parses a number of CPUs (0.01 or more).
fn parse_cpus(s: &str) -> anyhow::Result<f64> {
    match s.trim().parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.01 => Ok(f),
        _ => Err(anyhow!("--cpus {s:?}: expected a number of CPUs of 0.01 or more, e.g. 0.5")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn ns_list() {
        assert_eq!(parse_ns_list("pid,net").expect("test value"), vec![NsType::Pid, NsType::Net]);
        assert_eq!(parse_ns_list("network,mount").expect("test value"), vec![NsType::Net, NsType::Mnt]);
        let e = parse_ns_list("pid,bogus").expect_err("test error").to_string();
        assert!(e.contains("bogus") && !e.contains('\n'), "{e}");
        assert!(parse_ns_list(",").is_err());
    }

    #[test]
    fn id_ranges() {
        assert_eq!(
            parse_id_range("0:1000:1", "--uid-map").expect("test value"),
            IdRange { inside: 0, outside: 1000, count: 1 }
        );
        for b in ["0:1000", "a:b:c", "0:1:0", "0:1:1:1", "4294967295:0:2"] {
            assert!(parse_id_range(b, "--uid-map").is_err(), "{b}");
        }
    }

    #[test]
    fn time_offsets() {
        assert_eq!(
            parse_time_offset("monotonic=10").expect("test value"),
            TimeOffset { clock: Clock::Monotonic, secs: 10, nanos: 0 }
        );
        assert_eq!(
            parse_time_offset("boottime=-1.5").expect("test value"),
            TimeOffset { clock: Clock::Boottime, secs: -2, nanos: 500_000_000 }
        );
        assert_eq!(
            parse_time_offset("boottime=-3").expect("test value"),
            TimeOffset { clock: Clock::Boottime, secs: -3, nanos: 0 }
        );
        for b in ["realtime=1", "monotonic", "monotonic=x", "monotonic=1.0000000001", "monotonic="] {
            assert!(parse_time_offset(b).is_err(), "{b}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512m", "--memory").expect("test value"), 512 << 20);
        assert_eq!(parse_size("1G", "--memory").expect("test value"), 1 << 30);
        assert_eq!(parse_size("4096", "--memory").expect("test value"), 4096);
        assert_eq!(parse_size("64kb", "--memory").expect("test value"), 64 << 10);
        assert_eq!(parse_size("1.5k", "--memory").expect("test value"), 1536);
        for b in ["", "m", "-1", "0", "12x", "99999999999999999999"] {
            assert!(parse_size(b, "--memory").is_err(), "{b}");
        }
        assert!(parse_pids("0").is_err());
        assert!(parse_cpus("0.001").is_err());
        assert_eq!(parse_cpus("0.5").expect("test value"), 0.5);
    }

    #[test]
    fn binds() {
        let b = parse_bind("/etc:/mnt/etc:ro").expect("test value");
        assert!(b.readonly && b.destination == Path::new("/mnt/etc"));
        assert!(parse_bind("/etc:relative").is_err());
        assert!(parse_bind("/does/not/exist:/x").is_err());
        assert!(parse_bind("/etc:/x:rx").is_err());
    }
}
