// KVMI RFC v7 events and event replies (spec/kvmi-v7.md §3).
//
// An event is a message with id MessageId::Event whose payload is Event (the common part, whose
// `size` field says where the event-specific part starts) followed by that part. The tool answers
// with MessageId::EventReply, the event's seq, and VcpuHdr + EventReply + the specific reply.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>

#include "glassbox/kvmi/ids.h"
#include "glassbox/kvmi/messages.h"

namespace glassbox::kvmi {

// The nine MSRs every x86 event snapshots, in wire order.
struct EventArchMsrs {
  std::uint64_t sysenter_cs;
  std::uint64_t sysenter_esp;
  std::uint64_t sysenter_eip;
  std::uint64_t efer;
  std::uint64_t star;
  std::uint64_t lstar;
  std::uint64_t cstar;
  std::uint64_t pat;
  std::uint64_t shadow_gs;  // MSR_KERNEL_GS_BASE
};

// kvmi_event_arch (x86): the vCPU state at the event; all zero for UNHOOK.
struct EventArch {
  std::uint8_t mode;  // 2, 4 or 8, as VcpuGetRegistersReply::mode
  std::uint8_t padding[7];
  kvm_regs regs;
  kvm_sregs sregs;
  EventArchMsrs msrs;
};

// kvmi_event: the common part of every event.
struct Event {
  std::uint16_t size;  // sizeof(Event) today; the specific part starts at this offset
  std::uint16_t vcpu;  // vCPU index (0 for UNHOOK)
  std::uint8_t event;  // EventId
  std::uint8_t padding[3];
  EventArch arch;
};
inline constexpr std::uint16_t kEventCommonSize = 544;

// kvmi_event_reply: after the VcpuHdr of an EventReply message.
struct EventReply {
  std::uint8_t action;  // EventAction
  std::uint8_t event;   // echo of the event id
  std::uint16_t padding1;
  std::uint32_t padding2;
};

// ---- event-specific payloads (after Event) and replies (after EventReply) ---------------------

struct EventBreakpoint {
  std::uint64_t gpa;  // guest-physical address of CS.base + RIP
  std::uint8_t insn_len;
  std::uint8_t padding[7];
};

struct EventCr {
  std::uint16_t cr;
  std::uint16_t padding[3];
  std::uint64_t old_value;
  std::uint64_t new_value;
};
struct EventCrReply {
  std::uint64_t new_val;  // the value written on CONTINUE
};

struct EventTrap {
  std::uint32_t vector;
  std::uint32_t error_code;
  std::uint64_t cr2;
};

struct EventDescriptor {
  std::uint8_t descriptor;  // kDescIdtr/Gdtr/Ldtr/Tr
  std::uint8_t write;       // 1: LxDT/LTR loads it, 0: SxDT/STR stores it
  std::uint8_t padding[6];
};

struct EventMsr {
  std::uint32_t msr;
  std::uint32_t padding;
  std::uint64_t old_value;
  std::uint64_t new_value;
};
struct EventMsrReply {
  std::uint64_t new_val;
};

struct EventPf {
  std::uint64_t gva;  // ~0 when unknown (§P4)
  std::uint64_t gpa;
  std::uint8_t access;  // exactly one of kPageAccessR/W/X
  std::uint8_t padding1;
  std::uint16_t padding2;
  std::uint32_t padding3;
};

// Travels in the event, not the reply (§P1).
struct EventSinglestep {
  std::uint8_t failed;
  std::uint8_t padding[7];
};

// Size of the event-specific part that follows Event.
constexpr std::size_t event_payload_size(EventId id) {
  switch (id) {
    case EventId::Breakpoint:
      return sizeof(EventBreakpoint);
    case EventId::Cr:
      return sizeof(EventCr);
    case EventId::Trap:
      return sizeof(EventTrap);
    case EventId::Descriptor:
      return sizeof(EventDescriptor);
    case EventId::Msr:
      return sizeof(EventMsr);
    case EventId::Pf:
      return sizeof(EventPf);
    case EventId::Singlestep:
      return sizeof(EventSinglestep);
    case EventId::Unhook:
    case EventId::PauseVcpu:
    case EventId::Hypercall:
    case EventId::Xsetbv:
      return 0;
  }
  return 0;
}

// Size of the event-specific reply part that follows EventReply; the VMM closes the connection
// on a longer one and zero-fills a shorter one (§3.3).
constexpr std::size_t event_reply_extra_size(EventId id) {
  switch (id) {
    case EventId::Cr:
      return sizeof(EventCrReply);
    case EventId::Msr:
      return sizeof(EventMsrReply);
    default:
      return 0;
  }
}

// hdr.size of an event message and of its reply.
constexpr std::size_t event_message_size(EventId id) {
  return sizeof(Event) + event_payload_size(id);
}
constexpr std::size_t event_reply_message_size(EventId id) {
  return sizeof(VcpuHdr) + sizeof(EventReply) + event_reply_extra_size(id);
}

// UNHOOK is the only event without a reply: the tool answers by closing the socket (§3.4.1).
constexpr bool event_expects_reply(EventId id) {
  return id != EventId::Unhook;
}

// Whether an action is documented for an event (§3.1); CRASH and CONTINUE always are.
constexpr bool event_accepts_action(EventId id, EventAction action) {
  switch (action) {
    case EventAction::Continue:
    case EventAction::Crash:
      return id != EventId::Unhook;
    case EventAction::Retry:
      return id == EventId::Breakpoint || id == EventId::Descriptor || id == EventId::Pf;
  }
  return false;
}

// ---- layout checks: spec §2.4, §3.2, §3.3, §3.5 ------------------------------------------------

static_assert(sizeof(EventArchMsrs) == 72);
static_assert(sizeof(EventArch) == 536);
static_assert(offsetof(EventArch, mode) == 0);
static_assert(offsetof(EventArch, padding) == 1);
static_assert(offsetof(EventArch, regs) == 8);
static_assert(offsetof(EventArch, sregs) == 152);
static_assert(offsetof(EventArch, msrs) == 464);

static_assert(sizeof(Event) == 544);
static_assert(sizeof(Event) == kEventCommonSize);
static_assert(offsetof(Event, size) == 0);
static_assert(offsetof(Event, vcpu) == 2);
static_assert(offsetof(Event, event) == 4);
static_assert(offsetof(Event, padding) == 5);
static_assert(offsetof(Event, arch) == 8);
static_assert(offsetof(Event, arch.regs) == 16);
static_assert(offsetof(Event, arch.sregs) == 160);
static_assert(offsetof(Event, arch.msrs) == 472);
static_assert(offsetof(Event, arch.msrs.sysenter_cs) == 472);
static_assert(offsetof(Event, arch.msrs.sysenter_esp) == 480);
static_assert(offsetof(Event, arch.msrs.sysenter_eip) == 488);
static_assert(offsetof(Event, arch.msrs.efer) == 496);
static_assert(offsetof(Event, arch.msrs.star) == 504);
static_assert(offsetof(Event, arch.msrs.lstar) == 512);
static_assert(offsetof(Event, arch.msrs.cstar) == 520);
static_assert(offsetof(Event, arch.msrs.pat) == 528);
static_assert(offsetof(Event, arch.msrs.shadow_gs) == 536);

static_assert(sizeof(EventReply) == 8);
static_assert(offsetof(EventReply, action) == 0);
static_assert(offsetof(EventReply, event) == 1);
static_assert(offsetof(EventReply, padding1) == 2);
static_assert(offsetof(EventReply, padding2) == 4);

static_assert(sizeof(EventBreakpoint) == 16);
static_assert(offsetof(EventBreakpoint, gpa) == 0);
static_assert(offsetof(EventBreakpoint, insn_len) == 8);
static_assert(offsetof(EventBreakpoint, padding) == 9);

static_assert(sizeof(EventCr) == 24);
static_assert(offsetof(EventCr, cr) == 0);
static_assert(offsetof(EventCr, padding) == 2);
static_assert(offsetof(EventCr, old_value) == 8);
static_assert(offsetof(EventCr, new_value) == 16);
static_assert(sizeof(EventCrReply) == 8);
static_assert(offsetof(EventCrReply, new_val) == 0);

static_assert(sizeof(EventTrap) == 16);
static_assert(offsetof(EventTrap, vector) == 0);
static_assert(offsetof(EventTrap, error_code) == 4);
static_assert(offsetof(EventTrap, cr2) == 8);

static_assert(sizeof(EventDescriptor) == 8);
static_assert(offsetof(EventDescriptor, descriptor) == 0);
static_assert(offsetof(EventDescriptor, write) == 1);
static_assert(offsetof(EventDescriptor, padding) == 2);

static_assert(sizeof(EventMsr) == 24);
static_assert(offsetof(EventMsr, msr) == 0);
static_assert(offsetof(EventMsr, padding) == 4);
static_assert(offsetof(EventMsr, old_value) == 8);
static_assert(offsetof(EventMsr, new_value) == 16);
static_assert(sizeof(EventMsrReply) == 8);
static_assert(offsetof(EventMsrReply, new_val) == 0);

static_assert(sizeof(EventPf) == 24);
static_assert(offsetof(EventPf, gva) == 0);
static_assert(offsetof(EventPf, gpa) == 8);
static_assert(offsetof(EventPf, access) == 16);
static_assert(offsetof(EventPf, padding1) == 17);
static_assert(offsetof(EventPf, padding2) == 18);
static_assert(offsetof(EventPf, padding3) == 20);

static_assert(sizeof(EventSinglestep) == 8);
static_assert(offsetof(EventSinglestep, failed) == 0);
static_assert(offsetof(EventSinglestep, padding) == 1);

// §3.5: event message sizes and reply sizes.
static_assert(event_message_size(EventId::Unhook) == 544);
static_assert(event_message_size(EventId::PauseVcpu) == 544);
static_assert(event_message_size(EventId::Hypercall) == 544);
static_assert(event_message_size(EventId::Breakpoint) == 560);
static_assert(event_message_size(EventId::Cr) == 568);
static_assert(event_message_size(EventId::Trap) == 560);
static_assert(event_message_size(EventId::Xsetbv) == 544);
static_assert(event_message_size(EventId::Descriptor) == 552);
static_assert(event_message_size(EventId::Msr) == 568);
static_assert(event_message_size(EventId::Pf) == 568);
static_assert(event_message_size(EventId::Singlestep) == 552);
static_assert(event_reply_message_size(EventId::PauseVcpu) == 16);
static_assert(event_reply_message_size(EventId::Cr) == 24);
static_assert(event_reply_message_size(EventId::Msr) == 24);
static_assert(event_reply_message_size(EventId::Pf) == 16);

}  // namespace glassbox::kvmi
