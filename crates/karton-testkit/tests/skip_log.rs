//! `skip` names the test libtest runs and appends one line per skip to the skip log.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

#[test]
fn skip_appends_the_test_and_the_reason() {
    let log = std::env::temp_dir().join(format!("karton-testkit-skips-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    // The only test of this binary: no other test reads the variable meanwhile.
    std::env::set_var("KARTON_SKIP_LOG", &log);
    karton_testkit::skip("needs\ta pony");
    karton_testkit::skip(format!("needs {}", "root"));
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert_eq!(
        text,
        "skip_log::skip_appends_the_test_and_the_reason\tneeds a pony\n\
         skip_log::skip_appends_the_test_and_the_reason\tneeds root\n"
    );
}
