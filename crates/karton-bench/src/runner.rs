//! The runner: builds the rootfs and bundles, runs every benchmark round-robin across its
//! configurations until the CIs are tight (or a cap), then namespace creation and the
//! container lifecycle; writes results atomically after every phase.
//!
//! Containers run as subprocesses of the karton binary (`karton --root R run`), never
//! through the runtime library in this process: create uses clone3 and needs a
//! single-threaded caller, and this process has a progress-bar and a signal thread.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::matrix::{self, Config, Kind};
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
    if let Ok(a) = crate::apps::plan(&p.name) {
        v.extend(a.benches.into_iter().map(|b| b.id));
    }
    v.push("ns-create".into());
    v.push("lifecycle".into());
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
    rootfs: PathBuf,
    results: BenchResults,
    json_path: PathBuf,
    csv_path: PathBuf,
    stop: Arc<AtomicBool>,
    pb: ProgressBar,
    counter: AtomicU64,
    remove_work: bool,
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
        instrumented: None,
        apps: vec![],
        notes: vec![
            "karton requires a mount namespace in every container: '+X' rows are mount + X, and 'mnt' (mount alone) is the minimal container.".into(),
            "Workload figures are measured inside the workload process (container setup is not in them); lifecycle rows time the whole `RUNTIME run` of /bin/true from outside.".into(),
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
        rootfs,
        results,
        stop,
        pb,
        counter: AtomicU64::new(0),
        remove_work,
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
        matrix::select(&all, &self.opts.only_configs)?;
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

    fn write_bundle(&self, dir: &Path, spec: &serde_json::Value) -> Result<(), BenchError> {
        std::fs::create_dir_all(dir).map_err(BenchError::io(format!("creating {}", dir.display())))?;
        let text = serde_json::to_string_pretty(spec).map_err(|e| BenchError::Encode(e.to_string()))?;
        write_atomic(&dir.join("config.json"), text.as_bytes())
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
        let Ok(plan) = crate::apps::plan(&self.opts.profile.name) else { return Ok(()) };
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
        self.pb.set_message("applications (redis, nginx)");
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
        for c in &configs {
            if !self.results.configurations.iter().any(|x| x.name == c.name) {
                self.results.configurations.push(c.info());
            }
        }
        let mut skipped: HashMap<String, String> = HashMap::new();
        for c in &configs {
            let dir = self.work.join("bundles/lifecycle").join(sanitize(&c.name));
            self.write_bundle(&dir, &matrix::lifecycle_spec(c, &self.rootfs))?;
            let tool = match c.kind {
                Kind::Runc => Some("runc"),
                Kind::Crun | Kind::CrunWrapper => Some("crun"),
                _ => None,
            };
            if let Some(t) = tool {
                if !crate::machine::has(t) {
                    skipped.insert(c.name.clone(), format!("{t} is not installed"));
                }
            }
        }
        let mut samples: HashMap<String, Vec<(u32, f64)>> = HashMap::new();
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
                    Ok(ms) => samples.entry(c.name.clone()).or_default().push((rounds, ms)),
                    Err(_) => *failures.entry(c.name.clone()).or_default() += 1,
                }
                self.pb.inc(1);
            }
            rounds += 1;
        }
        let left = (p.lifecycle_rounds.saturating_sub(rounds)) as u64 * live.len() as u64;
        self.pb.set_length(self.pb.length().unwrap_or(0).saturating_sub(left));
        let baseline = if live.iter().any(|c| c.name == "runc") { "runc" } else { "karton" };
        let base = samples.get(baseline).cloned().unwrap_or_default();
        let mut rows = Vec::new();
        let mut all_conv = true;
        for c in &configs {
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
            let s = stats::summarize(&xs, 0.95, p.resamples, self.opts.seed ^ hash(&c.name));
            all_conv &= s.as_ref().is_some_and(|s| s.ci_pct <= p.target_ci_pct);
            rows.push(Row {
                config: c.name.clone(),
                status: RowStatus::Ok,
                reason: None,
                samples: v.iter().map(|(round, value)| Sample { round: *round, value: *value }).collect(),
                summary: s,
                ratio: (c.name != baseline)
                    .then(|| {
                        stats::ratio_summary(
                            &stats::paired_ratios(&v, &base, false),
                            baseline,
                            0.95,
                            p.resamples,
                            self.opts.seed,
                        )
                    })
                    .flatten(),
                failures: failures.get(&c.name).copied().unwrap_or(0),
            });
        }
        self.results.series.push(Series {
            id: "lifecycle/run".into(),
            workload: "lifecycle".into(),
            metric: "run".into(),
            unit: "ms".into(),
            higher_is_better: false,
            description:
                "create → start → /bin/true exits → delete: wall time of `RUNTIME --root R run --bundle B ID`"
                    .into(),
            args: vec!["/bin/true".into()],
            baseline: Some(baseline.into()),
            rounds,
            converged: all_conv,
            rows,
        });
        Ok(())
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

    /// One `RUNTIME run` of /bin/true; its wall time in ms.
    fn lifecycle_once(&self, c: &Config) -> Result<f64, String> {
        let bundle = self.work.join("bundles/lifecycle").join(sanitize(&c.name));
        let id = self.next_id();
        let root = self.work.join(format!("state-{}", sanitize(&c.name)));
        let mut cmd = match c.kind {
            Kind::Karton => {
                let mut k = self.cmd(&self.exe);
                k.arg("--root").arg(&root).args(["run", "--bundle"]).arg(&bundle).arg(&id);
                k
            }
            Kind::Runc => {
                let mut k = self.cmd(Path::new("runc"));
                k.arg("--root").arg(&root).args(["run", "--bundle"]).arg(&bundle).arg(&id);
                k
            }
            Kind::Crun | Kind::CrunWrapper => {
                // crun 1.8 refuses a hybrid cgroup layout: hide the v2 mount in a private
                // mount namespace (nothing changes on the host).
                let inner = if c.kind == Kind::Crun {
                    format!("umount /sys/fs/cgroup/unified 2>/dev/null; exec crun --root '{}' run --bundle '{}' {id}", root.display(), bundle.display())
                } else {
                    "umount /sys/fs/cgroup/unified 2>/dev/null; exec true".to_string()
                };
                let mut k = self.cmd(Path::new("unshare"));
                k.args(["-m", "--propagation", "private", "sh", "-c", &inner]);
                k
            }
            Kind::Bare => return Err("bare has no lifecycle".into()),
        };
        let t = Instant::now();
        let o = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).output().map_err(|e| e.to_string())?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if o.status.success() {
            Ok(ms)
        } else {
            let rt = match c.kind {
                Kind::Runc => PathBuf::from("runc"),
                Kind::Crun => PathBuf::from("crun"),
                _ => self.exe.clone(),
            };
            if c.kind != Kind::Crun {
                let _ = Command::new(&rt)
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force", &id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            Err(format!("{} exited with {}: {}", c.name, o.status, String::from_utf8_lossy(&o.stderr).trim()))
        }
    }

    fn cleanup(&self) {
        // Anything left under our state directories (a failed run) is force-deleted.
        let Ok(rd) = std::fs::read_dir(&self.work) else { return };
        for dir in rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("state")))
        {
            let rt = if dir.ends_with("state-runc") { PathBuf::from("runc") } else { self.exe.clone() };
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten().filter(|e| e.path().is_dir()) {
                let _ = Command::new(&rt)
                    .arg("--root")
                    .arg(&dir)
                    .args(["delete", "--force"])
                    .arg(e.file_name())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        if self.remove_work {
            let _ = std::fs::remove_dir_all(&self.work);
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
