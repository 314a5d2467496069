/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The match rule: the code that decides whether an I/O fails. It is compiled into
 * the BPF program AND, unchanged, into the host unit-test harness
 * (tests/unit/match_harness.cc), so the tests run the code the kernel runs.
 *
 * The rule, for one bio already normalised to (disk, absolute sectors, ops):
 *  - A range matches if its ops include one of the bio's and its sectors overlap the
 *    bio's [sector, sector + nr - 1]; `matched` counts on EVERY range that matches.
 *  - A zero-length bio matches only if it carries a flush (REQ_OP_FLUSH or
 *    REQ_PREFLUSH): then every filter with a flush range, on the device it was sent to
 *    or on its disk, matches (counted on those ranges through flush_matched). Other
 *    zero-length bios (zone management) never match.
 *  - A filter takes part only while live (not expired) and, if scoped, when the bio
 *    belongs to its cgroup or a descendant.
 *  - ONE random draw per matching filter per bio, however many of its ranges the bio
 *    overlaps; filters are tried in order and the first whose draw (and max-failures
 *    ticket) says "fail" fails the bio; later ones only count `matched`.
 *  - `failed` counts on every range of the failing filter that the bio matched.
 *
 * The includer defines the environment:
 *   IOF_RANGE(i), IOF_NODE(i)      -> const pointers into the pools (or NULL)
 *   IOF_COUNTER(slot), IOF_FSTATS(slot) -> writable stats (or NULL)
 *   IOF_NOW_NS()                   -> __u64, CLOCK_BOOTTIME nanoseconds
 *   IOF_RANDOM_U32()               -> __u32
 *   IOF_ADD(p, v)                  -> atomic *p += v, result unused
 *   IOF_HAVE_FETCH                 -> whether IOF_FETCH_ADD may be used (5.12+ kernels)
 *   IOF_FETCH_ADD(p, v)            -> previous value of *p, atomically incremented by v
 *   IOF_CGROUP_MATCH(io, f)        -> 1 if the bio belongs to f's cgroup or below
 *   IOF_LIVENESS(e, io)            -> iof_liveness(e, io), however the includer runs it
 *   IOF_EMIT(io, f, fs, range_index, outcome) -> report an event (may be a no-op)
 *   IOF_TRUNCATED()                -> count a bio judged on its first IOF_MAX_WALK ranges
 *   IOF_WALK_START(l, io, j, li)   -> optional: the layer's iof_lower_bound, if known
 */
#ifndef IOFILTER_MATCH_H
#define IOFILTER_MATCH_H

#include "iofilter.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

static __always_inline int iof_same_dev(const struct iof_dev *a, const struct iof_dev *b)
{
	return a->major == b->major && a->minor == b->minor;
}

/* Which filters take part: live (not expired) and, if scoped, in the bio's cgroup. */
static __always_inline __u32 iof_liveness(const struct iof_entry *e, struct iof_io *io)
{
	const struct iof_filter *f;
	__u32 fi, live = 0;
	__u64 now = 0;

#pragma unroll
	for (fi = 0; fi < IOF_MAX_FILTERS; fi++) {
		if (fi >= e->nr_filters)
			break;
		f = &e->filters[fi];
		if (f->expires_ns) {
			if (!now)
				now = IOF_NOW_NS();
			if (now >= f->expires_ns)
				continue; /* expired: inert, even if user space never removes it */
		}
		if (f->cgroup_id && !IOF_CGROUP_MATCH(io, f))
			continue;
		live |= 1u << fi;
	}
	return live;
}

/* Every filter of the entry, when none can be out of the game yet (no cgroup scope,
 * none expired): the common case, without looking at each filter. 0 otherwise. */
static __always_inline __u32 iof_all_live(const struct iof_entry *e)
{
	if (e->flags & IOF_ENTRY_SCOPED)
		return 0;
	if (e->min_expires && IOF_NOW_NS() >= e->min_expires)
		return 0;
	return e->nr_filters >= IOF_MAX_FILTERS ? 0xffffu : (1u << e->nr_filters) - 1;
}

/* a < b for unsigned 64-bit values without a branch (the borrow of a - b): the
 * verifier then follows one path through a node instead of one per outcome */
static __always_inline __u32 iof_lt(__u64 a, __u64 b)
{
	return (__u32)(((~a & b) | ((~a | b) & (a - b))) >> 63);
}

/* a < b when both are below 2^63: the sign of a - b */
static __always_inline __u32 iof_lt63(__u64 a, __u64 b)
{
	return (__u32)((a - b) >> 63);
}

#define IOF_COUNT_BELOW(n, x, lt)                                                                  \
	(lt((n)->key[0], x) + lt((n)->key[1], x) + lt((n)->key[2], x) + lt((n)->key[3], x) +       \
	 lt((n)->key[4], x) + lt((n)->key[5], x) + lt((n)->key[6], x) + lt((n)->key[7], x) +       \
	 lt((n)->key[8], x) + lt((n)->key[9], x) + lt((n)->key[10], x) + lt((n)->key[11], x) +     \
	 lt((n)->key[12], x) + lt((n)->key[13], x) + lt((n)->key[14], x) + lt((n)->key[15], x))

/* Index of the first range of a layer whose end >= sector (ranges sorted, disjoint):
 * one node per level; in each, sixteen independent compares the CPU runs side by side
 * count the keys below `sector`. A narrow layer (every key and, after the entry's span
 * test, the sector below 2^63) compares by one subtraction. */
static __always_inline __u32 iof_lower_bound(const struct iof_layer *l, __u64 sector)
{
	const struct iof_node *n;
	__u32 k = 0, c, h, narrow = l->narrow && sector <= IOF_NARROW_MAX;

#pragma unroll
	for (h = 0; h < IOF_MAX_LEVELS; h++) {
		if (h >= l->nr_levels)
			break;
		n = IOF_NODE(l->node_off + l->level_off[h] + k);
		if (!n)
			return l->nr_ranges;
		c = narrow ? IOF_COUNT_BELOW(n, sector, iof_lt63)
			   : IOF_COUNT_BELOW(n, sector, iof_lt);
		if (h + 1 == l->nr_levels)
			return k * IOF_NODE_KEYS + c;
		k = k * (IOF_NODE_KEYS + 1) + c;
	}
	return l->nr_ranges;
}

/* Where a layer's walk starts: its first range ending at or after the bio's sector
 * (the BPF build reuses what iof_candidates found). */
#ifndef IOF_WALK_START
#define IOF_WALK_START(l, io, j, li) iof_lower_bound((l), (io)->sector)
#endif

/*
 * The ranges of one layer that the bio overlaps. Phase 0 counts `matched` and which
 * filters matched; phase 1 counts `failed` on the failing filter's ranges.
 */
static __always_inline void iof_walk(const struct iof_entry *e, struct iof_io *io,
				     struct iof_judge *j, __u32 li, int phase)
{
	const struct iof_layer *l = &e->layers[li & (IOF_MAX_LAYERS - 1)];
	const struct iof_range *r;
	struct iof_counter *c;
	__u32 i, w, n = l->nr_ranges;

	i = IOF_WALK_START(l, io, j, li);
#pragma clang loop unroll(disable)
	for (w = 0; w < IOF_MAX_WALK; w++, i++) {
		if (i >= n || i >= IOF_MAX_RANGES)
			return;
		r = IOF_RANGE(l->range_off + i);
		if (!r || r->start > j->last)
			return;
		if (!(r->ops & io->ops))
			continue;
		if (phase) {
			if (r->filter != (__u32)j->fail)
				continue;
			c = IOF_COUNTER(r->counter);
			if (c)
				IOF_ADD(&c->failed, 1);
			if ((__s32)j->first_filter != j->fail) {
				/* events name the failing filter's first range */
				j->first_filter = j->fail;
				j->first_range = r->index;
			}
			continue;
		}
		if (r->filter >= IOF_MAX_FILTERS || !(j->live & (1u << r->filter)))
			continue;
		c = IOF_COUNTER(r->counter);
		if (c)
			IOF_ADD(&c->matched, 1);
		if (j->nr_hits < IOF_HITS) {
			j->hit_counter[j->nr_hits & (IOF_HITS - 1)] = r->counter;
			j->hit_index[j->nr_hits & (IOF_HITS - 1)] = r->index;
			j->hit_filter[j->nr_hits & (IOF_HITS - 1)] = r->filter;
		}
		j->nr_hits++;
		if (j->first_filter == IOF_NONE) {
			j->first_filter = r->filter;
			j->first_range = r->index;
		}
		j->matched |= 1u << r->filter;
	}
	/* more ranges of this layer may overlap the bio: it was judged on the first ones */
	if (!phase && i < n && i < IOF_MAX_RANGES) {
		r = IOF_RANGE(l->range_off + i);
		if (r && r->start <= j->last)
			j->truncated = 1;
	}
}

/* A zero-length bio carrying a flush: filters with a flush range, by device. */
static __always_inline void iof_empty_flush(const struct iof_entry *e, struct iof_io *io,
					    struct iof_judge *j)
{
	const struct iof_filter *f;
	struct iof_fstats *fs;
	__u32 fi;

#pragma unroll
	for (fi = 0; fi < IOF_MAX_FILTERS; fi++) {
		if (fi >= e->nr_filters)
			break;
		f = &e->filters[fi];
		if (!(f->flags & IOF_FILTER_FLUSH))
			continue;
		if (!iof_same_dev(&f->dev, &io->dev) && !iof_same_dev(&f->dev, &io->disk))
			continue;
		if (!(j->live & (1u << fi)))
			continue;
		fs = IOF_FSTATS(f->stats);
		if (fs)
			IOF_ADD(&fs->flush_matched, 1);
		if (j->first_filter == IOF_NONE) {
			j->first_filter = fi;
			j->first_range = 0;
		}
		j->matched |= 1u << fi;
	}
}

/* One draw per matching filter; the first that says "fail" fails the bio. */
static __always_inline void iof_decide(const struct iof_entry *e, struct iof_judge *j)
{
	const struct iof_filter *f;
	struct iof_fstats *fs;
	__u32 fi;

#pragma unroll
	for (fi = 0; fi < IOF_MAX_FILTERS; fi++) {
		if (fi >= e->nr_filters)
			break;
		if (!(j->matched & (1u << fi)))
			continue;
		f = &e->filters[fi];
		fs = IOF_FSTATS(f->stats);
		if (!fs)
			continue;
		IOF_ADD(&fs->matched, 1);
		if (j->fail >= 0)
			continue;
		if (f->prob && IOF_RANDOM_U32() >= f->prob)
			continue;
		if (f->max_failures) {
			/* a ticket per candidate failure keeps "the first K" exact under
			 * concurrency; user space refuses max_failures without fetch atomics */
			if (!IOF_HAVE_FETCH)
				continue;
			if (IOF_FETCH_ADD(&fs->tickets, 1) >= f->max_failures)
				continue;
		}
		j->fail = fi;
		IOF_ADD(&fs->failed, 1);
	}
}

#define IOF_NO_MATCH 0 /* no live range (or empty-flush filter) matched */
#define IOF_SPARED 1   /* matched, and no filter's draw failed it */
#define IOF_FAIL 2     /* fail it (observe mode: would fail) */

/* How one layer is walked; the BPF build verifies the walk once, as a function of
 * its own, instead of once per layer and phase. */
#ifndef IOF_LIVENESS
#define IOF_LIVENESS(e, io) iof_liveness((e), (io))
#endif
#ifndef IOF_WALK_LAYER
#define IOF_WALK_LAYER(e, io, j, li, phase) iof_walk((e), (io), (j), (li), (phase))
#endif

/*
 * Judges one bio against its disk's entry, counts what it matched, and returns
 * IOF_NO_MATCH, IOF_SPARED or IOF_FAIL. `j` is the caller's, zeroed. `enforce` only
 * picks the event outcome.
 */
static __always_inline int iof_match(const struct iof_entry *e, struct iof_io *io,
				     struct iof_judge *j, int enforce)
{
	const struct iof_filter *f;
	struct iof_counter *c;
	struct iof_fstats *fs;
	__u32 li, fi;

	j->fail = -1;
	j->first_filter = IOF_NONE;
	j->first_range = 0;
	j->matched = 0;
	j->truncated = 0;
	j->nr_hits = 0;
	j->last = io->sector;
	if (io->nr_sectors) {
		j->last = io->sector + io->nr_sectors - 1;
		if (j->last < io->sector) /* wrapped past 2^64-1 */
			j->last = IOF_SECTOR_MAX;
		if (!(io->ops & e->ops) || j->last < e->lo || io->sector > e->hi)
			return IOF_NO_MATCH; /* no range has its op, or all are elsewhere */
		j->live = iof_all_live(e) ?: IOF_LIVENESS(e, io);
		if (!j->live)
			return IOF_NO_MATCH;
#pragma unroll
		for (li = 0; li < IOF_MAX_LAYERS; li++) {
			if (li >= e->nr_layers)
				break;
			IOF_WALK_LAYER(e, io, j, li, 0);
		}
		if (j->truncated)
			IOF_TRUNCATED();
	} else {
		if (!(io->ops & IOF_OP_FLUSH))
			return IOF_NO_MATCH; /* zone management and other empty bios never match */
		j->live = iof_all_live(e) ?: IOF_LIVENESS(e, io);
		iof_empty_flush(e, io, j);
	}
	if (!j->matched)
		return IOF_NO_MATCH;
	iof_decide(e, j);

	if (j->fail >= 0 && j->fail < IOF_MAX_FILTERS) {
		f = &e->filters[j->fail];
		if (io->nr_sectors && j->nr_hits <= IOF_HITS) {
			/* `failed` on the failing filter's ranges among those remembered */
#pragma unroll
			for (li = 0; li < IOF_HITS; li++) {
				if (li >= j->nr_hits)
					break;
				if (j->hit_filter[li] != (__u32)j->fail)
					continue;
				c = IOF_COUNTER(j->hit_counter[li]);
				if (c)
					IOF_ADD(&c->failed, 1);
				if ((__s32)j->first_filter != j->fail) {
					j->first_filter = j->fail;
					j->first_range = j->hit_index[li];
				}
			}
		} else if (io->nr_sectors) {
#pragma unroll
			for (li = 0; li < IOF_MAX_LAYERS; li++) {
				if (li >= e->nr_layers)
					break;
				IOF_WALK_LAYER(e, io, j, li, 1);
			}
		} else {
			fs = IOF_FSTATS(f->stats);
			if (fs)
				IOF_ADD(&fs->flush_failed, 1);
			j->first_filter = j->fail;
			j->first_range = 0;
		}
		if (f->events_per_sec) {
			fs = IOF_FSTATS(f->stats);
			if (fs)
				IOF_EMIT(io, f, fs, j->first_range,
					 enforce ? IOF_OUTCOME_FAILED : IOF_OUTCOME_WOULD_FAIL);
		}
		return IOF_FAIL;
	}
	/* spared: an event for the first matching filter that asked for them */
#pragma unroll
	for (fi = 0; fi < IOF_MAX_FILTERS; fi++) {
		if (fi >= e->nr_filters)
			break;
		if (!(j->matched & (1u << fi)))
			continue;
		f = &e->filters[fi];
		if (!(f->flags & IOF_FILTER_EVENTS_SPARED) || !f->events_per_sec)
			continue;
		fs = IOF_FSTATS(f->stats);
		if (fs)
			IOF_EMIT(io, f, fs, fi == j->first_filter ? j->first_range : 0,
				 IOF_OUTCOME_SPARED);
		break;
	}
	return IOF_SPARED;
}

#endif /* IOFILTER_MATCH_H */
