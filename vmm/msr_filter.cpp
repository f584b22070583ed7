#include "vmm/msr_filter.h"

#include <cstddef>

namespace glassbox::vmm {

// The ioctl number encodes sizeof(kvm_msr_filter); the struct has fixed arrays only, but check
// that C++ sees the C layout (u32 flags, padding, 16 ranges of {u32, u32, u32, pointer}).
static_assert(sizeof(kvm_msr_filter_range) == 24);
static_assert(offsetof(kvm_msr_filter_range, bitmap) == 16);
static_assert(offsetof(kvm_msr_filter, ranges) == 8);
static_assert(sizeof(kvm_msr_filter) == 8 + KVM_MSR_FILTER_MAX_RANGES * 24);

bool MsrWriteFilter::filterable(std::uint32_t msr) {
  return msr - kLowBase < kRegionSize || msr - kHighBase < kRegionSize;
}

MsrWriteFilter::MsrWriteFilter(const std::set<std::uint32_t>& msrs) {
  // A set bit lets the write through KVM; only the tracked MSRs get a clear bit (= exit).
  low_.fill(0xff);
  high_.fill(0xff);
  bool use_low = false;
  bool use_high = false;
  for (std::uint32_t msr : msrs) {
    Bitmap* bitmap = nullptr;
    std::uint32_t bit = 0;
    if (msr - kLowBase < kRegionSize) {
      bitmap = &low_, bit = msr - kLowBase, use_low = true;
    } else if (msr - kHighBase < kRegionSize) {
      bitmap = &high_, bit = msr - kHighBase, use_high = true;
    } else {
      continue;
    }
    // KVM tests the bitmap as an array of unsigned longs (little endian), i.e. bit i of byte i/8.
    (*bitmap)[bit / 8] &= static_cast<std::uint8_t>(~(1u << (bit % 8)));
  }
  filter_.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;
  auto add = [this](std::uint32_t base, Bitmap& bitmap) {
    auto& range = filter_.ranges[ranges_++];
    range.flags = KVM_MSR_FILTER_WRITE;  // reads are never filtered
    range.base = base;
    range.nmsrs = kRegionSize;
    range.bitmap = bitmap.data();
  };
  if (use_low) add(kLowBase, low_);
  if (use_high) add(kHighBase, high_);
}

bool MsrWriteFilter::write_exits(std::uint32_t msr) const {
  for (std::size_t i = 0; i < ranges_; ++i) {
    const auto& range = filter_.ranges[i];
    if ((range.flags & KVM_MSR_FILTER_WRITE) == 0) continue;
    const std::uint32_t bit = msr - range.base;
    if (bit >= range.nmsrs) continue;
    return (range.bitmap[bit / 8] & (1u << (bit % 8))) == 0;
  }
  return false;  // DEFAULT_ALLOW
}

}  // namespace glassbox::vmm
