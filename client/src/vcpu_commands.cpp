// Session: typed vCPU commands, "stop the world" helpers and the event loop.
#include <cstring>

#include "glassbox/client/session.h"
#include "glassbox/kvmi/names.h"

namespace glassbox::client {

namespace {

template <typename T>
std::span<const std::byte> as_bytes_of(const T& value) {
  return std::as_bytes(std::span(&value, 1));
}

template <typename T>
Result<T> decode(const Result<Reply>& reply, std::uint16_t id) {
  if (!reply) return std::unexpected(reply.error());
  if (reply->data().size() < sizeof(T)) {
    return make_error(ErrorKind::Protocol,
                      std::string(kvmi::message_name(id)) + ": reply carries " +
                          std::to_string(reply->data().size()) + " data bytes, expected " +
                          std::to_string(sizeof(T)));
  }
  T value{};
  std::memcpy(&value, reply->data().data(), sizeof(T));
  return value;
}

Result<void> done(const Result<Reply>& reply) {
  if (!reply) return std::unexpected(reply.error());
  return {};
}

}  // namespace

Result<PendingReply> Session::submit_vcpu(kvmi::MessageId id, std::uint16_t vcpu,
                                          std::span<const std::byte> body) {
  std::vector<std::byte> payload(sizeof(kvmi::VcpuHdr) + body.size());
  kvmi::VcpuHdr hdr{};
  hdr.vcpu = vcpu;
  std::memcpy(payload.data(), &hdr, sizeof hdr);
  if (!body.empty()) std::memcpy(payload.data() + sizeof hdr, body.data(), body.size());
  return submit(id, payload);
}

namespace {
// Waits for a submitted vCPU command's reply.
Result<Reply> finish(Result<PendingReply> pending, std::chrono::milliseconds timeout) {
  if (!pending) return std::unexpected(std::move(pending.error()));
  return pending->wait(timeout);
}
}  // namespace

Result<std::uint64_t> Session::get_vcpu_tsc_speed(std::uint16_t vcpu) {
  auto reply = finish(submit_vcpu(kvmi::MessageId::VcpuGetInfo, vcpu), options_.reply_timeout);
  auto info = decode<kvmi::VcpuGetInfoReply>(reply, 9);
  if (!info) return std::unexpected(info.error());
  return info->tsc_speed;
}

Result<void> Session::pause_vcpu(std::uint16_t vcpu, bool wait) {
  kvmi::VcpuPause req{};
  req.wait = wait ? 1 : 0;
  return done(finish(submit_vcpu(kvmi::MessageId::VcpuPause, vcpu, as_bytes_of(req)),
                     options_.reply_timeout));
}

Result<void> Session::control_vcpu_events(std::uint16_t vcpu, kvmi::EventId event, bool enable) {
  kvmi::VcpuControlEvents req{};
  req.event_id = static_cast<std::uint16_t>(event);
  req.enable = enable ? 1 : 0;
  return done(finish(submit_vcpu(kvmi::MessageId::VcpuControlEvents, vcpu, as_bytes_of(req)),
                     options_.reply_timeout));
}

Result<Session::Registers> Session::get_registers(std::uint16_t vcpu,
                                                  std::span<const std::uint32_t> msrs) {
  if (msrs.size() > kvmi::kMaxGetRegistersMsrs) {
    return make_error(ErrorKind::InvalidArgument, "KVMI_VCPU_GET_REGISTERS: at most " +
                                                      std::to_string(kvmi::kMaxGetRegistersMsrs) +
                                                      " MSRs per request");
  }
  std::vector<std::byte> body(kvmi::kVcpuGetRegistersMsrsOffset + 4 * msrs.size());
  kvmi::VcpuGetRegisters req{};
  req.nmsrs = static_cast<std::uint16_t>(msrs.size());
  std::memcpy(body.data(), &req, sizeof req);
  if (!msrs.empty()) {
    std::memcpy(body.data() + kvmi::kVcpuGetRegistersMsrsOffset, msrs.data(), 4 * msrs.size());
  }
  auto reply =
      finish(submit_vcpu(kvmi::MessageId::VcpuGetRegisters, vcpu, body), options_.reply_timeout);
  auto head = decode<kvmi::VcpuGetRegistersReply>(reply, 12);
  if (!head) return std::unexpected(head.error());
  Registers regs;
  regs.mode = head->mode;
  regs.regs = head->regs;
  regs.sregs = head->sregs;
  const auto data = reply->data();
  const std::size_t n = head->msrs.nmsrs;
  if (data.size() < kvmi::kVcpuGetRegistersReplyMsrEntries + n * sizeof(kvm_msr_entry)) {
    return make_error(ErrorKind::Protocol, "KVMI_VCPU_GET_REGISTERS: reply shorter than its MSRs");
  }
  regs.msrs.resize(n);
  if (n != 0) {
    std::memcpy(regs.msrs.data(), data.data() + kvmi::kVcpuGetRegistersReplyMsrEntries,
                n * sizeof(kvm_msr_entry));
  }
  return regs;
}

Result<void> Session::set_registers(std::uint16_t vcpu, const kvm_regs& regs) {
  return done(finish(submit_vcpu(kvmi::MessageId::VcpuSetRegisters, vcpu, as_bytes_of(regs)),
                     options_.reply_timeout));
}

Result<Session::Cpuid> Session::get_cpuid(std::uint16_t vcpu, std::uint32_t function,
                                          std::uint32_t index) {
  kvmi::VcpuGetCpuid req{function, index};
  auto reply = finish(submit_vcpu(kvmi::MessageId::VcpuGetCpuid, vcpu, as_bytes_of(req)),
                      options_.reply_timeout);
  auto leaf = decode<kvmi::VcpuGetCpuidReply>(reply, 14);
  if (!leaf) return std::unexpected(leaf.error());
  return Cpuid{leaf->eax, leaf->ebx, leaf->ecx, leaf->edx};
}

Result<void> Session::control_cr(std::uint16_t vcpu, std::uint32_t cr, bool enable) {
  kvmi::VcpuControlCr req{};
  req.enable = enable ? 1 : 0;
  req.cr = cr;
  return done(finish(submit_vcpu(kvmi::MessageId::VcpuControlCr, vcpu, as_bytes_of(req)),
                     options_.reply_timeout));
}

Result<void> Session::inject_exception(std::uint16_t vcpu, std::uint8_t vector,
                                       std::uint32_t error_code, std::uint64_t address) {
  kvmi::VcpuInjectException req{};
  req.nr = vector;
  req.error_code = error_code;
  req.address = address;
  return done(finish(submit_vcpu(kvmi::MessageId::VcpuInjectException, vcpu, as_bytes_of(req)),
                     options_.reply_timeout));
}

Result<std::vector<std::byte>> Session::get_xsave(std::uint16_t vcpu) {
  auto reply = finish(submit_vcpu(kvmi::MessageId::VcpuGetXsave, vcpu), options_.reply_timeout);
  if (!reply) return std::unexpected(reply.error());
  // The area's size is whatever the reply carries (the v7 doc warns it may grow).
  return std::vector<std::byte>(reply->data().begin(), reply->data().end());
}

Result<std::uint8_t> Session::get_mtrr_type(std::uint16_t vcpu, std::uint64_t gpa) {
  kvmi::VcpuGetMtrrType req{gpa};
  auto reply = finish(submit_vcpu(kvmi::MessageId::VcpuGetMtrrType, vcpu, as_bytes_of(req)),
                      options_.reply_timeout);
  auto type = decode<kvmi::VcpuGetMtrrTypeReply>(reply, 19);
  if (!type) return std::unexpected(type.error());
  return type->type;
}

Result<void> Session::control_msr(std::uint16_t vcpu, std::uint32_t msr, bool enable) {
  kvmi::VcpuControlMsr req{};
  req.enable = enable ? 1 : 0;
  req.msr = msr;
  return done(finish(submit_vcpu(kvmi::MessageId::VcpuControlMsr, vcpu, as_bytes_of(req)),
                     options_.reply_timeout));
}

Result<void> Session::control_singlestep(std::uint16_t vcpu, bool enable) {
  kvmi::VcpuControlSinglestep req{};
  req.enable = enable ? 1 : 0;
  return done(finish(submit_vcpu(kvmi::MessageId::VcpuControlSinglestep, vcpu, as_bytes_of(req)),
                     options_.reply_timeout));
}

Result<std::uint64_t> Session::translate_gva(std::uint16_t vcpu, std::uint64_t gva) {
  kvmi::VcpuTranslateGva req{gva};
  auto reply = finish(submit_vcpu(kvmi::MessageId::VcpuTranslateGva, vcpu, as_bytes_of(req)),
                      options_.reply_timeout);
  auto gpa = decode<kvmi::VcpuTranslateGvaReply>(reply, 23);
  if (!gpa) return std::unexpected(gpa.error());
  return gpa->gpa;
}

Result<std::vector<ReceivedEvent>> Session::pause_all(
    std::chrono::milliseconds timeout, const std::function<void(const ReceivedEvent&)>& other) {
  auto count = get_vcpu_count();
  if (!count) return std::unexpected(count.error());
  // All pauses go out before any reply is awaited, so the vCPUs stop as close together as the
  // VMM allows.
  std::vector<PendingReply> pending;
  for (std::uint16_t v = 0; v < *count; ++v) {
    kvmi::VcpuPause req{};
    req.wait = 1;
    auto p = submit_vcpu(kvmi::MessageId::VcpuPause, v, as_bytes_of(req));
    if (!p) return std::unexpected(p.error());
    pending.push_back(std::move(*p));
  }
  for (auto& p : pending) {
    if (auto r = p.wait(timeout); !r) return std::unexpected(r.error());
  }
  std::vector<ReceivedEvent> paused;
  std::vector<bool> seen(*count, false);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (paused.size() < *count) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return make_error(ErrorKind::Timeout, "pause_all: not every vCPU reported its pause");
    }
    auto event = wait_event(left);
    if (!event) return std::unexpected(event.error());
    if (event->event_id() == static_cast<std::uint8_t>(kvmi::EventId::PauseVcpu) &&
        event->vcpu() < *count && !seen[event->vcpu()]) {
      seen[event->vcpu()] = true;
      paused.push_back(std::move(*event));
    } else if (other) {
      other(*event);
    } else if (auto r = reply_event(*event, kvmi::EventAction::Continue); !r) {
      return std::unexpected(r.error());
    }
  }
  return paused;
}

Result<void> Session::resume_all(const std::vector<ReceivedEvent>& paused) {
  for (const auto& event : paused) {
    if (auto r = reply_event(event, kvmi::EventAction::Continue); !r) return r;
  }
  return {};
}

Result<void> Session::run_event_loop(const EventHandler& handler,
                                     const std::function<bool()>& keep_going,
                                     std::chrono::milliseconds poll) {
  while (keep_going()) {
    auto event = wait_event(poll);
    if (!event) {
      if (event.error().kind == ErrorKind::Timeout) continue;
      return std::unexpected(event.error());
    }
    const kvmi::EventAction action = handler(*event);
    // UNHOOK takes no reply: the tool answers it by closing (spec §3.4.1).
    if (event->event_id() == static_cast<std::uint8_t>(kvmi::EventId::Unhook)) continue;
    if (auto r = reply_event(*event, action); !r) return r;
  }
  return {};
}

}  // namespace glassbox::client
