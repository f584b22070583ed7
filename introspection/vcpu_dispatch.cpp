#include "introspection/vcpu_dispatch.h"

#include <fmt/format.h>

#include <cstring>

#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/names.h"
#include "introspection/vcpu_jobs.h"

namespace glassbox::introspection {

namespace {

HandlerResult reply(Session& session, const IncomingMessage& message, kvmi::Errno err) {
  if (auto sent = session.channel().send_reply(message.hdr, kvmi::to_wire(err)); !sent) {
    return std::unexpected(fmt::format("sending the {} reply: {}",
                                       kvmi::message_name(message.hdr.id),
                                       std::strerror(sent.error())));
  }
  return {};
}

}  // namespace

bool vcpu_message_supported(std::uint16_t id) {
  const auto scope = kvmi::message_scope(id);
  return scope == kvmi::MessageScope::Vcpu || scope == kvmi::MessageScope::VcpuPause;
}

HandlerResult dispatch_vcpu_message(Session& session, const IncomingMessage& message) {
  const auto scope = kvmi::message_scope(message.hdr.id);
  const auto vcpu = message.read_as<kvmi::VcpuHdr>();

  if (vcpu.padding1 != 0 || vcpu.padding2 != 0) {
    // An event reply with bad paddings closes (spec §1.6); for a command glassbox follows the
    // documentation and answers -KVM_EINVAL (§P1).
    if (scope == kvmi::MessageScope::EventReply) {
      return std::unexpected(std::string("event reply with non-zero kvmi_vcpu_hdr paddings"));
    }
    return reply(session, message, kvmi::Errno::Inval);
  }
  if (vcpu.vcpu >= session.vm().vcpu_count()) {
    // Also for an event reply (whose error reply carries id 0, spec §1.6).
    return reply(session, message, kvmi::Errno::Inval);
  }

  vmm::VcpuThread* thread = session.vm().vcpu_thread(vcpu.vcpu);
  if (thread == nullptr) {
    // No vCPU thread to run it (a memory-only target): "can't be introspected yet".
    return reply(session, message, kvmi::Errno::Again);
  }
  return queue_vcpu_message(session.shared_from_this(), *thread, message);
}

}  // namespace glassbox::introspection
