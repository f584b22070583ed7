// Guest RAM: one memfd (so it can later be shared with tools) mapped once into the VMM, exposed to
// KVM through memory slots. RAM occupies [0, size) of guest-physical space; below 4 GiB it stops
// at kLowRamLimit to leave room for the LAPIC/IOAPIC and device windows.
//
// Slot management lives here because protecting single pages (KVMI page access) splits slots:
// every change of the slot layout goes through this class.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <cstring>
#include <expected>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "kvm/error.h"
#include "kvm/fd.h"
#include "kvm/vm.h"

namespace glassbox::vmm {

// How a frame is exposed to KVM, derived from its allowed accesses (spec/kvmi-v7.md §P4,
// notes/kvm-backends.md §6): a read-only slot lets reads and fetches run and sends writes to
// user space after they retired; a frame in no slot sends every access to user space (reads
// before they happen, fetches as emulation failures), so the VMM can serve the allowed ones.
enum class SlotKind : std::uint8_t {
  kNormal,    // rwx, or temporarily lifted
  kReadOnly,  // R and X allowed, W not: KVM_MEM_READONLY
  kNone,      // R or X not allowed: in no slot
};
SlotKind slot_kind(std::uint8_t access);

// A maximal run of frames of one kind, and the KVM slot behind it (kNoSlot for kNone).
struct SlotSpan {
  static constexpr std::uint32_t kNoSlot = ~0u;
  std::uint64_t first_gfn = 0;
  std::uint64_t end_gfn = 0;  // exclusive
  SlotKind kind = SlotKind::kNormal;
  std::uint32_t slot = kNoSlot;
  bool operator==(const SlotSpan&) const = default;
};

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

  // Where slot changes go: KVM_SET_USER_MEMORY_REGION on a VM, or a recorder in unit tests.
  // Returns 0 or a negative errno. memory_size 0 deletes the slot.
  using SlotWriter = std::function<int(const kvm_userspace_memory_region&)>;
  static SlotWriter vm_writer(kvm::Vm& vm);
  // register_slots() with an explicit writer and slot budget (KVM_CAP_NR_MEMSLOTS).
  int register_slots(const SlotWriter& writer, std::uint32_t slot_limit);

  // ---- Page access restrictions (KVMI_VM_SET_PAGE_ACCESS), enforced through the slot layout ----
  // The allowed accesses of frame `gfn` become exactly `access` (R=1, W=2, X=4; 7 lifts the
  // restriction). Returns 0, or a negative errno (-ENOMEM when the slot budget is exhausted).
  // Callable from any thread while vCPUs run.
  int set_page_access(kvm::Vm& vm, std::uint64_t gfn, std::uint8_t access);
  std::uint8_t page_access(std::uint64_t gfn) const;
  // Lifts every restriction and restores the plain slot layout.
  void clear_page_access(kvm::Vm& vm);
  // The same with an explicit writer (unit tests).
  int set_page_access(const SlotWriter& writer, std::uint64_t gfn, std::uint8_t access);
  void clear_page_access(const SlotWriter& writer);

  // Slot updates are not atomic (delete, then create): a vCPU that walks its page tables or
  // fetches through a frame whose slot is being replaced gets a #PF it never earned (measured on
  // KVM-PVM). Whoever owns the vCPUs installs a guard that runs an update with every vCPU out of
  // the guest; without one, updates run as they come (fine before the vCPUs start, and for
  // memory-only users). Any thread; the guard may be replaced at any time.
  using UpdateGuard = std::function<void(const std::function<void()>& update)>;
  void set_update_guard(UpdateGuard guard);

  // Gives a restricted frame an ordinary slot for a moment without forgetting its restriction
  // (page_access() still reports it): the VMM lets one access the tool allowed (an event answered
  // CONTINUE) run natively, then calls relock_page(). Nested lifts of one frame are counted.
  int lift_page(kvm::Vm& vm, std::uint64_t gfn);
  void relock_page(kvm::Vm& vm, std::uint64_t gfn);
  int lift_page(const SlotWriter& writer, std::uint64_t gfn);
  void relock_page(const SlotWriter& writer, std::uint64_t gfn);
  // The kind the frame has in KVM right now (what an exit from it means).
  SlotKind current_kind(std::uint64_t gfn) const;
  // The current layout, in gfn order (tests and diagnostics).
  std::vector<SlotSpan> slot_layout() const;
  std::size_t restricted_count() const;

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

  std::uint64_t pages() const { return size_ / kPageSize; }
  // With mutex_ held: the kind frame `gfn` must have now (restriction and lifts).
  SlotKind wanted_kind(std::uint64_t gfn) const;
  // The spans [first, end) must have, merged by kind (slots not assigned yet).
  std::vector<SlotSpan> wanted_spans(std::uint64_t first, std::uint64_t end) const;
  // Brings the slots around `gfn` in line with wanted_kind(); 0 or a negative errno, in which
  // case the previous layout is kept (or, if KVM failed half-way, restored as far as it can be).
  int rebuild_around(const SlotWriter& writer, std::uint64_t gfn);
  // Replaces the spans [first, end) (whole spans of spans_) by `wanted`.
  int replace_spans(const SlotWriter& writer, std::uint64_t first, std::uint64_t end,
                    std::vector<SlotSpan> wanted);
  int write_slot(const SlotWriter& writer, const SlotSpan& span, bool remove) const;
  std::uint32_t take_slot_id();
  // Runs `body` (which takes mutex_ itself) under the update guard, if there is one.
  int guarded(const std::function<int()>& body);

  UniqueFd memfd_;
  std::uint8_t* host_ = nullptr;
  std::uint64_t size_ = 0;

  std::mutex guard_mutex_;  // guards guard_ only (never held while mutex_ is)
  UpdateGuard guard_;

  // Page access state; every member below is guarded by mutex_. The receiving thread changes
  // restrictions while vCPU threads look them up at their exits.
  mutable std::mutex mutex_;
  std::map<std::uint64_t, std::uint8_t> restricted_;  // gfn -> allowed accesses (never 7)
  std::map<std::uint64_t, int> lifted_;               // gfn -> number of lifts in progress
  std::map<std::uint64_t, SlotSpan> spans_;           // first_gfn -> span; covers all RAM
  std::set<std::uint32_t> free_ids_;                  // returned ids, reused lowest first
  std::uint32_t next_id_ = 0;                         // ids >= next_id_ were never used
  std::uint32_t slot_limit_ = 0;                      // KVM_CAP_NR_MEMSLOTS
  std::uint32_t slots_used_ = 0;
};

}  // namespace glassbox::vmm
