//! Writing a new user namespace's uid and gid maps from the runtime (the parent).

use oci_spec::runtime::{Linux, LinuxIdMapping};

use crate::error::{Context, Error, Result};

fn render(maps: &[LinuxIdMapping]) -> String {
    maps.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect()
}

/// Writes /proc/PID/{uid_map,gid_map}. Root writes them directly; an unprivileged caller
/// may map only its own ids (after denying setgroups), or uses newuidmap/newgidmap for
/// subordinate ranges.
pub fn write_maps(pid: i32, linux: &Linux) -> Result<()> {
    let uids = linux.uid_mappings().clone().unwrap_or_default();
    let gids = linux.gid_mappings().clone().unwrap_or_default();
    let root = nix::unistd::geteuid().is_root();
    if root {
        write(pid, "uid_map", &render(&uids))?;
        write(pid, "gid_map", &render(&gids))?;
        return Ok(());
    }
    let me_u = nix::unistd::geteuid().as_raw();
    let me_g = nix::unistd::getegid().as_raw();
    let own_only = |maps: &[LinuxIdMapping], me: u32| maps.len() == 1 && maps[0].size() == 1 && maps[0].host_id() == me;
    if own_only(&uids, me_u) && own_only(&gids, me_g) {
        write(pid, "uid_map", &render(&uids))?;
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny").ctx(|| "writing setgroups deny".into())?;
        write(pid, "gid_map", &render(&gids))?;
        return Ok(());
    }
    helper("newuidmap", pid, &uids)?;
    helper("newgidmap", pid, &gids)
}

fn write(pid: i32, file: &str, text: &str) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/{file}"), text).map_err(|e| {
        Error::Config(format!(
            "linux.{}: writing {file} ({}): {e}: check that the host ids exist and are not mapped twice",
            if file == "uid_map" { "uidMappings" } else { "gidMappings" },
            text.trim().replace('\n', ", ")
        ))
    })
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
