/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The maps of iofilter.bpf.c. Their layout and the rules user space keeps when it
 * writes them are in iofilter.h; every size is set by user space before load
 * (native/loader.cc), and all but the last three are mmapped by it.
 */
#ifndef IOFILTER_MAPS_BPF_H
#define IOFILTER_MAPS_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 4096); /* every size here is set by user space before load */
	__type(key, __u32);
	__type(value,
	       __u64); /* entry slot + 1 in the low 32 bits (array values are 8-byte strided) */
} iof_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 2048);
	__type(key, __u32);
	__type(value, struct iof_entry);
} iof_entries SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 131072);
	__type(key, __u32);
	__type(value, struct iof_range);
} iof_ranges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, struct iof_node);
} iof_nodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 131072);
	__type(key, __u32);
	__type(value, struct iof_counter);
} iof_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct iof_fstats);
} iof_fstats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct iof_meta);
} iof_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct iof_state);
} iof_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct iof_seen);
} iof_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} iof_events SEC(".maps");

/*
 * The bio being judged and its judgement live in a per-CPU scratch value, not on the
 * stack: values loaded from map memory are not tracked by the verifier, so branching
 * on the filters' bits does not multiply the paths it follows through the program.
 * A program instance cannot be interrupted by another run of the same program on its
 * CPU (the kernel skips such a run: a recursion miss), so one value per CPU is enough.
 */
struct iof_scratch {
	struct iof_io io;
	struct iof_judge j;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct iof_scratch);
} iof_scratch SEC(".maps");

/* The TTL check's clock, cached per CPU for one jiffy (iof_now_ns in iofilter.bpf.c). */
struct iof_clock {
	__u64 jiffies;
	__u64 now_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct iof_clock);
} iof_clock SEC(".maps");

#endif /* IOFILTER_MAPS_BPF_H */
