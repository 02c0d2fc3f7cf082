//! Kernel footprint per configuration, the isolation measure of Anjali et al. (VEE'20),
//! approximated with what this kernel allows: karton-probe's cpu-clock sampling of kernel
//! functions while the measured process tree runs (a lower bound of the kernel code
//! executed, not line coverage).

#[cfg(feature = "footprint")]
use karton_probe::{Probe, StoppedCommand, Target};

use crate::results::{FootprintRow, FootprintSection};
use crate::runner::{default_namespaces, Config, Karton};

/// The configurations measured: a bare host process, then containers.
pub fn configurations() -> Vec<(String, Option<Vec<String>>)> {
    let all: Vec<String> = crate::runner::NAMESPACES.iter().map(|(s, _)| s.to_string()).collect();
    vec![
        ("bare (host process)".into(), None),
        ("container ns=mnt".into(), Some(vec!["mnt".to_string()])),
        (
            format!("container ns={} (karton default)", default_namespaces().join("+")),
            Some(default_namespaces()),
        ),
        ("container ns=all eight".into(), Some(all)),
    ]
}

/// Measures the tcp-rr victim (`secs` seconds) under each configuration.
pub fn run(k: &Karton, rootfs: &std::path::Path, secs: f64, log: &mut dyn FnMut(&str)) -> FootprintSection {
    let instrument = instrument_name();
    let approximation = "kernel functions seen by 999 Hz cpu-clock sampling of the process tree (karton run + container, or the bare process) while a TCP request/response loop runs: a lower bound of the kernel code executed, labelled as the approximation it is".to_string();
    let mut rows = Vec::new();
    let mut section_skip = None;
    for (name, ns) in configurations() {
        let workload = format!("tcp-rr {secs} s");
        let argv: Vec<String> = match &ns {
            None => vec![
                k.exe.to_string_lossy().into_owned(),
                "audit".into(),
                "victim".into(),
                "tcp-rr".into(),
                secs.to_string(),
                "100".into(),
                "--quiet".into(),
            ],
            Some(list) => {
                let id = k.new_id("footprint");
                let lo = if list.iter().any(|n| n == "net") { "ip link set lo up; " } else { "" };
                let args = vec![
                    "/bin/sh".to_string(),
                    "-c".into(),
                    format!("{lo}exec /karton audit victim tcp-rr {secs} 100 --quiet"),
                ];
                let mut cfg = Config::new(rootfs, list, &args);
                cfg.bind(&k.exe, "/karton", true).add_caps(&["CAP_NET_ADMIN"]);
                match k.write_bundle(&id, &cfg) {
                    Ok(b) => vec![
                        k.exe.to_string_lossy().into_owned(),
                        "--root".into(),
                        k.root.to_string_lossy().into_owned(),
                        "run".into(),
                        "--bundle".into(),
                        b.to_string_lossy().into_owned(),
                        id,
                    ],
                    Err(e) => {
                        rows.push(skip_row(&name, &workload, &e.to_string()));
                        continue;
                    }
                }
            }
        };
        match measure(&argv, secs) {
            Ok(r) => {
                log(&format!(
                    "  {:<40} kernel samples {:>6}  distinct kernel functions {:>5}",
                    name, r.0, r.2
                ));
                rows.push(FootprintRow {
                    config: name,
                    workload,
                    kernel_samples: r.0,
                    user_samples: r.1,
                    distinct_functions: r.2,
                    top_functions: r.3,
                    skipped: None,
                });
            }
            Err(e) => {
                log(&format!("  {name}: skipped: {e}"));
                if section_skip.is_none() {
                    section_skip = Some(e.clone());
                }
                rows.push(skip_row(&name, &workload, &e));
            }
        }
    }
    let all_skipped = rows.iter().all(|r| r.skipped.is_some());
    FootprintSection {
        instrument,
        approximation,
        rows,
        skipped: if all_skipped { section_skip } else { None },
    }
}

fn skip_row(config: &str, workload: &str, why: &str) -> FootprintRow {
    FootprintRow {
        config: config.into(),
        workload: workload.into(),
        kernel_samples: 0,
        user_samples: 0,
        distinct_functions: 0,
        top_functions: Vec::new(),
        skipped: Some(why.into()),
    }
}

type Measured = (u64, u64, u64, Vec<(String, u64)>);

#[cfg(feature = "footprint")]
fn instrument_name() -> String {
    karton_probe::Instrument::Footprint.mechanism(false).to_string()
}

#[cfg(not(feature = "footprint"))]
fn instrument_name() -> String {
    "none: karton-audit was built without its footprint feature (karton-probe)".into()
}

#[cfg(not(feature = "footprint"))]
fn measure(_argv: &[String], _secs: f64) -> Result<Measured, String> {
    Err("karton-audit was built without the footprint feature (karton-probe, eBPF)".into())
}

#[cfg(feature = "footprint")]
fn measure(argv: &[String], secs: f64) -> Result<Measured, String> {
    let mut cmd = StoppedCommand::spawn(argv).map_err(|e| e.to_string())?;
    let mut probe = Probe::builder()
        .footprint(true)
        .target(Target::Tgid(cmd.pid()))
        .attach()
        .map_err(|e| e.to_string())?;
    if let Some(st) =
        probe.status().iter().find(|s| !matches!(s.state, karton_probe::InstrumentState::Active))
    {
        return Err(format!("footprint instrument not active: {:?}", st.state));
    }
    cmd.release().map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs_f64(secs + 30.0);
    loop {
        match cmd.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Ok(None) => return Err("the measured command overran its wall-time limit".into()),
            Err(e) => return Err(e.to_string()),
        }
    }
    let snap = probe.snapshot().map_err(|e| e.to_string())?;
    let rows = snap.footprint.map(|s| s.rows).unwrap_or_default();
    let mut kernel = 0;
    let mut user = 0;
    let mut funcs: std::collections::BTreeMap<String, u64> = Default::default();
    for r in rows {
        kernel += r.kernel_samples;
        user += r.user_samples;
        for f in r.functions {
            *funcs.entry(f.function).or_default() += f.samples;
        }
    }
    let distinct = funcs.len() as u64;
    let mut top: Vec<(String, u64)> = funcs.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(12);
    Ok((kernel, user, distinct, top))
}
