//! Hand-written SVG charts: horizontal bars with CI whiskers, grouped line plots, log2
//! histograms. Every chart is one self-contained `<svg>` element.

use std::fmt::Write as _;

/// Escapes text for XML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// One bar: label, value, optional CI, and whether it is highlighted.
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub ci: Option<(f64, f64)>,
    pub note: String,
    pub highlight: bool,
}

fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

/// 1, 2, 2.5 or 5 times a power of ten, ≥ v.
fn nice_step(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}", v)
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        let s = format!("{v:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s.is_empty() || s == "-" {
            "0".into()
        } else {
            s.to_string()
        }
    }
}

/// Horizontal bars with CI whiskers; `reference` draws a dashed vertical line (e.g. ratio 1).
pub fn hbars(title: &str, unit: &str, bars: &[Bar], reference: Option<f64>) -> String {
    let row_h = 20.0;
    let left = 150.0;
    let right = 170.0;
    let width = 760.0;
    let top = 34.0;
    let plot_w = width - left - right;
    let height = top + row_h * bars.len().max(1) as f64 + 34.0;
    let hi = bars
        .iter()
        .map(|b| b.ci.map(|c| c.1).unwrap_or(b.value).max(b.value))
        .fold(reference.unwrap_or(0.0), f64::max);
    let lo =
        bars.iter().map(|b| b.ci.map(|c| c.0).unwrap_or(b.value).min(b.value)).fold(f64::INFINITY, f64::min);
    // Ratios cluster near 1: zoom the axis onto the data when a reference line is drawn.
    let lo0 = if reference.is_some() && lo.is_finite() && lo > 0.0 {
        (lo.min(reference.unwrap_or(lo)) * 0.97).max(0.0)
    } else {
        0.0
    };
    let hi0 = if reference.is_some() { hi * 1.02 } else { nice_max(hi) };
    let step = nice_step(((hi0 - lo0) / 4.0).max(1e-9));
    let x0 = (lo0 / step).floor() * step;
    let xmax = ((hi0 / step).ceil() * step).max(x0 + step);
    let ticks = (((xmax - x0) / step).round() as usize).clamp(1, 12);
    let x = |v: f64| left + (v - x0) / (xmax - x0) * plot_w;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif" font-size="12" role="img"><title>{}</title>"#,
        esc(title)
    );
    let _ = write!(s, r#"<text x="8" y="18" font-size="14" font-weight="bold">{}</text>"#, esc(title));
    for i in 0..=ticks {
        let v = x0 + step * i as f64;
        let xx = x(v);
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
            height - 28.0,
            height - 14.0,
            fmt_num(v)
        );
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
        width - 8.0,
        height - 2.0,
        esc(unit)
    );
    for (i, b) in bars.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let color = if b.highlight { "#c0504d" } else { "#4f81bd" };
        let w = (x(b.value) - x(x0)).max(0.5);
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left - 6.0,
            y + 14.0,
            esc(&b.label)
        );
        let _ = write!(
            s,
            r##"<rect x="{left}" y="{:.1}" width="{w:.1}" height="{:.1}" fill="{color}"><title>{}: {}</title></rect>"##,
            y + 3.0,
            row_h - 6.0,
            esc(&b.label),
            fmt_num(b.value)
        );
        if let Some((l, h)) = b.ci {
            let (xl, xh, ym) = (x(l), x(h), y + row_h / 2.0);
            let _ = write!(
                s,
                r##"<line x1="{xl:.1}" y1="{ym:.1}" x2="{xh:.1}" y2="{ym:.1}" stroke="#222"/><line x1="{xl:.1}" y1="{:.1}" x2="{xl:.1}" y2="{:.1}" stroke="#222"/><line x1="{xh:.1}" y1="{:.1}" x2="{xh:.1}" y2="{:.1}" stroke="#222"/>"##,
                ym - 5.0,
                ym + 5.0,
                ym - 5.0,
                ym + 5.0
            );
        }
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" fill="#333">{}</text>"##,
            width - right + 8.0,
            y + 14.0,
            esc(&b.note)
        );
    }
    if let Some(r) = reference {
        let xr = x(r);
        let _ = write!(
            s,
            r##"<line x1="{xr:.1}" y1="{:.1}" x2="{xr:.1}" y2="{:.1}" stroke="#000" stroke-dasharray="4 3"/>"##,
            top - 4.0,
            height - 28.0
        );
    }
    s.push_str("</svg>");
    s
}

/// One line of a line plot.
#[derive(Debug, Clone)]
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

const PALETTE: &[&str] =
    &["#4f81bd", "#c0504d", "#9bbb59", "#8064a2", "#4bacc6", "#f79646", "#2c4d75", "#772c2a"];

/// Line plot with log2 x axis (worker counts) and a log10 or linear y axis.
pub fn lines(title: &str, xlabel: &str, ylabel: &str, series: &[Line], log_y: bool) -> String {
    let (width, height, left, right, top, bottom) = (760.0, 320.0, 70.0, 130.0, 34.0, 40.0);
    let pts: Vec<(f64, f64)> =
        series.iter().flat_map(|l| l.points.iter().copied()).filter(|p| p.1 > 0.0).collect();
    let xs_min = pts.iter().map(|p| p.0).fold(f64::INFINITY, f64::min).max(1.0);
    let xs_max = pts.iter().map(|p| p.0).fold(1.0, f64::max).max(xs_min * 2.0);
    let ymin_raw = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let ymax_raw = pts.iter().map(|p| p.1).fold(0.0, f64::max);
    let (ty, y0, y1) = if log_y && ymin_raw.is_finite() && ymin_raw > 0.0 {
        let a = ymin_raw.log10().floor();
        let b = ymax_raw.log10().ceil().max(a + 1.0);
        (true, a, b)
    } else {
        (false, 0.0, nice_max(ymax_raw))
    };
    let fy = |v: f64| if ty { v.max(1e-12).log10() } else { v };
    let px =
        |v: f64| left + (v.log2() - xs_min.log2()) / (xs_max.log2() - xs_min.log2()) * (width - left - right);
    let py = |v: f64| top + (1.0 - (fy(v) - y0) / (y1 - y0)) * (height - top - bottom);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" font-family="sans-serif" font-size="12" role="img"><title>{}</title><text x="8" y="18" font-size="14" font-weight="bold">{}</text>"#,
        esc(title),
        esc(title)
    );
    // y grid
    let ticks: Vec<f64> = if ty {
        (y0 as i32..=y1 as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..=4).map(|i| y1 * i as f64 / 4.0).collect()
    };
    for t in ticks {
        let yy = py(t);
        let _ = write!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            width - right,
            left - 4.0,
            yy + 4.0,
            fmt_num(t)
        );
    }
    let mut xv = xs_min;
    while xv <= xs_max * 1.0001 {
        let xx = px(xv);
        let _ = write!(
            s,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#eee"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#555">{}</text>"##,
            height - bottom,
            height - bottom + 14.0,
            xv
        );
        xv *= 2.0;
    }
    let _ = write!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#333">{}</text>"##,
        (left + width - right) / 2.0,
        height - 6.0,
        esc(xlabel)
    );
    let _ = write!(
        s,
        r##"<text x="12" y="{:.1}" fill="#333" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text>"##,
        height / 2.0,
        height / 2.0,
        esc(ylabel)
    );
    for (i, l) in series.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        let path: Vec<String> = l
            .points
            .iter()
            .filter(|p| p.1 > 0.0)
            .map(|(a, b)| format!("{:.1},{:.1}", px(*a), py(*b)))
            .collect();
        if path.is_empty() {
            continue;
        }
        let _ = write!(
            s,
            r##"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"##,
            path.join(" ")
        );
        for (a, b) in l.points.iter().filter(|p| p.1 > 0.0) {
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{c}"><title>{} {a}: {}</title></circle>"##,
                px(*a),
                py(*b),
                esc(&l.label),
                fmt_num(*b)
            );
        }
        let ly = top + 14.0 * i as f64;
        let _ = write!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{c}"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            width - right + 10.0,
            ly,
            width - right + 24.0,
            ly + 9.0,
            esc(&l.label)
        );
    }
    s.push_str("</svg>");
    s
}

/// A log2 histogram: bucket i holds values in [2^i, 2^(i+1)) ns.
pub fn log2_hist(title: &str, buckets: &[u64]) -> String {
    let first = buckets.iter().position(|c| *c > 0).unwrap_or(0);
    let last = buckets.iter().rposition(|c| *c > 0).unwrap_or(0);
    let bars: Vec<Bar> = (first..=last)
        .map(|i| Bar {
            label: format!("{} – {}", human_ns(1u64 << i.min(62)), human_ns(1u64 << (i + 1).min(63))),
            value: buckets.get(i).copied().unwrap_or(0) as f64,
            ci: None,
            note: buckets.get(i).copied().unwrap_or(0).to_string(),
            highlight: false,
        })
        .collect();
    hbars(title, "count", &bars, None)
}

pub fn human_ns(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{}s", ns / 1_000_000_000)
    } else if ns >= 1_000_000 {
        format!("{}ms", ns / 1_000_000)
    } else if ns >= 1000 {
        format!("{}µs", ns / 1000)
    } else {
        format!("{ns}ns")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_single_svg_elements_with_escaped_text() {
        let b = vec![Bar {
            label: "a<b".into(),
            value: 1.02,
            ci: Some((1.0, 1.05)),
            note: "x".into(),
            highlight: true,
        }];
        let s = hbars("t&t", "ratio", &b, Some(1.0));
        assert_eq!(s.matches("<svg").count(), 1);
        assert!(s.contains("a&lt;b") && s.contains("t&amp;t"));
        let l = lines(
            "l",
            "workers",
            "µs",
            &[Line { label: "uts".into(), points: vec![(1.0, 5.0), (2.0, 6.0), (8.0, 20.0)] }],
            true,
        );
        assert_eq!(l.matches("<svg").count(), 1);
        assert!(l.contains("polyline"));
        let h = log2_hist("h", &[0, 0, 3, 5, 0, 1]);
        assert_eq!(h.matches("<rect").count(), 4);
    }

    #[test]
    fn nice_axis_bounds() {
        assert_eq!(nice_max(87.0), 100.0);
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(1.1), 1.2);
        assert_eq!(nice_step(0.07), 0.1);
        assert_eq!(nice_step(0.22), 0.25);
        assert_eq!(fmt_num(1.250), "1.25");
        assert_eq!(fmt_num(0.0), "0");
    }
}
