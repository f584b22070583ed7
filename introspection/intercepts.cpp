#include "introspection/intercepts.h"

#include "vmm/vcpu_thread.h"

namespace glassbox::introspection {

std::shared_ptr<Session> SessionIntercepts::session_for(vmm::VcpuThread& vcpu,
                                                        kvmi::EventId event) const {
  std::shared_ptr<Session> session = current_();
  if (!session || session->closed()) return nullptr;
  if (static_cast<std::uint32_t>(vcpu.index()) >= session->vm().vcpu_count()) return nullptr;
  if (!session->vcpu_state(vcpu.index()).event_enabled(event)) return nullptr;
  if (!session->permissions().allows_event(static_cast<std::uint16_t>(event))) return nullptr;
  return session;
}

void undo_vm_interceptions(Session& session) {
  clear_msr_intercepts(session);
  session.vm().clear_page_access();
}

}  // namespace glassbox::introspection
