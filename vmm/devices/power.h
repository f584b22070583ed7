// The power-off port (GLASSBOX_PORT_POWER: any OUT ends the VM with status value & 0xff) and the
// PC reset control register (0xCF9: writing the reset bit ends the VM; glassbox does not reboot).
#pragma once

#include <functional>

#include "vmm/io_bus.h"
#include "vmm/stop_reason.h"

namespace glassbox::vmm {

using StopCallback = std::function<void(StopRequest)>;

class PowerOffPort final : public Device {
 public:
  explicit PowerOffPort(StopCallback stop) : stop_(std::move(stop)) {}
  std::string name() const override { return "power-off"; }
  void read(const AccessContext&, std::uint64_t, std::span<std::uint8_t> data) override;
  void write(const AccessContext& ctx, std::uint64_t offset,
             std::span<const std::uint8_t> data) override;

 private:
  StopCallback stop_;
};

class ResetControl final : public Device {
 public:
  explicit ResetControl(StopCallback stop) : stop_(std::move(stop)) {}
  std::string name() const override { return "reset-control"; }
  void read(const AccessContext&, std::uint64_t, std::span<std::uint8_t> data) override;
  void write(const AccessContext& ctx, std::uint64_t offset,
             std::span<const std::uint8_t> data) override;

 private:
  StopCallback stop_;
};

}  // namespace glassbox::vmm
