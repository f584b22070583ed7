// The libkvmi dialect of KVMI (spec/libkvmi-dialect.md §1.2, §6): the numbering Bitdefender's
// libkvmi (and through it LibVMI, HVMI) speaks, mapped onto the RFC v7 ids. Data only: the
// server's dialect layer translates ids with these tables; layouts are the v7 ones except where
// a struct below says otherwise.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "glassbox/kvmi/ids.h"

namespace glassbox::kvmi::libkvmi {

// libkvmi master message ids. Those with a v7 equivalent are listed in kMessageMap; the rest
// exist only in this dialect.
enum class MessageId : std::uint16_t {
  EventReply = 0,
  Event = 1,
  GetVersion = 2,
  CheckCommand = 3,
  CheckEvent = 4,
  GetGuestInfo = 5,
  GetVcpuInfo = 6,
  PauseVcpu = 7,
  ControlVmEvents = 8,
  ControlEvents = 9,
  ControlCr = 10,
  ControlMsr = 11,
  ControlVe = 12,  // defined, never sent
  GetRegisters = 13,
  SetRegisters = 14,
  GetCpuid = 15,
  GetXsave = 16,
  ReadPhysical = 17,
  WritePhysical = 18,
  InjectException = 19,
  GetPageAccess = 20,  // kvmi-v6 only
  SetPageAccess = 21,  // header is {view, count}, see SetPageAccess below
  GetMapToken = 22,
  GetMtrrType = 23,
  GetPageWriteBitmap = 25,  // kvmi-v6 only
  SetPageWriteBitmap = 26,
  ControlCmdResponse = 27,  // mandatory: libkvmi brackets batches with it
  SetVeInfoPage = 28,
  GetMaxGfn = 29,
  GetNextAvailableGfn = 31,
  SwitchEptView = 32,
  DisableVe = 33,
  GetEptView = 34,
  VcpuTranslateGva = 35,
  ControlEptView = 36,
  VcpuGetXcr = 37,
  VcpuSetXsave = 38,
  QueryPhysical = 39,
  VcpuAllocGfn = 41,
  VcpuFreeGfn = 42,
  CreateEptView = 43,
  DestroyEptView = 44,
  VcpuChangeGfn = 60,
  VcpuControlSinglestep = 63,
};

// KVMI_NUM_MESSAGES of the KVM-VMI "kvmi-v7" kernel libkvmi targets.
inline constexpr std::uint16_t kNumMessages = 64;

enum class EventId : std::uint16_t {
  Unhook = 0,
  Cr = 1,
  Msr = 2,
  Xsetbv = 3,
  Breakpoint = 4,
  Hypercall = 5,
  Pf = 6,
  Trap = 7,
  Descriptor = 8,
  CreateVcpu = 9,
  PauseVcpu = 10,
  Singlestep = 11,
  CmdError = 12,  // kernel header only
  Cpuid = 13,
};

inline constexpr std::uint16_t kNumEvents = 14;

struct MessageMapping {
  MessageId libkvmi;
  kvmi::MessageId v7;
};

// Every libkvmi message that has an RFC v7 equivalent (dialect spec §1.2, §6 item 2).
inline constexpr std::array<MessageMapping, 24> kMessageMap = {{
    {MessageId::EventReply, kvmi::MessageId::EventReply},
    {MessageId::Event, kvmi::MessageId::Event},
    {MessageId::GetVersion, kvmi::MessageId::GetVersion},
    {MessageId::CheckCommand, kvmi::MessageId::VmCheckCommand},
    {MessageId::CheckEvent, kvmi::MessageId::VmCheckEvent},
    {MessageId::GetGuestInfo, kvmi::MessageId::VmGetInfo},
    {MessageId::GetVcpuInfo, kvmi::MessageId::VcpuGetInfo},
    {MessageId::PauseVcpu, kvmi::MessageId::VcpuPause},
    {MessageId::ControlVmEvents, kvmi::MessageId::VmControlEvents},
    {MessageId::ControlEvents, kvmi::MessageId::VcpuControlEvents},
    {MessageId::ControlCr, kvmi::MessageId::VcpuControlCr},
    {MessageId::ControlMsr, kvmi::MessageId::VcpuControlMsr},
    {MessageId::GetRegisters, kvmi::MessageId::VcpuGetRegisters},
    {MessageId::SetRegisters, kvmi::MessageId::VcpuSetRegisters},
    {MessageId::GetCpuid, kvmi::MessageId::VcpuGetCpuid},
    {MessageId::GetXsave, kvmi::MessageId::VcpuGetXsave},
    {MessageId::ReadPhysical, kvmi::MessageId::VmReadPhysical},
    {MessageId::WritePhysical, kvmi::MessageId::VmWritePhysical},
    {MessageId::InjectException, kvmi::MessageId::VcpuInjectException},
    {MessageId::SetPageAccess, kvmi::MessageId::VmSetPageAccess},
    {MessageId::GetMtrrType, kvmi::MessageId::VcpuGetMtrrType},
    {MessageId::GetMaxGfn, kvmi::MessageId::VmGetMaxGfn},
    {MessageId::VcpuTranslateGva, kvmi::MessageId::VcpuTranslateGva},
    {MessageId::VcpuControlSinglestep, kvmi::MessageId::VcpuControlSinglestep},
}};

struct EventMapping {
  EventId libkvmi;
  kvmi::EventId v7;
};

// Every libkvmi event that has an RFC v7 equivalent (CREATE_VCPU, CMD_ERROR, CPUID have none).
inline constexpr std::array<EventMapping, 11> kEventMap = {{
    {EventId::Unhook, kvmi::EventId::Unhook},
    {EventId::Cr, kvmi::EventId::Cr},
    {EventId::Msr, kvmi::EventId::Msr},
    {EventId::Xsetbv, kvmi::EventId::Xsetbv},
    {EventId::Breakpoint, kvmi::EventId::Breakpoint},
    {EventId::Hypercall, kvmi::EventId::Hypercall},
    {EventId::Pf, kvmi::EventId::Pf},
    {EventId::Trap, kvmi::EventId::Trap},
    {EventId::Descriptor, kvmi::EventId::Descriptor},
    {EventId::PauseVcpu, kvmi::EventId::PauseVcpu},
    {EventId::Singlestep, kvmi::EventId::Singlestep},
}};

constexpr std::optional<kvmi::MessageId> to_v7(std::uint16_t libkvmi_id) {
  for (const auto& m : kMessageMap) {
    if (static_cast<std::uint16_t>(m.libkvmi) == libkvmi_id) return m.v7;
  }
  return std::nullopt;
}
constexpr std::optional<std::uint16_t> from_v7(kvmi::MessageId id) {
  for (const auto& m : kMessageMap) {
    if (m.v7 == id) return static_cast<std::uint16_t>(m.libkvmi);
  }
  return std::nullopt;
}
constexpr std::optional<kvmi::EventId> event_to_v7(std::uint16_t libkvmi_id) {
  for (const auto& m : kEventMap) {
    if (static_cast<std::uint16_t>(m.libkvmi) == libkvmi_id) return m.v7;
  }
  return std::nullopt;
}
constexpr std::optional<std::uint16_t> event_from_v7(kvmi::EventId id) {
  for (const auto& m : kEventMap) {
    if (m.v7 == id) return static_cast<std::uint16_t>(m.libkvmi);
  }
  return std::nullopt;
}

// SET_PAGE_ACCESS (21) header in libkvmi: view first, count second (v7: count at offset 0).
struct SetPageAccess {
  std::uint16_t view;
  std::uint16_t count;
  std::uint32_t padding;
};
inline constexpr std::size_t kSetPageAccessEntriesOffset = 8;

// CONTROL_CMD_RESPONSE (27): enable=0,now=1 stops replies from this command on; enable=1,now=1
// resumes them and answers this command; now=0 applies from the next command.
struct ControlCmdResponse {
  std::uint8_t enable;
  std::uint8_t now;
  std::uint16_t padding1;
  std::uint32_t padding2;
};

static_assert(sizeof(SetPageAccess) == 8);
static_assert(offsetof(SetPageAccess, view) == 0);
static_assert(offsetof(SetPageAccess, count) == 2);
static_assert(offsetof(SetPageAccess, padding) == 4);
static_assert(sizeof(ControlCmdResponse) == 8);
static_assert(offsetof(ControlCmdResponse, enable) == 0);
static_assert(offsetof(ControlCmdResponse, now) == 1);

// Spot checks of the §6 remapping list, so a typo in the tables fails to compile.
static_assert(to_v7(6) == kvmi::MessageId::VcpuGetInfo);
static_assert(to_v7(7) == kvmi::MessageId::VcpuPause);
static_assert(to_v7(29) == kvmi::MessageId::VmGetMaxGfn);
static_assert(to_v7(63) == kvmi::MessageId::VcpuControlSinglestep);
static_assert(!to_v7(27).has_value());
static_assert(event_from_v7(kvmi::EventId::PauseVcpu) == 10);
static_assert(event_from_v7(kvmi::EventId::Cr) == 1);
static_assert(event_to_v7(11) == kvmi::EventId::Singlestep);

}  // namespace glassbox::kvmi::libkvmi
