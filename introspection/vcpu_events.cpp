#include "introspection/vcpu_events.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstring>

#include "glassbox/kvmi/names.h"
#include "vmm/machine.h"
#include "vmm/vcpu_thread.h"

namespace glassbox::introspection {

namespace {

constexpr std::uint32_t kEventMsrs[] = {
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0xc0000080,  // EFER
    0xc0000081,  // STAR
    0xc0000082,  // LSTAR
    0xc0000083,  // CSTAR
    0x277,       // PAT
    0xc0000102,  // KERNEL_GS_BASE
};
static_assert(sizeof(kEventMsrs) / sizeof(kEventMsrs[0]) * 8 == sizeof(kvmi::EventArchMsrs));

kvmi::Event snapshot(vmm::VcpuThread& vcpu, kvmi::EventId id) {
  kvmi::Event event{};
  event.size = kvmi::kEventCommonSize;
  event.vcpu = static_cast<std::uint16_t>(vcpu.index());
  event.event = static_cast<std::uint8_t>(id);
  event.arch.regs = vcpu.regs();
  event.arch.sregs = vcpu.sregs();
  event.arch.mode = vcpu_mode(event.arch.sregs);
  kvm_msr_entry entries[std::size(kEventMsrs)] = {};
  for (std::size_t i = 0; i < std::size(kEventMsrs); ++i) entries[i].index = kEventMsrs[i];
  if (auto n = vcpu.vcpu().get_msrs(entries); n) {
    std::uint64_t values[std::size(kEventMsrs)] = {};
    for (std::size_t i = 0; i < *n && i < std::size(kEventMsrs); ++i) values[i] = entries[i].data;
    std::memcpy(&event.arch.msrs, values, sizeof values);
  }
  return event;
}

bool action_allowed(kvmi::EventId id, kvmi::EventAction action) {
  if (action == kvmi::EventAction::Continue || action == kvmi::EventAction::Crash) return true;
  // RETRY is meaningful where the instruction can be re-executed (spec §3.4), and for CR and
  // MSR writes, where any answer but CONTINUE refuses the write (§3.4.5, §3.4.9).
  return action == kvmi::EventAction::Retry &&
         (id == kvmi::EventId::Breakpoint || id == kvmi::EventId::Pf ||
          id == kvmi::EventId::Descriptor || id == kvmi::EventId::Msr || id == kvmi::EventId::Cr);
}

}  // namespace

std::uint8_t vcpu_mode(const kvm_sregs& sregs) {
  constexpr std::uint64_t kEferLma = 1u << 10;
  if ((sregs.efer & kEferLma) && sregs.cs.l) return 8;
  return sregs.cs.db ? 4 : 2;
}

EventOutcome raise_event(vmm::VcpuThread& vcpu, Session& session, kvmi::EventId id,
                         std::span<const std::byte> specific) {
  EventOutcome outcome;
  if (session.closed()) return outcome;
  VcpuIntrospection& state = session.vcpu_state(vcpu.index());

  const kvmi::Event event = snapshot(vcpu, id);
  const std::uint32_t seq = session.next_event_seq();
  state.waiting_seq = seq;
  state.waiting_event = id;
  state.waiting_reply_extra = kvmi::event_reply_extra_size(id);
  state.reply.reset();
  state.delayed_regs.reset();
  state.waiting_for_reply.store(true, std::memory_order_release);

  auto sent = session.channel().send(static_cast<std::uint16_t>(kvmi::MessageId::Event), seq,
                                     {std::as_bytes(std::span(&event, 1)), specific});
  if (!sent) {
    session.close(fmt::format("sending {} of vCPU {} failed: {}", kvmi::event_name(event.event),
                              vcpu.index(), std::strerror(sent.error())));
  } else {
    // Stop right after the reply: a command the tool sent after it (say, lifting a page
    // restriction) must not change what the answer meant.
    vcpu.run_work_until([&] { return state.reply.has_value() || session.closed(); }, true);
    // A reply queued just before the close was noticed still counts: drain once more.
    if (!state.reply) vcpu.run_work_until([] { return true; });
  }
  state.waiting_for_reply.store(false, std::memory_order_release);

  if (!state.reply) {
    state.last_event_failed = true;
    state.delayed_regs.reset();
    return outcome;  // released as if CONTINUE (spec §6.5)
  }
  state.last_event_failed = false;
  kvmi::EventReply reply{};
  std::memcpy(&reply, state.reply->data(), sizeof reply);
  const std::size_t extra = state.reply->size() - sizeof reply;
  std::memcpy(outcome.extra.data(), state.reply->data() + sizeof reply,
              std::min(extra, outcome.extra.size()));
  state.reply.reset();
  outcome.replied = true;
  outcome.action = static_cast<kvmi::EventAction>(reply.action);

  if (state.delayed_regs) {
    vcpu.mutable_regs() = *state.delayed_regs;
    state.delayed_regs.reset();
  }
  if (!action_allowed(id, outcome.action)) {
    spdlog::warn("introspection: unsupported action {} for {} on vCPU {}; treated as CONTINUE",
                 reply.action, kvmi::event_name(id), vcpu.index());
    outcome.action = kvmi::EventAction::Continue;
  }
  if (outcome.action == kvmi::EventAction::Crash) {
    vcpu.machine().request_stop(
        vmm::StopRequest{vmm::StopKind::kIntrospection, vmm::kIntrospectionCrashStatus,
                         fmt::format("the introspection tool answered CRASH to {} on vCPU {}",
                                     kvmi::event_name(id), vcpu.index())});
  }
  return outcome;
}

HandlerResult accept_event_reply(vmm::VcpuThread& vcpu, Session& session, std::uint32_t seq,
                                 std::span<const std::byte> payload) {
  VcpuIntrospection& state = session.vcpu_state(vcpu.index());
  if (!state.waiting_for_reply.load(std::memory_order_acquire) || state.reply) {
    // A reply for an event this vCPU is not waiting on: harmless after a completed event,
    // a protocol violation after a failed one (spec §1.6).
    if (state.last_event_failed) {
      return std::unexpected(fmt::format(
          "stray event reply (seq {}) for vCPU {} after a failed event", seq, vcpu.index()));
    }
    spdlog::debug("introspection: dropped a stray event reply (seq {}) for vCPU {}", seq,
                  vcpu.index());
    return {};
  }
  // `payload` starts after kvmi_vcpu_hdr.
  if (seq != state.waiting_seq) {
    return std::unexpected(fmt::format("event reply for vCPU {} has seq {}, the event had {}",
                                       vcpu.index(), seq, state.waiting_seq));
  }
  if (payload.size() < sizeof(kvmi::EventReply)) {
    return std::unexpected(
        fmt::format("event reply for vCPU {} is {} bytes, shorter than "
                    "kvmi_event_reply",
                    vcpu.index(), payload.size() + sizeof(kvmi::VcpuHdr)));
  }
  kvmi::EventReply reply{};
  std::memcpy(&reply, payload.data(), sizeof reply);
  if (reply.padding1 != 0 || reply.padding2 != 0) {
    return std::unexpected(fmt::format(
        "event reply for vCPU {} has non-zero kvmi_event_reply paddings", vcpu.index()));
  }
  if (payload.size() - sizeof reply > state.waiting_reply_extra) {
    return std::unexpected(
        fmt::format("event reply for vCPU {} carries {} bytes after "
                    "kvmi_event_reply; {} expects at most {}",
                    vcpu.index(), payload.size() - sizeof reply,
                    kvmi::event_name(state.waiting_event), state.waiting_reply_extra));
  }
  state.reply.emplace(payload.begin(), payload.end());
  return {};
}

}  // namespace glassbox::introspection
