// Why a VM stopped, and the process exit status each reason maps to (documented in the README).
#pragma once

#include <string>

namespace glassbox::vmm {

enum class StopKind {
  kPowerOff,      // guest wrote the power-off port; status = its value & 0xff
  kReset,         // guest asked for a reset; glassbox ends the VM (as Firecracker does), status 0
  kGuestFault,    // triple fault, failed entry, unhandled exit: status kGuestFaultStatus
  kSignal,        // SIGINT/SIGTERM: status 128 + signal
  kVmmError,      // an ioctl the VMM depends on failed: status kVmmErrorStatus
  kIntrospection  // the introspection tool answered CRASH to an event
};

inline constexpr int kGuestFaultStatus = 125;
inline constexpr int kVmmErrorStatus = 124;
inline constexpr int kIntrospectionCrashStatus = 123;

struct StopRequest {
  StopKind kind = StopKind::kPowerOff;
  int status = 0;
  std::string detail;  // one line for the log
};

}  // namespace glassbox::vmm
