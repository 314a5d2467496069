/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Kernel-version shims, the way libbpf-tools keeps core_fixes.bpf.h: the few kernel
 * types the program reads (CO-RE, no vmlinux.h: libbpf relocates every access to the
 * running kernel's layout), their older ___flavours, the op mapping, the bio's
 * cgroup, and locating a bio on its disk on kernels before and after 5.12.
 *
 * Reads: tracing programs (fentry, fmod_ret, tp_btf) may dereference kernel pointers
 * directly, which is cheaper than a helper call per field; the kprobe program must go
 * through bpf_probe_read_kernel. IOF_RD(probe, p, field) is one or the other; `probe`
 * is a constant in every inlined caller, so only one branch is compiled.
 */
#ifndef IOFILTER_CORE_FIXES_BPF_H
#define IOFILTER_CORE_FIXES_BPF_H

#include <bpf/bpf_core_read.h>

typedef __u32 dev_t;
typedef __u64 sector_t;

#define IOF_RD(probe, p, field) ((probe) ? BPF_CORE_READ((p), field) : (p)->field)

struct gendisk {
	int major;
	int first_minor;
	__u64 diskseq; /* 5.15+ */
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

struct blkcg_gq;

struct bio {
	unsigned int bi_opf;
	unsigned short bi_flags;
	struct block_device *bi_bdev;
	struct bvec_iter bi_iter;
	struct blkcg_gq *bi_blkg;
} __attribute__((preserve_access_index));

/*
 * Before 5.12 (commit 309dca309fc3 "block: store a block_device pointer in struct
 * bio") a bio named its device by gendisk + partition number; a partition was an
 * hd_struct in the disk's partition table, with its dev_t in an embedded device.
 */
struct device___old {
	dev_t devt;
} __attribute__((preserve_access_index));

struct hd_struct___old {
	sector_t start_sect;
	struct device___old __dev;
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
 * The bio's cgroup: the cgroup its blkcg belongs to (for cgroup-writeback filesystems,
 * the cgroup that dirtied the pages), when that is on the cgroup v2 hierarchy (whose
 * root has hierarchy id 0); else - no blkg, or blkio on a v1 hierarchy - the
 * submitting task's v2 cgroup.
 */
struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup_root {
	int hierarchy_id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
	int level;
	struct cgroup_root *root;
	struct cgroup *ancestors[];
} __attribute__((preserve_access_index));

/* Before 6.1 (commit 7f203bc89eb6 "cgroup: Replace cgroup->ancestor_ids[] with
 * ->ancestors[]") a cgroup kept its ancestors' ids, not pointers. */
struct cgroup___old {
	int level;
	__u64 ancestor_ids[];
} __attribute__((preserve_access_index));

struct cgroup_subsys_state {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

struct blkcg {
	struct cgroup_subsys_state css;
} __attribute__((preserve_access_index));

struct blkcg_gq {
	struct blkcg *blkcg;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));

struct task_struct {
	struct css_set *cgroups;
} __attribute__((preserve_access_index));

static __always_inline struct cgroup *iof_bio_cgroup(struct bio *bio, const int probe)
{
	struct task_struct *task;
	struct blkcg_gq *blkg = NULL;
	struct blkcg *blkcg;
	struct cgroup *cg = NULL;

	if (bpf_core_field_exists(bio->bi_blkg))
		blkg = IOF_RD(probe, bio, bi_blkg);
	if (blkg) {
		blkcg = IOF_RD(probe, blkg, blkcg);
		if (blkcg)
			cg = IOF_RD(probe, &blkcg->css, cgroup);
		if (cg) {
			struct cgroup_root *root = IOF_RD(probe, cg, root);

			if (root && IOF_RD(probe, root, hierarchy_id) == 0)
				return cg;
		}
	}
	task = (struct task_struct *)bpf_get_current_task();
	return BPF_CORE_READ(task, cgroups, dfl_cgrp);
}

/* Whether `cg` is the cgroup (id, level) or one of its descendants. */
static __always_inline int iof_cgroup_under(struct cgroup *cg, __u64 id, __u32 level)
{
	struct cgroup *anc = NULL;
	__u64 anc_id = 0;
	int lvl;

	if (!cg)
		return 0;
	lvl = BPF_CORE_READ(cg, level);
	if (lvl < 0 || (__u32)lvl < level || level > 255)
		return 0;
	if (bpf_core_field_exists(cg->ancestors)) {
		bpf_probe_read_kernel(&anc, sizeof(anc),
				      (void *)cg + bpf_core_field_offset(cg->ancestors) +
					  level * sizeof(void *));
		anc_id = BPF_CORE_READ(anc, kn, id);
	} else {
		struct cgroup___old *old = (void *)cg;

		bpf_probe_read_kernel(&anc_id, sizeof(anc_id),
				      (void *)cg + bpf_core_field_offset(old->ancestor_ids) +
					  level * sizeof(__u64));
	}
	return anc_id == id;
}

/* Probe reads: `cg` may come from the task (bpf_get_current_task), untyped. */
static __always_inline __u64 iof_cgroup_id(struct cgroup *cg)
{
	return cg ? BPF_CORE_READ(cg, kn, id) : 0;
}

/*
 * Which disk a bio is for, and (iof_locate_rest) where on it: the absolute sector,
 * size, ops and the device it was sent to. Split in two so that a bio for a disk
 * without filters costs only the first half.
 *
 * At should_fail_bio() time a bio is usually not yet remapped (partition-relative
 * sector); one resubmitted after the partition remap (the remainder of a split)
 * carries BIO_REMAPPED (5.11+) or, before 5.12, a zero bi_partno and the whole disk.
 * bio_remapped_bit is looked up by user space (an anonymous enum cannot be relocated).
 */
static __always_inline int iof_locate_disk(struct bio *bio, struct iof_io *io, const int probe)
{
	if (bpf_core_field_exists(bio->bi_bdev)) {
		struct block_device *bdev = IOF_RD(probe, bio, bi_bdev);
		struct gendisk *disk;

		if (!bdev)
			return 0;
		disk = IOF_RD(probe, bdev, bd_disk);
		if (!disk)
			return 0;
		io->disk.major = IOF_RD(probe, disk, major);
		io->disk.minor = IOF_RD(probe, disk, first_minor);
	} else {
		struct bio___old *ob = (void *)bio;
		struct gendisk___old *disk = BPF_CORE_READ(ob, bi_disk);

		if (!disk)
			return 0;
		io->disk.major = BPF_CORE_READ(disk, major);
		io->disk.minor = BPF_CORE_READ(disk, first_minor);
	}
	return 1;
}

/*
 * The medium behind the bio's disk: gendisk->diskseq, a number the kernel never reuses
 * for a new medium (5.15, "block: add a sequence number to disks"; bumped by loop
 * attach/detach and by disk_force_media_change). 0 where the field does not exist, and
 * a bound filter never matches there because user space binds only where it exists.
 */
static __always_inline __u64 iof_disk_seq(struct bio *bio, const int probe)
{
	struct block_device *bdev;
	struct gendisk *disk;

	if (!bpf_core_field_exists(bio->bi_bdev) || !bpf_core_field_exists(disk->diskseq))
		return 0;
	bdev = IOF_RD(probe, bio, bi_bdev);
	if (!bdev)
		return 0;
	disk = IOF_RD(probe, bdev, bd_disk);
	if (!disk)
		return 0;
	return IOF_RD(probe, disk, diskseq);
}

static __always_inline int iof_locate_rest(struct bio *bio, struct iof_io *io, const int probe,
					   int remapped_bit)
{
	__u64 sector = IOF_RD(probe, &bio->bi_iter, bi_sector);

	if (bpf_core_field_exists(bio->bi_bdev)) {
		struct block_device *bdev = IOF_RD(probe, bio, bi_bdev);
		dev_t dev;

		if (!bdev)
			return 0;
		dev = IOF_RD(probe, bdev, bd_dev);
		io->dev.major = dev >> 20;
		io->dev.minor = dev & 0xfffff;
		io->dev_offset = IOF_RD(probe, bdev, bd_start_sect);
		if (remapped_bit < 0 ||
		    !(IOF_RD(probe, bio, bi_flags) & (1u << (remapped_bit & 15))))
			sector += io->dev_offset;
	} else {
		struct bio___old *ob = (void *)bio;
		struct gendisk___old *disk = BPF_CORE_READ(ob, bi_disk);
		__u8 partno = BPF_CORE_READ(ob, bi_partno);

		io->dev = io->disk;
		io->dev_offset = 0;
		/* the remap zeroes bi_partno: a partition number means a relative sector */
		if (partno) {
			struct disk_part_tbl___old *tbl = BPF_CORE_READ(disk, part_tbl);
			struct hd_struct___old *part = NULL;
			dev_t devt;

			if (!tbl)
				return 0;
			bpf_probe_read_kernel(&part, sizeof(part),
					      (void *)tbl + bpf_core_field_offset(tbl->part) +
						  partno * sizeof(void *));
			if (!part)
				return 0;
			io->dev_offset = BPF_CORE_READ(part, start_sect);
			sector += io->dev_offset;
			/* the partition's own dev_t: first_minor + partno is wrong for
			 * extended numbers (loop partitions are 259:x, so are the 16th+) */
			devt = BPF_CORE_READ(part, __dev.devt);
			io->dev.major = devt >> 20;
			io->dev.minor = devt & 0xfffff;
		}
	}
	io->sector = sector;
	io->nr_sectors = IOF_RD(probe, &bio->bi_iter, bi_size) >> 9;
	io->ops = iof_ops(IOF_RD(probe, bio, bi_opf));
	return 1;
}

#endif /* IOFILTER_CORE_FIXES_BPF_H */
