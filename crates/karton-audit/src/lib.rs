//! karton-audit: does each namespace isolate, and do neighbours interfere?
//!
//! * Isolation ([`isolation`]): probes that try to see or change a host resource from
//!   inside a container, each run without and with the namespace under test (all else
//!   equal), plus the rows no namespace protects (keyring, dmesg, /proc/sys, sysrq,
//!   modules) without and with the mechanism that does.
//! * Noninterference ([`nonint`]): a victim container beside the six stressors of the
//!   Isolation Benchmark Suite, with and without cgroup limits.
//! * Footprint ([`footprint`]): kernel functions sampled per configuration (an
//!   approximation of the VEE'20 measure).
//!
//! Containers are run through the karton binary as a subprocess (the runtime's create uses
//! raw clone3 and must not run in a multi-threaded process); the probes run inside as the
//! hidden `karton audit probe …` command of the bind-mounted binary.
//!
//! Without the `runner` feature (default on) the crate is the result types only
//! ([`results`], [`stats`]): what karton-report needs, without the runtime, nix or eBPF.

#[cfg(feature = "runner")]
pub mod footprint;
#[cfg(feature = "runner")]
pub mod isolation;
#[cfg(feature = "runner")]
pub mod nonint;
#[cfg(feature = "runner")]
pub mod probes;
pub mod results;
#[cfg(feature = "runner")]
pub mod runner;
pub mod stats;
#[cfg(feature = "runner")]
pub mod workloads;

use std::path::PathBuf;
#[cfg(feature = "runner")]
use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    sync::Arc,
    time::Instant,
};

pub use results::{
    AuditResults, IsolationRow, Noninterference, NoninterferenceRow, Outcome, Verdict, SCHEMA,
};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Host(String),
    #[error("interrupted")]
    Interrupted,
}

/// How much to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// ≤ 5 minutes on 2 cores.
    Quick,
    /// Longer victim runs, three repetitions.
    Full,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Quick => "quick",
            Profile::Full => "full",
        }
    }
}

/// What `karton audit` runs.
#[derive(Debug, Clone)]
pub struct Options {
    pub profile: Profile,
    /// The karton binary; the audit runs (and bind-mounts into every container as /karton)
    /// a private copy of it, so a rebuild during the audit changes nothing.
    pub exe: PathBuf,
    /// Where to write the results (atomically); None: do not write.
    pub out: Option<PathBuf>,
    /// Probe id prefixes to run ("pid", "net.bind"); empty: all.
    pub only: Vec<String>,
    pub isolation: bool,
    pub noninterference: bool,
    pub footprint: bool,
    /// Stressors to run (empty: all six).
    pub stressors: Vec<String>,
    /// Work directory (rootfs, bundles, state root); a fresh one under /tmp when None.
    pub work_dir: Option<PathBuf>,
}

#[cfg(feature = "runner")]
/// A working session: a private work dir (busybox rootfs, bundles, state root) and the
/// karton runner. Dropping it kills and deletes leftover containers, removes the audit's
/// parent cgroups and (unless the caller chose the directory) the work dir — on every exit
/// path, including errors and interrupts.
pub struct Session {
    pub env: isolation::Env,
    keep_work: bool,
}

#[cfg(feature = "runner")]
static SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(feature = "runner")]
impl Session {
    /// `exe`: the karton binary; `work`: a directory to use (kept afterwards) or None.
    pub fn new(exe: &Path, work: Option<&Path>) -> Result<Self, AuditError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(AuditError::Host(
                "karton audit needs root (it creates containers, cgroups and mounts)".into(),
            ));
        }
        let n = SESSIONS.fetch_add(1, Ordering::Relaxed);
        let run_id = format!("{:x}{n}", (unix_now() & 0xfffff) ^ ((std::process::id() as u64) << 4));
        let dir = match work {
            Some(w) => w.to_path_buf(),
            None => std::env::temp_dir().join(format!("karton-audit-{run_id}")),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| AuditError::Io { what: format!("creating {}", dir.display()), source: e })?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711));
        // A private copy of the binary: a rebuild of the original during a long audit must
        // not change the runtime (or the probes) half-way through.
        let own = dir.join("karton");
        std::fs::copy(exe, &own).map_err(|e| AuditError::Io {
            what: format!("copying {} to {}", exe.display(), own.display()),
            source: e,
        })?;
        let _ = std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755));
        let karton = runner::Karton::new(&own, &dir.join("state"), &dir.join("bundles"), &run_id)?;
        let mut me = Self {
            env: isolation::Env { karton, rootfs: PathBuf::new(), work: dir.clone() },
            keep_work: work.is_some(),
        };
        me.env.rootfs = runner::build_rootfs(&dir, &own)?;
        Ok(me)
    }

    pub fn karton(&self) -> &runner::Karton {
        &self.env.karton
    }
}

#[cfg(feature = "runner")]
impl Drop for Session {
    fn drop(&mut self) {
        self.env.karton.cleanup_all();
        if !self.keep_work {
            let _ = std::fs::remove_dir_all(&self.env.work);
        } else {
            let _ = std::fs::remove_dir_all(self.env.work.join("bundles"));
        }
    }
}

#[cfg(feature = "runner")]
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(feature = "runner")]
/// Runs the audit. `interrupted` is polled between steps (Ctrl-C); `log` gets progress.
pub fn run(
    opts: &Options,
    interrupted: Arc<AtomicBool>,
    log: &mut dyn FnMut(&str),
) -> Result<AuditResults, AuditError> {
    let started = Instant::now();
    let session = Session::new(&opts.exe, opts.work_dir.as_deref())?;
    let karton = session.env.karton.clone();
    let rootfs = session.env.rootfs.clone();
    let work = session.env.work.clone();
    let run_id = karton.run_id.clone();
    log(&format!("karton audit: run {run_id}, work dir {}", work.display()));
    let stop = || interrupted.load(Ordering::Relaxed);
    let mut notes = vec![
        "mnt: karton always creates a mount namespace, so the \"without\" run of the mnt probes is a process in the host's own mount namespace".to_string(),
        "uts: both runs start inside a scratch uts namespace created by the audit; the real host hostname is never changed".to_string(),
        "user: both runs omit the pid namespace so that host processes stay reachable, and hold every capability of the host's bounding set".to_string(),
    ];
    let mut results = AuditResults {
        schema: SCHEMA.into(),
        profile: opts.profile.name().into(),
        started_unix: unix_now(),
        duration_s: 0.0,
        machine: results::Machine::detect(),
        isolation: Vec::new(),
        noninterference: None,
        footprint: None,
        notes: Vec::new(),
    };
    let env = &session.env;
    if opts.isolation {
        log("isolation probes (without → with):");
        results.isolation = isolation::run_all(env, &opts.only, &stop, log);
        checkpoint(opts, &mut results, started)?;
    }
    if stop() {
        return Err(AuditError::Interrupted);
    }
    if opts.noninterference {
        let mut plan = match opts.profile {
            Profile::Quick => nonint::Plan::quick(),
            Profile::Full => nonint::Plan::full(),
        };
        if !opts.stressors.is_empty() {
            plan.stressors.retain(|s| opts.stressors.contains(s));
        }
        log("noninterference (victim alone, then beside each stressor):");
        let ni = nonint::run(&karton, &rootfs, &work, &plan, &stop, log);
        results.noninterference = Some(ni);
        checkpoint(opts, &mut results, started)?;
    }
    if stop() {
        return Err(AuditError::Interrupted);
    }
    if opts.footprint {
        log("kernel footprint (APPROXIMATION: cpu-clock sampling):");
        let secs = if opts.profile == Profile::Quick { 1.5 } else { 4.0 };
        results.footprint = Some(footprint::run(&karton, &rootfs, secs, log));
    }
    notes
        .push(format!("run id {run_id}; containers under cgroup /karton-audit/{run_id}, removed afterwards"));
    results.notes = notes;
    checkpoint(opts, &mut results, started)?;
    Ok(results)
}

#[cfg(feature = "runner")]
fn checkpoint(opts: &Options, r: &mut AuditResults, started: Instant) -> Result<(), AuditError> {
    r.duration_s = started.elapsed().as_secs_f64();
    if let Some(p) = &opts.out {
        results::write_json(p, r)?;
    }
    Ok(())
}

#[cfg(feature = "runner")]
/// The body of the hidden `karton audit probe ID PARAMS` command: one JSON line.
pub fn probe_main(id: &str, params: &str) -> i32 {
    let p: serde_json::Value = serde_json::from_str(params).unwrap_or(serde_json::Value::Null);
    let r = probes::run_probe(id, &p);
    match serde_json::to_string(&r) {
        Ok(s) => {
            println!("{s}");
            0
        }
        Err(_) => 1,
    }
}
