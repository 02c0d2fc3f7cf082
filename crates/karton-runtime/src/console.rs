//! The container's terminal: a pty made inside the container's devpts, its master sent to
//! the engine over the console socket (SCM_RIGHTS, as runc does), its slave made the
//! process's stdio and controlling terminal and bound over /dev/console.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use nix::sys::stat::Mode;

use crate::error::{Context, Result};
use crate::mounts;

/// The terminal of a process that joins a root someone else set up (exec, or an init
/// in a shared mount namespace): a pty from the container's /dev/ptmx, sized as
/// `process.consoleSize` says, with no bind over /dev/console (not our mount table).
pub fn setup_tty_in_current_root(socket: &OwnedFd, process: &oci_spec::runtime::Process) -> Result<()> {
    let root = nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| "opening the container root".into())?;
    setup_tty(socket, &root, process.console_size().map(|b| (b.height() as u16, b.width() as u16)), false)
}

/// `bind_console`: also bind the terminal over /dev/console (the container's first
/// process; not for exec).
pub fn setup_tty(
    socket: &OwnedFd,
    root: &OwnedFd,
    size: Option<(u16, u16)>,
    bind_console: bool,
) -> Result<()> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .ctx(|| "opening /dev/ptmx in the container (is devpts mounted at /dev/pts?)".into())?;
    nix::pty::grantpt(&master).ctx(|| "grantpt".into())?;
    nix::pty::unlockpt(&master).ctx(|| "unlockpt".into())?;
    let name = nix::pty::ptsname_r(&master).ctx(|| "ptsname".into())?;
    let slave =
        nix::fcntl::open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())
            .ctx(|| format!("opening the terminal {name}"))?;
    // The path came from ptsname: a /dev/pts that is not devpts could make it name any file
    // (CVE-2025-52565). Only a pty slave (char major 136-143) may become the terminal.
    let st = nix::sys::stat::fstat(slave.as_fd()).ctx(|| format!("stat of the terminal {name}"))?;
    let major = nix::sys::stat::major(st.st_rdev);
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || !(136..=143).contains(&major) {
        return Err(crate::error::Error::Config(format!(
            "the terminal {name} is not a pty slave: /dev/pts in the container must be a devpts mount, not a bind or symlinks"
        )));
    }
    if let Some((rows, cols)) = size.filter(|(r, c)| *r > 0 && *c > 0) {
        karton_sys::process::set_winsize(slave.as_fd(), rows, cols).ctx(|| "process.consoleSize".into())?;
    }
    // /dev/console is the container's terminal too.
    if bind_console {
        if let Ok(target) = mounts::make_target(root.as_fd(), Path::new("/dev/console"), true) {
            let tree = mounts::clone_fd(&slave, Path::new("/dev/console"))?;
            mounts::attach(&tree, &target, Path::new("/dev/console"))?;
        }
    }
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(name.as_bytes())];
    sendmsg::<()>(socket.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
        .ctx(|| "sending the terminal to --console-socket".into())?;
    drop(master);
    let ctx = || "making the terminal the process's stdio".to_string();
    nix::unistd::dup2_stdin(&slave).ctx(ctx)?;
    nix::unistd::dup2_stdout(&slave).ctx(ctx)?;
    nix::unistd::dup2_stderr(&slave).ctx(ctx)?;
    karton_sys::process::set_controlling_tty(slave.as_fd())
        .ctx(|| "making the terminal the controlling terminal".into())?;
    Ok(())
}
