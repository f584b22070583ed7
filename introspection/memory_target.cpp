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

}  // namespace glassbox::introspection
