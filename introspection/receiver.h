// The receiving thread's loop (spec §1.5, §1.6, §6.1; DESIGN.md step 1): read a message,
// validate it in the spec's order, run a VM command or hand a vCPU message on, until the
// connection ends.
#pragma once

#include <string>

#include "introspection/permissions.h"
#include "introspection/session.h"
#include "introspection/vm_target.h"

namespace glassbox::introspection {

// Processes messages until EOF, a protocol violation that closes (§1.6) or session.close().
// Shuts the socket down before returning and returns the reason the connection ended.
std::string run_receiver(Session& session);

// The whole receiver over a connected stream socket `fd` (duplicated; the caller keeps and closes
// its own): what the fuzz targets drive with a socketpair and a GuestMemoryTarget. The handshake
// is not part of it (run_vmm_handshake). Returns the close reason.
std::string run_receiver_on_fd(int fd, VmTarget& vm, Permissions permissions,
                               kvmi::Dialect dialect = kvmi::Dialect::RfcV7);

}  // namespace glassbox::introspection
