//! A private containerd with its CRI plugin on, karton as the runtime handler `karton`
//! (and runc as `runc`), CNI bridge networking on a private subnet, and a CRI client.
//! `Node` is the Drop guard: containerd, its shims, karton's and runc's state, the
//! bridge, mounts and cgroups go away also when a test fails.

#![allow(clippy::unwrap_used)] // tests fail loudly by design
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, CreateContainerRequest, ImageSpec, LinuxContainerConfig,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemoveContainerRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopContainerRequest, StopPodSandboxRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

pub const BUSYBOX: &str = "localhost/karton-cri-busybox:1";
pub const PAUSE: &str = "localhost/karton-cri-pause:1";
/// A private subnet for the test's CNI bridge; pods reach only each other.
pub const SUBNET: &str = "10.213.7.0/24";
pub const SUBNET_PREFIX: &str = "10.213.7.";
pub const CNI_BIN: &str = "/usr/lib/cni";
/// The CRI plugin's containerd namespace.
pub const NS: &str = "k8s.io";

pub type Cri = RuntimeServiceClient<Channel>;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The karton binary under test: `KARTON_BIN`, or the workspace's build next to this test
/// (`cargo test --workspace` builds it for karton's own tests).
pub fn karton_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KARTON_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("karton");
    p.exists().then_some(p)
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Why this machine cannot run the CRI tests, if it cannot; the caller prints it as SKIP.
pub fn missing() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (containerd, CNI bridge, cgroups)".into());
    }
    for cmd in ["containerd", "ctr", "containerd-shim-runc-v2", "podman", "cc", "runc", "ip"] {
        if !have(cmd) {
            return Some(format!("{cmd} is not installed (scripts/deps.sh installs it)"));
        }
    }
    for plugin in ["bridge", "host-local", "loopback"] {
        if !Path::new(CNI_BIN).join(plugin).exists() {
            return Some(format!(
                "CNI plugin {CNI_BIN}/{plugin} is missing (apt-get install containernetworking-plugins)"
            ));
        }
    }
    if !Path::new("/usr/lib/x86_64-linux-gnu/libc.a").exists() && !Path::new("/usr/lib/libc.a").exists() {
        return Some("a static libc is needed to build the pause image (apt-get install libc6-dev)".into());
    }
    if karton_binary().is_none() {
        return Some("no karton binary: build it (cargo build -p karton) or set KARTON_BIN".into());
    }
    None
}

/// Prints a visible skip line (counted by the harness's output, never a silent pass).
/// A visible, counted skip (the summary at the end of `make test`); the test is named by
/// libtest's thread name.
pub fn skip(why: &str) {
    karton_testkit::skip(why);
}

fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = std::fs::read_to_string(repo().join("tests/engines/cri").join(template)).unwrap();
    for (k, v) in vars {
        s = s.replace(k, v);
    }
    s
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    out
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Mount points at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().to_string();
    read("/proc/self/mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == d || m.starts_with(&format!("{d}/")))
        .map(String::from)
        .collect()
}

/// Whether `/` is a shared mount (it must stay private on these machines).
pub fn root_is_shared() -> bool {
    read("/proc/self/mountinfo").lines().any(|l| l.split(' ').nth(4) == Some("/") && l.contains(" shared:"))
}

/// Processes whose command line mentions `needle` (our shims: `-address W/containerd.sock`).
pub fn pids_with(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && pid != std::process::id() as i32 {
            pids.push(pid);
        }
    }
    pids
}

/// Cgroup directories (every v1 hierarchy and v2) at or below `rel`, deepest first.
pub fn cgroups_under(rel: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        let top = root.join(rel.trim_start_matches('/'));
        walk(&top, &mut dirs);
    }
    dirs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    dirs.dedup();
    dirs
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.is_dir() {
        return;
    }
    out.push(dir.to_path_buf());
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            walk(&e.path(), out);
        }
    }
}

pub struct Node {
    pub dir: PathBuf,
    pub karton: PathBuf,
    pub bridge: String,
    /// The cgroup parent of this run's pods (kubelet would use /kubepods/...).
    pub cgroup_parent: String,
    containerd: Option<Child>,
    shut_down: bool,
    ip_forward: String,
    netns_before: Vec<String>,
    cni_results_before: Vec<String>,
    cni_dir_existed: bool,
}

impl Node {
    /// Builds the images, writes the configuration and starts containerd. `wrap`: call
    /// karton through a wrapper that records each argv in `DIR/argv.log`.
    pub fn start(tag: &str, wrap: bool) -> Node {
        let karton = karton_binary().unwrap();
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("karton-cri-{tag}-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cni/net.d")).unwrap();
        let mut node = Node {
            dir: dir.clone(),
            karton: karton.clone(),
            // Interface names are at most 15 bytes.
            bridge: format!("kcri{}", pid % 1_000_000),
            cgroup_parent: format!("/karton-cri-{tag}-{pid}"),
            containerd: None,
            shut_down: false,
            ip_forward: read("/proc/sys/net/ipv4/ip_forward"),
            netns_before: ls("/var/run/netns"),
            cni_results_before: ls("/var/lib/cni/results"),
            cni_dir_existed: Path::new("/var/lib/cni").exists(),
        };
        let w = dir.to_string_lossy().to_string();
        let called = if wrap {
            let wrapper = dir.join("karton-wrapper");
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nprintf '%s\\n' \"$*\" >> {w}/argv.log\nexec {} \"$@\"\n",
                    karton.display()
                ),
            )
            .unwrap();
            std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            wrapper
        } else {
            karton.clone()
        };
        let vars = [
            ("@W@", w.as_str()),
            ("@KARTON@", &called.to_string_lossy()),
            ("@CNI_BIN@", CNI_BIN),
            ("@BRIDGE@", node.bridge.as_str()),
            ("@SUBNET@", SUBNET),
        ];
        std::fs::write(dir.join("containerd.toml"), render("containerd.toml.in", &vars)).unwrap();
        std::fs::write(dir.join("cni/net.d/10-karton-cri.conflist"), render("cni.conflist.in", &vars))
            .unwrap();

        run(Command::new("bash")
            .arg(repo().join("tests/engines/cri/images.sh"))
            .arg(&dir)
            .env("KARTON", &karton));

        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("containerd.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        node.containerd = Some(child);
        for _ in 0..200 {
            if node.ctr(&["version"]).status.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(node.ctr(&["version"]).status.success(), "containerd did not start: {}", node.log_tail());
        for img in ["busybox.tar", "pause.tar"] {
            let path = dir.join(img);
            let out = node.ctr(&["images", "import", "--snapshotter", "overlayfs", &path.to_string_lossy()]);
            assert!(
                out.status.success(),
                "ctr images import {img}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        node
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", NS])
            .args(args)
            .output()
            .unwrap()
    }

    pub fn log_tail(&self) -> String {
        let log = read(self.dir.join("containerd.log"));
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn argv_log(&self) -> String {
        read(self.dir.join("argv.log"))
    }

    /// karton's state directory for the CRI namespace (the shim's `Root` + namespace).
    pub fn karton_root(&self) -> PathBuf {
        self.dir.join("karton-root").join(NS)
    }

    pub fn karton_list(&self) -> String {
        let out = Command::new(&self.karton)
            .arg("--root")
            .arg(self.karton_root())
            .args(["list", "-q"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Network namespace files the CRI plugin keeps (below its state dir).
    pub fn netns_files(&self) -> Vec<String> {
        ls(self.dir.join("state/io.containerd.grpc.v1.cri/netns"))
    }

    /// Addresses host-local still holds for this network.
    pub fn ipam_leases(&self) -> Vec<String> {
        ls(self.dir.join("cni/ipam/karton-cri"))
            .into_iter()
            .filter(|f| f.starts_with(SUBNET_PREFIX))
            .collect()
    }

    pub fn bridge_ports(&self) -> Vec<String> {
        ls(format!("/sys/class/net/{}/brif", self.bridge))
    }

    pub fn new_netns_in_var_run(&self) -> Vec<String> {
        ls("/var/run/netns").into_iter().filter(|n| !self.netns_before.contains(n)).collect()
    }

    pub fn new_cni_results(&self) -> Vec<String> {
        ls("/var/lib/cni/results").into_iter().filter(|n| !self.cni_results_before.contains(n)).collect()
    }

    pub async fn client(&self) -> Cri {
        self.try_client().await.unwrap()
    }

    async fn try_client(&self) -> Result<Cri, tonic::transport::Error> {
        let path = self.socket();
        let channel =
            Endpoint::try_from("http://[::]")?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
                    }
                }))
                .await?;
        Ok(RuntimeServiceClient::new(channel))
    }

    /// Stops containerd and removes what is left: shims, runtime state, mounts, the
    /// bridge, cgroups, the work directory. Idempotent.
    pub fn shutdown(&mut self) {
        if self.shut_down {
            return;
        }
        self.shut_down = true;
        if self.containerd.is_some() {
            // A failed test leaves pods: tear them down through the CRI as kubelet would, so
            // that CNI releases addresses and veths and containerd unmounts what it mounted.
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                rt.block_on(async {
                    let Ok(mut cri) = self.try_client().await else { return };
                    let pods = cri.list_pod_sandbox(ListPodSandboxRequest { filter: None }).await;
                    for pod in pods.map(|r| r.into_inner().items).unwrap_or_default() {
                        let id = pod.id;
                        let _ =
                            cri.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: id.clone() }).await;
                        let _ = cri.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id }).await;
                    }
                });
            }
        }
        if let Some(mut child) = self.containerd.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::SIGTERM,
            );
            let _ = child.wait();
        }
        // Shims outlive containerd by design; ours are those serving this run's socket.
        let needle = format!("-address {}", self.socket().display());
        for pid in pids_with(&needle) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
        for (bin, root) in [
            (self.karton.clone(), self.karton_root()),
            (PathBuf::from("runc"), self.dir.join("runc-root").join(NS)),
        ] {
            let out = Command::new(&bin).arg("--root").arg(&root).args(["list", "-q"]).output();
            for id in out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default().lines()
            {
                let _ = Command::new(&bin).arg("--root").arg(&root).args(["delete", "--force", id]).output();
            }
        }
        let mut mounts = mounts_under(&self.dir);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).output();
        if read("/proc/sys/net/ipv4/ip_forward") != self.ip_forward {
            let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.ip_forward);
        }
        for d in cgroups_under(&self.cgroup_parent) {
            let _ = std::fs::remove_dir(d);
        }
        // libcni caches each attachment's result in /var/lib/cni/results (not configurable in
        // containerd 1.6); a completed CNI DEL removes it, a crash does not.
        for f in self.new_cni_results() {
            let _ = std::fs::remove_file(Path::new("/var/lib/cni/results").join(f));
        }
        if !self.cni_dir_existed {
            let _ = std::fs::remove_dir("/var/lib/cni/results");
            let _ = std::fs::remove_dir("/var/lib/cni");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub fn ls(dir: impl AsRef<Path>) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

/// A pod as kubelet describes it: its own cgroup below the node's parent, a log
/// directory, network and IPC shared by its containers, each container its own PID
/// namespace (kubelet's default).
pub fn pod_config(node: &Node, name: &str, sysctls: HashMap<String, String>) -> PodSandboxConfig {
    let uid = format!("uid-{name}-{}", std::process::id());
    let logs = node.dir.join("pods").join(&uid);
    std::fs::create_dir_all(&logs).unwrap();
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid,
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.to_string_lossy().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/pod-{name}", node.cgroup_parent),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn container_config(name: &str, command: &[&str], linux: LinuxContainerConfig) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata { name: name.into(), attempt: 0 }),
        image: Some(ImageSpec { image: BUSYBOX.into(), ..Default::default() }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(linux),
        ..Default::default()
    }
}

pub async fn run_pod(cri: &mut Cri, config: &PodSandboxConfig, handler: &str) -> String {
    cri.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: handler.into(),
    })
    .await
    .unwrap_or_else(|e| panic!("RunPodSandbox (handler {handler}): {e}"))
    .into_inner()
    .pod_sandbox_id
}

/// CreateContainer + StartContainer; returns the container's ID.
pub async fn start_container(
    cri: &mut Cri,
    pod: &str,
    sandbox: &PodSandboxConfig,
    config: ContainerConfig,
) -> String {
    let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let id = cri
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
        })
        .await
        .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}"))
        .into_inner()
        .container_id;
    cri.start_container(StartContainerRequest { container_id: id.clone() })
        .await
        .unwrap_or_else(|e| panic!("StartContainer {name}: {e}"));
    id
}

/// StopContainer with `timeout` seconds of grace (TERM, then KILL), then RemoveContainer.
pub async fn stop_container(cri: &mut Cri, id: &str, timeout: i64) {
    cri.stop_container(StopContainerRequest { container_id: id.into(), timeout })
        .await
        .unwrap_or_else(|e| panic!("StopContainer {id}: {e}"));
}

pub async fn remove_container(cri: &mut Cri, id: &str) {
    cri.remove_container(RemoveContainerRequest { container_id: id.into() })
        .await
        .unwrap_or_else(|e| panic!("RemoveContainer {id}: {e}"));
}

pub async fn remove_pod(cri: &mut Cri, pod: &str) {
    cri.stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.into() })
        .await
        .unwrap_or_else(|e| panic!("StopPodSandbox {pod}: {e}"));
    cri.remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.into() })
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox {pod}: {e}"));
}
