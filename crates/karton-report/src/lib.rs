//! karton-report: turns `karton.bench/v1` and `karton.audit/v1` results into a
//! self-contained HTML page (inline SVG charts, no scripts, no external files), a Markdown
//! summary and CSV.
//!
//! Reads result types only (karton-bench and karton-audit without their runners).

pub mod apps;
pub mod audit;
pub mod svg;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use karton_bench::compare;
use karton_bench::results::{fmt_value, BenchResults, DensityCell, Instrumented, RowStatus, Series};

use svg::{esc, Bar, Line};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error(transparent)]
    Bench(#[from] karton_bench::BenchError),
    #[error(transparent)]
    Audit(#[from] karton_audit::AuditError),
    #[error("no results given")]
    Empty,
}

/// A loaded results file and the name it is shown under.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub results: BenchResults,
}

/// Loads results files (checking the schema).
pub fn load(paths: &[PathBuf]) -> Result<Vec<Input>, ReportError> {
    paths
        .iter()
        .map(|p| {
            Ok(Input {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| p.display().to_string()),
                results: BenchResults::load(p)?,
            })
        })
        .collect()
}

/// Bench and audit results, told apart by their `schema`.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub bench: Vec<Input>,
    /// (file name, the `karton.audit/v1` document)
    pub audits: Vec<(String, karton_audit::AuditResults)>,
}

/// Loads results files of either kind.
pub fn load_all(paths: &[PathBuf]) -> Result<Inputs, ReportError> {
    let mut out = Inputs::default();
    for p in paths {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string());
        let text = std::fs::read_to_string(p)
            .map_err(|source| ReportError::Io { what: format!("reading {}", p.display()), source })?;
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) if audit::is_audit(&v) => {
                let a = serde_json::from_value(v)
                    .map_err(|e| karton_audit::AuditError::Json(format!("{}: {e}", p.display())))?;
                out.audits.push((name, a));
            }
            _ => out.bench.push(Input { name, results: BenchResults::load(p)? }),
        }
    }
    Ok(out)
}

/// Writes the report of bench and audit results: index.html, summary.md and the bench
/// CSVs. The audit sections contrast each namespace's isolation with the overhead the
/// first bench results measured.
pub fn write_all(inputs: &Inputs, dir: &Path) -> Result<Written, ReportError> {
    if inputs.bench.is_empty() && inputs.audits.is_empty() {
        return Err(ReportError::Empty);
    }
    std::fs::create_dir_all(dir)
        .map_err(|source| ReportError::Io { what: format!("creating {}", dir.display()), source })?;
    let bench = inputs.bench.first().map(|i| &i.results);
    let (mut page, mut charts) = if inputs.bench.is_empty() {
        (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>karton report</title><style>body{font-family:sans-serif;max-width:1000px;margin:1em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>\n</body></html>\n".to_string(),
            0,
        )
    } else {
        html(&inputs.bench)
    };
    let mut md = if inputs.bench.is_empty() { String::new() } else { markdown(&inputs.bench) };
    let mut audit_html = String::new();
    for (name, v) in &inputs.audits {
        let section = audit::audit_html(v, bench);
        charts += section.matches("<svg").count();
        let _ = write!(
            audit_html,
            "<h1>karton audit: isolation and noninterference ({})</h1>\n{section}\n",
            svg::esc(name)
        );
        let _ = write!(md, "\n# karton audit ({name})\n\n{}\n", audit::audit_markdown(v, bench));
    }
    if let Some(at) = page.rfind("</body>") {
        page.insert_str(at, &audit_html);
    }
    let html_path = dir.join("index.html");
    karton_bench::results::write_file(&html_path, page.as_bytes())?;
    let md_path = dir.join("summary.md");
    karton_bench::results::write_file(&md_path, md.as_bytes())?;
    let mut csv = Vec::new();
    for i in &inputs.bench {
        let p = dir.join(Path::new(&i.name).with_extension("csv").file_name().unwrap_or_default());
        i.results.save_csv(&p)?;
        csv.push(p);
    }
    Ok(Written { html: html_path, markdown: md_path, csv, charts })
}

/// Files written by [`write`].
#[derive(Debug, Clone)]
pub struct Written {
    pub html: PathBuf,
    pub markdown: PathBuf,
    pub csv: Vec<PathBuf>,
    pub charts: usize,
}

/// Writes index.html, summary.md and one CSV per input into `dir` (atomically each).
pub fn write(inputs: &[Input], dir: &Path) -> Result<Written, ReportError> {
    if inputs.is_empty() {
        return Err(ReportError::Empty);
    }
    std::fs::create_dir_all(dir)
        .map_err(|source| ReportError::Io { what: format!("creating {}", dir.display()), source })?;
    let (html, charts) = html(inputs);
    let html_path = dir.join("index.html");
    karton_bench::results::write_file(&html_path, html.as_bytes())?;
    let md_path = dir.join("summary.md");
    karton_bench::results::write_file(&md_path, markdown(inputs).as_bytes())?;
    let mut csv = Vec::new();
    for i in inputs {
        let p = dir.join(Path::new(&i.name).with_extension("csv").file_name().unwrap_or_default());
        i.results.save_csv(&p)?;
        csv.push(p);
    }
    Ok(Written { html: html_path, markdown: md_path, csv, charts })
}

fn ok_rows(s: &Series) -> impl Iterator<Item = &karton_bench::results::Row> {
    s.rows.iter().filter(|r| r.status == RowStatus::Ok && r.summary.is_some())
}

/// Ratio chart of one series (None when no row has a ratio).
fn ratio_chart(s: &Series) -> Option<String> {
    let base = s.baseline.clone().unwrap_or_else(|| "bare".into());
    let bars: Vec<Bar> = ok_rows(s)
        .filter_map(|r| {
            let q = r.ratio.as_ref()?;
            let pct = (q.median - 1.0) * 100.0;
            Some(Bar {
                label: r.config.clone(),
                value: q.median,
                ci: Some((q.ci_low, q.ci_high)),
                note: format!("{:+.1}% ({} pairs)", pct, q.pairs),
                highlight: q.ci_low > 1.0 || q.ci_high < 1.0,
            })
        })
        .collect();
    if bars.is_empty() {
        return None;
    }
    Some(svg::hbars(
        &format!("{} — cost relative to {base} (median of pairwise ratios, 95% CI)", s.id),
        &format!("× {base} (> 1 = slower; red = CI excludes 1)"),
        &bars,
        Some(1.0),
    ))
}

fn median_chart(s: &Series) -> Option<String> {
    let bars: Vec<Bar> = ok_rows(s)
        .filter_map(|r| {
            let m = r.summary.as_ref()?;
            Some(Bar {
                label: r.config.clone(),
                value: m.median,
                ci: Some((m.ci_low, m.ci_high)),
                note: format!("{} {} (n={})", fmt_value(m.median), s.unit, m.n),
                highlight: false,
            })
        })
        .collect();
    (!bars.is_empty())
        .then(|| svg::hbars(&format!("{} — median, 95% bootstrap CI", s.id), &s.unit, &bars, None))
}

fn figure(out: &mut String, svg: String, caption: &str) -> usize {
    let _ = writeln!(out, "<figure class=\"chart\">{svg}<figcaption>{}</figcaption></figure>", esc(caption));
    1
}

fn ns_order(ns: &str) -> usize {
    ["uts", "cgroup", "time", "pid", "user", "ipc", "mount", "network"]
        .iter()
        .position(|n| *n == ns)
        .unwrap_or(99)
}

/// Key figures of one results file as Markdown-ish rows: (title, header, rows).
fn key_tables(r: &BenchResults) -> Vec<(String, Vec<String>, Vec<Vec<String>>)> {
    let mut out = Vec::new();
    let ratio = |id: &str, cfg: &str| -> String {
        r.series
            .iter()
            .find(|s| s.id == id)
            .and_then(|s| s.rows.iter().find(|x| x.config == cfg))
            .map(|x| match (&x.ratio, x.status) {
                (Some(q), RowStatus::Ok) => format!("{:.3} [{:.3}, {:.3}]", q.median, q.ci_low, q.ci_high),
                (_, RowStatus::Skipped) => "skipped".into(),
                _ => "—".into(),
            })
            .unwrap_or_else(|| "—".into())
    };
    if let Some(p) = r.series.iter().find(|s| s.id == "primes/time") {
        let rows = p
            .rows
            .iter()
            .filter(|x| x.config != "bare")
            .map(|x| vec![x.config.clone(), ratio("primes/time", &x.config), ratio("primes/cpu", &x.config)])
            .collect();
        out.push((
            "primes: cost relative to bare, median [95% CI]".to_string(),
            vec!["configuration".into(), "wall time".into(), "thread CPU time".into()],
            rows,
        ));
    }
    let mut cells: Vec<_> = r.ns_create.iter().filter(|c| c.workers == 1).collect();
    cells.sort_by_key(|c| ns_order(&c.ns));
    if !cells.is_empty() {
        let rows = cells
            .iter()
            .map(|c| {
                vec![
                    c.ns.clone(),
                    c.unshare_us
                        .as_ref()
                        .map(|u| {
                            format!(
                                "{} [{}, {}]",
                                fmt_value(u.median),
                                fmt_value(u.ci_low),
                                fmt_value(u.ci_high)
                            )
                        })
                        .unwrap_or_else(|| "skipped".into()),
                    c.cycle_us.as_ref().map(|u| fmt_value(u.median)).unwrap_or_default(),
                ]
            })
            .collect();
        out.push((
            "namespace creation, one worker".to_string(),
            vec!["namespace".into(), "unshare µs, median [95% CI]".into(), "create + destroy µs".into()],
            rows,
        ));
    }
    if let Some(t) = lifecycle_table(r) {
        out.push(t);
    }
    out.extend(density_tables(r));
    out.extend(apps::table(r));
    out.extend(apps::breakdown_table(r));
    out
}

/// The runtimes side by side: wall, CPU and `create` peak RSS, and karton's cost relative
/// to each (median of the ratios pair by pair within a round; < 1 = karton is cheaper).
fn lifecycle_table(r: &BenchResults) -> Option<(String, Vec<String>, Vec<Vec<String>>)> {
    let wall = r.series.iter().find(|s| s.id == "lifecycle/run")?;
    let cpu = r.series.iter().find(|s| s.id == "lifecycle/cpu");
    let rss = r.series.iter().find(|s| s.id == "lifecycle/create-rss");
    let samples = |s: Option<&Series>, cfg: &str| -> Vec<(u32, f64)> {
        s.and_then(|s| s.rows.iter().find(|x| x.config == cfg))
            .map(|x| x.samples.iter().map(|p| (p.round, p.value)).collect())
            .unwrap_or_default()
    };
    let median = |s: Option<&Series>, cfg: &str| -> String {
        s.and_then(|s| s.rows.iter().find(|x| x.config == cfg))
            .and_then(|x| x.summary.as_ref())
            .map(|m| format!("{} [{}, {}]", fmt_value(m.median), fmt_value(m.ci_low), fmt_value(m.ci_high)))
            .unwrap_or_else(|| "—".into())
    };
    let ratio = |s: Option<&Series>, cfg: &str| -> String {
        // Within a placement: the -nowrap rows against karton in the prepared layout.
        let own = if cfg.ends_with(karton_bench::matrix::NOWRAP) {
            format!("karton{}", karton_bench::matrix::NOWRAP)
        } else {
            "karton".to_string()
        };
        if cfg == own {
            return "1".into();
        }
        let k = samples(s, &own);
        let v = samples(s, cfg);
        let pairs = karton_bench::stats::paired_ratios(&k, &v, false);
        if pairs.is_empty() {
            "—".into()
        } else {
            format!("{:.2}", karton_bench::stats::median(&pairs))
        }
    };
    let rows = wall
        .rows
        .iter()
        .map(|x| {
            if x.status != RowStatus::Ok {
                let mut v = vec![x.config.clone(), format!("skipped: {}", x.reason.as_deref().unwrap_or(""))];
                v.extend(vec![String::new(); 5]);
                return v;
            }
            let c = x.config.as_str();
            vec![
                c.to_string(),
                median(Some(wall), c),
                median(cpu, c),
                median(rss, c),
                ratio(Some(wall), c),
                ratio(cpu, c),
                ratio(rss, c),
            ]
        })
        .collect();
    Some((
        "container lifecycle (run /bin/true: create → start → exit → delete), every runtime in the same wrapper; -nowrap rows: every runtime in one prepared layout, no wrapper (ratios within each group)"
            .to_string(),
        vec![
            "runtime".into(),
            "wall ms, median [95% CI]".into(),
            "CPU ms".into(),
            "create peak RSS KiB".into(),
            "karton ÷ this, wall (pairwise)".into(),
            "karton ÷ this, CPU".into(),
            "karton ÷ this, RSS".into(),
        ],
        rows,
    ))
}

/// Median of a density figure over the repetitions of one (runtime, n, parallel) cell.
fn density_median(
    r: &BenchResults,
    rt: &str,
    n: u32,
    par: u32,
    f: impl Fn(&DensityCell) -> Option<f64>,
) -> Option<f64> {
    let xs: Vec<f64> = r
        .density
        .iter()
        .filter(|c| c.runtime == rt && c.n == n && c.parallel == par && c.status == RowStatus::Ok)
        .filter_map(f)
        .collect();
    (!xs.is_empty()).then(|| karton_bench::stats::median(&xs))
}

fn density_keys(r: &BenchResults) -> (Vec<String>, Vec<(u32, u32)>) {
    let mut rts: Vec<String> = Vec::new();
    let mut cells: Vec<(u32, u32)> = Vec::new();
    for c in &r.density {
        if !rts.contains(&c.runtime) {
            rts.push(c.runtime.clone());
        }
        if !cells.contains(&(c.n, c.parallel)) {
            cells.push((c.n, c.parallel));
        }
    }
    cells.sort();
    (rts, cells)
}

/// Many containers: time to all running, start rate, delete time, memory per container.
fn density_tables(r: &BenchResults) -> Vec<(String, Vec<String>, Vec<Vec<String>>)> {
    if r.density.is_empty() {
        return Vec::new();
    }
    let (rts, cells) = density_keys(r);
    let mut rows = Vec::new();
    for &(n, par) in &cells {
        for rt in &rts {
            let f = |g: &dyn Fn(&DensityCell) -> Option<f64>| {
                density_median(r, rt, n, par, g).map(fmt_value).unwrap_or_else(|| "—".into())
            };
            let reps = r.density.iter().filter(|c| &c.runtime == rt && c.n == n && c.parallel == par).count();
            let skipped = r
                .density
                .iter()
                .find(|c| &c.runtime == rt && c.n == n && c.parallel == par && c.status != RowStatus::Ok);
            if let (Some(c), true) = (skipped, density_median(r, rt, n, par, |c| Some(c.start_s)).is_none()) {
                rows.push(vec![
                    rt.clone(),
                    n.to_string(),
                    par.to_string(),
                    format!("skipped: {}", c.reason.as_deref().unwrap_or("")),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
                continue;
            }
            rows.push(vec![
                rt.clone(),
                n.to_string(),
                par.to_string(),
                f(&|c| Some(c.start_s)),
                f(&|c| Some(c.start_rate)),
                f(&|c| Some(c.delete_s)),
                f(&|c| c.mem.as_ref().map(|m| m.total_kib)),
                f(&|c| c.mem.as_ref().map(|m| m.slab_kib + m.page_tables_kib + m.kernel_stack_kib)),
                reps.to_string(),
            ]);
        }
    }
    let layout = if r.density.iter().all(|c| c.layout.as_deref() == Some("prepared")) {
        "every runtime in one prepared layout, no wrapper"
    } else {
        "in the wrapper"
    };
    let mut out = vec![(
        format!("many containers: N sleeping containers started with P in parallel (`run --detach`, {layout}), then force-deleted"),
        vec![
            "runtime".into(),
            "N".into(),
            "P".into(),
            "all running, s".into(),
            "starts/s".into(),
            "delete all, s".into(),
            "host KiB per idle container".into(),
            "of which kernel (slab, page tables, stacks)".into(),
            "repetitions".into(),
        ],
        rows,
    )];
    // karton's start rate relative to each other runtime, per cell (> 1 = karton faster).
    let mut rrows = Vec::new();
    for &(n, par) in &cells {
        let Some(k) = density_median(r, "karton", n, par, |c| Some(c.start_rate)) else { continue };
        for rt in rts.iter().filter(|x| *x != "karton") {
            if let Some(o) = density_median(r, rt, n, par, |c| Some(c.start_rate)) {
                rrows.push(vec![n.to_string(), par.to_string(), rt.clone(), format!("{:.2}", k / o)]);
            }
        }
    }
    if !rrows.is_empty() {
        out.push((
            "karton's start rate ÷ each runtime's (> 1: karton starts containers faster)".to_string(),
            vec!["N".into(), "P".into(), "vs".into(), "rate ratio".into()],
            rrows,
        ));
    }
    out
}

/// The density curve: time until all N run, per runtime and parallelism (log-log).
fn density_chart(r: &BenchResults) -> Option<String> {
    let (rts, cells) = density_keys(r);
    let mut pars: Vec<u32> = cells.iter().map(|c| c.1).collect();
    pars.sort();
    pars.dedup();
    let mut lines = Vec::new();
    for rt in &rts {
        for &par in &pars {
            let mut ns: Vec<u32> = cells.iter().filter(|c| c.1 == par).map(|c| c.0).collect();
            ns.sort();
            ns.dedup();
            let points: Vec<(f64, f64)> = ns
                .iter()
                .filter_map(|&n| density_median(r, rt, n, par, |c| Some(c.start_s)).map(|s| (n as f64, s)))
                .collect();
            if points.len() > 1 {
                lines.push(svg::Line { label: format!("{rt} P={par}"), points });
            }
        }
    }
    (!lines.is_empty()).then(|| {
        svg::lines(
            "Time until all N containers run (lower is better)",
            "N containers",
            "seconds",
            &lines,
            true,
        )
    })
}

/// The density section: the curve of time until all N run.
fn density(h: &mut String, r: &BenchResults) -> usize {
    if r.density.is_empty() {
        return 0;
    }
    h.push_str("<h3>Many containers: start N sleeping containers, P in parallel</h3>");
    match density_chart(r) {
        Some(c) => figure(h, c, "Time until all N containers run, per runtime and parallelism (log scales)"),
        None => 0,
    }
}

/// The HTML page and its number of charts (one `<svg>` each).
pub fn html(inputs: &[Input]) -> (String, usize) {
    let mut h = String::new();
    let mut charts = 0;
    page_head(&mut h);
    if inputs.len() > 1 {
        run_to_run(&mut h, inputs);
    }
    for inp in inputs {
        let r = &inp.results;
        let _ = write!(h, "<h2>{}</h2>", esc(&inp.name));
        machine_table(&mut h, r);
        charts += app_findings(&mut h, r);
        key_figures(&mut h, r);
        method_and_notes(&mut h, r);
        configurations(&mut h, r);
        charts += workload_series(&mut h, r);
        if !r.ns_create.is_empty() {
            charts += ns_create(&mut h, r);
        }
        charts += lifecycle(&mut h, r);
        charts += density(&mut h, r);
        if let Some(ins) = &r.instrumented {
            charts += instrumented(&mut h, ins);
        }
    }
    h.push_str("<p><small>Generated by <code>karton report</code>; schema karton.bench/v1 (docs/bench.md).</small></p></body></html>\n");
    (h, charts)
}

/// The document head, its style sheet and the page title.
fn page_head(h: &mut String) {
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>karton bench report</title><style>");
    h.push_str("body{font-family:sans-serif;max-width:1000px;margin:1em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child,th:first-child{text-align:left}figure{margin:1em 0}figcaption{color:#555;font-size:90%}.skip{color:#a00}code{background:#f4f4f4}");
    h.push_str("</style></head><body>\n<h1>karton bench: how each namespace changes an application's performance</h1>\n");
}

/// Changes of every series between the first results file and each later one.
fn run_to_run(h: &mut String, inputs: &[Input]) {
    let _ = write!(h, "<h2>Run to run</h2><p>{} results files. Changes of every series between the first and each later file (Mann-Whitney U on the raw samples, 95% CI overlap).</p>", inputs.len());
    for other in &inputs[1..] {
        let ch = compare::compare(&inputs[0].results, &other.results);
        let _ = write!(h, "<h3>{} → {}</h3><table><tr><th>series</th><th>config</th><th>A</th><th>B</th><th>change</th><th>p</th><th>verdict</th></tr>", esc(&inputs[0].name), esc(&other.name));
        for c in ch.iter().filter(|c| c.series.starts_with("primes") || c.significant) {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:+.2}%</td><td>{:.4}</td><td>{}</td></tr>",
                esc(&c.series),
                esc(&c.config),
                fmt_value(c.median_a),
                fmt_value(c.median_b),
                c.change_pct,
                c.p_value,
                c.verdict
            );
        }
        h.push_str("</table>");
    }
}

/// Profile, run times, karton version and the machine the results were measured on.
fn machine_table(h: &mut String, r: &BenchResults) {
    let m = &r.machine;
    let _ = write!(
        h,
        "<table><tr><th>profile</th><td>{}</td></tr><tr><th>run</th><td>{} → {} ({})</td></tr><tr><th>karton</th><td>{}</td></tr><tr><th>kernel</th><td>{} {} ({})</td></tr><tr><th>CPU</th><td>{} × {}</td></tr><tr><th>memory</th><td>{} MiB</td></tr><tr><th>cgroups</th><td>{}</td></tr><tr><th>lockdown</th><td>{}</td></tr><tr><th>instruments</th><td>{}</td></tr><tr><th>other runtimes</th><td>{}</td></tr></table>",
        esc(&r.profile),
        esc(&r.started_at),
        esc(r.finished_at.as_deref().unwrap_or("(unfinished)")),
        if r.complete { "complete" } else if r.interrupted { "interrupted: finished rows only" } else { "partial" },
        esc(&r.karton_version),
        esc(&m.kernel),
        esc(&m.arch),
        esc(&m.os),
        m.cpus,
        esc(&m.cpu_model),
        m.mem_total_kib / 1024,
        esc(&m.cgroup_layout),
        esc(m.lockdown.as_deref().unwrap_or("unreadable")),
        esc(&m.instruments.join(", ")),
        esc(&m.runtimes.join(", "))
    );
}

/// The key-figure tables of one results file.
fn key_figures(h: &mut String, r: &BenchResults) {
    h.push_str("<h3>Key figures</h3>");
    for (title, head, rows) in key_tables(r) {
        let _ = write!(h, "<table><caption>{}</caption><tr>", esc(&title));
        for c in &head {
            let _ = write!(h, "<th>{}</th>", esc(c));
        }
        h.push_str("</tr>");
        for row in rows {
            h.push_str("<tr>");
            for c in row {
                let _ = write!(h, "<td>{}</td>", esc(&c));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
    }
}

/// How the rounds were run and stopped, and the run's notes.
fn method_and_notes(h: &mut String, r: &BenchResults) {
    let me = &r.method;
    let _ = write!(
        h,
        "<p>Method: {} warm-up(s); {}–{} rounds, {}; stop when every row's 95% bootstrap CI of the median is within ±{}% ({} resamples, seed {}); ratios vs <b>{}</b> pair by pair within a round; outliers: {}.</p>",
        me.warmups, me.min_rounds, me.max_rounds, esc(&me.interleaving), me.target_ci_pct, me.bootstrap_resamples, me.seed, esc(&me.baseline), esc(&me.outliers)
    );
    if !r.notes.is_empty() {
        h.push_str("<ul>");
        for n in &r.notes {
            let _ = write!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>");
    }
}

/// The configurations compared, folded.
fn configurations(h: &mut String, r: &BenchResults) {
    h.push_str("<details><summary>Configurations</summary><table><tr><th>name</th><th>runtime</th><th>namespaces</th><th>cgroup limits</th><th>seccomp</th><th>user mapping</th><th>description</th></tr>");
    for c in &r.configurations {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
            esc(&c.name),
            esc(&c.runtime),
            esc(&c.namespaces.join(" ")),
            c.cgroup_limits,
            c.seccomp,
            esc(c.user_mapping.as_deref().unwrap_or("")),
            esc(&c.description)
        );
    }
    h.push_str("</table></details>\n");
}

/// One chart and table per workload series (lifecycle apart).
fn workload_series(h: &mut String, r: &BenchResults) -> usize {
    let mut charts = 0;
    h.push_str("<h3>Workloads: per-namespace overhead</h3>");
    for s in r.series.iter().filter(|s| s.workload != "lifecycle") {
        let _ = write!(
            h,
            "<h4 id=\"{}\">{}</h4><p>{} — <code>karton workload {} {}</code>; {} rounds{}.</p>",
            esc(&s.id),
            esc(&s.id),
            esc(&s.description),
            esc(&s.workload),
            esc(&s.args.join(" ")),
            s.rounds,
            if s.converged { ", CI target reached" } else { ", CI target not reached (cap or time budget)" }
        );
        if let Some(c) = ratio_chart(s) {
            charts += figure(h, c, &format!("{}: {} ({}), ratio to bare", s.id, s.metric, s.unit));
        }
        series_table(h, s);
    }
    charts
}

/// Namespace creation: latency per type, scaling with workers, and the table.
fn ns_create(h: &mut String, r: &BenchResults) -> usize {
    let mut charts = 0;
    h.push_str("<h3>Namespace creation (unshare in a forked child; destroy = exit + reap)</h3>");
    let mut cells: Vec<_> = r.ns_create.iter().filter(|c| c.status == RowStatus::Ok).collect();
    cells.sort_by_key(|c| (ns_order(&c.ns), c.workers));
    let one: Vec<Bar> = cells
        .iter()
        .filter(|c| c.workers == 1)
        .filter_map(|c| {
            let u = c.unshare_us.as_ref()?;
            Some(Bar {
                label: c.ns.clone(),
                value: u.median,
                ci: Some((u.ci_low, u.ci_high)),
                note: format!("{} µs (n={})", fmt_value(u.median), u.n),
                highlight: c.ns == "network",
            })
        })
        .collect();
    if !one.is_empty() {
        charts += figure(
            h,
            svg::hbars("unshare(CLONE_NEW*) latency, one worker — median, 95% CI", "µs", &one, None),
            "Cost of creating one namespace of each type",
        );
    }
    let mut types: Vec<&str> = cells.iter().map(|c| c.ns.as_str()).collect();
    types.dedup();
    let lat: Vec<Line> = types
        .iter()
        .map(|t| Line {
            label: t.to_string(),
            points: cells
                .iter()
                .filter(|c| c.ns == *t)
                .filter_map(|c| Some((c.workers as f64, c.unshare_us.as_ref()?.median)))
                .collect(),
        })
        .collect();
    let thr: Vec<Line> = types
        .iter()
        .map(|t| Line {
            label: t.to_string(),
            points: cells
                .iter()
                .filter(|c| c.ns == *t)
                .filter_map(|c| Some((c.workers as f64, c.throughput.as_ref()?.median)))
                .collect(),
        })
        .collect();
    if lat.iter().any(|l| !l.points.is_empty()) {
        charts += figure(
            h,
            svg::lines(
                "unshare latency vs concurrent workers (median)",
                "concurrent workers",
                "µs (log)",
                &lat,
                true,
            ),
            "Scaling of namespace creation with concurrency: latency",
        );
        charts += figure(
            h,
            svg::lines(
                "namespaces created + destroyed per second, all workers",
                "concurrent workers",
                "namespaces/s (log)",
                &thr,
                true,
            ),
            "Scaling of namespace creation with concurrency: throughput",
        );
    }
    h.push_str("<table><tr><th>namespace</th><th>workers</th><th>unshare µs (median)</th><th>95% CI</th><th>n</th><th>create+destroy µs</th><th>ns/s</th></tr>");
    for c in &r.ns_create {
        match (&c.unshare_us, &c.cycle_us, &c.throughput) {
            (Some(u), cy, tp) => {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} – {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&c.ns),
                    c.workers,
                    fmt_value(u.median),
                    fmt_value(u.ci_low),
                    fmt_value(u.ci_high),
                    u.n,
                    cy.as_ref().map(|x| fmt_value(x.median)).unwrap_or_default(),
                    tp.as_ref().map(|x| fmt_value(x.median)).unwrap_or_default()
                );
            }
            _ => {
                let _ = write!(
                    h,
                    "<tr class=\"skip\"><td>{}</td><td>{}</td><td colspan=\"5\">skipped: {}</td></tr>",
                    esc(&c.ns),
                    c.workers,
                    esc(c.reason.as_deref().unwrap_or(""))
                );
            }
        }
    }
    h.push_str("</table>");
    charts
}

/// Container lifecycle wall time per runtime.
fn lifecycle(h: &mut String, r: &BenchResults) -> usize {
    let mut charts = 0;
    for s in r.series.iter().filter(|s| s.workload == "lifecycle") {
        h.push_str("<h3>Container lifecycle: create → start → exit → delete</h3>");
        let _ = write!(h, "<p>{}</p>", esc(&s.description));
        if let Some(c) = median_chart(s) {
            charts += figure(h, c, "Lifecycle wall time per runtime (lower is better)");
        }
        series_table(h, s);
    }
    charts
}

/// The instrumented pass: per-configuration counters, histograms and probe overhead.
fn instrumented(h: &mut String, ins: &Instrumented) -> usize {
    let mut charts = 0;
    let _ = write!(h, "<h3>Instrumented pass (karton-probe, separate from the timed passes)</h3><p>Workload <code>{} {}</code>; instruments: {}.</p>", esc(&ins.workload), esc(&ins.args.join(" ")), esc(&ins.instruments.join("; ")));
    for n in &ins.notes {
        let _ = write!(h, "<p>{}</p>", esc(n));
    }
    for run in &ins.runs {
        let _ = write!(
            h,
            "<h4>{}</h4><p>context switches {}, page faults {}{}{}</p>",
            esc(&run.config),
            run.context_switches,
            run.page_faults,
            if run.peak_rss_kib > 0 { format!(", peak RSS {} KiB", run.peak_rss_kib) } else { String::new() },
            run.footprint_functions
                .map(|f| format!(", kernel functions sampled {f} (footprint approximation)"))
                .unwrap_or_default()
        );
        if let Some(top) = run.syscalls.iter().max_by_key(|s| s.count) {
            if top.hist.iter().any(|c| *c > 0) {
                charts += figure(
                    h,
                    svg::log2_hist(
                        &format!("{} under {}: syscall latency (log2 buckets)", top.name, run.config),
                        &top.hist,
                    ),
                    &format!("{} calls of {}, mean {:.0} ns", top.count, top.name, top.mean_ns),
                );
            }
        }
        if run.runq_hist.iter().any(|c| *c > 0) {
            charts += figure(
                h,
                svg::log2_hist(&format!("run-queue latency under {}", run.config), &run.runq_hist),
                "wakeup → on-CPU",
            );
        }
        h.push_str("<table><tr><th>syscall</th><th>count</th><th>errors</th><th>mean ns</th></tr>");
        let mut sc = run.syscalls.clone();
        sc.sort_by_key(|s| std::cmp::Reverse(s.count));
        for s in sc.iter().take(10) {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td></tr>",
                esc(&s.name),
                s.count,
                s.errors,
                s.mean_ns
            );
        }
        h.push_str("</table>");
    }
    if !ins.overhead.is_empty() {
        h.push_str("<p>Probe overhead (same workload, without and with the probe attached):</p><table><tr><th>config</th><th>metric</th><th>without</th><th>with</th><th>change</th></tr>");
        for o in &ins.overhead {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{:+.1}%</td></tr>",
                esc(&o.config),
                esc(&o.metric),
                esc(&o.unit),
                fmt_value(o.without_probe),
                fmt_value(o.with_probe),
                (o.with_probe / o.without_probe - 1.0) * 100.0
            );
        }
        h.push_str("</table>");
    }
    charts
}

fn series_table(h: &mut String, s: &Series) {
    let _ = write!(h, "<table><tr><th>config</th><th>median ({})</th><th>95% CI</th><th>n</th><th>outliers</th><th>ratio</th><th>ratio CI</th></tr>", esc(&s.unit));
    for r in &s.rows {
        match (&r.summary, r.status) {
            (Some(m), RowStatus::Ok) => {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{} – {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&r.config),
                    fmt_value(m.median),
                    fmt_value(m.ci_low),
                    fmt_value(m.ci_high),
                    m.n,
                    m.outliers.len(),
                    r.ratio.as_ref().map(|q| format!("{:.3}", q.median)).unwrap_or_else(|| "—".into()),
                    r.ratio.as_ref().map(|q| format!("{:.3} – {:.3}", q.ci_low, q.ci_high)).unwrap_or_default()
                );
            }
            _ => {
                let _ = write!(h, "<tr class=\"skip\"><td>{}</td><td colspan=\"6\" style=\"text-align:left\">skipped: {}</td></tr>", esc(&r.config), esc(r.reason.as_deref().unwrap_or("no samples")));
            }
        }
    }
    h.push_str("</table>");
}

/// The key findings and the cost-against-isolation chart of the application rows; the
/// number of charts written.
fn app_findings(h: &mut String, r: &BenchResults) -> usize {
    let mut charts = 0;
    let findings = apps::key_findings(r);
    if !findings.is_empty() {
        h.push_str("<h3>Key findings</h3><ul>");
        for f in &findings {
            let _ = write!(h, "<li>{}</li>", esc(f));
        }
        h.push_str("</ul>");
    }
    if let Some(svg) = apps::cost_isolation_chart(r) {
        charts += figure(h, svg, "Application cost against isolation: each configuration's cost relative to bare, ordered by the number of namespaces around the server.");
    }
    charts
}

/// The Markdown summary.
pub fn markdown(inputs: &[Input]) -> String {
    let mut m = String::from("# karton bench summary\n\n");
    for inp in inputs {
        let r = &inp.results;
        let mc = &r.machine;
        let _ = writeln!(m, "## {}\n", inp.name);
        let _ = writeln!(
            m,
            "Profile **{}**, {} → {}{}. Kernel {} ({}), {} × {}, cgroups {}, lockdown {}. karton {}.\n",
            r.profile,
            r.started_at,
            r.finished_at.as_deref().unwrap_or("unfinished"),
            if r.interrupted { " (interrupted)" } else { "" },
            mc.kernel,
            mc.os,
            mc.cpus,
            mc.cpu_model,
            mc.cgroup_layout,
            mc.lockdown.as_deref().unwrap_or("unreadable"),
            r.karton_version
        );
        let findings = apps::key_findings(r);
        if !findings.is_empty() {
            m.push_str("### Key findings\n\n");
            for f in &findings {
                let _ = writeln!(m, "- {f}");
            }
            m.push('\n');
        }
        let _ = writeln!(m, "Ratios are cost relative to bare (> 1 = slower), median of pairwise ratios within a round, with 95% bootstrap CI.\n");
        for (title, head, rows) in key_tables(r) {
            let _ = writeln!(
                m,
                "**{title}**\n\n| {} |\n|{}|",
                head.join(" | "),
                head.iter().map(|_| "---").collect::<Vec<_>>().join("|")
            );
            for row in rows {
                let _ = writeln!(m, "| {} |", row.join(" | ").replace('\n', " "));
            }
            m.push('\n');
        }
        for s in &r.series {
            let _ = writeln!(
                m,
                "### {} ({}, {} rounds{})\n",
                s.id,
                s.unit,
                s.rounds,
                if s.converged { ", converged" } else { "" }
            );
            let _ = writeln!(
                m,
                "| config | median | 95% CI | n | ratio | ratio 95% CI |\n|---|---:|---:|---:|---:|---:|"
            );
            for row in &s.rows {
                match (&row.summary, row.status) {
                    (Some(x), RowStatus::Ok) => {
                        let _ = writeln!(
                            m,
                            "| {} | {} | {} – {} | {} | {} | {} |",
                            row.config,
                            fmt_value(x.median),
                            fmt_value(x.ci_low),
                            fmt_value(x.ci_high),
                            x.n,
                            row.ratio
                                .as_ref()
                                .map(|q| format!("{:.3}", q.median))
                                .unwrap_or_else(|| "—".into()),
                            row.ratio
                                .as_ref()
                                .map(|q| format!("{:.3} – {:.3}", q.ci_low, q.ci_high))
                                .unwrap_or_default()
                        );
                    }
                    _ => {
                        let _ = writeln!(
                            m,
                            "| {} | skipped: {} | | | | |",
                            row.config,
                            row.reason
                                .as_deref()
                                .unwrap_or("no samples")
                                .replace('|', "/")
                                .replace('\n', " ")
                        );
                    }
                }
            }
            m.push('\n');
        }
        if !r.ns_create.is_empty() {
            let _ = writeln!(m, "### Namespace creation (µs per unshare; create+destroy µs; namespaces/s)\n\n| namespace | workers | unshare median | 95% CI | create+destroy | per second |\n|---|---:|---:|---:|---:|---:|");
            let mut cells: Vec<_> = r.ns_create.iter().collect();
            cells.sort_by_key(|c| (ns_order(&c.ns), c.workers));
            for c in cells {
                match &c.unshare_us {
                    Some(u) => {
                        let _ = writeln!(
                            m,
                            "| {} | {} | {} | {} – {} | {} | {} |",
                            c.ns,
                            c.workers,
                            fmt_value(u.median),
                            fmt_value(u.ci_low),
                            fmt_value(u.ci_high),
                            c.cycle_us.as_ref().map(|x| fmt_value(x.median)).unwrap_or_default(),
                            c.throughput.as_ref().map(|x| fmt_value(x.median)).unwrap_or_default()
                        );
                    }
                    None => {
                        let _ = writeln!(
                            m,
                            "| {} | {} | skipped: {} | | | |",
                            c.ns,
                            c.workers,
                            c.reason.as_deref().unwrap_or("")
                        );
                    }
                }
            }
            m.push('\n');
        }
        if let Some(ins) = &r.instrumented {
            let _ = writeln!(
                m,
                "### Instrumented pass\n\nWorkload `{} {}`, instruments: {}.\n",
                ins.workload,
                ins.args.join(" "),
                ins.instruments.join("; ")
            );
            for run in &ins.runs {
                let top: Vec<String> = {
                    let mut sc = run.syscalls.clone();
                    sc.sort_by_key(|s| std::cmp::Reverse(s.count));
                    sc.iter()
                        .take(5)
                        .map(|s| format!("{} ×{} ({:.0} ns)", s.name, s.count, s.mean_ns))
                        .collect()
                };
                let _ = writeln!(
                    m,
                    "- **{}**: {}; context switches {}, page faults {}",
                    run.config,
                    top.join(", "),
                    run.context_switches,
                    run.page_faults
                );
            }
            for o in &ins.overhead {
                let _ = writeln!(
                    m,
                    "- probe overhead under {}: {} {} → {} {}",
                    o.config,
                    fmt_value(o.without_probe),
                    o.unit,
                    fmt_value(o.with_probe),
                    o.unit
                );
            }
            for n in &ins.notes {
                let _ = writeln!(m, "- {n}");
            }
            m.push('\n');
        }
        for n in &r.notes {
            let _ = writeln!(m, "> {n}");
        }
        m.push('\n');
    }
    if inputs.len() > 1 {
        let _ = writeln!(m, "## Run to run\n");
        for other in &inputs[1..] {
            let ch = compare::compare(&inputs[0].results, &other.results);
            let _ =
                writeln!(m, "{} → {}:\n\n```\n{}```\n", inputs[0].name, other.name, compare::to_text(&ch));
        }
    }
    m
}
