// What one session knows about one vCPU: its event mask, pending pauses, the event it waits on,
// delayed register writes, a queued exception injection, and the interceptions it asked for.
//
// Threading: the atomics are shared between the receiving thread and the vCPU thread; everything
// else is touched only on the vCPU's own thread (by jobs, the entry gate and event raising).
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <bitset>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <vector>

#include "glassbox/kvmi/ids.h"

namespace glassbox::introspection {

// The MSRs one vCPU tracks (VCPU_CONTROL_MSR). Written on the vCPU's own thread, but read from
// other vCPUs' threads too: the MSR filter is VM-wide, built from the union of every vCPU's set.
class TrackedMsrs {
 public:
  void insert(std::uint32_t msr) {
    std::lock_guard lock(mutex_);
    msrs_.insert(msr);
  }
  void erase(std::uint32_t msr) {
    std::lock_guard lock(mutex_);
    msrs_.erase(msr);
  }
  bool contains(std::uint32_t msr) const {
    std::lock_guard lock(mutex_);
    return msrs_.contains(msr);
  }
  // Adds this vCPU's MSRs to `out`.
  void add_to(std::set<std::uint32_t>& out) const {
    std::lock_guard lock(mutex_);
    out.insert(msrs_.begin(), msrs_.end());
  }

 private:
  mutable std::mutex mutex_;
  std::set<std::uint32_t> msrs_;
};

struct PendingInjection {
  std::uint8_t vector = 0;
  std::uint32_t error_code = 0;
  std::uint64_t address = 0;  // CR2 for #PF
};

class VcpuIntrospection {
 public:
  // ---- shared with the receiving thread ----
  std::atomic<std::uint32_t> pending_pauses{0};
  std::atomic<bool> waiting_for_reply{false};

  // ---- vCPU thread only ----
  std::bitset<kvmi::kNumEvents> enabled_events;

  // The event this vCPU waits on (at most one at a time).
  std::uint32_t waiting_seq = 0;
  kvmi::EventId waiting_event = kvmi::EventId::PauseVcpu;
  std::size_t waiting_reply_extra = 0;  // bytes the reply may carry after kvmi_event_reply
  // The reply's bytes after kvmi_vcpu_hdr, once a valid reply arrived.
  std::optional<std::vector<std::byte>> reply;
  // The last event ended without a valid reply (decides what a stray reply means, spec §1.6).
  bool last_event_failed = false;

  // VCPU_SET_REGISTERS during an event: applied when the reply arrives (last one wins).
  std::optional<kvm_regs> delayed_regs;

  // VCPU_INJECT_EXCEPTION: injected at the next entry gate; then a TRAP event is owed.
  std::optional<PendingInjection> injection;
  bool trap_pending = false;
  PendingInjection trap;  // what was actually delivered

  // Interceptions the tool selected (their events arrive with the events issue).
  std::bitset<5> cr_enabled;  // CR0, CR3, CR4
  TrackedMsrs tracked_msrs;   // shared: has its own lock
  bool singlestep = false;

  // The vCPU's CPUID table, read once (KVM_GET_CPUID2 is a 6 µs ioctl here).
  std::optional<std::vector<kvm_cpuid_entry2>> cpuid;

  bool event_enabled(kvmi::EventId id) const {
    return enabled_events.test(static_cast<std::size_t>(id));
  }
};

}  // namespace glassbox::introspection
