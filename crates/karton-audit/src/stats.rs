//! Degradation and its bootstrap confidence interval, on karton-stats (shared with
//! karton-bench: type-7 quantiles, seeded SplitMix64 resampling).

pub use karton_stats::median;

/// (1 - stressed/baseline) × 100.
pub fn degradation(baseline: f64, stressed: f64) -> f64 {
    if baseline <= 0.0 || !baseline.is_finite() {
        return f64::NAN;
    }
    (1.0 - stressed / baseline) * 100.0
}

/// Fixed seed: the same samples give the same interval.
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// 95 % percentile-bootstrap interval of the degradation of medians, resampling both sides.
pub fn bootstrap_degradation(baseline: &[f64], stressed: &[f64], rounds: usize) -> (f64, f64) {
    if baseline.is_empty() || stressed.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = karton_stats::Rng::new(SEED);
    let mut d: Vec<f64> = (0..rounds.max(10))
        .map(|_| degradation(median(&rng.resample(baseline)), median(&rng.resample(stressed))))
        .filter(|x| x.is_finite())
        .collect();
    if d.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    d.sort_by(|a, b| a.total_cmp(b));
    (karton_stats::quantile_sorted(&d, 0.025), karton_stats::quantile_sorted(&d, 0.975))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn median_and_degradation() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(degradation(100.0, 75.0), 25.0);
        assert!(degradation(0.0, 1.0).is_nan());
    }

    #[test]
    fn bootstrap_brackets_the_estimate() {
        let b: Vec<f64> = (0..40).map(|i| 100.0 + (i % 5) as f64).collect();
        let s: Vec<f64> = (0..40).map(|i| 50.0 + (i % 7) as f64).collect();
        let (lo, hi) = bootstrap_degradation(&b, &s, 500);
        let d = degradation(median(&b), median(&s));
        assert!(lo <= d && d <= hi, "{lo} <= {d} <= {hi}");
        assert!(lo > 40.0 && hi < 55.0);
    }
}
