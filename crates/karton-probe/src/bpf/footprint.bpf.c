/* Instrument 6 (an APPROXIMATION of the kernel-code footprint): kernel instruction pointers
 * seen by perf cpu-clock sampling while a measured task runs. Distinct IPs are symbolized
 * in user space through /proc/kallsyms. */
#include "common.h"

struct fp_totals {
	__u64 kernel;
	__u64 user;
};

struct fp_key {
	__u64 key;
	__u64 ip;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fp_key);
	__type(value, __u64);
} fp_ips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct fp_totals);
} fp_totals SEC(".maps");

TRACK_FORK_PROG

SEC("perf_event")
int fp_sample(struct bpf_perf_event_data *ctx)
{
	struct tstate *s = task_state(bpf_get_current_task_btf());
	struct fp_totals *t, tz = {};
	struct fp_key k = {};
	__u64 *c, one = 1, key;
	bool kernel;

	if (!s)
		return 0;
	key = s->key;
	/* x86_64: kernel text lives in the upper half of the address space. */
	kernel = ctx->regs.ip >= 0xffff800000000000ULL;
	t = bpf_map_lookup_elem(&fp_totals, &key);
	if (!t) {
		bpf_map_update_elem(&fp_totals, &key, &tz, BPF_NOEXIST);
		t = bpf_map_lookup_elem(&fp_totals, &key);
		if (!t)
			return 0;
	}
	if (!kernel) {
		t->user++;
		return 0;
	}
	t->kernel++;
	k.key = key;
	k.ip = ctx->regs.ip;
	c = bpf_map_lookup_elem(&fp_ips, &k);
	if (c)
		(*c)++;
	else
		bpf_map_update_elem(&fp_ips, &k, &one, BPF_NOEXIST);
	return 0;
}
