#include "memory_ops.h"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <limits>

#include "glassbox/kvmi/ids.h"

namespace glassbox::ctl {

namespace {

std::uint64_t chunk_at(std::uint64_t gpa, std::uint64_t remaining) {
  return std::min(remaining, kvmi::kPageSize - (gpa & (kvmi::kPageSize - 1)));
}

client::Error at_gpa(client::Error error, std::uint64_t gpa) {
  error.message = fmt::format("at GPA {:#x}: {}", gpa, error.message);
  return error;
}

}  // namespace

client::Result<void> read_range(client::Session& session, std::uint64_t gpa, std::uint64_t size,
                                std::size_t window, const ChunkSink& sink) {
  if (size == 0) return {};
  if (gpa > std::numeric_limits<std::uint64_t>::max() - (size - 1)) {
    return client::make_error(client::ErrorKind::InvalidArgument,
                              fmt::format("range {:#x}+{:#x} wraps past 2^64", gpa, size));
  }
  window = std::max<std::size_t>(window, 1);
  struct InFlight {
    std::uint64_t gpa;
    std::uint64_t size;
    client::PendingReply reply;
  };
  std::deque<InFlight> in_flight;
  std::uint64_t next = gpa;
  std::uint64_t remaining = size;
  const auto timeout = session.options().reply_timeout;
  while (remaining > 0 || !in_flight.empty()) {
    while (remaining > 0 && in_flight.size() < window) {
      std::uint64_t n = chunk_at(next, remaining);
      auto pending = session.submit_read_physical(next, n);
      if (!pending) return std::unexpected(at_gpa(std::move(pending.error()), next));
      in_flight.push_back({next, n, std::move(*pending)});
      next += n;
      remaining -= n;
    }
    // Replies are consumed in submission order so the sink sees addresses in order; the ones
    // behind keep arriving meanwhile. Dropping the deque on an error abandons them cleanly.
    InFlight head = std::move(in_flight.front());
    in_flight.pop_front();
    auto reply = head.reply.wait(timeout);
    if (!reply) return std::unexpected(at_gpa(std::move(reply.error()), head.gpa));
    // The page rule makes a short success impossible; a different size means a broken peer.
    if (reply->data().size() != head.size) {
      return client::make_error(
          client::ErrorKind::Protocol,
          fmt::format("at GPA {:#x}: KVMI_VM_READ_PHYSICAL asked {} bytes, got {}", head.gpa,
                      head.size, reply->data().size()));
    }
    if (auto sunk = sink(head.gpa, reply->data()); !sunk) {
      return std::unexpected(at_gpa(std::move(sunk.error()), head.gpa));
    }
  }
  return {};
}

client::Result<void> write_range(client::Session& session, std::uint64_t gpa,
                                 std::span<const std::byte> data) {
  std::uint64_t offset = 0;
  while (offset < data.size()) {
    std::uint64_t n = chunk_at(gpa + offset, data.size() - offset);
    auto written = session.write_physical(gpa + offset, data.subspan(offset, n));
    if (!written) return std::unexpected(at_gpa(std::move(written.error()), gpa + offset));
    offset += n;
  }
  return {};
}

}  // namespace glassbox::ctl
