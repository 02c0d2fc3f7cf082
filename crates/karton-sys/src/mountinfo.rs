//! `/proc/PID/mountinfo`, parsed once for the whole project (proc_pid_mountinfo(5)).
//!
//! Line format:
//! `id parent major:minor root mount_point mount_options [optional fields...] - fstype source super_options`.
//! The kernel escapes space, tab, newline and backslash in paths (and in the source and
//! super options) as `\040`, `\011`, `\012` and `\134`; every field is unescaped here, so a
//! mount point with a space compares equal to the path it names. Safe code only.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One line of mountinfo, with every field unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    pub id: u32,
    pub parent: u32,
    pub major: u32,
    pub minor: u32,
    /// The path inside the filesystem that is mounted (`/` unless a bind mount of a sub-tree;
    /// `type:[inode]` for nsfs).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options, comma separated ("rw,nosuid,relatime").
    pub options: String,
    /// Optional fields ("shared:1", "master:2", ...).
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// Superblock options, comma separated ("rw,size=65536k,mode=755").
    pub super_options: String,
}

impl MountInfo {
    /// The per-mount options one by one.
    pub fn mount_opts(&self) -> impl Iterator<Item = &str> {
        self.options.split(',').filter(|o| !o.is_empty())
    }

    /// The superblock options one by one.
    pub fn super_opts(&self) -> impl Iterator<Item = &str> {
        self.super_options.split(',').filter(|o| !o.is_empty())
    }

    /// Whether the per-mount options contain `opt` ("nosuid", "noatime", ...).
    pub fn has_mount_opt(&self, opt: &str) -> bool {
        self.mount_opts().any(|o| o == opt)
    }
}

/// Why mountinfo could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MountInfoError {
    #[error("reading {path}: {source}: check that /proc is mounted and readable")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line}: cannot parse {text:?}: {reason}")]
    Parse { path: PathBuf, line: usize, text: String, reason: &'static str },
}

/// Reads and parses a mountinfo file (e.g. `/proc/self/mountinfo`).
pub fn read(path: &Path) -> Result<Vec<MountInfo>, MountInfoError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| MountInfoError::Read { path: path.to_path_buf(), source })?;
    parse_from(path, &text)
}

/// Reads `/proc/self/mountinfo`.
pub fn read_self() -> Result<Vec<MountInfo>, MountInfoError> {
    read(Path::new("/proc/self/mountinfo"))
}

/// Parses mountinfo text; `path` only names the origin in errors.
pub fn parse_from(path: &Path, text: &str) -> Result<Vec<MountInfo>, MountInfoError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            parse_line(l).map_err(|reason| MountInfoError::Parse {
                path: path.to_path_buf(),
                line: i + 1,
                text: l.to_string(),
                reason,
            })
        })
        .collect()
}

/// Parses mountinfo text that came from somewhere other than a file.
pub fn parse(text: &str) -> Result<Vec<MountInfo>, MountInfoError> {
    parse_from(Path::new("mountinfo"), text)
}

/// Parses one line.
pub fn parse_line(line: &str) -> Result<MountInfo, &'static str> {
    // Fields are separated by single spaces; escaping guarantees no field holds one.
    let f: Vec<&str> = line.split(' ').collect();
    let sep = f
        .iter()
        .skip(6)
        .position(|x| *x == "-")
        .map(|p| p + 6)
        .ok_or("no \" - \" separator after the optional fields")?;
    if f.len() < 6 || f.len() < sep + 4 {
        return Err("too few fields");
    }
    let num = |s: &str, what: &'static str| s.parse::<u32>().map_err(|_| what);
    let (maj, min) = f[2].split_once(':').ok_or("major:minor is not of the form N:N")?;
    Ok(MountInfo {
        id: num(f[0], "mount id is not a number")?,
        parent: num(f[1], "parent id is not a number")?,
        major: num(maj, "major is not a number")?,
        minor: num(min, "minor is not a number")?,
        root: PathBuf::from(OsString::from_vec(unescape_bytes(f[3]))),
        mount_point: PathBuf::from(OsString::from_vec(unescape_bytes(f[4]))),
        options: f[5].to_string(),
        optional: f[6..sep].iter().map(|s| s.to_string()).collect(),
        fstype: unescape(f[sep + 1]),
        source: unescape(f[sep + 2]),
        // Super options are the rest; a trailing empty field must not be lost.
        super_options: unescape(&f[sep + 3..].join(" ")),
    })
}

/// Undoes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash), byte-exact.
pub fn unescape_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && is_octal_escape(&b[i + 1..]) {
            let v =
                u32::from(b[i + 1] - b'0') * 64 + u32::from(b[i + 2] - b'0') * 8 + u32::from(b[i + 3] - b'0');
            // \400 and above is not a byte: keep it as text.
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn is_octal_escape(rest: &[u8]) -> bool {
    rest.len() >= 3 && rest[..3].iter().all(|c| (b'0'..=b'7').contains(c))
}

/// [`unescape_bytes`] as text (invalid UTF-8 replaced).
pub fn unescape(s: &str) -> String {
    String::from_utf8_lossy(&unescape_bytes(s)).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const TEXT: &str = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
42 27 0:4 uts:[4026532177] /tmp/a\\040b/uts rw - nsfs nsfs rw
50 22 0:50 /dir\\011with\\012ctl /mnt/back\\134slash\\040and\\040space rw,nosuid master:3 shared:7 - tmpfs my\\040src rw,size=65536k,mode=755
";

    #[test]
    fn parses_fields() {
        let v = parse(TEXT).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!((v[0].id, v[0].parent, v[0].major, v[0].minor), (22, 1, 8, 1));
        assert_eq!(v[0].mount_point, Path::new("/"));
        assert_eq!(v[0].optional, vec!["shared:1"]);
        assert_eq!(v[0].fstype, "ext4");
        assert_eq!(v[0].source, "/dev/vda1");
        assert_eq!(v[0].super_options, "rw,errors=remount-ro");
        assert!(v[1].optional.is_empty());
        assert!(v[1].has_mount_opt("noexec"));
        assert!(!v[1].has_mount_opt("exec"));
        assert_eq!(v[1].super_opts().collect::<Vec<_>>(), vec!["ro", "mode=755"]);
        assert_eq!(v[2].root, Path::new("uts:[4026532177]"));
    }

    #[test]
    fn unescapes_every_path_field() {
        let v = parse(TEXT).unwrap();
        assert_eq!(v[2].mount_point, Path::new("/tmp/a b/uts"));
        assert_eq!(v[3].root, Path::new("/dir\twith\nctl"));
        assert_eq!(v[3].mount_point, Path::new("/mnt/back\\slash and space"));
        assert_eq!(v[3].optional, vec!["master:3", "shared:7"]);
        assert_eq!(v[3].source, "my src");
    }

    #[test]
    fn unescape_edge_cases() {
        assert_eq!(unescape("plain"), "plain");
        assert_eq!(unescape("a\\040"), "a ");
        assert_eq!(unescape("\\134\\040"), "\\ ");
        // Not an escape: too short, not octal, or above a byte.
        assert_eq!(unescape("a\\04"), "a\\04");
        assert_eq!(unescape("a\\089"), "a\\089");
        assert_eq!(unescape("\\777"), "\\777");
        assert_eq!(unescape_bytes("\\377"), vec![0xff]);
    }

    #[test]
    fn malformed_lines_are_errors() {
        let e = parse("1 2 0:3 / /x rw ext4 /dev/x rw\n").unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("separator"), "{e}");
        let e = parse("22 1 8:1 / / rw - ext4 /dev/vda1 rw\nx 1 8:1 / / rw - ext4 /dev/vda1 rw\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("mount id"), "{e}");
        assert!(parse("1 2 0:3 / /x rw -\n").is_err());
        assert!(parse("1 2 03 / /x rw - ext4 s rw\n").is_err());
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn read_errors_are_typed() {
        let e = read(Path::new("/nonexistent/mountinfo")).unwrap_err();
        assert!(
            matches!(e, MountInfoError::Read { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{e}"
        );
    }

    #[test]
    fn reads_own_mountinfo() {
        let v = read_self().unwrap();
        assert!(v.iter().any(|m| m.mount_point == Path::new("/")), "no root mount in {v:?}");
    }
}
