//! Writing a new user namespace's uid and gid maps from the runtime (the parent).

use karton_ns::idmap::{IdMap, IdMapEntry};
use oci_spec::runtime::{Linux, LinuxIdMapping};

use crate::error::{Error, Result};

fn to_map(maps: &[LinuxIdMapping]) -> IdMap {
    IdMap(
        maps.iter()
            .map(|m| IdMapEntry { inside: m.container_id(), outside: m.host_id(), count: m.size() })
            .collect(),
    )
}

/// Writes /proc/PID/{uid_map,gid_map}. Root writes them directly; an unprivileged caller
/// may map only its own ids (after denying setgroups), or uses newuidmap/newgidmap for
/// subordinate ranges.
pub fn write_maps(pid: i32, linux: &Linux) -> Result<()> {
    let uids = linux.uid_mappings().clone().unwrap_or_default();
    let gids = linux.gid_mappings().clone().unwrap_or_default();
    let root = nix::unistd::geteuid().is_root();
    let own_only =
        |maps: &[LinuxIdMapping], me: u32| maps.len() == 1 && maps[0].size() == 1 && maps[0].host_id() == me;
    let direct = root
        || (own_only(&uids, nix::unistd::geteuid().as_raw())
            && own_only(&gids, nix::unistd::getegid().as_raw()));
    if direct {
        // Unprivileged, only one's own ids may be mapped, and only after denying setgroups.
        return karton_ns::idmap::write_maps(pid, &to_map(&uids), &to_map(&gids), !root)
            .map_err(|e| Error::Config(format!("linux.uidMappings/gidMappings: {e}")));
    }
    helper("newuidmap", pid, &uids)?;
    helper("newgidmap", pid, &gids)
}

fn helper(tool: &str, pid: i32, maps: &[LinuxIdMapping]) -> Result<()> {
    let mut args = vec![pid.to_string()];
    for m in maps {
        args.extend([m.container_id().to_string(), m.host_id().to_string(), m.size().to_string()]);
    }
    let out = std::process::Command::new(tool).args(&args).output().map_err(|e| {
        Error::Unsupported(format!(
            "mapping more than your own id needs {tool}: {e}: install the uidmap package and add your user to /etc/subuid and /etc/subgid"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::Config(format!(
            "{tool} {}: {}: check /etc/subuid and /etc/subgid",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}
