// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Empty programs on iofilter's hooks: the benchmarks' baseline for "what does any
 * program on this hook cost", measured next to iofilter in the same run.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <asm/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct bio;

SEC("fmod_ret/should_fail_bio")
int BPF_PROG(empty_fmod_ret, struct bio *bio, int ret)
{
	return ret;
}

SEC("kprobe/should_fail_bio")
int BPF_KPROBE(empty_kprobe, struct bio *bio)
{
	return 0;
}

SEC("fentry/should_fail_bio")
int BPF_PROG(empty_observe_fentry, struct bio *bio)
{
	return 0;
}

SEC("tp_btf/block_bio_queue")
int BPF_PROG(empty_observe_tp, struct bio *bio)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
