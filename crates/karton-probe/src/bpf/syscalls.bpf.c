/* Instrument 1: per key, per syscall: count, errors, log2 latency histogram.
 * tp_btf on raw_syscalls sys_enter/sys_exit; entry time in task storage.
 *
 * Fast path: each key (pid-ns inum) gets a slot, assigned once per task and cached in its
 * task storage; counters live in per-CPU ARRAYS at [slot * NR_MAX + nr], whose lookups the
 * verifier inlines (no hashing). Keys beyond the slots fall back to a per-CPU hash. */
#include "common.h"

#define NR_MAX 512
#define NO_SLOT 0xFFFFFFFFu

struct sc_cnt {
	__u64 count;
	__u64 errors;
};

struct sc_lat {
	__u64 lat_count; /* calls whose entry was seen (started after attach) */
	__u64 lat_sum;
	__u64 hist[HIST_SLOTS];
};

/* max_entries = slots * NR_MAX, set by user space before load. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 8 * NR_MAX);
	__type(key, __u32);
	__type(value, struct sc_cnt);
} sc_cnt SEC(".maps");

/* Same indexing; max_entries 1 when latency is off. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 8 * NR_MAX);
	__type(key, __u32);
	__type(value, struct sc_lat);
} sc_lat SEC(".maps");

/* key (pid-ns inum) -> slot */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u32);
} sc_slots SEC(".maps");

/* [0]: next free slot */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} sc_next SEC(".maps");

struct sc_key {
	__u64 key;
	__u32 nr;
	__u32 pad;
};

struct sc_val {
	__u64 count;
	__u64 errors;
	__u64 lat_count;
	__u64 lat_sum;
	__u64 hist[HIST_SLOTS];
};

/* Fallback for keys beyond the slots, and syscall numbers >= NR_MAX. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct sc_key);
	__type(value, struct sc_val);
} sc_stats SEC(".maps");

TRACK_FORK_PROG

static __noinline __u32 assign_slot(__u64 key)
{
	__u32 zero = 0, *next, *have, slot;

	have = bpf_map_lookup_elem(&sc_slots, &key);
	if (have)
		return *have;
	next = bpf_map_lookup_elem(&sc_next, &zero);
	if (!next)
		return NO_SLOT;
	slot = __sync_fetch_and_add(next, 1);
	if (slot >= cfg.slots)
		return NO_SLOT;
	/* Two tasks of a new key may race: the loser uses the winner's slot. */
	if (bpf_map_update_elem(&sc_slots, &key, &slot, BPF_NOEXIST)) {
		have = bpf_map_lookup_elem(&sc_slots, &key);
		return have ? *have : NO_SLOT;
	}
	return slot;
}

static __always_inline struct tstate *sc_state(void)
{
	struct tstate *s = task_state(bpf_get_current_task_btf());

	if (s && s->slot == 0 && s->pad == 0) {
		/* pad marks "slot assigned": slot 0 is a valid slot. */
		s->slot = assign_slot(s->key);
		s->pad = 1;
	}
	return s;
}

static __always_inline void slow_path(__u64 key, __u32 nr, long ret, __u64 d)
{
	struct sc_key k = {};
	struct sc_val *v;

	k.key = key;
	k.nr = nr;
	v = bpf_map_lookup_elem(&sc_stats, &k);
	if (!v) {
		struct sc_val zero = {};

		bpf_map_update_elem(&sc_stats, &k, &zero, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&sc_stats, &k);
		if (!v)
			return;
	}
	v->count++;
	if (ret < 0 && ret >= -4095)
		v->errors++;
	if (d) {
		v->lat_count++;
		v->lat_sum += d;
		v->hist[log2_slot(d)]++;
	}
}

/* Adds one syscall exit to the slot's rows (or to the fallback hash). */
static __always_inline void record(__u32 slot, __u64 key, __u32 nr, long ret, __u64 d)
{
	struct sc_cnt *c;
	__u32 idx;

	if (slot == NO_SLOT || nr >= NR_MAX) {
		slow_path(key, nr, ret, d);
		return;
	}
	idx = slot * NR_MAX + nr;
	c = bpf_map_lookup_elem(&sc_cnt, &idx);
	if (!c)
		return;
	c->count++;
	if (ret < 0 && ret >= -4095)
		c->errors++;
	if (d) {
		struct sc_lat *l = bpf_map_lookup_elem(&sc_lat, &idx);

		if (l) {
			l->lat_count++;
			l->lat_sum += d;
			l->hist[log2_slot(d)]++;
		}
	}
}

/* One container (MODE_PIDNS): the key is read with direct loads and compared, so tasks
 * outside the container never touch task storage; the container owns slot 0 (user space
 * seeds it). Task storage holds only the entry time, when latency is wanted. */
static __always_inline bool in_target_ns(struct task_struct *t)
{
	return t->pid != 0 && task_pidns_inum_btf(t) == target_ns;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sc_enter, struct pt_regs *regs, long id)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct tstate *s;

	if (filter_mode == MODE_PIDNS) {
		if (!in_target_ns(t))
			return 0;
		s = bpf_task_storage_get(&tstates, t, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	} else {
		s = task_state(t);
	}
	if (s)
		s->sc_ts = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sc_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct tstate *s;
	__u64 d = 0;

	/* cfg is read-only: the verifier drops whichever branches do not apply. */
	if (filter_mode == MODE_PIDNS) {
		if (!in_target_ns(t))
			return 0;
		if (cfg.want_latency) {
			s = bpf_task_storage_get(&tstates, t, 0, 0);
			if (s && s->sc_ts) {
				d = bpf_ktime_get_ns() - s->sc_ts;
				s->sc_ts = 0;
			}
		}
		record(0, target_ns, (__u32)regs->orig_ax, ret, d);
		return 0;
	}
	s = sc_state();
	if (!s)
		return 0;
	if (cfg.want_latency && s->sc_ts) {
		d = bpf_ktime_get_ns() - s->sc_ts;
		s->sc_ts = 0;
	}
	record(s->slot, s->key, (__u32)regs->orig_ax, ret, d);
	return 0;
}

/* Calibration only: an empty program on the same tracepoint. Its cost is the floor any
 * raw_syscalls instrument pays on this kernel (tracepoint slow path + BPF dispatch). */
SEC("tp_btf/sys_exit")
int BPF_PROG(sc_null, struct pt_regs *regs, long ret)
{
	return 0;
}
