// The ACPI PM1 event and control registers the FADT announces (see x86/acpi_tables.h): what a
// Linux guest writes to power off. SCI_EN always reads as set (the machine is in ACPI mode from
// the start, so there is no SMI command port), nothing ever raises an SCI, and a write of
// SLP_EN with the sleep type of the DSDT's \_S5 object ends the VM with status 0.
#pragma once

#include <cstdint>
#include <mutex>

#include "vmm/devices/power.h"
#include "vmm/io_bus.h"

namespace glassbox::vmm {

class AcpiPm final : public Device {
 public:
  static constexpr std::uint64_t kBasePort = 0xb000;
  static constexpr std::uint64_t kEventBlock = kBasePort;        // PM1a_EVT_BLK, 4 bytes
  static constexpr std::uint64_t kControlBlock = kBasePort + 4;  // PM1a_CNT_BLK, 2 bytes
  static constexpr std::uint64_t kLength = 6;
  static constexpr std::uint8_t kS5SleepType = 5;  // the value the DSDT's \_S5 package holds

  explicit AcpiPm(StopCallback stop) : stop_(std::move(stop)) {}
  std::string name() const override { return "acpi-pm"; }
  void read(const AccessContext&, std::uint64_t offset, std::span<std::uint8_t> data) override;
  void write(const AccessContext& ctx, std::uint64_t offset,
             std::span<const std::uint8_t> data) override;

 private:
  StopCallback stop_;
  std::mutex mutex_;
  std::uint8_t registers_[kLength] = {};  // PM1_STS, PM1_EN, PM1_CNT (little-endian)
};

}  // namespace glassbox::vmm
