/* Instrument 7: softirq time per vector (HI, TIMER, NET_TX, NET_RX, ... RCU), system-wide.
 *
 * Softirqs run in whatever task context the CPU happens to be in (the end of a hard
 * interrupt, local_bh_enable() in a sending task, ksoftirqd), so charging them to a task or
 * a container would be arbitrary: this object measures the whole host and has no filter,
 * hence no common.h (no target config, no task storage, no tracked map to allocate).
 *
 * softirq_entry records the time and the vector in a per-CPU slot; softirq_exit of the same
 * vector on the same CPU adds the difference to that vector's per-CPU totals. Softirqs do
 * not nest on one CPU (a hard interrupt inside one only raises more, run after it), so one
 * slot per CPU suffices; a softirq already running at attach time has no entry and is not
 * counted. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define SIRQ_VECS 10 /* NR_SOFTIRQS: HI .. RCU */

/* Completed softirqs of one vector on one CPU. */
struct sirq_val {
	__u64 count;
	__u64 total_ns;
};

/* The softirq in progress on one CPU; ts == 0: none seen entering. */
struct sirq_start {
	__u64 ts;
	__u32 vec;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SIRQ_VECS);
	__type(key, __u32);
	__type(value, struct sirq_val);
} sirq_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sirq_start);
} sirq_start SEC(".maps");

SEC("tp_btf/softirq_entry")
int BPF_PROG(sirq_entry, unsigned int vec)
{
	__u32 zero = 0;
	struct sirq_start *s = bpf_map_lookup_elem(&sirq_start, &zero);

	if (!s)
		return 0;
	s->ts = bpf_ktime_get_ns();
	s->vec = vec;
	return 0;
}

SEC("tp_btf/softirq_exit")
int BPF_PROG(sirq_exit, unsigned int vec)
{
	__u32 zero = 0, key = vec;
	struct sirq_start *s = bpf_map_lookup_elem(&sirq_start, &zero);
	struct sirq_val *v;
	__u64 ts;

	if (!s)
		return 0;
	ts = s->ts;
	s->ts = 0;
	if (!ts || s->vec != vec || vec >= SIRQ_VECS)
		return 0;
	v = bpf_map_lookup_elem(&sirq_stats, &key);
	if (v) {
		/* Per-CPU values, and this CPU is in the softirq: no other writer. */
		v->count++;
		v->total_ns += bpf_ktime_get_ns() - ts;
	}
	return 0;
}
