#include "introspection/vm_commands.h"

#include <fmt/format.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>

#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/names.h"
#include "introspection/vcpu_dispatch.h"

namespace glassbox::introspection {

// intercept_page.cpp (declared here: intercepts.h is shared with other interceptions). Runs
// `update` with every vCPU of the machine `any_vcpu` belongs to out of the guest, and makes every
// later slot update of that machine do the same.
void run_page_access_update(vmm::VcpuThread& any_vcpu, const std::function<void()>& update);

namespace {

using kvmi::Errno;

HandlerResult sent_or_close(const IncomingMessage& message, std::expected<void, int> sent) {
  if (!sent) {
    return std::unexpected(fmt::format("sending the {} reply: {}",
                                       kvmi::message_name(message.hdr.id),
                                       std::strerror(sent.error())));
  }
  return {};
}

HandlerResult reply_error(Session& session, const IncomingMessage& message, Errno err) {
  return sent_or_close(message, session.channel().send_reply(message.hdr, kvmi::to_wire(err)));
}

HandlerResult reply_ok(Session& session, const IncomingMessage& message,
                       std::span<const std::byte> data = {}) {
  return sent_or_close(message, session.channel().send_reply(message.hdr, 0, data));
}

// READ/WRITE_PHYSICAL: 1..4096 bytes, all inside one 4 KiB page (spec §2.3.6).
bool valid_physical_range(std::uint64_t gpa, std::uint64_t size) {
  return size != 0 && size <= kvmi::kPageSize &&
         (gpa & (kvmi::kPageSize - 1)) + size <= kvmi::kPageSize;
}

// §2.3.1: always allowed, always succeeds.
HandlerResult get_version(Session& session, const IncomingMessage& message) {
  kvmi::GetVersionReply reply{};
  reply.version = kvmi::kVersion;
  reply.features.singlestep = session.vm().host_facts().singlestep ? 1 : 0;
  return reply_ok(session, message, bytes_of(reply));
}

// §2.3.2, checks in the v7 code's order.
HandlerResult check_command(Session& session, const IncomingMessage& message) {
  const auto req = message.read_as<kvmi::VmCheckCommand>();
  if (req.padding1 != 0 || req.padding2 != 0) return reply_error(session, message, Errno::Inval);
  if (!kvmi::is_known_message(req.id)) return reply_error(session, message, Errno::Inval);
  // Ids 0 and 1 are known but never in the allow mask. A command glassbox does not serve yet is
  // reported as not allowed, so a tool that checks first never relies on it.
  const bool served = kvmi::message_scope(req.id) == kvmi::MessageScope::Vm
                          ? find_vm_command(req.id) != nullptr
                          : vcpu_message_supported(req.id);
  if (!session.permissions().allows_command(req.id) || !served) {
    return reply_error(session, message, Errno::Perm);
  }
  return reply_ok(session, message);
}

// §2.3.3; events this host cannot intercept are "not allowed by the VMM" (§P2).
HandlerResult check_event(Session& session, const IncomingMessage& message) {
  const auto req = message.read_as<kvmi::VmCheckEvent>();
  if (req.padding1 != 0 || req.padding2 != 0) return reply_error(session, message, Errno::Inval);
  if (!kvmi::is_known_event(req.id)) return reply_error(session, message, Errno::Inval);
  if (!session.permissions().allows_event(req.id) ||
      !session.vm().host_facts().can_intercept(static_cast<kvmi::EventId>(req.id))) {
    return reply_error(session, message, Errno::Perm);
  }
  return reply_ok(session, message);
}

// §2.3.4
HandlerResult get_info(Session& session, const IncomingMessage& message) {
  kvmi::VmGetInfoReply reply{};
  reply.vcpu_count = session.vm().vcpu_count();
  return reply_ok(session, message, bytes_of(reply));
}

// §2.3.5: only VM events (UNHOOK) are controlled here.
HandlerResult control_events(Session& session, const IncomingMessage& message) {
  const auto req = message.read_as<kvmi::VmControlEvents>();
  if (req.padding1 != 0 || req.padding2 != 0) return reply_error(session, message, Errno::Inval);
  if (!kvmi::is_known_event(req.event_id) ||
      !kvmi::is_vm_event(static_cast<kvmi::EventId>(req.event_id))) {
    return reply_error(session, message, Errno::Inval);
  }
  if (!session.permissions().allows_event(req.event_id)) {
    return reply_error(session, message, Errno::Perm);
  }
  session.set_vm_event_enabled(static_cast<kvmi::EventId>(req.event_id), req.enable != 0);
  return reply_ok(session, message);
}

// §2.3.6
HandlerResult read_physical(Session& session, const IncomingMessage& message) {
  const auto req = message.read_as<kvmi::VmReadPhysical>();
  if (!valid_physical_range(req.gpa, req.size)) return reply_error(session, message, Errno::Inval);
  if (session.vm().vcpu_count() == 0) return reply_error(session, message, Errno::Inval);
  std::array<std::byte, kvmi::kPageSize> data;
  auto out = std::span(data).first(req.size);
  if (!session.vm().read_physical(req.gpa, out)) return reply_error(session, message, Errno::NoEnt);
  return reply_ok(session, message, out);
}

// §2.3.7
HandlerResult write_physical(Session& session, const IncomingMessage& message) {
  const auto req = message.read_as<kvmi::VmWritePhysical>();
  const std::size_t have = message.payload.size();
  // hdr.size < 16 + size closes (spec §1.6), written so a huge `size` cannot overflow.
  if (have < kvmi::kVmWritePhysicalDataOffset ||
      req.size > have - kvmi::kVmWritePhysicalDataOffset) {
    return std::unexpected(fmt::format(
        "KVMI_VM_WRITE_PHYSICAL with {} payload bytes announces {} data bytes", have, req.size));
  }
  if (!valid_physical_range(req.gpa, req.size)) return reply_error(session, message, Errno::Inval);
  if (session.vm().vcpu_count() == 0) return reply_error(session, message, Errno::Inval);
  auto data = message.payload.subspan(kvmi::kVmWritePhysicalDataOffset, req.size);
  if (!session.vm().write_physical(req.gpa, data)) {
    return reply_error(session, message, Errno::NoEnt);
  }
  return reply_ok(session, message);
}

// §2.3.16
HandlerResult get_max_gfn(Session& session, const IncomingMessage& message) {
  kvmi::VmGetMaxGfnReply reply{};
  reply.gfn = session.vm().max_gfn();
  return reply_ok(session, message, bytes_of(reply));
}

// §2.3.20. Header problems fail the whole command; after that every entry is attempted and the
// reply carries the first error, entries that succeeded staying applied (as v7 does).
HandlerResult set_page_access(Session& session, const IncomingMessage& message) {
  const auto req = message.read_as<kvmi::VmSetPageAccess>();
  if (req.padding1 != 0 || req.padding2 != 0) return reply_error(session, message, Errno::Inval);
  const std::size_t needed =
      kvmi::kVmSetPageAccessEntriesOffset + std::size_t{req.count} * sizeof(kvmi::PageAccessEntry);
  if (message.payload.size() < needed) return reply_error(session, message, Errno::Inval);
  std::optional<Errno> first_error;
  auto note = [&](Errno e) {
    if (!first_error) first_error = e;
  };
  auto apply_entries = [&] {
    for (std::size_t i = 0; i < req.count; ++i) {
      const auto entry = message.read_as<kvmi::PageAccessEntry>(
          kvmi::kVmSetPageAccessEntriesOffset + i * sizeof(kvmi::PageAccessEntry));
      if ((entry.access & ~kvmi::kPageAccessRwx) != 0 || entry.padding1 != 0 ||
          entry.padding2 != 0 || entry.padding3 != 0) {
        note(Errno::Inval);
        continue;
      }
      // GPAs outside RAM are ignored by the target (success), as v7 ignores frames with no slot.
      const int r = session.vm().set_page_access(entry.gpa / kvmi::kPageSize, entry.access);
      if (r == 0) continue;
      note(r == -ENOMEM ? Errno::NoMem : r == -ENOSYS ? Errno::OpNotSupp : Errno::Inval);
    }
  };
  // Slot updates are not atomic: a whole command is applied during one stop of the vCPUs.
  if (vmm::VcpuThread* any = session.vm().vcpu_thread(0)) {
    run_page_access_update(*any, apply_entries);
  } else {
    apply_entries();  // memory-only target: no vCPUs, no slots
  }
  if (first_error) return reply_error(session, message, *first_error);
  return reply_ok(session, message);
}

}  // namespace

VmCommandHandler find_vm_command(std::uint16_t id) {
  switch (static_cast<kvmi::MessageId>(id)) {
    case kvmi::MessageId::GetVersion:
      return &get_version;
    case kvmi::MessageId::VmCheckCommand:
      return &check_command;
    case kvmi::MessageId::VmCheckEvent:
      return &check_event;
    case kvmi::MessageId::VmGetInfo:
      return &get_info;
    case kvmi::MessageId::VmControlEvents:
      return &control_events;
    case kvmi::MessageId::VmReadPhysical:
      return &read_physical;
    case kvmi::MessageId::VmWritePhysical:
      return &write_physical;
    case kvmi::MessageId::VmGetMaxGfn:
      return &get_max_gfn;
    case kvmi::MessageId::VmSetPageAccess:
      return &set_page_access;
    default:
      return nullptr;
  }
}

}  // namespace glassbox::introspection
