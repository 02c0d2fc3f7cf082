//! config.json parsing and validation: any text must give Ok or a typed error, never a panic.
#![no_main]

use std::path::Path;

use karton_runtime::config::{self, Config, HostSupport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(spec) = config::parse_spec(text, Path::new("fuzz/config.json")) else { return };
    let cfg = Config { spec, path: "fuzz/config.json".into(), text: text.to_string() };
    for host in [HostSupport::default(), HostSupport { apparmor: true, selinux: true }] {
        let _ = config::validate(&cfg, &host);
    }
    if let Some(p) = cfg.spec.process() {
        let _ = config::validate_process(p, "fuzz", &|_| String::new(), &HostSupport::default());
    }
    let _ = config::namespaces(&cfg.spec);
});
