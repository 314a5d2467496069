/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Types shared by the BPF program (iofilter.bpf.c) and user space (native/): the
 * layout of every map, and the rules user space must keep when it writes them.
 *
 * One ENTRY per whole disk holds every filter on that disk and its partitions, with
 * ranges translated to absolute whole-disk sectors; the program normalises each bio
 * to (disk, absolute sector), so a partition filter catches I/O sent through the
 * disk and a disk filter catches I/O sent through any partition.
 *
 * Lookup, with no hash-map helper on the hot path:
 *   iof_index[hash(disk) + probe]  -> entry slot + 1 (0 empty, TOMB deleted)
 *   iof_entries[slot]              -> filters and overlap LAYERS of the disk
 *   layer: a static search tree in iof_nodes over the ends of its ranges, and the
 *          ranges themselves, sorted and disjoint, in iof_ranges
 * A layer holds ranges that do not overlap each other; ranges that overlap (a disk
 * filter and a partition filter, or two cgroup scopes) go to different layers. An
 * I/O costs one tree descent per layer, then a walk over the ranges it overlaps.
 *
 * Publication (why a program never sees a mix of two versions): entries, tree
 * nodes and ranges are IMMUTABLE once published. User space (through mmap) writes a
 * new version into free slots, then switches the disk's index word with one aligned
 * 32-bit release store. Replaced slots, counters and stats are quarantined and reused
 * only after an RCU grace period, when no program that could hold them still runs.
 */
#ifndef IOFILTER_H
#define IOFILTER_H

#ifndef __KERNEL__
#include <linux/types.h>
#endif

/* Filters in one disk entry: the disk, its partitions, their cgroup scopes. */
#define IOF_MAX_FILTERS 16
/* Ranges that may cover one sector at once, over all filters of a disk. */
#define IOF_MAX_LAYERS 8
/* Ranges in one disk entry (all its filters), and in one filter. */
#define IOF_MAX_RANGES 4096
/* Ranges of one layer an I/O is judged against (a bigger I/O counts as truncated). */
#define IOF_MAX_WALK 64
/* Static search tree: keys per node (two cache lines), and levels (16 * 17^3 > IOF_MAX_RANGES). */
#define IOF_NODE_KEYS 16
#define IOF_MAX_LEVELS 4
/* Index probes: user space places every disk within this many buckets of its hash. */
#define IOF_PROBES 8

#define IOF_INDEX_EMPTY 0u
#define IOF_INDEX_TOMB 0xffffffffu

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

/* One range, in a layer's sorted run of iof_ranges. */
struct iof_range {
	__u64 start;   /* absolute whole-disk sector, inclusive */
	__u64 end;     /* absolute whole-disk sector, inclusive */
	__u32 counter; /* slot in iof_counters: this range's matched/failed */
	__u8 ops;      /* IOF_OP_* */
	__u8 filter;   /* index into iof_entry.filters */
	__u16 index;   /* position of the range in its filter, as the user gave it */
};

/* A node of a layer's search tree: the largest range end under each child (or, in a
 * leaf, each range's end); unused keys are IOF_SECTOR_MAX. */
struct iof_node {
	__u64 key[IOF_NODE_KEYS];
};

struct iof_layer {
	__u32 range_off; /* first range in iof_ranges */
	__u32 nr_ranges;
	__u32 node_off;                  /* first node in iof_nodes; levels stored root first */
	__u32 nr_levels;                 /* 1..IOF_MAX_LEVELS */
	__u32 level_off[IOF_MAX_LEVELS]; /* first node of each level, relative to node_off */
	__u32 narrow; /* every key < 2^63 (padding 2^63-1): keys compare by one subtraction */
};

/* The largest key of a narrow layer's tree: its padding. */
#define IOF_NARROW_MAX ((1ULL << 63) - 1)

struct iof_filter {
	struct iof_dev dev;   /* the device the user named: the disk or a partition */
	__u64 offset;         /* that device's first sector on the disk (0 for the disk) */
	__u64 size;           /* that device's size in sectors */
	__u64 expires_ns;     /* CLOCK_BOOTTIME deadline; 0 = never expires */
	__u64 max_failures;   /* fail at most this many I/Os; 0 = unlimited */
	__u64 cgroup_id;      /* 0: any cgroup; else this cgroup (v2) or a descendant */
	__u32 cgroup_level;   /* that cgroup's depth below the root */
	__u32 prob;           /* 0 = always fail; else fail iff prandom_u32 < prob */
	__u32 stats;          /* slot in iof_fstats (and iof_meta) */
	__u32 id;             /* the filter's id, as users and events see it */
	__u32 events_per_sec; /* 0: no events */
	__u32 flags;          /* IOF_FILTER_* */
	__u64 diskseq;        /* the disk's medium when set (5.15+ diskseq); 0: not bound */
};

#define IOF_FILTER_WHOLE 0x1u         /* no ranges were given: the whole device */
#define IOF_FILTER_FLUSH 0x2u         /* some range has the flush op (empty flushes match) */
#define IOF_FILTER_EVENTS_SPARED 0x4u /* events also for I/O matched but spared */
#define IOF_FILTER_SELFTEST 0x8u      /* the attach-time self-test's private filter */

struct iof_entry {
	struct iof_dev disk; /* the key: which disk this entry is for */
	__u32 nr_filters;
	__u32 nr_layers;
	__u32 ops;         /* every op any range selects: an I/O with none of them is done */
	__u32 flags;       /* IOF_ENTRY_* */
	__u64 min_expires; /* the earliest filter expiry (0: none): before it, all are live */
	__u64 lo, hi;      /* the lowest start and highest end of all ranges */
	/* The medium every filter of the entry is bound to (they all share it): an I/O to
	 * the same major:minor with another diskseq (a re-attached loop device, a replaced
	 * namespace) is another disk and never matches. 0: not bound (before 5.15). */
	__u64 diskseq;
	struct iof_layer layers[IOF_MAX_LAYERS];
	struct iof_filter filters[IOF_MAX_FILTERS];
};

#define IOF_ENTRY_SCOPED 0x1u /* some filter has a cgroup scope: the bio's cgroup is needed */

struct iof_counter {
	__u64 matched; /* I/Os that overlapped this range with a selected op, while live */
	__u64 failed;  /* of those, failed by its filter (observe mode: would have been) */
};

/* Per filter (slot iof_filter.stats). One cache line. */
struct iof_fstats {
	__u64 matched;       /* I/Os that matched the filter (any range, or an empty flush) */
	__u64 failed;        /* I/Os it failed (observe: would have failed) */
	__u64 tickets;       /* max-failures tickets taken (atomic fetch-add) */
	__u64 flush_matched; /* empty flushes matched by device (counted on its flush ranges) */
	__u64 flush_failed;
	__u64 ev_window;  /* rate limit: second of CLOCK_BOOTTIME << 32 | events emitted in it */
	__u64 ev_count;   /* unused (the count moved into ev_window), kept for the layout */
	__u64 ev_dropped; /* events over the rate limit or without ring buffer room */
};

/* What user space remembers of a filter for Status; the program never reads it. */
#define IOF_META_PATH 240
struct iof_meta {
	__u32 kind;     /* IOF_META_* bits of what is set below */
	__u32 from_pid; /* the cgroup was resolved from this pid */
	__u64 _pad;
	char file[IOF_META_PATH];   /* made from this file's extents */
	char cgroup[IOF_META_PATH]; /* the cgroup path as resolved */
};
#define IOF_META_FILE 0x1u
#define IOF_META_CGROUP 0x2u
#define IOF_META_PID 0x4u

/* Global state. The read-mostly word and the counters sit on separate cache lines. */
struct iof_state {
	__u32 nr_disks; /* entries in the index: 0 lets every I/O return at once */
	__u32 _pad[15];
	__u64 truncated;   /* I/Os that overlapped more than IOF_MAX_WALK ranges of a layer */
	__u64 events_lost; /* events without ring buffer room */
	__u64 _pad2[6];
};

/* One matched I/O, as the program reports it through the ring buffer. */
struct iof_event {
	__u64 time_ns;    /* CLOCK_BOOTTIME */
	__u64 sector;     /* absolute, on the disk */
	__u64 dev_sector; /* in the coordinates of the device the bio was sent to */
	__u64 cgroup_id;
	struct iof_dev dev;
	struct iof_dev disk;
	__u32 nr_sectors;
	__u32 filter_id;
	__u32 pid;
	__u16 range_index;
	__u8 ops;
	__u8 outcome; /* IOF_OUTCOME_* */
	char comm[16];
};

#define IOF_OUTCOME_FAILED 1
#define IOF_OUTCOME_WOULD_FAIL 2
#define IOF_OUTCOME_SPARED 3

/* Bio pointer -> the span already judged, so the remainder of a split bio that the
 * kernel resubmits is not drawn or counted twice. */
struct iof_seen {
	struct iof_dev disk;
	__u64 first; /* absolute sectors */
	__u64 last;
};

/* One bio, normalised to its whole disk: what the match rule judges. */
struct iof_io {
	struct iof_dev disk; /* whole disk */
	struct iof_dev dev;  /* device the bio was sent to (a partition or the disk) */
	__u64 sector;        /* absolute whole-disk sector */
	__u64 dev_offset;    /* dev's first sector on the disk */
	__u32 nr_sectors;    /* 0: zero-length bio (e.g. an empty flush) */
	__u32 ops;           /* IOF_OP_* carried by this bio */
	__u64 bio;           /* the environment's handle on the bio */
	__u64 cg;            /* the environment's handle on the bio's cgroup (0: not needed) */
	__u32 slot;          /* the disk entry's slot */
	__u32 _pad;
};

#define IOF_NONE 0x1fu /* no filter (first_filter) */

/* Ranges a bio's matches are remembered for, so that counting `failed` needs no
 * second walk (a bio matching more ranges is walked again). */
#define IOF_HITS 8

/* Per-bio working state of one judgement. */
struct iof_judge {
	__u64 last;                  /* last sector of the bio (clamped at 2^64-1) */
	__u32 live;                  /* filters live (not expired) and in the bio's cgroup scope */
	__u32 matched;               /* filters the bio matched */
	__u32 first_range;           /* the first matched range's index in its filter (events) */
	__u32 first_filter;          /* its filter, or IOF_NONE */
	__s32 fail;                  /* the filter that fails the bio, or -1 */
	__u32 truncated;             /* more ranges of a layer overlapped than were judged */
	__u32 nr_hits;               /* matched ranges; the first IOF_HITS are below */
	__u32 hit_counter[IOF_HITS]; /* their counter slots */
	__u16 hit_index[IOF_HITS];   /* their index in their filter */
	__u8 hit_filter[IOF_HITS];   /* their filter */
	/* BPF only: each layer's first range ending at or after the bio's sector, found by
	 * iof_candidates, so the walk does not descend the same tree a second time */
	__u32 start[IOF_MAX_LAYERS];
};

static inline __u32 iof_hash(__u32 major, __u32 minor)
{
	__u32 h = major * 0x9e3779b1u ^ minor * 0x85ebca6bu;

	return h ^ (h >> 15);
}

#endif /* IOFILTER_H */
