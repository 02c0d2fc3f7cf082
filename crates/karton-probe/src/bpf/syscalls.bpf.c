/* Instrument 1: per key, per syscall: count, errors, log2 latency histogram.
 * tp_btf on raw_syscalls sys_enter/sys_exit; per-CPU hash; entry time in task storage. */
#include "common.h"


struct sc_key {
	__u64 key;
	__u32 nr;
	__u32 pad;
};

struct sc_val {
	__u64 count;
	__u64 errors;
	__u64 lat_count; /* calls whose entry was seen (started after attach) */
	__u64 lat_sum;
	__u64 hist[HIST_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sc_key);
	__type(value, struct sc_val);
} sc_stats SEC(".maps");

TRACK_FORK_PROG

SEC("tp_btf/sys_enter")
int BPF_PROG(sc_enter, struct pt_regs *regs, long id)
{
	struct tstate *s = task_state(bpf_get_current_task_btf());

	if (s)
		s->sc_ts = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sc_exit, struct pt_regs *regs, long ret)
{
	struct tstate *s = task_state(bpf_get_current_task_btf());
	struct sc_key k = {};
	struct sc_val *v;

	if (!s)
		return 0;
	k.key = s->key;
	k.nr = (__u32)regs->orig_ax;
	v = bpf_map_lookup_elem(&sc_stats, &k);
	if (!v) {
		struct sc_val zero = {};

		bpf_map_update_elem(&sc_stats, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&sc_stats, &k);
		if (!v)
			return 0;
	}
	v->count++;
	if (ret < 0 && ret >= -4095)
		v->errors++;
	if (cfg.want_latency && s->sc_ts) {
		__u64 d = bpf_ktime_get_ns() - s->sc_ts;

		s->sc_ts = 0;
		v->lat_count++;
		v->lat_sum += d;
		v->hist[log2_slot(d)]++;
	}
	return 0;
}
