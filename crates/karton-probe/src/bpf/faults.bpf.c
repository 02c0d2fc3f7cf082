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
	struct task_struct *t = bpf_get_current_task_btf();
	struct fault_val *v;
	struct tstate *s;
	__u64 key;

	/* One container: compare the pid ns with direct loads, no task storage (cfg is
	 * read-only, so the verifier keeps only one of these branches). */
	if (filter_mode == MODE_PIDNS) {
		if (t->pid == 0 || task_pidns_inum_btf(t) != target_ns)
			return 0;
		key = target_ns;
	} else {
		s = task_state(t);
		if (!s)
			return 0;
		key = s->key;
	}
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

/* Peak RSS at exit. On this kernel sched_process_exit fires before exit_mm(), so the mm is
 * still there: peak = max(hiwater_rss, current rss) as /proc's VmHWM computes it, except
 * that the current rss is read from the percpu counters' central count (off by at most the
 * counter batch per CPU: an approximation of a few hundred KiB). */
struct rss_val {
	__u64 key;
	__u64 peak_pages;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct rss_val);
} rss_exit SEC(".maps");

SEC("tp_btf/sched_process_exit")
int BPF_PROG(rss_at_exit, struct task_struct *p, bool group_dead)
{
	struct tstate *s;
	struct mm_struct *mm;
	struct rss_val v = {};
	__s64 rss = 0, c;
	__u32 tgid;

	if (!group_dead)
		return 0;
	s = task_state(p);
	if (!s)
		return 0;
	mm = p->mm;
	if (!mm)
		return 0;
	c = mm->rss_stat[0].count; /* MM_FILEPAGES */
	rss += c > 0 ? c : 0;
	c = mm->rss_stat[1].count; /* MM_ANONPAGES */
	rss += c > 0 ? c : 0;
	c = mm->rss_stat[3].count; /* MM_SHMEMPAGES */
	rss += c > 0 ? c : 0;
	v.key = s->key;
	v.peak_pages = mm->hiwater_rss;
	if ((__u64)rss > v.peak_pages)
		v.peak_pages = rss;
	bpf_probe_read_kernel_str(v.comm, sizeof(v.comm), p->comm);
	tgid = p->tgid;
	bpf_map_update_elem(&rss_exit, &tgid, &v, BPF_ANY);
	return 0;
}
