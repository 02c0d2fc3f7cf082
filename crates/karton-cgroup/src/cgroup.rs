//! A container's cgroup across every hierarchy: create, join, freeze, kill, delete.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::host::dir_in;
use crate::{fsutil, resources, stats, systemd, Error, Host, Layout, Stats};

/// Parent of containers' cgroups when `linux.cgroupsPath` is absent or relative.
pub const DEFAULT_PARENT: &str = "/karton";

/// How long delete retries an rmdir that fails with EBUSY, and freeze waits for FROZEN.
const DELETE_TIMEOUT: Duration = Duration::from_millis(1000);
const FREEZE_TIMEOUT: Duration = Duration::from_millis(2000);

/// A container's cgroup in all hierarchies. Plain paths only, so it survives a trip
/// through `state.json` and works from any later process.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    /// The cgroup path, absolute within each hierarchy (e.g. "/karton/abc").
    path: String,
    layout: Layout,
    /// v1 controller (or "name=systemd") → this cgroup's directory in its hierarchy.
    v1: BTreeMap<String, PathBuf>,
    /// This cgroup's directory in the cgroup2 hierarchy.
    v2: Option<PathBuf>,
    /// The cgroup2 mount point: ancestors between it and `v2` get controllers enabled.
    v2_mount: Option<PathBuf>,
    /// Controllers cgroup2 has and no v1 hierarchy has: these are driven through cgroup2.
    v2_controllers: Vec<String>,
    /// Directories this cgroup made, in creation order (parents before children).
    created: Vec<PathBuf>,
    /// With the systemd driver: the transient unit that owns this cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    systemd: Option<systemd::Unit>,
}

/// OOM counters for `events` to poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OomEvents {
    /// Times the cgroup hit its limit and the OOM path ran (v2 `oom`; v1: same as oom_kill,
    /// v1 has no separate counter).
    pub oom: u64,
    /// Processes the OOM killer killed in this cgroup.
    pub oom_kill: u64,
    /// v1 with disableOOMKiller: tasks are currently paused waiting for memory.
    pub under_oom: bool,
}

impl Cgroup {
    /// Creates the cgroup in every hierarchy (nested), recording which directories it made.
    ///
    /// `cgroups_path` is OCI `linux.cgroupsPath`: `None` → "/karton/<id>", relative →
    /// under "/karton/", absolute → as given. An existing directory is reused only while
    /// it holds no processes; delete then leaves it, unless it is under "/karton/".
    pub fn create(host: &Host, cgroups_path: Option<&str>, id: &str) -> Result<Cgroup, Error> {
        let mut cg = Cgroup::plan(host, cgroups_path, id)?;
        cg.make()?;
        Ok(cg)
    }

    /// The directories of cgroup `path` in every hierarchy of `host`; nothing created yet.
    fn at(host: &Host, path: String) -> Cgroup {
        let mut v1 = BTreeMap::new();
        for (ctrl, m) in host.v1_controllers() {
            v1.insert(ctrl.to_string(), dir_in(&m.mount_point, &m.root, &path));
        }
        let (v2, v2_mount, v2_controllers) = match host.v2_mount() {
            Some(m) => (
                Some(dir_in(&m.mount_point, &m.root, &path)),
                Some(m.mount_point.clone()),
                m.controllers.iter().filter(|c| !v1.contains_key(*c)).cloned().collect(),
            ),
            None => (None, None, Vec::new()),
        };
        Cgroup {
            path,
            layout: host.layout(),
            v1,
            v2,
            v2_mount,
            v2_controllers,
            created: Vec::new(),
            systemd: None,
        }
    }

    /// The first half of [`Cgroup::create`], touching nothing: resolves the directories,
    /// refuses a busy cgroup, and lists in `created` every directory that [`Cgroup::make`]
    /// will make (those missing now). Record the result before calling `make`: whoever
    /// finds the record after a crash can remove exactly what was made.
    pub fn plan(host: &Host, cgroups_path: Option<&str>, id: &str) -> Result<Cgroup, Error> {
        let path = resolve_path(cgroups_path, id)?;
        let mut cg = Cgroup::at(host, path);

        // Refuse someone else's busy cgroup before making anything. The whole subtree
        // counts: kill --all, ps and delete --force walk it, so a process in a sub-cgroup
        // would be taken over (and killed) as the container's.
        // An empty leaf left under karton's own parent (a crashed create or delete) is
        // karton's: adopt it so that delete removes it. Elsewhere an existing directory
        // stays someone else's. The busy check tells whether each directory exists, so
        // the plan costs no further lookups for the usual case (a new container).
        let ours = cg.path.starts_with(&format!("{DEFAULT_PARENT}/"));
        let mut planned = Vec::new();
        let mut busy = None;
        for dir in cg.dirs() {
            match first_busy(dir)? {
                Probe::Busy(path, pids) => {
                    busy = Some((path, pids));
                    break;
                }
                Probe::Idle => {
                    if ours {
                        planned.push(dir.to_path_buf());
                    }
                }
                Probe::Missing => {
                    let mut missing = vec![dir.to_path_buf()];
                    let mut d = dir.parent();
                    while let Some(p) = d.filter(|p| !p.exists()) {
                        missing.push(p.to_path_buf());
                        d = p.parent();
                    }
                    planned.extend(missing.into_iter().rev());
                }
            }
        }
        if let Some((path, pids)) = busy {
            return Err(Error::NotEmpty { cgroup: cg.path.clone(), path, pids });
        }
        cg.created = planned;
        Ok(cg)
    }

    /// The second half of [`Cgroup::create`]: makes the planned directories (parents
    /// first) and fills cpuset. On failure it removes what it made.
    pub fn make(&mut self) -> Result<(), Error> {
        let planned = std::mem::take(&mut self.created);
        let ours = self.path.starts_with(&format!("{DEFAULT_PARENT}/"));
        let leaves: BTreeSet<PathBuf> = self.dirs().into_iter().map(Path::to_path_buf).collect();
        for dir in &planned {
            // Planned parents come first, so a plain mkdir normally does it; lookups only
            // when it fails.
            let made = match fs::create_dir(dir) {
                Ok(()) => {
                    self.created.push(dir.clone());
                    Ok(())
                }
                // An adopted leaf of karton's parent stays ours; anything else that exists
                // now was made by someone else in between.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if ours && leaves.contains(dir) {
                        self.created.push(dir.clone());
                    }
                    Ok(())
                }
                // A parent vanished (another container's delete removed the shared one).
                Err(e) if e.kind() == io::ErrorKind::NotFound => mkdir_nested(dir, &mut self.created),
                Err(e) => Err(Error::io("creating cgroup", dir, e)),
            };
            if let Err(e) = made {
                // Leave nothing half-made behind.
                let _ = self.remove_created(Instant::now());
                return Err(e);
            }
        }
        if let Err(e) = self.init_cpuset() {
            let _ = self.remove_created(Instant::now());
            return Err(e);
        }
        Ok(())
    }

    /// The systemd driver's half of create, touching nothing (it checks that the system
    /// bus's socket exists): `cgroups_path` in runc's
    /// `slice:prefix:name` form → the unit and its cgroup's directories. Record the
    /// result, then [`Cgroup::start_unit`] once the init's pid exists.
    pub fn plan_systemd(host: &Host, cgroups_path: Option<&str>, id: &str) -> Result<Cgroup, Error> {
        let (unit, path) = systemd::Unit::parse(cgroups_path, id)?;
        systemd::check_reachable()?;
        let mut cg = Cgroup::at(host, path);
        cg.systemd = Some(unit);
        Ok(cg)
    }

    /// Starts the transient unit with `pid` in it and the limits systemd owns as unit
    /// properties, then makes the directories systemd does not (v1 hierarchies it leaves
    /// alone, such as cpuset and freezer), recording those in `created`. The caller then
    /// applies all of `linux.resources` through cgroupfs ([`apply`](Self::apply)) and
    /// joins `pid` everywhere ([`add_pid`](Self::add_pid)).
    pub fn start_unit(
        &mut self,
        pid: i32,
        res: Option<&oci_spec::runtime::LinuxResources>,
    ) -> Result<(), Error> {
        let Some(unit) = self.systemd.clone() else { return Ok(()) };
        let props = match res {
            Some(r) => systemd::resource_properties(r, self.v1.contains_key("cpu"))?,
            None => Vec::new(),
        };
        systemd::Manager::connect()?.start(&unit, pid, props)?;
        for dir in self.dirs().into_iter().map(Path::to_path_buf).collect::<Vec<_>>() {
            if !dir.is_dir() {
                mkdir_nested(&dir, &mut self.created)?;
            }
        }
        self.init_cpuset()
    }

    /// The systemd unit that owns this cgroup (systemd driver only).
    pub fn systemd_unit(&self) -> Option<&systemd::Unit> {
        self.systemd.as_ref()
    }

    /// The cgroup path within each hierarchy, e.g. "/karton/abc".
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The cgroup2 directory (the unified one on hybrid hosts), for CLONE_INTO_CGROUP.
    pub fn v2_dir(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// This cgroup's directory in the v1 hierarchy of `controller`.
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1.get(controller).map(PathBuf::as_path)
    }

    /// Controllers driven through cgroup2 (all of cgroup2's on a pure v2 host).
    pub fn v2_controllers(&self) -> &[String] {
        &self.v2_controllers
    }

    /// Directories this cgroup created (delete removes exactly these).
    pub fn created(&self) -> &[PathBuf] {
        &self.created
    }

    /// Every distinct directory of this cgroup: one per v1 hierarchy, plus cgroup2.
    pub fn dirs(&self) -> Vec<&Path> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for d in self.v1.values().chain(self.v2.iter()) {
            if seen.insert(d.as_path()) {
                out.push(d.as_path());
            }
        }
        out
    }

    /// Moves `pid` into the cgroup in every hierarchy; `skip_v2` when CLONE_INTO_CGROUP
    /// already put it in the cgroup2 directory.
    pub fn add_pid(&self, pid: i32, skip_v2: bool) -> Result<(), Error> {
        let value = pid.to_string();
        for d in self.v1_dirs() {
            fsutil::write("cgroup.procs", &d.join("cgroup.procs"), &value)?;
        }
        if !skip_v2 {
            self.add_pid_v2(pid)?;
        }
        Ok(())
    }

    /// Moves `pid` into the cgroup2 directory only (v1 hierarchies joined otherwise, e.g.
    /// by the process itself through [`join_v1_self`]).
    pub fn add_pid_v2(&self, pid: i32) -> Result<(), Error> {
        match &self.v2 {
            Some(d) => fsutil::write("cgroup.procs", &d.join("cgroup.procs"), &pid.to_string()),
            None => Ok(()),
        }
    }

    /// This cgroup's v1 directories, each once (co-mounted controllers share one).
    fn v1_dirs(&self) -> Vec<&Path> {
        let mut seen = BTreeSet::new();
        self.v1.values().map(PathBuf::as_path).filter(|d| seen.insert(*d)).collect()
    }

    /// The `tasks` file of each v1 directory, opened for writing (close-on-exec), for a
    /// process to join itself with [`join_v1_self`] — typically a child that inherits them.
    /// Why not cgroup.procs with a pid: that write takes the kernel's global
    /// cgroup_threadgroup_rwsem for writing, whose first writer after a quiet spell waits
    /// for an RCU grace period (8–16 ms on the development VM, every container start that
    /// is not part of a burst); a thread writing "0" (itself) to `tasks` skips that lock.
    /// The kernel checks the write against the credentials of whoever opened the file, so
    /// a child in a new user namespace can still use them.
    pub fn v1_task_files(&self) -> Result<Vec<(PathBuf, fs::File)>, Error> {
        self.v1_dirs()
            .into_iter()
            .map(|d| {
                let path = d.join("tasks");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(|f| (path.clone(), f))
                    .map_err(|e| Error::io("opening", &path, e))
            })
            .collect()
    }

    /// The same cgroup with its directories moved down into the sub-cgroups that
    /// `exec --cgroup` names (runc 1.2's `[controller[,controller]:]path`, repeatable; a
    /// path without a controller applies to every hierarchy and must be the only one).
    /// Paths are relative to the container's cgroup: `..` is refused, and each named
    /// sub-cgroup must already exist (karton creates none). The result is for joining a
    /// process ([`add_pid`](Self::add_pid), [`v2_dir`](Self::v2_dir)); it owns nothing.
    pub fn sub_cgroup(&self, args: &[String]) -> Result<Cgroup, Error> {
        let subs = parse_sub_cgroup_args(args)?;
        let mut out = self.clone();
        out.created = Vec::new();
        if subs.is_empty() {
            return Ok(out);
        }
        self.check_sub_controllers(&subs)?;
        let bases: BTreeSet<PathBuf> = self.v1.values().cloned().collect();
        for base in bases {
            let mut ctrls = self.v1.iter().filter(|(_, d)| **d == base).map(|(c, _)| c);
            if let Some((sub, arg)) = pick_sub(&subs, &base, &mut ctrls)? {
                let dir = join_sub(&base, &sub, &arg)?;
                for d in out.v1.values_mut().filter(|d| **d == base) {
                    *d = dir.clone();
                }
            }
        }
        if let Some(base) = self.v2.clone() {
            if let Some((sub, arg)) = pick_sub(&subs, &base, &mut self.v2_controllers.iter())? {
                out.v2 = Some(join_sub(&base, &sub, &arg)?);
            }
        }
        Ok(out)
    }

    /// Every controller `exec --cgroup` names exists here, in v1 or in cgroup2.
    fn check_sub_controllers(&self, subs: &SubCgroups) -> Result<(), Error> {
        let known = |c: &str| self.v1.contains_key(c) || self.v2_controllers.iter().any(|v| v == c);
        for (ctrl, (_, arg)) in subs {
            if !ctrl.is_empty() && !known(ctrl) {
                let mut names: Vec<&str> = self.v1.keys().map(String::as_str).collect();
                names.extend(self.v2_controllers.iter().map(String::as_str));
                return Err(Error::SubCgroup {
                    arg: arg.clone(),
                    reason: format!("no controller {ctrl:?} on this host: use one of {}", names.join(", ")),
                });
            }
        }
        Ok(())
    }

    /// Applies all of `linux.resources`. A key the host cannot apply is an error naming
    /// the key; nothing is written if any key is refused up front.
    pub fn apply(&self, res: &oci_spec::runtime::LinuxResources) -> Result<(), Error> {
        let ops = resources::plan(self, res, false)?;
        resources::execute(&ops)
    }

    /// Like [`apply`](Self::apply), all or nothing: when a write fails, the values read
    /// before the update are written back and the error is returned.
    /// With the systemd driver the unit's properties change first (SetUnitProperties).
    pub fn update(&self, res: &oci_spec::runtime::LinuxResources) -> Result<(), Error> {
        let ops = resources::plan(self, res, true)?;
        if let Some(unit) = &self.systemd {
            let props = systemd::resource_properties(res, self.v1.contains_key("cpu"))?;
            systemd::Manager::connect()?.set_properties(&unit.name, props)?;
        }
        let saved = resources::snapshot(&ops)?;
        match resources::execute_upto(&ops) {
            Ok(()) => Ok(()),
            Err((failed, e)) => match resources::restore(resources::to_restore(&ops, &saved, failed)) {
                Ok(()) => Err(Error::RolledBack(Box::new(e))),
                Err(r) => Err(Error::RestoreFailed { error: Box::new(e), restore: Box::new(r) }),
            },
        }
    }

    /// Freezes every process (v1 freezer, else cgroup2 cgroup.freeze) and waits until the
    /// kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<(), Error> {
        if let Some(d) = self.v1.get("freezer") {
            let state = d.join("freezer.state");
            let start = Instant::now();
            loop {
                // Re-writing FROZEN retries tasks that were busy the last time round.
                fsutil::write("freeze", &state, "FROZEN")?;
                let now = fsutil::read(&state)?;
                if now.trim() == "FROZEN" {
                    return Ok(());
                }
                if start.elapsed() > FREEZE_TIMEOUT {
                    let _ = fsutil::write("thaw", &state, "THAWED");
                    return Err(Error::FreezeTimeout {
                        path: state,
                        ms: FREEZE_TIMEOUT.as_millis() as u64,
                        state: now.trim().to_string(),
                    });
                }
                sleep(Duration::from_millis(1));
            }
        }
        let d = self.v2_freeze_dir().ok_or(Error::NoFreezer)?;
        fsutil::write("freeze", &d.join("cgroup.freeze"), "1")?;
        let events = d.join("cgroup.events");
        let start = Instant::now();
        loop {
            let ev = fsutil::read(&events)?;
            if fsutil::keyed_value(&ev, "frozen") == Some(1) {
                return Ok(());
            }
            if start.elapsed() > FREEZE_TIMEOUT {
                let _ = fsutil::write("thaw", &d.join("cgroup.freeze"), "0");
                return Err(Error::FreezeTimeout {
                    path: events,
                    ms: FREEZE_TIMEOUT.as_millis() as u64,
                    state: ev.trim().replace('\n', ", "),
                });
            }
            sleep(Duration::from_millis(1));
        }
    }

    pub fn thaw(&self) -> Result<(), Error> {
        if let Some(d) = self.v1.get("freezer") {
            return fsutil::write("thaw", &d.join("freezer.state"), "THAWED");
        }
        let d = self.v2_freeze_dir().ok_or(Error::NoFreezer)?;
        fsutil::write("thaw", &d.join("cgroup.freeze"), "0")
    }

    pub fn is_frozen(&self) -> Result<bool, Error> {
        if let Some(d) = self.v1.get("freezer") {
            return Ok(fsutil::read(&d.join("freezer.state"))?.trim() == "FROZEN");
        }
        // The requested state, as runc reads it: cgroup.events says "frozen 0" for a moment
        // whenever a task leaves the frozen state (a fatal signal, a new task joining),
        // while the cgroup is still paused.
        let d = self.v2_freeze_dir().ok_or(Error::NoFreezer)?;
        Ok(fsutil::read(&d.join("cgroup.freeze"))?.trim() == "1")
    }

    /// cgroup2's freezer: any cgroup2 directory has cgroup.freeze (kernel ≥ 5.2).
    fn v2_freeze_dir(&self) -> Option<&Path> {
        self.v2.as_deref().filter(|d| d.join("cgroup.freeze").exists())
    }

    /// Every process in the cgroup, in all hierarchies and sub-cgroups, sorted.
    pub fn pids(&self) -> Result<Vec<i32>, Error> {
        let mut all = BTreeSet::new();
        for d in self.dirs() {
            collect_pids(d, &mut all)?;
        }
        Ok(all.into_iter().collect())
    }

    /// Sends `sig` to every process of the cgroup. SIGKILL uses cgroup2's cgroup.kill where
    /// the kernel has it; otherwise the cgroup is frozen so that no process can fork or
    /// exit while the pids are signalled, then thawed (unless it was paused and the signal
    /// is not SIGKILL: a paused container stays paused).
    pub fn kill_all(&self, sig: i32) -> Result<(), Error> {
        let signal =
            Signal::try_from(sig).map_err(|_| Error::invalid("signal", sig, "not a signal number"))?;
        if signal == Signal::SIGKILL {
            if let Some(d) = self.v2.as_deref().filter(|d| d.join("cgroup.kill").exists()) {
                fsutil::write("kill --all", &d.join("cgroup.kill"), "1")?;
                if self.layout != Layout::V2 {
                    // Hybrid: a process that joined only v1 hierarchies is not in the
                    // unified cgroup; signal whatever the v1 hierarchies still list.
                    for pid in self.pids()? {
                        signal_pid(pid, signal)?;
                    }
                    // Tasks frozen by the v1 freezer die only once thawed.
                    if self.v1.contains_key("freezer") && self.is_frozen()? {
                        self.thaw()?;
                    }
                }
                return Ok(());
            }
        }
        let has_freezer = self.v1.contains_key("freezer") || self.v2_freeze_dir().is_some();
        let was_frozen = has_freezer && self.is_frozen()?;
        let froze = has_freezer && !was_frozen;
        if froze {
            self.freeze()?;
        }
        let result = self.pids().and_then(|pids| pids.into_iter().try_for_each(|p| signal_pid(p, signal)));
        if froze || (was_frozen && signal == Signal::SIGKILL) {
            self.thaw()?;
        }
        result
    }

    /// Removes what create made, deepest first. The container's own directories are
    /// retried while the kernel reports them busy (tasks still exiting), up to ~1 s;
    /// parents it made are removed only when empty (other containers may share them).
    /// With the systemd driver the unit is stopped first (and waited for); systemd removes
    /// the directories it made.
    pub fn delete(&self) -> Result<(), Error> {
        if let Some(unit) = &self.systemd {
            // Without systemd there is no unit left to stop; the directories still go.
            if let Ok(m) = systemd::Manager::connect() {
                m.stop(&unit.name)?;
            }
            let deadline = Instant::now() + DELETE_TIMEOUT;
            for dir in self.dirs() {
                if dir.is_dir() && !self.created.iter().any(|c| c == dir) {
                    // The container's own leaf (by name), left by a systemd that did not
                    // trim it: sub-cgroups made inside the container keep it busy.
                    remove_subtree(dir, deadline)?;
                    let _ = fs::remove_dir(dir);
                }
            }
        }
        self.remove_created(Instant::now() + DELETE_TIMEOUT)?;
        // The default parent is karton's own, shared by its containers: the last one out
        // removes it, so nothing named karton stays behind on the host. A parent that still
        // holds containers answers EBUSY/ENOTEMPTY and stays.
        if self.path.starts_with(&format!("{DEFAULT_PARENT}/")) {
            for dir in self.dirs() {
                let mut parent = dir.parent();
                while let Some(p) = parent {
                    // remove_created already tried the parents this cgroup made.
                    if !self.created.iter().any(|c| c == p) {
                        let _ = fs::remove_dir(p);
                    }
                    if p.file_name().is_some_and(|n| n == &DEFAULT_PARENT[1..]) {
                        break;
                    }
                    parent = p.parent();
                }
            }
        }
        Ok(())
    }

    fn remove_created(&self, deadline: Instant) -> Result<(), Error> {
        let leaves: BTreeSet<&Path> = self.dirs().into_iter().collect();
        for dir in self.created.iter().rev() {
            if leaves.contains(dir.as_path()) {
                // Usually empty by now: one rmdir. EBUSY means sub-cgroups made inside the
                // container (ours too) or tasks still exiting: walk and retry.
                match fs::remove_dir(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(_) => {
                        remove_subtree(dir, deadline)?;
                        rmdir_retry(dir, deadline)?;
                    }
                }
            } else {
                match fs::remove_dir(dir) {
                    Ok(()) => {}
                    Err(e)
                        if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EBUSY | libc::ENOTEMPTY)) => {
                    }
                    Err(e) => return Err(Error::io("removing cgroup", dir, e)),
                }
            }
        }
        Ok(())
    }

    /// runc-shaped statistics (as `events --stats` prints them).
    pub fn stats(&self) -> Result<Stats, Error> {
        stats::collect(self)
    }

    /// OOM counters: v2 memory.events, v1 memory.oom_control. Poll and compare.
    pub fn oom_events(&self) -> Result<OomEvents, Error> {
        if let Some(d) = self.v1.get("memory") {
            let s = fsutil::read(&d.join("memory.oom_control"))?;
            let kills = fsutil::keyed_value(&s, "oom_kill").unwrap_or(0);
            return Ok(OomEvents {
                oom: kills,
                oom_kill: kills,
                under_oom: fsutil::keyed_value(&s, "under_oom") == Some(1),
            });
        }
        if let Some(d) = self.v2_controller_dir("memory") {
            let s = fsutil::read(&d.join("memory.events"))?;
            return Ok(OomEvents {
                oom: fsutil::keyed_value(&s, "oom").unwrap_or(0),
                oom_kill: fsutil::keyed_value(&s, "oom_kill").unwrap_or(0),
                under_oom: false,
            });
        }
        Err(Error::unsupported("memory (OOM events)", "no memory controller is mounted on this host"))
    }

    /// The directory where `controller` is driven through cgroup2, if it is.
    pub(crate) fn v2_controller_dir(&self, controller: &str) -> Option<&Path> {
        if self.v2_controllers.iter().any(|c| c == controller) {
            self.v2.as_deref()
        } else {
            None
        }
    }

    pub(crate) fn v2_mount(&self) -> Option<&Path> {
        self.v2_mount.as_deref()
    }

    /// New v1 cpuset directories start with empty cpus/mems (no task could join them):
    /// copy the parent's, top-down. Also fills an empty ancestor that another create made
    /// an instant ago (the shared /karton parent) — the writes are idempotent.
    fn init_cpuset(&self) -> Result<(), Error> {
        let Some(leaf) = self.v1.get("cpuset") else { return Ok(()) };
        let depth = Path::new(self.path.trim_start_matches('/')).components().count();
        let shared_parent = self.path.starts_with(&format!("{DEFAULT_PARENT}/"));
        let mut chain: Vec<&Path> = Vec::with_capacity(depth);
        let mut cur = Some(leaf.as_path());
        for _ in 0..depth {
            let Some(d) = cur else { break };
            chain.push(d);
            cur = d.parent();
        }
        for dir in chain.into_iter().rev() {
            if !(shared_parent || self.created.iter().any(|c| c == dir)) {
                // Not ours: another create may have made it an instant ago and not filled
                // it yet. Wait for that (bounded) rather than write into it.
                let deadline = Instant::now() + Duration::from_millis(1000);
                while fsutil::read(&dir.join("cpuset.cpus"))?.trim().is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                continue;
            }
            let Some(parent) = dir.parent() else { continue };
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let cur = fsutil::read(&dir.join(f))?;
                if cur.trim().is_empty() {
                    let p = fsutil::read(&parent.join(f))?;
                    fsutil::write("cpuset (inherit from parent)", &dir.join(f), p.trim())?;
                }
            }
        }
        Ok(())
    }
}

impl Cgroup {
    /// The cgroup of container `id` as found on the host, when nothing recorded it: a
    /// `create` killed between making its cgroup and writing state.json (an older karton
    /// did that), or a lost state file. Only a cgroup under karton's own parent qualifies,
    /// and only while no process is in it (a busy one may belong to a container of the
    /// same ID under another `--root`). `None` when there is nothing to adopt.
    pub fn leftover(host: &Host, cgroups_path: Option<&str>, id: &str) -> Result<Option<Cgroup>, Error> {
        let path = resolve_path(cgroups_path, id)?;
        if !path.starts_with(&format!("{DEFAULT_PARENT}/")) {
            return Ok(None);
        }
        let mut cg = Cgroup::at(host, path);
        cg.created = cg.dirs().into_iter().filter(|d| d.is_dir()).map(Path::to_path_buf).collect();
        if cg.created.is_empty() || !cg.pids()?.is_empty() {
            return Ok(None);
        }
        Ok(Some(cg))
    }
}

/// OCI cgroupsPath → absolute cgroup path.
fn resolve_path(cgroups_path: Option<&str>, id: &str) -> Result<String, Error> {
    let bad = |p: &str, r: &str| Error::InvalidPath { path: p.to_string(), reason: r.to_string() };
    let raw = match cgroups_path {
        None | Some("") => {
            if id.is_empty() || id.contains('/') || id == "." || id == ".." {
                return Err(bad(id, "the container id cannot be used as a cgroup name"));
            }
            format!("{DEFAULT_PARENT}/{id}")
        }
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => {
            if p.contains(':') {
                return Err(bad(p, "looks like a systemd slice:prefix:name path; pass --systemd-cgroup for the systemd driver, or use a path such as /karton/<id>"));
            }
            format!("{DEFAULT_PARENT}/{p}")
        }
    };
    let mut out = String::new();
    for c in Path::new(&raw).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => {
                out.push('/');
                out.push_str(&s.to_string_lossy());
            }
            Component::ParentDir | Component::Prefix(_) => return Err(bad(&raw, "'..' is not allowed")),
        }
    }
    if out.is_empty() {
        return Err(bad(&raw, "the root cgroup cannot be a container's cgroup"));
    }
    Ok(out)
}

/// `exec --cgroup` arguments: controller ("" for all) → (sub path, the argument).
type SubCgroups = BTreeMap<String, (String, String)>;

/// Parses the `exec --cgroup` arguments into [`SubCgroups`].
fn parse_sub_cgroup_args(args: &[String]) -> Result<SubCgroups, Error> {
    let bad = |arg: &str, reason: &str| Error::SubCgroup { arg: arg.to_string(), reason: reason.to_string() };
    let mut out: BTreeMap<String, (String, String)> = BTreeMap::new();
    for arg in args {
        match arg.split_once(':') {
            None => {
                if args.len() != 1 {
                    return Err(bad(arg, "a path without a controller: prefix applies to every controller and must be the only --cgroup; write CONTROLLER:PATH for each"));
                }
                out.insert(String::new(), (arg.clone(), arg.clone()));
            }
            Some((_, sub)) if sub.contains(':') => {
                return Err(bad(arg, "expected [CONTROLLER[,CONTROLLER]:]PATH"))
            }
            Some((ctrls, sub)) => {
                for c in ctrls.split(',') {
                    if c.is_empty() {
                        return Err(bad(arg, "empty controller name before ':': write e.g. memory:PATH"));
                    }
                    if out.insert(c.to_string(), (sub.to_string(), arg.clone())).is_some() {
                        return Err(bad(arg, &format!("controller {c} is given more than once")));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The sub path one directory gets (with the argument that named it): from a bare path,
/// or from any of `ctrls`, the controllers that live there (co-mounted v1 controllers share
/// a directory, so they must agree).
fn pick_sub(
    subs: &SubCgroups,
    dir: &Path,
    ctrls: &mut dyn Iterator<Item = &String>,
) -> Result<Option<(String, String)>, Error> {
    if let Some(all) = subs.get("") {
        return Ok(Some(all.clone()));
    }
    let mut chosen: Option<(String, String)> = None;
    for c in ctrls {
        if let Some((sub, arg)) = subs.get(c.as_str()) {
            match &chosen {
                Some((s, a)) if s != sub => {
                    return Err(Error::SubCgroup {
                        arg: arg.clone(),
                        reason: format!(
                            "{} is one hierarchy ({}): {a:?} already puts it in {s:?}",
                            dir.display(),
                            c
                        ),
                    })
                }
                _ => chosen = Some((sub.clone(), arg.clone())),
            }
        }
    }
    Ok(chosen)
}

/// `base`/`sub` for a sub-cgroup that must exist below `base`.
fn join_sub(base: &Path, sub: &str, arg: &str) -> Result<PathBuf, Error> {
    let bad = |reason: String| Error::SubCgroup { arg: arg.to_string(), reason };
    let mut dir = base.to_path_buf();
    for c in Path::new(sub).components() {
        match c {
            // "/x" means x below the container's cgroup, as in runc.
            Component::RootDir | Component::CurDir => {}
            Component::Normal(s) => dir.push(s),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(bad("'..' would leave the container's cgroup: name a sub-cgroup below it".into()))
            }
        }
    }
    if dir == base {
        return Err(bad("empty path: name a sub-cgroup of the container's cgroup".into()));
    }
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(dir),
        _ => Err(bad(format!(
            "{} does not exist: create the sub-cgroup first (e.g. mkdir it inside the container)",
            dir.display()
        ))),
    }
}

/// Moves the calling thread into the cgroup of each `tasks` file (from
/// [`Cgroup::v1_task_files`]) by writing "0". Call it from a single-threaded process: the
/// thread is then the whole process.
pub fn join_v1_self<F: std::os::fd::AsFd>(files: &[(PathBuf, F)]) -> Result<(), Error> {
    for (path, f) in files {
        let written = match nix::unistd::write(f, b"0") {
            Ok(1) => Ok(()),
            Ok(_) => Err(io::Error::new(io::ErrorKind::WriteZero, "short write to a cgroup file")),
            Err(e) => Err(io::Error::from(e)),
        };
        written.map_err(|source| Error::Write {
            key: "joining the cgroup".into(),
            path: path.clone(),
            value: "0".into(),
            source,
        })?;
    }
    Ok(())
}

/// mkdir -p, pushing each directory it made onto `created`. Retries a few times when a
/// parent vanishes under it (another container's delete removing an empty shared parent).
fn mkdir_nested(dir: &Path, created: &mut Vec<PathBuf>) -> Result<(), Error> {
    let mut attempt = 0;
    loop {
        match mkdir_nested_once(dir, created) {
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound && attempt < 3 => {
                attempt += 1
            }
            r => return r,
        }
    }
}

fn mkdir_nested_once(dir: &Path, created: &mut Vec<PathBuf>) -> Result<(), Error> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.exists() {
            break;
        }
        missing.push(d);
        cur = d.parent();
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => created.push(d.to_path_buf()),
            // Someone else made it in between: not ours.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("creating cgroup", d, e)),
        }
    }
    Ok(())
}

/// What [`first_busy`] found at a cgroup directory.
enum Probe {
    /// The directory does not exist.
    Missing,
    /// It exists and no process is in it or below it.
    Idle,
    /// The first directory at or below it whose cgroup.procs lists a process.
    Busy(PathBuf, Vec<i32>),
}

/// Whether `dir` exists and holds a process anywhere in its subtree. The directory is
/// opened first: for a new container it is missing, and that one failed open is all.
fn first_busy(dir: &Path) -> Result<Probe, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Probe::Missing),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    let pids = fsutil::read_pids(&dir.join("cgroup.procs"))?;
    if !pids.is_empty() {
        return Ok(Probe::Busy(dir.to_path_buf(), pids));
    }
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            if let Probe::Busy(p, pids) = first_busy(&e.path())? {
                return Ok(Probe::Busy(p, pids));
            }
        }
    }
    Ok(Probe::Idle)
}

fn collect_pids(dir: &Path, out: &mut BTreeSet<i32>) -> Result<(), Error> {
    out.extend(fsutil::read_pids(&dir.join("cgroup.procs"))?);
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_pids(&e.path(), out)?;
        }
    }
    Ok(())
}

fn signal_pid(pid: i32, sig: Signal) -> Result<(), Error> {
    match kill(Pid::from_raw(pid), sig) {
        // Already gone: exactly what we wanted.
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::Sys {
            op: "kill",
            path: PathBuf::from(format!("/proc/{pid}")),
            source: karton_sys::SysError::new("kill", e),
        }),
    }
}

/// Removes the sub-cgroups below `dir` (not `dir` itself), deepest first.
fn remove_subtree(dir: &Path, deadline: Instant) -> Result<(), Error> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            let sub = e.path();
            remove_subtree(&sub, deadline)?;
            rmdir_retry(&sub, deadline)?;
        }
    }
    Ok(())
}

fn rmdir_retry(dir: &Path, deadline: Instant) -> Result<(), Error> {
    let start = Instant::now();
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if Instant::now() >= deadline {
                    let pids = fsutil::read_pids(&dir.join("cgroup.procs")).unwrap_or_default();
                    return Err(Error::Busy {
                        path: dir.to_path_buf(),
                        ms: start.elapsed().as_millis() as u64,
                        pids,
                    });
                }
                sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(Error::io("removing cgroup", dir, e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths() {
        assert_eq!(resolve_path(None, "abc").ok().as_deref(), Some("/karton/abc"));
        assert_eq!(resolve_path(Some("pod/x"), "abc").ok().as_deref(), Some("/karton/pod/x"));
        assert_eq!(resolve_path(Some("/a//b/"), "abc").ok().as_deref(), Some("/a/b"));
        assert!(resolve_path(Some("/a/../b"), "abc").is_err());
        assert!(resolve_path(Some("/"), "abc").is_err());
        assert!(resolve_path(None, "a/b").is_err());
        assert!(resolve_path(Some("system.slice:docker:x"), "x").is_err());
    }

    #[test]
    fn parses_sub_cgroup_args() {
        let a = |v: &[&str]| parse_sub_cgroup_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let m = a(&["memory,pids:foo", "cpu:/bar"]).unwrap();
        assert_eq!(m["memory"].0, "foo");
        assert_eq!(m["pids"].0, "foo");
        assert_eq!(m["cpu"].0, "/bar");
        assert_eq!(a(&["foo"]).unwrap()[""].0, "foo");
        assert!(a(&["foo", "cpu:bar"]).is_err(), "a bare path must be alone");
        assert!(a(&[":foo"]).is_err());
        assert!(a(&["a:b:c"]).is_err());
        assert!(a(&["cpu:a", "cpu:b"]).is_err());
    }

    #[test]
    fn co_mounted_controllers_must_pick_one_sub_path() {
        let a =
            |v: &[&str]| parse_sub_cgroup_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let dir = Path::new("/sys/fs/cgroup/cpu,cpuacct/x");
        let pick = |subs: &SubCgroups, ctrls: &[&str]| pick_sub(subs, dir, &mut names(ctrls).iter());
        let subs = a(&["cpu,cpuacct:foo"]);
        assert_eq!(pick(&subs, &["cpu", "cpuacct"]).unwrap(), Some(("foo".into(), "cpu,cpuacct:foo".into())));
        assert_eq!(pick(&subs, &["memory"]).unwrap(), None);
        assert!(pick(&a(&["cpu:foo", "cpuacct:bar"]), &["cpu", "cpuacct"]).is_err());
        assert_eq!(pick(&a(&["foo"]), &[]).unwrap(), Some(("foo".into(), "foo".into())));
    }

    #[test]
    fn sub_paths_stay_below_the_base() {
        let base = std::env::temp_dir().join(format!("karton-subcg-{}", std::process::id()));
        fs::create_dir_all(base.join("a/b")).unwrap();
        assert_eq!(join_sub(&base, "a/b", "x").unwrap(), base.join("a/b"));
        assert_eq!(join_sub(&base, "/a", "x").unwrap(), base.join("a"));
        let e = join_sub(&base, "a/../../etc", "x").unwrap_err().to_string();
        assert!(e.contains("'..'"), "{e}");
        let e = join_sub(&base, "nosuch", "x").unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(join_sub(&base, "/", "x").is_err());
        fs::remove_dir_all(&base).unwrap();
    }
}
