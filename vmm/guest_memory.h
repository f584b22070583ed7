// Guest RAM: one memfd (so it can later be shared with tools) mapped once into the VMM, exposed to
// KVM through memory slots. RAM occupies [0, size) of guest-physical space; below 4 GiB it stops
// at kLowRamLimit to leave room for the LAPIC/IOAPIC and device windows.
//
// Slot management lives here because protecting single pages (KVMI page access) splits slots:
// every change of the slot layout goes through this class.
#pragma once

#include <cstdint>
#include <cstring>
#include <expected>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "kvm/error.h"
#include "kvm/fd.h"
#include "kvm/vm.h"

namespace glassbox::vmm {

class GuestMemory {
 public:
  static constexpr std::uint64_t kPageSize = 4096;
  static constexpr std::uint64_t kLowRamLimit = 3ULL << 30;

  static SysResult<GuestMemory> create(std::uint64_t size);
  ~GuestMemory();
  GuestMemory(GuestMemory&& o) noexcept;
  GuestMemory& operator=(GuestMemory&&) = delete;
  GuestMemory(const GuestMemory&) = delete;

  // Registers the RAM with KVM as memory slots.
  SysResult<void> register_slots(kvm::Vm& vm);

  // ---- Page access restrictions (KVMI_VM_SET_PAGE_ACCESS), enforced through the slot layout ----
  // The allowed accesses of frame `gfn` become exactly `access` (R=1, W=2, X=4; 7 lifts the
  // restriction). Returns 0, or a negative errno (-ENOMEM when the slot budget is exhausted).
  // Callable from any thread while vCPUs run.
  int set_page_access(kvm::Vm& vm, std::uint64_t gfn, std::uint8_t access);
  std::uint8_t page_access(std::uint64_t gfn) const;
  // Lifts every restriction and restores the plain slot layout.
  void clear_page_access(kvm::Vm& vm);

  std::uint64_t size() const { return size_; }
  std::uint64_t max_gfn() const { return (size_ - 1) / kPageSize; }
  int memfd() const { return memfd_.get(); }

  // True when [gpa, gpa+len) lies entirely in RAM.
  bool contains(std::uint64_t gpa, std::uint64_t len) const {
    return len <= size_ && gpa <= size_ - len;
  }
  // Host view of a guest-physical range; empty span when the range is not entirely RAM.
  std::span<std::uint8_t> span(std::uint64_t gpa, std::uint64_t len) const {
    if (!contains(gpa, len)) return {};
    return {host_ + gpa, len};
  }
  std::span<std::uint8_t> all() const { return {host_, size_}; }

  bool read(std::uint64_t gpa, void* out, std::uint64_t len) const {
    if (!contains(gpa, len)) return false;
    std::memcpy(out, host_ + gpa, len);
    return true;
  }
  bool write(std::uint64_t gpa, const void* in, std::uint64_t len) {
    if (!contains(gpa, len)) return false;
    std::memcpy(host_ + gpa, in, len);
    return true;
  }
  template <typename T>
  bool read_value(std::uint64_t gpa, T& out) const {
    return read(gpa, &out, sizeof(T));
  }

 private:
  GuestMemory(UniqueFd memfd, std::uint8_t* host, std::uint64_t size)
      : memfd_(std::move(memfd)), host_(host), size_(size) {}

  UniqueFd memfd_;
  std::uint8_t* host_ = nullptr;
  std::uint64_t size_ = 0;
};

}  // namespace glassbox::vmm
