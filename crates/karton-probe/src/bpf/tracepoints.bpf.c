/* Instrument 6, part 2 (an APPROXIMATION of the kernel footprint): the distinct tracepoints
 * hit while measured tasks run. One raw_tp program is attached by user space to every
 * tracepoint that vmlinux BTF lists (btf_trace_* typedefs), each link with the tracepoint's
 * index as its cookie. Heavy: every tracepoint on the host runs this program while attached.
 * Tracepoints hit in interrupt context are charged to the interrupted task. */
#include "common.h"

struct tp_key {
	__u64 key;
	__u64 idx;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tp_key);
	__type(value, __u64);
} tp_hits SEC(".maps");

TRACK_FORK_PROG

SEC("raw_tp")
int tp_hit(void *ctx)
{
	struct tstate *s = task_state(bpf_get_current_task_btf());
	struct tp_key k = {};
	__u64 *c, one = 1;

	if (!s)
		return 0;
	k.key = s->key;
	k.idx = bpf_get_attach_cookie(ctx);
	c = bpf_map_lookup_elem(&tp_hits, &k);
	if (c)
		(*c)++;
	else
		bpf_map_update_elem(&tp_hits, &k, &one, BPF_NOEXIST);
	return 0;
}
