//! Device access rules: v1 devices.allow/deny lines, and for cgroup v2 a
//! BPF_PROG_TYPE_CGROUP_DEVICE program assembled from raw instructions.
//!
//! Semantics (as runc): access is denied unless a rule allows it; rules apply in order,
//! the last matching rule wins; an "all devices, rwm" rule resets the default to its own
//! allow/deny.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use karton_sys::bpf::{self, Insn};
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::Error;

const KEY: &str = "linux.resources.devices";

/// `bpf_cgroup_dev_ctx.access_type` low 16 bits.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
/// `bpf_cgroup_dev_ctx.access_type` high 16 bits.
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One rule, checked and normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    allow: bool,
    /// None: any type.
    typ: Option<i32>,
    major: Option<u32>,
    minor: Option<u32>,
    access: i32,
}

impl Rule {
    fn is_catch_all(&self) -> bool {
        self.typ.is_none() && self.major.is_none() && self.minor.is_none() && self.access == ACC_ALL
    }
}

/// Parses rule `i`. `Ok(None)` for rules the device controller never sees (fifos).
fn parse(i: usize, r: &LinuxDeviceCgroup) -> Result<Option<Rule>, Error> {
    let err = |reason: String| Error::Device { key: format!("{KEY}[{i}]"), reason };
    let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => None,
        LinuxDeviceType::B => Some(DEV_BLOCK),
        // Unbuffered character devices are character devices to the kernel.
        LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
        // Opening a fifo is not a device access: nothing to check.
        LinuxDeviceType::P => return Ok(None),
    };
    let num = |name: &str, v: Option<i64>| -> Result<Option<u32>, Error> {
        match v {
            None | Some(-1) => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| err(format!("{name} {n} is out of range"))),
        }
    };
    let major = num("major", r.major())?;
    let minor = num("minor", r.minor())?;
    let acc = r.access().as_deref().unwrap_or("");
    let mut access = 0;
    for c in acc.chars() {
        access |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return Err(err(format!("access {acc:?} may contain only r, w and m"))),
        };
    }
    if access == 0 {
        access = ACC_ALL;
    }
    Ok(Some(Rule { allow: r.allow(), typ, major, minor, access }))
}

/// Checks every rule.
pub fn validate(rules: &[LinuxDeviceCgroup]) -> Result<(), Error> {
    rules.iter().enumerate().try_for_each(|(i, r)| parse(i, r).map(drop))
}

fn access_str(a: i32) -> String {
    let mut s = String::new();
    for (bit, c) in [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')] {
        if a & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// The v1 devices.allow/devices.deny lines for rule `i` (empty for fifo rules). An
/// "a" rule that is not a catch-all becomes one "c" and one "b" line, because the kernel
/// reads any "a" line as "every device".
pub(crate) fn v1_lines(i: usize, r: &LinuxDeviceCgroup) -> Result<Vec<String>, Error> {
    let Some(rule) = parse(i, r)? else { return Ok(Vec::new()) };
    if rule.is_catch_all() {
        return Ok(vec!["a".into()]);
    }
    let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
    let body = format!("{}:{} {}", n(rule.major), n(rule.minor), access_str(rule.access));
    Ok(match rule.typ {
        Some(DEV_BLOCK) => vec![format!("b {body}")],
        Some(_) => vec![format!("c {body}")],
        None => vec![format!("c {body}"), format!("b {body}")],
    })
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const JMP32_JNE_K: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K: 32-bit compare, no sign trouble
const EXIT: u8 = 0x95;

fn ins(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | (dst & 0xf), off, imm }
}

/// Assembles the device program for `rules` (OCI order).
///
/// r2 = device type, r3 = requested access, r4 = major, r5 = minor; then one block per
/// rule, last rule first (so the last matching rule decides), each falling through to the
/// next block on a mismatch; finally the default verdict.
pub fn build_program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>, Error> {
    let mut parsed = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        if let Some(rule) = parse(i, r)? {
            parsed.push(rule);
        }
    }
    // Only rules after the last catch-all matter; it sets the default.
    let mut default_allow = false;
    if let Some(pos) = parsed.iter().rposition(Rule::is_catch_all) {
        default_allow = parsed[pos].allow;
        parsed.drain(..=pos);
    }
    let mut p = vec![
        ins(LDX_MEM_W, 2, 1, 0, 0),
        ins(ALU64_AND_K, 2, 0, 0, 0xffff),
        ins(LDX_MEM_W, 3, 1, 0, 0),
        ins(ALU64_RSH_K, 3, 0, 0, 16),
        ins(LDX_MEM_W, 4, 1, 4, 0),
        ins(LDX_MEM_W, 5, 1, 8, 0),
    ];
    for rule in parsed.iter().rev() {
        p.extend(rule_block(rule));
    }
    p.push(ins(ALU64_MOV_K, 0, 0, 0, i32::from(default_allow)));
    p.push(ins(EXIT, 0, 0, 0, 0));
    Ok(p)
}

/// One rule's block: the rule's verdict when every check matches, else on to the next
/// block.
fn rule_block(rule: &Rule) -> Vec<Insn> {
    let mut block = Vec::new();
    // Each check jumps to the end of this block on mismatch; offsets fixed up below.
    let mut jumps = Vec::new();
    if let Some(t) = rule.typ {
        jumps.push(block.len());
        block.push(ins(JMP32_JNE_K, 2, 0, 0, t));
    }
    if rule.access != ACC_ALL {
        // Match when the request asks for nothing beyond the rule's access.
        block.push(ins(ALU64_MOV_X, 6, 3, 0, 0));
        block.push(ins(ALU64_AND_K, 6, 0, 0, !rule.access & ACC_ALL));
        jumps.push(block.len());
        block.push(ins(JMP32_JNE_K, 6, 0, 0, 0));
    }
    if let Some(m) = rule.major {
        jumps.push(block.len());
        block.push(ins(JMP32_JNE_K, 4, 0, 0, m as i32));
    }
    if let Some(m) = rule.minor {
        jumps.push(block.len());
        block.push(ins(JMP32_JNE_K, 5, 0, 0, m as i32));
    }
    block.push(ins(ALU64_MOV_K, 0, 0, 0, i32::from(rule.allow)));
    block.push(ins(EXIT, 0, 0, 0, 0));
    let end = block.len();
    for j in jumps {
        block[j].off = (end - j - 1) as i16;
    }
    block
}

/// Loads the program for `rules` and attaches it to the cgroup2 directory `dir`, then
/// detaches the device programs that were attached there before (so an update replaces
/// them only once the new program is in place).
pub fn apply_v2(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), Error> {
    let insns = build_program(rules)?;
    let cg = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map_err(|e| Error::io("opening cgroup", dir, e))?;
    let sys = |op: &'static str| move |source| Error::Sys { op, path: dir.to_path_buf(), source };
    let old = bpf::prog_query(cg.as_fd(), bpf::BPF_CGROUP_DEVICE).map_err(sys("querying device programs"))?;
    let mut log = vec![0u8; 64 * 1024];
    let license: &CStr = c"Apache-2.0";
    let prog = bpf::load_cgroup_device_prog(&insns, license, &mut log).map_err(|e| {
        let text =
            String::from_utf8_lossy(&log[..log.iter().position(|b| *b == 0).unwrap_or(0)]).into_owned();
        if text.is_empty() {
            Error::Sys { op: "loading device program", path: dir.to_path_buf(), source: e }
        } else {
            Error::Device {
                key: KEY.into(),
                reason: format!("the kernel refused the device program: {e}: {text}"),
            }
        }
    })?;
    bpf::prog_attach(cg.as_fd(), prog.as_fd(), bpf::BPF_CGROUP_DEVICE, bpf::BPF_F_ALLOW_MULTI)
        .map_err(sys("attaching device program"))?;
    for id in old {
        // A program that vanished meanwhile is already detached.
        let Ok(fd) = bpf::prog_fd_by_id(id) else { continue };
        bpf::prog_detach(cg.as_fd(), fd.as_fd(), bpf::BPF_CGROUP_DEVICE)
            .map_err(sys("detaching old device program"))?;
    }
    Ok(())
}

/// Runs a device program in user space over one request, for tests and diagnostics
/// (the same instructions the kernel runs; only the opcodes build_program emits).
pub fn eval_program(p: &[Insn], typ: char, major: u32, minor: u32, access: &str) -> Option<bool> {
    let t = match typ {
        'b' => DEV_BLOCK,
        'c' => DEV_CHAR,
        _ => return None,
    };
    let mut acc = 0;
    for c in access.chars() {
        acc |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return None,
        };
    }
    let ctx = [((acc as u32) << 16) | t as u32, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    while pc < p.len() {
        let i = p[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        match i.code {
            LDX_MEM_W => r[dst] = u64::from(*ctx.get(i.off as usize / 4)?),
            ALU64_AND_K => r[dst] &= i.imm as i64 as u64,
            ALU64_RSH_K => r[dst] >>= i.imm,
            ALU64_MOV_K => r[dst] = i.imm as i64 as u64,
            ALU64_MOV_X => r[dst] = r[src],
            JMP32_JNE_K => {
                if r[dst] as u32 != i.imm as u32 {
                    pc = (pc as i64 + 1 + i64::from(i.off)) as usize;
                    continue;
                }
            }
            EXIT => return Some(r[0] != 0),
            _ => return None,
        }
        pc += 1;
    }
    None
}

/// The v1 writes for rule `i` via `resources` (kept here beside the v2 translation).
pub(crate) fn v1_rule(i: usize, r: &LinuxDeviceCgroup) -> Result<Option<Vec<String>>, Error> {
    let lines = v1_lines(i, r)?;
    Ok(if lines.is_empty() { None } else { Some(lines) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        allow: bool,
        t: LinuxDeviceType,
        major: Option<i64>,
        minor: Option<i64>,
        acc: &str,
    ) -> LinuxDeviceCgroup {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow);
        r.set_typ(Some(t));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(acc.to_string()));
        r
    }

    #[test]
    fn program_semantics() {
        let rules = vec![
            rule(false, LinuxDeviceType::A, None, None, "rwm"),
            rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"), // null
            rule(true, LinuxDeviceType::C, Some(1), Some(5), "r"),   // zero, read only
            rule(true, LinuxDeviceType::B, Some(7), None, "rw"),
            rule(false, LinuxDeviceType::B, Some(7), Some(2), "w"),
        ];
        let p = build_program(&rules).expect("build");
        let ev = |t, ma, mi, a| eval_program(&p, t, ma, mi, a);
        assert_eq!(ev('c', 1, 3, "rw"), Some(true));
        assert_eq!(ev('c', 1, 3, "m"), Some(true));
        assert_eq!(ev('b', 1, 3, "r"), Some(false));
        assert_eq!(ev('c', 1, 5, "r"), Some(true));
        assert_eq!(ev('c', 1, 5, "rw"), Some(false));
        assert_eq!(ev('c', 1, 8, "r"), Some(false));
        assert_eq!(ev('b', 7, 9, "rw"), Some(true));
        assert_eq!(ev('b', 7, 9, "m"), Some(false));
        assert_eq!(ev('b', 7, 2, "r"), Some(true));
        assert_eq!(ev('b', 7, 2, "w"), Some(false));
        // Default without rules: deny; with an allow-all: allow.
        let p = build_program(&[]).expect("build");
        assert_eq!(eval_program(&p, 'c', 1, 3, "r"), Some(false));
        let p = build_program(&[rule(true, LinuxDeviceType::A, None, None, "rwm")]).expect("build");
        assert_eq!(eval_program(&p, 'c', 1, 3, "r"), Some(true));
    }

    #[test]
    fn v1_lines_and_bad_rules() {
        let l = |r| v1_lines(0, &r).expect("lines");
        assert_eq!(l(rule(false, LinuxDeviceType::A, None, None, "rwm")), vec!["a"]);
        assert_eq!(l(rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm")), vec!["c 1:3 rwm"]);
        assert_eq!(l(rule(true, LinuxDeviceType::A, Some(1), None, "r")), vec!["c 1:* r", "b 1:* r"]);
        assert!(l(rule(true, LinuxDeviceType::P, None, None, "r")).is_empty());
        assert!(v1_lines(0, &rule(true, LinuxDeviceType::C, Some(1), Some(3), "rx")).is_err());
        assert!(v1_lines(0, &rule(true, LinuxDeviceType::C, Some(1 << 40), Some(3), "r")).is_err());
    }
    #[test]
    fn every_check_of_a_block_jumps_past_its_end() {
        let r = Rule { allow: true, typ: Some(1), major: Some(8), minor: None, access: ACC_READ };
        let b = rule_block(&r);
        // type, access (mov, and, jne), major, verdict, exit.
        assert_eq!(b.len(), 7);
        let offs: Vec<(usize, i16)> =
            b.iter().enumerate().filter(|(_, i)| i.code == JMP32_JNE_K).map(|(n, i)| (n, i.off)).collect();
        assert_eq!(offs, vec![(0, 6), (3, 3), (4, 2)]);
        assert_eq!((b[5].code, b[5].imm), (ALU64_MOV_K, 1));
        let any = Rule { allow: false, typ: None, major: None, minor: None, access: ACC_ALL };
        assert_eq!(rule_block(&any).len(), 2);
    }
}
