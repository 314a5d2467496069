// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * iofilter: fails chosen block I/O with EIO at should_fail_bio().
 *
 * Five programs share one match rule (iofilter_match.h); user space autoloads
 * exactly one of them:
 *   fmod_ret/should_fail_bio       enforce: the return value fails the bio
 *   kprobe/should_fail_bio         enforce: bpf_override_return (fallback)
 *   fentry/should_fail_bio         observe: count what would fail
 *   tp_btf/block_bio_queue         observe, when fentry is refused (lockdown) or absent
 *   tp_btf/block_bio_queue (old)   the same before 5.11, where the tracepoint also
 *                                  passes the request_queue first
 * Map layout and the publication protocol: iofilter.h. Kernel shims: core_fixes.bpf.h.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/errno.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "iofilter.h"
#include "core_fixes.bpf.h"

/* Set by user space before load, from the running kernel (see native/loader.cc). */
const volatile __s32 bio_remapped_bit = -1; /* BIO_REMAPPED, an anonymous enum's value */
const volatile __s32 bio_chain_bit = -1;    /* BIO_CHAIN */
const volatile __s32 bio_trace_bit = -1;    /* BIO_TRACE_COMPLETION */
const volatile __u32 iof_index_mask = 0;    /* buckets of iof_index - 1 */
const volatile __u8 iof_test_dead = 0;      /* test-only: a hook that never fires */

#include "maps.bpf.h"

static __always_inline void *iof_elem(void *map, __u32 key)
{
	return bpf_map_lookup_elem(map, &key);
}

static __always_inline struct iof_state *iof_state_get(void)
{
	return iof_elem(&iof_state, 0);
}

/* The disk's published entry (and its slot), or NULL. One array load when the disk
 * has no filter. */
static __always_inline const struct iof_entry *iof_lookup(const struct iof_dev *disk, __u32 *slotp)
{
	const struct iof_entry *e;
	__u32 h = iof_hash(disk->major, disk->minor), p, v, b;
	__u64 *slot;

#pragma unroll
	for (p = 0; p < IOF_PROBES; p++) {
		b = (h + p) & iof_index_mask;
		slot = iof_elem(&iof_index, b);
		if (!slot)
			return NULL;
		v = (__u32) *
		    (volatile __u64 *)slot; /* one read: user space switches it under us */
		if (v == IOF_INDEX_EMPTY)
			return NULL;
		if (v == IOF_INDEX_TOMB)
			continue;
		e = iof_elem(&iof_entries, v - 1);
		if (e && e->disk.major == disk->major && e->disk.minor == disk->minor) {
			*slotp = v - 1;
			return e;
		}
	}
	return NULL;
}

#include "iofilter_rate.h"

static __always_inline void iof_emit(struct iof_io *io, const struct iof_filter *f,
				     struct iof_fstats *fs, __u32 range_index, __u32 outcome)
{
	struct iof_state *st;
	struct iof_event *ev;
	__u64 now = bpf_ktime_get_boot_ns();

	if (!iof_ev_admit(fs, f->events_per_sec, now)) {
		__sync_fetch_and_add(&fs->ev_dropped, 1);
		return;
	}
	ev = bpf_ringbuf_reserve(&iof_events, sizeof(*ev), 0);
	if (!ev) {
		__sync_fetch_and_add(&fs->ev_dropped, 1);
		st = iof_state_get();
		if (st)
			__sync_fetch_and_add(&st->events_lost, 1);
		return;
	}
	/* looked up here, at most events_per_sec times a second, not for every bio */
	if (!io->cg)
		io->cg = (__u64)iof_bio_cgroup((struct bio *)io->bio, 1);
	ev->time_ns = now;
	ev->sector = io->sector;
	ev->dev_sector = io->sector - io->dev_offset;
	ev->cgroup_id = iof_cgroup_id((struct cgroup *)io->cg);
	ev->dev = io->dev;
	ev->disk = io->disk;
	ev->nr_sectors = io->nr_sectors;
	ev->filter_id = f->id;
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	ev->range_index = range_index;
	ev->ops = io->ops;
	ev->outcome = outcome;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	bpf_ringbuf_submit(ev, 0);
}

/* io->cg was looked up (a scalar: read by bpf_probe_read_kernel) before liveness. */
static __always_inline int iof_cgroup_match(struct iof_io *io, const struct iof_filter *f)
{
	return iof_cgroup_under((struct cgroup *)io->cg, f->cgroup_id, f->cgroup_level);
}

static __always_inline void iof_truncated(void)
{
	struct iof_state *st = iof_state_get();

	if (st)
		__sync_fetch_and_add(&st->truncated, 1);
}

#define IOF_RANGE(i) ((const struct iof_range *)iof_elem(&iof_ranges, (i)))
#define IOF_NODE(i) ((const struct iof_node *)iof_elem(&iof_nodes, (i)))
#define IOF_COUNTER(slot) ((struct iof_counter *)iof_elem(&iof_counters, (slot)))
#define IOF_FSTATS(slot) ((struct iof_fstats *)iof_elem(&iof_fstats, (slot)))

/*
 * CLOCK_BOOTTIME for the TTL check, read at most once per jiffy per CPU: on a VM's TSC
 * bpf_ktime_get_boot_ns() costs about 70 ns (bench, a matching filter with a TTL:
 * 238 ns per I/O reading it every time, 169 ns cached, 161 ns without a TTL), and
 * bpf_jiffies64() is a load. Every cached value is a real earlier reading taken in
 * the current jiffy, so the program's "now" is never ahead and at most one tick
 * behind: a filter stops within one tick (1-10 ms) after its deadline, never before.
 * No other run of this program interleaves on this CPU (see iof_scratch).
 */
static __always_inline __u64 iof_now_ns(void)
{
	struct iof_clock *c = iof_elem(&iof_clock, 0);
	__u64 j = bpf_jiffies64(), now;

	if (c && c->jiffies == j && c->now_ns)
		return c->now_ns;
	now = bpf_ktime_get_boot_ns();
	if (c) {
		c->now_ns = now;
		c->jiffies = j;
	}
	return now;
}

#define IOF_NOW_NS() iof_now_ns()
#define IOF_RANDOM_U32() bpf_get_prandom_u32()
/* result unused: a plain atomic add, which every supported kernel verifies */
#define IOF_ADD(p, v) __sync_fetch_and_add((p), (v))
/* the fetch-add (5.12+) exists only in the object for kernels that verify it */
#ifdef IOF_NO_FETCH
#define IOF_HAVE_FETCH 0
#define IOF_FETCH_ADD(p, v) 0
#else
#define IOF_HAVE_FETCH 1
#define IOF_FETCH_ADD(p, v) __sync_fetch_and_add((p), (v))
#endif
#define IOF_CGROUP_MATCH(io, f) iof_cgroup_match((io), (f))
#define IOF_EMIT(io, f, fs, ri, oc) iof_emit((io), (f), (fs), (ri), (oc))
#define IOF_TRUNCATED() iof_truncated()

/* One layer's walk and the filters' liveness run as global functions: the verifier
 * checks each once, for any layer and phase, instead of once per call site. */
__attribute__((noinline)) int iof_walk_layer(__u32 li, __u32 phase);
__attribute__((noinline)) int iof_live_filters(void);
#define IOF_WALK_LAYER(e, io, j, li, phase) iof_walk_layer((li), (phase))
/* iof_candidates ran first on every bio with sectors (the only ones walked) */
#define IOF_WALK_START(l, io, j, li) ((j)->start[(li) & (IOF_MAX_LAYERS - 1)])
#define IOF_LIVENESS(e, io) ((__u32)iof_live_filters())

#include "iofilter_match.h"

__attribute__((noinline)) int iof_walk_layer(__u32 li, __u32 phase)
{
	struct iof_scratch *s = iof_elem(&iof_scratch, 0);
	const struct iof_entry *e;

	if (!s || li >= IOF_MAX_LAYERS)
		return 0;
	e = iof_elem(&iof_entries, s->io.slot);
	if (!e)
		return 0;
	iof_walk(e, &s->io, &s->j, li, phase);
	return 0;
}

__attribute__((noinline)) int iof_live_filters(void)
{
	struct iof_scratch *s = iof_elem(&iof_scratch, 0);
	const struct iof_entry *e;

	if (!s)
		return 0;
	e = iof_elem(&iof_entries, s->io.slot);
	if (!e)
		return 0;
	return (int)iof_liveness(e, &s->io);
}

/* Whether any layer of the entry in `slot` has a range overlapping [sector, last]
 * (ops not considered): one descent per layer, whose result the walk then starts
 * from (IOF_WALK_START) instead of descending again. A global function of its own, so
 * that the descent's many temporaries do not weigh on the caller's stack. */
__attribute__((noinline)) int iof_candidates(__u64 slot, __u64 sector, __u64 last)
{
	const struct iof_entry *e = iof_elem(&iof_entries, (__u32)slot);
	__u32 li, i, start[IOF_MAX_LAYERS] = {};
	const struct iof_layer *l;
	const struct iof_range *r;
	struct iof_scratch *s;
	int any = 0;

	if (!e)
		return 0;
#pragma unroll
	for (li = 0; li < IOF_MAX_LAYERS; li++) {
		if (li >= e->nr_layers)
			break;
		l = &e->layers[li];
		i = iof_lower_bound(l, sector);
		start[li] = i;
		if (i >= l->nr_ranges)
			continue;
		r = IOF_RANGE(l->range_off + i);
		if (r && r->start <= last)
			any = 1;
	}
	/* kept only for a bio that will be walked: I/O between ranges pays nothing more */
	s = any ? iof_elem(&iof_scratch, 0) : NULL;
	if (!s)
		return 0;
#pragma unroll
	for (li = 0; li < IOF_MAX_LAYERS; li++)
		s->j.start[li] = start[li];
	return 1;
}

/*
 * Whether `bio` may be the remainder of a split that the kernel resubmitted: it carries
 * BIO_CHAIN (the split-off piece holds a count on it) and BIO_TRACE_COMPLETION, which
 * the block layer sets on a bio's first pass only after should_fail_bio (5.10:
 * submit_bio_checks; 5.11+: submit_bio_noacct_nocheck; 7.2's bio_submit_split_bioset
 * judges the remainder directly) and clears at completion; bio_init zeroes it. A fresh
 * bio never has it, even one that carries BIO_CHAIN from the start (all but the first
 * bio of a blk_next_bio chain: discard, write zeroes, secure erase; iomap_chain_bio),
 * so a stale iof_seen record left at a reused address cannot make it skip judgement.
 * Either bit unknown: judge every bio (a remainder counted twice, never one skipped).
 */
static __always_inline int iof_resubmitted(struct bio *bio, const int probe)
{
	__u32 flags;

	if (bio_chain_bit < 0 || bio_trace_bit < 0)
		return 0;
	flags = IOF_RD(probe, bio, bi_flags);
	return (flags & (1u << (bio_chain_bit & 15))) && (flags & (1u << (bio_trace_bit & 15)));
}

/*
 * The whole per-I/O path, cheapest test first: any filter at all (one load), the
 * disk's index word, the entry's ops and span, then the match. `dedupe`: on
 * should_fail_bio, the remainder of a bio the kernel split and resubmitted (same bio,
 * iof_resubmitted, the tail of a span already judged on this disk) is skipped, so one
 * bio is drawn and counted once. Returns IOF_FAIL to fail the bio (observe: would fail).
 */
static __always_inline int iof_apply(struct bio *bio, const int probe, const int dedupe,
				     const int enforce)
{
	const struct iof_entry *e;
	struct iof_scratch *s;
	struct iof_state *st;
	struct iof_seen *seen, rec;
	struct iof_io io = {};
	__u64 key = (__u64)bio, last;
	__u32 slot = 0;
	int ret;

	if (iof_test_dead)
		return IOF_NO_MATCH;
	st = iof_state_get();
	if (!st || !st->nr_disks)
		return IOF_NO_MATCH;
	if (!iof_locate_disk(bio, &io, probe))
		return IOF_NO_MATCH;
	e = iof_lookup(&io.disk, &slot);
	if (!e || !iof_locate_rest(bio, &io, probe, bio_remapped_bit))
		return IOF_NO_MATCH;
	last = io.nr_sectors ? io.sector + io.nr_sectors - 1 : io.sector;
	if (io.nr_sectors && (!(io.ops & e->ops) || last < e->lo || io.sector > e->hi))
		return IOF_NO_MATCH; /* the common case on a filtered disk: nowhere near a range */
	if (io.nr_sectors && !iof_candidates(slot, io.sector, last))
		return IOF_NO_MATCH; /* between ranges: one descent per layer, nothing else */
	/* after the span tests, so I/O nowhere near a range does not pay for it */
	if (e->diskseq && iof_disk_seq(bio, probe) != e->diskseq)
		return IOF_NO_MATCH; /* the same number on a new medium: not the filters' disk */
	if (dedupe && iof_resubmitted(bio, probe)) {
		seen = bpf_map_lookup_elem(&iof_seen, &key);
		if (seen && seen->disk.major == io.disk.major &&
		    seen->disk.minor == io.disk.minor && seen->first < io.sector &&
		    seen->last == last)
			return IOF_NO_MATCH;
	}
	s = iof_elem(&iof_scratch, 0);
	if (!s)
		return IOF_NO_MATCH;
	io.slot = slot;
	io.bio = (__u64)bio;
	if (e->flags & IOF_ENTRY_SCOPED)
		io.cg = (__u64)iof_bio_cgroup(bio, probe);
	s->io = io;
	ret = iof_match(e, &s->io, &s->j, enforce);
	if (dedupe && ret != IOF_NO_MATCH && io.nr_sectors) {
		rec.disk = io.disk;
		rec.first = io.sector;
		rec.last = last;
		bpf_map_update_elem(&iof_seen, &key, &rec, BPF_ANY);
	}
	return ret;
}

SEC("fmod_ret/should_fail_bio")
int BPF_PROG(iofilter_fmod_ret, struct bio *bio, int ret)
{
	if (ret)
		return ret; /* already failing */
	return iof_apply(bio, 0, 1, 1) == IOF_FAIL ? -EIO : 0;
}

SEC("kprobe/should_fail_bio")
int BPF_KPROBE(iofilter_kprobe, struct bio *bio)
{
	if (iof_apply(bio, 1, 1, 1) == IOF_FAIL)
		bpf_override_return(ctx, -EIO);
	return 0;
}

SEC("fentry/should_fail_bio")
int BPF_PROG(iofilter_observe_fentry, struct bio *bio)
{
	iof_apply(bio, 0, 1, 0);
	return 0;
}

/* block_bio_queue fires once per bio (BIO_TRACE_COMPLETION), after the remap: no
 * split remainder to skip. It lost its request_queue argument in 5.11. */
SEC("tp_btf/block_bio_queue")
int BPF_PROG(iofilter_observe_tp, struct bio *bio)
{
	iof_apply(bio, 0, 0, 0);
	return 0;
}

struct request_queue;

SEC("tp_btf/block_bio_queue")
int BPF_PROG(iofilter_observe_tp_old, struct request_queue *q, struct bio *bio)
{
	iof_apply(bio, 0, 0, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
