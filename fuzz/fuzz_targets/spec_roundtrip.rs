//! The `spec` and `features` outputs and any parsed config round-trip: a config karton
//! accepted serializes to text that parses to the same config.
#![no_main]

use std::path::Path;

use karton_runtime::config::parse_spec;
use karton_runtime::defaults::{default_spec, features};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 9 {
        // `karton spec [--rootless]` for arbitrary ids parses back.
        let rootless = data[0] & 1 == 1;
        let uid = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
        let gid = u32::from_le_bytes([data[5], data[6], data[7], data[8]]);
        let v = default_spec(rootless, uid, gid);
        let text = serde_json::to_string(&v).expect("spec JSON");
        parse_spec(&text, Path::new("spec")).expect("karton spec output parses");
    }
    let f = features();
    assert!(f.get("ociVersionMax").is_some());
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(spec) = parse_spec(text, Path::new("fuzz")) else { return };
    let out = serde_json::to_string(&spec).expect("a parsed spec serializes");
    let again = parse_spec(&out, Path::new("fuzz-again")).expect("serialized spec parses");
    // Compared as values: capability sets are hash sets, serialized in any order.
    assert_eq!(again, spec);
});
