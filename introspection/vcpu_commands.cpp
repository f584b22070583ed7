#include "introspection/vcpu_commands.h"

#include "introspection/intercepts.h"

#include <fmt/format.h>

#include <cstring>
#include <vector>

#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/events.h"
#include "glassbox/kvmi/names.h"
#include "introspection/vcpu_events.h"
#include "vmm/machine.h"
#include "vmm/vcpu_thread.h"
#include "vmm/x86/page_walk.h"

namespace glassbox::introspection {

namespace {

using kvmi::Errno;

struct Reply {
  Errno err = static_cast<Errno>(0);
  std::vector<std::byte> data;

  static Reply error(Errno e) { return Reply{e, {}}; }
  template <typename T>
  static Reply of(const T& value) {
    Reply r;
    const auto bytes = std::as_bytes(std::span(&value, 1));
    r.data.assign(bytes.begin(), bytes.end());
    return r;
  }
};

template <typename T>
T read_body(std::span<const std::byte> body, std::size_t offset = 0) {
  // Shorter commands read as zero-filled (spec §1.6 corner cases).
  T value{};
  if (offset < body.size()) {
    std::memcpy(&value, body.data() + offset, std::min(sizeof(T), body.size() - offset));
  }
  return value;
}

Reply get_info(vmm::VcpuThread& vcpu) {
  kvmi::VcpuGetInfoReply reply{};
  // The guest TSC rate is reported when KVM can scale the TSC (spec §2.3.8).
  if (vcpu.machine().vm().check_extension(KVM_CAP_TSC_CONTROL) > 0) {
    if (auto khz = vcpu.vcpu().get_tsc_khz()) reply.tsc_speed = std::uint64_t{*khz} * 1000;
  }
  return Reply::of(reply);
}

Reply get_registers(vmm::VcpuThread& vcpu, std::span<const std::byte> body) {
  const auto req = read_body<kvmi::VcpuGetRegisters>(body);
  if (req.padding1 != 0 || req.padding2 != 0) return Reply::error(Errno::Inval);
  if (body.size() < kvmi::kVcpuGetRegistersMsrsOffset + 4 * std::size_t{req.nmsrs}) {
    return Reply::error(Errno::Inval);
  }
  if (req.nmsrs > kvmi::kMaxGetRegistersMsrs) return Reply::error(Errno::NoMem);
  std::vector<kvm_msr_entry> msrs(req.nmsrs);
  for (std::size_t i = 0; i < msrs.size(); ++i) {
    std::memcpy(&msrs[i].index, body.data() + kvmi::kVcpuGetRegistersMsrsOffset + 4 * i, 4);
  }
  if (!msrs.empty()) {
    auto read = vcpu.vcpu().get_msrs(msrs);
    if (!read || *read != msrs.size()) return Reply::error(Errno::Inval);  // no partial reply
  }
  kvmi::VcpuGetRegistersReply head{};
  head.regs = vcpu.regs();
  head.sregs = vcpu.sregs();
  head.mode = vcpu_mode(head.sregs);
  head.msrs.nmsrs = req.nmsrs;
  Reply reply = Reply::of(head);
  static_assert(sizeof(head) == kvmi::kVcpuGetRegistersReplyMsrEntries);
  const auto entries = std::as_bytes(std::span(msrs));
  reply.data.insert(reply.data.end(), entries.begin(), entries.end());
  return reply;
}

Reply set_registers(Session& session, vmm::VcpuThread& vcpu, std::span<const std::byte> body) {
  VcpuIntrospection& state = session.vcpu_state(vcpu.index());
  if (!state.waiting_for_reply.load(std::memory_order_acquire)) {
    return Reply::error(Errno::OpNotSupp);
  }
  state.delayed_regs = read_body<kvm_regs>(body);
  return {};
}

Reply get_cpuid(Session& session, vmm::VcpuThread& vcpu, std::span<const std::byte> body) {
  const auto req = read_body<kvmi::VcpuGetCpuid>(body);
  VcpuIntrospection& state = session.vcpu_state(vcpu.index());
  if (!state.cpuid) {
    auto table = vcpu.vcpu().get_cpuid();
    if (!table) return Reply::error(Errno::NoMem);
    state.cpuid = std::move(*table);
  }
  for (const auto& e : *state.cpuid) {
    if (e.function != req.function) continue;
    if ((e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e.index != req.index) continue;
    return Reply::of(kvmi::VcpuGetCpuidReply{e.eax, e.ebx, e.ecx, e.edx});
  }
  return Reply::error(Errno::NoEnt);
}

Reply get_xsave(vmm::VcpuThread& vcpu) {
  std::array<std::uint8_t, 4096> area{};
  if (!vcpu.vcpu().get_xsave(area)) return Reply::error(Errno::NoMem);
  Reply reply;
  const auto bytes = std::as_bytes(std::span(area));
  reply.data.assign(bytes.begin(), bytes.end());
  return reply;
}

Reply get_mtrr_type(vmm::VcpuThread& vcpu, std::span<const std::byte> body) {
  const auto req = read_body<kvmi::VcpuGetMtrrType>(body);
  // One KVM_GET_MSRS for the whole MTRR set (notes/kvm-backends.md §11).
  std::vector<kvm_msr_entry> msrs;
  msrs.push_back({0xfe, 0, 0});
  msrs.push_back({0x2ff, 0, 0});
  for (std::uint32_t i : {0x250u, 0x258u, 0x259u}) msrs.push_back({i, 0, 0});
  for (std::uint32_t i = 0x268; i <= 0x26f; ++i) msrs.push_back({i, 0, 0});
  for (std::uint32_t i = 0; i < 16; ++i) msrs.push_back({0x200 + i, 0, 0});
  MtrrState mtrr;
  auto read = vcpu.vcpu().get_msrs(msrs);
  const std::size_t n = read ? *read : 0;
  auto value = [&](std::size_t i) { return i < n ? msrs[i].data : 0; };
  mtrr.cap = value(0);
  mtrr.def_type = value(1);
  for (std::size_t i = 0; i < 11; ++i) mtrr.fixed[i] = value(2 + i);
  for (std::size_t i = 0; i < 8; ++i) {
    mtrr.var_base[i] = value(13 + 2 * i);
    mtrr.var_mask[i] = value(14 + 2 * i);
  }
  kvmi::VcpuGetMtrrTypeReply reply{};
  reply.type = mtrr_memory_type(mtrr, req.gpa);
  return Reply::of(reply);
}

Reply translate_gva(vmm::VcpuThread& vcpu, std::span<const std::byte> body) {
  const auto req = read_body<kvmi::VcpuTranslateGva>(body);
  const kvm_sregs& sregs = vcpu.sregs();
  kvmi::VcpuTranslateGvaReply reply{kvmi::kInvalidGpa};
  constexpr std::uint64_t kCr0Pg = 1ULL << 31, kCr4La57 = 1ULL << 12, kEferLma = 1ULL << 10;
  if (!(sregs.cr0 & kCr0Pg)) {
    reply.gpa = req.gva;  // paging off: linear = physical
  } else if (sregs.efer & kEferLma) {
    if (auto t = vmm::x86::translate(vcpu.machine().memory(), sregs.cr3, req.gva,
                                     (sregs.cr4 & kCr4La57) != 0)) {
      reply.gpa = t->gpa;
    }
  }
  return Reply::of(reply);
}

Reply control_events(Session& session, vmm::VcpuThread& vcpu, std::span<const std::byte> body) {
  const auto req = read_body<kvmi::VcpuControlEvents>(body);
  if (req.padding1 != 0 || req.padding2 != 0) return Reply::error(Errno::Inval);
  if (req.event_id >= kvmi::kNumEvents ||
      req.event_id == static_cast<std::uint16_t>(kvmi::EventId::Unhook)) {
    return Reply::error(Errno::Inval);
  }
  const auto id = static_cast<kvmi::EventId>(req.event_id);
  // Events stock KVM cannot deliver to user space are refused outright (spec §P2).
  if (req.enable && !session.vm().host_facts().can_intercept(id))
    return Reply::error(Errno::OpNotSupp);
  if (!session.permissions().allows_event(req.event_id)) return Reply::error(Errno::Perm);
  VcpuIntrospection& state = session.vcpu_state(vcpu.index());
  state.enabled_events.set(req.event_id, req.enable != 0);
  if (id == kvmi::EventId::Breakpoint) apply_vcpu_debug(vcpu, state);
  return {};
}

Reply control_cr(Session& session, vmm::VcpuThread& vcpu, std::span<const std::byte> body) {
  const auto req = read_body<kvmi::VcpuControlCr>(body);
  if (req.padding1 != 0 || req.padding2 != 0) return Reply::error(Errno::Inval);
  if (req.cr != 0 && req.cr != 3 && req.cr != 4) return Reply::error(Errno::Inval);
  session.vcpu_state(vcpu.index()).cr_enabled.set(req.cr, req.enable != 0);
  return {};
}

Reply control_msr(Session& session, vmm::VcpuThread& vcpu, std::span<const std::byte> body) {
  const auto req = read_body<kvmi::VcpuControlMsr>(body);
  if (req.padding1 != 0 || req.padding2 != 0) return Reply::error(Errno::Inval);
  // Inclusive ranges (spec §P1).
  const bool valid = req.msr <= kvmi::kMsrLowLast ||
                     (req.msr >= kvmi::kMsrHighFirst && req.msr <= kvmi::kMsrHighLast);
  if (!valid) return Reply::error(Errno::Inval);
  auto& tracked = session.vcpu_state(vcpu.index()).tracked_msrs;
  if (req.enable)
    tracked.insert(req.msr);
  else
    tracked.erase(req.msr);
  if (!apply_msr_intercepts(session)) return Reply::error(Errno::OpNotSupp);
  return {};
}

Reply control_singlestep(Session& session, vmm::VcpuThread& vcpu, std::span<const std::byte> body) {
  const auto req = read_body<kvmi::VcpuControlSinglestep>(body);
  for (auto b : req.padding) {
    if (b != 0) return Reply::error(Errno::Inval);
  }
  // §P1. KVM-PVM steps CPL0 code only: accepted there, but features.singlestep stays 0.
  if (!session.vm().host_facts().can_singlestep) return Reply::error(Errno::OpNotSupp);
  VcpuIntrospection& state = session.vcpu_state(vcpu.index());
  state.singlestep = req.enable != 0;
  apply_vcpu_debug(vcpu, state);
  return {};
}

Reply inject_exception(Session& session, vmm::VcpuThread& vcpu, std::span<const std::byte> body) {
  const auto req = read_body<kvmi::VcpuInjectException>(body);
  if (req.padding1 != 0 || req.padding2 != 0) return Reply::error(Errno::Inval);
  if (req.nr >= kvmi::kNumExceptionVectors) return Reply::error(Errno::Inval);  // §P1
  VcpuIntrospection& state = session.vcpu_state(vcpu.index());
  if (state.injection || state.trap_pending) return Reply::error(Errno::Busy);
  state.injection = PendingInjection{req.nr, req.error_code, req.address};
  // The injection happens at the entry gate, right before the guest runs again.
  vcpu.request_gate();
  return {};
}

}  // namespace

std::uint8_t mtrr_memory_type(const MtrrState& mtrr, std::uint64_t gpa) {
  constexpr std::uint8_t kUc = 0, kWt = 4, kWb = 6;
  constexpr std::uint64_t kEnabled = 1u << 11, kFixedEnabled = 1u << 10;
  if (!(mtrr.def_type & kEnabled)) return kUc;
  if ((mtrr.def_type & kFixedEnabled) && (mtrr.cap & (1u << 8)) && gpa < 0x100000) {
    std::size_t msr = 0, byte = 0;
    if (gpa < 0x80000) {
      msr = 0, byte = gpa >> 16;
    } else if (gpa < 0xc0000) {
      msr = 1 + (gpa - 0x80000) / 0x20000;
      byte = ((gpa - 0x80000) % 0x20000) >> 14;
    } else {
      msr = 3 + (gpa - 0xc0000) / 0x8000;
      byte = ((gpa - 0xc0000) % 0x8000) >> 12;
    }
    return static_cast<std::uint8_t>(mtrr.fixed[msr] >> (8 * byte));
  }
  const std::size_t count = std::min<std::size_t>(mtrr.cap & 0xff, 16);
  constexpr std::uint64_t kAddressMask = 0x000ffffffffff000ULL, kValid = 1u << 11;
  int matched = -1;
  bool saw_wt = false;
  for (std::size_t i = 0; i < count; ++i) {
    if (!(mtrr.var_mask[i] & kValid)) continue;
    const std::uint64_t mask = mtrr.var_mask[i] & kAddressMask;
    if ((gpa & mask) != (mtrr.var_base[i] & mask)) continue;
    const auto type = static_cast<std::uint8_t>(mtrr.var_base[i] & 0xff);
    if (type == kUc) return kUc;  // UC wins over everything
    if (type == kWt) saw_wt = true;
    if (matched < 0) matched = type;
  }
  if (saw_wt) return kWt;  // WT wins over WB
  if (matched >= 0) return static_cast<std::uint8_t>(matched);
  (void)kWb;
  return static_cast<std::uint8_t>(mtrr.def_type & 0xff);
}

HandlerResult run_vcpu_command(vmm::VcpuThread& vcpu, Session& session, const kvmi::MsgHdr& hdr,
                               std::span<const std::byte> body) {
  Reply reply;
  switch (static_cast<kvmi::MessageId>(hdr.id)) {
    case kvmi::MessageId::VcpuGetInfo:
      reply = get_info(vcpu);
      break;
    case kvmi::MessageId::VcpuControlEvents:
      reply = control_events(session, vcpu, body);
      break;
    case kvmi::MessageId::VcpuGetRegisters:
      reply = get_registers(vcpu, body);
      break;
    case kvmi::MessageId::VcpuSetRegisters:
      reply = set_registers(session, vcpu, body);
      break;
    case kvmi::MessageId::VcpuGetCpuid:
      reply = get_cpuid(session, vcpu, body);
      break;
    case kvmi::MessageId::VcpuControlCr:
      reply = control_cr(session, vcpu, body);
      break;
    case kvmi::MessageId::VcpuInjectException:
      reply = inject_exception(session, vcpu, body);
      break;
    case kvmi::MessageId::VcpuGetXsave:
      reply = get_xsave(vcpu);
      break;
    case kvmi::MessageId::VcpuGetMtrrType:
      reply = get_mtrr_type(vcpu, body);
      break;
    case kvmi::MessageId::VcpuControlMsr:
      reply = control_msr(session, vcpu, body);
      break;
    case kvmi::MessageId::VcpuControlSinglestep:
      reply = control_singlestep(session, vcpu, body);
      break;
    case kvmi::MessageId::VcpuTranslateGva:
      reply = translate_gva(vcpu, body);
      break;
    default:
      reply = Reply::error(Errno::NoSys);
      break;
  }
  auto sent = session.channel().send_reply(hdr, kvmi::to_wire(reply.err), reply.data);
  if (!sent) {
    return std::unexpected(fmt::format("sending the {} reply from vCPU {}: {}",
                                       kvmi::message_name(hdr.id), vcpu.index(),
                                       std::strerror(sent.error())));
  }
  return {};
}

}  // namespace glassbox::introspection
