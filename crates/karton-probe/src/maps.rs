//! The keys and values of the BPF maps (and the .rodata config) as Rust types: `#[repr(C)]`
//! mirrors of the structs in src/bpf/*.bpf.c. Each is checked at compile time against the
//! size clang gave the C struct (build.rs reads it from the object's BTF), so the two sides
//! cannot drift apart silently. Decoding copies field by field from the map's bytes: no
//! unsafe, and a short buffer is `None`, not garbage.

use crate::HIST_SLOTS;

/// Sizes of the C structs, from the objects' BTF.
mod bpf_sizes {
    include!(concat!(env!("OUT_DIR"), "/bpf_sizes.rs"));
}

/// A field of a shared struct: read from and written to native-endian bytes.
pub(crate) trait Field: Sized {
    fn read(d: &mut &[u8]) -> Option<Self>;
    fn write(&self, out: &mut Vec<u8>);
    /// Field-wise sum of per-CPU values (wrapping, as the kernel's counters do).
    fn add(&mut self, other: &Self);
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn read(d: &mut &[u8]) -> Option<Self> {
                let (head, rest) = d.split_first_chunk::<{ std::mem::size_of::<$t>() }>()?;
                *d = rest;
                Some(<$t>::from_ne_bytes(*head))
            }
            fn write(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_ne_bytes());
            }
            fn add(&mut self, other: &Self) {
                *self = self.wrapping_add(*other);
            }
        }
    )*};
}
int_field!(u8, u32, i32, u64);

impl<T: Field + Copy + Default, const N: usize> Field for [T; N] {
    fn read(d: &mut &[u8]) -> Option<Self> {
        let mut a = [T::default(); N];
        for x in &mut a {
            *x = T::read(d)?;
        }
        Some(a)
    }
    fn write(&self, out: &mut Vec<u8>) {
        self.iter().for_each(|x| x.write(out));
    }
    fn add(&mut self, other: &Self) {
        self.iter_mut().zip(other).for_each(|(a, b)| a.add(b));
    }
}

/// Decodes a whole value (or key) from a map's bytes; `None` if it is too short.
pub(crate) fn decode<T: Field>(mut d: &[u8]) -> Option<T> {
    T::read(&mut d)
}

/// Decodes each CPU's value and sums them field by field (`None`: no CPU, or a short value).
pub(crate) fn sum_percpu<T: Field>(vals: &[Vec<u8>]) -> Option<T> {
    let mut it = vals.iter();
    let mut acc: T = decode(it.next()?)?;
    for v in it {
        acc.add(&decode(v)?);
    }
    Some(acc)
}

/// A `#[repr(C)]` struct shared with the BPF side, its size checked against the C struct's.
macro_rules! shared_struct {
    ($(#[$m:meta])* $name:ident = $size:expr, { $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy)]
        pub(crate) struct $name {
            $($(#[$fm])* pub $f: $t),*
        }
        const _: () = assert!(
            std::mem::size_of::<$name>() == $size,
            concat!(stringify!($name), " and its C struct differ in size: update both sides together")
        );
        impl Field for $name {
            fn read(d: &mut &[u8]) -> Option<Self> {
                Some(Self { $($f: Field::read(d)?),* })
            }
            fn write(&self, out: &mut Vec<u8>) {
                $(self.$f.write(out);)*
            }
            fn add(&mut self, other: &Self) {
                $(self.$f.add(&other.$f);)*
            }
        }
    };
}

/// A log2 histogram of nanoseconds: HIST_SLOTS buckets, as in common.h.
type Buckets = [u64; HIST_SLOTS];

shared_struct! {
    /// common.h `struct config`: the only .rodata object of every program, written before load.
    Config = bpf_sizes::CONFIG, {
        target_ns: u64,
        filter_mode: u32,
        want_latency: u32,
        slots: u32,
        cfg_pad: u32,
    }
}

impl Config {
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(std::mem::size_of::<Self>());
        self.write(&mut out);
        out
    }
}

shared_struct! {
    /// syscalls.bpf.c: counts of the per-CPU array fast path (`sc_cnt`).
    ScCnt = bpf_sizes::SC_CNT, { count: u64, errors: u64 }
}

shared_struct! {
    /// syscalls.bpf.c: latencies of the per-CPU array fast path (`sc_lat`).
    ScLat = bpf_sizes::SC_LAT, { lat_count: u64, lat_sum: u64, hist: Buckets }
}

shared_struct! {
    /// syscalls.bpf.c: key of the fallback hash `sc_stats`.
    ScKey = bpf_sizes::SC_KEY, { key: u64, nr: u32, pad: u32 }
}

shared_struct! {
    /// syscalls.bpf.c: value of the fallback hash `sc_stats`.
    ScVal = bpf_sizes::SC_VAL, { count: u64, errors: u64, lat_count: u64, lat_sum: u64, hist: Buckets }
}

shared_struct! {
    /// sched.bpf.c `sched_stats`.
    SchedVal = bpf_sizes::SCHED_VAL, { switches: u64, oncpu_ns: u64, runq_count: u64, runq_sum: u64, hist: Buckets }
}

shared_struct! {
    /// faults.bpf.c `fault_stats`.
    FaultVal = bpf_sizes::FAULT_VAL, { faults: u64, write_faults: u64 }
}

shared_struct! {
    /// faults.bpf.c `rss_exit`: a process's peak RSS when it exited.
    RssVal = bpf_sizes::RSS_VAL, { key: u64, peak_pages: u64, comm: [u8; 16] }
}

shared_struct! {
    /// nsops.bpf.c: key of `ns_stats`.
    NsKey = bpf_sizes::NS_KEY, { key: u64, op: u32, flags: u32 }
}

shared_struct! {
    /// nsops.bpf.c: value of `ns_stats` (min/max merge across CPUs as min/max, not sums).
    NsVal = bpf_sizes::NS_VAL, { count: u64, errors: u64, sum: u64, min: u64, max: u64, hist: Buckets }
}

/// Size of timeline.bpf.c's `struct event`, which no map's BTF describes (it travels
/// through the ring buffer): the C side has a _Static_assert on the same number.
const EVENT_SIZE: usize = 184;

shared_struct! {
    /// timeline.bpf.c: one ring-buffer record.
    Event = EVENT_SIZE, {
        ts: u64,
        key: u64,
        kind: u32,
        pid: u32,
        tgid: u32,
        ppid: u32,
        exit_code: i32,
        is_thread: u32,
        comm: [u8; 16],
        file: [u8; 128],
    }
}

shared_struct! {
    /// footprint.bpf.c: value of `fp_totals`.
    FpTotals = bpf_sizes::FP_TOTALS, { kernel: u64, user: u64 }
}

shared_struct! {
    /// footprint.bpf.c: key of `fp_ips`.
    FpKey = bpf_sizes::FP_KEY, { key: u64, ip: u64 }
}

shared_struct! {
    /// tracepoints.bpf.c: key of `tp_hits` (idx is the attach cookie).
    TpKey = bpf_sizes::TP_KEY, { key: u64, idx: u64 }
}

shared_struct! {
    /// softirq.bpf.c: value of `sirq_stats`, one row per softirq vector.
    SirqVal = bpf_sizes::SIRQ_VAL, { count: u64, total_ns: u64 }
}

/// A NUL-terminated C string of a fixed-size field.
pub(crate) fn cstr(d: &[u8]) -> String {
    let end = d.iter().position(|b| *b == 0).unwrap_or(d.len());
    String::from_utf8_lossy(&d[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_short_buffers() {
        let c = Config { target_ns: 7, filter_mode: 1, want_latency: 1, slots: 8, cfg_pad: 0 };
        let b = c.to_bytes();
        assert_eq!(b.len(), std::mem::size_of::<Config>());
        let back: Config = decode(&b).expect("test value");
        assert_eq!((back.target_ns, back.filter_mode, back.slots), (7, 1, 8));
        assert!(decode::<Config>(&b[..b.len() - 1]).is_none());
    }

    #[test]
    fn percpu_values_sum_field_by_field() {
        let mut a = Vec::new();
        ScCnt { count: 2, errors: 1 }.write(&mut a);
        let mut b = Vec::new();
        ScCnt { count: 3, errors: 0 }.write(&mut b);
        let s: ScCnt = sum_percpu(&[a, b]).expect("test value");
        assert_eq!((s.count, s.errors), (5, 1));
        assert!(sum_percpu::<ScCnt>(&[]).is_none());
    }
}
