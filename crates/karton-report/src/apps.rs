//! The application part of the report: key findings written from the results (never
//! hard-coded), the application table with published figures beside karton's, the eBPF
//! breakdown per row, and the cost-against-isolation chart.

use karton_bench::results::{fmt_value, AppBreakdown, BenchResults, ConfigInfo, Row, RowStatus, Series};

use crate::svg::{self, Bar};

/// The series each application row is summarized by: (series id, its p99 series or "" for
/// none, label). Units differ: req/s, tx/s (higher is better), s (the build: lower is).
const PRIMARY: &[(&str, &str, &str)] = &[
    ("redis-p1/get-rps", "redis-p1/get-p99", "redis GET, pipeline 1"),
    ("redis-p1/set-rps", "redis-p1/set-p99", "redis SET, pipeline 1"),
    ("redis-p16/get-rps", "redis-p16/get-p99", "redis GET, pipeline 16"),
    ("redis-p16/set-rps", "redis-p16/set-p99", "redis SET, pipeline 16"),
    ("nginx-1k/rps", "nginx-1k/p99", "nginx 1 KiB"),
    ("nginx-1m/rps", "nginx-1m/p99", "nginx 1 MiB"),
    ("pg-select/tps", "pg-select/p99", "postgres select-only"),
    ("pg-tpcb/tps", "pg-tpcb/p99", "postgres TPC-B-like"),
    ("build-c/time", "", "C build, make -j2"),
];

/// How a cost reads in a sentence: "serves 12.0% fewer requests per second" (throughput)
/// or "takes 12.0% longer" (time).
fn cost_phrase(s: &Series, ratio: f64) -> String {
    if s.higher_is_better {
        let what = match s.unit.as_str() {
            "tx/s" => "transactions",
            _ => "requests",
        };
        format!("serves {:.1}% fewer {what} per second", (1.0 - 1.0 / ratio) * 100.0)
    } else {
        format!("takes {:.1}% longer", (ratio - 1.0) * 100.0)
    }
}

/// A published figure placed beside karton's: never matched, only shown.
struct Published {
    /// Which configurations of ours it sits beside.
    configs: &'static [&'static str],
    apps: &'static [&'static str],
    text: &'static str,
}

const PUBLISHED: &[Published] = &[
    Published {
        configs: &["net-bridge-nat"],
        apps: &["redis"],
        text: "Felter et al. 2015 (IBM RC25482): Docker's NAT lowers Redis throughput and raises its latency against native; IBM x3650 M4, 2 × Xeon E5-2665, 10 GbE, client on another machine",
    },
    Published {
        configs: &["net-host"],
        apps: &["redis"],
        text: "Felter et al. 2015: Docker with --net=host is close to native for Redis; same hardware",
    },
    Published {
        configs: &["bare"],
        apps: &["redis", "nginx"],
        text: "VEE'20 (Anjali et al., Firecracker and gVisor): ping RTT native 146 µs, LXC 149 µs, gVisor 319 µs, Firecracker 371 µs; hardware as in the paper",
    },
];

fn published(series: &str, config: &str) -> String {
    let app = series.split('-').next().unwrap_or("");
    PUBLISHED
        .iter()
        .filter(|p| p.apps.contains(&app) && p.configs.contains(&config))
        .map(|p| p.text)
        .collect::<Vec<_>>()
        .join("; ")
}

fn series<'a>(r: &'a BenchResults, id: &str) -> Option<&'a Series> {
    r.series.iter().find(|s| s.id == id)
}

fn row<'a>(s: &'a Series, config: &str) -> Option<&'a Row> {
    s.rows.iter().find(|x| x.config == config && x.status == RowStatus::Ok)
}

fn config<'a>(r: &'a BenchResults, name: &str) -> Option<&'a ConfigInfo> {
    r.configurations.iter().find(|c| c.name == name)
}

/// Whether the results hold application rows.
pub fn has_apps(r: &BenchResults) -> bool {
    PRIMARY.iter().any(|(id, _, _)| series(r, id).is_some())
}

/// The application table: per application and configuration, throughput median [CI],
/// cost against bare [CI], p99, and the published figure beside it.
pub fn table(r: &BenchResults) -> Option<(String, Vec<String>, Vec<Vec<String>>)> {
    let mut rows = Vec::new();
    for (id, p99, label) in PRIMARY {
        let Some(s) = series(r, id) else { continue };
        for x in &s.rows {
            let cells = match (&x.summary, x.status) {
                (Some(m), RowStatus::Ok) => vec![
                    label.to_string(),
                    x.config.clone(),
                    format!(
                        "{} [{}, {}] {}",
                        fmt_value(m.median),
                        fmt_value(m.ci_low),
                        fmt_value(m.ci_high),
                        s.unit
                    ),
                    x.ratio
                        .as_ref()
                        .map(|q| format!("{:.3} [{:.3}, {:.3}]", q.median, q.ci_low, q.ci_high))
                        .unwrap_or_else(|| "baseline".into()),
                    series(r, p99)
                        .and_then(|p| row(p, &x.config))
                        .and_then(|p| p.summary.as_ref())
                        .map(|m| {
                            format!(
                                "{} [{}, {}]",
                                fmt_value(m.median),
                                fmt_value(m.ci_low),
                                fmt_value(m.ci_high)
                            )
                        })
                        .unwrap_or_else(|| "—".into()),
                    published(id, &x.config),
                ],
                _ => vec![
                    label.to_string(),
                    x.config.clone(),
                    format!("skipped: {}", x.reason.as_deref().unwrap_or("no samples")),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            };
            rows.push(cells);
        }
    }
    // A missing package: the skipped series say why and how to install it.
    for s in r.series.iter().filter(|s| s.metric == "skipped") {
        let why = s.rows.first().and_then(|x| x.reason.clone()).unwrap_or_default();
        rows.push(vec![
            s.workload.clone(),
            "all".into(),
            format!("skipped: {why}"),
            String::new(),
            String::new(),
            String::new(),
        ]);
    }
    (!rows.is_empty()).then(|| {
        (
            "applications: server in a karton container, client outside (median [95% CI]; cost = × bare, > 1 slower)"
                .to_string(),
            vec![
                "application".into(),
                "configuration".into(),
                "figure (req/s, tx/s; the build: s)".into(),
                "cost × bare".into(),
                "p99 ms".into(),
                "published (source, hardware)".into(),
            ],
            rows,
        )
    })
}

/// Per-request figures of one breakdown.
struct PerRequest {
    switches: f64,
    /// Mean latency (ns) of the server's writes/sends and of its epoll waits.
    send_ns: Option<f64>,
    epoll_ns: Option<f64>,
    runq_p50_ns: Option<u64>,
}

fn per_request(b: &AppBreakdown) -> PerRequest {
    let requests = b.requests.max(1.0);
    let mean = |names: &[&str]| {
        let (n, sum) = b
            .syscalls
            .iter()
            .filter(|s| names.contains(&s.name.as_str()))
            .fold((0u64, 0.0), |(n, sum), s| (n + s.count, sum + s.mean_ns * s.count as f64));
        (n > 0).then(|| sum / n as f64)
    };
    let total: u64 = b.runq_hist.iter().sum();
    let runq_p50_ns = (total > 0).then(|| {
        let mut acc = 0;
        let mut bucket = 0;
        for (i, c) in b.runq_hist.iter().enumerate() {
            acc += c;
            if acc * 2 >= total {
                bucket = i;
                break;
            }
        }
        1u64 << (bucket + 1)
    });
    PerRequest {
        switches: b.context_switches as f64 / requests,
        send_ns: mean(&["write", "writev", "sendto", "sendmsg", "sendfile"]),
        epoll_ns: mean(&["epoll_wait", "epoll_pwait", "epoll_pwait2"]),
        runq_p50_ns,
    }
}

/// The eBPF breakdown table: where each row's time goes, with the probe's own cost.
pub fn breakdown_table(r: &BenchResults) -> Option<(String, Vec<String>, Vec<Vec<String>>)> {
    if r.apps.is_empty() {
        return None;
    }
    let rows = r
        .apps
        .iter()
        .map(|b| {
            let cost = (b.with_probe / b.without_probe - 1.0) * 100.0;
            let calls: Vec<String> = b
                .syscalls
                .iter()
                .take(4)
                .map(|s| format!("{} {}× mean {} ns", s.name, s.count, fmt_value(s.mean_ns)))
                .collect();
            let total: u64 = b.runq_hist.iter().sum();
            let softirq = b
                .net_softirq_ns_per_request()
                .map(|ns| format!("{:.2}", ns / 1000.0))
                .unwrap_or_else(|| "—".into());
            vec![
                b.bench.clone(),
                b.config.clone(),
                calls.join("; "),
                b.context_switches.to_string(),
                format!("{total} waits"),
                softirq,
                format!(
                    "{} → {} {} ({:+.1}%)",
                    fmt_value(b.without_probe),
                    fmt_value(b.with_probe),
                    b.unit,
                    cost
                ),
            ]
        })
        .collect();
    Some((
        "eBPF breakdown of the server (one probed client run per row; softirq time is system-wide: every CPU, the client's packets as well as the server's; — where not measured)".into(),
        vec![
            "application".into(),
            "configuration".into(),
            "server syscalls (count, mean latency)".into(),
            "context switches".into(),
            "run-queue".into(),
            "NET_RX+NET_TX softirq µs per request".into(),
            "probe's own cost (without → with)".into(),
        ],
        rows,
    ))
}

/// What configuration `cfg` adds per request against bare, and the NET_RX/NET_TX softirq
/// part of it: "+0.35 µs per request (1 / the median throughput), of which +0.12 µs in
/// NET_RX/NET_TX softirq (1.10 µs per request against 0.98 µs bare, every CPU)". The time per
/// request is 1 / the row's median throughput; the softirq figures come from the rows' probed
/// runs. `None` for a metric that is not a throughput or when either probed run has no
/// softirq figures (files from before the softirq instrument).
fn softirq_share(r: &BenchResults, s: &Series, cfg: &str) -> Option<String> {
    if !s.higher_is_better {
        return None;
    }
    let median = |c: &str| row(s, c).and_then(|x| x.summary.as_ref()).map(|m| m.median).filter(|m| *m > 0.0);
    let (m_cfg, m_bare) = (median(cfg)?, median("bare")?);
    let bench = s.id.split('/').next().unwrap_or("");
    let per_req = |c: &str| {
        r.apps
            .iter()
            .find(|b| b.bench == bench && b.config == c)
            .and_then(AppBreakdown::net_softirq_ns_per_request)
    };
    let (si_cfg, si_bare) = (per_req(cfg)? / 1000.0, per_req("bare")? / 1000.0);
    let added_us = (1.0 / m_cfg - 1.0 / m_bare) * 1e6;
    Some(format!(
        "{added_us:+.2} µs per request (1 / the median throughput), of which {:+.2} µs in NET_RX/NET_TX softirq ({si_cfg:.2} µs per request against {si_bare:.2} µs bare, every CPU)",
        si_cfg - si_bare
    ))
}

/// The key findings: sentences computed from the results, each with its figure and CI.
pub fn key_findings(r: &BenchResults) -> Vec<String> {
    let mut out = Vec::new();
    let mut costs: Vec<(f64, String, &str, &str, &Row, &Series)> = Vec::new();
    for (id, _, label) in PRIMARY {
        let Some(s) = series(r, id) else { continue };
        for x in s.rows.iter().filter(|x| x.status == RowStatus::Ok) {
            if let Some(q) = &x.ratio {
                costs.push((q.median, x.config.clone(), label, id, x, s));
            }
        }
    }
    costs.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (k, (ratio, cfg, label, id, x, ser)) in costs.iter().take(3).enumerate() {
        let Some(q) = &x.ratio else { continue };
        let mut s = format!(
            "{} largest application cost: {label} under {cfg} {} than bare (× {:.3}, 95% CI [{:.3}, {:.3}], {} pairs)",
            ["The", "The second", "The third"][k],
            cost_phrase(ser, *ratio),
            q.median,
            q.ci_low,
            q.ci_high,
            q.pairs
        );
        if let Some(share) = softirq_share(r, ser, cfg) {
            s.push_str(&format!(": {share}"));
        }
        let bench = id.split('/').next().unwrap_or("");
        if let (Some(b), Some(base)) = (
            r.apps.iter().find(|b| b.bench == bench && b.config == *cfg),
            r.apps.iter().find(|b| b.bench == bench && b.config == "bare"),
        ) {
            let (pb, pa) = (per_request(b), per_request(base));
            if let (Some(sb), Some(sa)) = (pb.send_ns, pa.send_ns) {
                s.push_str(&format!(
                    "; eBPF: the server's mean send/write takes {} ns against {} ns bare, {:.2} against {:.2} context switches per request",
                    fmt_value(sb),
                    fmt_value(sa),
                    pb.switches,
                    pa.switches
                ));
            }
            if let (Some(eb), Some(ea)) = (pb.epoll_ns, pa.epoll_ns) {
                s.push_str(&format!(", mean epoll wait {} ns against {} ns", fmt_value(eb), fmt_value(ea)));
            }
            if let (Some(rb), Some(ra)) = (pb.runq_p50_ns, pa.runq_p50_ns) {
                s.push_str(&format!(
                    ", run-queue wait median below {} µs against {} µs",
                    rb / 1000,
                    ra / 1000
                ));
            }
        }
        s.push('.');
        out.push(s);
    }
    // The NAT's own share: bridge + NAT against the plain veth, pair by pair of medians.
    for (id, _, label) in PRIMARY.iter().take(1).chain(PRIMARY.iter().skip(4).take(1)) {
        let Some(s) = series(r, id) else { continue };
        if let (Some(v), Some(b)) = (
            row(s, "net-veth").and_then(|x| x.ratio.as_ref()),
            row(s, "net-bridge-nat").and_then(|x| x.ratio.as_ref()),
        ) {
            let share = softirq_share(r, s, "net-bridge-nat")
                .map(|x| format!("; the bridge with NAT against bare: {x}"))
                .unwrap_or_default();
            out.push(format!(
                "{label}: a plain veth costs × {:.3} [{:.3}, {:.3}] and the bridge with NAT × {:.3} [{:.3}, {:.3}] against bare, so the bridge and DNAT add about {:+.1}% on top of the veth{share}.",
                v.median, v.ci_low, v.ci_high, b.median, b.ci_low, b.ci_high,
                (b.median / v.median - 1.0) * 100.0
            ));
        }
        if let Some(h) = row(s, "net-host").and_then(|x| x.ratio.as_ref()) {
            let verdict = if h.ci_low <= 1.0 && h.ci_high >= 1.0 {
                "indistinguishable from bare at this precision"
            } else if h.median > 1.0 {
                "measurably slower than bare"
            } else {
                "measurably faster than bare"
            };
            out.push(format!(
                "{label} in the host's network namespace (mode 1) is {verdict}: × {:.3} [{:.3}, {:.3}].",
                h.median, h.ci_low, h.ci_high
            ));
        }
    }
    if let Some(worst) = r.apps.iter().filter(|b| b.without_probe > 0.0).max_by(|a, b| {
        (a.with_probe / a.without_probe - 1.0).abs().total_cmp(&(b.with_probe / b.without_probe - 1.0).abs())
    }) {
        out.push(format!(
            "The eBPF probe's own cost, at worst: {} under {} went from {} to {} {} with the probe attached ({:+.1}%, one run each).",
            worst.bench,
            worst.config,
            fmt_value(worst.without_probe),
            fmt_value(worst.with_probe),
            worst.unit,
            (worst.with_probe / worst.without_probe - 1.0) * 100.0
        ));
    }
    let skipped: Vec<&str> =
        r.series.iter().filter(|s| s.metric == "skipped").map(|s| s.workload.as_str()).collect();
    if !skipped.is_empty() {
        out.push(format!("Not measured (package missing, see the table): {}.", skipped.join(", ")));
    }
    out
}

/// Cost against isolation: each configuration's cost (× bare) for the first application
/// series, labelled with how many namespaces isolate the server.
pub fn cost_isolation_chart(r: &BenchResults) -> Option<String> {
    let (id, _, label) = PRIMARY.iter().find(|(id, _, _)| series(r, id).is_some())?;
    let s = series(r, id)?;
    let mut bars: Vec<(usize, Bar)> = s
        .rows
        .iter()
        .filter(|x| x.status == RowStatus::Ok)
        .filter_map(|x| {
            let q = x.ratio.as_ref()?;
            let n = config(r, &x.config).map(|c| c.namespaces.len()).unwrap_or(0);
            Some((
                n,
                Bar {
                    label: format!("{} ({n} ns)", x.config),
                    value: q.median,
                    ci: Some((q.ci_low, q.ci_high)),
                    note: format!("{:+.1}%", (q.median - 1.0) * 100.0),
                    highlight: q.ci_low > 1.0,
                },
            ))
        })
        .collect();
    if bars.is_empty() {
        return None;
    }
    bars.sort_by_key(|(n, _)| *n);
    let bars: Vec<Bar> = bars.into_iter().map(|(_, b)| b).collect();
    Some(svg::hbars(
        &format!("{label}: cost against isolation (namespaces around the server, fewest first)"),
        "× bare (> 1 = slower; red = CI above 1)",
        &bars,
        Some(1.0),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A series of one metric with a bare row and one configuration `cost` × bare.
    fn series_json(id: &str, unit: &str, hib: bool, bare: f64, cost: f64) -> serde_json::Value {
        let other = if hib { bare / cost } else { bare * cost };
        let summary = |v: f64| {
            serde_json::json!({"n": 5, "median": v, "ci_low": v * 0.99, "ci_high": v * 1.01, "ci_pct": 1.0,
                "mean": v, "stddev": 0.0, "min": v, "max": v, "outliers": []})
        };
        let (workload, metric) = id.split_once('/').unwrap();
        serde_json::json!({
            "id": id, "workload": workload, "metric": metric, "unit": unit, "higher_is_better": hib,
            "description": "", "args": [], "baseline": "bare", "rounds": 5, "converged": true,
            "rows": [
                {"config": "bare", "status": "ok", "reason": null, "samples": [], "summary": summary(bare),
                 "ratio": null, "failures": 0},
                {"config": "net-veth", "status": "ok", "reason": null, "samples": [], "summary": summary(other),
                 "ratio": {"baseline": "bare", "pairs": 5, "median": cost, "ci_low": cost * 0.99, "ci_high": cost * 1.01},
                 "failures": 0}
            ]
        })
    }

    fn results(series: Vec<serde_json::Value>) -> BenchResults {
        serde_json::from_value(serde_json::json!({
            "schema": "karton.bench/v1", "karton_version": "0", "profile": "full",
            "started_at": "2026-12-03T00:00:00Z", "finished_at": null, "complete": true, "interrupted": false,
            "machine": serde_json::to_value(karton_bench::results::Machine::default()).unwrap(),
            "method": {"warmups": 1, "min_rounds": 5, "max_rounds": 5, "target_ci_pct": 2.0, "confidence": 0.95,
                "bootstrap_resamples": 100, "seed": 1, "interleaving": "", "outliers": "", "baseline": "bare"},
            "configurations": [], "series": series, "ns_create": [], "instrumented": null, "notes": []
        }))
        .unwrap()
    }

    #[test]
    fn postgres_and_build_rows_show_with_their_units() {
        let r = results(vec![
            series_json("pg-tpcb/tps", "tx/s", true, 2000.0, 1.25),
            series_json("pg-tpcb/p99", "ms", false, 4.0, 1.1),
            series_json("build-c/time", "s", false, 1.5, 1.2),
        ]);
        assert!(has_apps(&r));
        let (_, _, rows) = table(&r).unwrap();
        let pg = rows.iter().find(|x| x[0] == "postgres TPC-B-like" && x[1] == "net-veth").unwrap();
        assert!(pg[2].ends_with(" tx/s"), "{pg:?}");
        assert!(pg[4].starts_with("4.400"), "{pg:?}");
        let build = rows.iter().find(|x| x[0] == "C build, make -j2" && x[1] == "net-veth").unwrap();
        assert!(build[2].starts_with("1.800 [") && build[2].ends_with(" s"), "{build:?}");
        assert_eq!(build[4], "—");
        let f = key_findings(&r).join("\n");
        assert!(
            f.contains("postgres TPC-B-like under net-veth serves 20.0% fewer transactions per second"),
            "{f}"
        );
        assert!(f.contains("C build, make -j2 under net-veth takes 20.0% longer than bare"), "{f}");
    }

    /// A probed run of `requests` requests with these NET_RX and NET_TX totals (ns).
    fn breakdown_json(config: &str, requests: f64, rx_ns: u64, tx_ns: u64) -> serde_json::Value {
        let fig = |name: &str, ns: u64| serde_json::json!({"name": name, "count": 10, "total_ns": ns, "ns_per_request": ns as f64 / requests});
        serde_json::json!({
            "bench": "redis-p1", "config": config, "instruments": [], "syscalls": [], "runq_hist": [],
            "context_switches": 0, "metric": "get-rps", "unit": "req/s", "without_probe": 1.0, "with_probe": 1.0,
            "requests": requests, "softirq": [fig("NET_RX", rx_ns), fig("NET_TX", tx_ns)], "notes": []
        })
    }

    #[test]
    fn softirq_share_of_a_network_cost_is_computed_from_the_results() {
        // bare 100,000 req/s (10 µs per request), net-veth × 1.25 (80,000 req/s: 12.5 µs).
        let mut r = results(vec![series_json("redis-p1/get-rps", "req/s", true, 100_000.0, 1.25)]);
        r.apps = vec![
            serde_json::from_value(breakdown_json("bare", 1000.0, 300_000, 100_000)).unwrap(),
            serde_json::from_value(breakdown_json("net-veth", 1000.0, 1_200_000, 0)).unwrap(),
        ];
        let f = key_findings(&r).join("\n");
        assert!(
            f.contains("under net-veth serves 20.0% fewer requests per second than bare (× 1.250, 95% CI [1.238, 1.262], 5 pairs): +2.50 µs per request (1 / the median throughput), of which +0.80 µs in NET_RX/NET_TX softirq (1.20 µs per request against 0.40 µs bare, every CPU)"),
            "{f}"
        );
        let (caption, head, rows) = breakdown_table(&r).unwrap();
        assert!(caption.contains("system-wide"), "{caption}");
        let col = head.iter().position(|h| h.contains("softirq")).unwrap();
        let veth = rows.iter().find(|x| x[1] == "net-veth").unwrap();
        assert_eq!(veth[col], "1.20");
        // A file from before the softirq instrument: no share, a dash in the table.
        for b in &mut r.apps {
            b.softirq.clear();
        }
        assert!(!key_findings(&r).join("\n").contains("softirq"));
        let (_, _, rows) = breakdown_table(&r).unwrap();
        assert!(rows.iter().all(|x| x[col] == "—"));
    }
}
