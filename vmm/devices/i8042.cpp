#include "vmm/devices/i8042.h"

#include <cstring>
#include <string>

namespace glassbox::vmm {

namespace {
constexpr std::uint8_t kStatusSystemFlag = 0x04;  // self-test passed; output buffer empty
constexpr std::uint8_t kCommandPulseReset = 0xfe;
}  // namespace

void I8042::read(const AccessContext&, std::uint64_t offset, std::span<std::uint8_t> data) {
  std::memset(data.data(), 0, data.size());
  if (offset == kCommandPort - kDataPort && !data.empty()) data[0] = kStatusSystemFlag;
}

void I8042::write(const AccessContext& ctx, std::uint64_t offset,
                  std::span<const std::uint8_t> data) {
  if (offset == kCommandPort - kDataPort && !data.empty() && data[0] == kCommandPulseReset) {
    stop_(StopRequest{StopKind::kReset, 0,
                      "guest reset the machine through the keyboard controller (vCPU " +
                          std::to_string(ctx.vcpu_index) + "); glassbox ends the VM"});
  }
}

}  // namespace glassbox::vmm
