// A readable dump of a vCPU's architectural state, printed when the VM stops on a fault.
#pragma once

#include <string>

#include "kvm/vcpu.h"
#include "vmm/guest_memory.h"

namespace glassbox::vmm::x86 {

// Reads registers with vCPU ioctls: call it on the vCPU's own thread.
std::string dump_vcpu_state(const kvm::Vcpu& vcpu, const GuestMemory& memory);

}  // namespace glassbox::vmm::x86
