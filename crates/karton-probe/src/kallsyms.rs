//! Kernel symbol lookup through /proc/kallsyms, for the footprint instrument.

use std::fs;

use crate::ProbeError;

pub(crate) struct Kallsyms {
    /// (address, name) of text symbols, sorted by address.
    syms: Vec<(u64, String)>,
}

impl Kallsyms {
    pub(crate) fn load() -> Result<Self, ProbeError> {
        let text = fs::read_to_string("/proc/kallsyms")
            .map_err(|source| ProbeError::Io { what: "reading /proc/kallsyms".into(), source })?;
        let mut syms = Vec::new();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if !matches!(kind, "t" | "T" | "w" | "W") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if addr != 0 {
                syms.push((addr, name.to_string()));
            }
        }
        if syms.is_empty() {
            // kptr_restrict hides the addresses from this process.
            return Err(ProbeError::Kallsyms);
        }
        syms.sort_unstable_by_key(|s| s.0);
        Ok(Self { syms })
    }

    /// The function containing `ip`: the nearest text symbol at or below it.
    pub(crate) fn resolve(&self, ip: u64) -> Option<&str> {
        let i = self.syms.partition_point(|s| s.0 <= ip);
        if i == 0 {
            return None;
        }
        Some(self.syms[i - 1].1.as_str())
    }
}
