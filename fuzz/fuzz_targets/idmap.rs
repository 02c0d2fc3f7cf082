//! /proc/PID/{uid,gid}_map parsing: parse -> format -> parse is the identity, and the
//! lookups never overflow.
#![no_main]

use std::path::Path;

use karton_ns::IdMap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(map) = IdMap::parse(text, Path::new("/proc/fuzz/uid_map")) else { return };
    let out = map.to_proc_string();
    let again = IdMap::parse(&out, Path::new("/proc/fuzz/uid_map")).expect("formatted map parses");
    assert_eq!(again, map);
    let _ = map.is_identity_full();
    for id in [0u32, 1, 1000, 65534, 100000, u32::MAX - 1, u32::MAX] {
        if let Some(o) = map.to_outside(id) {
            let _ = map.to_inside(o);
        }
        let _ = map.to_inside(id);
    }
});
