// Where an event waits (spec §6.3; DESIGN.md step 4). An event is raised on the vCPU's own
// thread at the point that caused it: the vCPU snapshots its state into kvmi_event, sends it, and
// waits for the reply while still running the jobs the tool queues (so the tool can read and set
// this vCPU's registers meanwhile). The reply arrives as a job; then delayed SET_REGISTERS values
// are applied and the caller carries out the action.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "glassbox/kvmi/events.h"
#include "glassbox/kvmi/ids.h"
#include "introspection/message.h"
#include "introspection/session.h"

namespace glassbox::vmm {
class VcpuThread;
}

namespace glassbox::introspection {

struct EventOutcome {
  // CONTINUE when the tool answered CONTINUE, and also when no valid reply came (the connection
  // went away or the reply was invalid): the vCPU then proceeds with the default values.
  kvmi::EventAction action = kvmi::EventAction::Continue;
  bool replied = false;              // a valid reply arrived
  std::array<std::byte, 8> extra{};  // the event-specific reply part (CR/MSR new_val), zero-padded
};

// Sends `event` with its specific payload and blocks this vCPU until the reply (or the end of the
// session). Must run on the vCPU's thread, outside any job. CRASH stops the VM here.
EventOutcome raise_event(vmm::VcpuThread& vcpu, Session& session, kvmi::EventId event,
                         std::span<const std::byte> specific = {});

// Runs on the vCPU thread as the job of a KVMI_EVENT_REPLY message (payload after the header).
// Returns an error when the reply is invalid: the caller closes the connection (spec §1.6).
HandlerResult accept_event_reply(vmm::VcpuThread& vcpu, Session& session, std::uint32_t seq,
                                 std::span<const std::byte> payload);

// The vCPU mode field of events and GET_REGISTERS: 2, 4 or 8 (spec §3.2).
std::uint8_t vcpu_mode(const kvm_sregs& sregs);

}  // namespace glassbox::introspection
