//! Whole-file replacement that readers never see half done. Safe code only.
//!
//! The one rule for fsync: files a user keeps (benchmark and audit results, reports) are
//! [`Durability::Fsync`]ed before the rename, so that a crash leaves the old or the new file
//! and never an empty one. Runtime state is [`Durability::NoFsync`]: it describes live
//! processes, which a power loss ends anyway, and an fsync per state change cost 7-27 ms on
//! this machine's ext4 root (docs/architecture.md, "Start-up cost and size").

use std::io::Write;
use std::path::Path;

/// Whether [`write_atomic`] waits for the data to reach the disk before the rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the temp file before the rename: for results and reports.
    Fsync,
    /// Rename only: for runtime state that does not outlive its processes.
    NoFsync,
}

/// Writes `data` to `path` so that readers see either the old or the new content, never half
/// a file, whenever the writer dies: write a sibling temp file, optionally fsync it, rename
/// it over. The temp file is removed when any step fails. The directory must exist.
pub fn write_atomic(path: &Path, data: &[u8], durability: Durability) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        if durability == Durability::Fsync {
            f.sync_all()?;
        }
        drop(f);
        match durability {
            Durability::Fsync => std::fs::rename(&tmp, path),
            Durability::NoFsync => replace_without_flush(&tmp, path),
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Puts `tmp` in `path`'s place. A plain rename over an existing file makes ext4 (with its
/// default `auto_da_alloc`) start writing the new file's data out on the spot, which cost a
/// third of a millisecond per state change on this machine's root; swapping the two names
/// (RENAME_EXCHANGE) is just as atomic for readers and leaves the data to the flusher. The
/// old content, now under `tmp`, is then unlinked. Anything but a regular file at `path`
/// (nothing yet, a directory: the rename's own errors apply) and filesystems without the
/// swap get the plain rename.
fn replace_without_flush(tmp: &Path, path: &Path) -> std::io::Result<()> {
    if swap_in(tmp, path)? {
        // The new content is in place; a failed unlink only leaves the old one behind.
        let _ = std::fs::remove_file(tmp);
    }
    Ok(())
}

/// Puts `new` in `path`'s place: swaps the two names when `path` is a regular file and the
/// filesystem can (then the old content is under `new`, and the answer is true), renames
/// `new` over `path` otherwise (false).
fn swap_in(new: &Path, path: &Path) -> std::io::Result<bool> {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
    let regular = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file());
    if regular && renameat2(AT_FDCWD, new, AT_FDCWD, path, RenameFlags::RENAME_EXCHANGE).is_ok() {
        return Ok(true);
    }
    std::fs::rename(new, path).map(|()| false)
}

/// Replaces `path` like [`write_atomic`] with [`Durability::NoFsync`], for a file whose
/// directory only writers holding the caller's lock touch (a container's state.json): the
/// data goes into `spare`, the two names are swapped, and the old content stays under
/// `spare` for the next call to overwrite. Every state change of a container thus reuses the
/// same two inodes instead of making and freeing one; on an ext4 without a journal (these
/// machines' root) each fresh inode is searched for past every inode freed in the last
/// seconds to minutes, which made a container's start slower the more containers had come
/// and gone (docs/architecture.md, "Start-up cost and size"). The spare is overwritten in
/// place and cut to length, never truncated to zero first: ext4's `auto_da_alloc` would
/// write a file truncated to zero out on close. Without the swap (a first write, a
/// filesystem that lacks RENAME_EXCHANGE) the spare is renamed over `path`.
pub fn replace_reusing(path: &Path, spare: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .mode(0o644)
            .open(spare)?;
        f.write_all(data)?;
        f.set_len(data.len() as u64)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(spare);
        return Err(e);
    }
    // Swapped: the old content stays as the next spare.
    swap_in(spare, path).map(|_| ()).inspect_err(|_| {
        let _ = std::fs::remove_file(spare);
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temp_file() {
        for d in [Durability::Fsync, Durability::NoFsync] {
            let dir = std::env::temp_dir().join(format!("karton-atomic-test-{}-{d:?}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let p = dir.join("f.json");
            write_atomic(&p, b"one", d).unwrap();
            write_atomic(&p, b"two", d).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), b"two");
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn failure_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("karton-atomic-fail-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("target-is-a-dir/inner")).unwrap();
        // Renaming a file over a non-empty directory fails after the temp file was written.
        assert!(write_atomic(&dir.join("target-is-a-dir"), b"x", Durability::NoFsync).is_err());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "temp file removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reusing_swaps_two_inodes_and_cuts_to_length() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir().join(format!("karton-atomic-reuse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (p, spare) = (dir.join("state.json"), dir.join(".state.json.spare"));
        replace_reusing(&p, &spare, b"first, a long one").unwrap();
        assert!(!spare.exists(), "a first write renames the spare into place");
        replace_reusing(&p, &spare, b"second").unwrap();
        let inodes = [std::fs::metadata(&p).unwrap().ino(), std::fs::metadata(&spare).unwrap().ino()];
        replace_reusing(&p, &spare, b"3rd").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"3rd", "the old spare's longer content was cut");
        assert_eq!(std::fs::read(&spare).unwrap(), b"second");
        let now = [std::fs::metadata(&p).unwrap().ino(), std::fs::metadata(&spare).unwrap().ino()];
        assert_eq!(now, [inodes[1], inodes[0]], "the same two inodes, swapped");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reusing_does_not_follow_a_symlinked_spare() {
        let dir = std::env::temp_dir().join(format!("karton-atomic-reuse-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let (p, spare) = (dir.join("state.json"), dir.join(".state.json.spare"));
        std::os::unix::fs::symlink(&victim, &spare).unwrap();
        assert!(replace_reusing(&p, &spare, b"new").is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert!(!p.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
