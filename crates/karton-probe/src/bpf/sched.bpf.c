/* Instrument 2: run-queue latency (wakeup -> switch-in), context switches, on-CPU time. */
#include "common.h"

struct sched_val {
	__u64 switches;   /* times a measured task was switched out */
	__u64 oncpu_ns;   /* completed on-CPU slices */
	__u64 runq_count;
	__u64 runq_sum;
	__u64 hist[HIST_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct sched_val);
} sched_stats SEC(".maps");

TRACK_FORK_PROG

static __always_inline struct sched_val *val(__u64 key)
{
	struct sched_val *v = bpf_map_lookup_elem(&sched_stats, &key);

	if (!v) {
		struct sched_val zero = {};

		bpf_map_update_elem(&sched_stats, &key, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&sched_stats, &key);
	}
	return v;
}

static __always_inline void mark_runnable(struct task_struct *p)
{
	struct tstate *s = task_state(p);

	if (s)
		s->wake_ts = bpf_ktime_get_ns();
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(sched_wakeup, struct task_struct *p)
{
	mark_runnable(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(sched_wakeup_new, struct task_struct *p)
{
	mark_runnable(p);
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns();
	struct tstate *s = task_state(prev);
	struct sched_val *v;

	if (s) {
		v = val(s->key);
		if (v) {
			v->switches++;
			if (s->oncpu_ts)
				v->oncpu_ns += now - s->oncpu_ts;
		}
		s->oncpu_ts = 0;
		/* Preempted while runnable: it waits on the run queue from now on. */
		if (prev_state == 0)
			s->wake_ts = now;
	}
	s = task_state(next);
	if (s) {
		if (s->wake_ts) {
			__u64 d = now - s->wake_ts;

			v = val(s->key);
			if (v) {
				v->runq_count++;
				v->runq_sum += d;
				v->hist[log2_slot(d)]++;
			}
			s->wake_ts = 0;
		}
		s->oncpu_ts = now;
	}
	return 0;
}
