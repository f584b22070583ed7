// Port I/O and MMIO dispatch. Devices are registered during machine setup, before any vCPU runs;
// afterwards the bus is read-only, so vCPU threads dispatch without taking a lock. Devices that
// keep state lock it themselves.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>

namespace glassbox::vmm {

class VcpuThread;

// Identifies the vCPU that performs an access (devices such as the doorbell need it). `vcpu` is
// the calling vCPU thread (null in unit tests); device code runs on that thread.
struct AccessContext {
  int vcpu_index = 0;
  VcpuThread* vcpu = nullptr;
};

class Device {
 public:
  virtual ~Device() = default;
  virtual std::string name() const = 0;
  // `offset` is relative to the base the device was registered at.
  virtual void read(const AccessContext& ctx, std::uint64_t offset,
                    std::span<std::uint8_t> data) = 0;
  virtual void write(const AccessContext& ctx, std::uint64_t offset,
                     std::span<const std::uint8_t> data) = 0;
};

class Bus {
 public:
  explicit Bus(std::string name) : name_(std::move(name)) {}
  // Throws std::invalid_argument when the range overlaps a registered device.
  void add(std::uint64_t base, std::uint64_t length, std::shared_ptr<Device> device);

  // Unclaimed reads return all ones (as on a PC bus) and unclaimed writes are dropped; both are
  // logged at debug level, the first few at warning level.
  void read(const AccessContext& ctx, std::uint64_t address, std::span<std::uint8_t> data);
  void write(const AccessContext& ctx, std::uint64_t address, std::span<const std::uint8_t> data);

 private:
  struct Range {
    std::uint64_t length;
    std::shared_ptr<Device> device;
  };
  const Range* find(std::uint64_t address, std::uint64_t& base) const;
  void note_unclaimed(const char* what, std::uint64_t address, std::size_t size);

  std::string name_;
  std::map<std::uint64_t, Range> ranges_;  // by base address
  std::atomic<int> unclaimed_warnings_{0};
};

}  // namespace glassbox::vmm
