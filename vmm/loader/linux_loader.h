// Loads a Linux kernel by the x86 boot protocol (Documentation/x86/boot.rst), 64-bit entry:
// the protected-mode part of a bzImage goes to its preferred address, the "zero page"
// (struct boot_params) carries the setup header, the e820 map, the command line and the initrd,
// and vCPU 0 starts at the 64-bit entry (load address + 0x200) with RSI pointing at it.
#pragma once

#include <cstdint>
#include <expected>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/guest_memory.h"

namespace glassbox::vmm {

// Where the boot protocol's pieces go (all below 1 MiB, in RAM the e820 map reports as usable
// except where noted).
inline constexpr std::uint64_t kLinuxBootParamsGpa = 0x7000;
inline constexpr std::uint64_t kLinuxCmdlineGpa = 0x20000;
inline constexpr std::uint64_t kLinuxGdtGpa = 0x500;
inline constexpr std::uint64_t kLinuxPageTablesGpa = 0x9000;  // identity map of the first 4 GiB

// What the kernel's setup header says (fields of Documentation/x86/boot.rst).
struct LinuxImage {
  std::uint16_t protocol = 0;     // e.g. 0x020f for 2.15
  std::uint64_t setup_bytes = 0;  // real-mode part, skipped for the 64-bit entry
  std::uint64_t pref_address = 0;
  std::uint32_t init_size = 0;  // memory the kernel needs from its load address while booting
  std::uint32_t initrd_addr_max = 0;
  std::uint32_t cmdline_size = 0;
  std::uint32_t kernel_alignment = 0;
  bool relocatable = false;
  std::uint64_t header_end = 0;  // the setup header is [0x1f1, header_end) of the file
};

// True when `bytes` begins like a bzImage (boot flag and "HdrS").
bool looks_like_bzimage(std::span<const std::uint8_t> bytes);
// Checks what glassbox needs (protocol 2.12+, a 64-bit entry point, loaded high). Errors are
// sentences naming `name` and saying what is wrong.
std::expected<LinuxImage, std::string> parse_linux_image(std::span<const std::uint8_t> bytes,
                                                         const std::string& name);

struct E820Entry {
  std::uint64_t addr = 0;
  std::uint64_t size = 0;
  std::uint32_t type = 0;  // 1 RAM, 2 reserved, 3 ACPI
};

struct LinuxBootRequest {
  std::filesystem::path kernel;
  std::optional<std::filesystem::path> initrd;
  std::string cmdline;
  std::vector<E820Entry> e820;
  std::uint64_t acpi_rsdp_gpa = 0;
};

struct LoadedLinux {
  std::uint64_t entry_gpa = 0;        // the 64-bit entry point
  std::uint64_t boot_params_gpa = 0;  // RSI at the entry
  std::uint64_t kernel_gpa = 0;
  std::uint64_t initrd_gpa = 0;
  std::uint64_t initrd_size = 0;
};

// Memory the kernel needs (its load address + init_size), for a clear --memory error before a VM
// exists.
std::expected<std::uint64_t, std::string> linux_kernel_memory_end(
    const std::filesystem::path& path);

std::expected<LoadedLinux, std::string> load_linux_kernel(const LinuxBootRequest& request,
                                                          GuestMemory& memory);

}  // namespace glassbox::vmm
