// The KVM MSR filter that sends chosen guest WRMSRs to user space (notes/kvm-backends.md §4).
//
// KVM_X86_SET_MSR_FILTER takes ranges of MSR indices with a bitmap each, where a clear bit denies
// the operation, i.e. makes it exit with KVM_EXIT_X86_WRMSR (with KVM_MSR_EXIT_REASON_FILTER
// enabled). Everything outside the ranges follows the default action, which here is always
// "allow": only the listed writes leave KVM, reads never do. The KVMI MSR ranges (spec/kvmi-v7.md
// §2.3.19) map onto at most two filter ranges, one per region that has a tracked MSR.
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <set>

namespace glassbox::vmm {

class MsrWriteFilter {
 public:
  static constexpr std::uint32_t kLowBase = 0x00000000;
  static constexpr std::uint32_t kHighBase = 0xc0000000;
  static constexpr std::uint32_t kRegionSize = 0x2000;  // MSRs per region

  // True for the MSRs a filter can intercept (the two KVMI regions, bounds included).
  static bool filterable(std::uint32_t msr);

  // Writes of every MSR in `msrs` exit; the others (and all reads) stay in KVM. An empty set
  // gives the filter without ranges, which removes any previous filter. Indices that are not
  // filterable() are ignored: callers reject them first.
  explicit MsrWriteFilter(const std::set<std::uint32_t>& msrs);

  // The filter points into this object's own bitmaps: copying would leave dangling pointers.
  MsrWriteFilter(const MsrWriteFilter&) = delete;
  MsrWriteFilter& operator=(const MsrWriteFilter&) = delete;

  // Valid as long as this object lives; pass to kvm::Vm::set_msr_filter.
  const kvm_msr_filter& filter() const { return filter_; }
  // Number of ranges in use (0, 1 or 2).
  std::size_t range_count() const { return ranges_; }
  // What KVM will do with a guest WRMSR of `msr` under this filter.
  bool write_exits(std::uint32_t msr) const;

 private:
  using Bitmap = std::array<std::uint8_t, kRegionSize / 8>;
  Bitmap low_{};
  Bitmap high_{};
  kvm_msr_filter filter_{};
  std::size_t ranges_ = 0;
};

}  // namespace glassbox::vmm
