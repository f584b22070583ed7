// KVMI error codes (spec §4). A reply's kvmi_error_code.err is 0 or the negative of one of these.
//
// They are fixed wire values, not the host's errno: KVM_ENOSYS is 1000 and KVM_EOPNOTSUPP 95
// whatever the host libc says, so nothing here uses <cerrno>.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace glassbox::kvmi {

// The value as it travels in kvmi_error_code.err (already negative).
enum class Errno : std::int32_t {
  Perm = -1,        // -KVM_EPERM: command or event not allowed by the VMM
  NoEnt = -2,       // -KVM_ENOENT: guest page or CPUID leaf missing
  TooBig = -7,      // -KVM_E2BIG: not produced by v7, listed for libkvmi
  Again = -11,      // -KVM_EAGAIN: vCPU not introspectable yet
  NoMem = -12,      // -KVM_ENOMEM
  Fault = -14,      // -KVM_EFAULT: not produced by v7
  Busy = -16,       // -KVM_EBUSY: too many pauses, injection pending
  Inval = -22,      // -KVM_EINVAL: bad argument, padding or id
  OpNotSupp = -95,  // -KVM_EOPNOTSUPP
  NoSys = -1000,    // -KVM_ENOSYS: unknown or unsupported message id
};

// Positive KVM_E* constants, for code that mirrors the kernel's spelling (err = -kKvmEinval).
inline constexpr std::int32_t kKvmEperm = 1;
inline constexpr std::int32_t kKvmEnoent = 2;
inline constexpr std::int32_t kKvmE2big = 7;
inline constexpr std::int32_t kKvmEagain = 11;
inline constexpr std::int32_t kKvmEnomem = 12;
inline constexpr std::int32_t kKvmEfault = 14;
inline constexpr std::int32_t kKvmEbusy = 16;
inline constexpr std::int32_t kKvmEinval = 22;
inline constexpr std::int32_t kKvmEopnotsupp = 95;
inline constexpr std::int32_t kKvmEnosys = 1000;

inline constexpr Errno kAllErrnos[] = {Errno::Perm,      Errno::NoEnt, Errno::TooBig, Errno::Again,
                                       Errno::NoMem,     Errno::Fault, Errno::Busy,   Errno::Inval,
                                       Errno::OpNotSupp, Errno::NoSys};

constexpr std::int32_t to_wire(Errno e) {
  return static_cast<std::int32_t>(e);
}

// The Errno for a wire value, or nullopt for 0 and for values v7 never defines.
constexpr std::optional<Errno> errno_from_wire(std::int32_t err) {
  for (Errno e : kAllErrnos) {
    if (to_wire(e) == err) return e;
  }
  return std::nullopt;
}

// "-KVM_EINVAL" etc.; "OK" for 0 and "unknown error" for anything else.
constexpr std::string_view error_name(std::int32_t err) {
  switch (err) {
    case 0:
      return "OK";
    case -kKvmEperm:
      return "-KVM_EPERM";
    case -kKvmEnoent:
      return "-KVM_ENOENT";
    case -kKvmE2big:
      return "-KVM_E2BIG";
    case -kKvmEagain:
      return "-KVM_EAGAIN";
    case -kKvmEnomem:
      return "-KVM_ENOMEM";
    case -kKvmEfault:
      return "-KVM_EFAULT";
    case -kKvmEbusy:
      return "-KVM_EBUSY";
    case -kKvmEinval:
      return "-KVM_EINVAL";
    case -kKvmEopnotsupp:
      return "-KVM_EOPNOTSUPP";
    case -kKvmEnosys:
      return "-KVM_ENOSYS";
    default:
      return "unknown error";
  }
}

// What the code means in KVMI terms (not the libc strerror text, which would mislead for 1000).
constexpr std::string_view error_description(std::int32_t err) {
  switch (err) {
    case 0:
      return "success";
    case -kKvmEperm:
      return "not allowed by the VMM";
    case -kKvmEnoent:
      return "no such entry (guest page not backed, or CPUID leaf missing)";
    case -kKvmE2big:
      return "argument too big";
    case -kKvmEagain:
      return "vCPU cannot be introspected yet";
    case -kKvmEnomem:
      return "out of memory, or reply too large";
    case -kKvmEfault:
      return "bad address";
    case -kKvmEbusy:
      return "busy (too many pending pauses, or an injection is pending)";
    case -kKvmEinval:
      return "invalid argument, padding, vCPU index or id";
    case -kKvmEopnotsupp:
      return "operation not supported in this state or on this host";
    case -kKvmEnosys:
      return "unknown or unsupported message id";
    default:
      return "error code not defined by KVMI v7";
  }
}

constexpr std::string_view error_name(Errno e) {
  return error_name(to_wire(e));
}
constexpr std::string_view error_description(Errno e) {
  return error_description(to_wire(e));
}

}  // namespace glassbox::kvmi
