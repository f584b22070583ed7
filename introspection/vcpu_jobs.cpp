#include "introspection/vcpu_jobs.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>
#include <vector>

#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/events.h"
#include "glassbox/kvmi/names.h"
#include "introspection/vcpu_commands.h"
#include "introspection/vcpu_events.h"
#include "vmm/machine.h"

namespace glassbox::introspection {

namespace {

HandlerResult send_reply(Session& session, const kvmi::MsgHdr& hdr, kvmi::Errno err) {
  if (auto sent = session.channel().send_reply(hdr, kvmi::to_wire(err)); !sent) {
    return std::unexpected(fmt::format("sending the {} reply: {}", kvmi::message_name(hdr.id),
                                       std::strerror(sent.error())));
  }
  return {};
}

// VCPU_PAUSE (spec §2.3.9): counted and kicked by the receiving thread, which replies at once;
// the vCPU sends one PAUSE_VCPU event per pause from its entry gate.
HandlerResult pause_vcpu(const std::shared_ptr<Session>& session, vmm::VcpuThread& vcpu,
                         const IncomingMessage& message) {
  const auto pause = message.read_as<kvmi::VcpuPause>(sizeof(kvmi::VcpuHdr));
  if (pause.padding1 != 0 || pause.padding2 != 0 || pause.padding3 != 0) {
    return std::unexpected(std::string("KVMI_VCPU_PAUSE with non-zero paddings"));
  }
  if (!session->permissions().allows_event(static_cast<std::uint16_t>(kvmi::EventId::PauseVcpu))) {
    return std::unexpected(
        std::string("KVMI_VCPU_PAUSE while KVMI_EVENT_PAUSE_VCPU is not allowed"));
  }
  VcpuIntrospection& state = session->vcpu_state(vcpu.index());
  if (state.pending_pauses.load(std::memory_order_acquire) > kvmi::kMaxPendingPauses) {
    return send_reply(*session, message.hdr, kvmi::Errno::Busy);
  }
  state.pending_pauses.fetch_add(1, std::memory_order_acq_rel);
  vcpu.request_gate();
  if (!pause.wait) {
    vcpu.kick();
    return send_reply(*session, message.hdr, static_cast<kvmi::Errno>(0));
  }
  // With `wait` the reply means "this vCPU is not running guest code": the vCPU thread sends it
  // from a job, which runs before the next entry or while the vCPU already waits in an event.
  // The receiving thread goes on reading meanwhile (a pause of every vCPU stops them in parallel).
  vcpu.post([session, hdr = message.hdr](vmm::VcpuThread&) {
    if (session->closed()) return;
    if (auto sent = send_reply(*session, hdr, static_cast<kvmi::Errno>(0)); !sent) {
      session->close(sent.error());
    }
  });
  return {};
}

// What a queued message needs once the receiving thread's buffer is reused.
struct QueuedMessage {
  kvmi::MsgHdr hdr;
  std::vector<std::byte> body;  // payload after kvmi_vcpu_hdr
};

void run_job(vmm::VcpuThread& vcpu, Session& session, const QueuedMessage& message) {
  HandlerResult result;
  if (message.hdr.id == static_cast<std::uint16_t>(kvmi::MessageId::EventReply)) {
    // Still honoured after the tool left: it answered (e.g. with SET_REGISTERS and CONTINUE)
    // just before closing, and the reply precedes the release in this vCPU's FIFO.
    result = accept_event_reply(vcpu, session, message.hdr.seq, message.body);
  } else {
    if (session.closed()) return;  // the tool is gone: nobody to answer
    result = run_vcpu_command(vcpu, session, message.hdr, message.body);
  }
  if (!result) session.close(result.error());
}

void inject_pending_exception(vmm::VcpuThread& vcpu, VcpuIntrospection& state) {
  const PendingInjection wanted = *state.injection;
  state.injection.reset();
  const kvm_vcpu_events& current = vcpu.events();
  // An exception, interrupt or NMI already on its way into the guest takes precedence; the tool's
  // exception is dropped and TRAP reports what is delivered instead (spec §2.3.15).
  if (current.exception.injected || current.exception.pending) {
    state.trap = PendingInjection{
        current.exception.nr, current.exception.has_error_code ? current.exception.error_code : 0,
        vcpu.sregs().cr2};
  } else if (current.interrupt.injected) {
    state.trap = PendingInjection{current.interrupt.nr, 0, vcpu.sregs().cr2};
  } else {
    constexpr std::uint32_t kWithErrorCode = (1u << 8) | (1u << 10) | (1u << 11) | (1u << 12) |
                                             (1u << 13) | (1u << 14) | (1u << 17) | (1u << 21) |
                                             (1u << 29) | (1u << 30);
    const bool has_error_code = (kWithErrorCode >> wanted.vector) & 1;
    kvm_vcpu_events& events = vcpu.mutable_events();
    events.exception.injected = 1;
    events.exception.pending = 0;
    events.exception.nr = wanted.vector;
    events.exception.has_error_code = has_error_code ? 1 : 0;
    events.exception.error_code = has_error_code ? wanted.error_code : 0;
    events.flags = 0;
    if (wanted.vector == 14) vcpu.mutable_sregs().cr2 = wanted.address;
    state.trap = PendingInjection{wanted.vector, has_error_code ? wanted.error_code : 0,
                                  wanted.vector == 14 ? wanted.address : vcpu.sregs().cr2};
  }
  state.trap_pending = state.event_enabled(kvmi::EventId::Trap);
}

}  // namespace

HandlerResult queue_vcpu_message(const std::shared_ptr<Session>& session, vmm::VcpuThread& vcpu,
                                 const IncomingMessage& message) {
  if (message.hdr.id == static_cast<std::uint16_t>(kvmi::MessageId::VcpuPause)) {
    return pause_vcpu(session, vcpu, message);
  }
  QueuedMessage queued{message.hdr, {}};
  if (message.payload.size() > sizeof(kvmi::VcpuHdr)) {
    queued.body.assign(message.payload.begin() + sizeof(kvmi::VcpuHdr), message.payload.end());
  }
  vcpu.post(
      [session, queued = std::move(queued)](vmm::VcpuThread& v) { run_job(v, *session, queued); });
  return {};
}

void pass_entry_gate(vmm::VcpuThread& vcpu, Session& session) {
  VcpuIntrospection& state = session.vcpu_state(vcpu.index());
  if (state.injection) inject_pending_exception(vcpu, state);
  if (state.trap_pending && !session.closed()) {
    state.trap_pending = false;
    const kvmi::EventTrap trap{state.trap.vector, state.trap.error_code, state.trap.address};
    raise_event(vcpu, session, kvmi::EventId::Trap, std::as_bytes(std::span(&trap, 1)));
  }
  // Pauses come last: after every queued job and any other event (spec §3.4.2). Each PAUSE event
  // waits for its reply, during which more pauses may arrive.
  while (!session.closed() && !vcpu.machine().stop_requested()) {
    std::uint32_t pending = state.pending_pauses.load(std::memory_order_acquire);
    if (pending == 0) break;
    if (!state.pending_pauses.compare_exchange_weak(pending, pending - 1)) continue;
    raise_event(vcpu, session, kvmi::EventId::PauseVcpu);
  }
}

void release_vcpus(const std::shared_ptr<Session>& session) {
  for (std::uint32_t i = 0; i < session->vm().vcpu_count(); ++i) {
    vmm::VcpuThread* vcpu = session->vm().vcpu_thread(i);
    if (vcpu == nullptr) continue;
    session->vcpu_state(i).pending_pauses.store(0, std::memory_order_release);
    // The job wakes a vCPU blocked in an event (its wait ends because the session is closed)
    // and clears what only the vCPU thread may touch.
    vcpu->post([session](vmm::VcpuThread& v) {
      VcpuIntrospection& state = session->vcpu_state(v.index());
      state.injection.reset();
      state.trap_pending = false;
      state.singlestep = false;
      // Interceptions end with the session (spec §5.5): no more #BP exits or steps.
      if (auto r = v.set_guest_debug_flags(0); !r) {
        spdlog::warn("introspection: vCPU {}: {}", v.index(), r.error().message());
      }
      // delayed_regs stay: a reply that came before the close still applies them, and
      // raise_event drops them when no reply came.
    });
  }
}

}  // namespace glassbox::introspection
