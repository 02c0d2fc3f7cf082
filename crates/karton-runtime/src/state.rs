//! The state store: one directory per container under the runtime root.
//!
//! `<root>/<id>/state.json` is written atomically (write + rename), and every command that
//! changes a container holds an exclusive flock on `<root>/<id>`, so concurrent commands on
//! one container serialize and a crash never leaves half a file.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use karton_cgroup::Cgroup;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use karton_sys::atomic::replace_reusing;

pub const STATE_FILE: &str = "state.json";
/// The previous state.json, kept for the next state change to overwrite.
const STATE_SPARE: &str = ".state.json.spare";
pub const CONFIG_FILE: &str = "config.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What karton records about a container: the OCI state fields plus its own bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Start time of the init process (clock ticks since boot, /proc/PID/stat field 22):
    /// tells our init apart from a later process that reuses its pid.
    #[serde(default)]
    pub init_start_time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<Cgroup>,
    /// Whether the container has its own pid namespace (then killing init kills all).
    #[serde(default)]
    pub own_pid_ns: bool,
}

/// The OCI state as `karton state` prints it (runc's field set).
#[derive(Debug, Clone, Serialize)]
pub struct OciState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: Status,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    pub owner: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: &'a BTreeMap<String, String>,
}

impl Record {
    pub fn oci(&self) -> OciState<'_> {
        OciState {
            oci_version: &self.oci_version,
            id: &self.id,
            pid: self.pid,
            status: self.status,
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            owner: &self.owner,
            annotations: &self.annotations,
        }
    }

    /// The state JSON that hooks receive on stdin (runtime-spec "state" object).
    pub fn hook_state_json(&self) -> String {
        #[derive(Serialize)]
        struct HookState<'a> {
            #[serde(rename = "ociVersion")]
            oci_version: &'a str,
            id: &'a str,
            status: Status,
            pid: i32,
            bundle: &'a Path,
            annotations: &'a BTreeMap<String, String>,
        }
        serde_json::to_string(&HookState {
            oci_version: &self.oci_version,
            id: &self.id,
            status: self.status,
            pid: self.pid,
            bundle: &self.bundle,
            annotations: &self.annotations,
        })
        .unwrap_or_default()
    }
}

/// Whether this process lives in a user namespace other than the initial one (whose uid
/// map is the identity of all 2^32-1 ids). Unreadable: assume the initial one.
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    }
}

/// The runtime root (`--root`).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// An exclusively locked container directory. Dropping it releases the lock.
pub struct Locked {
    pub dir: PathBuf,
    pub id: String,
    _lock: Flock<File>,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// /run/karton for root; $XDG_RUNTIME_DIR/karton otherwise. Root of a user namespace
    /// that is not the initial one counts as "otherwise" when XDG_RUNTIME_DIR is set and
    /// USER is not root (runc's rule): rootless podman calls the runtime as uid 0 of its
    /// own user namespace, which may not write /run.
    pub fn default_root() -> PathBuf {
        let xdg = std::env::var_os("XDG_RUNTIME_DIR").filter(|x| !x.is_empty());
        let real_root = nix::unistd::geteuid().is_root()
            && (xdg.is_none()
                || !in_user_namespace()
                || std::env::var_os("USER").is_some_and(|u| u == "root"));
        if real_root {
            PathBuf::from("/run/karton")
        } else if let Some(x) = xdg {
            PathBuf::from(x).join("karton")
        } else {
            PathBuf::from(format!("/tmp/karton-{}", nix::unistd::geteuid()))
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn ensure_root(&self) -> Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.root)
            .ctx(|| format!("creating the state root {}", self.root.display()))
    }

    /// Makes a new container directory and locks it; fails if the ID is taken.
    pub fn create(&self, id: &str) -> Result<Locked> {
        validate_id(id)?;
        self.ensure_root()?;
        let dir = self.dir(id);
        match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(Error::Exists(id.into())),
            Err(e) => return Err(e).ctx(|| format!("creating the state directory {}", dir.display())),
        }
        // mkdir honours the umask; the fifo path must be searchable by a non-root init.
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711));
        let lock = lock_dir(&dir)?;
        Ok(Locked { dir, id: id.to_string(), _lock: lock })
    }

    /// Locks an existing container's directory.
    pub fn lock(&self, id: &str) -> Result<Locked> {
        validate_id(id)?;
        let dir = self.dir(id);
        if !dir.join(STATE_FILE).exists() && !dir.is_dir() {
            return Err(Error::NotFound(id.into()));
        }
        let lock = lock_dir(&dir).map_err(|e| match e {
            Error::Io { ref err, .. } if err.kind() == std::io::ErrorKind::NotFound => {
                Error::NotFound(id.into())
            }
            other => other,
        })?;
        Ok(Locked { dir, id: id.to_string(), _lock: lock })
    }

    /// Locks an existing container's directory for `delete --force`. The lock can outlive
    /// the command that took it: a process forked from it (a killed `create`'s init that had
    /// not yet closed the descriptor) holds the same open file, and would make this wait
    /// forever. When the lock's taker no longer holds it, its holders are killed; a live
    /// taker (a command at work) is waited for, as [`Store::lock`] does.
    pub fn lock_breaking_orphans(&self, id: &str) -> Result<Locked> {
        use std::os::unix::fs::MetadataExt;
        validate_id(id)?;
        let dir = self.dir(id);
        let not_found = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(id.into())
            } else {
                Error::Io { context: format!("opening {}", dir.display()), err: e }
            }
        };
        let mut f = File::open(&dir).map_err(not_found)?;
        let meta = f.metadata().map_err(not_found)?;
        let start = std::time::Instant::now();
        let mut next_check = std::time::Duration::from_millis(50);
        loop {
            match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(Locked { dir, id: id.to_string(), _lock: lock }),
                Err((back, nix::errno::Errno::EWOULDBLOCK)) => f = back,
                Err((_, e)) => {
                    return Err(Error::Io { context: format!("locking {}", dir.display()), err: e.into() })
                }
            }
            if start.elapsed() >= next_check {
                // Scanning /proc is not free: look only now and then.
                next_check = start.elapsed() + std::time::Duration::from_millis(500);
                let (taker, holders) = crate::procfs::flock_holders(meta.dev(), meta.ino());
                if !holders.is_empty() && !taker.is_some_and(|t| holders.contains(&t)) {
                    for pid in holders {
                        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                        tracing::warn!(
                            "container {id}: the lock on {} is held by pid {pid} ({}), not by the command that took it (pid {taker:?}, gone): killing it",
                            dir.display(),
                            String::from_utf8_lossy(&cmd).replace('\0', " ").trim()
                        );
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                    next_check = start.elapsed() + std::time::Duration::from_millis(50);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Reads a container's record without locking (state is written atomically).
    pub fn load(&self, id: &str) -> Result<Record> {
        validate_id(id)?;
        load_record(&self.dir(id), id)
    }

    /// The IDs of all containers under the root, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).ctx(|| format!("reading the state root {}", self.root.display())),
        };
        let mut ids: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

impl Locked {
    pub fn load(&self) -> Result<Record> {
        load_record(&self.dir, &self.id)
    }

    pub fn save(&self, rec: &Record) -> Result<()> {
        let json =
            serde_json::to_vec_pretty(rec).map_err(|e| Error::Config(format!("serializing state: {e}")))?;
        let path = self.dir.join(STATE_FILE);
        // The directory is ours and locked: its state changes reuse one spare file.
        replace_reusing(&path, &self.dir.join(STATE_SPARE), &json)
            .ctx(|| format!("writing {}", path.display()))
    }

    /// The lock's descriptor number, for a forked child to close (never to unlock: that
    /// would release the parent's lock too).
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self._lock.as_raw_fd()
    }

    /// Removes the container's directory and everything in it.
    pub fn remove(self) -> Result<()> {
        match std::fs::remove_dir_all(&self.dir) {
            // A concurrent `delete --force` was first: what we wanted.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => r.ctx(|| format!("removing {}", self.dir.display())),
        }
    }
}

fn lock_dir(dir: &Path) -> Result<Flock<File>> {
    let f = File::open(dir).ctx(|| format!("opening {}", dir.display()))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::Io { context: format!("locking {}", dir.display()), err: e.into() })
}

fn load_record(dir: &Path, id: &str) -> Result<Record> {
    let path = dir.join(STATE_FILE);
    // A reader that opened state.json just before two state changes can see the second one
    // overwrite that same inode (it became the spare, see `Locked::save`) while it reads:
    // what it read is then no JSON, and the file as it is now is read again. A state.json
    // that is still corrupt on the third read is reported.
    let mut reads = 0;
    loop {
        reads += 1;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound(id.into())),
            Err(e) => return Err(e).ctx(|| format!("reading {}", path.display())),
        };
        match serde_json::from_slice(&bytes) {
            Ok(rec) => return Ok(rec),
            Err(_) if reads < 3 => continue,
            Err(e) => {
                return Err(Error::Config(format!(
                    "{}: corrupt state ({e}): `karton delete --force {id}` removes the container",
                    path.display()
                )))
            }
        }
    }
}

/// The longest ID: it is used whole as a directory name (the state directory, the
/// cgroup leaf `karton/ID`), and the kernel refuses path components longer than NAME_MAX.
pub const MAX_ID_LEN: usize = 255;

const ALLOWED: &str = "use only letters A-Z a-z, digits, '_', '+', '-' and '.'";

/// Container IDs as runc accepts them (libcontainer's validateID): one or more of
/// `A-Z a-z 0-9 _ + - .`, not `.` or `..`, and (karton's addition, since the ID becomes a
/// directory and a cgroup name) at most 255 bytes. podman's and containerd's IDs (64
/// hex digits; containerd's `[A-Za-z0-9]+([._-][A-Za-z0-9]+)*`, at most 76) all pass.
pub fn validate_id(id: &str) -> Result<()> {
    let err = |reason: String| Err(Error::InvalidId { id: id.to_string(), reason });
    if id.is_empty() {
        return err("is empty: give the container a name".into());
    }
    if id == "." || id == ".." {
        return err(format!("{id:?} is reserved: it names the state directory itself or its parent; {ALLOWED}, other than \".\" or \"..\""));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))) {
        return err(format!("contains {c:?}, which is not allowed: {ALLOWED}"));
    }
    if id.len() > MAX_ID_LEN {
        return err(format!(
            "is {} bytes long: the ID names a directory and a cgroup, and names longer than {MAX_ID_LEN} bytes are refused by the kernel (NAME_MAX): use a shorter name",
            id.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn reason(id: &str) -> String {
        match validate_id(id) {
            Err(Error::InvalidId { reason, .. }) => reason,
            Err(other) => panic!("{id:?}: expected InvalidId, got {other}"),
            Ok(()) => panic!("{id:?} was accepted"),
        }
    }

    #[test]
    fn ids() {
        // runc's alphabet, and what engines generate: podman's and CRI's 64 hex digits,
        // containerd task and exec ids, `ctr run` names.
        let hex64 = "0123456789abcdef".repeat(4);
        for good in ["abc-1_2.x", "a+b", "a..b", "...", hex64.as_str(), "default-redis.1", "exec_7F3A", "A"] {
            assert!(validate_id(good).is_ok(), "{good:?}");
        }
        for bad in ["a/b", "a b", "$(id)", "*", "a:b", "caf\u{e9}", "x\ny", "a,b", "a\\b", "\u{41f}"] {
            assert!(
                reason(bad).contains("which is not allowed: use only letters"),
                "{bad:?}: {}",
                reason(bad)
            );
        }
        assert!(reason("").contains("is empty"));
        for dots in [".", ".."] {
            let r = reason(dots);
            assert!(r.contains("is reserved") && !r.contains("contains"), "{dots:?}: {r}");
        }
        assert!(validate_id(&"a".repeat(255)).is_ok());
        let r = reason(&"a".repeat(256));
        assert!(r.contains("256 bytes long") && r.contains("255"), "{r}");
    }

    #[test]
    fn readers_see_whole_records_while_a_writer_saves() {
        struct RemoveOnDrop(PathBuf);
        impl Drop for RemoveOnDrop {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let root =
            RemoveOnDrop(std::env::temp_dir().join(format!("karton-state-readers-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&root.0);
        let store = Store::new(&root.0);
        let lock = store.create("c1").unwrap();
        let mut rec = Record {
            oci_version: "1.2.1".into(),
            id: "c1".into(),
            status: Status::Creating,
            pid: 0,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            created: "2026-12-03T00:00:00Z".into(),
            owner: "0".into(),
            annotations: BTreeMap::new(),
            init_start_time: 0,
            cgroup: None,
            own_pid_ns: false,
        };
        lock.save(&rec).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        let started = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                started.wait();
                let mut reads = 0u32;
                loop {
                    let r = store.load("c1").unwrap_or_else(|e| panic!("read {reads}: {e}"));
                    assert_eq!(r.id, "c1");
                    reads += 1;
                    if done.load(std::sync::atomic::Ordering::Relaxed) {
                        return reads;
                    }
                }
            });
            started.wait();
            // Records of different lengths, as a create's are: the spare is cut each time.
            for i in 0..3000 {
                rec.status = [Status::Creating, Status::Created, Status::Running][i % 3];
                rec.pid = if i % 2 == 0 { 0 } else { 1_000_000 + i as i32 };
                lock.save(&rec).unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        assert_eq!(store.load("c1").unwrap().pid, 1_002_999);
    }

    #[test]
    fn longest_id_is_a_usable_directory_name() {
        let base = std::env::temp_dir().join(format!("karton-id-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        let ok = std::fs::create_dir(base.join("a".repeat(MAX_ID_LEN)));
        let too_long = std::fs::create_dir(base.join("a".repeat(MAX_ID_LEN + 1)));
        let _ = std::fs::remove_dir_all(&base);
        assert!(ok.is_ok(), "{ok:?}");
        assert_eq!(too_long.map_err(|e| e.raw_os_error()), Err(Some(libc::ENAMETOOLONG)));
    }
}
