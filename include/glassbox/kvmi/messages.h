// KVMI RFC v7 message framing and command structures (spec/kvmi-v7.md §1.2, §1.4, §2.2, §2.3).
//
// Layouts are the x86-64 host-native ones; every padding is an explicit field so that a
// zero-initialised struct puts exactly the bytes the protocol expects on the wire. Variable
// tails (write data, MSR indices, page-access entries) are not members: their offset is given as
// a k...Offset constant and the sender appends them.
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>

#include "glassbox/kvmi/ids.h"

namespace glassbox::kvmi {

// kvmi_msg_hdr: precedes every message in both directions.
struct MsgHdr {
  std::uint16_t id;    // MessageId
  std::uint16_t size;  // payload bytes after this header
  std::uint32_t seq;   // a reply copies its command's seq; an event reply copies the event's
};

// kvmi_error_code: first 8 bytes of every command reply; reply data follows only when err == 0.
struct ErrorCode {
  std::int32_t err;  // 0 or a negative Errno
  std::uint32_t padding;
};

// kvmi_vcpu_hdr: prefix of every vCPU command and every event reply.
struct VcpuHdr {
  std::uint16_t vcpu;  // vCPU index, same space as Event::vcpu
  std::uint16_t padding1;
  std::uint32_t padding2;
};

// ---- VM commands -------------------------------------------------------------------------------

// kvmi_features (x86), inside the GET_VERSION reply.
struct Features {
  std::uint8_t singlestep;  // 1 when VCPU_CONTROL_SINGLESTEP can work on this host
  std::uint8_t padding[7];
};

// GET_VERSION (2): no request payload.
struct GetVersionReply {
  std::uint32_t version;  // kVersion
  std::uint32_t padding;
  Features features;
};

// VM_CHECK_COMMAND (3) and VM_CHECK_EVENT (4): reply is the error code only.
struct VmCheckCommand {
  std::uint16_t id;  // MessageId
  std::uint16_t padding1;
  std::uint32_t padding2;
};
struct VmCheckEvent {
  std::uint16_t id;  // EventId
  std::uint16_t padding1;
  std::uint32_t padding2;
};

// VM_GET_INFO (5): no request payload.
struct VmGetInfoReply {
  std::uint32_t vcpu_count;
  std::uint32_t padding[3];
};

// VM_CONTROL_EVENTS (6): only VM events (UNHOOK).
struct VmControlEvents {
  std::uint16_t event_id;
  std::uint8_t enable;
  std::uint8_t padding1;
  std::uint32_t padding2;
};

// VM_READ_PHYSICAL (7): reply is the error code then `size` raw bytes.
struct VmReadPhysical {
  std::uint64_t gpa;
  std::uint64_t size;  // 1..4096, and the range must stay inside one page
};

// VM_WRITE_PHYSICAL (8): `size` data bytes follow at kVmWritePhysicalDataOffset.
struct VmWritePhysical {
  std::uint64_t gpa;
  std::uint64_t size;
};
inline constexpr std::size_t kVmWritePhysicalDataOffset = 16;

// VM_GET_MAX_GFN (17): no request payload.
struct VmGetMaxGfnReply {
  std::uint64_t gfn;  // one past the highest guest frame of any memslot
};

// VM_SET_PAGE_ACCESS (21): `count` PageAccessEntry follow at kVmSetPageAccessEntriesOffset.
struct VmSetPageAccess {
  std::uint16_t count;
  std::uint16_t padding1;
  std::uint32_t padding2;
};
inline constexpr std::size_t kVmSetPageAccessEntriesOffset = 8;

struct PageAccessEntry {
  std::uint64_t gpa;
  std::uint8_t access;  // kPageAccessR/W/X mask of what stays allowed
  std::uint8_t padding1;
  std::uint16_t padding2;
  std::uint32_t padding3;
};

// ---- vCPU commands (each preceded by VcpuHdr on the wire) -------------------------------------

// VCPU_GET_INFO (9): request is the VcpuHdr only.
struct VcpuGetInfoReply {
  std::uint64_t tsc_speed;  // Hz, 0 when the host cannot scale the TSC
};

// VCPU_PAUSE (10): read at payload offset 8, the documented layout (§P1).
struct VcpuPause {
  std::uint8_t wait;
  std::uint8_t padding1;
  std::uint16_t padding2;
  std::uint32_t padding3;
};

// VCPU_CONTROL_EVENTS (11).
struct VcpuControlEvents {
  std::uint16_t event_id;
  std::uint8_t enable;
  std::uint8_t padding1;
  std::uint32_t padding2;
};

// VCPU_GET_REGISTERS (12): `nmsrs` u32 MSR indices follow at kVcpuGetRegistersMsrsOffset.
struct VcpuGetRegisters {
  std::uint16_t nmsrs;
  std::uint16_t padding1;
  std::uint32_t padding2;
};
inline constexpr std::size_t kVcpuGetRegistersMsrsOffset = 8;

// The fixed head of struct kvm_msrs. kvm_msrs itself is not embedded: under C++ the kernel's
// __DECLARE_FLEX_ARRAY makes it 16 bytes instead of 8, which would shift every later offset.
struct MsrsHdr {
  std::uint32_t nmsrs;
  std::uint32_t pad;
};

// Reply: `msrs` carries nmsrs; kvm_msr_entry[nmsrs] follow at kVcpuGetRegistersReplyMsrEntries.
struct VcpuGetRegistersReply {
  std::uint32_t mode;  // 2, 4 or 8: operand size of the current code segment
  std::uint32_t padding;
  kvm_regs regs;
  kvm_sregs sregs;
  MsrsHdr msrs;
};
inline constexpr std::size_t kVcpuGetRegistersReplyMsrEntries = 472;

// VCPU_SET_REGISTERS (13): the request after VcpuHdr is a plain kvm_regs.

// VCPU_GET_CPUID (14).
struct VcpuGetCpuid {
  std::uint32_t function;
  std::uint32_t index;
};
struct VcpuGetCpuidReply {
  std::uint32_t eax;
  std::uint32_t ebx;
  std::uint32_t ecx;
  std::uint32_t edx;
};

// VCPU_CONTROL_CR (15).
struct VcpuControlCr {
  std::uint8_t enable;
  std::uint8_t padding1;
  std::uint16_t padding2;
  std::uint32_t cr;  // 0, 3 or 4
};

// VCPU_INJECT_EXCEPTION (16).
struct VcpuInjectException {
  std::uint8_t nr;  // vector, < kNumExceptionVectors
  std::uint8_t padding1;
  std::uint16_t padding2;
  std::uint32_t error_code;
  std::uint64_t address;  // CR2 for #PF
};

// VCPU_GET_XSAVE (18): request is the VcpuHdr only; reply data is kvm_xsave's region (4096 bytes
// in v7; a reader derives the size from hdr.size, as the v7 doc asks).
inline constexpr std::size_t kXsaveSize = sizeof(kvm_xsave::region);

// VCPU_GET_MTRR_TYPE (19).
struct VcpuGetMtrrType {
  std::uint64_t gpa;
};
struct VcpuGetMtrrTypeReply {
  std::uint8_t type;  // 0 UC, 1 WC, 4 WT, 5 WP, 6 WB
  std::uint8_t padding[7];
};

// VCPU_CONTROL_MSR (20).
struct VcpuControlMsr {
  std::uint8_t enable;
  std::uint8_t padding1;
  std::uint16_t padding2;
  std::uint32_t msr;
};

// VCPU_CONTROL_SINGLESTEP (22).
struct VcpuControlSinglestep {
  std::uint8_t enable;
  std::uint8_t padding[7];
};

// VCPU_TRANSLATE_GVA (23).
struct VcpuTranslateGva {
  std::uint64_t gva;
};
struct VcpuTranslateGvaReply {
  std::uint64_t gpa;  // ~0 when the address does not translate
};
inline constexpr std::uint64_t kInvalidGpa = ~std::uint64_t{0};

// ---- layout checks: spec §1.2, §1.4, §2.2, §2.4 ------------------------------------------------

static_assert(sizeof(MsgHdr) == 8);
static_assert(offsetof(MsgHdr, id) == 0);
static_assert(offsetof(MsgHdr, size) == 2);
static_assert(offsetof(MsgHdr, seq) == 4);

static_assert(sizeof(ErrorCode) == 8);
static_assert(offsetof(ErrorCode, err) == 0);
static_assert(offsetof(ErrorCode, padding) == 4);

static_assert(sizeof(VcpuHdr) == 8);
static_assert(offsetof(VcpuHdr, vcpu) == 0);
static_assert(offsetof(VcpuHdr, padding1) == 2);
static_assert(offsetof(VcpuHdr, padding2) == 4);

static_assert(sizeof(Features) == 8);
static_assert(offsetof(Features, singlestep) == 0);
static_assert(offsetof(Features, padding) == 1);

static_assert(sizeof(GetVersionReply) == 16);
static_assert(offsetof(GetVersionReply, version) == 0);
static_assert(offsetof(GetVersionReply, padding) == 4);
static_assert(offsetof(GetVersionReply, features) == 8);

static_assert(sizeof(VmCheckCommand) == 8);
static_assert(offsetof(VmCheckCommand, id) == 0);
static_assert(offsetof(VmCheckCommand, padding1) == 2);
static_assert(offsetof(VmCheckCommand, padding2) == 4);
static_assert(sizeof(VmCheckEvent) == 8);
static_assert(offsetof(VmCheckEvent, id) == 0);
static_assert(offsetof(VmCheckEvent, padding1) == 2);
static_assert(offsetof(VmCheckEvent, padding2) == 4);

static_assert(sizeof(VmGetInfoReply) == 16);
static_assert(offsetof(VmGetInfoReply, vcpu_count) == 0);
static_assert(offsetof(VmGetInfoReply, padding) == 4);

static_assert(sizeof(VmControlEvents) == 8);
static_assert(offsetof(VmControlEvents, event_id) == 0);
static_assert(offsetof(VmControlEvents, enable) == 2);
static_assert(offsetof(VmControlEvents, padding1) == 3);
static_assert(offsetof(VmControlEvents, padding2) == 4);

static_assert(sizeof(VmReadPhysical) == 16);
static_assert(offsetof(VmReadPhysical, gpa) == 0);
static_assert(offsetof(VmReadPhysical, size) == 8);

static_assert(sizeof(VmWritePhysical) == 16);
static_assert(offsetof(VmWritePhysical, gpa) == 0);
static_assert(offsetof(VmWritePhysical, size) == 8);
static_assert(kVmWritePhysicalDataOffset == sizeof(VmWritePhysical));

static_assert(sizeof(VcpuGetInfoReply) == 8);
static_assert(offsetof(VcpuGetInfoReply, tsc_speed) == 0);

static_assert(sizeof(VcpuPause) == 8);
static_assert(offsetof(VcpuPause, wait) == 0);
static_assert(offsetof(VcpuPause, padding1) == 1);
static_assert(offsetof(VcpuPause, padding2) == 2);
static_assert(offsetof(VcpuPause, padding3) == 4);

static_assert(sizeof(VcpuControlEvents) == 8);
static_assert(offsetof(VcpuControlEvents, event_id) == 0);
static_assert(offsetof(VcpuControlEvents, enable) == 2);
static_assert(offsetof(VcpuControlEvents, padding1) == 3);
static_assert(offsetof(VcpuControlEvents, padding2) == 4);

static_assert(sizeof(VcpuGetRegisters) == 8);
static_assert(offsetof(VcpuGetRegisters, nmsrs) == 0);
static_assert(offsetof(VcpuGetRegisters, padding1) == 2);
static_assert(offsetof(VcpuGetRegisters, padding2) == 4);
static_assert(kVcpuGetRegistersMsrsOffset == sizeof(VcpuGetRegisters));

static_assert(sizeof(kvm_regs) == 144);
static_assert(sizeof(kvm_sregs) == 312);
static_assert(sizeof(kvm_segment) == 24);
static_assert(sizeof(kvm_dtable) == 16);
static_assert(sizeof(MsrsHdr) == 8);
// (offsetof(kvm_msrs, entries) is 16 under C++ for the same reason; the wire has them at 8.)
static_assert(sizeof(kvm_msr_entry) == 16);
static_assert(kXsaveSize == 4096);
static_assert(offsetof(kvm_regs, rax) == 0);
static_assert(offsetof(kvm_regs, rip) == 128);
static_assert(offsetof(kvm_regs, rflags) == 136);
static_assert(offsetof(kvm_sregs, cs) == 0);
static_assert(offsetof(kvm_sregs, tr) == 144);
static_assert(offsetof(kvm_sregs, ldt) == 168);
static_assert(offsetof(kvm_sregs, gdt) == 192);
static_assert(offsetof(kvm_sregs, idt) == 208);
static_assert(offsetof(kvm_sregs, cr0) == 224);
static_assert(offsetof(kvm_sregs, cr3) == 240);
static_assert(offsetof(kvm_sregs, efer) == 264);
static_assert(offsetof(kvm_sregs, apic_base) == 272);
static_assert(offsetof(kvm_sregs, interrupt_bitmap) == 280);
static_assert(offsetof(kvm_msrs, nmsrs) == offsetof(MsrsHdr, nmsrs));
static_assert(offsetof(kvm_msrs, pad) == offsetof(MsrsHdr, pad));
static_assert(offsetof(kvm_msr_entry, index) == 0);
static_assert(offsetof(kvm_msr_entry, reserved) == 4);
static_assert(offsetof(kvm_msr_entry, data) == 8);

static_assert(sizeof(VcpuGetRegistersReply) == 472);
static_assert(offsetof(VcpuGetRegistersReply, mode) == 0);
static_assert(offsetof(VcpuGetRegistersReply, padding) == 4);
static_assert(offsetof(VcpuGetRegistersReply, regs) == 8);
static_assert(offsetof(VcpuGetRegistersReply, sregs) == 152);
static_assert(offsetof(VcpuGetRegistersReply, msrs) == 464);
static_assert(kVcpuGetRegistersReplyMsrEntries == sizeof(VcpuGetRegistersReply));
// The largest GET_REGISTERS reply (error code + 482 MSRs) is exactly 8192 bytes (§1.2).
static_assert(sizeof(ErrorCode) + sizeof(VcpuGetRegistersReply) +
                  kMaxGetRegistersMsrs * sizeof(kvm_msr_entry) ==
              8192);

static_assert(sizeof(VcpuGetCpuid) == 8);
static_assert(offsetof(VcpuGetCpuid, function) == 0);
static_assert(offsetof(VcpuGetCpuid, index) == 4);
static_assert(sizeof(VcpuGetCpuidReply) == 16);
static_assert(offsetof(VcpuGetCpuidReply, eax) == 0);
static_assert(offsetof(VcpuGetCpuidReply, ebx) == 4);
static_assert(offsetof(VcpuGetCpuidReply, ecx) == 8);
static_assert(offsetof(VcpuGetCpuidReply, edx) == 12);

static_assert(sizeof(VcpuControlCr) == 8);
static_assert(offsetof(VcpuControlCr, enable) == 0);
static_assert(offsetof(VcpuControlCr, padding1) == 1);
static_assert(offsetof(VcpuControlCr, padding2) == 2);
static_assert(offsetof(VcpuControlCr, cr) == 4);

static_assert(sizeof(VcpuInjectException) == 16);
static_assert(offsetof(VcpuInjectException, nr) == 0);
static_assert(offsetof(VcpuInjectException, padding1) == 1);
static_assert(offsetof(VcpuInjectException, padding2) == 2);
static_assert(offsetof(VcpuInjectException, error_code) == 4);
static_assert(offsetof(VcpuInjectException, address) == 8);

static_assert(sizeof(VmGetMaxGfnReply) == 8);
static_assert(offsetof(VmGetMaxGfnReply, gfn) == 0);

static_assert(sizeof(VcpuGetMtrrType) == 8);
static_assert(offsetof(VcpuGetMtrrType, gpa) == 0);
static_assert(sizeof(VcpuGetMtrrTypeReply) == 8);
static_assert(offsetof(VcpuGetMtrrTypeReply, type) == 0);
static_assert(offsetof(VcpuGetMtrrTypeReply, padding) == 1);

static_assert(sizeof(VcpuControlMsr) == 8);
static_assert(offsetof(VcpuControlMsr, enable) == 0);
static_assert(offsetof(VcpuControlMsr, padding1) == 1);
static_assert(offsetof(VcpuControlMsr, padding2) == 2);
static_assert(offsetof(VcpuControlMsr, msr) == 4);

static_assert(sizeof(VmSetPageAccess) == 8);
static_assert(offsetof(VmSetPageAccess, count) == 0);
static_assert(offsetof(VmSetPageAccess, padding1) == 2);
static_assert(offsetof(VmSetPageAccess, padding2) == 4);
static_assert(kVmSetPageAccessEntriesOffset == sizeof(VmSetPageAccess));

static_assert(sizeof(PageAccessEntry) == 16);
static_assert(offsetof(PageAccessEntry, gpa) == 0);
static_assert(offsetof(PageAccessEntry, access) == 8);
static_assert(offsetof(PageAccessEntry, padding1) == 9);
static_assert(offsetof(PageAccessEntry, padding2) == 10);
static_assert(offsetof(PageAccessEntry, padding3) == 12);
static_assert(sizeof(VmSetPageAccess) + kMaxPageAccessEntries * sizeof(PageAccessEntry) <=
              kMsgSize);

static_assert(sizeof(VcpuControlSinglestep) == 8);
static_assert(offsetof(VcpuControlSinglestep, enable) == 0);
static_assert(offsetof(VcpuControlSinglestep, padding) == 1);

static_assert(sizeof(VcpuTranslateGva) == 8);
static_assert(offsetof(VcpuTranslateGva, gva) == 0);
static_assert(sizeof(VcpuTranslateGvaReply) == 8);
static_assert(offsetof(VcpuTranslateGvaReply, gpa) == 0);

// ---- request / reply sizes (§2.5), as hdr.size values ------------------------------------------

// Fixed request payload size of a command, counting the VcpuHdr of vCPU commands and excluding
// variable tails (write data, MSR indices, page-access entries).
constexpr std::size_t request_size(MessageId id) {
  constexpr std::size_t vh = sizeof(VcpuHdr);
  switch (id) {
    case MessageId::EventReply:
      return vh + 8;  // VcpuHdr + kvmi_event_reply, without an event-specific tail
    case MessageId::Event:
      return 0;
    case MessageId::GetVersion:
    case MessageId::VmGetInfo:
    case MessageId::VmGetMaxGfn:
      return 0;
    case MessageId::VmCheckCommand:
      return sizeof(VmCheckCommand);
    case MessageId::VmCheckEvent:
      return sizeof(VmCheckEvent);
    case MessageId::VmControlEvents:
      return sizeof(VmControlEvents);
    case MessageId::VmReadPhysical:
      return sizeof(VmReadPhysical);
    case MessageId::VmWritePhysical:
      return sizeof(VmWritePhysical);
    case MessageId::VmSetPageAccess:
      return sizeof(VmSetPageAccess);
    case MessageId::VcpuGetInfo:
    case MessageId::VcpuGetXsave:
      return vh;
    case MessageId::VcpuPause:
      return vh + sizeof(VcpuPause);
    case MessageId::VcpuControlEvents:
      return vh + sizeof(VcpuControlEvents);
    case MessageId::VcpuGetRegisters:
      return vh + sizeof(VcpuGetRegisters);
    case MessageId::VcpuSetRegisters:
      return vh + sizeof(kvm_regs);
    case MessageId::VcpuGetCpuid:
      return vh + sizeof(VcpuGetCpuid);
    case MessageId::VcpuControlCr:
      return vh + sizeof(VcpuControlCr);
    case MessageId::VcpuInjectException:
      return vh + sizeof(VcpuInjectException);
    case MessageId::VcpuGetMtrrType:
      return vh + sizeof(VcpuGetMtrrType);
    case MessageId::VcpuControlMsr:
      return vh + sizeof(VcpuControlMsr);
    case MessageId::VcpuControlSinglestep:
      return vh + sizeof(VcpuControlSinglestep);
    case MessageId::VcpuTranslateGva:
      return vh + sizeof(VcpuTranslateGva);
  }
  return 0;
}

// Fixed part of a successful reply's payload after ErrorCode (variable data excluded:
// read bytes, MSR entries; the XSAVE area counts as fixed at 4096 in v7).
constexpr std::size_t reply_data_size(MessageId id) {
  switch (id) {
    case MessageId::GetVersion:
      return sizeof(GetVersionReply);
    case MessageId::VmGetInfo:
      return sizeof(VmGetInfoReply);
    case MessageId::VcpuGetInfo:
      return sizeof(VcpuGetInfoReply);
    case MessageId::VcpuGetRegisters:
      return sizeof(VcpuGetRegistersReply);
    case MessageId::VcpuGetCpuid:
      return sizeof(VcpuGetCpuidReply);
    case MessageId::VmGetMaxGfn:
      return sizeof(VmGetMaxGfnReply);
    case MessageId::VcpuGetXsave:
      return kXsaveSize;
    case MessageId::VcpuGetMtrrType:
      return sizeof(VcpuGetMtrrTypeReply);
    case MessageId::VcpuTranslateGva:
      return sizeof(VcpuTranslateGvaReply);
    default:
      return 0;
  }
}

static_assert(request_size(MessageId::VcpuPause) == 16);
static_assert(request_size(MessageId::VcpuSetRegisters) == 152);
static_assert(request_size(MessageId::VcpuInjectException) == 24);
static_assert(sizeof(ErrorCode) + reply_data_size(MessageId::GetVersion) == 24);
static_assert(sizeof(ErrorCode) + reply_data_size(MessageId::VmGetInfo) == 24);
static_assert(sizeof(ErrorCode) + reply_data_size(MessageId::VmGetMaxGfn) == 16);
static_assert(sizeof(ErrorCode) + reply_data_size(MessageId::VcpuGetXsave) == 8 + 4096);

}  // namespace glassbox::kvmi
