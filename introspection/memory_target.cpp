#include "introspection/memory_target.h"

namespace glassbox::introspection {

std::uint64_t GuestMemoryTarget::max_gfn() const {
  // GuestMemory::max_gfn() is the last backed frame; KVMI wants the first one past it.
  return (memory_.size() + vmm::GuestMemory::kPageSize - 1) / vmm::GuestMemory::kPageSize;
}

bool GuestMemoryTarget::read_physical(std::uint64_t gpa, std::span<std::byte> out) {
  return memory_.read(gpa, out.data(), out.size());
}

bool GuestMemoryTarget::write_physical(std::uint64_t gpa, std::span<const std::byte> in) {
  return memory_.write(gpa, in.data(), in.size());
}

// GuestMemory keeps the map of restricted frames whether or not its RAM was registered with KVM;
// without registration no slot is ever touched, so no writer is needed.
int GuestMemoryTarget::set_page_access(std::uint64_t gfn, std::uint8_t access) {
  return memory_.set_page_access(vmm::GuestMemory::SlotWriter{}, gfn, access);
}

void GuestMemoryTarget::clear_page_access() {
  memory_.clear_page_access(vmm::GuestMemory::SlotWriter{});
}

}  // namespace glassbox::introspection
