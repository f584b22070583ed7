// The introspection doorbell (GLASSBOX_PORT_DOORBELL): an OUT to it is the KVMI hypercall on
// hosts where VMCALL cannot reach user space (spec/kvmi-v7.md §P3). The guest leaves the KVMI
// hypercall registers in place (RAX=34, RDI=24, RSI=0); the vCPU thread reads them from the sync
// registers and hands the call to whoever is listening (the introspection server).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "vmm/io_bus.h"

namespace glassbox::vmm {

class Doorbell final : public Device {
 public:
  // Called on the ringing vCPU's thread.
  using Listener = std::function<void(const AccessContext&)>;

  std::string name() const override { return "kvmi-doorbell"; }
  void read(const AccessContext&, std::uint64_t, std::span<std::uint8_t> data) override;
  void write(const AccessContext& ctx, std::uint64_t offset,
             std::span<const std::uint8_t> data) override;

  // Set before the vCPUs start; without a listener rings are only counted.
  void set_listener(Listener listener) { listener_ = std::move(listener); }
  std::uint64_t rings() const { return rings_.load(std::memory_order_relaxed); }

 private:
  Listener listener_;
  std::atomic<std::uint64_t> rings_{0};
};

}  // namespace glassbox::vmm
