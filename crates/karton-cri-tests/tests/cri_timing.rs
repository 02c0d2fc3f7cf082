//! Timing, not a test: RunPodSandbox + CreateContainer + StartContainer through
//! containerd's CRI plugin, karton (handler `karton`) against runc (handler `runc`, the
//! shim's default binary), the same private containerd, CNI bridge and images. Prints the
//! median and quartiles; asserts nothing about time. Ignored by default:
//!
//!   KARTON_CRI_PODS=10 cargo test -p karton-cri-tests --test cri_timing -- --ignored --nocapture

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use k8s_cri::v1::LinuxContainerConfig;

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[test]
#[ignore = "timing: run with --ignored on a quiet machine"]
fn pod_start_karton_vs_runc() {
    if let Some(why) = missing() {
        skip(&why);
        return;
    }
    let pods: usize = std::env::var("KARTON_CRI_PODS").ok().and_then(|n| n.parse().ok()).unwrap_or(10);
    let node = Node::start("timing", false);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut times: HashMap<&str, Vec<Duration>> = HashMap::new();
    rt.block_on(async {
        let mut cri = node.client().await;
        // One untimed warm-up pod per handler (first use of the shim, image snapshots).
        for i in 0..=pods {
            // Interleaved, alternating which goes first, so load drifts hit both alike.
            let order = if i % 2 == 0 { ["karton", "runc"] } else { ["runc", "karton"] };
            for handler in order {
                let sandbox = pod_config(&node, &format!("t{handler}{i}"), HashMap::new());
                let t = Instant::now();
                let pod = run_pod(&mut cri, &sandbox, handler).await;
                let cfg =
                    container_config("c", &["sleep", "3600"], LinuxContainerConfig { ..Default::default() });
                let c = start_container(&mut cri, &pod, &sandbox, cfg).await;
                let took = t.elapsed();
                if i > 0 {
                    times.entry(handler).or_default().push(took);
                }
                stop_container(&mut cri, &c, 0).await;
                remove_container(&mut cri, &c).await;
                remove_pod(&mut cri, &pod).await;
            }
        }
    });
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("RunPodSandbox + CreateContainer + StartContainer, {pods} pods per handler, loadavg {load}");
    for handler in ["karton", "runc"] {
        let mut t = times.remove(handler).unwrap_or_default();
        t.sort();
        println!(
            "{handler:>6}: median {:.1} ms (quartiles {:.1}-{:.1}, min {:.1}, max {:.1})",
            quantile(&t, 0.5).as_secs_f64() * 1e3,
            quantile(&t, 0.25).as_secs_f64() * 1e3,
            quantile(&t, 0.75).as_secs_f64() * 1e3,
            t[0].as_secs_f64() * 1e3,
            t[t.len() - 1].as_secs_f64() * 1e3,
        );
    }
}
