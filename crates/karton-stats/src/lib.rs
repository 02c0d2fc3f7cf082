//! karton's statistics, one implementation for the benchmark and the audit: medians,
//! quantiles (type 7: linear interpolation between order statistics, R's and numpy's
//! default), percentile-bootstrap confidence intervals with a seeded RNG (the same samples
//! and seed give the same interval), MAD outliers and the Mann-Whitney U test.
//! Dependency-free.

/// SplitMix64: small, fast, good enough for resampling; seeded so figures are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n (n > 0), without modulo bias worth caring about for n ≪ 2^64.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
    /// A bootstrap resample of `v`: `v.len()` draws with replacement.
    pub fn resample(&mut self, v: &[f64]) -> Vec<f64> {
        (0..v.len()).map(|_| v[self.below(v.len())]).collect()
    }
}

/// The finite values of `xs`, sorted.
pub fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// Median of already sorted values (NaN when empty).
fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median (NaN when empty; non-finite values are ignored).
pub fn median(xs: &[f64]) -> f64 {
    median_sorted(&sorted(xs))
}

/// Quantile q ∈ [0,1] with linear interpolation between order statistics (type 7).
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let v = sorted(xs);
    quantile_sorted(&v, q)
}

/// [`quantile`] of values already [`sorted`].
pub fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let h = (v.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

/// Percentile-bootstrap confidence interval of the median.
pub fn bootstrap_median_ci(xs: &[f64], confidence: f64, resamples: u32, seed: u64) -> (f64, f64) {
    let v = sorted(xs);
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    if n == 1 {
        return (v[0], v[0]);
    }
    let mut rng = Rng::new(seed);
    let mut meds = Vec::with_capacity(resamples as usize);
    let mut buf = vec![0.0; n];
    for _ in 0..resamples.max(1) {
        for b in buf.iter_mut() {
            *b = v[rng.below(n)];
        }
        buf.sort_by(|a, b| a.total_cmp(b));
        meds.push(median_sorted(&buf));
    }
    meds.sort_by(|a, b| a.total_cmp(b));
    let alpha = (1.0 - confidence) / 2.0;
    (quantile_sorted(&meds, alpha), quantile_sorted(&meds, 1.0 - alpha))
}

/// Median absolute deviation (unscaled).
pub fn mad(xs: &[f64]) -> f64 {
    let m = median(xs);
    let dev: Vec<f64> = xs.iter().filter(|x| x.is_finite()).map(|x| (x - m).abs()).collect();
    median(&dev)
}

/// Indices of outliers by the modified z-score (Iglewicz & Hoaglin): |0.6745 (x − median) / MAD| > 3.5.
pub fn outliers(xs: &[f64]) -> Vec<u32> {
    let m = median(xs);
    let d = mad(xs);
    if d.is_nan() || d <= 0.0 {
        return Vec::new();
    }
    xs.iter()
        .enumerate()
        .filter(|(_, x)| (0.6745 * (*x - m) / d).abs() > 3.5)
        .map(|(i, _)| i as u32)
        .collect()
}

/// Half-width of [lo, hi] relative to `center`, in percent (the larger side).
pub fn ci_pct(center: f64, lo: f64, hi: f64) -> f64 {
    if center == 0.0 || !center.is_finite() {
        // Undefined relative width: 0 for a point interval, else "not converged" (100%).
        return if lo == hi { 0.0 } else { 100.0 };
    }
    ((center - lo).abs().max((hi - center).abs()) / center.abs()) * 100.0
}

/// Two-sided Mann-Whitney U test, normal approximation with tie and continuity
/// correction. Returns (U of `a`, p-value). p = 1 when either sample is empty.
pub fn mann_whitney(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n1, n2) = (a.len(), b.len());
    if n1 == 0 || n2 == 0 {
        return (f64::NAN, 1.0);
    }
    let mut all: Vec<(f64, usize)> = a.iter().map(|x| (*x, 0)).chain(b.iter().map(|x| (*x, 1))).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let n = all.len();
    let mut ranks = vec![0.0; n];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for rank in ranks.iter_mut().take(j + 1).skip(i) {
            *rank = r;
        }
        let t = (j - i + 1) as f64;
        tie_term += t * t * t - t;
        i = j + 1;
    }
    let r1: f64 = all.iter().zip(&ranks).filter(|((_, g), _)| *g == 0).map(|(_, r)| r).sum();
    let (n1f, n2f, nf) = (n1 as f64, n2 as f64, n as f64);
    let u1 = r1 - n1f * (n1f + 1.0) / 2.0;
    let mu = n1f * n2f / 2.0;
    let sigma = (n1f * n2f / 12.0 * ((nf + 1.0) - tie_term / (nf * (nf - 1.0)))).sqrt();
    if sigma.is_nan() || sigma <= 0.0 {
        return (u1, 1.0);
    }
    let z = ((u1 - mu).abs() - 0.5).max(0.0) / sigma;
    (u1, (2.0 * normal_sf(z)).min(1.0))
}

/// Survival function of the standard normal, 1 − Φ(z).
pub fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes erfcc, |error| < 1.2e-7).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Whether two intervals overlap.
pub fn overlap(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn median_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0, 5.0, 4.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        assert_eq!(median(&[7.0]), 7.0);
    }

    #[test]
    fn quantiles_type7() {
        let xs: Vec<f64> = (1..=5).map(f64::from).collect();
        assert_eq!(quantile(&xs, 0.0), 1.0);
        assert_eq!(quantile(&xs, 1.0), 5.0);
        assert_eq!(quantile(&xs, 0.25), 2.0);
        assert!(close(quantile(&xs, 0.1), 1.4, 1e-12));
    }

    #[test]
    fn bootstrap_of_constant_sample_is_a_point() {
        let xs = vec![42.0; 20];
        assert_eq!(bootstrap_median_ci(&xs, 0.95, 1000, 1), (42.0, 42.0));
    }

    #[test]
    fn bootstrap_ci_brackets_the_median_and_is_reproducible() {
        let xs: Vec<f64> = (1..=101).map(f64::from).collect();
        let (lo, hi) = bootstrap_median_ci(&xs, 0.95, 2000, 7);
        assert!(lo <= 51.0 && 51.0 <= hi, "{lo} {hi}");
        // For n = 101 uniform ranks the 95% CI of the median spans about ±10 ranks.
        assert!(lo >= 38.0 && hi <= 64.0, "{lo} {hi}");
        assert_eq!((lo, hi), bootstrap_median_ci(&xs, 0.95, 2000, 7));
    }

    #[test]
    fn bootstrap_ci_narrows_with_more_samples() {
        let mut rng = Rng::new(3);
        let small: Vec<f64> = (0..10).map(|_| 100.0 + (rng.below(1000) as f64) / 100.0).collect();
        let big: Vec<f64> = (0..1000).map(|_| 100.0 + (rng.below(1000) as f64) / 100.0).collect();
        let w = |x: &[f64]| {
            let (l, h) = bootstrap_median_ci(x, 0.95, 1000, 1);
            h - l
        };
        assert!(w(&big) < w(&small));
    }

    #[test]
    fn mad_and_outliers() {
        let xs = [10.0, 10.0, 11.0, 9.0, 10.0, 100.0];
        assert_eq!(mad(&xs), 0.5);
        assert_eq!(outliers(&xs), vec![5]);
        assert!(outliers(&[1.0, 2.0, 3.0, 4.0, 5.0]).is_empty());
        assert!(outliers(&[5.0; 8]).is_empty());
    }

    #[test]
    fn ci_pct_is_relative_half_width() {
        assert!(close(ci_pct(100.0, 98.0, 101.0), 2.0, 1e-12));
        assert_eq!(ci_pct(0.0, -1.0, 1.0), 100.0);
    }

    #[test]
    fn mann_whitney_known_answers() {
        // scipy.stats.mannwhitneyu([1..5], [6..10], method="asymptotic") → U=0, p=0.01219
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [6.0, 7.0, 8.0, 9.0, 10.0];
        let (u, p) = mann_whitney(&a, &b);
        assert_eq!(u, 0.0);
        assert!(close(p, 0.01219, 2e-4), "{p}");
        // Identical samples: no evidence of a difference.
        let (_, p) = mann_whitney(&a, &a);
        assert!(p > 0.9, "{p}");
        // With ties: scipy gives U=4.5? check symmetric property U1 + U2 = n1 n2.
        let c = [1.0, 2.0, 2.0, 3.0];
        let d = [2.0, 3.0, 3.0, 4.0];
        let (u1, p1) = mann_whitney(&c, &d);
        let (u2, p2) = mann_whitney(&d, &c);
        assert!(close(u1 + u2, 16.0, 1e-12));
        assert!(close(p1, p2, 1e-12));
    }

    #[test]
    fn erfc_known_values() {
        assert!(close(erfc(0.0), 1.0, 1e-7));
        assert!(close(erfc(1.0), 0.157_299_207, 1e-6));
        assert!(close(erfc(-1.0), 1.842_700_793, 1e-6));
        assert!(close(normal_sf(1.959_964), 0.025, 1e-6));
    }

    #[test]
    fn intervals_overlap() {
        assert!(overlap((1.0, 2.0), (2.0, 3.0)));
        assert!(!overlap((1.0, 2.0), (2.1, 3.0)));
    }
}
