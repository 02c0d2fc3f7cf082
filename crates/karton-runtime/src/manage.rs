//! Managing a running container through its cgroups: pause, resume, processes, stats,
//! OOM events and live resource updates.

use karton_cgroup::{Cgroup, OomEvents, Stats};
use oci_spec::runtime::LinuxResources;

use crate::container::Runtime;
use crate::error::{Error, Result};
use crate::state::{Record, Status};

impl Runtime {
    fn cgroup_of(&self, rec: &Record) -> Result<Cgroup> {
        rec.cgroup.clone().ok_or_else(|| Error::State {
            id: rec.id.clone(),
            status: rec.status.to_string(),
            reason: "it has no cgroup (rootless without a delegated cgroup)".into(),
        })
    }

    /// Freezes every process of a running container.
    pub fn pause(&self, id: &str) -> Result<()> {
        let _lock = self.store().lock(id)?;
        let rec = self.state(id)?;
        if rec.status != Status::Running {
            return Err(Error::State {
                id: id.into(),
                status: rec.status.to_string(),
                reason: "pause needs a running container".into(),
            });
        }
        Ok(self.cgroup_of(&rec)?.freeze()?)
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let _lock = self.store().lock(id)?;
        let rec = self.state(id)?;
        if rec.status != Status::Paused {
            return Err(Error::State {
                id: id.into(),
                status: rec.status.to_string(),
                reason: "resume needs a paused container".into(),
            });
        }
        Ok(self.cgroup_of(&rec)?.thaw()?)
    }

    /// Host pids of every process in the container.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let rec = self.state(id)?;
        match &rec.cgroup {
            Some(cg) => Ok(cg.pids()?),
            None if rec.status != Status::Stopped => Ok(vec![rec.pid]),
            None => Ok(Vec::new()),
        }
    }

    /// Resource usage in runc's shape.
    pub fn stats(&self, id: &str) -> Result<Stats> {
        let rec = self.state(id)?;
        Ok(self.cgroup_of(&rec)?.stats()?)
    }

    /// OOM counters, for `events`.
    pub fn oom_events(&self, id: &str) -> Result<OomEvents> {
        let rec = self.state(id)?;
        Ok(self.cgroup_of(&rec)?.oom_events()?)
    }

    /// Changes the limits of a live container, all or nothing, and records them in the
    /// saved config so later reads see what is in force.
    pub fn update(&self, id: &str, res: &LinuxResources) -> Result<()> {
        let lock = self.store().lock(id)?;
        let rec = self.state(id)?;
        if rec.status == Status::Stopped {
            return Err(Error::State {
                id: id.into(),
                status: "stopped".into(),
                reason: "there is nothing to update".into(),
            });
        }
        self.cgroup_of(&rec)?.update(res)?;
        let path = lock.dir.join(crate::state::CONFIG_FILE);
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text) {
                let merged = merge_resources(v["linux"]["resources"].take(), res);
                v["linux"]["resources"] = merged;
                if let Ok(out) = serde_json::to_vec_pretty(&v) {
                    let _ = karton_sys::atomic::write_atomic(
                        &path,
                        &out,
                        karton_sys::atomic::Durability::NoFsync,
                    );
                }
            }
        }
        Ok(())
    }
}

/// Overlays the fields set in `new` on the saved resources JSON.
fn merge_resources(old: serde_json::Value, new: &LinuxResources) -> serde_json::Value {
    let mut base = if old.is_object() { old } else { serde_json::json!({}) };
    if let (Some(b), Ok(serde_json::Value::Object(n))) = (base.as_object_mut(), serde_json::to_value(new)) {
        for (k, v) in n {
            match (b.get_mut(&k), v) {
                (Some(serde_json::Value::Object(bo)), serde_json::Value::Object(no)) => {
                    for (k2, v2) in no {
                        bo.insert(k2, v2);
                    }
                }
                (_, v) => {
                    b.insert(k, v);
                }
            }
        }
    }
    base
}
