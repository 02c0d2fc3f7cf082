//! karton-bench: how each namespace changes an application's performance.
//!
//! Data flows one way: the runner (feature `runner`) runs [`workloads`] bare and inside
//! containers built by the [`matrix`], and writes [`results`]; [`compare`] and
//! karton-report read results only. Method: docs/bench.md.

pub mod compare;
pub mod results;
pub mod schema;
pub mod stats;

#[cfg(feature = "runner")]
pub mod apps;
#[cfg(feature = "runner")]
pub mod instrumented;
#[cfg(feature = "runner")]
pub mod machine;
#[cfg(feature = "runner")]
pub mod matrix;
#[cfg(feature = "runner")]
pub mod netmode;
#[cfg(feature = "runner")]
pub mod profile;
#[cfg(feature = "runner")]
pub mod runlock;
#[cfg(feature = "runner")]
pub mod runner;
#[cfg(feature = "runner")]
pub mod workloads;

pub use results::{BenchResults, SCHEMA};

/// Errors of the benchmark library.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{call}: {source}")]
    Sys { call: String, source: std::io::Error },
    #[error("unknown workload {name:?}: valid workloads are {valid}")]
    UnknownWorkload { name: String, valid: String },
    #[error("unknown configuration {name:?}: valid configurations are {valid}")]
    UnknownConfig { name: String, valid: String },
    #[error("unknown profile {name:?}: valid profiles are quick, full")]
    UnknownProfile { name: String },
    #[error("{0}")]
    Invalid(String),
    #[error("workload {workload}: {why}")]
    Workload { workload: String, why: String },
    #[error("results file {path}: {why}")]
    BadResults { path: String, why: String },
    #[error("encoding results: {0}")]
    Encode(String),
    #[error("setting up the benchmark: {0}")]
    Setup(String),
}

impl BenchError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
