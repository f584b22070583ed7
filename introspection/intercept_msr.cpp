// KVMI_EVENT_MSR (spec/kvmi-v7.md §3.4.9) through the MSR filter (notes/kvm-backends.md §4).
#include "introspection/intercepts.h"

namespace glassbox::introspection {

std::optional<std::uint64_t> SessionIntercepts::on_msr_write(vmm::VcpuThread&, std::uint32_t,
                                                             std::uint64_t value) {
  return value;
}

bool apply_msr_intercepts(Session&) {
  return true;
}

}  // namespace glassbox::introspection
