// Translates a guest-virtual address by walking the guest's own page tables in guest RAM, for any
// CR3 (not only the vCPU's current one), with 4- or 5-level paging and 4 KiB, 2 MiB and 1 GiB
// pages. KVM_TRANSLATE cannot do other address spaces and reports no permissions.
#pragma once

#include <cstdint>
#include <optional>

#include "vmm/guest_memory.h"

namespace glassbox::vmm::x86 {

struct Translation {
  std::uint64_t gpa = 0;
  std::uint64_t page_size = 0;
  bool writable = false;  // every level allows writes
  bool user = false;      // every level allows CPL3
  bool executable = false;
};

// nullopt when the address is not canonical, a level is not present, or a table lies outside RAM.
std::optional<Translation> translate(const GuestMemory& memory, std::uint64_t cr3,
                                     std::uint64_t gva, bool five_level = false);

}  // namespace glassbox::vmm::x86
