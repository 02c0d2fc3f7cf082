//! The systemd cgroup driver: a container's cgroup is a transient scope unit that systemd
//! creates (`StartTransientUnit`, `Delegate=yes`), as runc's systemd driver does.
//!
//! systemd owns the unit and the limits it knows as unit properties (MemoryMax,
//! CPUQuotaPerSecUSec, TasksMax, CPUShares/CPUWeight, AllowedCPUs): they are set on the
//! unit, so a `systemctl daemon-reload` keeps them. Everything else (and, again, the same
//! values) is written to the cgroup files by the cgroupfs code, as runc does.
//!
//! D-Bus goes through zbus's blocking API: no async runtime reaches the runtime. It talks
//! to the system bus (dbus-daemon). runc as root uses systemd's private socket
//! (/run/systemd/private) instead; zbus 5.19 panics on the replies systemd sends there
//! (their sender field is not a unique name), so karton needs dbus running.

use std::collections::HashMap;
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use zbus::blocking::Connection;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};

use crate::Error;

/// The system bus's default socket.
pub const SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";

/// How long start and stop wait for systemd's job to finish.
const JOB_TIMEOUT: Duration = Duration::from_secs(10);

/// A container's unit: what `state.json` keeps so that update and delete find it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// e.g. "karton-abc.scope" (or "x.slice" when cgroupsPath names a slice).
    pub name: String,
    /// The slice it lives in, e.g. "system.slice".
    pub slice: String,
}

impl Unit {
    /// `linux.cgroupsPath` in runc's systemd form `slice:prefix:name` → the unit and its
    /// cgroup path. An empty slice is system.slice; a name ending in `.slice` is a slice
    /// unit itself; no cgroupsPath at all is `:karton:<id>`.
    pub fn parse(cgroups_path: Option<&str>, id: &str) -> Result<(Unit, String), Error> {
        let raw =
            cgroups_path.filter(|p| !p.is_empty()).map(str::to_string).unwrap_or(format!(":karton:{id}"));
        let bad = |reason: &str| Error::InvalidPath { path: raw.clone(), reason: reason.to_string() };
        let parts: Vec<&str> = raw.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(bad(
                "--systemd-cgroup needs the form slice:prefix:name (e.g. system.slice:karton:ID; an empty slice means system.slice)",
            ));
        };
        if name.is_empty() || name.contains('/') || prefix.contains('/') {
            return Err(bad("name is empty or has a '/': slice:prefix:name names a unit, not a path"));
        }
        let slice = if slice.is_empty() { "system.slice" } else { slice };
        let unit = if name.ends_with(".slice") {
            name.to_string()
        } else if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        let parent = expand_slice(slice).map_err(|r| bad(&r))?;
        let path = if unit.ends_with(".slice") {
            // A slice's cgroup sits where its own name puts it, not under `slice`.
            expand_slice(&unit).map_err(|r| bad(&r))?
        } else {
            format!("{}/{unit}", parent.trim_end_matches('/'))
        };
        Ok((Unit { name: unit, slice: slice.to_string() }, path))
    }
}

/// runc's ExpandSlice: "a-b-c.slice" → "/a.slice/a-b.slice/a-b-c.slice", "-.slice" → "/".
pub fn expand_slice(slice: &str) -> Result<String, String> {
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(format!("{slice:?} is not a slice name (it must end in .slice)"));
    };
    if slice.contains('/') {
        return Err(format!("{slice:?}: a slice name has no '/'"));
    }
    if stem == "-" {
        return Ok("/".into());
    }
    if stem.is_empty() || stem.starts_with('-') || stem.ends_with('-') || stem.contains("--") {
        return Err(format!("{slice:?}: dashes separate parent slices and cannot lead, trail or repeat"));
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        prefix.push_str(part);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
        prefix.push('-');
    }
    Ok(path)
}

/// A unit property as StartTransientUnit and SetUnitProperties take it.
pub type Property = (&'static str, OwnedValue);

fn prop<'a>(name: &'static str, v: impl Into<Value<'a>>) -> Result<Property, Error> {
    let value = OwnedValue::try_from(v.into()).map_err(|e| dbus_err("building property", name, e))?;
    Ok((name, value))
}

/// The unit properties for the limits systemd owns. `v1`: the host drives cpu through
/// cgroup v1 (CPUShares there; CPUWeight and AllowedCPUs on cgroup2).
pub fn resource_properties(
    res: &oci_spec::runtime::LinuxResources,
    v1_cpu: bool,
) -> Result<Vec<Property>, Error> {
    let mut out = Vec::new();
    if let Some(m) = res.memory() {
        match m.limit() {
            Some(l) if l > 0 => out.push(prop("MemoryMax", l as u64)?),
            Some(-1) => out.push(prop("MemoryMax", u64::MAX)?),
            _ => {}
        }
    }
    if let Some(p) = res.pids() {
        let max = p.limit();
        out.push(prop("TasksMax", if max > 0 { max as u64 } else { u64::MAX })?);
    }
    if let Some(c) = res.cpu() {
        if let Some(shares) = c.shares().filter(|s| *s > 0) {
            if v1_cpu {
                out.push(prop("CPUShares", shares)?);
            } else {
                out.push(prop("CPUWeight", crate::shares_to_weight(shares))?);
            }
        }
        let period = c.period().filter(|p| *p > 0).unwrap_or(100_000);
        if let Some(q) = c.quota() {
            if c.period().is_some_and(|p| p > 0) {
                out.push(prop("CPUQuotaPeriodUSec", period)?);
            }
            // systemd counts quota per second of wall time; round up to its 10 ms grain.
            let per_sec = if q > 0 {
                let us = (q as u64).saturating_mul(1_000_000) / period;
                us.div_ceil(10_000) * 10_000
            } else {
                u64::MAX
            };
            out.push(prop("CPUQuotaPerSecUSec", per_sec)?);
        }
        if !v1_cpu {
            if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
                out.push(prop("AllowedCPUs", cpu_mask(cpus)?)?);
            }
            if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
                out.push(prop("AllowedMemoryNodes", cpu_mask(mems)?)?);
            }
        }
    }
    Ok(out)
}

/// "0-2,5" → systemd's CPU bitmask (byte i bit j = CPU 8i+j).
fn cpu_mask(list: &str) -> Result<Vec<u8>, Error> {
    let bad = || Error::invalid("cpu.cpus", list, "expected a list such as 0-3,6");
    let mut mask = Vec::new();
    for part in list.split(',').map(str::trim) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a > b || b > 8191 {
            return Err(bad());
        }
        for cpu in a..=b {
            if mask.len() <= cpu / 8 {
                mask.resize(cpu / 8 + 1, 0);
            }
            mask[cpu / 8] |= 1 << (cpu % 8);
        }
    }
    Ok(mask)
}

fn dbus_err(op: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::Systemd { op: format!("{op} {what}"), reason: e.to_string() }
}

/// Fails early, before any process exists, when the system bus's socket is missing. Only
/// a stat: connecting would start zbus's executor thread, and create clones its init from
/// a single-threaded process.
pub fn check_reachable() -> Result<(), Error> {
    if std::env::var_os("DBUS_SYSTEM_BUS_ADDRESS").is_some() {
        return Ok(());
    }
    match std::fs::metadata(SYSTEM_BUS_SOCKET) {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::NoSystemd {
            socket: format!("unix:path={SYSTEM_BUS_SOCKET}"),
            reason: format!("{e} (no systemd with dbus running here?)"),
        }),
    }
}

/// A connection to systemd's manager.
pub struct Manager {
    conn: Connection,
}

impl Manager {
    /// Connects to the system bus; the error names the socket and the fix.
    pub fn connect() -> Result<Manager, Error> {
        Connection::system().map(|conn| Manager { conn }).map_err(|e| Error::NoSystemd {
            socket: std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
                .unwrap_or_else(|_| format!("unix:path={SYSTEM_BUS_SOCKET}")),
            reason: e.to_string(),
        })
    }

    fn call<B, R>(&self, path: &str, iface: &str, method: &str, body: &B) -> Result<R, zbus::Error>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
    {
        let msg = self.conn.call_method(Some(DEST), path, Some(iface), method, body)?;
        msg.body().deserialize::<R>()
    }

    /// Starts the transient unit with `props` (PIDs, Delegate and Slice added here) and
    /// waits until systemd reports it active.
    pub fn start(&self, unit: &Unit, pid: i32, mut props: Vec<Property>) -> Result<(), Error> {
        props.push(prop("Description", format!("karton container {}", unit.name))?);
        props.push(prop("Delegate", true)?);
        // As runc: the unit does not pull in or order against basic.target and friends.
        props.push(prop("DefaultDependencies", false)?);
        for acct in ["MemoryAccounting", "CPUAccounting", "TasksAccounting", "IOAccounting"] {
            props.push(prop(acct, true)?);
        }
        if unit.name.ends_with(".scope") {
            props.push(prop("Slice", unit.slice.clone())?);
            props.push(prop("PIDs", vec![pid as u32])?);
        } else {
            // A slice holds no processes of its own: the caller moves the pid in.
            props.push(prop("Wants", unit.slice.clone())?);
        }
        // A failed unit of the same name (an earlier container) blocks the start.
        let _: Result<(), _> = self.call(PATH, MANAGER, "ResetFailedUnit", &(unit.name.as_str(),));
        let aux: Vec<(&str, Vec<Property>)> = Vec::new();
        let body = (unit.name.as_str(), "replace", props, aux);
        let _job: OwnedObjectPath = self.call(PATH, MANAGER, "StartTransientUnit", &body).map_err(|e| {
            let mut reason = e.to_string();
            if reason.contains("UnitExists") || reason.contains("already exists") {
                reason.push_str(&format!(
                    ": another container (or leftover) uses this unit: choose another linux.cgroupsPath, or `systemctl stop {}`",
                    unit.name
                ));
            }
            Error::Systemd { op: format!("StartTransientUnit {}", unit.name), reason }
        })?;
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            match self.active_state(&unit.name)?.as_deref() {
                Some("active") => return Ok(()),
                Some("failed") => {
                    return Err(Error::Systemd {
                        op: format!("starting {}", unit.name),
                        reason: format!(
                            "the unit failed: see `systemctl status {}` and `journalctl -u {}`",
                            unit.name, unit.name
                        ),
                    })
                }
                state if Instant::now() >= deadline => {
                    return Err(Error::Systemd {
                        op: format!("starting {}", unit.name),
                        reason: format!("still {state:?} after {} s", JOB_TIMEOUT.as_secs()),
                    })
                }
                _ => sleep(Duration::from_millis(2)),
            }
        }
    }

    /// Sets properties on a running unit (runtime only: they go when the unit goes).
    pub fn set_properties(&self, unit: &str, props: Vec<Property>) -> Result<(), Error> {
        if props.is_empty() {
            return Ok(());
        }
        let () = self
            .call(PATH, MANAGER, "SetUnitProperties", &(unit, true, props))
            .map_err(|e| dbus_err("SetUnitProperties", unit, e))?;
        Ok(())
    }

    /// Stops the unit and waits until it is gone (failed units are reset, so nothing of
    /// it stays listed). A unit that no longer exists is fine.
    pub fn stop(&self, unit: &str) -> Result<(), Error> {
        if self.active_state(unit)?.is_none() {
            return Ok(());
        }
        let stopped: Result<OwnedObjectPath, zbus::Error> =
            self.call(PATH, MANAGER, "StopUnit", &(unit, "replace"));
        if let Err(e) = stopped {
            if !e.to_string().contains("NoSuchUnit") {
                return Err(dbus_err("StopUnit", unit, e));
            }
        }
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            match self.active_state(unit)?.as_deref() {
                None => return Ok(()),
                Some("inactive") | Some("failed") => {
                    let _: Result<(), _> = self.call(PATH, MANAGER, "ResetFailedUnit", &(unit,));
                    // A transient unit is unloaded once inactive; one more round sees it gone.
                    if self.active_state(unit)?.is_none() || Instant::now() >= deadline {
                        return Ok(());
                    }
                }
                state if Instant::now() >= deadline => {
                    return Err(Error::Systemd {
                        op: format!("stopping {unit}"),
                        reason: format!("still {state:?} after {} s", JOB_TIMEOUT.as_secs()),
                    })
                }
                _ => {}
            }
            sleep(Duration::from_millis(2));
        }
    }

    /// The unit's ActiveState, or None when systemd does not have it loaded.
    pub fn active_state(&self, unit: &str) -> Result<Option<String>, Error> {
        let path: OwnedObjectPath = match self.call(PATH, MANAGER, "GetUnit", &(unit,)) {
            Ok(p) => p,
            Err(e) if e.to_string().contains("NoSuchUnit") || e.to_string().contains("not loaded") => {
                return Ok(None)
            }
            Err(e) => return Err(dbus_err("GetUnit", unit, e)),
        };
        let v: OwnedValue = self
            .call(path.as_str(), "org.freedesktop.DBus.Properties", "Get", &(UNIT, "ActiveState"))
            .map_err(|e| dbus_err("reading ActiveState of", unit, e))?;
        Ok(String::try_from(v).ok())
    }

    /// All properties of the unit's type interface (e.g. Scope), for diagnostics and tests.
    pub fn properties(&self, unit: &str, iface: &str) -> Result<HashMap<String, OwnedValue>, Error> {
        let path: OwnedObjectPath =
            self.call(PATH, MANAGER, "GetUnit", &(unit,)).map_err(|e| dbus_err("GetUnit", unit, e))?;
        self.call(path.as_str(), "org.freedesktop.DBus.Properties", "GetAll", &(iface,))
            .map_err(|e| dbus_err("GetAll", unit, e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_runc_paths() {
        let (u, p) = Unit::parse(Some("system.slice:karton:abc"), "abc").unwrap();
        assert_eq!(u, Unit { name: "karton-abc.scope".into(), slice: "system.slice".into() });
        assert_eq!(p, "/system.slice/karton-abc.scope");
        let (u, p) = Unit::parse(Some(":karton:abc"), "abc").unwrap();
        assert_eq!(u.slice, "system.slice");
        assert_eq!(p, "/system.slice/karton-abc.scope");
        let (u, p) = Unit::parse(None, "x").unwrap();
        assert_eq!((u.name.as_str(), p.as_str()), ("karton-x.scope", "/system.slice/karton-x.scope"));
        let (u, p) = Unit::parse(Some("kubepods-burstable.slice:cri:pod1"), "c").unwrap();
        assert_eq!(u.name, "cri-pod1.scope");
        assert_eq!(p, "/kubepods.slice/kubepods-burstable.slice/cri-pod1.scope");
        let (u, p) = Unit::parse(Some("system.slice::ctr"), "c").unwrap();
        assert_eq!(u.name, "ctr.scope");
        assert_eq!(p, "/system.slice/ctr.scope");
        let (u, p) = Unit::parse(Some("system.slice:x:kubepods-pod1.slice"), "c").unwrap();
        assert_eq!(u.name, "kubepods-pod1.slice");
        assert_eq!(p, "/kubepods.slice/kubepods-pod1.slice");
        assert!(Unit::parse(Some("/karton/abc"), "abc").is_err());
        assert!(Unit::parse(Some("a:b"), "abc").is_err());
        assert!(Unit::parse(Some("system:k:a"), "a").is_err());
        assert!(Unit::parse(Some("a--b.slice:k:a"), "a").is_err());
    }

    #[test]
    fn expands_slices() {
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        assert_eq!(expand_slice("a-b-c.slice").unwrap(), "/a.slice/a-b.slice/a-b-c.slice");
        assert!(expand_slice("-a.slice").is_err());
    }

    #[test]
    fn masks_and_quota() {
        assert_eq!(cpu_mask("0-2,9").unwrap(), vec![0b0000_0111, 0b0000_0010]);
        assert!(cpu_mask("3-1").is_err());
        let res: oci_spec::runtime::LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":67108864},"pids":{"limit":32},"cpu":{"quota":50000,"period":100000,"shares":512}}"#,
        )
        .unwrap();
        let props = resource_properties(&res, true).unwrap();
        let get = |n: &str| {
            props.iter().find(|(k, _)| *k == n).map(|(_, v)| u64::try_from(v.try_clone().unwrap()).unwrap())
        };
        assert_eq!(get("MemoryMax"), Some(64 << 20));
        assert_eq!(get("TasksMax"), Some(32));
        assert_eq!(get("CPUShares"), Some(512));
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(500_000));
    }
}
