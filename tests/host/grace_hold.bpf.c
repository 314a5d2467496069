// A non-sleepable program that stays running a while, as the agent's do: fentry (a
// trampoline: rcu_read_lock() + migrate_disable(), so preemptible on CONFIG_PREEMPT) on
// getpgid (the harness picks the function this kernel's BTF has; tp_btf/sys_enter where
// fentry is refused), for the one thread tests/unit/pools_harness.cc names; `loops` bpf_loop
// callbacks of 64 atomic adds each. The harness calls a grace period while it runs.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct hold {
	__u64 started, done, spins;
	__u32 tid, loops;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct hold);
} hold_state SEC(".maps");

struct spin_ctx {
	struct hold *h;
};

static long spin(__u32 i, void *ctx)
{
	struct spin_ctx *c = ctx;

	for (int j = 0; j < 64; j++)
		__sync_fetch_and_add(&c->h->spins, 1);
	return 0;
}

static int hold(void)
{
	__u32 key = 0;
	struct hold *h = bpf_map_lookup_elem(&hold_state, &key);
	struct spin_ctx c = { h };

	if (!h || !h->tid || (__u32)bpf_get_current_pid_tgid() != h->tid)
		return 0;
	__sync_fetch_and_add(&h->started, 1);
	bpf_loop(h->loops, spin, &c, 0); /* the ctx must be on the stack before 6.x */
	__sync_fetch_and_add(&h->done, 1);
	return 0;
}

SEC("fentry/__x64_sys_getpgid")
int hold_fentry(void *ctx)
{
	return hold();
}

/* where fentry is refused (the host tier's kernel): runs with preemption disabled */
SEC("tp_btf/sys_enter")
int hold_tp(void *ctx)
{
	return hold();
}

char LICENSE[] SEC("license") = "GPL";
