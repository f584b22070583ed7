// The VM commands the receiving thread runs itself (spec §2.3; DESIGN.md step 1): GET_VERSION,
// VM_CHECK_COMMAND, VM_CHECK_EVENT, VM_GET_INFO, VM_CONTROL_EVENTS, VM_READ_PHYSICAL,
// VM_WRITE_PHYSICAL, VM_GET_MAX_GFN. Each handler writes its own reply.
#pragma once

#include <cstdint>

#include "introspection/message.h"
#include "introspection/session.h"

namespace glassbox::introspection {

using VmCommandHandler = HandlerResult (*)(Session&, const IncomingMessage&);

// The handler for a VM-scope id, or nullptr when glassbox has none yet (the receiver then
// answers -KVM_ENOSYS, spec §1.5 step 3).
VmCommandHandler find_vm_command(std::uint16_t id);

}  // namespace glassbox::introspection
