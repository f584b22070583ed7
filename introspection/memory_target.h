// A VmTarget over a plain GuestMemory: what the VMM uses for a Machine (machine_target.h) and
// what fuzz targets and tests use without any KVM (GuestMemory::create needs only a memfd).
#pragma once

#include "introspection/vm_target.h"
#include "vmm/guest_memory.h"

namespace glassbox::introspection {

class GuestMemoryTarget : public VmTarget {
 public:
  GuestMemoryTarget(vmm::GuestMemory& memory, std::uint32_t vcpu_count, HostFacts facts = {})
      : memory_(memory), vcpu_count_(vcpu_count), facts_(facts) {}

  std::uint32_t vcpu_count() const override { return vcpu_count_; }
  std::uint64_t max_gfn() const override;
  bool read_physical(std::uint64_t gpa, std::span<std::byte> out) override;
  bool write_physical(std::uint64_t gpa, std::span<const std::byte> in) override;
  HostFacts host_facts() const override { return facts_; }
  // Restrictions are only recorded: a memory-only target has no vCPUs to fault and no slots.
  int set_page_access(std::uint64_t gfn, std::uint8_t access) override;
  std::uint8_t page_access(std::uint64_t gfn) const override { return memory_.page_access(gfn); }
  void clear_page_access() override;

 private:
  vmm::GuestMemory& memory_;
  std::uint32_t vcpu_count_;
  HostFacts facts_;
};

}  // namespace glassbox::introspection
