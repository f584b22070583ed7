// KVMI_EVENT_MSR (spec/kvmi-v7.md §3.4.9) through the MSR filter (notes/kvm-backends.md §4).
//
// KVM's filter is per VM while KVMI tracks MSRs per vCPU, so the filter holds the union of every
// vCPU's tracked set; a write that exits on a vCPU that does not track that MSR (or has the event
// off) is simply applied, as KVM would have done.
#include <linux/kvm.h>

#include <cstring>
#include <mutex>
#include <set>

#include <spdlog/spdlog.h>

#include "glassbox/kvmi/events.h"
#include "introspection/intercepts.h"
#include "introspection/vcpu_events.h"
#include "vmm/vcpu_thread.h"

namespace glassbox::introspection {

std::optional<std::uint64_t> SessionIntercepts::on_msr_write(vmm::VcpuThread& vcpu,
                                                             std::uint32_t msr,
                                                             std::uint64_t value) {
  auto session = session_for(vcpu, kvmi::EventId::Msr);
  if (!session) return value;
  if (!session->vcpu_state(vcpu.index()).tracked_msrs.contains(msr)) return value;

  // The event is only for writes that change the MSR; if it cannot be read, the write proceeds
  // without one (spec §3.4.9).
  kvm_msr_entry current{.index = msr, .reserved = 0, .data = 0};
  auto read = vcpu.vcpu().get_msrs({&current, 1});
  if (!read || *read != 1) return value;
  if (current.data == value) return value;

  kvmi::EventMsr payload{};
  payload.msr = msr;
  payload.old_value = current.data;
  payload.new_value = value;
  const EventOutcome outcome = raise_event(vcpu, *session, kvmi::EventId::Msr, bytes_of(payload));
  // No valid answer (the tool went away or replied badly): the guest's own value is written.
  if (!outcome.replied) return value;
  if (outcome.action != kvmi::EventAction::Continue) {
    // RETRY, CRASH (the VM is already stopping) or an action MSR events do not list: the WRMSR
    // fails.
    return std::nullopt;
  }
  // CONTINUE writes the tool's new_val; a reply without it means 0 (spec §3.3).
  kvmi::EventMsrReply reply{};
  static_assert(sizeof(reply) == sizeof(outcome.extra));
  std::memcpy(&reply, outcome.extra.data(), sizeof(reply));
  return reply.new_val;
}

namespace {
// Computing a union and installing it happen under one lock: two vCPUs changing their sets at
// once must not install their unions in the opposite order (the older union would win), and a
// CONTROL_MSR finishing as the session ends must not reinstall a filter its undo removed.
std::mutex filter_mutex;
}  // namespace

void clear_msr_intercepts(Session& session) {
  std::lock_guard lock(filter_mutex);
  session.vm().set_msr_write_intercepts({});
}

bool apply_msr_intercepts(Session& session) {
  std::lock_guard lock(filter_mutex);
  std::set<std::uint32_t> all;
  // A session that has ended keeps no filter (its undo may already have run).
  if (!session.closed()) {
    for (std::uint32_t i = 0; i < session.vm().vcpu_count(); ++i) {
      session.vcpu_state(i).tracked_msrs.add_to(all);
    }
  }
  return session.vm().set_msr_write_intercepts(all);
}

}  // namespace glassbox::introspection
