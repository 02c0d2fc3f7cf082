//! Loading and checking an OCI bundle's config.json.
//!
//! Parse errors name the file, the JSON path of the field, the line and the column.
//! Semantic checks name the field and say how to fix it; they run before anything is
//! created, so a bad config leaves nothing behind.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use karton_ns::NsType;
use oci_spec::runtime::{Linux, LinuxNamespace, LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// A parsed config.json with where it came from, for messages.
#[derive(Debug, Clone)]
pub struct Config {
    pub spec: Spec,
    pub path: PathBuf,
    /// The raw text: copied into the state directory so later commands (delete's poststop
    /// hooks, exec) see the config the container was created with.
    pub text: String,
}

impl Config {
    /// A config built in memory; `origin` names it in messages.
    pub fn from_spec(spec: Spec, origin: impl Into<PathBuf>) -> Config {
        let text = serde_json::to_string_pretty(&spec).unwrap_or_default();
        Config { spec, path: origin.into(), text }
    }
}

/// Reads `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Config> {
    let path = bundle.join("config.json");
    if !bundle.is_dir() {
        return Err(Error::Config(format!(
            "bundle {}: not a directory: pass --bundle with the directory that holds config.json and the rootfs",
            bundle.display()
        )));
    }
    let bytes = std::fs::read(&path).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => "create one with `karton spec`",
            std::io::ErrorKind::PermissionDenied => "check its permissions and those of the bundle directory",
            std::io::ErrorKind::IsADirectory => "config.json must be a file",
            _ => "check the file and the filesystem it is on",
        };
        Error::Config(format!("{}: cannot read: {e}: {hint}", path.display()))
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count() + 1;
        Error::Config(format!(
            "{}: is not valid UTF-8 (byte {at}, line {line}): JSON must be UTF-8; save the file in that encoding",
            path.display()
        ))
    })?;
    let spec = parse_spec(&text, &path)?;
    Ok(Config { spec, path, text })
}

/// Parses config.json text; `origin` names the file in messages.
pub fn parse_spec(text: &str, origin: &Path) -> Result<Spec> {
    // Plain serde_json first: tracking the JSON path of every value costs time and code
    // (a create parses the config on its start path); only a config that fails is parsed
    // again with the path, for the message.
    if let Ok(spec) = serde_json::from_str::<Spec>(text) {
        return Ok(spec);
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let spec: Spec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.inner();
        let msg = strip_position(&inner.to_string());
        let at = if field == "." { String::new() } else { format!("{field}: ") };
        Error::Config(format!(
            "{}: {at}{msg} (line {}, column {}): fix this field",
            origin.display(),
            inner.line(),
            inner.column()
        ))
    })?;
    Ok(spec)
}

fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The 1-based line on which `"key"` first appears in `text`, for messages about fields
/// that parsed but make no sense.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    let needle = format!("\"{key}\"");
    text.find(&needle).map(|i| text[..i].matches('\n').count() + 1)
}

/// The line of `"needle"` inside the `i`-th entry of `mounts` (the only objects with a
/// "destination" key), so that an option repeated elsewhere is found in the right mount.
pub fn line_in_mount(text: &str, i: usize, needle: &str) -> Option<usize> {
    let mut pos = text.find("\"mounts\"")?;
    for _ in 0..=i {
        pos += text[pos..].find("\"destination\"")? + 1;
    }
    let obj = text[..pos].rfind('{')?;
    let end = obj + text[obj..].find('}')?;
    let off = text[obj..end].find(&format!("\"{needle}\""))?;
    Some(text[..obj + off].matches('\n').count() + 1)
}

/// One namespace request from `linux.namespaces`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsRequest {
    pub kind: NsType,
    /// None: create a new one; Some: join the namespace at this path.
    pub path: Option<PathBuf>,
}

pub fn ns_type(t: LinuxNamespaceType) -> NsType {
    match t {
        LinuxNamespaceType::Mount => NsType::Mnt,
        LinuxNamespaceType::Cgroup => NsType::Cgroup,
        LinuxNamespaceType::Uts => NsType::Uts,
        LinuxNamespaceType::Ipc => NsType::Ipc,
        LinuxNamespaceType::User => NsType::User,
        LinuxNamespaceType::Pid => NsType::Pid,
        LinuxNamespaceType::Network => NsType::Net,
        LinuxNamespaceType::Time => NsType::Time,
    }
}

/// The inverse of [`ns_type`].
pub fn oci_ns_type(t: NsType) -> LinuxNamespaceType {
    match t {
        NsType::Mnt => LinuxNamespaceType::Mount,
        NsType::Cgroup => LinuxNamespaceType::Cgroup,
        NsType::Uts => LinuxNamespaceType::Uts,
        NsType::Ipc => LinuxNamespaceType::Ipc,
        NsType::User => LinuxNamespaceType::User,
        NsType::Pid => LinuxNamespaceType::Pid,
        NsType::Net => LinuxNamespaceType::Network,
        NsType::Time => LinuxNamespaceType::Time,
    }
}

pub fn namespaces(spec: &Spec) -> Vec<NsRequest> {
    let list: &[LinuxNamespace] =
        spec.linux().as_ref().and_then(|l| l.namespaces().as_deref()).unwrap_or(&[]);
    list.iter()
        .map(|n| NsRequest {
            kind: ns_type(n.typ()),
            path: n.path().as_ref().filter(|p| !p.as_os_str().is_empty()).cloned(),
        })
        .collect()
}

/// What the host supports, for checks that depend on it.
#[derive(Debug, Clone, Default)]
pub struct HostSupport {
    pub apparmor: bool,
    pub selinux: bool,
}

impl HostSupport {
    pub fn detect() -> HostSupport {
        HostSupport { apparmor: crate::lsm::apparmor_enabled(), selinux: crate::lsm::selinux_enabled() }
    }
}

/// Checks a config for a container's first process (create / run): one step per part
/// of the config, in this order, each stopping at its first error.
pub fn validate(cfg: &Config, host: &HostSupport) -> Result<()> {
    let c = Check::new(cfg);
    c.version()?;
    c.root()?;
    let Some(process) = cfg.spec.process() else {
        return c.bad("process is missing: set process.args to the command to run".into());
    };
    validate_process(process, &c.file, &|k| c.at(k), host)?;
    c.namespace_list()?;
    c.no_mounts_without_own_mount_table()?;
    c.user_namespace_mappings()?;
    if let Some(l) = cfg.spec.linux() {
        c.id_mappings(l)?;
        c.time_offsets(l)?;
        c.sysctls(l)?;
        c.unsupported_linux_fields(l)?;
        c.memory_policy(l)?;
    }
    c.uts_names()?;
    c.path_lists()?;
    c.hooks()?;
    c.mounts()
}

/// One config under [`validate`]: its file name and namespace requests, and how a
/// message names a field's line.
struct Check<'a> {
    cfg: &'a Config,
    file: String,
    nss: Vec<NsRequest>,
}

impl<'a> Check<'a> {
    fn new(cfg: &'a Config) -> Check<'a> {
        Check { cfg, file: cfg.path.display().to_string(), nss: namespaces(&cfg.spec) }
    }

    /// " (line N)" for the first line that names `key`, or nothing.
    fn at(&self, key: &str) -> String {
        match line_of(&self.cfg.text, key) {
            Some(l) => format!(" (line {l})"),
            None => String::new(),
        }
    }

    fn bad(&self, msg: String) -> Result<()> {
        Err(Error::Config(format!("{}: {msg}", self.file)))
    }

    fn unsupported(&self, msg: String) -> Result<()> {
        Err(Error::Unsupported(format!("{}: {msg}", self.file)))
    }

    /// A namespace of kind `k` made new for the container.
    fn new_ns(&self, k: NsType) -> bool {
        self.nss.iter().any(|n| n.kind == k && n.path.is_none())
    }

    fn has_ns(&self, k: NsType) -> bool {
        self.nss.iter().any(|n| n.kind == k)
    }

    /// The container's namespace of a kind is its own unless it is the runtime's: absent
    /// from the list, or a path that names the runtime's own (what the kernel itself would
    /// let a sysctl or hostname write reach).
    fn own_ns(&self, k: NsType) -> bool {
        match self.nss.iter().find(|n| n.kind == k) {
            None => false,
            Some(NsRequest { path: None, .. }) => true,
            Some(NsRequest { path: Some(p), .. }) => !is_runtime_namespace(p, k),
        }
    }

    fn version(&self) -> Result<()> {
        let version = self.cfg.spec.version();
        if version.split('.').next().unwrap_or("") != "1" {
            return self.bad(format!(
                "ociVersion {version:?}{} is not supported: karton implements runtime-spec 1.x; set \"ociVersion\": \"1.2.1\"",
                self.at("ociVersion")
            ));
        }
        Ok(())
    }

    fn root(&self) -> Result<()> {
        match self.cfg.spec.root() {
            Some(r) if !r.path().as_os_str().is_empty() => Ok(()),
            _ => self.bad(format!(
                "root.path is missing{}: set it to the rootfs directory, e.g. \"rootfs\"",
                self.at("root")
            )),
        }
    }

    /// One entry per type, and joined ones by absolute path.
    fn namespace_list(&self) -> Result<()> {
        let mut seen = HashSet::new();
        for n in &self.nss {
            if !seen.insert(n.kind) {
                return self.bad(format!(
                    "linux.namespaces lists the {} namespace twice{}: keep one entry per type",
                    n.kind.oci_name(),
                    self.at("namespaces")
                ));
            }
            if let Some(p) = n.path.as_ref().filter(|p| !p.is_absolute()) {
                return self.bad(format!(
                    "linux.namespaces: {} path {:?} is relative: use an absolute path such as /proc/PID/ns/{}",
                    n.kind.oci_name(),
                    p,
                    n.kind.proc_name()
                ));
            }
        }
        Ok(())
    }

    /// No mount table of the container's own: mounting anything would change the
    /// runtime's (the host's) or another container's. Only the root changes (chroot).
    fn no_mounts_without_own_mount_table(&self) -> Result<()> {
        if self.new_ns(NsType::Mnt) {
            return Ok(());
        }
        let spec = &self.cfg.spec;
        let how = if self.has_ns(NsType::Mnt) { "a joined mount namespace" } else { "no mount namespace" };
        let fix = "add {\"type\": \"mount\"} without a path to linux.namespaces, or remove the field";
        if spec.mounts().as_ref().is_some_and(|m| !m.is_empty()) {
            return self.bad(format!("mounts{}: the container has {how}, so its mounts would be made in a mount table that is not its own: {fix}", self.at("mounts")));
        }
        if let Some(l) = spec.linux() {
            if l.masked_paths().as_ref().is_some_and(|m| !m.is_empty()) {
                return self.bad(format!("linux.maskedPaths{}: the container has {how}, so masking would change a mount table that is not its own: {fix}", self.at("maskedPaths")));
            }
            if l.readonly_paths().as_ref().is_some_and(|m| !m.is_empty()) {
                return self.bad(format!("linux.readonlyPaths{}: the container has {how}, so it would change a mount table that is not its own: {fix}", self.at("readonlyPaths")));
            }
            if l.rootfs_propagation().as_ref().is_some_and(|p| !p.is_empty()) {
                return self.bad(format!(
                    "linux.rootfsPropagation{}: the container has {how}: {fix}",
                    self.at("rootfsPropagation")
                ));
            }
        }
        if spec.root().as_ref().is_some_and(|r| r.readonly().unwrap_or(false)) {
            return self.bad(format!("root.readonly{}: the container has {how}, so the root cannot be remounted read-only without changing a mount table that is not its own: {fix}", self.at("readonly")));
        }
        Ok(())
    }

    /// A new user namespace needs both id maps.
    fn user_namespace_mappings(&self) -> Result<()> {
        if !self.new_ns(NsType::User) {
            return Ok(());
        }
        let l = self
            .cfg
            .spec
            .linux()
            .as_ref()
            .ok_or_else(|| Error::Config(format!("{}: linux is missing", self.file)))?;
        if l.uid_mappings().as_ref().is_none_or(|m| m.is_empty())
            || l.gid_mappings().as_ref().is_none_or(|m| m.is_empty())
        {
            return self.bad(format!(
                "a new user namespace needs linux.uidMappings and linux.gidMappings{}: map container uid 0 to a host uid, e.g. {{\"containerID\": 0, \"hostID\": 100000, \"size\": 65536}}",
                self.at("namespaces")
            ));
        }
        Ok(())
    }

    /// Mappings map something, and only where there is a user namespace.
    fn id_mappings(&self, l: &Linux) -> Result<()> {
        let mappings = l.uid_mappings().iter().flatten().chain(l.gid_mappings().iter().flatten());
        for m in mappings {
            if m.size() == 0 {
                return self.bad(format!(
                    "linux.uidMappings/gidMappings: an entry has size 0{}: give the number of ids to map",
                    self.at("uidMappings")
                ));
            }
        }
        if l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()) && !self.has_ns(NsType::User) {
            return self.bad(format!(
                "linux.uidMappings is set{} but there is no user namespace: add {{\"type\": \"user\"}} to linux.namespaces or drop the mappings",
                self.at("uidMappings")
            ));
        }
        Ok(())
    }

    /// Offsets only for a new time namespace, and only of the clocks that have them.
    fn time_offsets(&self, l: &Linux) -> Result<()> {
        let Some(offsets) = l.time_offsets() else { return Ok(()) };
        if !offsets.is_empty() && !self.new_ns(NsType::Time) {
            return self.bad(format!(
                "linux.timeOffsets is set{} but no new time namespace is requested: add {{\"type\": \"time\"}} to linux.namespaces",
                self.at("timeOffsets")
            ));
        }
        for k in offsets.keys() {
            if k != "monotonic" && k != "boottime" {
                return self.bad(format!(
                    "linux.timeOffsets.{k}{}: only \"monotonic\" and \"boottime\" clocks have offsets",
                    self.at("timeOffsets")
                ));
            }
        }
        Ok(())
    }

    fn sysctls(&self, l: &Linux) -> Result<()> {
        for key in l.sysctl().iter().flat_map(|s| s.keys()) {
            check_sysctl(key, &|k| self.own_ns(k), &self.file, &|k| self.at(k))?;
        }
        Ok(())
    }

    /// Fields karton refuses rather than accept and ignore.
    fn unsupported_linux_fields(&self, l: &Linux) -> Result<()> {
        // Refused on every host: karton does not pass context= to its mounts, and a
        // label accepted but not applied would leave the mounts unlabelled.
        if let Some(label) = l.mount_label().as_ref().filter(|s| !s.is_empty()) {
            return self.unsupported(format!(
                "linux.mountLabel {label:?}{}: karton does not label mounts (no context= mount option): \
                 remove the field (podman: --security-opt label=disable)",
                self.at("mountLabel")
            ));
        }
        if l.intel_rdt().is_some() {
            return self.unsupported(format!(
                "linux.intelRdt{}: karton does not support Intel RDT: remove the field",
                self.at("intelRdt")
            ));
        }
        if l.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return self.unsupported(format!(
                "linux.netDevices{}: karton does not move network devices yet: remove the field and configure the network namespace from a hook",
                self.at("netDevices")
            ));
        }
        Ok(())
    }

    fn memory_policy(&self, l: &Linux) -> Result<()> {
        if let Err(e) = crate::mempolicy::parse(l.memory_policy().as_ref()) {
            let (file, line) = (&self.file, self.at("memoryPolicy"));
            return Err(match e {
                Error::Unsupported(m) => Error::Unsupported(format!("{file}{line}: {m}")),
                other => Error::Config(format!("{file}{line}: {other}")),
            });
        }
        Ok(())
    }

    /// hostname and domainname only in a uts namespace of the container's own.
    fn uts_names(&self) -> Result<()> {
        let spec = &self.cfg.spec;
        for (field, value) in [("hostname", spec.hostname()), ("domainname", spec.domainname())] {
            if value.as_ref().is_some_and(|h| !h.is_empty()) && !self.own_ns(NsType::Uts) {
                return self.bad(format!(
                    "{field} is set{} but the container has no uts namespace of its own (setting it would change the runtime's): add {{\"type\": \"uts\"}} to linux.namespaces",
                    self.at(field)
                ));
            }
        }
        Ok(())
    }

    /// config-linux.md: "The values MUST be absolute paths in the container namespace."
    fn path_lists(&self) -> Result<()> {
        let Some(l) = self.cfg.spec.linux() else { return Ok(()) };
        for (field, list) in [("maskedPaths", l.masked_paths()), ("readonlyPaths", l.readonly_paths())] {
            for (i, p) in list.iter().flatten().enumerate() {
                if !p.starts_with('/') {
                    return self.bad(format!(
                        "linux.{field}[{i}] {p:?} is not absolute{}: write it as a path inside the container starting with /",
                        self.at(field)
                    ));
                }
            }
        }
        Ok(())
    }

    fn hooks(&self) -> Result<()> {
        let Some(hooks) = self.cfg.spec.hooks() else { return Ok(()) };
        #[allow(deprecated)] // prestart: deprecated by the spec, still run by engines
        let lists = [
            ("prestart", hooks.prestart()),
            ("createRuntime", hooks.create_runtime()),
            ("createContainer", hooks.create_container()),
            ("startContainer", hooks.start_container()),
            ("poststart", hooks.poststart()),
            ("poststop", hooks.poststop()),
        ];
        for (kind, list) in lists {
            for (i, h) in list.iter().flatten().enumerate() {
                // config.md: "timeout ... If set, timeout MUST be greater than zero."
                if h.timeout().is_some_and(|t| t <= 0) {
                    return self.bad(format!(
                        "hooks.{kind}[{i}].timeout {} is not positive{}: give the seconds the hook may run, or remove the field",
                        h.timeout().unwrap_or_default(),
                        self.at("timeout")
                    ));
                }
                // config.md: "path ... This specification extends the IEEE standard in that
                // path MUST be absolute."
                if !h.path().is_absolute() {
                    return self.bad(format!(
                        "hooks.{kind}[{i}].path {:?} is not absolute{}: give the hook's full path, e.g. /usr/bin/{}",
                        h.path(),
                        self.at("path"),
                        h.path().display()
                    ));
                }
            }
        }
        Ok(())
    }

    /// No id-mapped mounts, and options karton knows. A relative destination is read as
    /// relative to the container's root (config.md: "this value MAY be relative ... MUST
    /// be interpreted as relative to \"/\"").
    fn mounts(&self) -> Result<()> {
        for (i, m) in self.cfg.spec.mounts().iter().flatten().enumerate() {
            if m.uid_mappings().as_ref().is_some_and(|v| !v.is_empty())
                || m.gid_mappings().as_ref().is_some_and(|v| !v.is_empty())
            {
                return self.unsupported(format!(
                    "mounts[{i}] ({}) asks for an id-mapped mount: karton does not create id-mapped mounts yet; remove uidMappings/gidMappings from the mount",
                    m.destination().display()
                ));
            }
            let opts = m.options().clone().unwrap_or_default();
            if let Err(p) = crate::mounts::parse_options(&opts, m.typ().as_deref()) {
                let line = line_in_mount(&self.cfg.text, i, &p.option)
                    .map(|l| format!(" (line {l})"))
                    .unwrap_or_default();
                return self.bad(format!("mounts[{i}] ({}){line}: {}", m.destination().display(), p.message));
            }
        }
        Ok(())
    }
}

/// Checks `process` (shared by create and exec).
pub fn validate_process(
    p: &oci_spec::runtime::Process,
    file: &str,
    at: &dyn Fn(&str) -> String,
    host: &HostSupport,
) -> Result<()> {
    check_command(p, at)
        .and_then(|()| check_lsm_labels(p, at, host))
        .and_then(|()| check_rlimits(p, at))
        .and_then(|()| check_env(p, at))
        .and_then(|()| check_capabilities(p, at))
        .map_err(|msg| Error::Config(format!("{file}: {msg}")))
}

// The process checks below return the message only: validate_process adds the file name.

fn check_command(
    p: &oci_spec::runtime::Process,
    at: &dyn Fn(&str) -> String,
) -> std::result::Result<(), String> {
    if p.args().as_ref().is_none_or(|a| a.is_empty() || a[0].is_empty()) {
        return Err(format!("process.args is empty{}: set the command to run", at("args")));
    }
    if !p.cwd().is_absolute() {
        return Err(format!(
            "process.cwd {:?} is not absolute{}: give a path inside the container starting with /",
            p.cwd(),
            at("cwd")
        ));
    }
    Ok(())
}

fn check_lsm_labels(
    p: &oci_spec::runtime::Process,
    at: &dyn Fn(&str) -> String,
    host: &HostSupport,
) -> std::result::Result<(), String> {
    if p.apparmor_profile().as_ref().is_some_and(|s| !s.is_empty()) && !host.apparmor {
        return Err(format!(
            "process.apparmorProfile{}: AppArmor is not enabled on this host, so the profile cannot take effect: remove the field",
            at("apparmorProfile")
        ));
    }
    if p.selinux_label().as_ref().is_some_and(|s| !s.is_empty()) && !host.selinux {
        return Err(format!(
            "process.selinuxLabel{}: SELinux is not enabled on this host, so the label cannot take effect: remove the field",
            at("selinuxLabel")
        ));
    }
    Ok(())
}

fn check_rlimits(
    p: &oci_spec::runtime::Process,
    at: &dyn Fn(&str) -> String,
) -> std::result::Result<(), String> {
    for r in p.rlimits().iter().flatten() {
        // setrlimit refuses soft > hard with EINVAL whatever the privilege.
        if r.soft() > r.hard() {
            return Err(format!(
                "process.rlimits {}{}: soft limit {} is above the hard limit {}: the soft limit may be at most the hard one; lower soft or raise hard",
                r.typ(),
                at("rlimits"),
                r.soft(),
                r.hard()
            ));
        }
    }
    Ok(())
}

fn check_env(p: &oci_spec::runtime::Process, at: &dyn Fn(&str) -> String) -> std::result::Result<(), String> {
    for e in p.env().iter().flatten() {
        if !e.contains('=') {
            return Err(format!("process.env entry {e:?}{} has no '=': write it as NAME=value", at("env")));
        }
    }
    Ok(())
}

/// Every capability name is one this kernel knows.
fn check_capabilities(
    p: &oci_spec::runtime::Process,
    at: &dyn Fn(&str) -> String,
) -> std::result::Result<(), String> {
    let Some(caps) = p.capabilities() else { return Ok(()) };
    let sets = [caps.bounding(), caps.effective(), caps.inheritable(), caps.permitted(), caps.ambient()];
    for c in sets.into_iter().flatten().flatten() {
        let name = format!("CAP_{c}");
        match karton_sys::caps::from_name(&name) {
            Some(n) if n <= karton_sys::caps::last_cap() => {}
            _ => {
                return Err(format!(
                    "process.capabilities: {name}{} is not known to this kernel: remove it",
                    at(&name)
                ))
            }
        }
    }
    Ok(())
}

/// Whether `path` names the namespace of kind `kind` that this process is in (same nsfs
/// inode). A path that cannot be read is not: opening it later reports the error.
pub fn is_runtime_namespace(path: &Path, kind: NsType) -> bool {
    let own = format!("/proc/self/ns/{}", kind.proc_name());
    match (nix::sys::stat::stat(path), nix::sys::stat::stat(own.as_str())) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// The runtime spec lets a runtime refuse sysctls that would reach outside the container;
/// like runc, karton allows only namespaced ones, and only where the container's namespace
/// of that kind is not the runtime's own (new, or joined by a path that names another).
fn check_sysctl(
    key: &str,
    own: &dyn Fn(NsType) -> bool,
    file: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<()> {
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let ns = if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        NsType::Ipc
    } else if key.starts_with("net.") {
        NsType::Net
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        NsType::Uts
    } else {
        return Err(Error::Config(format!(
            "{file}: linux.sysctl.{key}{}: not a namespaced sysctl, so setting it would change the host: remove it",
            at(key)
        )));
    };
    if !own(ns) {
        return Err(Error::Config(format!(
            "{file}: linux.sysctl.{key}{}: the container's {} namespace is the runtime's own, so this would change the host: add {{\"type\": \"{}\"}} (new, or a path to another namespace) to linux.namespaces",
            at(key),
            ns.oci_name(),
            ns.oci_name()
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Result<Config> {
        let path = PathBuf::from("/b/config.json");
        let spec = parse_spec(text, &path)?;
        Ok(Config { spec, path, text: text.to_string() })
    }

    const BASE: &str = r#"{
  "ociVersion": "1.2.0",
  "root": {"path": "rootfs"},
  "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}},
  "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}]}
}"#;

    #[test]
    fn base_is_valid() {
        validate(&cfg(BASE).unwrap(), &HostSupport::default()).unwrap();
    }

    #[test]
    fn parse_error_names_field_and_line() {
        let text = BASE.replace(r#""args": ["sh"]"#, r#""args": "sh""#);
        let err = cfg(&text).unwrap_err().to_string();
        assert!(err.contains("/b/config.json: process.args"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn empty_args_names_line() {
        let text = BASE.replace(r#"["sh"]"#, "[]");
        let err = validate(&cfg(&text).unwrap(), &HostSupport::default()).unwrap_err().to_string();
        assert_eq!(err, "/b/config.json: process.args is empty (line 4): set the command to run");
    }

    #[test]
    fn unknown_major_version() {
        let text = BASE.replace("1.2.0", "2.0.0");
        let err = validate(&cfg(&text).unwrap(), &HostSupport::default()).unwrap_err().to_string();
        assert!(err.contains("ociVersion \"2.0.0\""), "{err}");
    }

    #[test]
    fn unknown_capability_is_an_error() {
        let text = BASE.replace(r#""args""#, r#""capabilities": {"bounding": ["CAP_FLY"]}, "args""#);
        assert!(cfg(&text).is_err());
    }

    #[test]
    fn hostname_needs_uts() {
        let text = BASE.replace(r#""root""#, r#""hostname": "x", "root""#);
        let err = validate(&cfg(&text).unwrap(), &HostSupport::default()).unwrap_err().to_string();
        assert!(err.contains("uts"), "{err}");
    }

    #[test]
    fn host_sysctl_refused() {
        let text = BASE.replace(r#""namespaces""#, r#""sysctl": {"vm.swappiness": "1"}, "namespaces""#);
        let err = validate(&cfg(&text).unwrap(), &HostSupport::default()).unwrap_err().to_string();
        assert!(err.contains("not a namespaced sysctl"), "{err}");
    }

    #[test]
    fn user_ns_needs_mappings() {
        let text = BASE.replace(r#"{"type": "pid"}"#, r#"{"type": "pid"}, {"type": "user"}"#);
        let err = validate(&cfg(&text).unwrap(), &HostSupport::default()).unwrap_err().to_string();
        assert!(err.contains("uidMappings"), "{err}");
    }

    #[test]
    fn relative_hook_paths_are_refused_with_kind_index_and_path() {
        let text = BASE.replace(
            r#""root""#,
            r#""hooks": {"prestart": [{"path": "/bin/true"}], "createRuntime": [{"path": "/bin/true"}, {"path": "bin/hook"}]}, "root""#,
        );
        let err = validate(&cfg(&text).unwrap(), &HostSupport::default()).unwrap_err().to_string();
        assert!(err.contains("hooks.createRuntime[1].path \"bin/hook\" is not absolute"), "{err}");
        let text = BASE.replace(r#""root""#, r#""hooks": {"poststop": [{"path": "/bin/true"}]}, "root""#);
        validate(&cfg(&text).unwrap(), &HostSupport::default()).unwrap();
    }

    #[test]
    fn rlimit_soft_above_hard_is_refused_for_what_it_is() {
        let text = BASE.replace(
            r#""args""#,
            r#""rlimits": [{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}], "args""#,
        );
        let err = validate(&cfg(&text).unwrap(), &HostSupport::default()).unwrap_err().to_string();
        assert!(
            err.contains("RLIMIT_NOFILE") && err.contains("soft limit 2048 is above the hard limit 1024"),
            "{err}"
        );
        assert!(!err.contains("CAP_SYS_RESOURCE"), "{err}");
    }

    #[test]
    fn invalid_utf8_is_reported_as_such() {
        let dir = std::env::temp_dir().join(format!("karton-utf8-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), b"{\n  \"ociVersion\": \"1.2.0\xff\"\n}").unwrap();
        let err = load(&dir).unwrap_err().to_string();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(err.contains("not valid UTF-8 (byte 24, line 2)"), "{err}");
        assert!(!err.contains("permissions"), "{err}");
    }

    #[test]
    fn mount_label_is_refused_even_where_selinux_runs() {
        let text = BASE.replace(
            r#""namespaces""#,
            r#""mountLabel": "system_u:object_r:container_file_t:s0", "namespaces""#,
        );
        let host = HostSupport { apparmor: true, selinux: true };
        let err = validate(&cfg(&text).unwrap(), &host).unwrap_err().to_string();
        assert!(err.contains("linux.mountLabel") && err.contains("does not label mounts"), "{err}");
    }

    #[test]
    fn labels_are_never_accepted_and_dropped() {
        // Where the LSM exists, a label must either be applied or refused.
        let host = HostSupport { apparmor: true, selinux: true };
        for field in ["apparmorProfile", "selinuxLabel"] {
            let text = BASE.replace(r#""args""#, &format!(r#""{field}": "x", "args""#));
            let r = validate(&cfg(&text).unwrap(), &host);
            assert!(r.is_ok(), "{field}: applied by the init where the LSM exists: {r:?}");
        }
    }

    #[test]
    fn apparmor_refused_without_host_support() {
        let text = BASE.replace(r#""args""#, r#""apparmorProfile": "x", "args""#);
        let err = validate(&cfg(&text).unwrap(), &HostSupport::default()).unwrap_err().to_string();
        assert!(err.contains("AppArmor"), "{err}");
    }

    #[test]
    fn option_line_is_found_in_its_own_mount() {
        let text = "{\"mounts\": [\n{\"destination\": \"/a\", \"options\": [\"mode=755\"]},\n{\"options\":\n[\"rbind\", \"mode=755\"], \"destination\": \"/b\"}\n]}";
        assert_eq!(line_in_mount(text, 0, "mode=755"), Some(2));
        assert_eq!(line_in_mount(text, 1, "mode=755"), Some(4));
        assert_eq!(line_in_mount(text, 1, "nosuch"), None);
        assert_eq!(line_in_mount(text, 2, "mode=755"), None);
    }

    #[test]
    fn mount_option_typo_names_mount_line_and_fix() {
        let text = BASE.replace(
            r#""linux""#,
            "\"mounts\": [{\"destination\": \"/data\", \"type\": \"bind\", \"source\": \"/srv\",\n \"options\": [\"rbind\", \"nosiud\"]}],\n\"linux\"",
        );
        let err = validate(&cfg(&text).unwrap(), &HostSupport::default()).unwrap_err().to_string();
        assert!(
            err.starts_with(r#"/b/config.json: mounts[0] (/data) (line 6): unknown option "nosiud": did you mean "nosuid"?"#),
            "{err}"
        );
    }

    /// `text` with `field` added to `linux`.
    fn with_linux(text: &str, field: &str) -> Config {
        cfg(&text.replace(r#""linux": {"#, &format!(r#""linux": {{{field}, "#))).unwrap()
    }

    fn err(r: Result<()>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn namespace_list_step_wants_one_absolute_entry_per_type() {
        let c = cfg(&BASE.replace(r#"{"type": "pid"}"#, r#"{"type": "pid"}, {"type": "pid"}"#)).unwrap();
        assert!(err(Check::new(&c).namespace_list()).contains("lists the pid namespace twice"));
        let relative = r#"{"type": "pid"}, {"type": "network", "path": "proc/1/ns/net"}"#;
        let c = cfg(&BASE.replace(r#"{"type": "pid"}"#, relative)).unwrap();
        let e = err(Check::new(&c).namespace_list());
        assert!(e.contains("network path \"proc/1/ns/net\" is relative"), "{e}");
        Check::new(&cfg(BASE).unwrap()).namespace_list().unwrap();
    }

    #[test]
    fn mount_step_refuses_mount_changes_without_a_mount_table_of_its_own() {
        let none = BASE.replace(r#"{"type": "mount"}, "#, "");
        let c = with_linux(&none, r#""maskedPaths": ["/proc/kcore"]"#);
        let e = err(Check::new(&c).no_mounts_without_own_mount_table());
        assert!(e.contains("linux.maskedPaths (line") && e.contains("no mount namespace"), "{e}");
        let joined = BASE.replace(r#"{"type": "mount"}"#, r#"{"type": "mount", "path": "/proc/1/ns/mnt"}"#);
        let c = cfg(&joined.replace(r#""path": "rootfs""#, r#""path": "rootfs", "readonly": true"#)).unwrap();
        let e = err(Check::new(&c).no_mounts_without_own_mount_table());
        assert!(e.contains("root.readonly") && e.contains("a joined mount namespace"), "{e}");
        let c = with_linux(BASE, r#""maskedPaths": ["/proc/kcore"]"#);
        Check::new(&c).no_mounts_without_own_mount_table().unwrap();
    }

    #[test]
    fn id_mapping_step_wants_sizes_and_a_user_namespace() {
        let c = with_linux(BASE, r#""uidMappings": [{"containerID": 0, "hostID": 1000, "size": 0}]"#);
        let l = c.spec.linux().clone().unwrap();
        assert!(err(Check::new(&c).id_mappings(&l)).contains("an entry has size 0"));
        let c = with_linux(BASE, r#""uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]"#);
        let l = c.spec.linux().clone().unwrap();
        assert!(err(Check::new(&c).id_mappings(&l)).contains("there is no user namespace"));
    }

    #[test]
    fn time_offset_step_wants_a_new_time_namespace_and_known_clocks() {
        let c = with_linux(BASE, r#""timeOffsets": {"monotonic": {"secs": 1}}"#);
        let l = c.spec.linux().clone().unwrap();
        assert!(err(Check::new(&c).time_offsets(&l)).contains("no new time namespace is requested"));
        let timens = BASE.replace(r#"{"type": "pid"}"#, r#"{"type": "pid"}, {"type": "time"}"#);
        let c = with_linux(&timens, r#""timeOffsets": {"realtime": {"secs": 1}}"#);
        let l = c.spec.linux().clone().unwrap();
        let e = err(Check::new(&c).time_offsets(&l));
        assert!(e.contains("linux.timeOffsets.realtime (line"), "{e}");
        let c = with_linux(&timens, r#""timeOffsets": {"boottime": {"secs": 1}}"#);
        let l = c.spec.linux().clone().unwrap();
        Check::new(&c).time_offsets(&l).unwrap();
    }

    #[test]
    fn uts_step_names_the_field_set_without_a_uts_namespace() {
        let c = cfg(&BASE.replace(r#""root""#, r#""domainname": "d", "root""#)).unwrap();
        let e = err(Check::new(&c).uts_names());
        assert!(e.starts_with("/b/config.json: domainname is set (line 3)"), "{e}");
        let uts = BASE.replace(r#"{"type": "pid"}"#, r#"{"type": "pid"}, {"type": "uts"}"#);
        let c = cfg(&uts.replace(r#""root""#, r#""domainname": "d", "root""#)).unwrap();
        Check::new(&c).uts_names().unwrap();
    }

    #[test]
    fn path_list_step_wants_absolute_paths() {
        let c = with_linux(BASE, r#""readonlyPaths": ["/proc/sys", "proc/sysrq-trigger"]"#);
        let e = err(Check::new(&c).path_lists());
        assert!(e.contains(r#"linux.readonlyPaths[1] "proc/sysrq-trigger" is not absolute"#), "{e}");
    }

    #[test]
    fn hook_step_wants_a_positive_timeout() {
        let c = cfg(&BASE.replace(
            r#""root""#,
            r#""hooks": {"poststart": [{"path": "/bin/true", "timeout": 0}]}, "root""#,
        ))
        .unwrap();
        assert!(err(Check::new(&c).hooks()).contains("hooks.poststart[0].timeout 0 is not positive"));
    }

    #[test]
    fn unsupported_steps_say_unsupported() {
        let c = with_linux(BASE, r#""intelRdt": {}"#);
        let l = c.spec.linux().clone().unwrap();
        assert!(matches!(Check::new(&c).unsupported_linux_fields(&l), Err(Error::Unsupported(_))));
        let mount = r#""mounts": [{"destination": "/d", "type": "bind", "source": "/s", "options": ["rbind"],
  "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}], "linux""#;
        let c = cfg(&BASE.replace(r#""linux""#, mount)).unwrap();
        let r = Check::new(&c).mounts();
        assert!(
            matches!(&r, Err(Error::Unsupported(m)) if m.contains("mounts[0] (/d) asks for an id-mapped mount")),
            "{r:?}"
        );
    }

    #[test]
    fn the_first_failing_step_is_reported() {
        // A bad version and empty args: the version step runs first.
        let text = BASE.replace("1.2.0", "2.0.0").replace(r#"["sh"]"#, "[]");
        let e = validate(&cfg(&text).unwrap(), &HostSupport::default()).unwrap_err().to_string();
        assert!(e.contains("ociVersion"), "{e}");
    }
    #[test]
    fn process_checks_name_the_field() {
        let process = |json: &str| -> oci_spec::runtime::Process {
            serde_json::from_str(json).unwrap_or_else(|e| panic!("test process does not parse: {e}"))
        };
        let at = |k: &str| format!(" [{k}]");
        let p = process(r#"{"user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["sh"], "env": ["A=1", "B"]}"#);
        assert_eq!(check_command(&p, &at), Ok(()));
        assert_eq!(
            check_env(&p, &at).unwrap_err(),
            "process.env entry \"B\" [env] has no '=': write it as NAME=value"
        );
        let p = process(r#"{"user": {"uid": 0, "gid": 0}, "cwd": "rel", "args": ["sh"]}"#);
        assert!(check_command(&p, &at).unwrap_err().starts_with("process.cwd \"rel\" is not absolute [cwd]"));
        let p = process(
            r#"{"user": {"uid": 0, "gid": 0}, "cwd": "/", "args": [""], "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}]}"#,
        );
        assert!(check_command(&p, &at).unwrap_err().starts_with("process.args is empty [args]"));
        assert!(check_rlimits(&p, &at)
            .unwrap_err()
            .starts_with("process.rlimits RLIMIT_NOFILE [rlimits]: soft limit 2"));
        let host = HostSupport::default();
        let p = process(r#"{"user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["sh"], "selinuxLabel": "x"}"#);
        assert!(check_lsm_labels(&p, &at, &host)
            .unwrap_err()
            .starts_with("process.selinuxLabel [selinuxLabel]"));
        assert_eq!(check_lsm_labels(&p, &at, &HostSupport { apparmor: false, selinux: true }), Ok(()));
    }
}
