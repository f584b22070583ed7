#include "vmm/devices/doorbell.h"

#include <cstring>

namespace glassbox::vmm {

void Doorbell::read(const AccessContext&, std::uint64_t, std::span<std::uint8_t> data) {
  std::memset(data.data(), 0, data.size());
}

void Doorbell::write(const AccessContext& ctx, std::uint64_t, std::span<const std::uint8_t>) {
  rings_.fetch_add(1, std::memory_order_relaxed);
  if (listener_) listener_(ctx);
}

}  // namespace glassbox::vmm
