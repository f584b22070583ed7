// The PC keyboard controller's reset line (ports 0x60 and 0x64), which is how Linux reboots a PC
// (reboot=k, and the ACPI reset register glassbox's FADT points at it). There is no keyboard: the
// output buffer is always empty, so a driver that probes finds no device, and command 0xFE
// (pulse the reset line) ends the VM the way a reset does.
#pragma once

#include "vmm/devices/power.h"
#include "vmm/io_bus.h"

namespace glassbox::vmm {

class I8042 final : public Device {
 public:
  static constexpr std::uint64_t kDataPort = 0x60, kCommandPort = 0x64;
  explicit I8042(StopCallback stop) : stop_(std::move(stop)) {}
  std::string name() const override { return "i8042"; }
  // Registered once at kDataPort with length 5: offset 0 is data, offset 4 status/command.
  void read(const AccessContext&, std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(const AccessContext& ctx, std::uint64_t offset,
             std::span<const std::uint8_t> data) override;

 private:
  StopCallback stop_;
};

}  // namespace glassbox::vmm
