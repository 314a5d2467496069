// A non-sleepable program that stays running for a while (up to 2^23 bpf_loop
// callbacks, inside rcu_read_lock() as BPF_PROG_TEST_RUN runs raw_tp programs), so
// tests/unit/pools_harness.cc can call a grace period while it runs.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct hold {
	__u64 started, done, spins;
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

	__sync_fetch_and_add(&c->h->spins, 1);
	return 0;
}

SEC("raw_tp/sys_enter")
int hold(void *ctx)
{
	__u32 key = 0;
	struct hold *h = bpf_map_lookup_elem(&hold_state, &key);
	struct spin_ctx c = { h };

	if (!h)
		return 0;
	__sync_fetch_and_add(&h->started, 1);
	bpf_loop(1 << 23, spin, &c, 0); /* the ctx must be on the stack before 6.x */
	__sync_fetch_and_add(&h->done, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
