#include "vmm/io_bus.h"

#include <spdlog/spdlog.h>

#include <cstring>
#include <stdexcept>

namespace glassbox::vmm {

void Bus::add(std::uint64_t base, std::uint64_t length, std::shared_ptr<Device> device) {
  auto next = ranges_.lower_bound(base);
  if (next != ranges_.end() && next->first < base + length) {
    throw std::invalid_argument(name_ + ": " + device->name() + " overlaps " +
                                next->second.device->name());
  }
  if (next != ranges_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second.length > base) {
      throw std::invalid_argument(name_ + ": " + device->name() + " overlaps " +
                                  prev->second.device->name());
    }
  }
  ranges_.emplace(base, Range{length, std::move(device)});
}

const Bus::Range* Bus::find(std::uint64_t address, std::uint64_t& base) const {
  auto it = ranges_.upper_bound(address);
  if (it == ranges_.begin()) return nullptr;
  --it;
  if (address - it->first >= it->second.length) return nullptr;
  base = it->first;
  return &it->second;
}

void Bus::note_unclaimed(const char* what, std::uint64_t address, std::size_t size) {
  constexpr int kWarnings = 8;
  if (unclaimed_warnings_.fetch_add(1, std::memory_order_relaxed) < kWarnings) {
    spdlog::warn("{}: {} of {} byte(s) at {:#x} hits no device", name_, what, size, address);
  } else {
    spdlog::debug("{}: {} of {} byte(s) at {:#x} hits no device", name_, what, size, address);
  }
}

void Bus::read(const AccessContext& ctx, std::uint64_t address, std::span<std::uint8_t> data) {
  std::uint64_t base = 0;
  if (const Range* r = find(address, base)) {
    r->device->read(ctx, address - base, data);
    return;
  }
  std::memset(data.data(), 0xff, data.size());
  note_unclaimed("read", address, data.size());
}

void Bus::write(const AccessContext& ctx, std::uint64_t address,
                std::span<const std::uint8_t> data) {
  std::uint64_t base = 0;
  if (const Range* r = find(address, base)) {
    r->device->write(ctx, address - base, data);
    return;
  }
  note_unclaimed("write", address, data.size());
}

}  // namespace glassbox::vmm
