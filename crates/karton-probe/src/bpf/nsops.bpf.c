/* Instrument 4: latency of unshare, setns, clone, clone3 split by the CLONE_NEW* flags asked
 * for. syscalls:sys_enter_X / sys_exit_X tracepoints fire only for these four calls, so the
 * rest of the system pays nothing. The child's return from clone has no entry record (fresh
 * task storage) and is ignored: the figure is the parent's enter -> exit time.
 *
 * The syscalls:* events need tracefs mounted (libbpf reads their ids there). Where it is not,
 * user space loads the tp_btf raw_syscalls variant at the end instead, which filters on the
 * syscall number first (every syscall of the host then pays a few ns). */
#include "common.h"

#define OP_UNSHARE 1
#define OP_SETNS 2
#define OP_CLONE 3
#define OP_CLONE3 4

#define NEW_MASK 0x7E020080ULL /* every CLONE_NEW* bit incl. CLONE_NEWTIME (0x80) */

struct ns_key {
	__u64 key;
	__u32 op;
	__u32 flags;
};

struct ns_val {
	__u64 count;
	__u64 errors;
	__u64 sum;
	__u64 min;
	__u64 max;
	__u64 hist[HIST_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct ns_key);
	__type(value, struct ns_val);
} ns_stats SEC(".maps");

TRACK_FORK_PROG

static __always_inline int enter(__u32 op, __u64 flags)
{
	struct tstate *s = task_state(bpf_get_current_task_btf());

	if (!s)
		return 0;
	s->ns_op = op;
	s->ns_flags = flags;
	s->ns_ts = bpf_ktime_get_ns();
	return 0;
}

static __always_inline int leave(__u32 op, long ret)
{
	struct tstate *s = task_state(bpf_get_current_task_btf());
	struct ns_key k = {};
	struct ns_val *v;
	__u64 d;

	if (!s || !s->ns_ts || s->ns_op != op)
		return 0;
	d = bpf_ktime_get_ns() - s->ns_ts;
	s->ns_ts = 0;
	k.key = s->key;
	k.op = op;
	k.flags = (__u32)s->ns_flags;
	v = bpf_map_lookup_elem(&ns_stats, &k);
	if (!v) {
		struct ns_val zero = {};

		bpf_map_update_elem(&ns_stats, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&ns_stats, &k);
		if (!v)
			return 0;
	}
	v->count++;
	if (ret < 0)
		v->errors++;
	v->sum += d;
	if (!v->min || d < v->min)
		v->min = d;
	if (d > v->max)
		v->max = d;
	v->hist[log2_slot(d)]++;
	return 0;
}

SEC("tp/syscalls/sys_enter_unshare")
int ns_enter_unshare(struct trace_event_raw_sys_enter *ctx)
{
	return enter(OP_UNSHARE, ctx->args[0] & NEW_MASK);
}

SEC("tp/syscalls/sys_exit_unshare")
int ns_exit_unshare(struct trace_event_raw_sys_exit *ctx)
{
	return leave(OP_UNSHARE, ctx->ret);
}

SEC("tp/syscalls/sys_enter_setns")
int ns_enter_setns(struct trace_event_raw_sys_enter *ctx)
{
	return enter(OP_SETNS, ctx->args[1] & NEW_MASK);
}

SEC("tp/syscalls/sys_exit_setns")
int ns_exit_setns(struct trace_event_raw_sys_exit *ctx)
{
	return leave(OP_SETNS, ctx->ret);
}

SEC("tp/syscalls/sys_enter_clone")
int ns_enter_clone(struct trace_event_raw_sys_enter *ctx)
{
	/* clone(2)'s low byte is the exit signal, so CLONE_NEWTIME cannot be asked for here. */
	return enter(OP_CLONE, ctx->args[0] & NEW_MASK & ~0xFFULL);
}

SEC("tp/syscalls/sys_exit_clone")
int ns_exit_clone(struct trace_event_raw_sys_exit *ctx)
{
	return leave(OP_CLONE, ctx->ret);
}

SEC("tp/syscalls/sys_enter_clone3")
int ns_enter_clone3(struct trace_event_raw_sys_enter *ctx)
{
	__u64 flags = 0;

	/* struct clone_args starts with the u64 flags; it lives in user memory. */
	bpf_probe_read_user(&flags, sizeof(flags), (void *)ctx->args[0]);
	return enter(OP_CLONE3, flags & NEW_MASK);
}

SEC("tp/syscalls/sys_exit_clone3")
int ns_exit_clone3(struct trace_event_raw_sys_exit *ctx)
{
	return leave(OP_CLONE3, ctx->ret);
}

/* x86_64 syscall numbers */
#define NR_clone 56
#define NR_unshare 272
#define NR_setns 308
#define NR_clone3 435

SEC("tp_btf/sys_enter")
int BPF_PROG(ns_raw_enter, struct pt_regs *regs, long id)
{
	__u64 flags = 0;

	switch (id) {
	case NR_unshare:
		return enter(OP_UNSHARE, regs->di & NEW_MASK);
	case NR_setns:
		return enter(OP_SETNS, regs->si & NEW_MASK);
	case NR_clone:
		return enter(OP_CLONE, regs->di & NEW_MASK & ~0xFFULL);
	case NR_clone3:
		bpf_probe_read_user(&flags, sizeof(flags), (void *)regs->di);
		return enter(OP_CLONE3, flags & NEW_MASK);
	}
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(ns_raw_exit, struct pt_regs *regs, long ret)
{
	switch (regs->orig_ax) {
	case NR_unshare:
		return leave(OP_UNSHARE, ret);
	case NR_setns:
		return leave(OP_SETNS, ret);
	case NR_clone:
		return leave(OP_CLONE, ret);
	case NR_clone3:
		return leave(OP_CLONE3, ret);
	}
	return 0;
}
