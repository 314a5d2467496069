// Reads a kprobe perf link's miss count with a layout of our own: the system's
// linux/bpf.h may predate the field (Debian 12's has no perf_event link info at all).
#include "linkinfo.h"

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "errors.h"

extern "C" {
#include <bpf/bpf.h>
#include <bpf/btf.h>
}

namespace iof {

namespace {

// struct bpf_link_info up to perf_event.kprobe.missed, as uapi linux/bpf.h has it since
// 3acf8ace6823 "bpf: Add missed value to kprobe perf link info" (6.7; perf_event link
// info itself since 1b715e1b0ec5, 6.6). The union after prog_id is 8-byte aligned.
struct LinkInfoKprobe {
  uint32_t type, id, prog_id, pad0;
  uint32_t perf_type, pad1; // perf_event.type: enum bpf_perf_event_type
  uint64_t func_name;       // in/out: a buffer for the name; 0 asks for none
  uint32_t name_len, offset;
  uint64_t addr, missed;
};
static_assert(offsetof(LinkInfoKprobe, perf_type) == 16 && offsetof(LinkInfoKprobe, missed) == 48,
              "the layout of uapi bpf_link_info");

constexpr uint32_t LINK_TYPE_PERF_EVENT = 7; // BPF_LINK_TYPE_PERF_EVENT (5.15)
constexpr uint32_t PERF_EVENT_KPROBE = 3;    // BPF_PERF_EVENT_KPROBE

// Bit offset of member `name` in composite type `id`, looking through anonymous unions
// and structs; the member's (resolved) type in *type. -1 when absent.
long member_bits(const struct btf *b, int id, const char *name, int *type) {
  const struct btf_type *t = btf__type_by_id(b, id);
  if (!t || !btf_is_composite(t))
    return -1;
  const struct btf_member *m = btf_members(t);
  for (unsigned i = 0; i < btf_vlen(t); i++, m++) {
    const char *n = btf__name_by_offset(b, m->name_off);
    long at = long(btf_member_bit_offset(t, i));
    int mt = btf__resolve_type(b, m->type);
    if (n && *n && !strcmp(n, name)) {
      *type = mt;
      return at;
    }
    if ((!n || !*n) && mt > 0) {
      long in = member_bits(b, mt, name, type);
      if (in >= 0)
        return at + in;
    }
  }
  return -1;
}

} // namespace

bool kernel_reports_link_missed(const struct btf *vmlinux) {
  int id = btf__find_by_name_kind(vmlinux, "bpf_link_info", BTF_KIND_STRUCT);
  if (id <= 0)
    return false;
  long bits = 0;
  for (const char *name : {"perf_event", "kprobe", "missed"}) {
    long at = member_bits(vmlinux, id, name, &id);
    if (at < 0)
      return false;
    bits += at;
  }
  // anywhere else, our layout would read the wrong bytes
  return bits == long(offsetof(LinkInfoKprobe, missed)) * 8;
}

std::optional<uint64_t> kprobe_link_missed(int link_fd, bool kernel_reports) {
  if (link_fd < 0 || !kernel_reports)
    return std::nullopt;
  LinkInfoKprobe info = {}; // func_name and name_len 0: no name wanted
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(link_fd, &info, &len) != 0)
    sysfail(errno, "reading the link's info (BPF_OBJ_GET_INFO_BY_FD)");
  if (info.type != LINK_TYPE_PERF_EVENT || info.perf_type != PERF_EVENT_KPROBE)
    return std::nullopt;
  return info.missed;
}

} // namespace iof
