// The kprobe link's own miss count (bpf_link_info.perf_event.kprobe.missed, 6.7+):
// runs of the kprobe lost to re-entry on a CPU already in a kprobe, which never reach
// the program and so are not in its recursion_misses. Free of N-API.
#pragma once

#include <cstdint>
#include <optional>

struct btf;

namespace iof {

// Whether the running kernel fills perf_event.kprobe.missed, decided from its BTF: the
// member exists where the layout in linkinfo.cc has it (present from 6.7, also in
// stable backports, so the version number cannot say).
bool kernel_reports_link_missed(const struct btf *vmlinux);

// The count for a BPF perf link on a kprobe; nullopt when `link_fd` is not one (no link:
// a kprobe before 5.15; another link type) or the kernel does not report it. Throws
// iof::Error when the kernel refuses the query.
std::optional<uint64_t> kprobe_link_missed(int link_fd, bool kernel_reports);

} // namespace iof
