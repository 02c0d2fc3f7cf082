//! Mount options and mount entries: parse_option on every option, MountSpec::from_oci on
//! any mount JSON.
#![no_main]

use std::path::Path;

use karton_runtime::mounts::{parse_option, MountSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for o in text.split(',') {
        let _ = parse_option(o);
    }
    if let Ok(m) = serde_json::from_str::<oci_spec::runtime::Mount>(text) {
        let _ = MountSpec::from_oci(&m, Path::new("/bundle"));
    }
    if let Ok(ms) = serde_json::from_str::<Vec<oci_spec::runtime::Mount>>(text) {
        for m in &ms {
            let _ = MountSpec::from_oci(m, Path::new("relative/bundle"));
        }
    }
});
