// KVMI RFC v7 identifiers and constants (spec/kvmi-v7.md §1.2, §2.1, §3.1, §4).
//
// The numeric values are the wire protocol: never renumber. Extensions beyond v7 take message
// ids from kFirstExtensionMessage upward (spec §P5) so a v7 id never changes meaning.
#pragma once

#include <cstddef>
#include <cstdint>

namespace glassbox::kvmi {

// Message ids carried in kvmi_msg_hdr.id (spec §2.1).
enum class MessageId : std::uint16_t {
  EventReply = 0,  // tool -> VMM, answers an event (same seq as the event)
  Event = 1,       // VMM -> tool
  GetVersion = 2,
  VmCheckCommand = 3,
  VmCheckEvent = 4,
  VmGetInfo = 5,
  VmControlEvents = 6,
  VmReadPhysical = 7,
  VmWritePhysical = 8,
  VcpuGetInfo = 9,
  VcpuPause = 10,
  VcpuControlEvents = 11,
  VcpuGetRegisters = 12,
  VcpuSetRegisters = 13,
  VcpuGetCpuid = 14,
  VcpuControlCr = 15,
  VcpuInjectException = 16,
  VmGetMaxGfn = 17,
  VcpuGetXsave = 18,
  VcpuGetMtrrType = 19,
  VcpuControlMsr = 20,
  VmSetPageAccess = 21,
  VcpuControlSinglestep = 22,
  VcpuTranslateGva = 23,
};

// KVMI_NUM_MESSAGES: size of the command allow bitmap; ids >= this are unknown to v7.
inline constexpr std::uint16_t kNumMessages = 24;
// First id an extension may use (spec §P5).
inline constexpr std::uint16_t kFirstExtensionMessage = 64;

// Event ids carried in kvmi_event.event and in the *_CONTROL_EVENTS / CHECK_EVENT payloads (§3.1).
enum class EventId : std::uint16_t {
  Unhook = 0,
  PauseVcpu = 1,
  Hypercall = 2,
  Breakpoint = 3,
  Cr = 4,
  Trap = 5,
  Xsetbv = 6,
  Descriptor = 7,
  Msr = 8,
  Pf = 9,
  Singlestep = 10,
};

// KVMI_NUM_EVENTS: size of the event bitmaps.
inline constexpr std::uint16_t kNumEvents = 11;

// kvmi_event_reply.action (§3.1).
enum class EventAction : std::uint8_t {
  Continue = 0,
  Retry = 1,
  Crash = 2,
};

// KVMI_VERSION, returned by GET_VERSION (§4).
inline constexpr std::uint32_t kVersion = 1;

// KVMI_MSG_SIZE: the largest payload (after the header) the VMM accepts; bigger closes (§1.2).
inline constexpr std::size_t kMsgSize = 4096 * 2 - 8;
static_assert(kMsgSize == 8184);
// VMM -> tool messages may exceed kMsgSize (a GET_REGISTERS reply with 482 MSRs is 8192 bytes),
// so a tool accepts anything the 16-bit size field can express.
inline constexpr std::size_t kMaxIncomingPayload = 0xffff;

// Guest page size every physical access is bounded by (READ/WRITE_PHYSICAL stay in one page).
inline constexpr std::uint64_t kPageSize = 4096;

// kvmi_page_access_entry.access bits and kvmi_event_pf.access values (§2.3.20, §3.4.10).
inline constexpr std::uint8_t kPageAccessR = 1u << 0;
inline constexpr std::uint8_t kPageAccessW = 1u << 1;
inline constexpr std::uint8_t kPageAccessX = 1u << 2;
inline constexpr std::uint8_t kPageAccessRwx = kPageAccessR | kPageAccessW | kPageAccessX;

// kvmi_event_descriptor.descriptor (§3.4.8).
inline constexpr std::uint8_t kDescIdtr = 1;
inline constexpr std::uint8_t kDescGdtr = 2;
inline constexpr std::uint8_t kDescLdtr = 3;
inline constexpr std::uint8_t kDescTr = 4;

// The guest's KVMI hypercall: RAX = KVM_HC_XEN_HVM_OP, RDI (EBX in 32-bit) = the guest-request
// sub-function, RSI (ECX) = 0 (§3.4.3, §P3).
inline constexpr std::uint64_t kHypercallNr = 34;
inline constexpr std::uint64_t kHypercallGuestRequestVmEvent = 24;

// VCPU_PAUSE refuses with -KVM_EBUSY once more than this many pauses are pending (§2.3.9).
inline constexpr std::uint32_t kMaxPendingPauses = 1001;
// GET_REGISTERS answers -KVM_ENOMEM beyond this many MSRs: the reply would exceed 8192 bytes.
inline constexpr std::uint16_t kMaxGetRegistersMsrs = 482;
// Most entries one SET_PAGE_ACCESS can carry: (8184 - 8) / 16.
inline constexpr std::uint16_t kMaxPageAccessEntries = 511;

// VCPU_CONTROL_CR accepts only these control registers (§2.3.14).
constexpr bool is_controllable_cr(std::uint32_t cr) {
  return cr == 0 || cr == 3 || cr == 4;
}

// VCPU_CONTROL_MSR ranges, inclusive as the v7 documentation states (§P1, §2.3.19).
inline constexpr std::uint32_t kMsrLowFirst = 0x00000000;
inline constexpr std::uint32_t kMsrLowLast = 0x00001fff;
inline constexpr std::uint32_t kMsrHighFirst = 0xc0000000;
inline constexpr std::uint32_t kMsrHighLast = 0xc0001fff;
constexpr bool is_controllable_msr(std::uint32_t msr) {
  return msr <= kMsrLowLast || (msr >= kMsrHighFirst && msr <= kMsrHighLast);
}

// Exceptions INJECT_EXCEPTION accepts: the architectural vectors (§P1).
inline constexpr std::uint8_t kNumExceptionVectors = 32;

// Who executes a message (§2.1): the receiving thread or the target vCPU's thread.
enum class MessageScope : std::uint8_t {
  Unknown,     // not a v7 id: answered -KVM_ENOSYS
  EventReply,  // id 0: routed to the vCPU named in its kvmi_vcpu_hdr
  Event,       // id 1: VMM -> tool only; a tool sending it gets -KVM_ENOSYS
  Vm,          // run by the receiving thread
  Vcpu,        // queued as a job on the vCPU thread
  VcpuPause,   // a vCPU command the receiving thread runs itself
};

constexpr MessageScope message_scope(std::uint16_t id) {
  switch (static_cast<MessageId>(id)) {
    case MessageId::EventReply:
      return MessageScope::EventReply;
    case MessageId::Event:
      return MessageScope::Event;
    case MessageId::GetVersion:
    case MessageId::VmCheckCommand:
    case MessageId::VmCheckEvent:
    case MessageId::VmGetInfo:
    case MessageId::VmControlEvents:
    case MessageId::VmReadPhysical:
    case MessageId::VmWritePhysical:
    case MessageId::VmGetMaxGfn:
    case MessageId::VmSetPageAccess:
      return MessageScope::Vm;
    case MessageId::VcpuPause:
      return MessageScope::VcpuPause;
    case MessageId::VcpuGetInfo:
    case MessageId::VcpuControlEvents:
    case MessageId::VcpuGetRegisters:
    case MessageId::VcpuSetRegisters:
    case MessageId::VcpuGetCpuid:
    case MessageId::VcpuControlCr:
    case MessageId::VcpuInjectException:
    case MessageId::VcpuGetXsave:
    case MessageId::VcpuGetMtrrType:
    case MessageId::VcpuControlMsr:
    case MessageId::VcpuControlSinglestep:
    case MessageId::VcpuTranslateGva:
      return MessageScope::Vcpu;
  }
  return MessageScope::Unknown;
}

// Commands the VMM cannot disallow (§2.3.1-2.3.3): a tool always needs them to discover the rest.
constexpr bool is_always_allowed(MessageId id) {
  return id == MessageId::GetVersion || id == MessageId::VmCheckCommand ||
         id == MessageId::VmCheckEvent;
}

// Only UNHOOK is a VM event in v7; every other event is controlled per vCPU.
constexpr bool is_vm_event(EventId id) {
  return id == EventId::Unhook;
}
constexpr bool is_known_event(std::uint16_t id) {
  return id < kNumEvents;
}
constexpr bool is_known_message(std::uint16_t id) {
  return id < kNumMessages;
}

}  // namespace glassbox::kvmi
