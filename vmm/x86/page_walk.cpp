#include "vmm/x86/page_walk.h"

namespace glassbox::vmm::x86 {

namespace {
constexpr std::uint64_t kPresent = 1, kWrite = 2, kUser = 4, kHuge = 0x80;
constexpr std::uint64_t kNx = 1ULL << 63;
constexpr std::uint64_t kAddressMask = 0x000ffffffffff000ULL;
}  // namespace

std::optional<Translation> translate(const GuestMemory& memory, std::uint64_t cr3,
                                     std::uint64_t gva, bool five_level) {
  const int levels = five_level ? 5 : 4;
  const int va_bits = 12 + 9 * levels;
  // Canonical: bits above va_bits-1 replicate bit va_bits-1.
  const auto high = static_cast<std::int64_t>(gva) >> (va_bits - 1);
  if (high != 0 && high != -1) return std::nullopt;

  Translation t{.gpa = 0, .page_size = 0, .writable = true, .user = true, .executable = true};
  std::uint64_t table = cr3 & kAddressMask;
  for (int level = levels; level >= 1; --level) {
    const int shift = 12 + 9 * (level - 1);
    const std::uint64_t index = (gva >> shift) & 0x1ff;
    std::uint64_t entry = 0;
    if (!memory.read_value(table + index * 8, entry)) return std::nullopt;
    if (!(entry & kPresent)) return std::nullopt;
    t.writable = t.writable && (entry & kWrite);
    t.user = t.user && (entry & kUser);
    t.executable = t.executable && !(entry & kNx);
    const bool leaf = level == 1 || ((level == 2 || level == 3) && (entry & kHuge));
    if (leaf) {
      const std::uint64_t page_size = 1ULL << shift;
      const std::uint64_t base = entry & kAddressMask & ~(page_size - 1);
      t.gpa = base | (gva & (page_size - 1));
      t.page_size = page_size;
      return t;
    }
    table = entry & kAddressMask;
  }
  return std::nullopt;
}

}  // namespace glassbox::vmm::x86
