//! One process's namespaces compared with the host's (pid 1's), with its id maps, time
//! offsets, cgroup namespace roots and the ancestry of its user and pid namespaces.

use serde::{Deserialize, Serialize};

use crate::cgroupns::{self, CgroupNsView};
use crate::error::{NsError, Result};
use crate::handle::{NsHandle, NsId};
use crate::idmap::{self, IdMap};
use crate::procfs;
use crate::timens::{self, TimeOffset};
use crate::NsType;

pub const INSPECT_SCHEMA: &str = "karton.ns.inspect/v1";

/// One kind: the process's namespace beside the host's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NsCompare {
    #[serde(rename = "type")]
    pub ty: NsType,
    pub id: NsId,
    pub host: Option<NsId>,
    /// True when the process shares this namespace with pid 1 (no isolation on this kind).
    pub shared_with_host: bool,
    /// Pid and time only: the namespace the process's next children get, when it differs
    /// (after unshare(CLONE_NEWPID) or setns, before the fork).
    pub for_children: Option<NsId>,
}

/// An ancestor namespace, with the uid of its creator for user namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ancestor {
    pub id: NsId,
    pub owner_uid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inspection {
    pub schema: String,
    pub pid: i32,
    pub command: Option<String>,
    /// The process's pid in each of its pid namespaces, the caller's first.
    pub nspid: Vec<i32>,
    pub namespaces: Vec<NsCompare>,
    /// The process the host's namespaces were read from (1, or 2 when pid 1 is unreadable).
    pub host_pid: Option<i32>,
    /// The process's user namespace, then its parent, up to the root of the caller's view.
    pub user_chain: Vec<Ancestor>,
    pub pid_chain: Vec<Ancestor>,
    pub uid_map: Option<IdMap>,
    pub gid_map: Option<IdMap>,
    /// `/proc/PID/setgroups` is `allow`.
    pub setgroups_allowed: Option<bool>,
    pub time_offsets: Option<Vec<TimeOffset>>,
    pub cgroups: Option<Vec<CgroupNsView>>,
    /// Parts that could not be read, one message each (the rest of the report stands).
    pub errors: Vec<String>,
}

/// Inspects process `pid`. Fails only when its namespace set cannot be read (no such
/// process, no permission); any other part that fails is reported in `errors`.
pub fn inspect(pid: i32) -> Result<Inspection> {
    if !procfs::exists(pid) {
        return Err(NsError::NoSuchProcess { pid });
    }
    let set = procfs::ns_set(pid)?;
    let (host_pid, host) = procfs::host_ns_set().map_or((None, None), |(p, s)| (Some(p), Some(s)));
    let mut errors: Vec<String> = Vec::new();

    let namespaces = set
        .iter()
        .map(|(&ty, &id)| {
            let h = host.as_ref().and_then(|h| h.get(&ty)).copied();
            let for_children = match ty {
                NsType::Pid | NsType::Time => {
                    let p =
                        std::path::PathBuf::from(format!("/proc/{pid}/ns/{}_for_children", ty.proc_name()));
                    NsId::of_path(&p).ok().filter(|c| *c != id)
                }
                _ => None,
            };
            NsCompare { ty, id, host: h, shared_with_host: h == Some(id), for_children }
        })
        .collect();

    let chain = |ty: NsType| -> Result<Vec<Ancestor>> {
        let h = NsHandle::of_pid(pid, ty)?;
        h.ancestry()?.iter().map(|a| Ok(Ancestor { id: a.id, owner_uid: a.owner_uid()? })).collect()
    };
    let e = &mut errors;
    let user_chain = ok(e, chain(NsType::User)).unwrap_or_default();
    let pid_chain = ok(e, chain(NsType::Pid)).unwrap_or_default();
    let uid_map = ok(e, IdMap::of_pid(pid, false));
    let gid_map = ok(e, IdMap::of_pid(pid, true));
    let setgroups_allowed = ok(e, idmap::setgroups_allowed(pid));
    let time_offsets = if NsType::Time.is_supported() { ok(e, timens::of_pid(pid)) } else { None };
    let cgroups = ok(e, cgroupns::view(pid));
    let nspid = ok(e, procfs::nspids(pid)).unwrap_or_default();

    Ok(Inspection {
        schema: INSPECT_SCHEMA.to_string(),
        pid,
        command: procfs::command(pid),
        nspid,
        namespaces,
        host_pid,
        user_chain,
        pid_chain,
        uid_map,
        gid_map,
        setgroups_allowed,
        time_offsets,
        cgroups,
        errors,
    })
}

/// The value, or `None` with the error's message noted.
fn ok<T>(errors: &mut Vec<String>, r: Result<T>) -> Option<T> {
    r.map_err(|e| errors.push(e.to_string())).ok()
}
