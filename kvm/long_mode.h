// The x86-64 state a vCPU needs to start directly in 64-bit long mode (no firmware, no real
// mode): flat segments, control registers, and identity-mapping page tables. Shared by the VMM's
// boot path and by the host probe's scratch VM.
#pragma once

#include <linux/kvm.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>

namespace glassbox::kvm::long_mode {

inline constexpr std::uint16_t kCodeSelector = 0x08;
inline constexpr std::uint16_t kDataSelector = 0x10;
inline constexpr std::uint64_t kCr0 = 0x80050033;  // PG | WP | NE | ET | MP | PE
inline constexpr std::uint64_t kCr4 = 0x620;       // OSXMMEXCPT | OSFXSR | PAE
inline constexpr std::uint64_t kEfer = 0xd01;      // NXE | LMA | LME | SCE

// Where the flat code64 and data descriptors sit in a boot GDT (every other entry is null).
struct GdtLayout {
  std::uint16_t code_selector = kCodeSelector;
  std::uint16_t data_selector = kDataSelector;
  // Bytes the GDT takes: up to and including the higher of the two descriptors.
  std::size_t bytes() const { return (std::max(code_selector, data_selector) / 8 + 1) * 8; }
};
// Glassbox's own boot GDT {null, code64, data}.
inline constexpr GdtLayout kGlassboxGdt{};
// The selectors Linux's 64-bit boot protocol requires: __BOOT_CS 0x10, __BOOT_DS 0x18.
inline constexpr GdtLayout kLinuxBootGdt{0x10, 0x18};

// Writes the GDT of `layout` at `gdt` (layout.bytes() bytes).
void write_gdt(std::span<std::uint8_t> gdt, GdtLayout layout = kGlassboxGdt);

// Fills `sregs` (as read from a fresh vCPU) for 64-bit mode with the GDT at gdt_gpa and paging
// rooted at cr3. The IDT is left empty (limit 0): the guest installs its own.
void set_long_mode_sregs(kvm_sregs& sregs, std::uint64_t gdt_gpa, std::uint64_t cr3,
                         GdtLayout layout = kGlassboxGdt);

// Identity-maps [0, map_bytes) (map_bytes a multiple of 1 GiB, at most 512 GiB) with 2 MiB pages,
// except the first 2 MiB, which use 4 KiB pages with page 0 left unmapped so that NULL
// dereferences fault. Tables are written at `tables_gpa` inside `memory` (guest RAM from GPA 0):
// PML4, PDPT, one PD per GiB, one PT. Returns the CR3 value. `map_page_zero` maps page 0 too
// (Linux's decompressor reads the BIOS data area there).
std::uint64_t write_identity_page_tables(std::span<std::uint8_t> memory, std::uint64_t tables_gpa,
                                         std::uint64_t map_bytes, bool map_page_zero = false);
// Bytes write_identity_page_tables() needs at tables_gpa.
std::uint64_t identity_page_tables_size(std::uint64_t map_bytes);

}  // namespace glassbox::kvm::long_mode
