// One KVMI connection's socket: framing, whole-message writes, and the reads the receiver does.
//
// Replies come from the receiving thread, events from vCPU threads and from the unhook path, so
// every message goes out as one sendmsg (header and payload together, spec §1.2) under one lock:
// two writers can never interleave bytes of their messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <initializer_list>
#include <mutex>
#include <span>
#include <string>

#include "glassbox/kvmi/dialect.h"
#include "glassbox/kvmi/messages.h"
#include "introspection/dialect.h"
#include "kvm/fd.h"

namespace glassbox::introspection {

// How a read that did not fill its buffer ended.
enum class ReadStatus { Complete, Eof, Truncated, Error };

class Channel {
 public:
  // `dialect`: the numbering the tool speaks; everything above the Channel uses v7 ids and the
  // edge translates (introspection/dialect.h).
  explicit Channel(UniqueFd fd, kvmi::Dialect dialect = kvmi::Dialect::RfcV7)
      : fd_(std::move(fd)), edge_(dialect) {}
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  int fd() const { return fd_.get(); }
  DialectEdge& edge() { return edge_; }

  // Reads exactly out.size() bytes (blocking). errno_out gets errno for ReadStatus::Error.
  ReadStatus read_exact(std::span<std::byte> out, int* errno_out = nullptr);

  // Sends header {id, size = sum of parts, seq} and the parts as one message. Returns errno on
  // failure (EPIPE / ECONNRESET once the tool is gone, EMSGSIZE if the parts exceed 65535 bytes).
  std::expected<void, int> send(std::uint16_t id, std::uint32_t seq,
                                std::initializer_list<std::span<const std::byte>> parts);
  // A command reply: the request's id and seq, kvmi_error_code, then `data` only when err == 0.
  // Nothing is sent when the tool turned replies off for this request (libkvmi dialect).
  std::expected<void, int> send_reply(const kvmi::MsgHdr& request, std::int32_t err,
                                      std::span<const std::byte> data = {});
  // The same for a request header as it came off the wire, ids untranslated: the dialect edge's
  // own answers.
  std::expected<void, int> send_wire_reply(const kvmi::MsgHdr& wire_request, std::int32_t err,
                                           std::span<const std::byte> data = {});

  // Ends the connection in both directions (spec §1.6: the VMM does shutdown(SHUT_RDWR)). Wakes a
  // receiver blocked in read_exact and a writer blocked in send. The fd itself stays open until
  // the Channel is destroyed, so no other thread can see it reused.
  void shutdown();

 private:
  // send() after the dialect's translation.
  std::expected<void, int> send_wire(std::uint16_t id, std::uint32_t seq,
                                     std::span<const std::span<const std::byte>> parts);

  UniqueFd fd_;
  std::mutex write_mutex_;
  DialectEdge edge_;
};

template <typename T>
std::span<const std::byte> bytes_of(const T& value) {
  return std::as_bytes(std::span(&value, 1));
}

}  // namespace glassbox::introspection
