//! A test runner for test files that fork (`harness = false`): libtest runs every test on a
//! thread of its own, and forking a multithreaded process is unsound (the child inherits
//! locks held by threads that do not exist in it), so `karton_sys::clone::*_single_threaded`
//! refuse it. This runner runs each test on the main thread, one after another. It takes
//! libtest's usual arguments: name filters, `--exact`, `--list`, and ignores the others
//! (`--nocapture`, `--test-threads`, `-q`).

use crate::CURRENT_TEST;

/// Runs the chosen tests in order and exits 101 when any failed.
pub fn run(tests: &[(&str, fn())]) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exact = args.iter().any(|a| a == "--exact");
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    let filters: Vec<&str> = args.iter().filter(|a| !a.starts_with('-')).map(String::as_str).collect();
    let chosen: Vec<&(&str, fn())> = tests
        .iter()
        .filter(|(name, _)| {
            filters.is_empty() || filters.iter().any(|f| if exact { name == f } else { name.contains(f) })
        })
        .collect();
    let quiet = args.iter().any(|a| a == "-q" || a == "--quiet");
    if !quiet {
        println!("\nrunning {} tests (one thread, harness = false)", chosen.len());
    }
    let mut failed = Vec::new();
    for (name, test) in &chosen {
        // Names the test for `skip` (this thread is "main", not the test's).
        CURRENT_TEST.with(|c| *c.borrow_mut() = Some(name.to_string()));
        let ok = std::panic::catch_unwind(*test).is_ok();
        CURRENT_TEST.with(|c| *c.borrow_mut() = None);
        if !quiet || !ok {
            println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        }
        if !ok {
            failed.push(*name);
        }
    }
    let passed = chosen.len() - failed.len();
    if failed.is_empty() {
        println!(
            "\ntest result: ok. {passed} passed; 0 failed; {} filtered out\n",
            tests.len() - chosen.len()
        );
    } else {
        println!("\nfailures:\n    {}\n", failed.join("\n    "));
        println!(
            "test result: FAILED. {passed} passed; {} failed; {} filtered out\n",
            failed.len(),
            tests.len() - chosen.len()
        );
        std::process::exit(101);
    }
}
