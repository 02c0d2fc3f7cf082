/* Instrument 5: process timeline: fork, exec, exit with timestamps, through a ring buffer. */
#include "common.h"

#define EV_FORK 1
#define EV_EXEC 2
#define EV_EXIT 3

struct event {
	__u64 ts;
	__u64 key;
	__u32 kind;
	__u32 pid;
	__u32 tgid;
	__u32 ppid;
	__s32 exit_code;
	__u32 is_thread;
	char comm[16];
	char file[128];
};
/* User space decodes this layout (src/maps.rs Event); the ring buffer carries no BTF of it. */
_Static_assert(sizeof(struct event) == 184, "struct event: update src/maps.rs EVENT_SIZE too");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} events SEC(".maps");

static __always_inline struct event *reserve(__u32 kind, struct task_struct *t, __u64 key)
{
	struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e)
		return NULL;
	e->ts = bpf_ktime_get_ns();
	e->key = key;
	e->kind = kind;
	e->pid = t->pid;
	e->tgid = t->tgid;
	e->ppid = BPF_CORE_READ(t, real_parent, tgid);
	e->exit_code = 0;
	e->is_thread = t->pid != t->tgid;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), t->comm);
	e->file[0] = 0;
	return e;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(tl_fork, struct task_struct *parent, struct task_struct *child)
{
	struct tstate *s;
	struct event *e;

	track_fork(parent, child);
	/* The child's own state: in a new pid namespace it may fall outside the filter. */
	s = task_state(child);
	if (!s)
		return 0;
	e = reserve(EV_FORK, child, s->key);
	if (!e)
		return 0;
	e->ppid = parent->tgid;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), parent->comm);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(tl_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct tstate *s = task_state(p);
	struct event *e;

	if (!s)
		return 0;
	e = reserve(EV_EXEC, p, s->key);
	if (!e)
		return 0;
	bpf_probe_read_kernel_str(e->file, sizeof(e->file), BPF_CORE_READ(bprm, filename));
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(tl_exit, struct task_struct *p, bool group_dead)
{
	struct tstate *s;
	struct event *e;

	/* One exit per process: its last thread. */
	if (!group_dead)
		return 0;
	s = task_state(p);
	if (!s)
		return 0;
	e = reserve(EV_EXIT, p, s->key);
	if (!e)
		return 0;
	e->exit_code = p->exit_code;
	e->is_thread = 0;
	bpf_ringbuf_submit(e, 0);
	return 0;
}
