// KVM ioctls whose argument structs end in a flexible array (kvm_cpuid2, kvm_msrs).
//
// In C++, the kernel's __DECLARE_FLEX_ARRAY leaves a 1-byte empty struct in front of the array,
// so sizeof(kvm_cpuid2) is 12 instead of 8 and both the ioctl numbers (which encode the size) and
// the array offset come out wrong. glassbox therefore spells these numbers and headers out with
// the C layout: an 8-byte header {u32 count; u32 padding} directly followed by the entries.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstddef>
#include <cstdint>

namespace glassbox::kvm::flex {

struct ArrayHeader {
  std::uint32_t count;
  std::uint32_t padding;
};
static_assert(sizeof(ArrayHeader) == 8);

inline constexpr unsigned long kGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, 8);
inline constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, 8);
inline constexpr unsigned long kGetCpuid2 = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x91, 8);
inline constexpr unsigned long kGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, 8);
inline constexpr unsigned long kSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, 8);
// kvm_xsave is u32 region[1024] followed by a flexible array: 4096 bytes in C.
inline constexpr std::size_t kXsaveSize = 4096;
inline constexpr unsigned long kGetXsave = _IOC(_IOC_READ, KVMIO, 0xa4, kXsaveSize);
// kvm_signal_mask is {u32 len; u8 sigset[]}: 4 bytes in C.
inline constexpr unsigned long kSetSignalMask = _IOC(_IOC_WRITE, KVMIO, 0x8b, 4);

}  // namespace glassbox::kvm::flex
