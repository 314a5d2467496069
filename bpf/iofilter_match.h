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

/*
 * Returns 1 if the I/O must fail (observe mode: would fail), 0 otherwise, and counts
 * matched/failed on every live range it matched. Ranges are sorted by start.
 */
static __always_inline int iof_match(const struct iof_disk *d, const struct iof_io *io)
{
	__u64 last = io->sector;
	__u64 now = 0;
	__u32 n = d->nr_ranges;
	__u32 i;

	if (io->nr_sectors) {
		last = io->sector + io->nr_sectors - 1;
		if (last < io->sector) /* wrapped past 2^64-1 */
			last = IOF_SECTOR_MAX;
	}

	for (i = 0; i < IOF_MAX_RANGES; i++) {
		const struct iof_range *r;
		const struct iof_filter *f;
		struct iof_counter *rc, *fc;

		if (i >= n)
			break;
		r = &d->ranges[i];
		if (io->nr_sectors) {
			if (r->start > last)
				break; /* sorted: no later range can overlap */
			if (io->sector > r->end || !(r->ops & io->ops))
				continue;
		} else if (!(r->ops & IOF_OP_FLUSH)) {
			/* zero-length bios carry no sectors: only the flush op, by device */
			continue;
		}
		if (r->filter >= IOF_MAX_FILTERS)
			continue;
		f = &d->filters[r->filter];
		if (!io->nr_sectors && !iof_same_dev(&f->dev, &io->disk) && !iof_same_dev(&f->dev, &io->dev))
			continue;
		if (f->expires_ns) {
			if (!now)
				now = IOF_NOW_NS();
			if (now >= f->expires_ns)
				continue; /* expired: inert, even if user space never removes it */
		}
		rc = IOF_COUNTER(r->counter);
		if (rc)
			IOF_FETCH_ADD(&rc->matched, 1);
		if (f->prob && IOF_RANDOM_U32() >= f->prob)
			continue;
		if (f->max_failures) {
			fc = IOF_COUNTER(f->counter);
			/* a ticket per candidate failure keeps "the first K" exact under concurrency */
			if (!fc || IOF_FETCH_ADD(&fc->failed, 1) >= f->max_failures)
				continue;
		}
		if (rc)
			IOF_FETCH_ADD(&rc->failed, 1);
		return 1;
	}
	return 0;
}

#endif /* IOFILTER_MATCH_H */
