//! The runner: builds the rootfs and bundles, runs every benchmark round-robin across its
//! configurations until the CIs are tight (or a cap), then namespace creation and the
//! container lifecycle; writes results atomically after every phase.
//!
//! Containers run as subprocesses of the karton binary (`karton --root R run`), never
//! through the runtime library in this process: create uses clone3 and needs a
//! single-threaded caller, and this process has a progress-bar and a signal thread.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::matrix::{self, Config, Kind, Placement};
use crate::profile::{BenchSpec, Profile, ROOTFS_DIR};
use crate::results::*;
use crate::stats;
use crate::BenchError;

/// What to run and where to write.
#[derive(Debug, Clone)]
pub struct Options {
    pub profile: Profile,
    /// Directory for the results (JSON + CSV).
    pub out_dir: PathBuf,
    /// The karton binary (containers and workloads run through it).
    pub exe: PathBuf,
    /// Scratch directory (rootfs, bundles, container state); removed afterwards.
    pub workdir: Option<PathBuf>,
    /// Only these benchmarks / configurations (empty: the profile's).
    pub only_benches: Vec<String>,
    pub only_configs: Vec<String>,
    pub skip_ns_create: bool,
    pub skip_lifecycle: bool,
    pub progress: bool,
    pub seed: u64,
}

/// Valid benchmark names of a profile (for error messages and --help).
pub fn bench_names(p: &Profile) -> Vec<String> {
    let mut v: Vec<String> = p.benches.iter().map(|b| b.id.clone()).collect();
    if let Some(a) = &p.apps {
        v.extend(a.benches.iter().map(|b| b.id.clone()));
    }
    v.push("ns-create".into());
    v.push("lifecycle".into());
    v.push("density".into());
    v
}

/// Set when SIGINT/SIGTERM arrived: the runner finishes the current measurement, writes
/// what is finished and stops.
pub fn interrupt_flag() -> Result<Arc<AtomicBool>, BenchError> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::SignalFd;
    let flag = Arc::new(AtomicBool::new(false));
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask.thread_block().map_err(|e| BenchError::Setup(format!("blocking SIGINT: {e}")))?;
    let sfd = SignalFd::new(&mask).map_err(|e| BenchError::Setup(format!("signalfd: {e}")))?;
    let f = Arc::clone(&flag);
    std::thread::spawn(move || {
        while let Ok(Some(_)) = sfd.read_signal() {
            f.store(true, Ordering::SeqCst);
        }
    });
    Ok(flag)
}

struct Runner {
    opts: Options,
    exe: PathBuf,
    root: PathBuf,
    work: PathBuf,
    /// The runtimes' state roots of the lifecycle and density benchmarks, and the files each
    /// of their commands leaves (stderr, pid files): see [`runtime_scratch`].
    scratch: PathBuf,
    rootfs: PathBuf,
    results: BenchResults,
    json_path: PathBuf,
    csv_path: PathBuf,
    stop: Arc<AtomicBool>,
    pb: ProgressBar,
    counter: AtomicU64,
    remove_work: bool,
    /// The prepared layout ([`Placement::Prepared`]), made before the first lifecycle or
    /// density command: its mount namespace, or why it could not be made.
    prepared: Option<Result<std::os::fd::OwnedFd, String>>,
}

/// Runs the profile; returns the results and the path of the JSON file.
pub fn run(opts: Options, stop: Arc<AtomicBool>) -> Result<(BenchResults, PathBuf), BenchError> {
    let started = SystemTime::now();
    let _lock = crate::runlock::RunLock::acquire(&crate::runlock::default_path())?;
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(BenchError::io(format!("creating {}", opts.out_dir.display())))?;
    let (work, remove_work) = match &opts.workdir {
        Some(w) => (w.clone(), false),
        None => (std::env::temp_dir().join(format!("karton-bench-{}", std::process::id())), true),
    };
    std::fs::create_dir_all(&work).map_err(BenchError::io(format!("creating {}", work.display())))?;
    let exe = opts.exe.canonicalize().map_err(BenchError::io(format!("resolving {}", opts.exe.display())))?;
    let rootfs = matrix::build_rootfs(&work, &exe)?;
    let root = work.join("state");
    std::fs::create_dir_all(&root).map_err(BenchError::io("creating the state directory"))?;
    let (scratch, scratch_note) = runtime_scratch(&work);
    let stamp = rfc3339(started).replace([':', '-'], "");
    let base = opts.out_dir.join(format!("bench-{}-{}", opts.profile.name, stamp));
    let p = &opts.profile;
    let results = BenchResults {
        schema: SCHEMA.into(),
        karton_version: env!("CARGO_PKG_VERSION").into(),
        profile: p.name.clone(),
        started_at: rfc3339(started),
        finished_at: None,
        complete: false,
        interrupted: false,
        machine: crate::machine::detect(),
        method: Method {
            warmups: p.warmups,
            min_rounds: p.min_rounds,
            max_rounds: p.max_rounds,
            target_ci_pct: p.target_ci_pct,
            confidence: 0.95,
            bootstrap_resamples: p.resamples,
            seed: opts.seed,
            interleaving: "round-robin: each round runs every configuration once, the order rotated by one each round".into(),
            outliers: "modified z-score |0.6745 (x - median) / MAD| > 3.5, flagged and kept".into(),
            baseline: "bare".into(),
        },
        configurations: Vec::new(),
        series: Vec::new(),
        ns_create: Vec::new(),
        density: Vec::new(),
        instrumented: None,
        apps: vec![],
        notes: vec![
            "karton requires a mount namespace in every container: '+X' rows are mount + X, and 'mnt' (mount alone) is the minimal container.".into(),
            "Workload figures are measured inside the workload process (container setup is not in them); lifecycle rows time the whole `RUNTIME run` of /bin/true from outside.".into(),
            scratch_note,
        ],
    };
    let pb = if opts.progress {
        ProgressBar::new(0)
    } else {
        ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden())
    };
    pb.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:28}] {pos}/{len} runs, ETA {eta}  {msg}")
            .map_err(|e| BenchError::Setup(e.to_string()))?
            .progress_chars("=> "),
    );
    let mut r = Runner {
        json_path: base.with_extension("json"),
        csv_path: base.with_extension("csv"),
        exe,
        root,
        work,
        scratch,
        rootfs,
        results,
        stop,
        pb,
        counter: AtomicU64::new(0),
        remove_work,
        prepared: None,
        opts,
    };
    let out = r.run_all();
    r.pb.finish_and_clear();
    r.cleanup();
    out?;
    Ok((r.results, r.json_path))
}

impl Runner {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// A line above the progress bar (or on stderr when there is no bar).
    fn log(&self, line: String) {
        if self.pb.is_hidden() {
            eprintln!("{line}");
        } else {
            self.pb.println(line);
        }
    }

    fn save(&mut self) -> Result<(), BenchError> {
        self.results.save_json(&self.json_path)?;
        self.results.save_csv(&self.csv_path)
    }

    fn wanted(&self, id: &str) -> bool {
        self.opts.only_benches.is_empty() || self.opts.only_benches.iter().any(|b| b == id)
    }

    fn run_all(&mut self) -> Result<(), BenchError> {
        let all = matrix::workload_configs();
        let benches: Vec<BenchSpec> =
            self.opts.profile.benches.iter().filter(|b| self.wanted(&b.id)).cloned().collect();
        for b in &self.opts.only_benches {
            if !bench_names(&self.opts.profile).contains(b) {
                return Err(BenchError::UnknownWorkload {
                    name: b.clone(),
                    valid: bench_names(&self.opts.profile).join(", "),
                });
            }
        }
        // The application rows' configurations (net-*, veth-*) are valid names too.
        let app_configs: Vec<String> = self
            .opts
            .profile
            .apps
            .as_ref()
            .map(|a| a.configs.iter().map(|c| c.name.clone()).collect())
            .unwrap_or_default();
        let matrix_only: Vec<String> =
            self.opts.only_configs.iter().filter(|c| !app_configs.contains(c)).cloned().collect();
        matrix::select(&all, &matrix_only).map_err(|e| match e {
            BenchError::UnknownConfig { name, valid } => BenchError::UnknownConfig {
                name,
                valid: format!("{valid}; application rows: {}", app_configs.join(", ")),
            },
            e => e,
        })?;
        let mut plan = Vec::new();
        for b in benches {
            let mut names = b.configs.clone();
            if !self.opts.only_configs.is_empty() {
                names.retain(|c| c == "bare" || self.opts.only_configs.contains(c));
            }
            plan.push((b, matrix::select(&all, &names)?));
        }
        let p = self.opts.profile.clone();
        let per_round: u64 = plan.iter().map(|(_, c)| c.len() as u64).sum();
        let mut len = per_round * (p.warmups + p.max_rounds) as u64;
        if self.wanted("ns-create") && !self.opts.skip_ns_create {
            len += (p.ns_types.len() * p.ns_workers.len()) as u64 * p.ns_rounds as u64;
        }
        if self.wanted("lifecycle") && !self.opts.skip_lifecycle {
            len += matrix::lifecycle_configs().len() as u64 * (p.lifecycle_rounds + 1) as u64;
        }
        if self.wanted("density") && !self.opts.skip_lifecycle {
            let cells = p.density_n.len() * p.density_parallel.len() * p.density_reps as usize;
            len += 3 * (cells as u64 + p.density_rate.2 as u64);
        }
        if p.instrumented && self.opts.only_benches.is_empty() {
            len += 4;
        }
        self.pb.set_length(len);
        for (_, configs) in &plan {
            for c in configs {
                if !self.results.configurations.iter().any(|x| x.name == c.name) {
                    self.results.configurations.push(c.info());
                }
            }
        }
        self.results.notes.push(format!("load average at the start: {}", loadavg()));
        self.save()?;
        for (b, configs) in plan {
            if self.stopped() {
                break;
            }
            self.run_bench(&b, &configs)?;
            self.save()?;
        }
        if !self.stopped() {
            self.run_apps()?;
            self.save()?;
        }
        if !self.stopped() && self.wanted("ns-create") && !self.opts.skip_ns_create {
            self.run_ns_create()?;
            self.save()?;
        }
        if !self.stopped() && self.wanted("lifecycle") && !self.opts.skip_lifecycle {
            self.run_lifecycle()?;
            self.save()?;
        }
        if !self.stopped() && self.wanted("density") && !self.opts.skip_lifecycle {
            self.run_density()?;
            self.save()?;
        }
        if !self.stopped() && self.opts.profile.instrumented && self.opts.only_benches.is_empty() {
            self.run_instrumented()?;
            self.save()?;
        }
        self.results.notes.push(format!("load average at the end: {}", loadavg()));
        self.results.interrupted = self.stopped();
        self.results.complete = !self.stopped();
        self.results.finished_at = Some(rfc3339(SystemTime::now()));
        self.save()
    }

    fn next_id(&self) -> String {
        format!("kb{}-{}", std::process::id(), self.counter.fetch_add(1, Ordering::SeqCst))
    }

    fn cmd(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        // Own process group: Ctrl-C reaches the runner only; the running measurement ends
        // normally and the runner stops after it.
        c.process_group(0).stdin(Stdio::null()).current_dir(&self.work);
        c
    }

    fn bare_args(&self, b: &BenchSpec) -> Vec<String> {
        let host_dir = self.rootfs.join("var/tmp").display().to_string();
        b.bare_args.iter().map(|a| if a == ROOTFS_DIR { host_dir.clone() } else { a.clone() }).collect()
    }

    fn write_bundle(&self, dir: &Path, spec: &oci_spec::runtime::Spec) -> Result<(), BenchError> {
        std::fs::create_dir_all(dir).map_err(BenchError::io(format!("creating {}", dir.display())))?;
        let text = serde_json::to_string_pretty(spec).map_err(|e| BenchError::Encode(e.to_string()))?;
        write_file(&dir.join("config.json"), text.as_bytes())
    }

    /// Runs one measurement of `b` under `c`; Err carries the reason (stderr).
    fn measure(&self, b: &BenchSpec, c: &Config) -> Result<WorkloadOutput, String> {
        let out = match c.kind {
            Kind::Bare => {
                let mut cmd = self.cmd(&self.exe);
                cmd.arg("workload").arg(&b.workload).args(self.bare_args(b)).arg("--json");
                cmd.output().map_err(|e| format!("running {}: {e}", self.exe.display()))?
            }
            _ => {
                let bundle = self.work.join("bundles").join(&b.id).join(sanitize(&c.name));
                let id = self.next_id();
                let o = self
                    .cmd(&self.exe)
                    .arg("--root")
                    .arg(&self.root)
                    .args(["run", "--bundle"])
                    .arg(&bundle)
                    .arg(&id)
                    .output()
                    .map_err(|e| format!("running karton: {e}"))?;
                if !o.status.success() {
                    self.force_delete(&self.exe, &id);
                }
                o
            }
        };
        parse_output(&out)
    }

    fn force_delete(&self, rt: &Path, id: &str) {
        let _ = self
            .cmd(rt)
            .arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    fn run_bench(&mut self, b: &BenchSpec, configs: &[Config]) -> Result<(), BenchError> {
        let p = self.opts.profile.clone();
        if b.workload == "sysbench" && !crate::machine::has("sysbench") {
            self.results
                .notes
                .push(format!("{}: skipped: sysbench is not installed (apt-get install sysbench)", b.id));
            self.log(format!("{:<14} skipped: sysbench is not installed", b.id));
            let left = (p.warmups.max(1) + p.max_rounds) as u64 * configs.len() as u64;
            self.pb.set_length(self.pb.length().unwrap_or(0).saturating_sub(left));
            return Ok(());
        }
        let ctr_args: Vec<String> = ["/karton", "workload", b.workload.as_str()]
            .iter()
            .map(|s| s.to_string())
            .chain(b.args.iter().cloned())
            .chain(["--json".to_string()])
            .collect();
        let mut skipped: HashMap<String, String> = HashMap::new();
        for c in configs.iter().filter(|c| c.kind != Kind::Bare) {
            match matrix::workload_spec(c, &self.rootfs, &ctr_args) {
                Ok(spec) => {
                    self.write_bundle(&self.work.join("bundles").join(&b.id).join(sanitize(&c.name)), &spec)?
                }
                Err(e) => {
                    skipped.insert(c.name.clone(), e.to_string());
                }
            }
        }
        self.pb.set_message(format!("{} (warm-up)", b.id));
        // Warm-up: also finds the configurations this host cannot run.
        for c in configs {
            for _ in 0..p.warmups.max(1) {
                if skipped.contains_key(&c.name) || self.stopped() {
                    break;
                }
                if let Err(why) = self.measure(b, c) {
                    skipped.insert(c.name.clone(), why);
                }
                self.pb.inc(1);
            }
        }
        // samples[config][metric] = (round, value); meta[metric] = (unit, higher_is_better)
        let mut samples: HashMap<String, HashMap<String, Vec<(u32, f64)>>> = HashMap::new();
        let mut meta: Vec<(String, String, bool)> = Vec::new();
        let mut failures: HashMap<String, u32> = HashMap::new();
        let live: Vec<&Config> = configs.iter().filter(|c| !skipped.contains_key(&c.name)).collect();
        let start = Instant::now();
        let mut rounds = 0;
        let mut converged = false;
        while rounds < p.max_rounds && !self.stopped() {
            self.pb.set_message(format!("{} round {}", b.id, rounds + 1));
            let n = live.len().max(1);
            for k in 0..live.len() {
                if self.stopped() {
                    break;
                }
                let c = live[(k + rounds as usize) % n];
                match self.measure(b, c) {
                    Ok(o) => {
                        for m in o.metrics {
                            if !meta.iter().any(|(name, _, _)| *name == m.name) {
                                meta.push((m.name.clone(), m.unit.clone(), m.higher_is_better));
                            }
                            samples
                                .entry(c.name.clone())
                                .or_default()
                                .entry(m.name)
                                .or_default()
                                .push((rounds, m.value));
                        }
                    }
                    Err(why) => {
                        *failures.entry(c.name.clone()).or_default() += 1;
                        self.log(format!("{} under {}: {}", b.id, c.name, first_line(&why)));
                    }
                }
                self.pb.inc(1);
            }
            if self.stopped() {
                break;
            }
            rounds += 1;
            if rounds >= p.min_rounds {
                converged = !meta.is_empty()
                    && live.iter().all(|c| {
                        meta.iter().all(|(m, _, _)| {
                            let xs: Vec<f64> = samples
                                .get(&c.name)
                                .and_then(|s| s.get(m))
                                .map(|v| v.iter().map(|x| x.1).collect())
                                .unwrap_or_default();
                            let med = stats::median(&xs);
                            let (lo, hi) = stats::bootstrap_median_ci(&xs, 0.95, 400, self.opts.seed);
                            stats::ci_pct(med, lo, hi) <= p.target_ci_pct
                        })
                    });
                if converged || start.elapsed().as_secs_f64() >= b.budget_s {
                    break;
                }
            }
        }
        let left = (p.max_rounds.saturating_sub(rounds)) as u64 * live.len() as u64;
        self.pb.set_length(self.pb.length().unwrap_or(0).saturating_sub(left));
        let seed = self.opts.seed;
        for (metric, unit, hib) in &meta {
            let id = format!("{}/{}", b.id, metric);
            let base: Vec<(u32, f64)> =
                samples.get("bare").and_then(|s| s.get(metric)).cloned().unwrap_or_default();
            let mut rows = Vec::new();
            for c in configs {
                if let Some(why) = skipped.get(&c.name) {
                    rows.push(Row {
                        config: c.name.clone(),
                        status: RowStatus::Skipped,
                        reason: Some(tail(why)),
                        samples: vec![],
                        summary: None,
                        ratio: None,
                        failures: 0,
                    });
                    continue;
                }
                let v = samples.get(&c.name).and_then(|s| s.get(metric)).cloned().unwrap_or_default();
                let xs: Vec<f64> = v.iter().map(|x| x.1).collect();
                let s2 = seed ^ hash(&id) ^ hash(&c.name);
                let ratio = if c.name == "bare" {
                    None
                } else {
                    stats::ratio_summary(
                        &stats::paired_ratios(&v, &base, *hib),
                        "bare",
                        0.95,
                        p.resamples,
                        s2,
                    )
                };
                rows.push(Row {
                    config: c.name.clone(),
                    status: RowStatus::Ok,
                    reason: None,
                    samples: v.iter().map(|(round, value)| Sample { round: *round, value: *value }).collect(),
                    summary: stats::summarize(&xs, 0.95, p.resamples, s2),
                    ratio,
                    failures: failures.get(&c.name).copied().unwrap_or(0),
                });
            }
            self.results.series.push(Series {
                id,
                workload: b.workload.clone(),
                metric: metric.clone(),
                unit: unit.clone(),
                higher_is_better: *hib,
                description: b.description.clone(),
                args: b.args.clone(),
                baseline: Some("bare".into()),
                rounds,
                converged,
                rows,
            });
        }
        if meta.is_empty() {
            let why: Vec<String> = skipped.iter().map(|(c, w)| format!("{c}: {}", first_line(w))).collect();
            self.results.notes.push(format!("{}: no figures ({})", b.id, why.join("; ")));
        }
        self.log(format!(
            "{:<14} {} rounds, {}{}",
            b.id,
            rounds,
            if converged {
                "CI target reached"
            } else if self.stopped() {
                "interrupted"
            } else {
                "CI target not reached: stopped at the round cap or time budget"
            },
            if skipped.is_empty() {
                String::new()
            } else {
                format!(", skipped: {}", skipped.keys().cloned().collect::<Vec<_>>().join(" "))
            }
        ));
        Ok(())
    }

    /// The application rows (crate::apps): servers in containers, clients outside.
    fn run_apps(&mut self) -> Result<(), BenchError> {
        let Some(plan) = self.opts.profile.apps.clone() else { return Ok(()) };
        let only: Vec<String> = if self.opts.only_benches.is_empty() {
            vec![]
        } else {
            let ids: Vec<String> = plan.benches.iter().map(|b| b.id.clone()).collect();
            let mine: Vec<String> =
                self.opts.only_benches.iter().filter(|b| ids.contains(b)).cloned().collect();
            if mine.is_empty() {
                return Ok(());
            }
            mine
        };
        let mut plan = plan;
        // `--max-rounds` and `--no-probe` bound the application rows too.
        plan.rounds = plan.rounds.min(self.opts.profile.max_rounds);
        plan.warmups = plan.warmups.min(self.opts.profile.warmups.max(1));
        plan.probe &= self.opts.profile.instrumented;
        if !self.opts.only_configs.is_empty() {
            plan.configs.retain(|c| c.name == "bare" || self.opts.only_configs.contains(&c.name));
        }
        let n_benches = if only.is_empty() { plan.benches.len() } else { only.len() } as u64;
        let runs = n_benches * plan.configs.len() as u64 * (plan.warmups.max(1) + plan.rounds) as u64;
        self.pb.set_length(self.pb.length().unwrap_or(0) + runs + plan.configs.len() as u64 * 2);
        self.pb.set_message("applications (servers in containers, the build)");
        let state = self.work.join("state-apps");
        std::fs::create_dir_all(&state).map_err(BenchError::io("creating the apps state directory"))?;
        let pb = self.pb.clone();
        let log = |l: String| {
            if pb.is_hidden() {
                eprintln!("{l}");
            } else {
                pb.println(l);
            }
        };
        let tick = || self.pb.inc(1);
        let ctx = crate::apps::AppContext {
            exe: &self.exe,
            work: &self.work,
            state_root: &state,
            stop: &self.stop,
            seed: self.opts.seed,
            log: &log,
            tick: &tick,
        };
        let out = crate::apps::run(&ctx, &plan, &only)?;
        for c in out.configurations {
            if !self.results.configurations.iter().any(|x| x.name == c.name) {
                self.results.configurations.push(c);
            }
        }
        self.results.series.extend(out.series);
        self.results.apps.extend(out.breakdown);
        self.results.notes.extend(out.notes);
        Ok(())
    }

    fn run_ns_create(&mut self) -> Result<(), BenchError> {
        let p = self.opts.profile.clone();
        let cells: Vec<(String, u32)> =
            p.ns_types.iter().flat_map(|t| p.ns_workers.iter().map(move |w| (t.clone(), *w))).collect();
        let mut un: HashMap<usize, Vec<f64>> = HashMap::new();
        let mut cy: HashMap<usize, Vec<f64>> = HashMap::new();
        let mut tp: HashMap<usize, Vec<f64>> = HashMap::new();
        let mut skipped: HashMap<usize, String> = HashMap::new();
        for round in 0..p.ns_rounds {
            self.pb.set_message(format!("ns-create round {}", round + 1));
            for k in 0..cells.len() {
                if self.stopped() {
                    break;
                }
                let i = (k + round as usize) % cells.len();
                if skipped.contains_key(&i) {
                    self.pb.inc(1);
                    continue;
                }
                let (t, w) = &cells[i];
                let out = self
                    .cmd(&self.exe)
                    .args([
                        "workload",
                        "ns-create",
                        "--ns",
                        t,
                        "--workers",
                        &w.to_string(),
                        "--iterations",
                        &p.ns_iterations.to_string(),
                        "--json",
                    ])
                    .output()
                    .map_err(|e| e.to_string())
                    .and_then(|o| parse_output(&o));
                match out {
                    Ok(o) => {
                        for m in o.metrics {
                            match m.name.as_str() {
                                "unshare" => un.entry(i).or_default().extend(m.samples),
                                "cycle" => cy.entry(i).or_default().extend(m.samples),
                                "throughput" => tp.entry(i).or_default().push(m.value),
                                _ => {}
                            }
                        }
                    }
                    Err(why) => {
                        skipped.insert(i, why);
                    }
                }
                self.pb.inc(1);
            }
        }
        let seed = self.opts.seed;
        for (i, (t, w)) in cells.iter().enumerate() {
            let sum = |v: Option<&Vec<f64>>| {
                v.and_then(|x| stats::summarize(x, 0.95, p.resamples, seed ^ i as u64))
            };
            let ok = un.get(&i).is_some_and(|v| !v.is_empty());
            self.results.ns_create.push(NsCreateCell {
                ns: t.clone(),
                workers: *w,
                status: if ok { RowStatus::Ok } else { RowStatus::Skipped },
                reason: skipped
                    .get(&i)
                    .map(|s| tail(s))
                    .or_else(|| (!ok).then(|| "interrupted before it ran".into())),
                unshare_us: sum(un.get(&i)),
                cycle_us: sum(cy.get(&i)),
                throughput: sum(tp.get(&i)),
            });
        }
        Ok(())
    }

    fn run_lifecycle(&mut self) -> Result<(), BenchError> {
        let p = self.opts.profile.clone();
        let configs = matrix::lifecycle_configs();
        self.prepare_layout();
        for c in &configs {
            if !self.results.configurations.iter().any(|x| x.name == c.name) {
                self.results.configurations.push(c.info());
            }
        }
        let mut skipped: HashMap<String, String> = HashMap::new();
        for c in &configs {
            let dir = self.work.join("bundles/lifecycle").join(sanitize(&c.name));
            self.write_bundle(&dir, &matrix::lifecycle_spec(c, &self.rootfs)?)?;
            let tool = match c.kind {
                Kind::Runc => Some("runc"),
                Kind::Crun => Some("crun"),
                Kind::Wrapper | Kind::Floor => Some("unshare"),
                _ => None,
            };
            if let Some(t) = tool {
                if !crate::machine::has(t) {
                    skipped.insert(c.name.clone(), format!("{t} is not installed"));
                }
            }
            if let (Placement::Prepared, Some(Err(why))) = (c.placement, &self.prepared) {
                skipped.entry(c.name.clone()).or_insert_with(|| why.clone());
            }
        }
        // samples[config] = (round, wall ms, cpu ms)
        let mut wall: HashMap<String, Vec<(u32, f64)>> = HashMap::new();
        let mut cpu: HashMap<String, Vec<(u32, f64)>> = HashMap::new();
        let mut failures: HashMap<String, u32> = HashMap::new();
        // Warm-up (and detection of what cannot run).
        for c in &configs {
            if !skipped.contains_key(&c.name) && !self.stopped() {
                if let Err(why) = self.lifecycle_once(c) {
                    skipped.insert(c.name.clone(), why);
                }
            }
            self.pb.inc(1);
        }
        let live: Vec<&Config> = configs.iter().filter(|c| !skipped.contains_key(&c.name)).collect();
        let start = Instant::now();
        let mut rounds = 0;
        while rounds < p.lifecycle_rounds
            && !self.stopped()
            && start.elapsed().as_secs_f64() < p.lifecycle_budget_s
        {
            self.pb.set_message(format!("lifecycle round {}", rounds + 1));
            for k in 0..live.len() {
                if self.stopped() {
                    break;
                }
                let c = live[(k + rounds as usize) % live.len()];
                match self.lifecycle_once(c) {
                    Ok(u) => {
                        wall.entry(c.name.clone()).or_default().push((rounds, u.wall_ms));
                        cpu.entry(c.name.clone()).or_default().push((rounds, u.cpu_ms));
                    }
                    Err(_) => *failures.entry(c.name.clone()).or_default() += 1,
                }
                self.pb.inc(1);
            }
            rounds += 1;
        }
        let left = (p.lifecycle_rounds.saturating_sub(rounds)) as u64 * live.len() as u64;
        self.pb.set_length(self.pb.length().unwrap_or(0).saturating_sub(left));
        // Peak RSS of `create` (GNU time's %M: the wrapper's exec chain and what it waited
        // for), each runtime once per round, interleaved.
        let mut rss: HashMap<String, Vec<(u32, f64)>> = HashMap::new();
        let rss_configs: Vec<&Config> = if Path::new("/usr/bin/time").exists() {
            live.iter()
                .copied()
                .filter(|c| matches!(c.kind, Kind::Karton | Kind::Runc | Kind::Crun))
                .collect()
        } else {
            self.results.notes.push(
                "lifecycle/create-rss: skipped: GNU time is not installed (apt-get install time)".into(),
            );
            Vec::new()
        };
        for round in 0..p.lifecycle_rss_rounds {
            for k in 0..rss_configs.len() {
                if self.stopped() {
                    break;
                }
                let c = rss_configs[(k + round as usize) % rss_configs.len()];
                match self.create_rss(c) {
                    Ok(kib) => rss.entry(c.name.clone()).or_default().push((round, kib)),
                    Err(_) => *failures.entry(format!("{}/rss", c.name)).or_default() += 1,
                }
            }
        }
        // Ratios within a placement: the wrapped rows against crun in the wrapper, the
        // -nowrap rows against crun in the prepared layout.
        let baseline_of = |config: &str| -> String {
            let sfx = if config.ends_with(matrix::NOWRAP) { matrix::NOWRAP } else { "" };
            ["crun", "runc", "karton"]
                .into_iter()
                .map(|b| format!("{b}{sfx}"))
                .find(|b| live.iter().any(|c| c.name == *b))
                .unwrap_or_else(|| format!("karton{sfx}"))
        };
        let baseline = baseline_of("karton");
        let desc = |what: &str| {
            format!(
                "create → start → /bin/true exits → delete: {what} of `RUNTIME --root R run --bundle B ID`, every runtime inside `unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified; exec RUNTIME …'`; the -nowrap rows: every runtime in one prepared layout instead (the same private mount namespace without the cgroup2 mount, made once; the runtime's own process enters it before execve, so no wrapper program is timed)"
            )
        };
        let series = [
            ("run", "ms", desc("wall time"), &wall, &configs.iter().collect::<Vec<_>>(), rounds),
            ("cpu", "ms", desc("CPU time (user + system of every process it waited for)"), &cpu, &configs.iter().collect::<Vec<_>>(), rounds),
            (
                "create-rss",
                "KiB",
                "peak RSS of `RUNTIME create` (ru_maxrss of the wrapper's exec chain and the children it waited for, as GNU time %M)".to_string(),
                &rss,
                &configs.iter().filter(|c| matches!(c.kind, Kind::Karton | Kind::Runc | Kind::Crun)).collect::<Vec<_>>(),
                p.lifecycle_rss_rounds,
            ),
        ];
        for (metric, unit, description, samples, cfgs, rounds) in series {
            let mut rows = Vec::new();
            let mut all_conv = true;
            for c in cfgs {
                if let Some(why) = skipped.get(&c.name) {
                    rows.push(Row {
                        config: c.name.clone(),
                        status: RowStatus::Skipped,
                        reason: Some(tail(why)),
                        samples: vec![],
                        summary: None,
                        ratio: None,
                        failures: 0,
                    });
                    continue;
                }
                let v = samples.get(&c.name).cloned().unwrap_or_default();
                let xs: Vec<f64> = v.iter().map(|x| x.1).collect();
                let seed = self.opts.seed ^ hash(&c.name) ^ hash(metric);
                let s = stats::summarize(&xs, 0.95, p.resamples, seed);
                all_conv &= s.as_ref().is_some_and(|s| s.ci_pct <= p.target_ci_pct);
                let fail_key =
                    if metric == "create-rss" { format!("{}/rss", c.name) } else { c.name.clone() };
                let row_base = baseline_of(&c.name);
                let base = samples.get(&row_base).cloned().unwrap_or_default();
                rows.push(Row {
                    config: c.name.clone(),
                    status: RowStatus::Ok,
                    reason: None,
                    samples: v.iter().map(|(round, value)| Sample { round: *round, value: *value }).collect(),
                    summary: s,
                    ratio: (c.name != row_base)
                        .then(|| {
                            stats::ratio_summary(
                                &stats::paired_ratios(&v, &base, false),
                                &row_base,
                                0.95,
                                p.resamples,
                                seed,
                            )
                        })
                        .flatten(),
                    failures: failures.get(&fail_key).copied().unwrap_or(0),
                });
            }
            self.results.series.push(Series {
                id: format!("lifecycle/{metric}"),
                workload: "lifecycle".into(),
                metric: metric.into(),
                unit: unit.into(),
                higher_is_better: false,
                description,
                args: vec!["/bin/true".into()],
                baseline: Some(baseline.clone()),
                rounds,
                converged: all_conv,
                rows,
            });
        }
        Ok(())
    }

    /// The command line of `args` for runtime `kind` (karton, runc, crun), in the wrapper
    /// when placed there.
    fn runtime_argv(&self, kind: Kind, placement: Placement, args: &[&OsStr]) -> Vec<OsString> {
        let mut v: Vec<OsString> = Vec::new();
        if placement == Placement::Wrapper {
            v.extend(matrix::WRAPPER.iter().map(OsString::from));
        }
        v.push(match kind {
            Kind::Runc => "runc".into(),
            Kind::Crun => "crun".into(),
            _ => self.exe.clone().into(),
        });
        v.extend(args.iter().map(|a| a.to_os_string()));
        v
    }

    /// Runs `argv` to completion (its process in the prepared layout when placed there);
    /// its wall time and CPU time (wait4).
    fn run_measured(&self, argv: &[OsString], placement: Placement) -> Result<Usage, String> {
        let (prog, rest) = argv.split_first().ok_or("empty command")?;
        let mut cmd = self.cmd(Path::new(prog));
        if placement == Placement::Prepared {
            let ns = match &self.prepared {
                Some(Ok(ns)) => ns,
                Some(Err(why)) => return Err(why.clone()),
                None => return Err("the prepared layout was not made".into()),
            };
            karton_sys::process::enter_mount_ns_before_exec(&mut cmd, ns.as_fd(), &self.work)
                .map_err(|e| format!("entering the prepared layout: {e}"))?;
        }
        let err_path = self.scratch.join(format!("stderr-{}", self.counter.fetch_add(1, Ordering::SeqCst)));
        let err =
            std::fs::File::create(&err_path).map_err(|e| format!("creating {}: {e}", err_path.display()))?;
        let t = Instant::now();
        let child = cmd
            .args(rest)
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("running {}: {e}", Path::new(prog).display()))?;
        let u = karton_sys::process::wait4(child.id() as i32).map_err(|e| format!("{e}"));
        let wall_ms = t.elapsed().as_secs_f64() * 1e3;
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        let _ = std::fs::remove_file(&err_path);
        let u = u?;
        if u.status != 0 {
            return Err(format!("exited with status {:#x}: {}", u.status, stderr.trim()));
        }
        Ok(Usage { wall_ms, cpu_ms: (u.user_us + u.sys_us) as f64 / 1e3 })
    }

    fn lifecycle_root(&self, c: &Config) -> PathBuf {
        self.scratch.join(format!("state-{}", sanitize(&c.name)))
    }

    /// One `RUNTIME run` of /bin/true (or the wrapper / the floor alone).
    fn lifecycle_once(&self, c: &Config) -> Result<Usage, String> {
        let bundle = self.work.join("bundles/lifecycle").join(sanitize(&c.name));
        let id = self.next_id();
        let root = self.lifecycle_root(c);
        let argv: Vec<OsString> = match c.kind {
            Kind::Karton | Kind::Runc | Kind::Crun => self.runtime_argv(
                c.kind,
                c.placement,
                &[
                    "--root".as_ref(),
                    root.as_os_str(),
                    "run".as_ref(),
                    "--bundle".as_ref(),
                    bundle.as_os_str(),
                    id.as_ref(),
                ],
            ),
            Kind::Floor | Kind::Wrapper => {
                let mut v: Vec<OsString> = if c.placement == Placement::Wrapper {
                    matrix::WRAPPER.iter().map(OsString::from).collect()
                } else {
                    vec![]
                };
                if c.kind == Kind::Floor {
                    v.extend(["unshare", "-pfniuC", "--mount-proc", "true"].map(OsString::from));
                } else {
                    v.extend(matrix::WRAPPER.iter().map(OsString::from));
                    v.push("true".into());
                }
                v
            }
            Kind::Bare => return Err("bare has no lifecycle".into()),
        };
        self.run_measured(&argv, c.placement).map_err(|why| {
            if matches!(c.kind, Kind::Karton | Kind::Runc | Kind::Crun) {
                self.force_delete_in(c.kind, c.placement, &root, &id);
            }
            format!("{}: {why}", c.name)
        })
    }

    /// Peak RSS (KiB) of one `RUNTIME create`, by GNU time's %M; the container is deleted
    /// afterwards. Not by our own wait4: a child's ru_maxrss starts at its parent's peak
    /// (the mm it copied, or shared until exec), and this process is far bigger than a
    /// runtime; GNU time's own footprint (~1 MiB) is below every runtime's.
    fn create_rss(&self, c: &Config) -> Result<f64, String> {
        let bundle = self.work.join("bundles/lifecycle").join(sanitize(&c.name));
        let id = self.next_id();
        let root = self.lifecycle_root(c);
        let out_file = self.scratch.join(format!("rss-{id}"));
        let mut argv: Vec<OsString> =
            ["/usr/bin/time", "-f", "%M", "-o"].iter().map(OsString::from).collect();
        argv.push(out_file.clone().into());
        argv.extend(self.runtime_argv(
            c.kind,
            c.placement,
            &[
                "--root".as_ref(),
                root.as_os_str(),
                "create".as_ref(),
                "--bundle".as_ref(),
                bundle.as_os_str(),
                id.as_ref(),
            ],
        ));
        let out = self.run_measured(&argv, c.placement);
        self.force_delete_in(c.kind, c.placement, &root, &id);
        let text = std::fs::read_to_string(&out_file).unwrap_or_default();
        let _ = std::fs::remove_file(&out_file);
        out?;
        text.lines()
            .rev()
            .find_map(|l| l.trim().parse::<f64>().ok())
            .ok_or_else(|| format!("GNU time printed no %M figure: {}", text.trim()))
    }

    /// `RUNTIME --root R delete --force ID`, errors ignored (cleanup after a failure).
    fn force_delete_in(&self, kind: Kind, placement: Placement, root: &Path, id: &str) {
        let _ = self.run_runtime(
            kind,
            placement,
            &["--root".as_ref(), root.as_os_str(), "delete".as_ref(), "--force".as_ref(), id.as_ref()],
        );
    }

    /// Runs runtime `kind` with `args` where `placement` says, measured.
    fn run_runtime(&self, kind: Kind, placement: Placement, args: &[&OsStr]) -> Result<Usage, String> {
        self.run_measured(&self.runtime_argv(kind, placement, args), placement)
    }

    /// Makes the prepared layout once (see [`Placement::Prepared`]).
    fn prepare_layout(&mut self) {
        if self.prepared.is_none() {
            let made = prepared_layout();
            if let Err(why) = &made {
                self.results.notes.push(format!("prepared layout: {why}"));
            }
            self.prepared = Some(made);
        }
    }

    fn run_density(&mut self) -> Result<(), BenchError> {
        let p = self.opts.profile.clone();
        // Every runtime in the prepared layout: the wrapper's two extra programs per start
        // would cost as much as a runtime and hide the difference between runtimes.
        self.prepare_layout();
        let placement =
            if matches!(self.prepared, Some(Ok(_))) { Placement::Prepared } else { Placement::Wrapper };
        let runtimes: Vec<(&str, Kind)> =
            [("karton", Kind::Karton), ("crun", Kind::Crun), ("runc", Kind::Runc)]
                .into_iter()
                .filter(|(name, kind)| {
                    let ok = *kind == Kind::Karton || crate::machine::has(name);
                    if !ok {
                        self.results.notes.push(format!("density: {name} skipped: not installed"));
                    }
                    ok
                })
                .collect();
        let base = matrix::lifecycle_configs().into_iter().find(|c| c.name == "karton");
        let Some(base) = base else { return Ok(()) };
        let mut spec = matrix::lifecycle_spec(&base, &self.rootfs)?;
        if let Some(process) = spec.process_mut() {
            process.set_args(Some(vec!["sleep".into(), "1000000".into()]));
        }
        let bundle = self.work.join("bundles/density");
        self.write_bundle(&bundle, &spec)?;
        let mut cells: Vec<(u32, u32, u32)> = Vec::new();
        for &n in &p.density_n {
            for &par in &p.density_parallel {
                for rep in 0..p.density_reps {
                    cells.push((n, par, rep));
                }
            }
        }
        let (rn, rp, rr) = p.density_rate;
        let have = cells.iter().filter(|c| c.0 == rn && c.1 == rp).count() as u32;
        for rep in have..rr {
            cells.push((rn, rp, rep));
        }
        // Orphaned container processes (their runtime exited) become our children, so that
        // they are counted and reaped here rather than left to the host's pid 1.
        let _ = nix::sys::prctl::set_child_subreaper(true);
        for (i, &(n, par, rep)) in cells.iter().enumerate() {
            for k in 0..runtimes.len() {
                if self.stopped() {
                    break;
                }
                let (name, kind) = runtimes[(k + i) % runtimes.len()];
                self.pb.set_message(format!("density {name} N={n} P={par}"));
                let cell = self.density_once(name, kind, placement, &bundle, (n, par, rep));
                self.pb.inc(1);
                self.log(format!(
                    "density {name:<6} N={n:<4} P={par}: {}",
                    match (&cell.status, &cell.mem) {
                        (RowStatus::Ok, Some(m)) => format!(
                            "start {:.2} s ({:.1}/s), delete {:.2} s, {:.0} KiB/container",
                            cell.start_s, cell.start_rate, cell.delete_s, m.total_kib
                        ),
                        _ => format!("skipped: {}", first_line(cell.reason.as_deref().unwrap_or(""))),
                    }
                ));
                self.results.density.push(cell);
            }
        }
        let _ = nix::sys::prctl::set_child_subreaper(false);
        reap_orphans();
        Ok(())
    }

    /// One density cell: start `n` sleeping containers, `par` at a time, measure the host
    /// memory they hold while idle, then force-delete them `par` at a time.
    fn density_once(
        &self,
        name: &str,
        kind: Kind,
        placement: Placement,
        bundle: &Path,
        (n, par, rep): (u32, u32, u32),
    ) -> DensityCell {
        let root = self.scratch.join(format!("state-density-{name}"));
        let ids: Vec<String> = (0..n).map(|_| self.next_id()).collect();
        let pid_dir = self.scratch.join(format!("pids-{name}"));
        let _ = std::fs::create_dir_all(&pid_dir);
        let before = meminfo();
        let t = Instant::now();
        let started = parallel(par, &ids, |id| {
            let pid_file = pid_dir.join(id);
            self.run_runtime(
                kind,
                placement,
                &[
                    "--root".as_ref(),
                    root.as_os_str(),
                    "run".as_ref(),
                    "--detach".as_ref(),
                    "--pid-file".as_ref(),
                    pid_file.as_os_str(),
                    "--bundle".as_ref(),
                    bundle.as_os_str(),
                    id.as_ref(),
                ],
            )
        });
        let start_s = t.elapsed().as_secs_f64();
        let failures = started.iter().filter(|r| r.is_err()).count() as u32;
        let first_err = started.iter().find_map(|r| r.as_ref().err().cloned());
        let start_cpu_s = started.iter().flatten().map(|u| u.cpu_ms / 1e3).sum();
        let ok = n - failures;
        let mem = (ok > 0).then(|| {
            let after = meminfo();
            let procs = descendants(std::process::id() as i32);
            let pss: u64 = procs.iter().map(|p| pss_kib(*p)).sum();
            let d = |k: &str| {
                (after.get(k).copied().unwrap_or(0) as f64 - before.get(k).copied().unwrap_or(0) as f64)
                    / ok as f64
            };
            let (slab, pt, ks) = (d("Slab"), d("PageTables"), d("KernelStack"));
            let per = pss as f64 / ok as f64;
            DensityMem {
                slab_kib: slab,
                page_tables_kib: pt,
                kernel_stack_kib: ks,
                processes_pss_kib: per,
                processes: procs.len() as f64 / ok as f64,
                total_kib: slab + pt + ks + per,
                used_kib: -d("MemAvailable"),
            }
        });
        let pids: Vec<i32> = ids
            .iter()
            .filter_map(|id| std::fs::read_to_string(pid_dir.join(id)).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let t = Instant::now();
        let deleted = parallel(par, &ids, |id| {
            self.run_runtime(
                kind,
                placement,
                &["--root".as_ref(), root.as_os_str(), "delete".as_ref(), "--force".as_ref(), id.as_ref()],
            )
        });
        let delete_s = t.elapsed().as_secs_f64();
        reap(&pids);
        let _ = std::fs::remove_dir_all(&pid_dir);
        let delete_failures = deleted.iter().filter(|r| r.is_err()).count() as u32;
        let status = if ok == 0 { RowStatus::Skipped } else { RowStatus::Ok };
        DensityCell {
            runtime: name.into(),
            layout: Some(if placement == Placement::Prepared { "prepared" } else { "wrapper" }.into()),
            n,
            parallel: par,
            rep,
            status,
            reason: first_err
                .map(|e| tail(&e))
                .or_else(|| (delete_failures > 0).then(|| format!("{delete_failures} deletes failed"))),
            start_s,
            start_rate: if start_s > 0.0 { ok as f64 / start_s } else { 0.0 },
            delete_s,
            start_cpu_s,
            failures: failures + delete_failures,
            mem,
        }
    }

    /// The separate instrumented pass (karton-probe), when BPF works here.
    fn run_instrumented(&mut self) -> Result<(), BenchError> {
        self.pb.set_message("instrumented pass (karton-probe)");
        let iterations = self
            .opts
            .profile
            .benches
            .iter()
            .find(|b| b.id == "syscall")
            .and_then(|b| b.args.get(1).cloned())
            .unwrap_or_else(|| "300000".into());
        let args = vec!["--iterations".to_string(), iterations];
        let spec = BenchSpec {
            id: "instrumented".into(),
            workload: "syscall".into(),
            args: args.clone(),
            bare_args: args.clone(),
            configs: vec![],
            budget_s: 0.0,
            description: String::new(),
        };
        let all = matrix::workload_configs();
        let configs =
            matrix::select(&all, &["bare".into(), "mnt".into(), "all".into(), "all+cg+seccomp".into()])?;
        let ctr_args: Vec<String> = ["/karton", "workload", "syscall"]
            .iter()
            .map(|s| s.to_string())
            .chain(args.iter().cloned())
            .chain(["--json".to_string()])
            .collect();
        let mut ins = Instrumented {
            workload: "syscall".into(),
            args: args.clone(),
            instruments: vec![],
            runs: vec![],
            overhead: vec![],
            notes: vec![
                "One run per configuration with the probe attached before the command starts (target: its process tree); timed passes ran without probes.".into(),
                "Container rows include the runtime's own system calls (karton run: create, start, delete) besides the workload's.".into(),
            ],
        };
        for c in &configs {
            if self.stopped() {
                break;
            }
            let bundle = self.work.join("bundles/instrumented").join(sanitize(&c.name));
            let argv: Vec<std::ffi::OsString> = if c.kind == Kind::Bare {
                let mut v: Vec<std::ffi::OsString> =
                    vec![self.exe.clone().into(), "workload".into(), "syscall".into()];
                v.extend(args.iter().map(Into::into));
                v.push("--json".into());
                v
            } else {
                match matrix::workload_spec(c, &self.rootfs, &ctr_args) {
                    Ok(s) => self.write_bundle(&bundle, &s)?,
                    Err(e) => {
                        ins.notes.push(format!("{}: {e}", c.name));
                        continue;
                    }
                }
                vec![
                    self.exe.clone().into(),
                    "--root".into(),
                    self.root.clone().into(),
                    "run".into(),
                    "--bundle".into(),
                    bundle.clone().into(),
                    self.next_id().into(),
                ]
            };
            // Without the probe: the median of three runs.
            let without: Vec<f64> = (0..3)
                .filter_map(|_| self.measure(&spec, c).ok())
                .filter_map(|o| o.metrics.first().map(|m| m.value))
                .collect();
            let out_file = self.work.join(format!("instrumented-{}.out", sanitize(&c.name)));
            match crate::instrumented::run_probed(&argv, &out_file, &c.name) {
                Ok((run, w, instruments)) => {
                    if ins.instruments.is_empty() {
                        ins.instruments = instruments;
                    }
                    if let (Some(m), false) = (w.metrics.first(), without.is_empty()) {
                        ins.overhead.push(ProbeOverhead {
                            config: c.name.clone(),
                            metric: m.name.clone(),
                            unit: m.unit.clone(),
                            without_probe: stats::median(&without),
                            with_probe: m.value,
                        });
                    }
                    ins.runs.push(run);
                }
                Err(e) => {
                    ins.notes.push(format!("{}: instrumented run failed: {e}", c.name));
                    if c.kind == Kind::Bare {
                        // BPF does not work here at all: say so once and stop.
                        break;
                    }
                }
            }
            self.pb.inc(1);
        }
        self.results.instrumented = Some(ins);
        Ok(())
    }

    fn cleanup(&self) {
        // Anything left under our state directories (a failed run) is force-deleted.
        let state_dirs = [&self.work, &self.scratch]
            .into_iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flat_map(|rd| rd.flatten().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("state")));
        for dir in state_dirs {
            // crun only works in the wrapper on a hybrid host (its state, made in the
            // prepared layout or not, is on the host's filesystem); karton's record names
            // every cgroup directory it made, so it deletes from outside the wrapper too.
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let (kind, placement) = if name.contains("runc") {
                (Kind::Runc, Placement::Host)
            } else if name.contains("crun") {
                (Kind::Crun, Placement::Wrapper)
            } else {
                (Kind::Karton, Placement::Host)
            };
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten().filter(|e| e.path().is_dir()) {
                self.force_delete_in(kind, placement, &dir, &e.file_name().to_string_lossy());
            }
        }
        if self.scratch != self.work {
            let _ = std::fs::remove_dir_all(&self.scratch);
        }
        if self.remove_work {
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }
}

/// Where the lifecycle and density runtimes keep their state, and what the result notes say
/// about it. A tmpfs, as the runtimes' default roots (/run/karton, /run/crun, /run/runc) are
/// on a usual host: /dev/shm when it is one. The work directory is on this machine's root
/// filesystem, an ext4 without a journal, where making a file searches past every inode freed
/// in the last seconds to minutes: with a thousand containers come and gone, each file a
/// runtime made cost it up to a millisecond, so the figures measured the churn of whichever
/// runtime ran before (docs/bench.md, "Where the runtimes keep their state").
fn runtime_scratch(work: &Path) -> (PathBuf, String) {
    let shm = Path::new("/dev/shm");
    let tmpfs =
        nix::sys::statfs::statfs(shm).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    let dir = shm.join(format!("karton-bench-{}", std::process::id()));
    if tmpfs && std::fs::create_dir(&dir).is_ok() {
        let note = format!(
            "Lifecycle and density: every runtime's state root (--root) and each command's stderr and pid files are on tmpfs ({}), as the runtimes' default roots under /run are on a usual host.",
            dir.display()
        );
        return (dir, note);
    }
    let note = format!(
        "Lifecycle and density: /dev/shm is no writable tmpfs here, so the runtimes' state roots are in the work directory {} (its filesystem's cost of making and removing files is in every figure).",
        work.display()
    );
    (work.to_path_buf(), note)
}

/// The prepared layout ([`Placement::Prepared`]): a private mount namespace without the
/// cgroup2 mount, made once by [`matrix::WRAPPER`] itself (running a helper that says
/// when it is in), and kept through its /proc/PID/ns/mnt after the helper has exited
/// (every program in the chain execs the next: one pid). Nothing changes on the host.
fn prepared_layout() -> Result<std::os::fd::OwnedFd, String> {
    use std::io::BufRead;
    let (wrapper, wrapper_args) = matrix::WRAPPER.split_first().ok_or("no wrapper command")?;
    let mut helper = Command::new(wrapper)
        .args(wrapper_args)
        .args(["sh", "-c", "echo ready; exec cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("running unshare to make it: {e}"))?;
    let mut line = String::new();
    if let Some(out) = helper.stdout.take() {
        let _ = std::io::BufReader::new(out).read_line(&mut line);
    }
    let ns = if line.trim() == "ready" {
        std::fs::File::open(format!("/proc/{}/ns/mnt", helper.id()))
            .map(std::os::fd::OwnedFd::from)
            .map_err(|e| format!("opening the helper's mount namespace: {e}"))
    } else {
        Err("unshare -m could not make a private mount namespace (root needed)".into())
    };
    // cat ends at EOF on its stdin.
    drop(helper.stdin.take());
    let _ = helper.wait();
    ns
}

/// What one measured command cost.
#[derive(Debug, Clone, Copy)]
struct Usage {
    wall_ms: f64,
    /// User + system CPU of the process and every descendant it waited for.
    cpu_ms: f64,
}

/// Runs `f` over `items` with `par` threads; results in the order of `items`.
fn parallel<T: Sync, R: Send>(par: u32, items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: std::sync::Mutex<Vec<Option<R>>> =
        std::sync::Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..par.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(item) = items.get(i) else { break };
                let r = f(item);
                if let Ok(mut o) = out.lock() {
                    o[i] = Some(r);
                }
            });
        }
    });
    out.into_inner().unwrap_or_default().into_iter().flatten().collect()
}

/// /proc/meminfo in KiB by key.
fn meminfo() -> HashMap<String, u64> {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.to_string(), v.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// Every descendant of `pid` (children of all its threads, recursively).
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let tasks = std::fs::read_dir(format!("/proc/{p}/task")).into_iter().flatten().flatten();
        for t in tasks {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for k in kids.split_whitespace().filter_map(|k| k.parse::<i32>().ok()) {
                out.push(k);
                todo.push(k);
            }
        }
    }
    out
}

/// Proportional set size of a process, KiB (0 when it is gone).
fn pss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:").and_then(|v| v.split_whitespace().next()?.parse().ok()))
        .unwrap_or(0)
}

/// Reaps the container processes that became our children (we are their subreaper) once
/// they exit; gives up on a pid after a few seconds (a delete that failed).
fn reap(pids: &[i32]) {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    for &pid in pids {
        loop {
            match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(2))
                }
                // Exited, not our child (its runtime still waits for it), or out of time.
                _ => break,
            }
        }
    }
}

/// Reaps every exited child. Only called when no other child of ours is in flight.
fn reap_orphans() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(s) = waitpid(None::<nix::unistd::Pid>, Some(WaitPidFlag::WNOHANG)) {
        if s == WaitStatus::StillAlive {
            break;
        }
    }
}

fn parse_output(o: &Output) -> Result<WorkloadOutput, String> {
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        return Err(format!("exited with {}: {}", o.status, err.trim()));
    }
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| format!("no JSON line in the output: {}", out.trim()))?;
    let w: WorkloadOutput =
        serde_json::from_str(line).map_err(|e| format!("bad workload output {line:?}: {e}"))?;
    if w.metrics.is_empty() {
        return Err("workload printed no figures".into());
    }
    Ok(w)
}

/// /proc/loadavg: other work on the machine widens every CI.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect()
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s)
}

/// The last lines of a reason (runtime errors put the cause at the end), at most 400 chars.
fn tail(s: &str) -> String {
    let t = s.trim();
    if t.len() <= 400 {
        return t.to_string();
    }
    let mut start = t.len() - 400;
    while !t.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &t[start..])
}

fn hash(s: &str) -> u64 {
    // FNV-1a: stable across runs and versions (std's hasher is not).
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}
