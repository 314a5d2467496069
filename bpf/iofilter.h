/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Types shared by the BPF program (iofilter.bpf.c) and user space (native/).
 *
 * The filter map is keyed by WHOLE DISK. Every filter - whether the user named the
 * disk or one of its partitions - is stored in its disk's entry with its ranges
 * translated to absolute whole-disk sectors. The program normalises each bio to
 * (disk, absolute sector) and does exactly one hash lookup, so a partition filter
 * catches I/O sent through the whole disk and a disk filter catches I/O sent through
 * any partition, with no parent/child bookkeeping.
 *
 * Counters live in a separate array map addressed by slots that user space
 * allocates, so rewriting a disk entry (atomic hash update) never resets the
 * counters of the filters it did not change.
 */
#ifndef IOFILTER_H
#define IOFILTER_H

#ifndef __KERNEL__
#include <linux/types.h>
#endif

/* Ranges in one disk entry, over all filters on that disk (disk + partitions). */
#define IOF_MAX_RANGES 64
/* Filters in one disk entry: the disk itself and up to 15 of its partitions. */
#define IOF_MAX_FILTERS 16
/* Counter slots the program may address: one per range and one per filter. */
#define IOF_SLOTS_PER_DISK (IOF_MAX_RANGES + IOF_MAX_FILTERS)

/* Operation bits of a range (not kernel REQ_OP_* values, which differ by kernel). */
#define IOF_OP_READ 0x01u
#define IOF_OP_WRITE 0x02u
#define IOF_OP_FLUSH 0x04u
#define IOF_OP_DISCARD 0x08u
#define IOF_OP_WRITE_ZEROES 0x10u
#define IOF_OP_ALL 0x1fu

#define IOF_SECTOR_MAX (~0ULL)

struct iof_dev {
	__u32 major;
	__u32 minor;
};

struct iof_range {
	__u64 start;   /* absolute whole-disk sector, inclusive */
	__u64 end;     /* absolute whole-disk sector, inclusive */
	__u32 ops;     /* IOF_OP_* */
	__u32 counter; /* slot in iof_counters for this range's matched/failed */
	__u16 filter;  /* index into iof_disk.filters */
	__u16 index;   /* position of the range in the filter as the user gave it */
	__u32 _pad;
};

struct iof_filter {
	struct iof_dev dev;   /* the device the user named: the disk or a partition */
	__u64 offset;         /* that device's first sector on the disk (0 for the disk) */
	__u64 size;           /* that device's size in sectors (0: unknown) */
	__u64 expires_ns;     /* CLOCK_BOOTTIME deadline; 0 = never expires */
	__u64 max_failures;   /* fail at most this many I/Os; 0 = unlimited */
	__u32 prob;           /* 0 = always fail; else fail iff prandom_u32 < prob */
	__u32 counter;        /* slot in iof_counters: .failed = failure budget used */
	__u32 flags;          /* IOF_FILTER_* */
	__u32 _pad;
};

/* The filter covers the whole device (no ranges were given). */
#define IOF_FILTER_WHOLE 0x1u

struct iof_disk {
	__u32 nr_ranges;  /* used entries of ranges[], sorted by start */
	__u32 nr_filters; /* used entries of filters[] */
	struct iof_filter filters[IOF_MAX_FILTERS];
	struct iof_range ranges[IOF_MAX_RANGES];
};

/*
 * Disks with filters, as bits of a small hash of their number: a clear bit lets the
 * program skip the hash lookup for most devices without a filter. A collision only
 * costs that lookup; the answer comes from iof_disks either way.
 */
#define IOF_DISK_BITS 1024

static inline __u32 iof_disk_bit(__u32 major, __u32 minor)
{
	return (minor ^ (major * 0x9e3779b1u >> 7)) & (IOF_DISK_BITS - 1);
}

struct iof_state {
	__u32 nr_disks; /* entries in iof_disks: 0 lets every I/O return at once */
	__u32 _pad;
	__u64 disk_bits[IOF_DISK_BITS / 64];
};

struct iof_counter {
	__u64 matched; /* I/Os whose op and sectors matched while the filter was live */
	__u64 failed;  /* I/Os failed (observe mode: that would have been failed) */
};

#endif /* IOFILTER_H */
