//! Kubernetes' node path on karton: the CRI calls kubelet makes for a pod, sent by a CRI
//! client of our own (k8s-cri + tonic) to a private containerd 1.6 whose CRI plugin runs
//! karton as the runtime handler `karton` through the runc shim, with CNI bridge
//! networking (containernetworking-plugins: bridge, host-local, loopback) on a private
//! subnet. Configuration: tests/engines/cri/; images are built locally (no registry).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use k8s_cri::v1::{
    security_profile::ProfileType, ContainerState, ContainerStatusRequest, ExecRequest, ExecSyncRequest,
    Int64Value, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    PodSandboxStatusRequest, SecurityProfile, UpdateContainerResourcesRequest, VersionRequest,
};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const MIB: i64 = 1024 * 1024;

async fn exec_sync(cri: &mut Cri, id: &str, cmd: &[&str]) -> (String, String, i32) {
    let r = cri
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 30,
        })
        .await
        .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e}"))
        .into_inner();
    (
        String::from_utf8_lossy(&r.stdout).trim().to_string(),
        String::from_utf8_lossy(&r.stderr).trim().to_string(),
        r.exit_code,
    )
}

/// What a streaming exec returned: stdout, stderr and the exit code from the status
/// (channel 3 of the `v4.channel.k8s.io` protocol).
#[derive(Debug)]
struct Streamed {
    stdout: String,
    stderr: String,
    exit_code: i32,
    status: String,
}

/// Exec through the CRI streaming server as kubectl/kubelet do: `Exec` returns a URL on
/// containerd's streaming server, the client speaks the kubelet streaming protocol over
/// a websocket (`v4.channel.k8s.io`: one byte of channel, then data; 0 stdin, 1 stdout,
/// 2 stderr, 3 the final status as a JSON metav1.Status).
async fn exec_streaming(cri: &mut Cri, id: &str, cmd: &[&str], tty: bool, stdin: Option<&str>) -> Streamed {
    let url = cri
        .exec(ExecRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin: stdin.is_some(),
            stdout: true,
            stderr: !tty,
        })
        .await
        .unwrap_or_else(|e| panic!("Exec {cmd:?}: {e}"))
        .into_inner()
        .url;
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url.as_str().into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "v4.channel.k8s.io".parse().unwrap());
    let (mut ws, resp) =
        tokio_tungstenite::connect_async(req).await.unwrap_or_else(|e| panic!("websocket to {ws_url}: {e}"));
    assert_eq!(
        resp.headers().get("Sec-WebSocket-Protocol").and_then(|v| v.to_str().ok()),
        Some("v4.channel.k8s.io"),
        "streaming server's subprotocol"
    );
    if let Some(input) = stdin {
        let mut frame = vec![0u8];
        frame.extend_from_slice(input.as_bytes());
        ws.send(Message::Binary(frame.into())).await.unwrap();
    }
    let mut out =
        Streamed { stdout: String::new(), stderr: String::new(), exit_code: -1, status: String::new() };
    let read_all = async {
        while let Some(msg) = ws.next().await {
            let data = match msg {
                Ok(Message::Binary(b)) => b.to_vec(),
                Ok(Message::Text(t)) => t.as_bytes().to_vec(),
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => continue,
            };
            let Some((&ch, rest)) = data.split_first() else { continue };
            let text = String::from_utf8_lossy(rest);
            match ch {
                1 => out.stdout.push_str(&text),
                2 => out.stderr.push_str(&text),
                3 => out.status.push_str(&text),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), read_all).await.expect("streaming exec timed out");
    let status: serde_json::Value = serde_json::from_str(&out.status).unwrap_or_default();
    out.exit_code = match status["status"].as_str() {
        Some("Success") => 0,
        _ => status["details"]["causes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["reason"] == "ExitCode"))
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse().ok())
            .unwrap_or(-1),
    };
    out
}

async fn container_status(cri: &mut Cri, id: &str) -> k8s_cri::v1::ContainerStatus {
    cri.container_status(ContainerStatusRequest { container_id: id.into(), verbose: false })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

fn cgroup_file(rel: &str, controller: &str, file: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}/{}/{file}", rel.trim_start_matches('/')))
        .unwrap_or_else(|e| format!("<{controller}/{rel}/{file}: {e}>"))
        .trim()
        .to_string()
}

#[test]
fn kubelet_pod_lifecycle_on_karton_through_containerd_cri() {
    if let Some(why) = missing() {
        skip(&why);
        return;
    }
    assert!(!root_is_shared(), "/ is a shared mount before the test: run `mount --make-private /`");
    let mut node = Node::start("pod", true);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(pod_lifecycle(&node));
    drop(rt);

    // Nothing of the pod is left while containerd still runs...
    assert_eq!(node.karton_list(), "", "karton state left in {}", node.karton_root().display());
    assert_eq!(node.netns_files(), Vec::<String>::new(), "network namespaces left");
    assert_eq!(node.new_netns_in_var_run(), Vec::<String>::new(), "netns left in /var/run/netns");
    assert_eq!(node.ipam_leases(), Vec::<String>::new(), "host-local still holds addresses");
    assert_eq!(node.bridge_ports(), Vec::<String>::new(), "veths left on the bridge");
    assert_eq!(node.new_cni_results(), Vec::<String>::new(), "CNI result cache left in /var/lib/cni/results");
    let container_mounts: Vec<String> = mounts_under(&node.dir);
    assert_eq!(container_mounts, Vec::<String>::new(), "mounts left under {}", node.dir.display());
    // The pod-level parents are kubelet's to remove (it made them); every cgroup below is gone.
    let cgroups: Vec<_> = cgroups_under(&node.cgroup_parent)
        .into_iter()
        .filter(|p| p.components().count() > 5 + node.cgroup_parent.matches('/').count())
        .collect();
    assert!(cgroups.is_empty(), "container cgroups left: {cgroups:?}");
    let argv = node.argv_log();
    // ... and once containerd stops, nothing of the node either.
    let dir = node.dir.clone();
    let bridge = node.bridge.clone();
    let parent = node.cgroup_parent.clone();
    let socket = node.socket();
    node.shutdown();
    assert!(!dir.exists(), "work directory left: {}", dir.display());
    assert!(!std::path::Path::new("/sys/class/net").join(&bridge).exists(), "bridge {bridge} left");
    assert_eq!(cgroups_under(&parent), Vec::<std::path::PathBuf>::new(), "cgroups left");
    assert_eq!(pids_with(&format!("-address {}", socket.display())), Vec::<i32>::new(), "shims left");
    assert!(!root_is_shared(), "/ became a shared mount");
    // The shim's calls reached karton: the global flags, create/start/exec/kill/delete.
    for verb in ["create --bundle", "start ", "exec --process", "kill ", "delete ", "update --resources"] {
        assert!(argv.contains(verb), "karton never got `{verb}`; calls:\n{argv}");
    }
}

async fn pod_lifecycle(node: &Node) {
    let mut cri = node.client().await;
    let v = cri.version(VersionRequest { version: "v1".into() }).await.unwrap().into_inner();
    println!("CRI: {} {} (API {})", v.runtime_name, v.runtime_version, v.runtime_api_version);

    // --- RunPodSandbox: handler karton, pod sysctls ------------------------------------------
    let sysctls: HashMap<String, String> = [
        ("net.ipv4.ip_local_port_range", "40000 50000"),
        ("net.ipv4.ping_group_range", "0 2147483647"),
        ("kernel.shm_rmid_forced", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let host_port_range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let sandbox = pod_config(node, "web", sysctls);
    let pod = run_pod(&mut cri, &sandbox, "karton").await;
    let pst = cri
        .pod_sandbox_status(PodSandboxStatusRequest { pod_sandbox_id: pod.clone(), verbose: true })
        .await
        .unwrap()
        .into_inner();
    let pod_ip =
        pst.status.as_ref().and_then(|s| s.network.as_ref()).map(|n| n.ip.clone()).unwrap_or_default();
    assert!(pod_ip.starts_with(SUBNET_PREFIX), "pod IP {pod_ip:?} not in {SUBNET}");
    assert_eq!(
        node.karton_list().lines().filter(|l| *l == pod).count(),
        1,
        "the sandbox (pause) runs on karton"
    );

    // --- container a: resources, logs, holds a SysV segment, honours TERM ---------------------
    let a_cfg = container_config(
        "a",
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; echo out-line; echo err-line >&2; /bin/shm hold 0x4b43 shared-in-pod & wait",
        ],
        LinuxContainerConfig {
            resources: Some(LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 512,
                memory_limit_in_bytes: 64 * MIB,
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    let a = start_container(&mut cri, &pod, &sandbox, a_cfg).await;

    // --- container b: RuntimeDefault seccomp, runAsUser/Group, read-only root; ignores TERM --
    let b_cfg = container_config(
        "b",
        &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
        LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                run_as_user: Some(Int64Value { value: 1000 }),
                run_as_group: Some(Int64Value { value: 3000 }),
                readonly_rootfs: true,
                seccomp: Some(SecurityProfile {
                    profile_type: ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    );
    let b = start_container(&mut cri, &pod, &sandbox, b_cfg).await;
    for id in [&a, &b] {
        assert_eq!(container_status(&mut cri, id).await.state, ContainerState::ContainerRunning as i32);
    }
    assert!(node.karton_list().contains(&a) && node.karton_list().contains(&b));

    // --- ExecSync; shared network and IPC ------------------------------------------------------
    let (out, _, rc) = exec_sync(&mut cri, &a, &["sh", "-c", "echo exec-$((6*7)); exit 6"]).await;
    assert_eq!((out.as_str(), rc), ("exec-42", 6), "ExecSync output and exit code");
    let addr = "ip -4 -o addr show eth0 | awk '{print $4}'";
    let (ip_a, _, _) = exec_sync(&mut cri, &a, &["sh", "-c", addr]).await;
    let (ip_b, _, _) = exec_sync(&mut cri, &b, &["sh", "-c", addr]).await;
    assert_eq!(ip_a, format!("{pod_ip}/24"), "a's eth0 has the pod's address");
    assert_eq!(ip_a, ip_b, "both containers share the pod's network namespace");
    let mut seen = String::new();
    for _ in 0..50 {
        seen = exec_sync(&mut cri, &b, &["/bin/shm", "read", "0x4b43"]).await.0;
        if seen == "shared-in-pod" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "shared-in-pod", "b reads the SysV segment a holds (shared IPC namespace)");
    // busybox has no ipcs: the kernel's list, key 0x4b43 = 19267.
    let (shm, _, _) = exec_sync(&mut cri, &b, &["cat", "/proc/sysvipc/shm"]).await;
    assert!(
        shm.lines().any(|l| l.split_whitespace().next() == Some("19267")),
        "b's IPC namespace lists a's segment:\n{shm}"
    );

    // --- security context, seccomp and sysctls, read inside b ---------------------------------
    assert_eq!(exec_sync(&mut cri, &b, &["id", "-u"]).await.0, "1000", "runAsUser");
    assert_eq!(exec_sync(&mut cri, &b, &["id", "-g"]).await.0, "3000", "runAsGroup");
    let (_, err, rc) = exec_sync(&mut cri, &b, &["touch", "/probe"]).await;
    assert!(rc != 0 && err.contains("Read-only file system"), "readOnlyRootFilesystem: rc {rc}, {err}");
    let seccomp = "grep -E '^Seccomp:' /proc/self/status | awk '{print $2}'";
    assert_eq!(exec_sync(&mut cri, &b, &["sh", "-c", seccomp]).await.0, "2", "RuntimeDefault seccomp");
    assert_eq!(exec_sync(&mut cri, &a, &["sh", "-c", seccomp]).await.0, "0", "no profile: unconfined");
    for (file, want) in [
        ("net/ipv4/ip_local_port_range", "40000\t50000"),
        ("net/ipv4/ping_group_range", "0\t2147483647"),
        ("kernel/shm_rmid_forced", "1"),
    ] {
        let got = exec_sync(&mut cri, &b, &["cat", &format!("/proc/sys/{file}")]).await.0;
        assert_eq!(got, want, "pod sysctl {file}");
    }
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap(),
        host_port_range,
        "the host's port range is unchanged"
    );

    // --- resources, UpdateContainerResources, read back in the cgroup -------------------------
    let cg = format!("{}/pod-web/{a}", node.cgroup_parent);
    assert_eq!(cgroup_file(&cg, "memory", "memory.limit_in_bytes"), (64 * MIB).to_string());
    assert_eq!(cgroup_file(&cg, "cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup_file(&cg, "cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(cgroup_file(&cg, "cpu", "cpu.shares"), "512");
    let pid = |ids: String| ids.lines().next().unwrap_or_default().to_string();
    assert!(!pid(cgroup_file(&cg, "memory", "cgroup.procs")).is_empty(), "a's processes are in its cgroup");
    cri.update_container_resources(UpdateContainerResourcesRequest {
        container_id: a.clone(),
        linux: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 20_000,
            cpu_shares: 256,
            memory_limit_in_bytes: 96 * MIB,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("UpdateContainerResources: {e}"));
    assert_eq!(cgroup_file(&cg, "memory", "memory.limit_in_bytes"), (96 * MIB).to_string());
    assert_eq!(cgroup_file(&cg, "cpu", "cpu.cfs_quota_us"), "20000");
    assert_eq!(cgroup_file(&cg, "cpu", "cpu.shares"), "256");
    let inside = exec_sync(&mut cri, &a, &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]).await.0;
    assert_eq!(inside, (96 * MIB).to_string(), "the container sees its updated limit");

    // --- container logs in the CRI format -------------------------------------------------------
    let log_path = std::path::Path::new(&sandbox.log_directory).join("a.log");
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let lines: Vec<Vec<&str>> = log.lines().map(|l| l.splitn(4, ' ').collect()).collect();
    let has = |stream: &str, msg: &str| {
        lines
            .iter()
            .any(|f| f.len() == 4 && f[1] == stream && f[2] == "F" && f[3] == msg && f[0].contains('T'))
    };
    assert!(has("stdout", "out-line") && has("stderr", "err-line"), "CRI log lines in {log_path:?}:\n{log}");

    // --- streaming Exec through the CRI streaming server -----------------------------------
    let s = exec_streaming(&mut cri, &a, &["sh", "-c", "echo ws-out; echo ws-err >&2; exit 3"], false, None)
        .await;
    assert_eq!((s.stdout.as_str(), s.stderr.as_str()), ("ws-out\n", "ws-err\n"), "streaming exec: {s:?}");
    assert_eq!(s.exit_code, 3, "streaming exec's exit code: {s:?}");
    let s = exec_streaming(&mut cri, &a, &["sh", "-c", "echo fine"], false, None).await;
    assert_eq!((s.stdout.as_str(), s.exit_code), ("fine\n", 0), "streaming exec: {s:?}");
    let s =
        exec_streaming(&mut cri, &a, &["sh"], true, Some("tty; test -t 0 && echo stdin-is-a-tty; exit 5\n"))
            .await;
    assert!(s.stdout.contains("/dev/pts/") && s.stdout.contains("stdin-is-a-tty"), "exec -t: {s:?}");
    assert_eq!(s.exit_code, 5, "exec -t's exit code: {s:?}");

    // --- StopContainer with a grace period: a honours TERM, b ignores it --------------------
    stop_container(&mut cri, &a, 10).await;
    let st = container_status(&mut cri, &a).await;
    assert_eq!((st.state, st.exit_code), (ContainerState::ContainerExited as i32, 0), "a stopped on TERM");
    // kernel.shm_rmid_forced=1: the segment went with its last holder.
    let (_, _, rc) = exec_sync(&mut cri, &b, &["/bin/shm", "read", "0x4b43"]).await;
    assert_ne!(rc, 0, "shm_rmid_forced=1: the segment is gone after a stopped");
    let t = std::time::Instant::now();
    stop_container(&mut cri, &b, 2).await;
    let waited = t.elapsed();
    let st = container_status(&mut cri, &b).await;
    assert_eq!(
        (st.state, st.exit_code),
        (ContainerState::ContainerExited as i32, 137),
        "b killed after grace"
    );
    println!("StopContainer(b, 2 s grace) returned after {waited:?}");
    let argv = node.argv_log();
    let term = argv.find(&format!("kill {b} 15")).expect("b got TERM (kill ID 15)");
    let kill = argv.find(&format!("kill {b} 9")).expect("b got KILL (kill ID 9) after the grace period");
    assert!(term < kill, "TERM before KILL");

    // --- RemoveContainer, StopPodSandbox, RemovePodSandbox -------------------------------------
    remove_container(&mut cri, &a).await;
    remove_container(&mut cri, &b).await;
    assert!(!node.karton_list().contains(&a), "karton's state of a removed");
    remove_pod(&mut cri, &pod).await;
}
