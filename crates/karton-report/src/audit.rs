//! The audit's part of `karton report`: the isolation matrix (namespace × probe, contained
//! or leaked, with the evidence line), the noninterference table and chart, the kernel
//! footprint, and the contrast the thesis asks for — per namespace, the isolation it buys
//! against the overhead it costs.
//!
//! Input is the audit's result ([`AuditResults`], `"schema": "karton.audit/v1"`, the
//! types karton-audit writes, from the crate without its runner) and optionally a bench
//! result ([`BenchResults`], `karton.bench/v1`). Output: HTML fragments with inline SVG,
//! and Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use karton_audit::results::{AuditResults, IsolationRow, NoninterferenceRow, Verdict};
use karton_bench::results::BenchResults;
use serde_json::Value;

/// The namespaces in report order (short names, as the audit writes them).
pub const NAMESPACES: [&str; 8] = ["mnt", "pid", "net", "ipc", "uts", "user", "cgroup", "time"];

/// Escapes text for HTML and SVG.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Escapes text for a Markdown table cell.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn st<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("")
}

fn fmt(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "–".into()
    }
}

/// Whether `v` carries the audit's schema tag (then it is read as [`AuditResults`]).
pub fn is_audit(v: &Value) -> bool {
    st(v, "schema") == karton_audit::results::SCHEMA
}

fn verdict_badge_html(v: &str) -> String {
    let (bg, fg) = match v {
        "contained" => ("#d7f0dd", "#125c26"),
        "leaked" => ("#f8d7d7", "#8a1111"),
        "skipped" => ("#eeeeee", "#555555"),
        _ => ("#fff0c2", "#7a5a00"),
    };
    format!("<span style=\"background:{bg};color:{fg};padding:1px 6px;border-radius:3px;font-weight:600\">{}</span>", esc(v))
}

/// The isolation matrix as an HTML fragment: one row per probe, grouped by namespace, the
/// verdict without and with its protection, each with its evidence line.
pub fn isolation_matrix_html(audit: &AuditResults) -> String {
    let mut h = String::new();
    let rows = &audit.isolation;
    let shown = rows.iter().filter(|r| r.demonstrated).count();
    let _ = write!(
        h,
        "<section class=\"audit-isolation\"><h2>Isolation matrix</h2><p>{} probes; {} show the leak without their protection and the containment with it. Each probe ran twice, all else equal: without and with the namespace (or, for the rows no namespace protects, the mechanism) under test.</p>",
        rows.len(),
        shown
    );
    h.push_str("<table><thead><tr><th>namespace</th><th>probe</th><th>without</th><th>with</th><th>evidence (without / with)</th></tr></thead><tbody>");
    for r in rows {
        let (wo, w) = (&r.without, &r.with);
        let ns = r.namespace.as_str();
        let ns_label = if ns == "none" { "no namespace".to_string() } else { ns.to_string() };
        let mut ev = format!(
            "<div><b>without</b> ({}): {}</div><div><b>with</b> ({}): {}</div>",
            esc(&wo.config),
            esc(&wo.evidence),
            esc(&w.config),
            esc(&w.evidence)
        );
        if let Some(d) = &r.default_config {
            let out = &d.outcome;
            let _ = write!(
                ev,
                "<div><b>protected by</b> {}; karton's default config {} it: {} {}</div>",
                esc(&r.protection),
                if d.applies_mechanism { "applies" } else { "does <b>not</b> apply" },
                verdict_badge_html(out.verdict.as_str()),
                esc(&out.evidence)
            );
            if let Some(note) = &d.note {
                let _ = write!(ev, "<div><b>{}</b></div>", esc(note));
            }
        }
        let _ = write!(
            h,
            "<tr><td>{}</td><td><code>{}</code><br>{}</td><td>{}</td><td>{}</td><td style=\"font-size:90%\">{}</td></tr>",
            esc(&ns_label),
            esc(&r.id),
            esc(&r.probe),
            verdict_badge_html(wo.verdict.as_str()),
            verdict_badge_html(w.verdict.as_str()),
            ev
        );
    }
    h.push_str("</tbody></table>");
    let notes = &audit.notes;
    if !notes.is_empty() {
        h.push_str("<ul class=\"audit-notes\">");
        for n in notes {
            let _ = write!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>");
    }
    h.push_str("</section>");
    h
}

/// The isolation matrix as Markdown.
pub fn isolation_matrix_markdown(audit: &AuditResults) -> String {
    let mut m = String::from("## Isolation matrix\n\n| namespace | probe | without | with | evidence without | evidence with |\n|---|---|---|---|---|---|\n");
    let mut defaults = String::new();
    for r in &audit.isolation {
        let (wo, w) = (&r.without, &r.with);
        let ns = r.namespace.as_str();
        let _ = writeln!(
            m,
            "| {} | `{}` {} | **{}** | **{}** | {} | {} |",
            if ns == "none" { "—" } else { ns },
            r.id,
            md(&r.probe),
            wo.verdict.as_str(),
            w.verdict.as_str(),
            md(&wo.evidence),
            md(&w.evidence)
        );
        if let Some(d) = &r.default_config {
            let note = d.note.as_deref().map(|n| format!(" ({})", md(n))).unwrap_or_default();
            let _ = writeln!(
                defaults,
                "| `{}` | {} | {} | **{}**{} |",
                r.id,
                md(&r.protection),
                if d.applies_mechanism { "yes" } else { "no" },
                d.outcome.verdict.as_str(),
                note
            );
        }
    }
    if !defaults.is_empty() {
        m.push_str("\nRows no namespace protects — the mechanism that does, and karton's default config:\n\n| probe | protected by | default config applies it | default config verdict |\n|---|---|---|---|\n");
        m.push_str(&defaults);
    }
    m
}

/// One row of the noninterference table.
struct Ni<'a> {
    stressor: &'a str,
    limited: bool,
    victim: &'a str,
    baseline: f64,
    stressed: f64,
    deg: f64,
    lo: f64,
    hi: f64,
    progress: f64,
    unit: &'a str,
    end: &'a str,
}

fn ni_rows(audit: &AuditResults) -> Vec<Ni<'_>> {
    let rows: &[NoninterferenceRow] = audit.noninterference.as_ref().map(|n| &n.rows[..]).unwrap_or(&[]);
    rows.iter()
        .map(|r| Ni {
            stressor: &r.stressor,
            limited: r.limited,
            victim: &r.victim,
            baseline: r.baseline,
            stressed: r.stressed,
            deg: r.degradation_pct.value,
            lo: r.degradation_pct.ci_low,
            hi: r.degradation_pct.ci_high,
            progress: r.stressor_progress,
            unit: &r.stressor_unit,
            end: &r.stressor_end,
        })
        .collect()
}

/// Horizontal bars of victim degradation (%), with CI whiskers: one group per stressor and
/// victim, a bar for "ceilings only" and one for "with limits".
pub fn noninterference_svg(audit: &AuditResults) -> String {
    let rows = ni_rows(audit);
    if rows.is_empty() {
        return String::new();
    }
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in &rows {
        let k = (r.stressor, r.victim);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let (mut lo, mut hi) = (0.0f64, 10.0f64);
    for r in &rows {
        for v in [r.deg, r.lo, r.hi] {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    lo = (lo / 10.0).floor() * 10.0;
    hi = (hi / 10.0).ceil() * 10.0;
    let (left, width, bar, gap) = (170.0, 460.0, 9.0, 8.0);
    let group_h = 2.0 * bar + gap;
    let height = 40.0 + keys.len() as f64 * group_h + 40.0;
    let x = |v: f64| left + (v - lo) / (hi - lo) * width;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\" aria-label=\"victim degradation\">",
        w = left + width + 30.0
    );
    let _ = write!(s, "<text x=\"{left}\" y=\"16\" font-size=\"13\" font-weight=\"bold\">Victim degradation beside each stressor (%, 95 % CI)</text>");
    // Grid.
    let mut t = lo;
    while t <= hi + 1e-9 {
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"28\" y2=\"{1:.1}\" stroke=\"{2}\" stroke-width=\"1\"/><text x=\"{0:.1}\" y=\"{3:.1}\" text-anchor=\"middle\" fill=\"#555\">{4}</text>",
            x(t),
            height - 30.0,
            if t == 0.0 { "#333" } else { "#ddd" },
            height - 16.0,
            t
        );
        t += if hi - lo > 100.0 { 25.0 } else { 10.0 };
    }
    for (i, (stressor, victim)) in keys.iter().enumerate() {
        let y0 = 32.0 + i as f64 * group_h;
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} · {}</text>",
            left - 6.0,
            y0 + bar + 3.0,
            esc(stressor),
            esc(victim)
        );
        for (j, limited) in [false, true].iter().enumerate() {
            let Some(r) =
                rows.iter().find(|r| &r.stressor == stressor && &r.victim == victim && r.limited == *limited)
            else {
                continue;
            };
            if !r.deg.is_finite() {
                continue;
            }
            let y = y0 + j as f64 * bar;
            let (a, b) = (x(0.0_f64.max(lo)), x(r.deg));
            let color = if *limited { "#4a7fb5" } else { "#d0743c" };
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{} beside {} ({}): {:.1} % [{:.1}, {:.1}]</title></rect>",
                a.min(b),
                y,
                (b - a).abs().max(0.5),
                bar - 1.0,
                esc(victim),
                esc(stressor),
                if *limited { "with limits" } else { "ceilings only" },
                r.deg,
                r.lo,
                r.hi
            );
            if r.lo.is_finite() && r.hi.is_finite() {
                let ym = y + (bar - 1.0) / 2.0;
                let _ = write!(s, "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{ym:.1}\" y2=\"{ym:.1}\" stroke=\"#222\" stroke-width=\"1\"/>", x(r.lo), x(r.hi));
            }
        }
    }
    let ly = height - 6.0;
    let _ = write!(
        s,
        "<rect x=\"{left}\" y=\"{:.1}\" width=\"10\" height=\"8\" fill=\"#d0743c\"/><text x=\"{:.1}\" y=\"{ly:.1}\">ceilings only (memory 2 GiB, pids 512)</text><rect x=\"{:.1}\" y=\"{:.1}\" width=\"10\" height=\"8\" fill=\"#4a7fb5\"/><text x=\"{:.1}\" y=\"{ly:.1}\">with cgroup limits</text></svg>",
        ly - 8.0,
        left + 14.0,
        left + 250.0,
        ly - 8.0,
        left + 264.0
    );
    s
}

/// The noninterference table and chart as an HTML fragment.
pub fn noninterference_html(audit: &AuditResults) -> String {
    let rows = ni_rows(audit);
    let Some(ni) = &audit.noninterference else {
        return "<section class=\"audit-noninterference\"><h2>Noninterference</h2><p>Not measured in this run.</p></section>".into();
    };
    let mut h = String::new();
    let _ = write!(
        h,
        "<section class=\"audit-noninterference\"><h2>Noninterference</h2><p>{}</p>",
        esc(&ni.method)
    );
    h.push_str(&noninterference_svg(audit));
    h.push_str("<table><thead><tr><th>stressor</th><th>stressor cgroup</th><th>victim</th><th>alone</th><th>beside</th><th>degradation % [95 % CI]</th><th>stressor progress</th><th>stressor end</th></tr></thead><tbody>");
    for r in &rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><b>{}</b> [{}, {}]</td><td>{} {}</td><td>{}</td></tr>",
            esc(r.stressor),
            if r.limited { "with limits" } else { "ceilings only" },
            esc(r.victim),
            fmt(r.baseline, 1),
            fmt(r.stressed, 1),
            fmt(r.deg, 1),
            fmt(r.lo, 1),
            fmt(r.hi, 1),
            fmt(r.progress, 1),
            esc(r.unit),
            esc(r.end)
        );
    }
    h.push_str("</tbody></table>");
    let skipped = &ni.skipped;
    if !skipped.is_empty() {
        h.push_str("<p>Skipped:</p><ul>");
        for s in skipped {
            let _ = write!(h, "<li>{}</li>", esc(s));
        }
        h.push_str("</ul>");
    }
    h.push_str("</section>");
    h
}

/// The noninterference table as Markdown.
pub fn noninterference_markdown(audit: &AuditResults) -> String {
    let Some(ni) = &audit.noninterference else {
        return "## Noninterference\n\nNot measured in this run.\n".into();
    };
    let mut m = format!(
        "## Noninterference\n\n{}\n\n| stressor | stressor cgroup | victim | alone | beside | degradation % [95 % CI] | stressor progress | stressor end |\n|---|---|---|---|---|---|---|---|\n",
        md(&ni.method)
    );
    for r in ni_rows(audit) {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | **{}** [{}, {}] | {} {} | {} |",
            r.stressor,
            if r.limited { "with limits" } else { "ceilings only" },
            r.victim,
            fmt(r.baseline, 1),
            fmt(r.stressed, 1),
            fmt(r.deg, 1),
            fmt(r.lo, 1),
            fmt(r.hi, 1),
            fmt(r.progress, 1),
            md(r.unit),
            md(r.end)
        );
    }
    m
}

/// The kernel footprint table (HTML), labelled as the approximation it is.
pub fn footprint_html(audit: &AuditResults) -> String {
    let Some(f) = &audit.footprint else { return String::new() };
    let mut h = format!(
        "<section class=\"audit-footprint\"><h2>Kernel footprint (approximation)</h2><p>{} — instrument: {}</p>",
        esc(&f.approximation),
        esc(&f.instrument)
    );
    if let Some(why) = &f.skipped {
        let _ = write!(h, "<p>Skipped: {}</p></section>", esc(why));
        return h;
    }
    h.push_str("<table><thead><tr><th>configuration</th><th>kernel samples</th><th>user samples</th><th>distinct kernel functions</th><th>top functions</th></tr></thead><tbody>");
    for r in &f.rows {
        let top: Vec<String> =
            r.top_functions.iter().take(5).map(|(name, n)| format!("{name} ({n})")).collect();
        match &r.skipped {
            Some(why) => {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td colspan=\"4\">skipped: {}</td></tr>",
                    esc(&r.config),
                    esc(why)
                );
            }
            None => {
                let _ = write!(
                    h,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td style=\"font-size:90%\">{}</td></tr>",
                    esc(&r.config),
                    fmt(r.kernel_samples as f64, 0),
                    fmt(r.user_samples as f64, 0),
                    fmt(r.distinct_functions as f64, 0),
                    esc(&top.join(", "))
                );
            }
        }
    }
    h.push_str("</tbody></table></section>");
    h
}

/// The kernel footprint table (Markdown).
pub fn footprint_markdown(audit: &AuditResults) -> String {
    let Some(f) = &audit.footprint else { return String::new() };
    let mut m = format!(
        "## Kernel footprint (approximation)\n\n{} — instrument: {}\n\n",
        md(&f.approximation),
        md(&f.instrument)
    );
    if let Some(why) = &f.skipped {
        let _ = writeln!(m, "Skipped: {why}");
        return m;
    }
    m.push_str(
        "| configuration | kernel samples | user samples | distinct kernel functions |\n|---|---|---|---|\n",
    );
    for r in &f.rows {
        match &r.skipped {
            Some(why) => {
                let _ = writeln!(m, "| {} | skipped: {} | | |", md(&r.config), md(why));
            }
            None => {
                let _ = writeln!(
                    m,
                    "| {} | {} | {} | {} |",
                    md(&r.config),
                    fmt(r.kernel_samples as f64, 0),
                    fmt(r.user_samples as f64, 0),
                    fmt(r.distinct_functions as f64, 0)
                );
            }
        }
    }
    m
}

/// The overhead of one namespace, from a bench result: the median, over the bench's
/// series, of the "+NS" configuration's ratio against bare ("mnt" for the mount
/// namespace). > 1 means slower than bare.
#[derive(Debug, Clone, PartialEq)]
pub struct Overhead {
    pub ratio: f64,
    /// Smallest and largest per-series ratio.
    pub min: f64,
    pub max: f64,
    pub series: usize,
}

/// Per-namespace overhead from a `karton.bench/v1` result (`{}` when none is found).
pub fn overhead_from_bench(bench: &BenchResults) -> BTreeMap<String, Overhead> {
    let mut per: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in &bench.series {
        for r in &s.rows {
            let cfg = r.config.as_str();
            let ns = if cfg == "mnt" {
                "mnt"
            } else if let Some(n) = cfg.strip_prefix('+') {
                n
            } else {
                continue;
            };
            if let Some(x) = r.ratio.as_ref().map(|x| x.median) {
                if x.is_finite() && x > 0.0 {
                    per.entry(ns.to_string()).or_default().push(x);
                }
            }
        }
    }
    per.into_iter()
        .map(|(ns, mut v)| {
            v.sort_by(|a, b| a.total_cmp(b));
            let m =
                if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
            (ns, Overhead { ratio: m, min: v[0], max: v[v.len() - 1], series: v.len() })
        })
        .collect()
}

/// Per-namespace isolation: (probes demonstrated, probes run and not skipped).
pub fn isolation_by_namespace(audit: &AuditResults) -> BTreeMap<String, (usize, usize)> {
    let mut m: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for r in &audit.isolation {
        let ns = r.namespace.as_str();
        if ns == "none" || ns.is_empty() {
            continue;
        }
        let skipped = r.with.verdict == Verdict::Skipped;
        let e = m.entry(ns.to_string()).or_default();
        if !skipped {
            e.1 += 1;
        }
        if r.demonstrated {
            e.0 += 1;
        }
    }
    m
}

/// Scatter chart: x = overhead in percent over bare, y = probes the namespace contains.
pub fn contrast_svg(audit: &AuditResults, overhead: &BTreeMap<String, f64>) -> String {
    let iso = isolation_by_namespace(audit);
    let pts: Vec<(&str, f64, usize)> = NAMESPACES
        .iter()
        .filter_map(|ns| Some((*ns, (overhead.get(*ns)? - 1.0) * 100.0, iso.get(*ns)?.0)))
        .collect();
    if pts.is_empty() {
        return String::new();
    }
    let (w, h, l, b) = (520.0, 300.0, 50.0, 40.0);
    let xmin = pts.iter().map(|p| p.1).fold(0.0f64, f64::min).floor();
    let xmax = pts.iter().map(|p| p.1).fold(1.0f64, f64::max).ceil();
    let ymax = pts.iter().map(|p| p.2).max().unwrap_or(1).max(1) as f64;
    let x = |v: f64| l + (v - xmin) / (xmax - xmin).max(1e-9) * (w - l - 20.0);
    let y = |v: f64| h - b - v / ymax * (h - b - 30.0);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\" role=\"img\" aria-label=\"isolation against overhead\">");
    let _ = write!(s, "<text x=\"{l}\" y=\"16\" font-size=\"13\" font-weight=\"bold\">Isolation bought vs overhead paid, per namespace</text>");
    let _ = write!(s, "<line x1=\"{l}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/><line x1=\"{l}\" x2=\"{l}\" y1=\"26\" y2=\"{:.1}\" stroke=\"#333\"/>", w - 20.0, h - b, h - b, h - b);
    let _ = write!(s, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">overhead vs bare (%, median over bench series)</text>", (l + w) / 2.0, h - 8.0);
    let _ = write!(s, "<text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">probes contained</text>", (h - b) / 2.0, (h - b) / 2.0);
    for (tx, label) in [(xmin, xmin), (xmax, xmax), (0.0, 0.0)] {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">{label}</text>",
            x(tx),
            h - b + 14.0
        );
    }
    let _ = write!(s, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{ymax}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">0</text>", l - 4.0, y(ymax) + 4.0, l - 4.0, y(0.0) + 4.0);
    for (ns, ov, n) in pts {
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"#4a7fb5\"><title>{ns}: {ov:+.1} % overhead, {n} probes contained</title></circle><text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            x(ov),
            y(n as f64),
            x(ov) + 7.0,
            y(n as f64) - 5.0,
            esc(ns)
        );
    }
    s.push_str("</svg>");
    s
}

/// The contrast per namespace (HTML): isolation bought against overhead paid. `overhead`
/// maps a namespace (short name) to its cost ratio against bare (1.10 = 10 % slower); use
/// [`overhead_from_bench`] to get it from a bench result.
pub fn contrast_html(audit: &AuditResults, overhead: &BTreeMap<String, f64>) -> String {
    let iso = isolation_by_namespace(audit);
    let mut h =
        String::from("<section class=\"audit-contrast\"><h2>Isolation against overhead, per namespace</h2>");
    h.push_str(&contrast_svg(audit, overhead));
    h.push_str("<table><thead><tr><th>namespace</th><th>probes contained (of run)</th><th>what it isolates here</th><th>overhead vs bare</th></tr></thead><tbody>");
    for ns in NAMESPACES {
        let (shown, run) = iso.get(ns).copied().unwrap_or((0, 0));
        let probes: Vec<&str> = audit
            .isolation
            .iter()
            .filter(|r: &&IsolationRow| r.namespace == ns && r.demonstrated)
            .map(|r| r.probe.as_str())
            .collect();
        let _ = write!(
            h,
            "<tr><td>{ns}</td><td>{shown} / {run}</td><td>{}</td><td>{}</td></tr>",
            esc(&probes.join("; ")),
            overhead
                .get(ns)
                .map(|r| format!("{:+.1} %", (r - 1.0) * 100.0))
                .unwrap_or_else(|| "not measured".into())
        );
    }
    h.push_str("</tbody></table></section>");
    h
}

/// The contrast per namespace (Markdown).
pub fn contrast_markdown(audit: &AuditResults, overhead: &BTreeMap<String, f64>) -> String {
    let iso = isolation_by_namespace(audit);
    let mut m = String::from("## Isolation against overhead, per namespace\n\n| namespace | probes contained (of run) | overhead vs bare |\n|---|---|---|\n");
    for ns in NAMESPACES {
        let (shown, run) = iso.get(ns).copied().unwrap_or((0, 0));
        let _ = writeln!(
            m,
            "| {ns} | {shown} / {run} | {} |",
            overhead
                .get(ns)
                .map(|r| format!("{:+.1} %", (r - 1.0) * 100.0))
                .unwrap_or_else(|| "not measured".into())
        );
    }
    m
}

fn overhead_map(bench: Option<&BenchResults>) -> BTreeMap<String, f64> {
    bench.map(overhead_from_bench).unwrap_or_default().into_iter().map(|(k, v)| (k, v.ratio)).collect()
}

/// Every audit section as one HTML fragment (bench result optional, for the contrast).
pub fn audit_html(audit: &AuditResults, bench: Option<&BenchResults>) -> String {
    let ov = overhead_map(bench);
    let mut h = String::new();
    h.push_str(&isolation_matrix_html(audit));
    h.push_str(&noninterference_html(audit));
    h.push_str(&footprint_html(audit));
    h.push_str(&contrast_html(audit, &ov));
    h
}

/// Every audit section as Markdown.
pub fn audit_markdown(audit: &AuditResults, bench: Option<&BenchResults>) -> String {
    let ov = overhead_map(bench);
    [
        isolation_matrix_markdown(audit),
        noninterference_markdown(audit),
        footprint_markdown(audit),
        contrast_markdown(audit, &ov),
    ]
    .iter()
    .filter(|s| !s.is_empty())
    .cloned()
    .collect::<Vec<_>>()
    .join("\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use karton_audit::results::{DefaultConfig, Outcome};
    use serde_json::json;

    fn sample() -> AuditResults {
        serde_json::from_value(json!({
            "schema": "karton.audit/v1",
            "profile": "quick", "started_unix": 0, "duration_s": 1.0,
            "machine": {"kernel": "k", "cpus": 2, "memory_kib": 1, "cgroup_layout": "v2", "lockdown": "none", "karton_version": "0"},
            "isolation": [
                {"id": "pid.signal_host", "namespace": "pid", "probe": "signal a host process", "protection": "pid namespace", "method": "m",
                 "without": {"verdict": "leaked", "evidence": "kill(1, SIGTERM) <ok>", "config": "a", "elapsed_ms": 1.0},
                 "with": {"verdict": "contained", "evidence": "ESRCH", "config": "b", "elapsed_ms": 1.0},
                 "default_config": null, "demonstrated": true},
                {"id": "kernel.dmesg", "namespace": "none", "probe": "read the kernel log", "protection": "capabilities", "method": "m",
                 "without": {"verdict": "leaked", "evidence": "x", "config": "a", "elapsed_ms": 1.0},
                 "with": {"verdict": "contained", "evidence": "y", "config": "b", "elapsed_ms": 1.0},
                 "default_config": {"applies_mechanism": true, "outcome": {"verdict": "contained", "evidence": "y", "config": "b", "elapsed_ms": 1.0}},
                 "demonstrated": true}
            ],
            "noninterference": {"method": "m", "skipped": [], "limits": {}, "ceilings": {}, "victim_seconds": 1.0, "interval_ms": 100, "repetitions": 1, "rows": [
                {"stressor": "cpu", "limited": false, "victim": "primes", "victim_unit": "u", "baseline": 100.0, "stressed": 50.0,
                 "degradation_pct": {"value": 50.0, "ci_low": 40.0, "ci_high": 60.0}, "baseline_samples": 1, "stressed_samples": 1, "stressor_progress": 3.0, "stressor_unit": "u", "stressor_end": "stopped"},
                {"stressor": "cpu", "limited": true, "victim": "primes", "victim_unit": "u", "baseline": 100.0, "stressed": 98.0,
                 "degradation_pct": {"value": 2.0, "ci_low": -3.0, "ci_high": 6.0}, "baseline_samples": 1, "stressed_samples": 1, "stressor_progress": 1.0, "stressor_unit": "u", "stressor_end": "stopped"}
            ]},
            "footprint": null,
            "notes": ["a note"]
        }))
        .unwrap()
    }

    #[test]
    fn default_config_note_is_shown() {
        let mut a = sample();
        a.isolation[1].default_config = Some(DefaultConfig {
            applies_mechanism: false,
            note: Some("runc-compatible default, not contained".into()),
            outcome: Outcome {
                verdict: Verdict::Leaked,
                evidence: "found".into(),
                config: "d".into(),
                elapsed_ms: 1.0,
            },
        });
        assert!(isolation_matrix_markdown(&a)
            .contains("| no | **leaked** (runc-compatible default, not contained) |"));
        assert!(isolation_matrix_html(&a).contains("<b>runc-compatible default, not contained</b>"));
    }

    #[test]
    fn matrix_escapes_and_shows_verdicts() {
        let h = isolation_matrix_html(&sample());
        assert!(h.contains("&lt;ok&gt;"));
        assert!(h.contains("leaked") && h.contains("contained"));
        assert!(h.contains("default config applies"));
        let m = isolation_matrix_markdown(&sample());
        assert!(m.contains("| pid | `pid.signal_host`"));
        assert!(m.contains("| `kernel.dmesg` | capabilities | yes | **contained** |"));
    }

    #[test]
    fn noninterference_table_and_chart() {
        let h = noninterference_html(&sample());
        assert!(h.contains("<svg") && h.contains("</svg>"));
        assert!(h.contains("<b>50.0</b> [40.0, 60.0]"));
        assert!(noninterference_markdown(&sample()).contains("| cpu | with limits | primes |"));
    }

    /// A bench result whose series have rows of these (configuration, median ratio).
    fn bench_with_ratios(series: &[&[(&str, f64)]]) -> BenchResults {
        use karton_bench::results::{Machine, Method, Ratio, Row, RowStatus, Series};
        let row = |(config, median): (&str, f64)| Row {
            config: config.into(),
            status: RowStatus::Ok,
            reason: None,
            samples: vec![],
            summary: None,
            ratio: Some(Ratio { baseline: "bare".into(), pairs: 1, median, ci_low: median, ci_high: median }),
            failures: 0,
        };
        BenchResults {
            schema: karton_bench::results::SCHEMA.into(),
            karton_version: "0".into(),
            profile: "quick".into(),
            started_at: String::new(),
            finished_at: None,
            complete: true,
            interrupted: false,
            machine: Machine::default(),
            method: Method {
                warmups: 0,
                min_rounds: 0,
                max_rounds: 0,
                target_ci_pct: 0.0,
                confidence: 0.95,
                bootstrap_resamples: 0,
                seed: 0,
                interleaving: String::new(),
                outliers: String::new(),
                baseline: "bare".into(),
            },
            configurations: vec![],
            series: series
                .iter()
                .enumerate()
                .map(|(i, rows)| Series {
                    id: format!("w{i}/time"),
                    workload: format!("w{i}"),
                    metric: "time".into(),
                    unit: "s".into(),
                    higher_is_better: false,
                    description: String::new(),
                    args: vec![],
                    baseline: Some("bare".into()),
                    rounds: 1,
                    converged: true,
                    rows: rows.iter().copied().map(row).collect(),
                })
                .collect(),
            ns_create: vec![],
            density: vec![],
            instrumented: None,
            apps: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn contrast_uses_bench_ratios() {
        let bench = bench_with_ratios(&[&[("+pid", 1.02), ("mnt", 1.10)], &[("+pid", 1.06), ("bare", 1.0)]]);
        let ov = overhead_from_bench(&bench);
        assert!((ov["pid"].ratio - 1.04).abs() < 1e-9);
        assert_eq!(ov["mnt"].series, 1);
        let h = audit_html(&sample(), Some(&bench));
        assert!(h.contains("+4.0 %"));
        assert!(h.contains("<circle"));
        let m = audit_markdown(&sample(), None);
        assert!(m.contains("| pid | 1 / 1 | not measured |"));
    }
}
