/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The per-filter event rate limit of iofilter.bpf.c, in a header of its own so that
 * tests/unit/rate_harness.cc runs this very code on host threads. */
#ifndef IOFILTER_RATE_H
#define IOFILTER_RATE_H

#include "iofilter.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/*
 * The event rate limit: at most events_per_sec events of a filter in each second of
 * CLOCK_BOOTTIME (windows aligned to whole seconds), kept in one word per filter,
 * ev_window = second << 32 | events in it, so that the window and its count change
 * together. With compare-and-swap (5.12+, as fetch-add) it is exact with any number
 * of CPUs: an event is emitted only by the CPU whose swap took the count from n to
 * n + 1 < limit + 1 in its window; a CPU whose clock read is older than the window
 * another CPU started drops its event (signed difference, never a wrapped one);
 * swaps lost to other CPUs are retried a few times, then the event is dropped
 * (counted), never emitted over the limit. Without it (the 5.10 object) the reset is
 * a plain store and the check apart from the add: CPUs racing may each emit one event
 * over the limit, and a reset racing with adds may forget them.
 */
static __always_inline int iof_ev_admit(struct iof_fstats *fs, __u32 limit, __u64 now)
{
	__u64 sec = now / 1000000000ull, old;
	__s32 ahead;

	old = *(volatile __u64 *)&fs->ev_window;
#ifndef IOF_NO_FETCH
	__u64 want, got;
	int i;

#pragma unroll
	for (i = 0; i < 4; i++) {
		ahead = (__s32)((__u32)(old >> 32) - (__u32)sec);
		if (ahead > 0)
			return 0;
		if (ahead < 0)
			want = (sec << 32) | 1;
		else if ((__u32)old >= limit)
			return 0;
		else
			want = old + 1;
		got = __sync_val_compare_and_swap(&fs->ev_window, old, want);
		if (got == old)
			return 1;
		old = got;
	}
	return 0;
#else
	ahead = (__s32)((__u32)(old >> 32) - (__u32)sec);
	if (ahead > 0)
		return 0;
	if (ahead < 0) {
		fs->ev_window = (sec << 32) | 1;
		return 1;
	}
	if ((__u32)old >= limit)
		return 0;
	__sync_fetch_and_add(&fs->ev_window, 1);
	return 1;
#endif
}

#endif /* IOFILTER_RATE_H */
