//! Compiles the BPF programs under src/bpf with clang (through libbpf-cargo) into OUT_DIR.
//! The library loads the objects with libbpf-rs' ObjectBuilder (owned objects, no skeleton
//! lifetimes), so one instrument failing to load never affects another.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const PROGS: &[&str] = &["syscalls", "sched", "faults", "nsops", "timeline", "footprint", "tracepoints"];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let vmlinux_dir = PathBuf::from("src/bpf");
    for name in PROGS {
        let src = format!("src/bpf/{name}.bpf.c");
        let obj = out.join(format!("{name}.bpf.o"));
        let skel = out.join(format!("{name}.skel.rs"));
        SkeletonBuilder::new()
            .source(&src)
            .obj(&obj)
            .clang_args([
                std::ffi::OsString::from("-I"),
                vmlinux_dir.clone().into_os_string(),
                std::ffi::OsString::from("-Wno-compare-distinct-pointer-types"),
                // BPF ISA v3 (kernel >= 5.1): atomic fetch-and-add returning the old value.
                std::ffi::OsString::from("-mcpu=v3"),
            ])
            .build_and_generate(&skel)
            .unwrap_or_else(|e| panic!("building {src}: {e:#}"));
        println!("cargo:rerun-if-changed={src}");
    }
    println!("cargo:rerun-if-changed=src/bpf/common.h");
    println!("cargo:rerun-if-changed=src/bpf/vmlinux.h");
}
