// The VMM's Machine as a VmTarget: guest RAM through the VMM's mapping, the online vCPUs, and
// the facts the host probe found. The only file of the server that knows vmm::Machine.
#pragma once

#include <memory>

#include "introspection/vm_target.h"
#include "kvm/host_probe.h"

namespace glassbox::vmm {
class Machine;
}

namespace glassbox::introspection {

// What this host lets the server promise (GET_VERSION features, CHECK_EVENT answers).
HostFacts host_facts_from(const kvm::HostQuirks& quirks);

std::unique_ptr<VmTarget> make_machine_target(vmm::Machine& machine);

}  // namespace glassbox::introspection
