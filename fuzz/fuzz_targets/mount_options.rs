//! Mount options and mount entries: parse_option on every option, parse_options on the
//! list for a few filesystem types, MountSpec::from_oci on any mount JSON, and the
//! mountinfo parser on the raw text.
#![no_main]

use std::path::Path;

use karton_runtime::mounts::{parse_option, parse_options, MountSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for o in text.split(',') {
        let _ = parse_option(o);
    }
    let list: Vec<String> = text.split(',').map(str::to_string).collect();
    for typ in [None, Some("bind"), Some("tmpfs"), Some("ext4"), Some("")] {
        let _ = parse_options(&list, typ);
    }
    if let Ok(mounts) = karton_sys::mountinfo::parse(text) {
        for m in &mounts {
            let _ = (m.mount_opts().count(), m.super_opts().count());
        }
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
