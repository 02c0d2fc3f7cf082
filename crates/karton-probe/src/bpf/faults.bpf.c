/* Instrument 3: user page faults per key (exceptions:page_fault_user). */
#include "common.h"

struct fault_val {
	__u64 faults;
	__u64 write_faults;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct fault_val);
} fault_stats SEC(".maps");

TRACK_FORK_PROG

SEC("tp_btf/page_fault_user")
int BPF_PROG(page_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	struct tstate *s = task_state(bpf_get_current_task_btf());
	struct fault_val *v;
	__u64 key;

	if (!s)
		return 0;
	key = s->key;
	v = bpf_map_lookup_elem(&fault_stats, &key);
	if (!v) {
		struct fault_val zero = {};

		bpf_map_update_elem(&fault_stats, &key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&fault_stats, &key);
		if (!v)
			return 0;
	}
	v->faults++;
	if (error_code & 2) /* X86_PF_WRITE */
		v->write_faults++;
	return 0;
}
