// The vCPU commands (spec §2.3.8-2.3.22), each run by a job on the target vCPU's own thread,
// which sends the reply itself (DESIGN.md step 3). VCPU_PAUSE is the exception: the receiving
// thread answers it (vcpu_jobs.cpp).
#pragma once

#include <cstddef>
#include <span>

#include "glassbox/kvmi/messages.h"
#include "introspection/message.h"
#include "introspection/session.h"

namespace glassbox::vmm {
class VcpuThread;
}

namespace glassbox::introspection {

// `body` is the payload after kvmi_vcpu_hdr. Returns an error only when the reply could not be
// sent (the caller closes the connection).
HandlerResult run_vcpu_command(vmm::VcpuThread& vcpu, Session& session, const kvmi::MsgHdr& hdr,
                               std::span<const std::byte> body);

// The x86 memory type of `gpa` from the guest's MTRR MSRs (KVMI_VCPU_GET_MTRR_TYPE), given the
// values of MTRRcap, MTRRdefType, the 11 fixed-range MSRs and the variable pairs. Pure:
// unit-tested.
struct MtrrState {
  std::uint64_t cap = 0;
  std::uint64_t def_type = 0;
  std::uint64_t fixed[11] = {};  // 0x250, 0x258, 0x259, 0x268..0x26f
  std::uint64_t var_base[16] = {};
  std::uint64_t var_mask[16] = {};
};
std::uint8_t mtrr_memory_type(const MtrrState& mtrr, std::uint64_t gpa);

}  // namespace glassbox::introspection
