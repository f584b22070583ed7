#include "kvm/long_mode.h"

#include <cstring>
#include <stdexcept>

namespace glassbox::kvm::long_mode {

namespace {
constexpr std::uint64_t kGiB = 1ULL << 30;
constexpr std::uint64_t kPresent = 1, kWritable = 2, kHuge = 0x80;

void put64(std::span<std::uint8_t> memory, std::uint64_t gpa, std::uint64_t value) {
  if (gpa + 8 > memory.size()) throw std::out_of_range("page table outside guest memory");
  std::memcpy(memory.data() + gpa, &value, 8);
}

kvm_segment flat_segment(std::uint16_t selector, std::uint8_t type, bool code) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.dpl = 0;
  s.db = code ? 0 : 1;  // long-mode code segments must have D=0 with L=1
  s.s = 1;
  s.l = code ? 1 : 0;
  s.g = 1;
  return s;
}
}  // namespace

void write_gdt(std::span<std::uint8_t> gdt, GdtLayout layout) {
  constexpr std::uint64_t kCode = 0x00af9b000000ffffULL;  // present, DPL0, execute/read, L=1, G=1
  constexpr std::uint64_t kData = 0x00cf93000000ffffULL;  // present, DPL0, read/write, D/B=1, G=1
  if (gdt.size() < layout.bytes()) throw std::out_of_range("GDT buffer too small");
  std::memset(gdt.data(), 0, layout.bytes());
  std::memcpy(gdt.data() + layout.code_selector, &kCode, 8);
  std::memcpy(gdt.data() + layout.data_selector, &kData, 8);
}

void set_long_mode_sregs(kvm_sregs& sregs, std::uint64_t gdt_gpa, std::uint64_t cr3,
                         GdtLayout layout) {
  sregs.cs = flat_segment(layout.code_selector, 0xb, true);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss =
      flat_segment(layout.data_selector, 0x3, false);
  // VM entry requires a usable TR even though nothing uses it until the guest loads its own TSS.
  sregs.tr = kvm_segment{};
  sregs.tr.limit = 0x67;
  sregs.tr.type = 0xb;  // busy 64-bit TSS
  sregs.tr.present = 1;
  sregs.ldt = kvm_segment{};
  sregs.ldt.type = 0x2;
  sregs.ldt.present = 1;
  sregs.ldt.limit = 0xffff;
  sregs.gdt.base = gdt_gpa;
  sregs.gdt.limit = static_cast<std::uint16_t>(layout.bytes() - 1);
  sregs.idt.base = 0;
  sregs.idt.limit = 0;
  sregs.cr0 = kCr0;
  sregs.cr3 = cr3;
  sregs.cr4 = kCr4;
  sregs.efer = kEfer;
}

std::uint64_t identity_page_tables_size(std::uint64_t map_bytes) {
  return (3 + map_bytes / kGiB) * 4096;  // PML4 + PDPT + PDs + one PT
}

std::uint64_t write_identity_page_tables(std::span<std::uint8_t> memory, std::uint64_t tables_gpa,
                                         std::uint64_t map_bytes, bool map_page_zero) {
  if (map_bytes == 0 || map_bytes % kGiB != 0 || map_bytes > 512 * kGiB) {
    throw std::invalid_argument("identity map size must be 1..512 GiB in whole GiB");
  }
  const std::uint64_t pml4 = tables_gpa, pdpt = pml4 + 4096, pd0 = pdpt + 4096;
  const std::uint64_t gibs = map_bytes / kGiB;
  const std::uint64_t pt = pd0 + gibs * 4096;
  if (pt + 4096 > memory.size()) throw std::out_of_range("page tables outside guest memory");
  std::memset(memory.data() + pml4, 0, identity_page_tables_size(map_bytes));

  put64(memory, pml4, pdpt | kPresent | kWritable);
  for (std::uint64_t g = 0; g < gibs; ++g) {
    const std::uint64_t pd = pd0 + g * 4096;
    put64(memory, pdpt + g * 8, pd | kPresent | kWritable);
    for (std::uint64_t i = 0; i < 512; ++i) {
      const std::uint64_t addr = g * kGiB + (i << 21);
      put64(memory, pd + i * 8, addr | kPresent | kWritable | kHuge);
    }
  }
  // The first 2 MiB through 4 KiB pages, page 0 not present unless asked for.
  put64(memory, pd0, pt | kPresent | kWritable);
  for (std::uint64_t i = map_page_zero ? 0 : 1; i < 512; ++i)
    put64(memory, pt + i * 8, (i << 12) | kPresent | kWritable);
  return pml4;
}

}  // namespace glassbox::kvm::long_mode
