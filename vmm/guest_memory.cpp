#include "vmm/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <optional>

#include <spdlog/spdlog.h>

namespace glassbox::vmm {

namespace {
// Access bits as KVMI_VM_SET_PAGE_ACCESS has them (spec/kvmi-v7.md §2.3.20).
constexpr std::uint8_t kR = 1;
constexpr std::uint8_t kW = 2;
constexpr std::uint8_t kX = 4;
constexpr std::uint8_t kRwx = kR | kW | kX;
// A VM may use this many slots when the host does not say (KVM's historical minimum).
constexpr std::uint32_t kDefaultSlotLimit = 32;
}  // namespace

SlotKind slot_kind(std::uint8_t access) {
  access &= kRwx;
  if (access == kRwx) return SlotKind::kNormal;
  const std::uint8_t rx = kR | kX;
  // A slot always lets KVM read and fetch without asking; only W can be taken away in place.
  if ((access & rx) == rx) return SlotKind::kReadOnly;
  return SlotKind::kNone;
}

SysResult<GuestMemory> GuestMemory::create(std::uint64_t size) {
  int fd = memfd_create("glassbox-guest-ram", MFD_CLOEXEC);
  if (fd < 0) return sys_error("memfd_create");
  UniqueFd memfd(fd);
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) return sys_error("ftruncate guest RAM");
  void* host = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (host == MAP_FAILED) return sys_error("mmap guest RAM");
  // Guest RAM is not worth dumping with the VMM's core; it can be gigabytes.
  madvise(host, size, MADV_DONTDUMP);
  return GuestMemory(std::move(memfd), static_cast<std::uint8_t*>(host), size);
}

GuestMemory::~GuestMemory() {
  if (host_ != nullptr) munmap(host_, size_);
}

GuestMemory::GuestMemory(GuestMemory&& o) noexcept
    : memfd_(std::move(o.memfd_)), host_(o.host_), size_(o.size_) {
  // Moved only while the machine is being built, before any other thread can see either object.
  guard_ = std::move(o.guard_);
  restricted_ = std::move(o.restricted_);
  lifted_ = std::move(o.lifted_);
  spans_ = std::move(o.spans_);
  free_ids_ = std::move(o.free_ids_);
  next_id_ = o.next_id_;
  slot_limit_ = o.slot_limit_;
  slots_used_ = o.slots_used_;
  o.host_ = nullptr;
  o.size_ = 0;
}

GuestMemory::SlotWriter GuestMemory::vm_writer(kvm::Vm& vm) {
  return [&vm](const kvm_userspace_memory_region& r) -> int {
    auto done = vm.set_user_memory_region(r.slot, r.guest_phys_addr, r.memory_size,
                                          reinterpret_cast<void*>(r.userspace_addr), r.flags);
    if (!done) {
      spdlog::warn("{}", done.error().message());
      return -done.error().error;
    }
    return 0;
  };
}

SysResult<void> GuestMemory::register_slots(kvm::Vm& vm) {
  // Only RAM below kLowRamLimit is supported for now (the boot identity map covers 4 GiB).
  const int limit = vm.check_extension(KVM_CAP_NR_MEMSLOTS);
  const int r = register_slots(vm_writer(vm),
                               limit > 0 ? static_cast<std::uint32_t>(limit) : kDefaultSlotLimit);
  if (r != 0) return sys_error("KVM_SET_USER_MEMORY_REGION(guest RAM)", -r);
  return {};
}

int GuestMemory::register_slots(const SlotWriter& writer, std::uint32_t slot_limit) {
  std::lock_guard lock(mutex_);
  slot_limit_ = slot_limit;
  free_ids_.clear();
  next_id_ = 0;
  slots_used_ = 0;
  SlotSpan all{.first_gfn = 0, .end_gfn = pages(), .kind = SlotKind::kNormal};
  all.slot = take_slot_id();
  if (int r = write_slot(writer, all, false); r != 0) return r;
  spans_ = {{0, all}};
  return 0;
}

std::uint32_t GuestMemory::take_slot_id() {
  ++slots_used_;
  if (!free_ids_.empty()) {
    const std::uint32_t id = *free_ids_.begin();
    free_ids_.erase(free_ids_.begin());
    return id;
  }
  return next_id_++;
}

int GuestMemory::write_slot(const SlotWriter& writer, const SlotSpan& span, bool remove) const {
  kvm_userspace_memory_region region{};
  region.slot = span.slot;
  region.flags = span.kind == SlotKind::kReadOnly ? KVM_MEM_READONLY : 0;
  region.guest_phys_addr = span.first_gfn * kPageSize;
  region.memory_size = remove ? 0 : (span.end_gfn - span.first_gfn) * kPageSize;
  region.userspace_addr = reinterpret_cast<std::uint64_t>(host_ + span.first_gfn * kPageSize);
  return writer(region);
}

SlotKind GuestMemory::wanted_kind(std::uint64_t gfn) const {
  if (lifted_.contains(gfn)) return SlotKind::kNormal;
  auto it = restricted_.find(gfn);
  return it == restricted_.end() ? SlotKind::kNormal : slot_kind(it->second);
}

std::vector<SlotSpan> GuestMemory::wanted_spans(std::uint64_t first, std::uint64_t end) const {
  std::vector<SlotSpan> out;
  auto push = [&](std::uint64_t from, std::uint64_t to, SlotKind kind) {
    if (from >= to) return;
    if (!out.empty() && out.back().kind == kind && out.back().end_gfn == from) {
      out.back().end_gfn = to;
    } else {
      out.push_back(SlotSpan{.first_gfn = from, .end_gfn = to, .kind = kind});
    }
  };
  // Only restricted frames differ from kNormal: walk them, not every frame of the range.
  std::uint64_t at = first;
  for (auto it = restricted_.lower_bound(first); it != restricted_.end() && it->first < end; ++it) {
    push(at, it->first, SlotKind::kNormal);
    push(it->first, it->first + 1, wanted_kind(it->first));
    at = it->first + 1;
  }
  push(at, end, SlotKind::kNormal);
  return out;
}

int GuestMemory::rebuild_around(const SlotWriter& writer, std::uint64_t gfn) {
  if (spans_.empty()) return 0;  // not registered with KVM (memory-only users)
  auto span_of = [&](std::uint64_t g) { return std::prev(spans_.upper_bound(g)); };
  // The frame's own span and both neighbours' spans: a change may split the first or merge the
  // frame with either side, and nothing outside them is affected.
  const std::uint64_t first = span_of(gfn > 0 ? gfn - 1 : gfn)->second.first_gfn;
  const std::uint64_t end = span_of(gfn + 1 < pages() ? gfn + 1 : gfn)->second.end_gfn;
  return replace_spans(writer, first, end, wanted_spans(first, end));
}

int GuestMemory::replace_spans(const SlotWriter& writer, std::uint64_t first, std::uint64_t end,
                               std::vector<SlotSpan> wanted) {
  std::vector<SlotSpan> old;
  for (auto it = spans_.lower_bound(first); it != spans_.end() && it->first < end; ++it) {
    old.push_back(it->second);
  }
  // Spans that stay as they are keep their slot: no deletion, no re-fault of the shadow MMU.
  auto same_place = [](const SlotSpan& a, const SlotSpan& b) {
    return a.first_gfn == b.first_gfn && a.end_gfn == b.end_gfn && a.kind == b.kind;
  };
  std::vector<SlotSpan> removed;
  for (const auto& o : old) {
    bool kept = false;
    for (auto& w : wanted) {
      if (same_place(o, w)) {
        w.slot = o.slot;
        kept = true;
      }
    }
    if (!kept) removed.push_back(o);
  }
  std::uint32_t freed = 0;
  std::uint32_t needed = 0;
  for (const auto& r : removed) freed += r.slot != SlotSpan::kNoSlot ? 1 : 0;
  for (const auto& w : wanted) {
    needed += (w.slot == SlotSpan::kNoSlot && w.kind != SlotKind::kNone) ? 1 : 0;
  }
  if (removed.empty() && needed == 0) return 0;
  if (slots_used_ - freed + needed > slot_limit_) return -ENOMEM;

  // Delete before create: KVM refuses overlapping slots. In between, vCPUs touching these frames
  // exit as MMIO on ordinary RAM, which the exit handler serves (notes/kvm-backends.md §6).
  std::vector<SlotSpan> deleted;
  int error = 0;
  for (const auto& r : removed) {
    if (r.slot == SlotSpan::kNoSlot) continue;
    if (error = write_slot(writer, r, true); error != 0) break;
    deleted.push_back(r);
    free_ids_.insert(r.slot);
    --slots_used_;
  }
  std::vector<SlotSpan> created;
  if (error == 0) {
    for (auto& w : wanted) {
      if (w.slot != SlotSpan::kNoSlot || w.kind == SlotKind::kNone) continue;
      w.slot = take_slot_id();
      if (error = write_slot(writer, w, false); error != 0) {
        free_ids_.insert(w.slot);
        --slots_used_;
        w.slot = SlotSpan::kNoSlot;
        break;
      }
      created.push_back(w);
    }
  }
  if (error != 0) {
    // KVM refused half-way: put the old layout back (its ids are free again, being just
    // deleted), so the map keeps describing what KVM has.
    for (const auto& c : created) {
      if (write_slot(writer, c, true) == 0) {
        free_ids_.insert(c.slot);
        --slots_used_;
      }
    }
    for (const auto& d : deleted) {
      free_ids_.erase(d.slot);
      ++slots_used_;
      if (write_slot(writer, d, false) != 0) {
        spdlog::error("guest RAM frames {:#x}..{:#x} lost their memory slot", d.first_gfn,
                      d.end_gfn);
      }
    }
    return error;
  }
  for (const auto& o : old) spans_.erase(o.first_gfn);
  for (const auto& w : wanted) {
    SlotSpan span = w;
    if (span.kind == SlotKind::kNone) span.slot = SlotSpan::kNoSlot;
    spans_[span.first_gfn] = span;
  }
  return 0;
}

int GuestMemory::set_page_access(kvm::Vm& vm, std::uint64_t gfn, std::uint8_t access) {
  return set_page_access(vm_writer(vm), gfn, access);
}

int GuestMemory::set_page_access(const SlotWriter& writer, std::uint64_t gfn, std::uint8_t access) {
  if ((access & ~kRwx) != 0) return -EINVAL;
  if (gfn >= pages()) return 0;  // outside RAM: ignored, as v7 ignores GPAs without a memslot
  // With mutex_ held: records the restriction and brings the slots in line.
  auto apply_locked = [&]() -> int {
    std::optional<std::uint8_t> before;
    if (auto it = restricted_.find(gfn); it != restricted_.end()) before = it->second;
    if (access == kRwx) {
      restricted_.erase(gfn);
    } else {
      restricted_[gfn] = access;
    }
    const int r = rebuild_around(writer, gfn);
    if (r != 0) {
      // The frame keeps the restriction KVM still enforces.
      if (before) {
        restricted_[gfn] = *before;
      } else {
        restricted_.erase(gfn);
      }
    }
    return r;
  };
  {
    // A change within one kind (say R-only to W-only, both slot-less) moves no slot: no need to
    // stop the vCPUs for it. Checked and applied under one lock.
    std::lock_guard lock(mutex_);
    auto it = restricted_.find(gfn);
    const SlotKind now = it == restricted_.end() ? SlotKind::kNormal : slot_kind(it->second);
    if (spans_.empty() || lifted_.contains(gfn) || now == slot_kind(access)) {
      return apply_locked();
    }
  }
  return guarded([&] {
    std::lock_guard lock(mutex_);
    return apply_locked();
  });
}

void GuestMemory::set_update_guard(UpdateGuard guard) {
  std::lock_guard lock(guard_mutex_);
  guard_ = std::move(guard);
}

int GuestMemory::guarded(const std::function<int()>& body) {
  UpdateGuard guard;
  {
    std::lock_guard lock(guard_mutex_);
    guard = guard_;
  }
  if (!guard) return body();
  int r = 0;
  guard([&] { r = body(); });
  return r;
}

std::uint8_t GuestMemory::page_access(std::uint64_t gfn) const {
  std::lock_guard lock(mutex_);
  auto it = restricted_.find(gfn);
  return it == restricted_.end() ? kRwx : it->second;
}

SlotKind GuestMemory::current_kind(std::uint64_t gfn) const {
  std::lock_guard lock(mutex_);
  if (gfn >= pages() || spans_.empty()) return SlotKind::kNormal;
  return std::prev(spans_.upper_bound(gfn))->second.kind;
}

std::vector<SlotSpan> GuestMemory::slot_layout() const {
  std::lock_guard lock(mutex_);
  std::vector<SlotSpan> out;
  for (const auto& [first, span] : spans_) out.push_back(span);
  return out;
}

std::size_t GuestMemory::restricted_count() const {
  std::lock_guard lock(mutex_);
  return restricted_.size();
}

void GuestMemory::clear_page_access(kvm::Vm& vm) {
  clear_page_access(vm_writer(vm));
}

void GuestMemory::clear_page_access(const SlotWriter& writer) {
  {
    std::lock_guard lock(mutex_);
    if (restricted_.empty()) return;  // nothing restricted: the layout is plain already
  }
  guarded([&] {
    std::lock_guard lock(mutex_);
    restricted_.clear();
    // A lift in progress ends with relock_page(), which then finds nothing to restore.
    if (spans_.empty()) return 0;
    std::vector<SlotSpan> plain = wanted_spans(0, pages());  // lifted frames are kNormal: 1 span
    if (int r = replace_spans(writer, 0, pages(), std::move(plain)); r != 0) {
      spdlog::error("restoring the plain guest RAM slot failed ({})", -r);
    }
    return 0;
  });
}

int GuestMemory::lift_page(kvm::Vm& vm, std::uint64_t gfn) {
  return lift_page(vm_writer(vm), gfn);
}

void GuestMemory::relock_page(kvm::Vm& vm, std::uint64_t gfn) {
  relock_page(vm_writer(vm), gfn);
}

int GuestMemory::lift_page(const SlotWriter& writer, std::uint64_t gfn) {
  if (gfn >= pages()) return 0;
  return guarded([&] {
    std::lock_guard lock(mutex_);
    if (++lifted_[gfn] > 1) return 0;
    const int r = rebuild_around(writer, gfn);
    if (r != 0) lifted_.erase(gfn);
    return r;
  });
}

void GuestMemory::relock_page(const SlotWriter& writer, std::uint64_t gfn) {
  guarded([&] {
    std::lock_guard lock(mutex_);
    auto it = lifted_.find(gfn);
    if (it == lifted_.end()) return 0;
    if (--it->second > 0) return 0;
    lifted_.erase(it);
    if (int r = rebuild_around(writer, gfn); r != 0) {
      spdlog::warn("re-applying the restriction of frame {:#x} failed ({})", gfn, -r);
    }
    return 0;
  });
}

}  // namespace glassbox::vmm
