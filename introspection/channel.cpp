#include "introspection/channel.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "glassbox/kvmi/events.h"

namespace glassbox::introspection {

ReadStatus Channel::read_exact(std::span<std::byte> out, int* errno_out) {
  std::size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::recv(fd_.get(), out.data() + done, out.size() - done, MSG_WAITALL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno_out != nullptr) *errno_out = errno;
      return ReadStatus::Error;
    }
    if (n == 0) return done == 0 ? ReadStatus::Eof : ReadStatus::Truncated;
    done += static_cast<std::size_t>(n);
  }
  return ReadStatus::Complete;
}

std::expected<void, int> Channel::send(std::uint16_t id, std::uint32_t seq,
                                       std::initializer_list<std::span<const std::byte>> parts) {
  const std::span<const std::span<const std::byte>> given(parts.begin(), parts.size());
  if (!edge_.translates()) return send_wire(id, seq, given);
  // The dialect edge: the wire id, and an event's id inside its common part (the first part).
  std::array<std::span<const std::byte>, 8> wire_parts{};
  if (given.size() > wire_parts.size()) return std::unexpected(EINVAL);
  std::copy(given.begin(), given.end(), wire_parts.begin());
  kvmi::Event event{};
  if (id == static_cast<std::uint16_t>(kvmi::MessageId::Event) && !given.empty()) {
    wire_parts[0] = edge_.wire_event(given[0], event);
  }
  return send_wire(edge_.wire_message_id(id), seq, std::span(wire_parts).first(given.size()));
}

std::expected<void, int> Channel::send_wire(std::uint16_t id, std::uint32_t seq,
                                            std::span<const std::span<const std::byte>> parts) {
  constexpr std::size_t kMaxParts = 8;
  if (parts.size() + 1 > kMaxParts) return std::unexpected(EINVAL);
  std::size_t payload = 0;
  for (auto part : parts) payload += part.size();
  if (payload > 0xffff) return std::unexpected(EMSGSIZE);

  kvmi::MsgHdr hdr{id, static_cast<std::uint16_t>(payload), seq};
  std::array<iovec, kMaxParts> iov{};
  std::size_t count = 0;
  iov[count++] = {&hdr, sizeof(hdr)};
  for (auto part : parts) {
    if (part.empty()) continue;
    iov[count++] = {const_cast<std::byte*>(part.data()), part.size()};
  }

  std::lock_guard lock(write_mutex_);
  // One sendmsg per message; the loop only continues a partial write, which a stream socket may
  // do for large messages, and still under the lock so nothing interleaves.
  std::size_t first = 0;
  while (first < count) {
    msghdr msg{};
    msg.msg_iov = &iov[first];
    msg.msg_iovlen = count - first;
    ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return std::unexpected(errno);
    }
    auto left = static_cast<std::size_t>(n);
    while (first < count && left >= iov[first].iov_len) {
      left -= iov[first].iov_len;
      ++first;
    }
    if (first < count && left > 0) {
      iov[first].iov_base = static_cast<std::byte*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return {};
}

std::expected<void, int> Channel::send_reply(const kvmi::MsgHdr& request, std::int32_t err,
                                             std::span<const std::byte> data) {
  if (edge_.translates() && edge_.take_suppressed(request.id, request.seq)) return {};
  kvmi::ErrorCode code{err, 0};
  if (err != 0) data = {};
  return send(request.id, request.seq, {bytes_of(code), data});
}

std::expected<void, int> Channel::send_wire_reply(const kvmi::MsgHdr& wire_request,
                                                  std::int32_t err,
                                                  std::span<const std::byte> data) {
  kvmi::ErrorCode code{err, 0};
  if (err != 0) data = {};
  const std::span<const std::byte> parts[] = {bytes_of(code), data};
  return send_wire(wire_request.id, wire_request.seq, parts);
}

void Channel::shutdown() {
  ::shutdown(fd_.get(), SHUT_RDWR);
}

}  // namespace glassbox::introspection
