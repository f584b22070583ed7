#include "vmm/devices/acpi_pm.h"

#include <string>

namespace glassbox::vmm {

namespace {
constexpr std::uint64_t kStatus = 0, kEnable = 2, kControl = 4;
constexpr std::uint16_t kSciEnable = 1u << 0, kSleepEnable = 1u << 13;
constexpr unsigned kSleepTypeShift = 10;
}  // namespace

void AcpiPm::read(const AccessContext&, std::uint64_t offset, std::span<std::uint8_t> data) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < data.size(); ++i) {
    const std::uint64_t at = offset + i;
    std::uint8_t value = at < kLength ? registers_[at] : 0xff;
    if (at == kControl) value |= kSciEnable;  // always in ACPI mode
    data[i] = value;
  }
}

void AcpiPm::write(const AccessContext& ctx, std::uint64_t offset,
                   std::span<const std::uint8_t> data) {
  std::uint16_t control = 0;
  {
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < data.size(); ++i) {
      const std::uint64_t at = offset + i;
      if (at >= kLength) break;
      if (at < kEnable) {
        registers_[at] &= static_cast<std::uint8_t>(~data[i]);  // status bits: write 1 to clear
      } else {
        registers_[at] = data[i];
      }
    }
    // SLP_EN is a write-only trigger: it never reads back.
    control = static_cast<std::uint16_t>(registers_[kControl] | (registers_[kControl + 1] << 8));
    registers_[kControl + 1] &= static_cast<std::uint8_t>(~(kSleepEnable >> 8));
  }
  const bool touches_control = offset <= kControl + 1 && offset + data.size() > kControl;
  const unsigned sleep_type = (control >> kSleepTypeShift) & 7u;
  if (touches_control && (control & kSleepEnable) && sleep_type == kS5SleepType) {
    stop_(StopRequest{
        StopKind::kPowerOff, 0,
        "guest powered off through ACPI (S5, vCPU " + std::to_string(ctx.vcpu_index) + ")"});
  }
}

}  // namespace glassbox::vmm
