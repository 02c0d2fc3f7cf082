//! One module per command family. Each parses nothing itself (clap does) and holds no
//! logic a library user would need: it calls the library crates and prints.

pub mod audit;
pub mod bench;
pub mod lifecycle;
pub mod manage;
pub mod ns;
pub mod report;
pub mod spawn;
pub mod trace;
pub mod workload;
