// Loads a 64-bit x86 ELF executable into guest RAM at its physical addresses (p_paddr), the way
// a direct-boot VMM starts a kernel without firmware.
#pragma once

#include <cstdint>
#include <expected>
#include <filesystem>
#include <string>

#include "vmm/guest_memory.h"

namespace glassbox::vmm {

struct LoadedKernel {
  std::uint64_t entry_gpa = 0;  // physical address of the entry point
  std::uint64_t lowest_gpa = 0;
  std::uint64_t highest_gpa = 0;  // end (exclusive) of the highest segment
};

// Errors are complete sentences that name the file and say what is wrong with it.
std::expected<LoadedKernel, std::string> load_elf_kernel(const std::filesystem::path& path,
                                                         GuestMemory& memory,
                                                         std::uint64_t min_gpa);

// Memory the image needs (end of its highest segment), for a clear "--memory too small" error
// before any VM is created.
std::expected<std::uint64_t, std::string> elf_kernel_memory_end(const std::filesystem::path& path);

}  // namespace glassbox::vmm
