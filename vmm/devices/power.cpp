#include "vmm/devices/power.h"

#include <cstring>
#include <string>

namespace glassbox::vmm {

void PowerOffPort::read(const AccessContext&, std::uint64_t, std::span<std::uint8_t> data) {
  std::memset(data.data(), 0, data.size());
}

void PowerOffPort::write(const AccessContext& ctx, std::uint64_t,
                         std::span<const std::uint8_t> data) {
  const int status = data.empty() ? 0 : data[0];
  stop_(StopRequest{StopKind::kPowerOff, status,
                    "guest powered off with status " + std::to_string(status) + " (vCPU " +
                        std::to_string(ctx.vcpu_index) + ")"});
}

void ResetControl::read(const AccessContext&, std::uint64_t, std::span<std::uint8_t> data) {
  std::memset(data.data(), 0, data.size());
}

void ResetControl::write(const AccessContext& ctx, std::uint64_t,
                         std::span<const std::uint8_t> data) {
  constexpr std::uint8_t kResetCpu = 0x04;
  if (!data.empty() && (data[0] & kResetCpu)) {
    stop_(StopRequest{StopKind::kReset, 0,
                      "guest requested a reset (vCPU " + std::to_string(ctx.vcpu_index) +
                          "); glassbox ends the VM instead of rebooting it"});
  }
}

}  // namespace glassbox::vmm
