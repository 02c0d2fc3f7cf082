//! `karton bench compare A B`: what changed between two results files, with significance
//! (Mann-Whitney U on the raw samples and overlap of the medians' bootstrap CIs).

use serde::Serialize;

use crate::results::{BenchResults, RowStatus, Summary};
use crate::stats;

/// Significance level of the Mann-Whitney test.
pub const ALPHA: f64 = 0.05;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    pub series: String,
    pub config: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub median_a: f64,
    pub median_b: f64,
    /// (B − A) / A in percent.
    pub change_pct: f64,
    pub ci_overlap: bool,
    pub p_value: f64,
    /// p < ALPHA and the CIs do not overlap.
    pub significant: bool,
    /// "faster", "slower" or "same".
    pub verdict: String,
}

/// Every (series, configuration) measured in both files, in A's order.
pub fn compare(a: &BenchResults, b: &BenchResults) -> Vec<Change> {
    let mut out = Vec::new();
    for sa in &a.series {
        let Some(sb) = b.series.iter().find(|s| s.id == sa.id) else { continue };
        for ra in sa.rows.iter().filter(|r| r.status == RowStatus::Ok) {
            let Some(rb) = sb.rows.iter().find(|r| r.config == ra.config && r.status == RowStatus::Ok) else {
                continue;
            };
            let (Some(ma), Some(mb)) = (&ra.summary, &rb.summary) else { continue };
            let xa: Vec<f64> = ra.samples.iter().map(|s| s.value).collect();
            let xb: Vec<f64> = rb.samples.iter().map(|s| s.value).collect();
            out.push(change(&sa.id, &ra.config, &sa.unit, sa.higher_is_better, ma, mb, &xa, &xb));
        }
    }
    for ca in &a.ns_create {
        let Some(cb) = b.ns_create.iter().find(|c| c.ns == ca.ns && c.workers == ca.workers) else {
            continue;
        };
        if let (Some(ma), Some(mb)) = (&ca.unshare_us, &cb.unshare_us) {
            // Pooled raw samples are not kept for ns-create: CI overlap alone decides.
            let mut c = change(
                &format!("ns-create/{}/unshare", ca.ns),
                &format!("workers={}", ca.workers),
                "us",
                false,
                ma,
                mb,
                &[],
                &[],
            );
            c.significant = !c.ci_overlap;
            c.verdict = verdict(c.significant, c.change_pct, false);
            out.push(c);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn change(
    series: &str,
    config: &str,
    unit: &str,
    hib: bool,
    ma: &Summary,
    mb: &Summary,
    xa: &[f64],
    xb: &[f64],
) -> Change {
    let change_pct = if ma.median != 0.0 { (mb.median - ma.median) / ma.median * 100.0 } else { 0.0 };
    let ci_overlap = stats::overlap((ma.ci_low, ma.ci_high), (mb.ci_low, mb.ci_high));
    let (_, p) = stats::mann_whitney(xa, xb);
    let significant = p < ALPHA && !ci_overlap;
    Change {
        series: series.into(),
        config: config.into(),
        unit: unit.into(),
        higher_is_better: hib,
        median_a: ma.median,
        median_b: mb.median,
        change_pct,
        ci_overlap,
        p_value: p,
        significant,
        verdict: verdict(significant, change_pct, hib),
    }
}

fn verdict(significant: bool, change_pct: f64, hib: bool) -> String {
    if !significant {
        "same".into()
    } else if (change_pct > 0.0) == hib {
        "faster".into()
    } else {
        "slower".into()
    }
}

/// A plain-text table of the changes.
pub fn to_text(changes: &[Change]) -> String {
    let mut s = format!(
        "{:<34} {:<16} {:>12} {:>12} {:>8} {:>8}  {}\n",
        "series", "config", "A median", "B median", "change", "p", "verdict"
    );
    for c in changes {
        s.push_str(&format!(
            "{:<34} {:<16} {:>12} {:>12} {:>+7.2}% {:>8.4}  {}{}\n",
            c.series,
            c.config,
            crate::results::fmt_value(c.median_a),
            crate::results::fmt_value(c.median_b),
            c.change_pct,
            c.p_value,
            c.verdict,
            if c.ci_overlap { "" } else { " (CIs disjoint)" }
        ));
    }
    let n_sig = changes.iter().filter(|c| c.significant).count();
    s.push_str(&format!(
        "{} comparisons, {} significant (Mann-Whitney p < {ALPHA} and disjoint 95% CIs)\n",
        changes.len(),
        n_sig
    ));
    s
}
