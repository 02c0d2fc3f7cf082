//! `linux.memoryPolicy`: the NUMA memory policy of the container's process
//! (set_mempolicy(2), inherited across fork and execve).
//!
//! [`parse`] checks the policy at create (so a bad one is refused before anything runs);
//! [`apply`] sets it in the calling thread, meant for the init right before execve.

use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType as F, MemoryPolicyModeType as M};

use crate::error::{Error, Result};

const MPOL_DEFAULT: i32 = 0;
const MPOL_PREFERRED: i32 = 1;
const MPOL_BIND: i32 = 2;
const MPOL_INTERLEAVE: i32 = 3;
const MPOL_LOCAL: i32 = 4;
const MPOL_PREFERRED_MANY: i32 = 5;
const MPOL_WEIGHTED_INTERLEAVE: i32 = 6;
const MPOL_F_NUMA_BALANCING: i32 = 1 << 13;
const MPOL_F_RELATIVE_NODES: i32 = 1 << 14;
const MPOL_F_STATIC_NODES: i32 = 1 << 15;

/// Where the kernel lists the NUMA nodes this machine can ever have.
const POSSIBLE_NODES: &str = "/sys/devices/system/node/possible";

/// A checked policy, ready for set_mempolicy(2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemPolicy {
    /// MPOL_* mode.
    pub mode: i32,
    /// MPOL_F_* flags, ORed.
    pub flags: i32,
    /// Bit n of word n/64 = node n.
    pub nodes: Vec<u64>,
}

/// Checks `linux.memoryPolicy` against this machine's possible NUMA nodes. `None` when
/// the config has none (the inherited policy stays).
pub fn parse(policy: Option<&LinuxMemoryPolicy>) -> Result<Option<MemPolicy>> {
    let Some(p) = policy else { return Ok(None) };
    let possible = match std::fs::read_to_string(POSSIBLE_NODES) {
        Ok(s) => Some(parse_nodes(s.trim(), POSSIBLE_NODES)?),
        Err(_) => None,
    };
    parse_with(p, possible.as_deref())
}

/// Sets `policy` for the calling thread; its children and an execve inherit it.
pub fn apply(policy: &MemPolicy) -> Result<()> {
    karton_sys::process::set_mempolicy(policy.mode, policy.flags, &policy.nodes).map_err(|err| Error::Sys {
        context: format!(
            "linux.memoryPolicy: set_mempolicy(mode {}, flags {:#x}, nodes {})",
            policy.mode,
            policy.flags,
            format_nodes(&policy.nodes)
        ),
        err,
    })
}

/// `possible`: the node bitmap of the machine, `None` on a kernel without NUMA.
fn parse_with(p: &LinuxMemoryPolicy, possible: Option<&[u64]>) -> Result<Option<MemPolicy>> {
    let (mode, mode_name) = mode_of(p);
    let mut flags = 0;
    for f in p.flags().iter().flatten() {
        flags |= match f {
            F::MpolFNumaBalancing => MPOL_F_NUMA_BALANCING,
            F::MpolFRelativeNodes => MPOL_F_RELATIVE_NODES,
            F::MpolFStaticNodes => MPOL_F_STATIC_NODES,
        };
    }
    let text = p.nodes().as_deref().unwrap_or("").trim();
    let nodes = parse_nodes(text, "linux.memoryPolicy.nodes")?;
    check_flags(mode, mode_name, flags)?;
    check_nodes_for_mode(mode, mode_name, flags, nodes.iter().any(|w| *w != 0), text)?;
    let Some(possible) = possible else {
        if mode == MPOL_DEFAULT && flags == 0 {
            // Nothing to set: without NUMA every policy is the default one.
            return Ok(None);
        }
        return Err(Error::Unsupported(format!(
            "linux.memoryPolicy.mode: this kernel has no NUMA support ({POSSIBLE_NODES} is missing), so {mode_name} cannot be set: remove linux.memoryPolicy"
        )));
    };
    // Relative nodes are folded onto the allowed ones by the kernel: any number goes.
    if flags & MPOL_F_RELATIVE_NODES == 0 {
        check_possible(&nodes, possible)?;
    }
    Ok(Some(MemPolicy { mode, flags, nodes }))
}

fn bad<T>(field: &str, msg: String) -> Result<T> {
    Err(Error::Config(format!("linux.memoryPolicy.{field}: {msg}")))
}

/// The MPOL_* mode and its name.
fn mode_of(p: &LinuxMemoryPolicy) -> (i32, &'static str) {
    match p.mode() {
        M::MpolDefault => (MPOL_DEFAULT, "MPOL_DEFAULT"),
        M::MpolBind => (MPOL_BIND, "MPOL_BIND"),
        M::MpolInterleave => (MPOL_INTERLEAVE, "MPOL_INTERLEAVE"),
        M::MpolWeightedInterleave => (MPOL_WEIGHTED_INTERLEAVE, "MPOL_WEIGHTED_INTERLEAVE"),
        M::MpolPreferred => (MPOL_PREFERRED, "MPOL_PREFERRED"),
        M::MpolPreferredMany => (MPOL_PREFERRED_MANY, "MPOL_PREFERRED_MANY"),
        M::MpolLocal => (MPOL_LOCAL, "MPOL_LOCAL"),
    }
}

fn check_flags(mode: i32, mode_name: &str, flags: i32) -> Result<()> {
    if flags & MPOL_F_STATIC_NODES != 0 && flags & MPOL_F_RELATIVE_NODES != 0 {
        return bad(
            "flags",
            "MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other: keep one".into(),
        );
    }
    if flags & MPOL_F_NUMA_BALANCING != 0 && !matches!(mode, MPOL_BIND | MPOL_PREFERRED_MANY) {
        return bad("flags", format!("MPOL_F_NUMA_BALANCING works only with MPOL_BIND or MPOL_PREFERRED_MANY, not {mode_name}: remove the flag"));
    }
    Ok(())
}

/// Whether the mode takes nodes (and node flags), needs them, or may go without.
fn check_nodes_for_mode(mode: i32, mode_name: &str, flags: i32, has_nodes: bool, text: &str) -> Result<()> {
    match mode {
        MPOL_DEFAULT | MPOL_LOCAL => {
            if has_nodes {
                return bad("nodes", format!("{mode_name} takes no nodes, got {text:?}: remove nodes, or use MPOL_BIND to restrict the nodes"));
            }
            if flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES) != 0 {
                return bad(
                    "flags",
                    format!(
                        "{mode_name} takes no node flags: remove MPOL_F_STATIC_NODES/MPOL_F_RELATIVE_NODES"
                    ),
                );
            }
        }
        // An empty MPOL_PREFERRED means "the local node", as the kernel defines it.
        MPOL_PREFERRED if !has_nodes && flags & (MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES) != 0 => {
            return bad(
                "flags",
                "MPOL_PREFERRED without nodes takes no node flags: add nodes or remove the flags".into(),
            );
        }
        MPOL_PREFERRED if !has_nodes => {}
        _ if !has_nodes => {
            return bad("nodes", format!("{mode_name} needs nodes, e.g. \"0-1\": set the NUMA nodes to use"))
        }
        _ => {}
    }
    Ok(())
}

/// Every node is one this machine can have.
fn check_possible(nodes: &[u64], possible: &[u64]) -> Result<()> {
    let beyond: Vec<u64> =
        nodes.iter().enumerate().map(|(i, w)| w & !possible.get(i).copied().unwrap_or(0)).collect();
    if beyond.iter().any(|w| *w != 0) {
        return bad(
            "nodes",
            format!(
                "{} not on this machine (possible nodes: {}): use nodes from {POSSIBLE_NODES}",
                format_nodes(&beyond),
                format_nodes(possible)
            ),
        );
    }
    Ok(())
}

/// "0-3,7" → bitmap. Empty → no nodes.
fn parse_nodes(text: &str, field: &str) -> Result<Vec<u64>> {
    const MAX_NODE: u32 = 1023;
    let bad = |msg: String| Err(Error::Config(format!("{field}: {msg}")));
    let mut mask: Vec<u64> = Vec::new();
    if text.is_empty() {
        return Ok(mask);
    }
    for part in text.split(',') {
        let part = part.trim();
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let (Ok(lo), Ok(hi)) = (a.parse::<u32>(), b.parse::<u32>()) else {
            return bad(format!("{part:?} in {text:?} is not a node number or range: write e.g. \"0-3,7\""));
        };
        if lo > hi {
            return bad(format!("range {part:?} runs backwards: write it low-high"));
        }
        if hi > MAX_NODE {
            return bad(format!("node {hi} is beyond the largest node number karton accepts ({MAX_NODE})"));
        }
        for n in lo..=hi {
            let (w, bit) = ((n / 64) as usize, n % 64);
            if mask.len() <= w {
                mask.resize(w + 1, 0);
            }
            mask[w] |= 1 << bit;
        }
    }
    Ok(mask)
}

/// Bitmap → "0-3,7" (for messages).
fn format_nodes(mask: &[u64]) -> String {
    let nodes: Vec<u32> =
        (0..mask.len() as u32 * 64).filter(|n| mask[(n / 64) as usize] & (1 << (n % 64)) != 0).collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < nodes.len() {
        let mut j = i;
        while j + 1 < nodes.len() && nodes[j + 1] == nodes[j] + 1 {
            j += 1;
        }
        out.push(if i == j { nodes[i].to_string() } else { format!("{}-{}", nodes[i], nodes[j]) });
        i = j + 1;
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(",")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy(json: &str) -> LinuxMemoryPolicy {
        serde_json::from_str(json).unwrap()
    }

    fn err(json: &str, possible: &[u64]) -> String {
        parse_with(&policy(json), Some(possible)).unwrap_err().to_string()
    }

    #[test]
    fn node_lists() {
        assert_eq!(parse_nodes("0-3,7", "n").unwrap(), vec![0b1000_1111]);
        assert_eq!(parse_nodes("64", "n").unwrap(), vec![0, 1]);
        assert_eq!(parse_nodes("", "n").unwrap(), Vec::<u64>::new());
        assert!(parse_nodes("3-1", "n").is_err());
        assert!(parse_nodes("a", "n").is_err());
        assert!(parse_nodes("0,,1", "n").is_err());
        assert!(parse_nodes("5000", "n").is_err());
        assert_eq!(format_nodes(&[0b1000_1111]), "0-3,7");
        assert_eq!(format_nodes(&[]), "none");
    }

    #[test]
    fn valid_policies() {
        let two = [0b11u64];
        let p = parse_with(
            &policy(r#"{"mode": "MPOL_BIND", "nodes": "0-1", "flags": ["MPOL_F_STATIC_NODES"]}"#),
            Some(&two),
        )
        .unwrap()
        .unwrap();
        assert_eq!(p, MemPolicy { mode: MPOL_BIND, flags: MPOL_F_STATIC_NODES, nodes: vec![0b11] });
        let p =
            parse_with(&policy(r#"{"mode": "MPOL_INTERLEAVE", "nodes": "1"}"#), Some(&two)).unwrap().unwrap();
        assert_eq!((p.mode, p.nodes), (MPOL_INTERLEAVE, vec![0b10]));
        assert!(parse_with(&policy(r#"{"mode": "MPOL_DEFAULT"}"#), Some(&two)).unwrap().is_some());
        assert!(parse_with(&policy(r#"{"mode": "MPOL_LOCAL", "nodes": ""}"#), Some(&two)).unwrap().is_some());
        assert!(parse_with(&policy(r#"{"mode": "MPOL_PREFERRED"}"#), Some(&two)).unwrap().is_some());
        assert!(parse_with(
            &policy(r#"{"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}"#),
            Some(&two)
        )
        .is_ok());
        // Relative nodes may name more nodes than the machine has: the kernel folds them.
        assert!(parse_with(
            &policy(r#"{"mode": "MPOL_BIND", "nodes": "5", "flags": ["MPOL_F_RELATIVE_NODES"]}"#),
            Some(&two)
        )
        .is_ok());
        // No NUMA: the default policy is nothing to do; anything else is refused.
        assert_eq!(parse_with(&policy(r#"{"mode": "MPOL_DEFAULT"}"#), None).unwrap(), None);
        assert!(parse_with(&policy(r#"{"mode": "MPOL_BIND", "nodes": "0"}"#), None).is_err());
    }

    #[test]
    fn refusals_name_the_field() {
        let one = [1u64];
        let e = err(r#"{"mode": "MPOL_DEFAULT", "nodes": "0"}"#, &one);
        assert!(e.contains("linux.memoryPolicy.nodes") && e.contains("MPOL_DEFAULT takes no nodes"), "{e}");
        let e = err(r#"{"mode": "MPOL_LOCAL", "nodes": "0"}"#, &one);
        assert!(e.contains("linux.memoryPolicy.nodes"), "{e}");
        let e = err(r#"{"mode": "MPOL_BIND", "nodes": "0-3"}"#, &one);
        assert!(
            e.contains("linux.memoryPolicy.nodes")
                && e.contains("1-3 not on this machine")
                && e.contains("possible nodes: 0"),
            "{e}"
        );
        let e = err(r#"{"mode": "MPOL_BIND"}"#, &one);
        assert!(e.contains("needs nodes"), "{e}");
        let e = err(
            r#"{"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}"#,
            &one,
        );
        assert!(e.contains("linux.memoryPolicy.flags"), "{e}");
        let e = err(r#"{"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}"#, &one);
        assert!(e.contains("MPOL_F_NUMA_BALANCING"), "{e}");
        let e = err(r#"{"mode": "MPOL_PREFERRED", "flags": ["MPOL_F_STATIC_NODES"]}"#, &one);
        assert!(e.contains("linux.memoryPolicy.flags"), "{e}");
        let e = err(r#"{"mode": "MPOL_BIND", "nodes": "zero"}"#, &one);
        assert!(e.contains("linux.memoryPolicy.nodes"), "{e}");
        // An unknown mode does not even parse: the config error names the field.
        let text = r#"{"ociVersion": "1.2.1", "linux": {"memoryPolicy": {"mode": "MPOL_FASTEST"}}}"#;
        let e = crate::config::parse_spec(text, std::path::Path::new("config.json")).unwrap_err().to_string();
        assert!(e.contains("linux.memoryPolicy.mode") && e.contains("MPOL_FASTEST"), "{e}");
    }

    /// set_mempolicy for real, in this test's own thread (the policy is per thread; the
    /// thread ends with the test, and MPOL_DEFAULT is restored anyway).
    #[test]
    fn apply_sets_the_threads_policy() {
        let Some(default) = parse(Some(&policy(r#"{"mode": "MPOL_DEFAULT"}"#))).unwrap() else {
            return karton_testkit::skip("this kernel has no NUMA support");
        };
        assert_eq!(default.mode, MPOL_DEFAULT);
        std::thread::spawn(|| {
            let get = || karton_sys::process::get_mempolicy().unwrap();
            let bind = parse(Some(&policy(r#"{"mode": "MPOL_BIND", "nodes": "0"}"#))).unwrap().unwrap();
            apply(&bind).unwrap();
            assert_eq!(get(), (MPOL_BIND, 0, vec![1]));
            let inter = parse(Some(&policy(
                r#"{"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}"#,
            )))
            .unwrap()
            .unwrap();
            apply(&inter).unwrap();
            assert_eq!(get(), (MPOL_INTERLEAVE, MPOL_F_STATIC_NODES, vec![1]));
            apply(&parse(Some(&policy(r#"{"mode": "MPOL_LOCAL"}"#))).unwrap().unwrap()).unwrap();
            assert_eq!(get().0, MPOL_LOCAL);
            apply(&parse(Some(&policy(r#"{"mode": "MPOL_DEFAULT"}"#))).unwrap().unwrap()).unwrap();
            assert_eq!(get(), (MPOL_DEFAULT, 0, vec![]));
        })
        .join()
        .unwrap();
    }
    #[test]
    fn steps_check_one_thing_each() {
        assert!(check_possible(&[0b11], &[0b111]).is_ok());
        let e = check_possible(&[0b1001], &[0b111]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("linux.memoryPolicy.nodes: 3 not on this machine"), "{e}");
        assert!(check_flags(MPOL_BIND, "MPOL_BIND", MPOL_F_NUMA_BALANCING).is_ok());
        assert!(check_flags(MPOL_INTERLEAVE, "MPOL_INTERLEAVE", MPOL_F_NUMA_BALANCING).is_err());
        assert!(check_nodes_for_mode(MPOL_PREFERRED, "MPOL_PREFERRED", 0, false, "").is_ok());
        assert!(check_nodes_for_mode(MPOL_BIND, "MPOL_BIND", 0, false, "").is_err());
        assert!(check_nodes_for_mode(MPOL_LOCAL, "MPOL_LOCAL", 0, true, "0").is_err());
    }
}
