//! Medians, degradation and bootstrap confidence intervals (deterministic PRNG: the same
//! samples give the same interval).

/// Median (NaN for no samples).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// (1 - stressed/baseline) × 100.
pub fn degradation(baseline: f64, stressed: f64) -> f64 {
    if baseline <= 0.0 || !baseline.is_finite() {
        return f64::NAN;
    }
    (1.0 - stressed / baseline) * 100.0
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn index(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn resample(v: &[f64], r: &mut XorShift) -> Vec<f64> {
    (0..v.len()).map(|_| v[r.index(v.len())]).collect()
}

/// 95 % percentile-bootstrap interval of the degradation of medians, resampling both sides.
pub fn bootstrap_degradation(baseline: &[f64], stressed: &[f64], rounds: usize) -> (f64, f64) {
    if baseline.is_empty() || stressed.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut r = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut d: Vec<f64> = (0..rounds.max(10))
        .map(|_| degradation(median(&resample(baseline, &mut r)), median(&resample(stressed, &mut r))))
        .filter(|x| x.is_finite())
        .collect();
    if d.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    d.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| d[((p * (d.len() - 1) as f64).round() as usize).min(d.len() - 1)];
    (q(0.025), q(0.975))
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
