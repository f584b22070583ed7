#include "introspection/receiver.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/names.h"
#include "introspection/dialect.h"
#include "introspection/vcpu_dispatch.h"
#include "introspection/vm_commands.h"

namespace glassbox::introspection {

namespace {

std::string read_failure(ReadStatus status, int err, const char* what) {
  switch (status) {
    case ReadStatus::Eof:
      return "the tool closed the connection";
    case ReadStatus::Truncated:
      return fmt::format("truncated {} (the tool closed mid-message)", what);
    case ReadStatus::Error:
      return fmt::format("reading {}: {}", what, std::strerror(err));
    case ReadStatus::Complete:
      break;
  }
  return "unexpected read state";
}

// Whether glassbox has a handler for a v7 id; ids without one get -KVM_ENOSYS (§1.5 step 3).
bool has_handler(std::uint16_t id) {
  switch (kvmi::message_scope(id)) {
    case kvmi::MessageScope::Vm:
      return find_vm_command(id) != nullptr;
    case kvmi::MessageScope::Vcpu:
    case kvmi::MessageScope::VcpuPause:
    case kvmi::MessageScope::EventReply:
      return true;                     // validated and answered by dispatch_vcpu_message
    case kvmi::MessageScope::Event:    // VMM -> tool only
    case kvmi::MessageScope::Unknown:  // not a v7 id
      return false;
  }
  return false;
}

HandlerResult reply_error(Session& session, const IncomingMessage& message, kvmi::Errno err) {
  if (auto sent = session.channel().send_reply(message.hdr, kvmi::to_wire(err)); !sent) {
    return std::unexpected(
        fmt::format("sending a {} reply: {}", kvmi::error_name(err), std::strerror(sent.error())));
  }
  return {};
}

// One message, validated in the order of spec §1.5. An error return closes the connection.
HandlerResult handle_one(Session& session, std::span<std::byte> buffer) {
  Channel& channel = session.channel();
  IncomingMessage message;
  int err = 0;

  // 1. The header; EOF or a short read closes.
  auto status = channel.read_exact(std::as_writable_bytes(std::span(&message.hdr, 1)), &err);
  if (status != ReadStatus::Complete) return std::unexpected(read_failure(status, err, "header"));

  // 2. An oversized message closes without a reply.
  if (message.hdr.size > kvmi::kMsgSize) {
    return std::unexpected(fmt::format("message id {} seq {} announces {} payload bytes (limit {})",
                                       message.hdr.id, message.hdr.seq, message.hdr.size,
                                       kvmi::kMsgSize));
  }

  // 3./4. The payload is read in full either way: an unsupported id is discarded after it.
  auto payload = buffer.first(message.hdr.size);
  status = channel.read_exact(payload, &err);
  if (status != ReadStatus::Complete) {
    return std::unexpected(
        read_failure(status == ReadStatus::Eof ? ReadStatus::Truncated : status, err, "payload"));
  }
  // The dialect edge: from here on ids are RFC v7 ids (a libkvmi tool's are translated, and what
  // has no v7 equivalent is answered by the edge itself).
  auto translated = translate_incoming(channel, message.hdr, payload);
  if (!translated) return std::unexpected(translated.error());
  if (!*translated) return {};
  message.payload = payload;
  spdlog::trace("kvmi: {} (id {}) seq {} size {}", kvmi::message_name(message.hdr.id),
                message.hdr.id, message.hdr.seq, message.hdr.size);

  if (!has_handler(message.hdr.id)) return reply_error(session, message, kvmi::Errno::NoSys);

  // 5. Permission. The event reply needs none; the always-allowed commands always pass.
  const auto scope = kvmi::message_scope(message.hdr.id);
  if (scope != kvmi::MessageScope::EventReply &&
      !session.permissions().allows_command(message.hdr.id)) {
    return reply_error(session, message, kvmi::Errno::Perm);
  }

  // 6. Dispatch.
  if (scope == kvmi::MessageScope::Vm) return find_vm_command(message.hdr.id)(session, message);
  return dispatch_vcpu_message(session, message);
}

}  // namespace

std::string run_receiver(Session& session) {
  // v7's receive buffer: one block for the largest accepted payload.
  std::array<std::byte, kvmi::kMsgSize> buffer{};
  for (;;) {
    auto handled = handle_one(session, buffer);
    if (!handled) {
      // The VMM's own reason (unhook, shutdown) wins over the EOF its shutdown caused.
      session.close(handled.error());
      return session.close_reason();
    }
  }
}

std::string run_receiver_on_fd(int fd, VmTarget& vm, Permissions permissions,
                               kvmi::Dialect dialect) {
  UniqueFd own(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!own.valid()) return fmt::format("dup of fd {}: {}", fd, std::strerror(errno));
  std::atomic<std::uint32_t> event_seq{0};
  Session session(std::move(own), vm, permissions, event_seq, dialect);
  return run_receiver(session);
}

}  // namespace glassbox::introspection
