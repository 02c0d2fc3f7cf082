//! The single-thread check of `clone3_single_threaded` / `fork_single_threaded`, from a
//! process whose thread count this test controls (`harness = false`: no libtest threads).

use std::sync::mpsc;

use karton_sys::clone::{self, Forked};

fn main() {
    // One thread: both wrappers fork; the child leaves at once.
    assert_eq!(clone::thread_count(), Some(1), "a harness = false test starts with one thread");
    clone::ensure_single_threaded().unwrap_or_else(|e| panic!("one thread, yet refused: {e}"));
    match clone::fork_single_threaded() {
        Ok(None) => clone::exit_now(0),
        Ok(Some(pid)) => reap(pid),
        Err(e) => panic!("fork_single_threaded with one thread: {e}"),
    }
    match clone::clone3_single_threaded(0, None) {
        Ok(Forked::Child) => clone::exit_now(0),
        Ok(Forked::Parent { pid, .. }) => reap(pid),
        Err(e) => panic!("clone3_single_threaded with one thread: {e}"),
    }

    // A second thread: both refuse, naming the reason.
    let (stop, wait) = mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let _ = wait.recv();
    });
    assert_eq!(clone::thread_count(), Some(2));
    for r in [clone::fork_single_threaded().map(|_| ()), clone::clone3_single_threaded(0, None).map(|_| ())] {
        match r {
            Err(e) => assert_eq!(e.call, clone::MULTI_THREADED, "{e}"),
            Ok(()) => panic!("forked with two threads"),
        }
    }
    let _ = stop.send(());
    let _ = t.join();
    println!("single_thread: ok");
}

fn reap(pid: i32) {
    match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
        Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => {}
        other => panic!("child {pid}: {other:?}"),
    }
}
