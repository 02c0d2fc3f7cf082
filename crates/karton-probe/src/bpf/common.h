/* Shared by every karton-probe BPF object: the target filter and per-task state.
 *
 * Each object carries its own copy of these maps, so that one object failing to load
 * never takes the others down. The filter decision is made once per task and cached in
 * task-local storage: the pid namespace and the tgid of a task never change, so one
 * task_storage_get per event is all the filtering costs afterwards. */
#ifndef KARTON_COMMON_H
#define KARTON_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

#define MODE_ALL 0   /* every task, keyed by pid-ns inum */
#define MODE_PIDNS 1 /* tasks whose pid namespace is target_ns */
#define MODE_TGID 2  /* tgids in `tracked`, which follows forks */

#define HIST_SLOTS 40 /* log2 buckets of nanoseconds: slot i = [2^i, 2^(i+1)) ns */

/* The only .rodata object of every program, so it sits at offset 0 and user space
 * writes it before load (libbpf then freezes it: the verifier prunes dead branches). */
struct config {
	__u64 target_ns;   /* MODE_PIDNS: pid-ns inum to measure */
	__u32 filter_mode; /* MODE_* */
	__u32 want_latency;/* syscalls: record entry times and latency histograms */
	__u32 slots;       /* syscalls: keys with a fast-path slot */
	__u32 cfg_pad;
};
const volatile struct config cfg = {};
#define filter_mode (cfg.filter_mode)
#define target_ns (cfg.target_ns)

#define ST_UNKNOWN 0
#define ST_IN 1
#define ST_OUT 2

struct tstate {
	__u64 key;      /* pid-ns inum of the task */
	__u32 state;    /* ST_* */
	__u32 ns_op;    /* nsops: which call is in flight */
	__u64 sc_ts;    /* syscalls: sys_enter time */
	__u64 wake_ts;  /* sched: time the task became runnable */
	__u64 oncpu_ts; /* sched: time the task was switched in */
	__u64 ns_ts;    /* nsops: entry time */
	__u64 ns_flags; /* nsops: CLONE_NEW* flags asked for */
	__u32 slot;     /* syscalls: row block of this key in the per-CPU arrays, or NO_SLOT */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct tstate);
} tstates SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} tracked SEC(".maps");

static __always_inline __u64 task_pidns_inum(struct task_struct *t)
{
	struct pid *p = BPF_CORE_READ(t, thread_pid);
	unsigned int level = BPF_CORE_READ(p, level);
	struct pid_namespace *ns = NULL;

	/* numbers[] is a flexible array: index it through a CO-RE read of the element. */
	bpf_core_read(&ns, sizeof(ns), &p->numbers[level].ns);
	return BPF_CORE_READ(ns, ns.inum);
}

/* The same with direct loads through BTF pointers (what bpf_get_current_task_btf() and
 * tp_btf arguments are): no helper calls, several times cheaper than the probe reads above
 * on this kernel. numbers[] is a flexible array: the verifier takes constant indexes into
 * it, hence the switch; deeper nesting falls back to the probe reads. */
static __always_inline __u64 task_pidns_inum_btf(struct task_struct *t)
{
	struct pid *p = t->thread_pid;
	struct pid_namespace *ns;

	switch (p->level) {
	case 0:
		ns = p->numbers[0].ns;
		break;
	case 1:
		ns = p->numbers[1].ns;
		break;
	case 2:
		ns = p->numbers[2].ns;
		break;
	case 3:
		ns = p->numbers[3].ns;
		break;
	default:
		return task_pidns_inum(t);
	}
	return ns->ns.inum;
}

/* The task's state if the task is one we measure, else NULL. */
static __always_inline struct tstate *task_state(struct task_struct *t)
{
	struct tstate *s;

	if (!t || t->pid == 0) /* idle tasks are not workloads */
		return NULL;
	s = bpf_task_storage_get(&tstates, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s)
		return NULL;
	if (s->state == ST_UNKNOWN) {
		__u32 tgid = t->tgid;

		s->key = task_pidns_inum_btf(t);
		if (filter_mode == MODE_ALL)
			s->state = ST_IN;
		else if (filter_mode == MODE_PIDNS)
			s->state = s->key == target_ns ? ST_IN : ST_OUT;
		else
			s->state = bpf_map_lookup_elem(&tracked, &tgid) ? ST_IN : ST_OUT;
	}
	return s->state == ST_IN ? s : NULL;
}

/* MODE_TGID: a child of a tracked process is tracked. Runs before the child first runs. */
static __always_inline void track_fork(struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid, ctgid;
	__u8 one = 1;

	if (filter_mode != MODE_TGID)
		return;
	ptgid = parent->tgid;
	if (!bpf_map_lookup_elem(&tracked, &ptgid))
		return;
	ctgid = child->tgid;
	bpf_map_update_elem(&tracked, &ctgid, &one, BPF_ANY);
}

static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 r = 0, shift;

	shift = (v > 0xFFFFFFFFULL) << 5; v >>= shift; r = shift;
	shift = (v > 0xFFFF) << 4; v >>= shift; r |= shift;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r < HIST_SLOTS ? r : HIST_SLOTS - 1;
}

#define TRACK_FORK_PROG                                                              \
	SEC("tp_btf/sched_process_fork")                                                 \
	int BPF_PROG(track_fork_prog, struct task_struct *parent, struct task_struct *child) \
	{                                                                                \
		track_fork(parent, child);                                                   \
		return 0;                                                                    \
	}

#endif
