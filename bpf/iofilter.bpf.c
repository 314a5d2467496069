// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * iofilter: fails chosen block I/O with EIO at should_fail_bio().
 *
 * Four programs share one match function (iofilter_match.h); user space autoloads
 * exactly one of them:
 *   fmod_ret/should_fail_bio   enforce: the return value fails the bio
 *   kprobe/should_fail_bio     enforce: bpf_override_return (fallback)
 *   fentry/should_fail_bio     observe: count what would fail
 *   tp_btf/block_bio_queue     observe, when fentry is refused (lockdown) or absent
 *
 * CO-RE without vmlinux.h: the few kernel types are declared below with
 * preserve_access_index, and libbpf relocates every field access to the running
 * kernel's layout.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/errno.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "iofilter.h"

typedef __u32 dev_t;
typedef __u64 sector_t;

struct gendisk {
	int major;
	int first_minor;
} __attribute__((preserve_access_index));

struct block_device {
	sector_t bd_start_sect;
	dev_t bd_dev;
	struct gendisk *bd_disk;
} __attribute__((preserve_access_index));

struct bvec_iter {
	sector_t bi_sector;
	unsigned int bi_size;
} __attribute__((preserve_access_index));

struct bio {
	unsigned int bi_opf;
	unsigned short bi_flags;
	struct block_device *bi_bdev;
	struct bvec_iter bi_iter;
} __attribute__((preserve_access_index));

/*
 * Before 5.12 (commit 309dca309fc3 "block: store a block_device pointer in struct
 * bio") a bio named its device by gendisk + partition number, and a partition's
 * start lived in hd_struct, reached through the disk's partition table.
 */
struct hd_struct___old {
	sector_t start_sect;
} __attribute__((preserve_access_index));

struct disk_part_tbl___old {
	struct hd_struct___old *part[0];
} __attribute__((preserve_access_index));

struct gendisk___old {
	int major;
	int first_minor;
	struct disk_part_tbl___old *part_tbl;
} __attribute__((preserve_access_index));

struct bio___old {
	struct gendisk___old *bi_disk;
	__u8 bi_partno;
} __attribute__((preserve_access_index));

/*
 * Op numbers: `enum req_opf` became `enum req_op` in 5.19 (commit ff07a02e9e8e
 * "treewide: use enum req_op for operation"). Values are relocated from the running
 * kernel's BTF rather than trusted to stay put.
 */
enum req_op {
	REQ_OP_READ = 0,
	REQ_OP_WRITE = 1,
	REQ_OP_FLUSH = 2,
	REQ_OP_DISCARD = 3,
	REQ_OP_WRITE_ZEROES = 9,
};

enum req_opf___old {
	REQ_OP_READ___old = 0,
	REQ_OP_WRITE___old = 1,
	REQ_OP_FLUSH___old = 2,
	REQ_OP_DISCARD___old = 3,
	REQ_OP_WRITE_ZEROES___old = 9,
};

enum req_flag_bits {
	__REQ_PREFLUSH = 18,
};

/* REQ_OP_BITS has been 8 since 4.10 (commit ef295ecf090d), so the mask is stable. */
#define REQ_OP_MASK 0xffu

/*
 * BIO_REMAPPED (5.11+) is an enumerator of an anonymous enum, which CO-RE cannot
 * relocate by name; user space looks it up in the kernel's BTF and sets it here.
 */
const volatile __s32 bio_remapped_bit = -1;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024); /* set by user space before load */
	__type(key, struct iof_dev);
	__type(value, struct iof_disk);
} iof_disks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1024 * IOF_SLOTS_PER_DISK); /* set by user space before load */
	__type(key, __u32);
	__type(value, struct iof_counter);
} iof_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct iof_state);
} iof_state SEC(".maps");

#define IOF_COUNTER(slot)                                                                  \
	({                                                                                 \
		__u32 __k = (slot);                                                        \
		(struct iof_counter *)bpf_map_lookup_elem(&iof_counters, &__k);            \
	})
#define IOF_NOW_NS() bpf_ktime_get_boot_ns()
#define IOF_RANDOM_U32() bpf_get_prandom_u32()
#define IOF_FETCH_ADD(p, v) __sync_fetch_and_add((p), (v))

#include "iofilter_match.h"

static __always_inline __u32 iof_ops(__u32 opf)
{
	__u32 op = opf & REQ_OP_MASK;
	__u32 ops = 0;

	if (bpf_core_type_exists(enum req_op)) {
		if (op == bpf_core_enum_value(enum req_op, REQ_OP_READ))
			ops = IOF_OP_READ;
		else if (op == bpf_core_enum_value(enum req_op, REQ_OP_WRITE))
			ops = IOF_OP_WRITE;
		else if (op == bpf_core_enum_value(enum req_op, REQ_OP_FLUSH))
			ops = IOF_OP_FLUSH;
		else if (op == bpf_core_enum_value(enum req_op, REQ_OP_DISCARD))
			ops = IOF_OP_DISCARD;
		else if (op == bpf_core_enum_value(enum req_op, REQ_OP_WRITE_ZEROES))
			ops = IOF_OP_WRITE_ZEROES;
	} else {
		if (op == bpf_core_enum_value(enum req_opf___old, REQ_OP_READ___old))
			ops = IOF_OP_READ;
		else if (op == bpf_core_enum_value(enum req_opf___old, REQ_OP_WRITE___old))
			ops = IOF_OP_WRITE;
		else if (op == bpf_core_enum_value(enum req_opf___old, REQ_OP_FLUSH___old))
			ops = IOF_OP_FLUSH;
		else if (op == bpf_core_enum_value(enum req_opf___old, REQ_OP_DISCARD___old))
			ops = IOF_OP_DISCARD;
		else if (op == bpf_core_enum_value(enum req_opf___old, REQ_OP_WRITE_ZEROES___old))
			ops = IOF_OP_WRITE_ZEROES;
	}
	/* a data write that also asks for a cache flush first is a flush too */
	if (opf & (1u << bpf_core_enum_value(enum req_flag_bits, __REQ_PREFLUSH)))
		ops |= IOF_OP_FLUSH;
	return ops;
}

/*
 * Fills io->disk/dev/sector for a bio. Tracing programs (fentry, fmod_ret, tp_btf)
 * may dereference kernel pointers directly, which is cheaper than a helper call per
 * field; the kprobe program must go through bpf_probe_read_kernel (BPF_CORE_READ).
 * RD(p, field) is one or the other.
 */
#define IOF_DEFINE_LOCATE(name, RD)                                                        \
	static __always_inline int name(struct bio *bio, struct iof_io *io)                \
	{                                                                                  \
		__u64 sector = RD(&bio->bi_iter, bi_sector);                               \
		if (bpf_core_field_exists(bio->bi_bdev)) {                                 \
			struct block_device *bdev = RD(bio, bi_bdev);                      \
			struct gendisk *disk;                                              \
			dev_t dev;                                                         \
			if (!bdev)                                                         \
				return 0;                                                  \
			disk = RD(bdev, bd_disk);                                          \
			if (!disk)                                                         \
				return 0;                                                  \
			io->disk.major = RD(disk, major);                                  \
			io->disk.minor = RD(disk, first_minor);                            \
			dev = RD(bdev, bd_dev);                                            \
			io->dev.major = dev >> 20;                                         \
			io->dev.minor = dev & 0xfffff;                                     \
			/* a bio resubmitted after blk_partition_remap() (e.g. the rest  \
			 * of a split) already carries an absolute sector */              \
			if (bio_remapped_bit < 0 ||                                        \
			    !(RD(bio, bi_flags) & (1u << (bio_remapped_bit & 15))))       \
				sector += RD(bdev, bd_start_sect);                         \
		} else {                                                                   \
			struct bio___old *ob = (void *)bio;                                \
			struct gendisk___old *disk = BPF_CORE_READ(ob, bi_disk);           \
			__u8 partno = BPF_CORE_READ(ob, bi_partno);                        \
			if (!disk)                                                         \
				return 0;                                                  \
			io->disk.major = BPF_CORE_READ(disk, major);                       \
			io->disk.minor = BPF_CORE_READ(disk, first_minor);                 \
			io->dev.major = io->disk.major;                                    \
			io->dev.minor = io->disk.minor + partno;                           \
			/* remapping zeroes bi_partno, so a partition number means the   \
			 * sector is still partition-relative */                           \
			if (partno) {                                                      \
				struct disk_part_tbl___old *tbl = BPF_CORE_READ(disk, part_tbl); \
				struct hd_struct___old *part = NULL;                       \
				if (!tbl)                                                  \
					return 0;                                          \
				bpf_probe_read_kernel(&part, sizeof(part),                 \
						      (void *)tbl +                        \
							      bpf_core_field_offset(       \
								      tbl->part) +         \
							      partno * sizeof(void *));    \
				if (!part)                                                 \
					return 0;                                          \
				sector += BPF_CORE_READ(part, start_sect);                 \
			}                                                                  \
		}                                                                          \
		io->sector = sector;                                                       \
		io->nr_sectors = RD(&bio->bi_iter, bi_size) >> 9;                          \
		io->ops = iof_ops(RD(bio, bi_opf));                                        \
		return 1;                                                                  \
	}

#define RD_DIRECT(p, field) ((p)->field)
#define RD_PROBE(p, field) BPF_CORE_READ((p), field)

IOF_DEFINE_LOCATE(iof_locate_btf, RD_DIRECT)
IOF_DEFINE_LOCATE(iof_locate_probe, RD_PROBE)

static __always_inline struct iof_state *iof_state_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&iof_state, &zero);
}

static __always_inline int iof_maybe_filtered(const struct iof_state *st, const struct iof_dev *disk)
{
	__u32 bit = iof_disk_bit(disk->major, disk->minor);

	return (st->disk_bits[(bit >> 6) & (IOF_DISK_BITS / 64 - 1)] >> (bit & 63)) & 1;
}

/*
 * The whole per-I/O path, cheapest test first: any filter at all (one load), then
 * this disk's bit, then the hash lookup and the range scan. Returns 1 to fail the bio
 * (observe: would fail).
 */
#define IOF_APPLY(locate, bio)                                                             \
	({                                                                                 \
		int __ret = 0;                                                             \
		struct iof_io __io = {};                                                   \
		struct iof_state *__st = iof_state_get();                                  \
		struct iof_disk *__d;                                                      \
		if (__st && __st->nr_disks && locate((bio), &__io) &&                      \
		    iof_maybe_filtered(__st, &__io.disk)) {                                \
			__d = bpf_map_lookup_elem(&iof_disks, &__io.disk);                 \
			if (__d && (__io.ops || !__io.nr_sectors))                         \
				__ret = iof_match(__d, &__io);                             \
		}                                                                          \
		__ret;                                                                     \
	})

SEC("fmod_ret/should_fail_bio")
int BPF_PROG(iofilter_fmod_ret, struct bio *bio, int ret)
{
	if (ret)
		return ret; /* already failing */
	return IOF_APPLY(iof_locate_btf, bio) ? -EIO : 0;
}

SEC("kprobe/should_fail_bio")
int BPF_KPROBE(iofilter_kprobe, struct bio *bio)
{
	if (IOF_APPLY(iof_locate_probe, bio))
		bpf_override_return(ctx, -EIO);
	return 0;
}

SEC("fentry/should_fail_bio")
int BPF_PROG(iofilter_observe_fentry, struct bio *bio)
{
	IOF_APPLY(iof_locate_btf, bio);
	return 0;
}

/* block_bio_queue lost its request_queue argument in 5.11; this is the one-argument form. */
SEC("tp_btf/block_bio_queue")
int BPF_PROG(iofilter_observe_tp, struct bio *bio)
{
	IOF_APPLY(iof_locate_btf, bio);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
