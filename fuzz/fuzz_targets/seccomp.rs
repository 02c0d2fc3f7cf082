//! linux.seccomp profiles: check (compile with libseccomp + kernel support probe) on any
//! JSON that parses as a profile. Nothing is installed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sc) = serde_json::from_slice::<oci_spec::runtime::LinuxSeccomp>(data) else { return };
    if karton_runtime::seccomp::compile(&sc).is_ok() {
        let _ = karton_runtime::seccomp::check(&sc);
    }
});
