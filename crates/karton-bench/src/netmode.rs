//! Network modes of the application benchmarks, and the plumbing karton sets up for them
//! with netlink (rtnetlink): veth pairs, a bridge, addresses, routes; plus an nftables
//! table for the port forward (DNAT) and MASQUERADE of the bridge mode.
//!
//! Everything gets a name of our own ([`LINK_PREFIX`], [`NFT_TABLE`]) and private
//! addresses (10.231.0.0/16 for veth, 10.232.0.0/24 for the bridge); [`Plumbing`] removes
//! what it made when dropped, and [`sweep_stale`] removes what a killed run left behind.
//! The container's end of a veth lives in the container's own network namespace: the
//! runner creates the container, configures its namespace through /proc/PID/ns/net and
//! only then starts it (the shape CNI plugins have). Mode 5 needs no link of ours:
//! slirp4netns makes tap0 inside the namespace and dies with the run (its --exit-fd).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::Handle;

use crate::BenchError;

/// Names of every link the benchmark makes start with this.
pub const LINK_PREFIX: &str = "kbn";
/// The nftables table of the bridge mode's DNAT and MASQUERADE rules.
pub const NFT_TABLE: &str = "karton_bench";

/// How a server container is reached by its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// 1: the host's network namespace.
    Host,
    /// 2: a network namespace of its own, the client inside it (loopback only).
    Private,
    /// 3: a veth pair to the host, routed.
    Veth,
    /// 4: a bridge with NAT: the client connects to a forwarded port (DNAT).
    Bridge,
    /// 5: userspace networking, the rootless default: slirp4netns provides tap0 in the
    /// container's namespace and forwards a host loopback port to it.
    Slirp,
}

impl NetMode {
    /// The kernel's modes (1–4): every profile runs them.
    pub const ALL: [NetMode; 4] = [NetMode::Host, NetMode::Private, NetMode::Veth, NetMode::Bridge];

    /// The configuration name of the mode.
    pub fn config_name(self) -> &'static str {
        match self {
            NetMode::Host => "net-host",
            NetMode::Private => "net-private",
            NetMode::Veth => "net-veth",
            NetMode::Bridge => "net-bridge-nat",
            NetMode::Slirp => "net-slirp",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            NetMode::Host => "mode 1: the host's network namespace (client on the host, loopback)",
            NetMode::Private => {
                "mode 2: a network namespace of its own, the client inside it (its loopback)"
            }
            NetMode::Veth => "mode 3: own network namespace, a veth pair to the host, routed (client on the host)",
            NetMode::Bridge => {
                "mode 4: own network namespace on a bridge, NAT: client on the host → forwarded port (nftables DNAT) → container"
            }
            NetMode::Slirp => {
                "mode 5: own network namespace, userspace networking (slirp4netns tap0, MTU 65520): client on the host → 127.0.0.1 port forwarded by slirp4netns (API add_hostfwd) → container"
            }
        }
    }

    /// Whether the container gets a network namespace of its own.
    pub fn own_netns(self) -> bool {
        self != NetMode::Host
    }
}

/// Where a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// What [`Plumbing::attach`] made for one container; dropping it removes all of it.
#[derive(Debug, Default)]
pub struct Plumbing {
    host_links: Vec<String>,
    slirp: Option<Slirp>,
}

/// A slirp4netns process serving one container's namespace.
#[derive(Debug)]
struct Slirp {
    child: std::process::Child,
    /// The write end of its --exit-fd: slirp4netns exits when this closes, also when the
    /// bench is killed (the kernel closes it), so no slirp4netns outlives a run.
    exit: Option<std::process::ChildStdin>,
    api: std::path::PathBuf,
}

impl Drop for Slirp {
    fn drop(&mut self) {
        drop(self.exit.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.api);
    }
}

/// The run's network session: made once the run lock is held; removes every link of ours
/// and the nft table when it starts (a killed run's leftovers) and when dropped (the
/// shared bridge and the port-forward table; also after a failure or Ctrl-C).
#[derive(Debug)]
pub struct NetSession {
    /// What the start found left from an earlier run and removed.
    pub swept: Vec<String>,
}

impl NetSession {
    pub fn open() -> Result<NetSession, BenchError> {
        Ok(NetSession { swept: sweep_stale()? })
    }
}

impl Drop for NetSession {
    fn drop(&mut self) {
        let _ = sweep_stale();
    }
}

fn nl_err(what: String) -> impl FnOnce(rtnetlink::Error) -> BenchError {
    move |e| BenchError::Setup(format!("netlink: {what}: {e}"))
}

/// Runs `f` with a netlink connection opened in the calling thread's network namespace.
fn netlink<T, F, Fut>(f: F) -> Result<T, BenchError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, BenchError>>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| BenchError::Setup(format!("netlink: starting an event loop: {e}")))?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| BenchError::Setup(format!("netlink: opening a NETLINK_ROUTE socket: {e}")))?;
        let task = tokio::spawn(conn);
        let out = f(handle).await;
        task.abort();
        out
    })
}

/// Runs `f` in a thread that has joined the network namespace at `ns_path` first (a
/// thread may switch network namespaces on its own; the process stays where it is).
pub fn in_netns<T: Send + 'static>(
    ns_path: &Path,
    f: impl FnOnce() -> Result<T, BenchError> + Send + 'static,
) -> Result<T, BenchError> {
    let ns =
        std::fs::File::open(ns_path).map_err(BenchError::io(format!("opening {}", ns_path.display())))?;
    let shown = ns_path.display().to_string();
    std::thread::spawn(move || {
        karton_sys::ns::setns(ns.as_fd(), libc::CLONE_NEWNET as u64)
            .map_err(|e| BenchError::Setup(format!("joining the network namespace {shown}: {e}")))?;
        f()
    })
    .join()
    .map_err(|_| BenchError::Setup("the network-namespace thread panicked".into()))?
}

async fn link_index(h: &Handle, name: &str) -> Result<Option<u32>, BenchError> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(m)) => Ok(Some(m.header.index)),
        Ok(None) => Ok(None),
        // The kernel answers ENODEV for a name it does not know.
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(nl_err(format!("looking up link {name}"))(e)),
    }
}

async fn need_index(h: &Handle, name: &str) -> Result<u32, BenchError> {
    link_index(h, name)
        .await?
        .ok_or_else(|| BenchError::Setup(format!("netlink: link {name} vanished right after it was made")))
}

/// Every link of ours in the host's network namespace, by name.
fn our_links() -> Result<Vec<(u32, String)>, BenchError> {
    netlink(|h| async move {
        let mut out = Vec::new();
        let mut links = h.link().get().execute();
        while let Some(m) = links.try_next().await.map_err(nl_err("listing links".into()))? {
            for a in &m.attributes {
                if let netlink_packet_route::link::LinkAttribute::IfName(n) = a {
                    if n.starts_with(LINK_PREFIX) {
                        out.push((m.header.index, n.clone()));
                    }
                }
            }
        }
        Ok(out)
    })
}

/// Names of the links of ours present now (tests check that none is left).
pub fn leftover_links() -> Result<Vec<String>, BenchError> {
    Ok(our_links()?.into_iter().map(|(_, n)| n).collect())
}

/// Whether our nftables table exists.
pub fn nft_table_exists() -> bool {
    std::process::Command::new("nft")
        .args(["list", "table", "ip", NFT_TABLE])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes every link of ours and the nft table (callers hold the run lock, which
/// guarantees that no other run owns them).
pub fn sweep_stale() -> Result<Vec<String>, BenchError> {
    let links = our_links()?;
    let names: Vec<String> = links.iter().map(|(_, n)| n.clone()).collect();
    delete_links(&names);
    let mut removed = names;
    if nft_table_exists() {
        nft_delete_table();
        removed.push(format!("nft table ip {NFT_TABLE}"));
    }
    Ok(removed)
}

fn delete_links(names: &[String]) {
    let names = names.to_vec();
    let _ = netlink(|h| async move {
        for n in &names {
            if let Ok(Some(i)) = link_index(&h, n).await {
                let _ = h.link().del(i).execute().await;
            }
        }
        Ok(())
    });
}

fn nft_delete_table() {
    let _ = std::process::Command::new("nft")
        .args(["delete", "table", "ip", NFT_TABLE])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The veth addresses of slot `slot`: 10.231.SLOT.1 (host) and .2 (container).
fn veth_addrs(slot: u8) -> (Ipv4Addr, Ipv4Addr) {
    (Ipv4Addr::new(10, 231, slot, 1), Ipv4Addr::new(10, 231, slot, 2))
}

const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 232, 0, 1);

fn bridge_name() -> String {
    format!("{LINK_PREFIX}{}br", std::process::id())
}

impl Plumbing {
    /// Connects the container whose init is `pid` (created, not started) as `mode` wants;
    /// `slot` (0–200) tells containers of one run apart; the server listens on `port`
    /// inside. Returns the guard and where clients connect (a forwarded host port for the
    /// bridge mode: 20000 + slot).
    pub fn attach(mode: NetMode, slot: u8, pid: u32, port: u16) -> Result<(Plumbing, Endpoint), BenchError> {
        let mut p = Plumbing::default();
        let ns_path = format!("/proc/{pid}/ns/net");
        let local = Endpoint { ip: Ipv4Addr::LOCALHOST, port };
        match mode {
            NetMode::Host => Ok((p, local)),
            NetMode::Private => {
                in_netns(Path::new(&ns_path), || {
                    karton_sys::ns::loopback_up()
                        .map_err(|e| BenchError::Setup(format!("bringing lo up in the container: {e}")))
                })?;
                Ok((p, local))
            }
            NetMode::Veth => {
                let (host_ip, ctr_ip) = veth_addrs(slot);
                let host = p.make_veth(slot, &ns_path, ctr_ip, 24, host_ip)?;
                netlink(|h| async move {
                    let i = need_index(&h, &host).await?;
                    h.address()
                        .add(i, IpAddr::V4(host_ip), 24)
                        .execute()
                        .await
                        .map_err(nl_err(format!("adding {host_ip}/24 to {host}")))?;
                    h.link().set(i).up().execute().await.map_err(nl_err(format!("setting {host} up")))
                })?;
                Ok((p, Endpoint { ip: ctr_ip, port }))
            }
            NetMode::Bridge => {
                let br = bridge_name();
                let ctr_ip = Ipv4Addr::new(10, 232, 0, slot.saturating_add(2));
                let host = p.make_veth(slot, &ns_path, ctr_ip, 24, BRIDGE_IP)?;
                let brc = br.clone();
                netlink(|h| async move {
                    let bi = match link_index(&h, &brc).await? {
                        Some(i) => i,
                        None => {
                            h.link()
                                .add()
                                .bridge(brc.clone())
                                .execute()
                                .await
                                .map_err(nl_err(format!("creating bridge {brc}")))?;
                            let i = need_index(&h, &brc).await?;
                            h.address()
                                .add(i, IpAddr::V4(BRIDGE_IP), 24)
                                .execute()
                                .await
                                .map_err(nl_err(format!("adding {BRIDGE_IP}/24 to {brc}")))?;
                            h.link()
                                .set(i)
                                .up()
                                .execute()
                                .await
                                .map_err(nl_err(format!("setting {brc} up")))?;
                            i
                        }
                    };
                    let i = need_index(&h, &host).await?;
                    h.link()
                        .set(i)
                        .controller(bi)
                        .execute()
                        .await
                        .map_err(nl_err(format!("attaching {host} to {brc}")))?;
                    h.link().set(i).up().execute().await.map_err(nl_err(format!("setting {host} up")))
                })?;
                let host_port = 20_000 + slot as u16;
                nft_forward(&br, host_port, ctr_ip, port)?;
                Ok((p, Endpoint { ip: BRIDGE_IP, port: host_port }))
            }
            NetMode::Slirp => {
                let host_port = 23_000 + slot as u16;
                // Recorded as soon as it runs: a failing port forward still stops it.
                let sl = p.slirp.insert(Slirp::start(pid, slot)?);
                sl.add_hostfwd(host_port, port)?;
                Ok((p, Endpoint { ip: Ipv4Addr::LOCALHOST, port: host_port }))
            }
        }
    }

    /// A veth pair `kbnPIDvSLOT` (host) / `kbnPIDcSLOT` (moved into the container's
    /// namespace and renamed eth0 there, with `ip`/`prefix`, up, default route via `gw`).
    /// Returns the host end's name.
    fn make_veth(
        &mut self,
        slot: u8,
        ns_path: &str,
        ip: Ipv4Addr,
        prefix: u8,
        gw: Ipv4Addr,
    ) -> Result<String, BenchError> {
        let pid = std::process::id();
        let host = format!("{LINK_PREFIX}{pid}v{slot}");
        let peer = format!("{LINK_PREFIX}{pid}c{slot}");
        if host.len() > 15 {
            return Err(BenchError::Setup(format!("link name {host} is longer than 15 bytes")));
        }
        let ns = std::fs::File::open(ns_path).map_err(BenchError::io(format!("opening {ns_path}")))?;
        let (hc, pc) = (host.clone(), peer.clone());
        // Recorded before it exists: a failure half-way still removes it.
        self.host_links.push(host.clone());
        netlink(|h| async move {
            h.link()
                .add()
                .veth(hc.clone(), pc.clone())
                .execute()
                .await
                .map_err(nl_err(format!("creating veth {hc}/{pc}")))?;
            let pi = need_index(&h, &pc).await?;
            use std::os::fd::AsRawFd;
            h.link()
                .set(pi)
                .setns_by_fd(ns.as_raw_fd())
                .execute()
                .await
                .map_err(nl_err(format!("moving {pc} into the container's network namespace")))
        })?;
        in_netns(Path::new(ns_path), move || {
            karton_sys::ns::loopback_up()
                .map_err(|e| BenchError::Setup(format!("bringing lo up in the container: {e}")))?;
            netlink(|h| async move {
                let i = need_index(&h, &peer).await?;
                h.link()
                    .set(i)
                    .name("eth0".into())
                    .execute()
                    .await
                    .map_err(nl_err(format!("renaming {peer} to eth0")))?;
                h.address()
                    .add(i, IpAddr::V4(ip), prefix)
                    .execute()
                    .await
                    .map_err(nl_err(format!("adding {ip}/{prefix} to eth0")))?;
                h.link().set(i).up().execute().await.map_err(nl_err("setting eth0 up".into()))?;
                h.route()
                    .add()
                    .v4()
                    .gateway(gw)
                    .execute()
                    .await
                    .map_err(nl_err(format!("adding the default route via {gw}")))
            })
        })?;
        Ok(host)
    }
}

/// The port forward of the bridge mode, the shape docker and podman give it: DNAT of
/// locally generated connections to the bridge address's `host_port` (output hook; a
/// prerouting rule would serve other machines, which this benchmark never reaches) and
/// MASQUERADE of the bridge subnet's traffic leaving by another interface. nftables has no
/// netlink crate we can build here, so the ruleset goes to `nft -f` as one transaction.
fn nft_forward(bridge: &str, host_port: u16, ctr_ip: Ipv4Addr, port: u16) -> Result<(), BenchError> {
    let ruleset = format!(
        "table ip {NFT_TABLE} {{\n\
         \tchain output {{ type nat hook output priority -100; policy accept;\n\
         \t\tip daddr {BRIDGE_IP} tcp dport {host_port} dnat to {ctr_ip}:{port}\n\t}}\n\
         \tchain prerouting {{ type nat hook prerouting priority -100; policy accept;\n\
         \t\tip daddr {BRIDGE_IP} tcp dport {host_port} dnat to {ctr_ip}:{port}\n\t}}\n\
         \tchain postrouting {{ type nat hook postrouting priority 100; policy accept;\n\
         \t\tip saddr 10.232.0.0/24 oifname != \"{bridge}\" masquerade\n\t}}\n}}\n"
    );
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            BenchError::Setup(format!(
                "running nft for the bridge mode's port forward: {e}: apt-get install nftables"
            ))
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(ruleset.as_bytes()).map_err(BenchError::io("writing the nft ruleset"))?;
    }
    let out = child.wait_with_output().map_err(BenchError::io("waiting for nft"))?;
    if !out.status.success() {
        return Err(BenchError::Setup(format!(
            "nft refused the port-forward rules ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Slirp {
    /// `slirp4netns --configure --mtu=65520 --disable-host-loopback --api-socket S PID tap0`:
    /// tap0 in the namespace of `pid` with 10.0.2.100/24 and a default route via 10.0.2.2.
    /// Returns once slirp4netns says it is configured (its --ready-fd), 10 s at most.
    fn start(pid: u32, slot: u8) -> Result<Slirp, BenchError> {
        use std::io::Read;
        use std::process::{Command, Stdio};
        let api = std::env::temp_dir().join(format!("{LINK_PREFIX}{}-slirp{slot}.sock", std::process::id()));
        let _ = std::fs::remove_file(&api);
        let mut child = Command::new("slirp4netns")
            .args(["--configure", "--mtu=65520", "--disable-host-loopback", "--exit-fd=0", "--ready-fd=1"])
            .arg("--api-socket")
            .arg(&api)
            .arg(pid.to_string())
            .arg("tap0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                BenchError::Setup(format!(
                    "running slirp4netns for mode 5: {e}: slirp4netns not installed? apt-get install slirp4netns"
                ))
            })?;
        let exit = child.stdin.take();
        let ready = child.stdout.take();
        let mut s = Slirp { child, exit, api };
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(mut out) = ready {
            std::thread::spawn(move || {
                let mut b = [0u8; 1];
                let _ = tx.send(out.read(&mut b).map(|n| n == 1 && b[0] == b'1').unwrap_or(false));
            });
        }
        let ok = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap_or(false);
        if !ok {
            // Killed first: its stderr then ends and can be read whole.
            let _ = s.child.kill();
            let _ = s.child.wait();
            let mut err = String::new();
            if let Some(mut e) = s.child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err(BenchError::Setup(format!(
                "slirp4netns did not get ready for pid {pid} within 10 s: {}",
                err.trim()
            )));
        }
        Ok(s)
    }

    /// Forwards 127.0.0.1:`host_port` to the container's `guest_port` (10.0.2.100) through
    /// the API socket: one JSON request, one JSON answer per connection.
    fn add_hostfwd(&self, host_port: u16, guest_port: u16) -> Result<(), BenchError> {
        use std::io::{Read, Write};
        let req = format!(
            "{{\"execute\": \"add_hostfwd\", \"arguments\": {{\"proto\": \"tcp\", \"host_addr\": \"127.0.0.1\", \"host_port\": {host_port}, \"guest_port\": {guest_port}}}}}"
        );
        let what = format!("slirp4netns API {}", self.api.display());
        let mut c = std::os::unix::net::UnixStream::connect(&self.api)
            .map_err(BenchError::io(format!("connecting to the {what}")))?;
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .map_err(BenchError::io(format!("setting a timeout on the {what}")))?;
        c.write_all(req.as_bytes()).map_err(BenchError::io(format!("writing to the {what}")))?;
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut answer = String::new();
        c.read_to_string(&mut answer).map_err(BenchError::io(format!("reading the {what}")))?;
        check_api_answer(&answer).map_err(|e| {
            BenchError::Setup(format!("slirp4netns add_hostfwd {host_port} → {guest_port}: {e}"))
        })
    }
}

/// slirp4netns answers `{"return": {...}}` or `{"error": {"desc": "..."}}`.
pub fn check_api_answer(answer: &str) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_str(answer.trim()).map_err(|e| format!("not JSON ({e}): {answer:?}"))?;
    if let Some(e) = v.get("error") {
        return Err(e
            .get("desc")
            .and_then(|d| d.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| e.to_string()));
    }
    if v.get("return").is_none() {
        return Err(format!("unexpected answer {answer:?}"));
    }
    Ok(())
}

impl Drop for Plumbing {
    fn drop(&mut self) {
        // Deleting the host end of a veth deletes its peer (in the container's namespace).
        delete_links(&self.host_links);
        drop(self.slirp.take());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn slirp_api_answers_are_checked() {
        assert!(check_api_answer("{\"return\": {\"id\": 1}}").is_ok());
        let e = check_api_answer(
            "{\"error\": {\"desc\": \"bad request: add_hostfwd: bad arguments.host_port\"}}",
        )
        .unwrap_err();
        assert!(e.contains("host_port"), "{e}");
        assert!(check_api_answer("").is_err());
        assert!(check_api_answer("{}").is_err());
    }

    #[test]
    fn only_the_kernel_modes_are_in_all() {
        assert!(!NetMode::ALL.contains(&NetMode::Slirp));
        assert!(NetMode::Slirp.own_netns());
        assert_eq!(NetMode::Slirp.config_name(), "net-slirp");
    }
}
