// Where a job is queued (spec §6.2; DESIGN.md step 2): the receiving thread has validated a vCPU
// message's kvmi_vcpu_hdr; here it answers VCPU_PAUSE itself and wraps everything else in a job
// on the target vCPU's FIFO (vmm::VcpuThread::post), which raises the request flag and kicks the
// vCPU. The job runs on the vCPU thread before its next guest entry (or while it waits in an
// event) and replies from there.
//
// Also here: the entry gate, where a vCPU delivers what must happen outside any job (exception
// injection with its TRAP event, then one PAUSE_VCPU event per pause), and the release of every
// vCPU when a session ends.
#pragma once

#include <memory>

#include "introspection/message.h"
#include "introspection/session.h"
#include "vmm/vcpu_thread.h"

namespace glassbox::introspection {

// `message` is a vCPU command, VCPU_PAUSE or an event reply whose vCPU header was checked.
HandlerResult queue_vcpu_message(const std::shared_ptr<Session>& session, vmm::VcpuThread& vcpu,
                                 const IncomingMessage& message);

// Runs on a vCPU's thread before a guest entry, for the session attached at that moment.
void pass_entry_gate(vmm::VcpuThread& vcpu, Session& session);

// The session is over: every vCPU drops its pending pauses and injections, and one waiting on an
// event wakes up and continues as if the answer were CONTINUE (spec §6.5).
void release_vcpus(const std::shared_ptr<Session>& session);

}  // namespace glassbox::introspection
