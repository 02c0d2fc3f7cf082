//! The benchmark's statistics: sample summaries and pairwise ratios, built on karton-stats
//! (shared with karton-audit).

pub use karton_stats::*;

use crate::results::{Ratio, Summary};

/// Summary of a sample; None when it is empty.
pub fn summarize(xs: &[f64], confidence: f64, resamples: u32, seed: u64) -> Option<Summary> {
    let v = sorted(xs);
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let med = median(&v);
    let (lo, hi) = bootstrap_median_ci(&v, confidence, resamples, seed);
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    Some(Summary {
        n: v.len() as u32,
        median: med,
        ci_low: lo,
        ci_high: hi,
        ci_pct: ci_pct(med, lo, hi),
        mean,
        stddev: var.sqrt(),
        min: v[0],
        max: v[v.len() - 1],
        outliers: outliers(xs),
    })
}

/// Ratios of `values` to `baseline`, pair by pair on equal round numbers. For a
/// higher-is-better metric the ratio is inverted so that > 1 always means "costs more".
pub fn paired_ratios(values: &[(u32, f64)], baseline: &[(u32, f64)], higher_is_better: bool) -> Vec<f64> {
    values
        .iter()
        .filter_map(|(r, v)| {
            let b = baseline.iter().find(|(rb, _)| rb == r)?.1;
            let q = if higher_is_better { b / v } else { v / b };
            q.is_finite().then_some(q)
        })
        .collect()
}

/// Median ratio with its bootstrap CI.
pub fn ratio_summary(
    ratios: &[f64],
    baseline: &str,
    confidence: f64,
    resamples: u32,
    seed: u64,
) -> Option<Ratio> {
    if ratios.is_empty() {
        return None;
    }
    let (lo, hi) = bootstrap_median_ci(ratios, confidence, resamples, seed);
    Some(Ratio {
        baseline: baseline.to_string(),
        pairs: ratios.len() as u32,
        median: median(ratios),
        ci_low: lo,
        ci_high: hi,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn summary_known_values() {
        let s = summarize(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0], 0.95, 500, 1).unwrap();
        assert_eq!(s.n, 8);
        assert_eq!(s.median, 4.5);
        assert_eq!(s.mean, 5.0);
        assert!(close(s.stddev, (32.0f64 / 7.0).sqrt(), 1e-12));
        assert_eq!((s.min, s.max), (2.0, 9.0));
        assert!(s.ci_low <= 4.5 && s.ci_high >= 4.5);
        assert!(summarize(&[], 0.95, 10, 1).is_none());
    }

    #[test]
    fn ratios_pair_by_round_and_invert_throughput() {
        let base = [(0, 10.0), (1, 20.0), (2, 10.0)];
        let vals = [(0, 11.0), (1, 22.0), (3, 99.0)];
        assert_eq!(paired_ratios(&vals, &base, false), vec![1.1, 1.1]);
        let r = paired_ratios(&vals, &base, true);
        assert!(close(r[0], 10.0 / 11.0, 1e-12));
        let s = ratio_summary(&[1.0, 1.0, 1.0], "bare", 0.95, 100, 1).unwrap();
        assert_eq!((s.median, s.ci_low, s.ci_high, s.pairs), (1.0, 1.0, 1.0, 3));
    }
}
