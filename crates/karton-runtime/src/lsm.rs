//! LSM labels of a container process: `process.apparmorProfile` and
//! `process.selinuxLabel`, applied as runc applies them — written to the calling thread's
//! exec attribute in procfs, so the kernel puts the label on at the next execve and
//! nothing of the runtime runs under it.
//!
//! - AppArmor: `exec PROFILE` to `/proc/thread-self/attr/apparmor/exec` (Linux 5.8+, one
//!   directory per LSM), or `/proc/thread-self/attr/exec` on older kernels (runc's
//!   `apparmor.ApplyProfile`).
//! - SELinux: the label to `/proc/thread-self/attr/exec` (go-selinux `SetExecLabel`).
//!
//! Each write goes through an fd that must be on a real procfs (fstatfs): a mount over the
//! container's /proc would otherwise swallow the label silently (CVE-2019-16884).
//!
//! `linux.mountLabel` is not applied (config validation refuses it everywhere).
//!
//! No host here runs AppArmor or SELinux: the path choice and the written bytes are
//! tested against a fake procfs tree; nothing in this module has run against a real LSM.

use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use crate::error::{Error, Result};

/// Which LSM a label is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lsm {
    AppArmor,
    SeLinux,
}

impl Lsm {
    fn field(self) -> &'static str {
        match self {
            Lsm::AppArmor => "process.apparmorProfile",
            Lsm::SeLinux => "process.selinuxLabel",
        }
    }
}

/// The file that sets the AppArmor profile for the next execve of the calling thread:
/// the per-LSM attribute where the kernel has it, the shared one otherwise.
pub fn apparmor_exec_attr_path(proc_root: &Path) -> PathBuf {
    let per_lsm = proc_root.join("thread-self/attr/apparmor/exec");
    if per_lsm.exists() {
        per_lsm
    } else {
        proc_root.join("thread-self/attr/exec")
    }
}

/// The file that sets the SELinux context for the next execve of the calling thread.
pub fn selinux_exec_attr_path(proc_root: &Path) -> PathBuf {
    proc_root.join("thread-self/attr/exec")
}

/// The bytes written for `label`: AppArmor takes a command ("exec NAME", change_onexec),
/// SELinux the bare context.
pub fn exec_label_value(lsm: Lsm, label: &str) -> String {
    match lsm {
        Lsm::AppArmor => format!("exec {label}"),
        Lsm::SeLinux => label.to_string(),
    }
}

/// Writes `label` for `lsm` under `proc_root` in one write(2) (the kernel takes an
/// attribute only whole); returns the file written. With `require_procfs`, refuses a
/// file that is not on procfs.
pub fn write_exec_label(proc_root: &Path, lsm: Lsm, label: &str, require_procfs: bool) -> Result<PathBuf> {
    let path = match lsm {
        Lsm::AppArmor => apparmor_exec_attr_path(proc_root),
        Lsm::SeLinux => selinux_exec_attr_path(proc_root),
    };
    let field = lsm.field();
    let io = |what: &str, e: std::io::Error| Error::Io {
        context: format!(
            "{field} {label:?}: {what} {}: the label could not be set, so the process would run without it",
            path.display()
        ),
        err: e,
    };
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).map_err(|e| io("opening", e))?;
    if require_procfs {
        let fs = nix::sys::statfs::fstatfs(&f).map_err(|e| io("checking the filesystem of", e.into()))?;
        if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
            return Err(Error::Config(format!(
                "{field} {label:?}: {} is not on procfs (something is mounted over the container's /proc), so the \
                 label would be lost: refused; remove the mount over /proc",
                path.display()
            )));
        }
    }
    let value = exec_label_value(lsm, label);
    let n = f.write(value.as_bytes()).map_err(|e| io("writing", e))?;
    if n != value.len() {
        return Err(Error::Config(format!(
            "{field} {label:?}: {}: the kernel took {n} of {} bytes: the label was not set",
            path.display(),
            value.len()
        )));
    }
    Ok(path)
}

/// Puts the process's AppArmor profile and SELinux label on its next execve. Call it in
/// the process that will execve (the init, an exec'd process), after pivot_root (the
/// container's /proc, checked to be procfs) and before capabilities are dropped and
/// seccomp is installed. Empty or absent fields do nothing; config validation has already
/// refused them on hosts without the LSM.
pub fn apply_exec_labels(process: &Process) -> Result<()> {
    let proc_root = Path::new("/proc");
    if let Some(p) = process.apparmor_profile().as_deref().filter(|p| !p.is_empty()) {
        write_exec_label(proc_root, Lsm::AppArmor, p, true)?;
    }
    if let Some(l) = process.selinux_label().as_deref().filter(|l| !l.is_empty()) {
        write_exec_label(proc_root, Lsm::SeLinux, l, true)?;
    }
    Ok(())
}

/// Whether AppArmor is enabled on this host (runc's test: the module parameter, which
/// needs no securityfs mount; else the LSM list).
pub fn apparmor_enabled() -> bool {
    match std::fs::read_to_string("/sys/module/apparmor/parameters/enabled") {
        Ok(s) => s.starts_with('Y'),
        Err(_) => lsm_listed("apparmor"),
    }
}

/// Whether SELinux is enabled on this host: selinuxfs is mounted (go-selinux's test).
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
        || (lsm_listed("selinux") && Path::new("/selinux/enforce").exists())
}

fn lsm_listed(name: &str) -> bool {
    // Read once per process: the list of active LSMs is fixed at boot.
    static LSMS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LSMS.get_or_init(|| std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default())
        .split(',')
        .any(|s| s.trim() == name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A fake procfs: `thread-self/attr/exec`, and with `per_lsm` also
    /// `thread-self/attr/apparmor/exec`.
    fn fake_proc(name: &str, per_lsm: bool) -> PathBuf {
        let root = std::env::temp_dir().join(format!("karton-fake-proc-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("thread-self/attr/apparmor")).unwrap();
        std::fs::write(root.join("thread-self/attr/exec"), "").unwrap();
        if per_lsm {
            std::fs::write(root.join("thread-self/attr/apparmor/exec"), "").unwrap();
        }
        root
    }

    #[test]
    fn apparmor_prefers_the_per_lsm_attribute() {
        let root = fake_proc("aa-new", true);
        assert_eq!(apparmor_exec_attr_path(&root), root.join("thread-self/attr/apparmor/exec"));
        let written = write_exec_label(&root, Lsm::AppArmor, "karton-default", false).unwrap();
        assert_eq!(written, root.join("thread-self/attr/apparmor/exec"));
        assert_eq!(std::fs::read_to_string(&written).unwrap(), "exec karton-default");
        assert_eq!(
            std::fs::read_to_string(root.join("thread-self/attr/exec")).unwrap(),
            "",
            "the shared file is left alone"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn apparmor_falls_back_to_the_shared_attribute() {
        let root = fake_proc("aa-old", false);
        assert_eq!(apparmor_exec_attr_path(&root), root.join("thread-self/attr/exec"));
        write_exec_label(&root, Lsm::AppArmor, "unconfined", false).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("thread-self/attr/exec")).unwrap(), "exec unconfined");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn selinux_writes_the_bare_label_to_the_shared_attribute() {
        let root = fake_proc("se", true);
        let label = "system_u:system_r:container_t:s0:c1,c2";
        let written = write_exec_label(&root, Lsm::SeLinux, label, false).unwrap();
        assert_eq!(written, root.join("thread-self/attr/exec"));
        assert_eq!(std::fs::read_to_string(&written).unwrap(), label);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_fake_proc_is_refused_when_procfs_is_required() {
        // CVE-2019-16884: a directory mounted over /proc must not swallow the label.
        let root = fake_proc("fake", true);
        let e = write_exec_label(&root, Lsm::AppArmor, "p", true).unwrap_err().to_string();
        assert!(e.contains("is not on procfs") && e.contains("process.apparmorProfile"), "{e}");
        assert_eq!(std::fs::read_to_string(root.join("thread-self/attr/apparmor/exec")).unwrap(), "");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn missing_attribute_names_field_and_path() {
        let root = std::env::temp_dir().join(format!("karton-fake-proc-{}-none", std::process::id()));
        let e = write_exec_label(&root, Lsm::SeLinux, "x", false).unwrap_err().to_string();
        assert!(e.contains("process.selinuxLabel \"x\"") && e.contains("thread-self/attr/exec"), "{e}");
    }

    #[test]
    fn nothing_to_apply_writes_nothing() {
        // No label: no procfs access at all (works on this host without any LSM).
        apply_exec_labels(&Process::default()).unwrap();
    }
}
