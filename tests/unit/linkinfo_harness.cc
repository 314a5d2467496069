// Drives the real native/linkinfo.cc on BTF built here, shaped like each kernel's
// struct bpf_link_info, and prints "<case> <0|1>": whether the kernel would be taken
// to fill perf_event.kprobe.missed. With a path argument, the answer for that BTF file
// (a vmlinux or /sys/kernel/btf/vmlinux) instead.
#include <bpf/btf.h>

#include <cstdio>
#include <cstring>
#include <utility>

#include "linkinfo.h"

namespace {

enum Shape {
  V6_1,            // no perf_event member (link info for perf links came in 6.6)
  V6_6,            // perf_event.kprobe without missed
  V6_7,            // missed at byte 48
  V6_12,           // 6.7 plus cookie after missed
  MISSED_ELSEWHERE // missed at byte 56: not where our layout reads it
};

struct btf *shape(Shape s) {
  struct btf *b = btf__new_empty();
  int u32 = btf__add_int(b, "__u32", 4, 0);
  int u64 = btf__add_int(b, "__u64", 8, 0);
  int perf = -1;
  if (s != V6_1) {
    int kprobe = btf__add_struct(b, "", s == V6_6 ? 24 : s == V6_12 ? 40 : 32);
    btf__add_field(b, "func_name", u64, 0, 0);
    btf__add_field(b, "name_len", u32, 64, 0);
    btf__add_field(b, "offset", u32, 96, 0);
    btf__add_field(b, "addr", u64, 128, 0);
    if (s != V6_6)
      btf__add_field(b, "missed", u64, 192, 0);
    if (s == V6_12)
      btf__add_field(b, "cookie", u64, 256, 0);
    int uprobe = btf__add_struct(b, "", 16);
    btf__add_field(b, "file_name", u64, 0, 0);
    btf__add_field(b, "name_len", u32, 64, 0);
    btf__add_field(b, "offset", u32, 96, 0);
    int inner = btf__add_union(b, "", 40);
    btf__add_field(b, "uprobe", uprobe, 0, 0);
    btf__add_field(b, "kprobe", kprobe, 0, 0);
    perf = btf__add_struct(b, "", 48);
    btf__add_field(b, "type", u32, 0, 0);
    btf__add_field(b, "", u32, 32, 32); // __u32 :32
    // MISSED_ELSEWHERE: the kprobe union one word later than the kernel has it
    btf__add_field(b, "", inner, s == MISSED_ELSEWHERE ? 128 : 64, 0);
  }
  int tracing = btf__add_struct(b, "", 8);
  btf__add_field(b, "attach_type", u32, 0, 0);
  btf__add_field(b, "target_obj_id", u32, 32, 0);
  int outer = btf__add_union(b, "", 48);
  btf__add_field(b, "tracing", tracing, 0, 0);
  if (perf > 0)
    btf__add_field(b, "perf_event", perf, 0, 0);
  btf__add_struct(b, "bpf_link_info", 64);
  btf__add_field(b, "type", u32, 0, 0);
  btf__add_field(b, "id", u32, 32, 0);
  btf__add_field(b, "prog_id", u32, 64, 0);
  btf__add_field(b, "", outer, 128, 0);
  return b;
}

} // namespace

int main(int argc, char **argv) {
  if (argc > 1) {
    struct btf *b = btf__parse(argv[1], nullptr);
    if (!b) {
      printf("error cannot read BTF from %s\n", argv[1]);
      return 1;
    }
    printf("file %d\n", iof::kernel_reports_link_missed(b));
    btf__free(b);
    return 0;
  }
  const std::pair<const char *, Shape> cases[] = {
      {"6.1", V6_1}, {"6.6", V6_6}, {"6.7", V6_7}, {"6.12", V6_12}, {"missed-elsewhere", MISSED_ELSEWHERE}};
  for (const auto &[name, s] : cases) {
    struct btf *b = shape(s);
    printf("%s %d\n", name, iof::kernel_reports_link_missed(b));
    btf__free(b);
  }
  struct btf *none = btf__new_empty();
  printf("no-bpf_link_info %d\n", iof::kernel_reports_link_missed(none));
  btf__free(none);
  // no link (a kprobe before 5.15 has none): not reported, no system call made
  printf("no-link %s\n", iof::kprobe_link_missed(-1, true) ? "reported" : "unset");
  return 0;
}
