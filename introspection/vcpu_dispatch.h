// Where a vCPU message leaves the receiving thread (spec §1.5 step 6, §6.2; DESIGN.md step 2):
// every KVMI_VCPU_* command, KVMI_VCPU_PAUSE and KVMI_EVENT_REPLY arrive here after the generic
// validation. This is the one place the per-vCPU job queue plugs in.
#pragma once

#include "introspection/message.h"
#include "introspection/session.h"

namespace glassbox::introspection {

// Whether vCPU message `id` is served (VM_CHECK_COMMAND reports the others as not allowed).
bool vcpu_message_supported(std::uint16_t id);

// Checks the kvmi_vcpu_hdr (paddings, index) and answers what the receiving thread answers
// itself; the rest would be queued on the vCPU. Until vCPU jobs exist that rest gets -KVM_ENOSYS.
HandlerResult dispatch_vcpu_message(Session& session, const IncomingMessage& message);

}  // namespace glassbox::introspection
