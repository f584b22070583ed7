// The dialect edge of one connection (spec/libkvmi-dialect.md §1.3, §6; issue 7). glassbox's
// receiver, handlers and events speak RFC v7 only; a connection in the libkvmi dialect has its
// ids translated here, at the socket: incoming message ids (and the ids inside CHECK_COMMAND,
// CHECK_EVENT, *CONTROL_EVENTS and event replies) become v7 ids right after a message is read,
// before validation; outgoing replies get their request's wire id back and events get the
// dialect's event id in kvmi_event.event (Channel::send). The few libkvmi messages with no v7
// equivalent are answered here, so no handler ever learns which dialect is spoken.
#pragma once

#include <cstdint>
#include <expected>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <utility>

#include "glassbox/kvmi/dialect.h"
#include "glassbox/kvmi/events.h"
#include "glassbox/kvmi/messages.h"

namespace glassbox::introspection {

class Channel;

class DialectEdge {
 public:
  explicit DialectEdge(kvmi::Dialect dialect) : dialect_(dialect) {}
  DialectEdge(const DialectEdge&) = delete;
  DialectEdge& operator=(const DialectEdge&) = delete;

  kvmi::Dialect dialect() const { return dialect_; }
  bool translates() const { return dialect_ != kvmi::Dialect::RfcV7; }

  // Outgoing: the wire id of a v7 message id, and the event common part with the dialect's event
  // id (`scratch` holds the copy; the caller's event is left alone).
  std::uint16_t wire_message_id(std::uint16_t v7_id) const {
    return kvmi::wire_message_id(dialect_, v7_id);
  }
  std::span<const std::byte> wire_event(std::span<const std::byte> common,
                                        kvmi::Event& scratch) const;

  // KVMI_CONTROL_CMD_RESPONSE (libkvmi 27). Replies are decided on when a command is read, not
  // when its reply is sent: a VCPU_PAUSE with `wait` is answered by its vCPU thread, possibly after
  // the batch's closing "enable" was already read. The receiving thread records each request
  // whose reply must be dropped; whoever sends the reply asks take_suppressed().
  bool replies_enabled() const { return replies_enabled_; }  // receiving thread only
  void set_replies_enabled(bool enable) { replies_enabled_ = enable; }
  void suppress_reply_to(std::uint16_t v7_id, std::uint32_t seq);
  bool take_suppressed(std::uint16_t v7_id, std::uint32_t seq);  // any thread

 private:
  const kvmi::Dialect dialect_;
  bool replies_enabled_ = true;
  std::mutex mutex_;
  // A multiset: a tool may reuse a seq while an earlier request with it still waits for its vCPU.
  std::multiset<std::pair<std::uint16_t, std::uint32_t>> suppressed_;
};

// Runs on the receiving thread for every message right after its payload was read. Rewrites
// `hdr.id` and the ids in `payload` to v7 (and may shorten `payload`, see the PF reply) and
// returns true when the message goes on to the v7 validation and dispatch; returns false when the
// edge answered (or, with replies disabled, silently consumed) it. An error closes the connection.
std::expected<bool, std::string> translate_incoming(Channel& channel, kvmi::MsgHdr& hdr,
                                                    std::span<std::byte>& payload);

}  // namespace glassbox::introspection
