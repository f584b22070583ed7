// The state of one attached tool: its channel, what it may do, which VM events it enabled.
// Shared by the receiving thread, the unhook path, and (next issue) the vCPU threads.
#pragma once

#include <atomic>
#include <cstdint>
#include <expected>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "introspection/channel.h"
#include "introspection/permissions.h"
#include "introspection/vcpu_state.h"
#include "introspection/vm_target.h"

namespace glassbox::introspection {

class Session : public std::enable_shared_from_this<Session> {
 public:
  // `event_seq` is the per-VM event counter (spec §1.3): it outlives sessions, as on KVM.
  // `dialect`: the KVMI numbering the tool speaks, translated by the channel's edge.
  Session(UniqueFd fd, VmTarget& vm, Permissions permissions, std::atomic<std::uint32_t>& event_seq,
          kvmi::Dialect dialect = kvmi::Dialect::RfcV7);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  Channel& channel() { return channel_; }
  VmTarget& vm() { return vm_; }
  const Permissions& permissions() const { return permissions_; }

  // VM events the tool enabled with VM_CONTROL_EVENTS (only UNHOOK in v7).
  bool vm_event_enabled(kvmi::EventId event) const;
  void set_vm_event_enabled(kvmi::EventId event, bool enable);

  // Pre-incremented, so the first event of the VM carries seq 1.
  std::uint32_t next_event_seq() { return event_seq_.fetch_add(1, std::memory_order_relaxed) + 1; }

  // Sends KVMI_EVENT_UNHOOK (spec §3.4.1) if the tool enabled it and the VMM allows it.
  // Returns true when it was sent, false when the tool did not ask for it; errno on a send error.
  std::expected<bool, int> send_unhook_event();

  // What this session knows about vCPU `index` (< vm().vcpu_count()).
  VcpuIntrospection& vcpu_state(std::uint32_t index) { return *vcpus_.at(index); }

  // Ends the connection; the first reason given is the one logged. Thread-safe, idempotent.
  void close(const std::string& reason);
  // True once close() was called: waiting vCPUs give up on their events.
  bool closed() const { return closed_.load(std::memory_order_acquire); }
  std::string close_reason() const;

 private:
  Channel channel_;
  VmTarget& vm_;
  Permissions permissions_;
  std::atomic<std::uint32_t>& event_seq_;
  std::atomic<std::uint32_t> vm_events_{0};
  std::vector<std::unique_ptr<VcpuIntrospection>> vcpus_;
  std::atomic<bool> closed_{false};
  mutable std::mutex close_mutex_;
  std::string close_reason_;
};

}  // namespace glassbox::introspection
