/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The match rule: the one function that decides whether an I/O fails. It is
 * compiled into the BPF program AND, unchanged, into the host unit-test harness
 * (tests/unit/match_harness.c), so the tests run the code the kernel runs.
 *
 * The includer defines the environment:
 *   IOF_COUNTER(slot)   -> struct iof_counter * (or NULL)
 *   IOF_NOW_NS()        -> __u64, CLOCK_BOOTTIME nanoseconds
 *   IOF_RANDOM_U32()    -> __u32
 *   IOF_FETCH_ADD(p, v) -> previous value of *p, atomically incremented by v
 */
#ifndef IOFILTER_MATCH_H
#define IOFILTER_MATCH_H

#include "iofilter.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif


/* One bio, normalised to its whole disk. */
struct iof_io {
	struct iof_dev disk; /* whole disk */
	struct iof_dev dev;  /* device the bio was sent to (a partition or the disk) */
	__u64 sector;        /* absolute whole-disk sector */
	__u32 nr_sectors;    /* 0: zero-length bio (e.g. an empty flush) */
	__u32 ops;           /* IOF_OP_* carried by this bio */
};

static __always_inline int iof_same_dev(const struct iof_dev *a, const struct iof_dev *b)
{
	return a->major == b->major && a->minor == b->minor;
}

#define IOF_NEXT 0 /* look at the next range */
#define IOF_FAIL 1 /* fail the I/O */
#define IOF_STOP 2 /* no later range can match */

/* One range of the disk entry against the I/O; counts what it matches. */
static __always_inline int iof_step(const struct iof_disk *d, const struct iof_io *io, __u32 i, __u64 last,
				    __u64 *now)
{
	const struct iof_range *r;
	const struct iof_filter *f;
	struct iof_counter *rc, *fc;

	if (i >= d->nr_ranges)
		return IOF_STOP;
	r = &d->ranges[i];
	if (io->nr_sectors) {
		if (r->start > last)
			return IOF_STOP; /* sorted by start: no later range can overlap */
		if (io->sector > r->end || !(r->ops & io->ops))
			return IOF_NEXT;
	} else if (!(r->ops & IOF_OP_FLUSH)) {
		/* zero-length bios carry no sectors: only the flush op, by device */
		return IOF_NEXT;
	}
	if (r->filter >= IOF_MAX_FILTERS)
		return IOF_NEXT;
	f = &d->filters[r->filter];
	if (!io->nr_sectors && !iof_same_dev(&f->dev, &io->disk) && !iof_same_dev(&f->dev, &io->dev))
		return IOF_NEXT;
	if (f->expires_ns) {
		if (!*now)
			*now = IOF_NOW_NS();
		if (*now >= f->expires_ns)
			return IOF_NEXT; /* expired: inert, even if user space never removes it */
	}
	rc = IOF_COUNTER(r->counter);
	if (rc)
		IOF_FETCH_ADD(&rc->matched, 1);
	if (f->prob && IOF_RANDOM_U32() >= f->prob)
		return IOF_NEXT;
	if (f->max_failures) {
		fc = IOF_COUNTER(f->counter);
		/* a ticket per candidate failure keeps "the first K" exact under concurrency */
		if (!fc || IOF_FETCH_ADD(&fc->failed, 1) >= f->max_failures)
			return IOF_NEXT;
	}
	if (rc)
		IOF_FETCH_ADD(&rc->failed, 1);
	return IOF_FAIL;
}

/*
 * Unrolled by the preprocessor rather than written as a loop: kernels before 5.3
 * have no bounded loops, 6.1's verifier rejects the loop shape clang emits here
 * ("back-edge from insn N to N+1": a latch that falls through into the header), and
 * clang will not fully unroll a loop whose trip count is only bounded.
 */
#define IOF_STEP(i)                                                                        \
	do {                                                                               \
		int __s = iof_step(d, io, (i), last, &now);                                \
		if (__s != IOF_NEXT)                                                       \
			return __s == IOF_FAIL;                                            \
	} while (0)
#define IOF_STEP4(i) IOF_STEP(i); IOF_STEP((i) + 1); IOF_STEP((i) + 2); IOF_STEP((i) + 3)
#define IOF_STEP16(i) IOF_STEP4(i); IOF_STEP4((i) + 4); IOF_STEP4((i) + 8); IOF_STEP4((i) + 12)
#define IOF_STEP64(i) IOF_STEP16(i); IOF_STEP16((i) + 16); IOF_STEP16((i) + 32); IOF_STEP16((i) + 48)

#if IOF_MAX_RANGES != 64
#error "IOF_STEP64 unrolls exactly IOF_MAX_RANGES steps"
#endif

/*
 * Returns 1 if the I/O must fail (observe mode: would fail), 0 otherwise, and counts
 * matched/failed on every live range it matched. Ranges are sorted by start.
 */
static __always_inline int iof_match(const struct iof_disk *d, const struct iof_io *io)
{
	__u64 last = io->sector;
	__u64 now = 0;

	if (io->nr_sectors) {
		last = io->sector + io->nr_sectors - 1;
		if (last < io->sector) /* wrapped past 2^64-1 */
			last = IOF_SECTOR_MAX;
	}
	IOF_STEP64(0);
	return 0;
}

#endif /* IOFILTER_MATCH_H */
