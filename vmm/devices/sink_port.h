// A port that accepts writes and reads as zero, silently: for ports a guest pokes for timing or
// diagnostics (POST code port 0x80), where the bus's "unclaimed access" warning would be noise.
#pragma once

#include <cstring>

#include "vmm/io_bus.h"

namespace glassbox::vmm {

class SinkPort final : public Device {
 public:
  explicit SinkPort(std::string name) : name_(std::move(name)) {}
  std::string name() const override { return name_; }
  void read(const AccessContext&, std::uint64_t, std::span<std::uint8_t> data) override {
    std::memset(data.data(), 0, data.size());
  }
  void write(const AccessContext&, std::uint64_t, std::span<const std::uint8_t>) override {}

 private:
  std::string name_;
};

}  // namespace glassbox::vmm
